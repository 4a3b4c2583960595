"""The template nodes: the tree a resource's JSON shape is declared in.

Nodes are frozen values (equal nodes build equal templates); `constant_text` and the
JSON text helpers here are what the compiler (`plan`) and the template walkers share.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import TemplateError

__all__ = [
    "Node", "Raw", "K", "E", "Val", "Map", "Group", "Obj", "Arr", "ObjGroup", "ArrGroup", "Each", "If",
    "IfHas", "IfMissing", "Seq", "Tick", "constant_text", "escape_json_string", "json_fragment",
]

_ESC = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESC.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"})


def escape_json_string(s: str) -> str:
    """JSON string *content* (no quotes): the escaping both writers use."""
    return s.translate(_ESC)


def json_fragment(value: Any) -> str:
    """A constant JSON value, compact, non-ASCII kept as UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def key_text(key: str | None) -> str:
    """`"key":` as JSON text (nothing for None: an array element)."""
    return "" if key is None else f'"{escape_json_string(key)}":'


# ---------------------------------------------------------------- nodes


def _init_frozen(node: Node, **fields: Any) -> None:
    """Set the fields of a frozen dataclass node whose constructor takes `*children`."""
    for name, value in fields.items():
        object.__setattr__(node, name, value)


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
        _init_frozen(self, table=table, children=tuple(children))


@dataclass(frozen=True)
class If(Node):
    """`children` only when the Cat column's label is one of `labels`."""

    col: str
    labels: frozenset[str]
    children: tuple

    def __init__(self, col: str, labels: Iterable[str], *children: Node):
        _init_frozen(self, col=col, labels=frozenset(labels), children=tuple(children))


@dataclass(frozen=True)
class _Guard(Node):
    """A block run or skipped on whether a column has a value at the current row."""

    col: str
    children: tuple

    def __init__(self, col: str, *children: Node):
        _init_frozen(self, col=col, children=tuple(children))


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


def constant_text(n: Node) -> str:
    """The JSON text of a constant node (K/Obj/Arr of K, Raw): Map entries, element lists."""
    if isinstance(n, K):
        return key_text(n.key) + json_fragment(n.value)
    if isinstance(n, Group):
        inner = ",".join(constant_text(c) for c in n.children)
        return key_text(n.key) + n.open + inner + n.close
    if isinstance(n, Raw):
        return n.text
    raise TemplateError(f"Map entries must be constant (K/Obj/Arr of K), not {type(n).__name__}")
