"""Hypothesis strategies for schema tables (reusable by every template's tests).

`schema_tables(["partb", "partb_line"])` draws every schema column of those
tables with hostile values: strings with quotes, backslashes, controls, line
separators and astral characters; missing values everywhere; dates at the ends
of years 1..9999; zero, negative and huge amounts. Child tables are linked to
their parent per `schema.LINKS`; linked tables not asked for are present and
empty, so templates bind.

Values must still be *FHIR-typed* where a template writes them into typed
elements, so the caller says which string columns land in `code`s (no
surrounding whitespace) and which in `id`s / references (`[A-Za-z0-9.-]`);
`template_columns(template)` reads that off a template. Columns in `present`
are never missing (what the store guarantees, e.g. the claim id).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import numpy as np
from hypothesis import strategies as st

from fhirhose.columns import NO_DATE, NO_NUM, Cat, Date, Num, Str, Time, date_to_days
from fhirhose.store import schema
from fhirhose.template import Each, Group, If, IfHas, IfMissing, Template, Val

__all__ = ["schema_tables", "template_columns", "hostile_text", "code_text", "id_text", "CODE_KEYS", "ID_KEYS"]

NASTY = ['"', "\\", "\n\r\t", "\x00", "\x01\x7f", "💡", "é", "</script>", "\\u0000", "{}", "[", ",", " ", "\ufeff"]


def _fhir_string_char(ch: str) -> bool:
    # FHIR `string` is `[ \r\n\t\S]+`: no whitespace but space, CR, LF and TAB (so no
    # U+2028, NBSP, VT...); controls that are not whitespace (NUL) are admitted.
    return ch in " \r\n\t" or not ch.isspace()


hostile_text = st.text(
    alphabet=st.characters(codec="utf-8").filter(_fhir_string_char), min_size=1, max_size=12
) | st.sampled_from(NASTY)
# A FHIR `code`: no whitespace or controls at all (still quotes, backslashes, astral characters).
code_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Z", "C")), min_size=1, max_size=10
) | st.sampled_from(['"', "\\", "💡", "é", "</x>", "A\\\"B"])
id_text = st.text(alphabet="ABCXYZabcxyz0123456789-.", min_size=1, max_size=40)

_MIN_DAY = date_to_days(dt.date(1, 1, 1))
_MAX_DAY = date_to_days(dt.date(9999, 12, 31))
_EDGE_DAYS = [_MIN_DAY, _MAX_DAY, -1, 0, date_to_days("2000-02-29"), date_to_days("1900-03-01")]
days = st.sampled_from(_EDGE_DAYS) | st.integers(_MIN_DAY, _MAX_DAY)
millis = st.sampled_from([0, -1, _MIN_DAY * 86_400_000, (_MAX_DAY + 1) * 86_400_000 - 1]) | st.integers(
    _MIN_DAY * 86_400_000, (_MAX_DAY + 1) * 86_400_000 - 1
)
amounts = st.sampled_from([0, -1, 1, -(2**62), 2**62, 99, -10_000]) | st.integers(-(2**62), 2**62)

# Template keys whose values are FHIR codes / ids.
CODE_KEYS = frozenset({"code", "valueCode"})
ID_KEYS = frozenset({"id", "reference"})


def template_columns(*templates: Template) -> tuple[set[str], set[str]]:
    """(code columns, id columns) as "table.col": the string columns the templates write
    into `code` / `id` and `reference` elements."""
    codes: set[str] = set()
    ids: set[str] = set()

    def walk(node, table: str) -> None:
        if isinstance(node, Val):
            name = node.col if "." in node.col else f"{table}.{node.col}"
            if node.key in CODE_KEYS:
                codes.add(name)
            elif node.key in ID_KEYS:
                ids.add(name)
        elif isinstance(node, Each):
            for child in node.children:
                walk(child, node.table)
        elif isinstance(node, (Group, If, IfHas, IfMissing)):
            for child in node.children:
                walk(child, table)

    for t in templates:
        for m in t.members:
            walk(m, t.root)
    return codes, ids


def _nullable(strategy, present: bool):
    return strategy if present else st.none() | strategy


@st.composite
def _column(draw, table: str, name: str, kind: str, n: int, *, present: bool, codes, ids, overrides):
    qualified = f"{table}.{name}"
    if qualified in overrides or name in overrides:
        values = draw(st.lists(_nullable(overrides.get(qualified, overrides.get(name)), present), min_size=n, max_size=n))
        return schema.column_for(kind, values)
    if kind == "str":
        text = id_text if qualified in ids else code_text if qualified in codes else hostile_text
        return Str.from_list(draw(st.lists(_nullable(text, present), min_size=n, max_size=n)))
    if kind == "cat":
        labels = draw(st.lists(code_text, min_size=1, max_size=4, unique=True))
        values = draw(st.lists(_nullable(st.sampled_from(labels), present), min_size=n, max_size=n))
        return Cat.from_list(values, [""] + labels)
    if kind == "date":
        values = draw(st.lists(_nullable(days, present), min_size=n, max_size=n))
        return Date(np.array([NO_DATE if v is None else v for v in values], np.int32))
    if kind == "time":
        values = draw(st.lists(_nullable(millis, present), min_size=n, max_size=n))
        return Time(np.array([NO_NUM if v is None else v for v in values], np.int64))
    values = draw(st.lists(_nullable(amounts, present), min_size=n, max_size=n))
    arr = np.array([NO_NUM if v is None else v for v in values], np.int64)
    return {"money": Num(arr, 2), "int": Num(arr, 0), "qty": Num(arr, 4, trim=True)}[kind]


@st.composite
def schema_tables(
    draw,
    table_names: Iterable[str],
    *,
    max_rows: int = 3,
    max_children: int = 3,
    min_children: int = 0,
    present: Iterable[str] = (),
    codes: Iterable[str] = (),
    ids: Iterable[str] = (),
    overrides: Mapping[str, st.SearchStrategy] | None = None,
) -> dict:
    """Draw {name: Table} for `table_names` (the first is the root), schema-complete.

    `present`, `codes`, `ids`: column names ("col" for any table or "table.col");
    `overrides`: column name → strategy of Python values (`schema.column_for` input);
    `min_children`: fewest child rows per parent row."""
    names = list(table_names)
    present = set(present)
    overrides = dict(overrides or {})
    out: dict = {}
    counts = {names[0]: draw(st.integers(1, max_rows))}
    links: dict[str, dict[str, np.ndarray]] = {}
    # Parents before children: the child's row count is the sum of the parent's link counts.
    for name in names:
        n = counts.get(name, 0)
        links[name] = {}
        for child in schema.LINKS.get(name, ()):
            if child in names:
                per_row = draw(st.lists(st.integers(min_children, max_children), min_size=n, max_size=n))
                counts[child] = int(sum(per_row))
                links[name][child] = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int64)
    for name in names:
        n = counts.get(name, 0)
        cols = {
            spec.name: draw(
                _column(
                    name,
                    spec.name,
                    spec.kind,
                    n,
                    present=spec.name in present or f"{name}.{spec.name}" in present,
                    codes=set(codes),
                    ids=set(ids),
                    overrides=overrides,
                )
            )
            for spec in schema.TABLES[name]
        }
        out[name] = schema.complete(name, cols, n, links[name])
    for name in names:
        for child in schema.LINKS.get(name, ()):
            out.setdefault(child, schema.complete(child, {}, 0))
    return out
