"""Baseline for the benchmarks: the conventional way, a Python dict per resource + orjson.

The template is compiled once into Python closures (what a hand-written builder
does: fetch a value, test it, set a key), so the baseline builds exactly the
shape the writers emit. Column values are converted to Python lists up front,
which favours the baseline (no numpy scalar access per record).
"""

from __future__ import annotations

import json

import orjson

from .. import _core_py
from ..columns import NO_DATE, NO_NUM, Table
from ..template import Each, Group, If, IfHas, IfMissing, K, Map, ObjGroup, Seq, Template, Tick, Val, constant_text

__all__ = ["DictBuilder"]


def _values(col) -> list:
    if col.kind in ("str", "cat"):
        return col.to_list()
    if col.kind == "date":
        return [None if v == NO_DATE else _core_py.format_date(v).decode() for v in col.values.tolist()]
    if col.kind == "time":
        return [None if v == NO_NUM else _core_py.format_time(v).decode() for v in col.values.tolist()]
    scale = 10**col.scale
    return [None if v == NO_NUM else (v / scale if col.scale else v) for v in col.values.tolist()]


class DictBuilder:
    """`dumps(rows)`: NDJSON of the template's resources via dicts and orjson."""

    def __init__(self, template: Template, tables: dict[str, Table]):
        self.template = template
        self.tables = tables
        self._cols: dict[tuple[str, str], list] = {}
        self._root = template.root
        self._members = [self._member(n, [template.root]) for n in template.members]

    def build(self, row: int) -> dict:
        rows = {self._root: row}
        counters = [0] * 8
        doc: dict = {}
        for f in self._members:
            f(doc, rows, counters)
        return doc

    def dumps(self, rows) -> bytes:
        dumps, build = orjson.dumps, self.build
        return b"".join([dumps(build(r)) + b"\n" for r in rows])

    # -- compilation to closures --------------------------------------------------
    def _column(self, spec: str, ctx: list[str]) -> tuple[str, list]:
        tname, cname = spec.split(".", 1) if "." in spec else (ctx[-1], spec)
        key = (tname, cname)
        if key not in self._cols:
            self._cols[key] = _values(self.tables[tname].columns[cname])
        return tname, self._cols[key]

    def _value(self, n: Val, ctx):
        tname, values = self._column(n.col, ctx)
        pre, suf = n.prefix, n.suffix
        as_text = bool(pre or suf or n.quote)

        def get(rows):
            v = values[rows[tname]]
            if v is None or v == "":
                return None
            return f"{pre}{v}{suf}" if as_text else v

        return get

    def _cond(self, n, ctx):
        tname, values = self._column(n.col, ctx)
        if isinstance(n, If):
            labels = n.labels
            return lambda rows: values[rows[tname]] in labels
        if isinstance(n, IfHas):
            return lambda rows: values[rows[tname]] not in (None, "")
        return lambda rows: values[rows[tname]] in (None, "")

    def _map(self, n: Map, ctx, as_member: bool):
        tname, values = self._column(n.col, ctx)
        table: dict = {}
        for label in set(values):
            if not label:
                continue
            node = n.mapping(label) if callable(n.mapping) else n.mapping.get(label, n.default)
            if node is not None:
                text = constant_text(node)
                table[label] = json.loads("{" + text + "}") if as_member else json.loads(text)
        return tname, values, table

    def _member(self, n, ctx):
        """A closure adding member(s) to a dict: f(into, rows, counters)."""
        if isinstance(n, K):
            key, value = n.key, n.value
            return lambda into, rows, cnt: into.__setitem__(key, value)
        if isinstance(n, Val):
            get, key = self._value(n, ctx), n.key

            def val(into, rows, cnt):
                v = get(rows)
                if v is not None:
                    into[key] = v

            return val
        if isinstance(n, Map):
            tname, values, table = self._map(n, ctx, True)

            def mapped(into, rows, cnt):
                d = table.get(values[rows[tname]])
                if d:
                    into.update(d)

            return mapped
        if isinstance(n, Group):
            make, key = self._group(n, ctx), n.key

            def group(into, rows, cnt):
                v = make(rows, cnt)
                if v is not None:
                    into[key] = v

            return group
        if isinstance(n, (If, IfHas, IfMissing)):
            test, body = self._cond(n, ctx), [self._member(c, ctx) for c in n.children]

            def cond(into, rows, cnt):
                if test(rows):
                    for f in body:
                        f(into, rows, cnt)

            return cond
        if isinstance(n, (Seq, Tick)):
            k, key, tick = n.counter, getattr(n, "key", None), isinstance(n, Tick)

            def seq(into, rows, cnt):
                cnt[k] += 1
                if not tick:
                    into[key] = cnt[k]

            return seq
        return lambda into, rows, cnt: None

    def _element(self, n, ctx):
        """A closure appending element(s) to a list: f(items, rows, counters)."""
        if isinstance(n, K):
            value = n.value
            return lambda items, rows, cnt: items.append(value)
        if isinstance(n, Val):
            get = self._value(n, ctx)

            def val(items, rows, cnt):
                v = get(rows)
                if v is not None:
                    items.append(v)

            return val
        if isinstance(n, Group):
            make = self._group(n, ctx)

            def group(items, rows, cnt):
                v = make(rows, cnt)
                if v is not None:
                    items.append(v)

            return group
        if isinstance(n, Each):
            parent, child = ctx[-1], n.table
            off = self.tables[parent].links[child].tolist()
            body = [self._element(c, ctx + [child]) for c in n.children]

            def each(items, rows, cnt):
                r = rows[parent]
                for i in range(off[r], off[r + 1]):
                    rows[child] = i
                    for f in body:
                        f(items, rows, cnt)

            return each
        if isinstance(n, (If, IfHas, IfMissing)):
            test, body = self._cond(n, ctx), [self._element(c, ctx) for c in n.children]

            def cond(items, rows, cnt):
                if test(rows):
                    for f in body:
                        f(items, rows, cnt)

            return cond
        if isinstance(n, Map):
            tname, values, table = self._map(n, ctx, False)

            def mapped(items, rows, cnt):
                v = table.get(values[rows[tname]])
                if v is not None:
                    items.append(v)

            return mapped
        if isinstance(n, (Seq, Tick)):
            k, tick = n.counter, isinstance(n, Tick)

            def seq(items, rows, cnt):
                cnt[k] += 1
                if not tick:
                    items.append(cnt[k])

            return seq
        return lambda items, rows, cnt: None

    def _group(self, g: Group, ctx):
        """A closure returning the group's value, or None when it holds only weak members."""
        if isinstance(g, ObjGroup):
            body = [self._member(c, ctx) for c in g.children]
            weak = frozenset(
                c.key for c in g.children if (isinstance(c, K) and c.weak) or (isinstance(c, Seq) and not c.strong)
            )

            def obj(rows, cnt):
                d: dict = {}
                for f in body:
                    f(d, rows, cnt)
                return d if d.keys() - weak else None

            return obj
        body = [self._element(c, ctx) for c in g.children]

        def arr(rows, cnt):
            items: list = []
            for f in body:
                f(items, rows, cnt)
            return items or None

        return arr
