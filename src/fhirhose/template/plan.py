"""Binding a template to tables: the op codes, the `Plan` both interpreters run, `Template`.

`Template.bind(tables)` walks the node tree once: constants are folded into pre-escaped
fragments, columns and child-table links become slots, and every node becomes ops of
four int32 words. The compiled core and its pure-Python twin execute the same Plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..columns import AnyColumn, Cat, Table
from ..errors import TemplateError
from .nodes import (
    Each,
    Group,
    If,
    IfHas,
    IfMissing,
    K,
    Map,
    Node,
    Raw,
    Seq,
    Tick,
    Val,
    constant_text,
    escape_json_string,
    json_fragment,
    key_text,
)

__all__ = ["Template", "Plan", "ColumnRef", "LinkRef", "KIND_CODES", "MAX_COUNTERS", "MAX_DEPTH"]

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

    def fuse(self) -> None:
        """Peephole passes over the ops, to a fixed point: the same bytes in fewer ops.

        - `IfHas(c)` around [a constant] + one value of column c + [closing raw fragments]
          becomes that value's op alone (it already writes nothing when c is missing), the
          constant folded into its head and the closers into its tail;
        - a droppable group holding just one value (OPEN, value, CLOSE) becomes the value's
          op: the group exists exactly when the value does;
        - a constant followed by a Seq becomes the Seq, the constant in its head;
        - a constant or raw fragment followed by a raw fragment becomes one fragment.
        Strong counts only need to grow, not by how much (CLOSE compares them for
        equality), so a fused op counts once what its parts counted once or more. Nothing
        is fused across a jump target, so every jump still lands on the same bytes."""
        while True:
            targets = {t for op in self.ops if (t := _jump_target(op)) is not None}
            out: list[list[int]] = []
            new_index: dict[int, int] = {}
            i = 0
            while i < len(self.ops):
                new_index[i] = len(out)
                if self.ops[i][0] == _DELETED:
                    i += 1
                    continue
                fused = self._fused_at(i, targets)
                if fused is None:
                    out.append(self.ops[i])
                    i += 1
                else:
                    out.append(fused[0])
                    i = fused[1]
            if len(out) == len(self.ops):
                return
            new_index[len(self.ops)] = len(out)
            for op in out:
                if (f := _jump_field(op)) is not None:
                    op[f] = new_index[op[f]]
            self.ops = out

    def _lead(self, fid: int) -> bytes | None:
        """A constant fragment as the head of what follows it: with the "," the next op
        would write, or None when empty (the separator would depend on what came before)."""
        text = self.frags[fid]
        if not text:
            return None
        return text if text.endswith((b"{", b"[")) else text + b","

    def _matching_close(self, i: int) -> int:
        """Index of the CLOSE that ends the group OPEN at `i` opens."""
        depth = 0
        for j in range(i, len(self.ops)):
            if self.ops[j][0] == OP_OPEN:
                depth += 1
            elif self.ops[j][0] == OP_CLOSE:
                depth -= 1
                if depth == 0:
                    return j
        raise TemplateError(f"op {i}: OPEN without its CLOSE")

    def _fused_at(self, i: int, targets: set[int]) -> tuple[list[int], int] | None:
        """(the op replacing ops[i:end], end) when a pattern of `fuse` starts at i."""
        ops = self.ops
        first = ops[i]
        if first[0] == OP_IFHAS and first[2] > i + 1:
            stop = first[2]
            if any(j in targets for j in range(i + 1, stop)):
                return None  # something jumps into the body
            body = ops[i + 1 : stop]
            head = b""
            if body[0][0] == OP_CONST:
                lead = self._lead(body[0][1])
                if lead is None:
                    return None
                head, body = lead, body[1:]
            if not body or body[0][0] not in _VALUE_OPS or body[0][1] != first[1]:
                return None
            if any(r[0] != OP_RAW for r in body[1:]):
                return None
            op, col, h, t = body[0]
            tail = self.frags[t] + b"".join(self.frags[r[1]] for r in body[1:])
            return [op, col, self.frag(head + self.frags[h]), self.frag(tail)], stop
        if i + 2 >= len(ops) or i + 1 in targets:
            return None
        second = ops[i + 1]
        if (first[0] == OP_OPEN and first[2] == 0 and first[3] == 0 and second[0] in _VALUE_OPS
                and ops[i + 2][0] == OP_CLOSE and i + 2 not in targets):
            lead = self._lead(first[1])
            if lead is None:
                return None
            op, col, h, t = second
            return [op, col, self.frag(lead + self.frags[h]), self.frag(self.frags[t] + self.frags[ops[i + 2][1]])], i + 3
        if first[0] == OP_OPEN and first[3] == 0 and second[0] == OP_OPEN:
            inner_close = self._matching_close(i + 1)
            outer_close = inner_close + 1
            if (inner_close in targets or outer_close in targets or outer_close >= len(ops)
                    or ops[outer_close][0] != OP_CLOSE):
                return None
            lead = self._lead(first[1])
            if lead is None:
                return None
            # Nothing but the inner group inside: both are dropped or kept together.
            ops[inner_close] = [OP_CLOSE, self.frag(self.frags[ops[inner_close][1]] + self.frags[ops[outer_close][1]]), 0, 0]
            ops[outer_close] = [_DELETED, 0, 0, 0]
            return [OP_OPEN, self.frag(lead + self.frags[second[1]]), first[2] | second[2], second[3]], i + 2
        if first[0] in (OP_CONST, OP_RAW) and second[0] == OP_RAW:
            # Both always written, the second with no separator: one fragment.
            return [first[0], self.frag(self.frags[first[1]] + self.frags[second[1]]), first[2], first[3]], i + 2
        if first[0] == OP_CONST and second[0] in (OP_SEQ, OP_SEQ_STRONG):
            lead = self._lead(first[1])
            if lead is None:
                return None
            op = OP_SEQ_STRONG if first[2] or second[0] == OP_SEQ_STRONG else OP_SEQ
            return [op, second[1], self.frag(lead + self.frags[second[2]]), second[3]], i + 2
        return None

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
            self.emit_const(key_text(n.key) + json_fragment(n.value), not n.weak)
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
                self.emit(op, n.counter, self.frag(key_text(n.key)), self.frag(""))
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
        return op, cid, key_text(n.key) + q + escape_json_string(n.prefix), escape_json_string(n.suffix) + q

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
                (after if inner else before).append(key_text(c.key) + json_fragment(c.value))
            elif inner is None and isinstance(c, (Val, Group)):
                inner = self.single_value(c)
                if inner is None:
                    return None
            else:
                return None
        if inner is None:
            return None
        op, cid, head, tail = inner
        head = key_text(n.key) + n.open + "".join(b + "," for b in before) + head
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
            self.emit_const(key_text(n.key) + n.open, True)
            for c in n.children:
                self.node(c)
            self.emit(OP_RAW, self.frag(n.close))
        else:
            self.emit(OP_OPEN, self.frag(key_text(n.key) + n.open), 1 if _has_seq(n) else 0)
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
        return key_text(n.key) + json_fragment(n.value), not n.weak
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
    return key_text(n.key) + n.open + ",".join(parts) + n.close, True


_VALUE_OPS = (OP_STR, OP_CAT, OP_DATE, OP_NUM, OP_TIME)
_DELETED = -1  # an op `fuse` has folded into an earlier one (never a jump target)


def _jump_field(op: list[int]) -> int | None:
    """Which field of a jumping op holds where it may continue (besides the next op)."""
    if op[0] in (OP_IFHAS, OP_IFMISSING, OP_EACH, OP_NEXT):
        return 2
    if op[0] == OP_IFCAT:
        return 3
    return None


def _jump_target(op: list[int]) -> int | None:
    """Where a jumping op may continue (besides the next op)."""
    f = _jump_field(op)
    return None if f is None else op[f]


def _has_seq(n: Node) -> bool:
    if isinstance(n, (Seq, Tick)):
        return True
    return any(_has_seq(c) for c in getattr(n, "children", ()))


class Template:
    """A resource shape over a root table. `bind(tables)` → `Plan`."""

    def __init__(self, name: str, root: str, *members: Node):
        self.name = name
        self.root = root
        self.members = members

    def bind(self, tables: Mapping[str, Table], *, fuse: bool = True) -> Plan:
        """Compile this template against `tables` (by name) into a Plan a Writer runs;
        raises TemplateError naming the node when a table, column or link is missing or of the wrong kind.
        `fuse=False` keeps the unfused ops (the same bytes; tests compare the two)."""
        c = _Compiler(self.root, tables)
        c.context.append(self.root)
        c.emit(OP_RAW, c.frag("{"))
        for m in self.members:
            c.node(m)
        c.emit(OP_RAW, c.frag("}\n"))
        c.emit(OP_END)
        if fuse:
            c.fuse()
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
