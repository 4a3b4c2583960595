"""Resource templates: a resource's JSON shape declared once, run by two interpreters.

A template is a tree of nodes (`K`, `Val`, `Map`, `Obj`, `Arr`, `Each`, `If`,
`IfHas`, `IfMissing`, `Seq`, `Tick`). `Template.bind(tables)` flattens it
into a `Plan`: an int32 op array, one blob of pre-escaped JSON fragments, and
column descriptors. The
compiled core (`fhirhose._core.Writer`) and its pure-Python twin
(`fhirhose._core_py.Writer`) both execute a Plan; the shape of every resource
lives only here, in `fhirhose.fhir.*`, so the two can never drift apart.

Emission rules, shared by both interpreters:
- A member or element is preceded by "," unless the previous byte is "{" or "[".
- Missing values (empty string, NO_DATE, NO_NUM, Cat code 0) emit nothing.
- `Obj`/`Arr` groups are dropped whole (key included) when nothing *strong*
  was emitted inside them. Values are strong; constants are strong unless
  declared `weak` (a coding's "system" is decoration of its "code").
- `Seq` numbers (weak unless `strong`) and `Tick`s are rolled back with a
  dropped group.

Cross-references (item.careTeamSequence → careTeam.sequence) are kept in step
by running a second counter over the same conditions: strong `Seq`s keep the
referring array alive, `Tick`s advance a counter past entries emitted
elsewhere (e.g. header diagnoses before the line ones).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .columns import AnyColumn, Cat, Table
from .errors import TemplateError

__all__ = [
    "K",
    "E",
    "Val",
    "Map",
    "Obj",
    "Arr",
    "Each",
    "If",
    "IfHas",
    "IfMissing",
    "Seq",
    "Tick",
    "Raw",
    "Node",
    "Group",
    "ObjGroup",
    "ArrGroup",
    "constant_text",
    "Template",
    "Plan",
    "json_fragment",
    "escape_json_string",
]

# Op codes; the Cython interpreter mirrors these numbers in ext/interp.pxi.
OP_END = 0
OP_RAW = 1  # frag                 : append, no separator, not counted
OP_CONST = 2  # frag, strong        : sep + frag
OP_STR = 3  # col, head, tail
OP_CAT = 4  # col, head, tail      (label fragments pre-escaped)
OP_DATE = 5  # col, head, tail
OP_NUM = 6  # col, head, tail
OP_TIME = 7  # col, head, tail
OP_MAP = 8  # col, map base         : sep + fragment chosen by code
OP_OPEN = 9  # frag, seqsave, strong : push group, sep + frag; strong += c (merged constants)
OP_CLOSE = 10  # frag               : pop; drop group if nothing strong inside
OP_IFCAT = 11  # col, set base, jump : skip to jump unless code in set
OP_IFHAS = 12  # col, jump           : skip to jump if value missing
OP_EACH = 13  # link, jump          : enter child rows; jump past NEXT if none
OP_NEXT = 14  # link, back          : next child row or leave
OP_SEQ = 15  # counter, head, tail : ++counter (weak)
OP_SEQ_STRONG = 16  # counter, head, tail : ++counter, counted as a value
OP_TICK = 17  # counter             : ++counter, nothing written
OP_IFMISSING = 18  # col, jump        : skip to jump if value present

KIND_CODES = {"str": 1, "cat": 2, "date": 3, "num": 4, "time": 5}
MAX_COUNTERS = 8
MAX_DEPTH = 64

_ESC = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESC.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"})


def escape_json_string(s: str) -> str:
    """JSON string *content* (no quotes): the escaping both writers use."""
    return s.translate(_ESC)


def json_fragment(value: Any) -> str:
    """A constant JSON value, compact, non-ASCII kept as UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _key(key: str | None) -> str:
    return "" if key is None else f'"{escape_json_string(key)}":'


# ---------------------------------------------------------------- nodes


class Node:
    """Base of the template nodes (K, E, Val, Map, Obj, Arr, Each, If, ...)."""
    __slots__ = ()

    def has_values(self) -> bool:
        """Whether this node writes anything read from a column (else it is constant text)."""
        return False


@dataclass(frozen=True)
class Raw(Node):
    """Verbatim bytes, no separator (used for a resource's braces)."""

    text: str


@dataclass(frozen=True)
class K(Node):
    """A constant member `"key": value` (key None: a constant array element)."""

    key: str | None
    value: Any
    weak: bool = False


def E(value: Any, weak: bool = False) -> K:
    """A constant array element."""
    return K(None, value, weak)


@dataclass(frozen=True)
class Val(Node):
    """A column's value at the current row, omitted when missing.

    Strings, codes, dates and instants are written as JSON strings; numbers
    bare unless `quote`, `prefix` or `suffix` make them part of a string
    (e.g. `Val("reference", "bene_id", prefix="Patient/")`).
    """

    key: str | None
    col: str
    prefix: str = ""
    suffix: str = ""
    quote: bool | None = None

    def has_values(self) -> bool:
        return True


@dataclass(frozen=True)
class Map(Node):
    """Per-label constant fragment for a Cat column: `mapping[label]` is a Node
    (K/Obj of constants) or None to emit nothing; `default` for other labels.
    `mapping` may also be a function label -> Node | None."""

    col: str
    mapping: Mapping[str, Node | None] | Callable[[str], Node | None]
    default: Node | None = None

    def has_values(self) -> bool:
        return True


@dataclass(frozen=True)
class Group(Node):
    """An object or array node (built by `Obj` / `Arr`); template walkers match on it."""

    key: str | None
    children: tuple
    # the JSON brackets; set by ObjGroup / ArrGroup
    open: ClassVar[str] = ""
    close: ClassVar[str] = ""


def Obj(key: str | None, *children: Node) -> ObjGroup:
    """A JSON object of `children` under `key` (None inside an array);
    dropped whole, key included, when nothing strong is written inside it."""
    return ObjGroup(key, tuple(children))


def Arr(key: str | None, *children: Node) -> ArrGroup:
    """A JSON array of `children` under `key` (None inside an array);
    dropped whole, key included, when nothing strong is written inside it."""
    return ArrGroup(key, tuple(children))


class ObjGroup(Group):
    """A JSON object of child nodes (`Obj(...)`)."""

    open, close = "{", "}"


class ArrGroup(Group):
    """A JSON array of child nodes (`Arr(...)`)."""

    open, close = "[", "]"


@dataclass(frozen=True)
class Each(Node):
    """Repeat `children` for every row of the child table `table` linked to the current row."""

    table: str
    children: tuple

    def __init__(self, table: str, *children: Node):
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "children", tuple(children))


@dataclass(frozen=True)
class If(Node):
    """`children` only when the Cat column's label is one of `labels`."""

    col: str
    labels: frozenset[str]
    children: tuple

    def __init__(self, col: str, labels: Iterable[str], *children: Node):
        object.__setattr__(self, "col", col)
        object.__setattr__(self, "labels", frozenset(labels))
        object.__setattr__(self, "children", tuple(children))


@dataclass(frozen=True)
class _Guard(Node):
    """A block run or skipped on whether a column has a value at the current row."""

    col: str
    children: tuple

    def __init__(self, col: str, *children: Node):
        object.__setattr__(self, "col", col)
        object.__setattr__(self, "children", tuple(children))


class IfHas(_Guard):
    """`children` only when the column has a value at the current row."""


class IfMissing(_Guard):
    """`children` only when the column has no value at the current row: the fallback
    beside an `IfHas` (e.g. a data-absent-reason for a required element)."""


@dataclass(frozen=True)
class Seq(Node):
    """The next number (1, 2, ...) of a per-resource counter, as `"key": n`.

    Weak by default (a sequence alone does not keep its group); `strong=True`
    makes it count as a value, for a number that *is* the content (an element
    of `careTeamSequence`)."""

    key: str | None
    counter: int = 0
    strong: bool = False


@dataclass(frozen=True)
class Tick(Node):
    """Advance a per-resource counter by one without writing anything."""

    counter: int = 0


# ---------------------------------------------------------------- the plan


@dataclass
class ColumnRef:
    """A column as the interpreters see it; `slot` is its table's slot."""

    kind: int
    slot: int
    column: AnyColumn
    label_base: int = -1  # Cat: fragment id of label 0


@dataclass
class LinkRef:
    """A parent-to-child link of a bound plan: `offsets[i]:offsets[i+1]` are parent row i's children."""
    parent_slot: int
    child_slot: int
    offsets: np.ndarray


@dataclass
class Plan:
    """A template bound to tables: what both interpreters execute."""

    name: str
    ops: np.ndarray  # int32, 4 words per op
    frag_blob: bytes
    frag_offsets: np.ndarray  # int64, nfrags + 1
    maps: np.ndarray  # int32 fragment id per (map base + code), -1 none
    sets: np.ndarray  # uint8 membership per (set base + code)
    columns: list[ColumnRef]
    links: list[LinkRef]
    tables: list[Table]  # by slot; slot 0 is the root
    frags: list[bytes] = field(repr=False, default_factory=list)

    @property
    def root(self) -> Table:
        """The table whose rows are the resources (slot 0)."""
        return self.tables[0]


class _Compiler:
    def __init__(self, root: str, tables: Mapping[str, Table]):
        self.tables_by_name = tables
        self.slots: dict[str, int] = {}
        self.table_list: list[Table] = []
        self.ops: list[list[int]] = []
        self.frags: list[bytes] = []
        self.frag_ids: dict[bytes, int] = {}
        self.maps: list[int] = []
        self.sets: list[int] = []
        self.columns: list[ColumnRef] = []
        self.col_ids: dict[tuple[int, str], int] = {}
        self.links: list[LinkRef] = []
        self.context: list[str] = []  # table names, innermost last
        self.depth = 0
        self.max_depth = 0
        self.barrier = False
        self._slot(root)

    def _slot(self, name: str) -> int:
        if name not in self.slots:
            if name not in self.tables_by_name:
                raise TemplateError(f"template needs table {name!r}, not among {sorted(self.tables_by_name)}")
            self.slots[name] = len(self.table_list)
            self.table_list.append(self.tables_by_name[name])
        return self.slots[name]

    def frag(self, text: str | bytes) -> int:
        b = text.encode("utf-8") if isinstance(text, str) else text
        if b not in self.frag_ids:
            self.frag_ids[b] = len(self.frags)
            self.frags.append(b)
        return self.frag_ids[b]

    def emit(self, op: int, a: int = 0, b: int = 0, c: int = 0) -> int:
        self.ops.append([op, a, b, c])
        self.barrier = False
        return len(self.ops) - 1

    def emit_const(self, text: str, strong: bool) -> None:
        """A constant member/element, merged into the previous op when the separator
        is known at compile time (fewer ops, one memcpy). Never merged across a jump
        target (`barrier`), so skipped blocks and loops keep their exact bytes."""
        b = text.encode("utf-8")
        last = self.ops[-1] if self.ops and not self.barrier else None
        if last is not None and last[0] in (OP_CONST, OP_OPEN, OP_RAW):
            # The previous op ends in a known byte: "," unless it just opened a container.
            prev = self.frags[last[1]]
            sep = b"" if prev.endswith((b"{", b"[")) else b","
            last[1] = self.frag(prev + sep + b)
            if last[0] == OP_CONST:
                last[2] |= int(strong)
            elif last[0] == OP_OPEN:
                last[3] |= int(strong)  # counts as a value inside the group
            # RAW is the root's "{" or an always-kept group's close: a value counted after
            # it cannot change whether an enclosing group is empty (something already is).
        else:
            self.emit(OP_CONST, self.frag(b), int(strong))

    def col_id(self, spec: str) -> tuple[int, ColumnRef]:
        """Resolve "col" in the innermost table, or "table.col" in an enclosing one."""
        if "." in spec:
            tname, cname = spec.split(".", 1)
            if tname not in self.context:
                raise TemplateError(f"column {spec!r}: table {tname!r} is not enclosing here ({self.context})")
        else:
            tname, cname = self.context[-1], spec
        table = self.tables_by_name[tname]
        if cname not in table.columns:
            raise TemplateError(f"template needs column {tname}.{cname}, which the table lacks")
        slot = self.slots[tname]
        key = (slot, cname)
        if key not in self.col_ids:
            column = table.columns[cname]
            ref = ColumnRef(KIND_CODES[column.kind], slot, column)
            if isinstance(column, Cat):
                ref.label_base = len(self.frags)
                for label in column.labels:
                    # Label fragments are kept distinct (no dedup) so base+code indexes them.
                    self.frags.append(escape_json_string(label).encode("utf-8"))
            self.col_ids[key] = len(self.columns)
            self.columns.append(ref)
        cid = self.col_ids[key]
        return cid, self.columns[cid]

    # Nodes ------------------------------------------------------------
    def node(self, n: Node) -> None:
        if isinstance(n, Raw):
            self.emit(OP_RAW, self.frag(n.text))
        elif isinstance(n, K):
            self.emit_const(_key(n.key) + json_fragment(n.value), not n.weak)
        elif isinstance(n, Val):
            self.val(n)
        elif isinstance(n, Map):
            self.map(n)
        elif isinstance(n, Group):
            self.group(n)
        elif isinstance(n, Each):
            self.each(n)
        elif isinstance(n, If):
            cid, ref = self.col_id(n.col)
            if not isinstance(ref.column, Cat):
                raise TemplateError(f"If({n.col!r}) needs a Cat column, got {ref.column.kind}")
            base = len(self.sets)
            self.sets.extend(1 if lab in n.labels else 0 for lab in ref.column.labels)
            at = self.emit(OP_IFCAT, cid, base, 0)
            for c in n.children:
                self.node(c)
            self.ops[at][3] = len(self.ops)
            self.barrier = True
        elif isinstance(n, (IfHas, IfMissing)):
            cid, _ = self.col_id(n.col)
            at = self.emit(OP_IFHAS if isinstance(n, IfHas) else OP_IFMISSING, cid, 0)
            for c in n.children:
                self.node(c)
            self.ops[at][2] = len(self.ops)
            self.barrier = True
        elif isinstance(n, (Seq, Tick)):
            if not 0 <= n.counter < MAX_COUNTERS:
                raise TemplateError(f"{type(n).__name__} counter {n.counter} is outside 0..{MAX_COUNTERS - 1}")
            if isinstance(n, Tick):
                self.emit(OP_TICK, n.counter)
            else:
                op = OP_SEQ_STRONG if n.strong else OP_SEQ
                self.emit(op, n.counter, self.frag(_key(n.key)), self.frag(""))
        else:
            raise TemplateError(f"unknown template node {n!r}")

    def val_parts(self, n: Val) -> tuple[int, int, str, str]:
        """(op, column id, head text, tail text) of a value: head and tail wrap the value."""
        cid, ref = self.col_id(n.col)
        kind = ref.column.kind
        quote = n.quote if n.quote is not None else (kind != "num" or bool(n.prefix or n.suffix))
        if not quote and (n.prefix or n.suffix):
            raise TemplateError(f"Val({n.col!r}): prefix/suffix need a quoted value")
        if kind in ("str", "cat", "date", "time") and not quote:
            raise TemplateError(f"Val({n.col!r}): a {kind} value is always a JSON string")
        q = '"' if quote else ""
        op = {"str": OP_STR, "cat": OP_CAT, "date": OP_DATE, "num": OP_NUM, "time": OP_TIME}[kind]
        return op, cid, _key(n.key) + q + escape_json_string(n.prefix), escape_json_string(n.suffix) + q

    def single_value(self, n: Node) -> tuple[int, int, str, str] | None:
        """A group that exists exactly when its one value does (the rest weak constants),
        as that value's op with the group folded into head and tail; else None."""
        if isinstance(n, Val):
            return self.val_parts(n)
        if not isinstance(n, Group):
            return None
        before: list[str] = []
        after: list[str] = []
        inner = None
        for c in n.children:
            if isinstance(c, K) and c.weak:
                (after if inner else before).append(_key(c.key) + json_fragment(c.value))
            elif inner is None and isinstance(c, (Val, Group)):
                inner = self.single_value(c)
                if inner is None:
                    return None
            else:
                return None
        if inner is None:
            return None
        op, cid, head, tail = inner
        head = _key(n.key) + n.open + "".join(b + "," for b in before) + head
        tail = tail + "".join("," + a for a in after) + n.close
        return op, cid, head, tail

    def val(self, n: Val) -> None:
        op, cid, head, tail = self.val_parts(n)
        self.emit(op, cid, self.frag(head), self.frag(tail))

    def map(self, n: Map) -> None:
        cid, ref = self.col_id(n.col)
        if not isinstance(ref.column, Cat):
            raise TemplateError(f"Map({n.col!r}) needs a Cat column, got {ref.column.kind}")
        base = len(self.maps)
        for label in ref.column.labels:
            if label == "":
                self.maps.append(-1)
                continue
            if callable(n.mapping):
                node = n.mapping(label)
            else:
                node = n.mapping.get(label, n.default)
            self.maps.append(-1 if node is None else self.frag(constant_text(node)))
        self.emit(OP_MAP, cid, base)

    def group(self, n: Group) -> None:
        self.depth += 1
        self.max_depth = max(self.max_depth, self.depth)
        if self.depth > MAX_DEPTH:
            raise TemplateError(f"template nests deeper than {MAX_DEPTH}")
        folded = _fold(n)
        if folded is not None:
            # Only constants inside: one fragment, or nothing when all are weak.
            text, strong = folded
            if strong:
                self.emit_const(text, True)
        elif (sv := self.single_value(n)) is not None:
            op, cid, head, tail = sv
            self.emit(op, cid, self.frag(head), self.frag(tail))
        elif any((f := _fold(c)) is not None and f[1] for c in n.children):
            # A strong constant inside: the group is never dropped, so no push/pop.
            self.emit_const(_key(n.key) + n.open, True)
            for c in n.children:
                self.node(c)
            self.emit(OP_RAW, self.frag(n.close))
        else:
            self.emit(OP_OPEN, self.frag(_key(n.key) + n.open), 1 if _has_seq(n) else 0)
            for c in n.children:
                self.node(c)
            self.emit(OP_CLOSE, self.frag(n.close))
        self.depth -= 1

    def each(self, n: Each) -> None:
        parent = self.context[-1]
        ptable = self.tables_by_name[parent]
        if n.table not in ptable.links:
            raise TemplateError(f"Each({n.table!r}): table {parent!r} has no link to it")
        child_slot = self._slot(n.table)
        ptable.check_links(self.tables_by_name)
        link_id = len(self.links)
        self.links.append(LinkRef(self.slots[parent], child_slot, ptable.links[n.table]))
        at = self.emit(OP_EACH, link_id, 0)
        self.context.append(n.table)
        for c in n.children:
            self.node(c)
        self.context.pop()
        self.emit(OP_NEXT, link_id, at + 1)
        self.ops[at][2] = len(self.ops)
        self.barrier = True


def _fold(n: Node) -> tuple[str, bool] | None:
    """(JSON text, strong) of a subtree made only of constants, or None if it has
    anything dynamic. A constant group with no strong constant folds to ("", False):
    the interpreters would always drop it."""
    if isinstance(n, K):
        return _key(n.key) + json_fragment(n.value), not n.weak
    if not isinstance(n, Group):
        return None
    parts = []
    strong = False
    for c in n.children:
        f = _fold(c)
        if f is None:
            return None
        if f[1] or isinstance(c, K):
            parts.append(f[0])
        strong |= f[1]
    if not strong:
        return "", False
    return _key(n.key) + n.open + ",".join(parts) + n.close, True


def _has_seq(n: Node) -> bool:
    if isinstance(n, (Seq, Tick)):
        return True
    return any(_has_seq(c) for c in getattr(n, "children", ()))


def constant_text(n: Node) -> str:
    """The JSON text of a constant node (K/Obj/Arr of K, Raw): Map entries, element lists."""
    if isinstance(n, K):
        return _key(n.key) + json_fragment(n.value)
    if isinstance(n, Group):
        inner = ",".join(constant_text(c) for c in n.children)
        return _key(n.key) + n.open + inner + n.close
    if isinstance(n, Raw):
        return n.text
    raise TemplateError(f"Map entries must be constant (K/Obj/Arr of K), not {type(n).__name__}")


class Template:
    """A resource shape over a root table. `bind(tables)` → `Plan`."""

    def __init__(self, name: str, root: str, *members: Node):
        self.name = name
        self.root = root
        self.members = members

    def bind(self, tables: Mapping[str, Table]) -> Plan:
        """Compile this template against `tables` (by name) into a Plan a Writer runs;
        raises TemplateError naming the node when a table, column or link is missing or of the wrong kind."""
        c = _Compiler(self.root, tables)
        c.context.append(self.root)
        c.emit(OP_RAW, c.frag("{"))
        for m in self.members:
            c.node(m)
        c.emit(OP_RAW, c.frag("}\n"))
        c.emit(OP_END)
        offsets = np.zeros(len(c.frags) + 1, dtype=np.int64)
        np.cumsum([len(f) for f in c.frags], out=offsets[1:])
        return Plan(
            name=self.name,
            ops=np.array(c.ops, dtype=np.int32).reshape(-1),
            frag_blob=b"".join(c.frags),
            frag_offsets=offsets,
            maps=np.array(c.maps or [-1], dtype=np.int32),
            sets=np.array(c.sets or [0], dtype=np.uint8),
            columns=c.columns,
            links=c.links,
            tables=c.table_list,
            frags=c.frags,
        )
