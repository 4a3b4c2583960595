"""Baseline for the benchmarks: the conventional way, a Python dict per resource + orjson.

It walks the same template the writers run, so it builds exactly the same
resource shape; column values are pre-converted to Python lists once (which
favours the baseline: no numpy scalar access per record).
"""

from __future__ import annotations

import json

import orjson

from fhirhose.columns import NO_DATE, NO_NUM, Table
from fhirhose import _core_py
from fhirhose.template import Each, If, IfHas, K, Map, Raw, Seq, Template, Val, _constant_text, _Group, _Obj

_EMPTY = object()


class DictBuilder:
    def __init__(self, template: Template, tables: dict[str, Table]):
        self.t = template
        self.tables = tables
        self.cols: dict[tuple[str, str], list] = {}
        self.links: dict[tuple[str, str], list] = {}
        for name, tab in tables.items():
            for cname, col in tab.columns.items():
                self.cols[(name, cname)] = self._values(col)
            for child, off in tab.links.items():
                self.links[(name, child)] = off.tolist()

    @staticmethod
    def _values(col):
        if col.kind == "str":
            return col.to_list()
        if col.kind == "cat":
            return col.to_list()
        if col.kind == "date":
            return [None if v == NO_DATE else _core_py.format_date(v).decode() for v in col.values.tolist()]
        if col.kind == "time":
            return [None if v == NO_NUM else _core_py.format_time(v).decode() for v in col.values.tolist()]
        scale = 10**col.scale
        return [None if v == NO_NUM else (v / scale if col.scale else v) for v in col.values.tolist()]

    def build(self, row: int) -> dict:
        ctx = {self.t.root: row}
        counters = [0] * 8
        return self._members(self.t.members, [self.t.root], ctx, counters, {})

    def dumps(self, rows) -> bytes:
        return b"".join(orjson.dumps(self.build(r)) + b"\n" for r in rows)

    def _col(self, spec, stack, ctx):
        tname, cname = spec.split(".", 1) if "." in spec else (stack[-1], spec)
        return self.cols[(tname, cname)][ctx[tname]], tname, cname

    def _members(self, nodes, stack, ctx, counters, into):
        for n in nodes:
            self._member(n, stack, ctx, counters, into)
        return into


    def _member(self, n, stack, ctx, counters, into):
        if isinstance(n, K):
            into[n.key] = n.value
        elif isinstance(n, Val):
            v, _, _ = self._col(n.col, stack, ctx)
            if v not in (None, ""):
                into[n.key] = f"{n.prefix}{v}{n.suffix}" if (n.prefix or n.suffix or n.quote) else v
        elif isinstance(n, Map):
            v, _, _ = self._col(n.col, stack, ctx)
            node = (n.mapping(v) if callable(n.mapping) else n.mapping.get(v, n.default)) if v else None
            if node is not None:
                into.update(json.loads("{" + _constant_text(node) + "}"))
        elif isinstance(n, _Group):
            val = self._group(n, stack, ctx, counters)
            if val is not _EMPTY:
                into[n.key] = val
        elif isinstance(n, If):
            v, _, _ = self._col(n.col, stack, ctx)
            if v in n.labels:
                self._members(n.children, stack, ctx, counters, into)
        elif isinstance(n, IfHas):
            v, _, _ = self._col(n.col, stack, ctx)
            if v not in (None, ""):
                self._members(n.children, stack, ctx, counters, into)
        elif isinstance(n, Seq):
            counters[n.counter] += 1
            into[n.key] = counters[n.counter]
        elif isinstance(n, Raw):
            pass

    def _group(self, g, stack, ctx, counters):
        if isinstance(g, _Obj):
            d = self._members(g.children, stack, ctx, counters, {})
            weak = {c.key for c in g.children if (isinstance(c, K) and c.weak) or isinstance(c, Seq)}
            return d if any(k not in weak for k in d) else _EMPTY
        items: list = []
        for n in g.children:
            self._element(n, stack, ctx, counters, items)
        return items if items else _EMPTY

    def _element(self, n, stack, ctx, counters, items):
        if isinstance(n, K):
            items.append(n.value)
        elif isinstance(n, Val):
            v, _, _ = self._col(n.col, stack, ctx)
            if v not in (None, ""):
                items.append(f"{n.prefix}{v}{n.suffix}" if (n.prefix or n.suffix) else v)
        elif isinstance(n, _Group):
            val = self._group(n, stack, ctx, counters)
            if val is not _EMPTY:
                items.append(val)
        elif isinstance(n, Each):
            parent = stack[-1]
            off = self.links[(parent, n.table)]
            r = ctx[parent]
            for child in range(off[r], off[r + 1]):
                ctx[n.table] = child
                for c in n.children:
                    self._element(c, stack + [n.table], ctx, counters, items)
        elif isinstance(n, (If, IfHas)):
            v, _, _ = self._col(n.col, stack, ctx)
            ok = (v in n.labels) if isinstance(n, If) else v not in (None, "")
            if ok:
                for c in n.children:
                    self._element(c, stack, ctx, counters, items)
        elif isinstance(n, Map):
            v, _, _ = self._col(n.col, stack, ctx)
            node = (n.mapping(v) if callable(n.mapping) else n.mapping.get(v, n.default)) if v else None
            if node is not None:
                items.append(json.loads(_constant_text(node)))
