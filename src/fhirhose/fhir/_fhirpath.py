"""A small FHIRPath evaluator for the C4BB invariants (the subset their expressions use).

Supported: paths (choice elements included), `$this`, `%context`, `%resource`, string /
number / boolean literals, `()`, `[n]`, the operators `| = != < > <= >= in and or xor
implies is`, and the functions exists, empty, not, count, where, select, all, first,
distinct, memberOf, startsWith, subsetOf and resolve. `memberOf` asks the caller's value
set lookup; `resolve` follows contained (`#id`) and relative (`Type/id`) references.

When an expression needs what cannot be known here (a value set the rules do not
expand, a reference that resolves to nothing, an unsupported construct) `holds` returns
None rather than guess, so the checker never reports a violation it did not establish.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

__all__ = ["Unknown", "holds"]


class Unknown(Exception):
    """The expression's value cannot be established from the resource alone."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|(?P<op><=|>=|!=|!~|[=<>|~().,\[\]])"
    r"|(?P<id>[$%]?[A-Za-z_][A-Za-z0-9_]*|`[^`]*`))"
)


def _tokens(expr: str) -> list[str]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise Unknown(f"cannot read {expr[pos:pos + 20]!r}")
        group = m.lastgroup or ""
        out.append(m.group(group).strip("`") if group == "id" else m.group(group))
        pos = m.end()
    return out


# AST: tuples ("lit", v) ("this",) ("var", name) ("path", base|None, name)
# ("call", base|None, name, args) ("idx", base, expr) ("bin", op, l, r) ("is", base, type)
_BINARY = [("implies",), ("or", "xor"), ("and",), ("in", "contains"), ("=", "!=", "~", "!~"),
           ("<", ">", "<=", ">="), ("|",)]


class _Parser:
    def __init__(self, toks: list[str]):
        self.t, self.i = toks, 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise Unknown(f"expected {want!r}, found {tok!r}")
        self.i += 1
        return tok

    def expr(self, level: int = 0) -> tuple:
        if level == len(_BINARY):
            return self.type_expr()
        left = self.expr(level + 1)
        while self.peek() in _BINARY[level]:
            op = self.take()
            left = ("bin", op, left, self.expr(level + 1))
        return left

    def type_expr(self) -> tuple:
        node = self.chain()
        if self.peek() == "is":
            self.take()
            node = ("is", node, self.take())
        return node

    def chain(self) -> tuple:
        node = self.term()
        while self.peek() in (".", "["):
            if self.take() == ".":
                node = self.invocation(node)
            else:
                node = ("idx", node, self.expr())
                self.take("]")
        return node

    def term(self) -> tuple:
        tok = self.peek()
        if tok is None:
            raise Unknown("unexpected end")
        if tok == "(":
            self.take()
            node = self.expr()
            self.take(")")
            return node
        if tok.startswith("'"):
            self.take()
            return ("lit", re.sub(r"\\(.)", r"\1", tok[1:-1]))
        if re.fullmatch(r"\d+(\.\d+)?", tok):
            self.take()
            return ("lit", float(tok) if "." in tok else int(tok))
        if tok in ("true", "false"):
            self.take()
            return ("lit", tok == "true")
        if tok == "$this":
            self.take()
            return ("this",)
        if tok.startswith("%"):
            self.take()
            return ("var", tok[1:])
        return self.invocation(None)

    def invocation(self, base: tuple | None) -> tuple:
        name = self.take()
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise Unknown(f"unexpected {name!r}")
        if self.peek() == "(":
            self.take()
            args = []
            if self.peek() != ")":
                args.append(self.expr())
                while self.peek() == ",":
                    self.take()
                    args.append(self.expr())
            self.take(")")
            return ("call", base, name, args)
        return ("path", base, name)


@cache
def _parse(expr: str) -> tuple:
    p = _Parser(_tokens(expr))
    node = p.expr()
    if p.peek() is not None:
        raise Unknown(f"trailing {p.peek()!r}")
    return node


class _Env:
    def __init__(self, context: Any, resource: dict, member_of: Callable[[Any, str], bool | None]):
        self.context, self.resource, self.member_of = context, resource, member_of


def _children(item: Any, name: str) -> list:
    if not isinstance(item, dict):
        return []
    if name in item:
        v = item[name]
        return list(v) if isinstance(v, list) else [v]
    # Choice elements: `value` reaches valueQuantity, valueString ...
    for k, v in item.items():
        if k.startswith(name) and k[len(name):len(name) + 1].isupper():
            return list(v) if isinstance(v, list) else [v]
    return []


def _bool(coll: list) -> bool | None:
    if not coll:
        return None
    if len(coll) == 1 and isinstance(coll[0], bool):
        return coll[0]
    if len(coll) == 1:
        return True  # a single non-boolean item is true in a boolean context
    raise Unknown("a collection where a boolean was expected")


def _b(v: bool | None) -> list:
    return [] if v is None else [v]


def _eval(node: tuple, focus: list, this: Any, env: _Env) -> list:
    kind = node[0]
    if kind == "lit":
        return [node[1]]
    if kind == "this":
        return [this] if this is not None else focus
    if kind == "var":
        if node[1] == "context":
            return [env.context]
        if node[1] == "resource":
            return [env.resource]
        raise Unknown(f"%{node[1]}")
    if kind == "path":
        base = focus if node[1] is None else _eval(node[1], focus, this, env)
        return [c for item in base for c in _children(item, node[2])]
    if kind == "idx":
        base = _eval(node[1], focus, this, env)
        (n,) = _eval(node[2], focus, this, env) or [None]
        return [base[n]] if isinstance(n, int) and 0 <= n < len(base) else []
    if kind == "is":
        base = _eval(node[1], focus, this, env)
        if not base:
            return []
        if len(base) > 1:
            raise Unknown("'is' on a collection")
        item = base[0]
        return [isinstance(item, dict) and item.get("resourceType") == node[2]]
    if kind == "call":
        return _call(node, focus, this, env)
    if kind == "bin":
        return _binary(node, focus, this, env)
    raise Unknown(kind)


def _binary(node: tuple, focus: list, this: Any, env: _Env) -> list:
    op = node[1]
    left = _eval(node[2], focus, this, env)
    if op in ("and", "or", "xor", "implies"):
        a = _bool(left)
        if op == "implies" and a is False:
            return [True]
        if op == "and" and a is False:
            return [False]
        if op == "or" and a is True:
            return [True]
        b = _bool(_eval(node[3], focus, this, env))
        if op == "and":
            return [True] if a and b else ([False] if b is False else [])
        if op == "or":
            return [True] if b else ([False] if a is False and b is False else [])
        if op == "xor":
            return [] if a is None or b is None else [a != b]
        return [True] if b else ([False] if a is True and b is False else [])
    right = _eval(node[3], focus, this, env)
    if op == "|":
        out = list(left)
        out += [x for x in right if x not in out]
        return out
    if op == "in":
        if not left:
            return []
        return [left[0] in right]
    if op == "contains":
        return [] if not right else [right[0] in left]
    if not left or not right:
        return []
    if op in ("=", "~"):
        return [left == right]
    if op in ("!=", "!~"):
        return [left != right]
    if len(left) != 1 or len(right) != 1:
        raise Unknown(f"{op} on collections")
    a, b = left[0], right[0]
    try:
        return [{"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]]
    except TypeError:
        raise Unknown(f"cannot compare {a!r} {op} {b!r}") from None


def _resolve(item: Any, env: _Env) -> list:
    if not isinstance(item, dict) or not isinstance(item.get("reference"), str):
        raise Unknown("a reference without a literal target")
    target = item["reference"]
    if target.startswith("#"):
        for c in env.resource.get("contained") or ():
            if isinstance(c, dict) and c.get("id") == target[1:]:
                return [c]
        raise Unknown(f"no contained resource {target}")
    parts = target.split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        # The type is all an `is` test needs; the server's copy is not at hand.
        return [{"resourceType": parts[-2], "id": parts[-1]}]
    raise Unknown(f"cannot resolve {target}")


def _call(node: tuple, focus: list, this: Any, env: _Env) -> list:
    _, base_node, name, args = node
    base = focus if base_node is None else _eval(base_node, focus, this, env)

    def each(arg: tuple) -> list[tuple[Any, list]]:
        return [(item, _eval(arg, [item], item, env)) for item in base]

    if name == "exists":
        if args:
            return [any(_bool(r) for _, r in each(args[0]))]
        return [bool(base)]
    if name == "empty":
        return [not base]
    if name == "not":
        v = _bool(base)
        return [] if v is None else [not v]
    if name == "count":
        return [len(base)]
    if name == "first":
        return base[:1]
    if name == "distinct":
        out: list = []
        for x in base:
            if x not in out:
                out.append(x)
        return out
    if name == "where":
        return [item for item, r in each(args[0]) if _bool(r)]
    if name == "select":
        return [x for _, r in each(args[0]) for x in r]
    if name == "all":
        return [all(_bool(r) is True for _, r in each(args[0]))]
    if name == "subsetOf":
        other = _eval(args[0], focus, this, env)
        return [all(x in other for x in base)]
    if name == "startsWith":
        (prefix,) = _eval(args[0], focus, this, env) or [None]
        if not base or prefix is None:
            return []
        return [isinstance(base[0], str) and base[0].startswith(prefix)]
    if name == "memberOf":
        (url,) = _eval(args[0], focus, this, env) or [None]
        if not base:
            return []
        results = [env.member_of(item, url) for item in base]
        if any(r is None for r in results):
            raise Unknown(f"value set {url} is not known")
        return [any(results)]
    if name == "resolve":
        return [x for item in base for x in _resolve(item, env)]
    raise Unknown(f"function {name}()")


def holds(expr: str, context: Any, resource: dict, member_of: Callable[[Any, str], bool | None]) -> bool | None:
    """Evaluate invariant ``expr`` on ``context`` (an element of ``resource``, or the resource).

    True or False when the result is established; None when it is not (see module doc).
    An empty result counts as satisfied, as FHIR validators treat it.
    """
    try:
        result = _eval(_parse(expr), [context], context, _Env(context, resource, member_of))
        value = _bool(result)
    except Unknown:
        return None
    return value is not False
