"""Hypothesis strategies: random schema-complete claim tables with hostile values.

Every schema column of the root table and its children is drawn: missing values,
hostile strings (quotes, backslashes, markup, non-BMP characters), edge dates,
zero/negative/huge amounts. Columns a real CCLF row always carries (`required`)
are never missing, and values keep to what their FHIR datatype can hold (codes
without whitespace, ids from the id alphabet, counts non-negative), so that a
failure means a template bug, not impossible input.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from hypothesis import strategies as st

from fhirhose.columns import NO_NUM, Time
from fhirhose.store import schema

_TOKEN_CHARS = st.characters(codec="utf-8", categories=("L", "N", "P", "S"))
# Codes: no whitespace (FHIR `code`); hostile otherwise.
tokens = st.text(_TOKEN_CHARS, min_size=1, max_size=10) | st.sampled_from(['"', "\\", "</script>", "💡", "é", "0", "01"])
# Free text (identifier values, states): inner single spaces allowed.
texts = st.builds(lambda a, b: f"{a} {b}" if b else a, tokens, st.sampled_from(["", "x", '"q"']))
ids = st.from_regex(r"[A-Za-z0-9\-.]{1,20}", fullmatch=True)
dates = st.sampled_from(
    [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1970, 1, 1), dt.date(2000, 2, 29), dt.date(2024, 2, 29)]
) | st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31))
money = st.sampled_from([0, -1, 1, -(10**12), 10**13]) | st.integers(-(10**9), 10**9)
counts = st.integers(0, 10**6)
quantities = st.integers(0, 10**9)  # qty scale 4: up to 100000.0000


def _draw_value(draw, kind: str, name: str, domains: dict):
    if name in domains:
        return draw(domains[name])
    if kind == "str":
        return draw(ids) if name in ("clm_id", "bene_id", "clm_grp_id") else draw(texts)
    if kind == "cat":
        return draw(tokens)
    if kind == "date":
        return draw(dates)
    if kind == "money":
        return draw(money)
    if kind == "int":
        return draw(st.integers(1, 999)) if name in ("clm_line_num", "clm_val_sqnc_num") else draw(counts)
    if kind == "qty":
        return draw(quantities)
    raise AssertionError(kind)


def _column(kind: str, values: list):
    if kind in ("money", "qty"):
        # Drawn as scaled integers (cents, 1/10000 units), so edge values are exact.
        nums = schema.empty_column(kind, len(values))
        nums.values[:] = [NO_NUM if v is None else v for v in values]
        return nums
    return schema.column_for(kind, values)


def _table(draw, name: str, n: int, required: frozenset, domains: dict, links=None):
    cols = {}
    for col, kind in schema.kinds(name).items():
        if kind == "time":
            cols[col] = Time(np.full(n, 1_700_000_000_000 + draw(st.integers(0, 10**10)), np.int64))
            continue
        values = []
        for _ in range(n):
            present = col in required or draw(st.booleans())
            values.append(_draw_value(draw, kind, col, domains) if present else None)
        cols[col] = _column(kind, values)
    return schema.complete(name, cols, n, links)


@st.composite
def claim_tables(draw, root: str, required: frozenset = frozenset(), domains: dict | None = None,
                 children_required: dict | None = None, min_children: dict | None = None, max_rows: int = 3):
    """{table: Table} for `root` and its schema children (LINKS), 1..max_rows root rows."""
    domains = domains or {}
    children_required = children_required or {}
    min_children = min_children or {}
    n = draw(st.integers(1, max_rows))
    tables, links = {}, {}
    for child in schema.LINKS.get(root, ()):
        counts = draw(st.lists(st.integers(min_children.get(child, 0), 3), min_size=n, max_size=n))
        links[child] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        tables[child] = _table(draw, child, int(links[child][-1]), children_required.get(child, frozenset()), domains)
    tables[root] = _table(draw, root, n, required, domains, links)
    return tables
