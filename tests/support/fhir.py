"""Helpers for template tests: write with every backend, parse, validate."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import numpy as np

from fhirhose.fhir import c4bb
from fhirhose.fhir.validate import validate_r4
from fhirhose.template import Template

from .backends import BACKENDS

__all__ = ["write_all", "render", "render_both", "assert_valid", "assert_conformant", "values_at", "same_value"]


def write_all(template, tables, rows=None) -> list[dict]:
    """NDJSON of `template` over `rows` (default: all root rows) from every backend;
    asserts the bytes are identical and every line parses; returns the documents."""
    plan = template.bind(tables)
    rows = np.arange(plan.root.n, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    outs = []
    for core in BACKENDS:
        out = core.OutBuffer()
        assert core.Writer(plan).write(rows, out) == len(rows)
        outs.append(out.getvalue())
    assert all(o == outs[0] for o in outs[1:]), f"{template.name}: backends differ"
    lines = outs[0].split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(rows) + 1
    return [json.loads(line) for line in lines[:-1]]


def assert_conformant(doc: dict) -> None:
    """Valid FHIR R4 (fhir.resources) and no C4BB required-element violation."""
    validate_r4(doc)
    problems = c4bb.check(doc)
    assert not problems, problems


def values_at(doc: Any, path: str) -> list:
    """Leaf values at a data-dictionary element path such as
    `item[N].extension[N].valueCoding.code` ("[N]": every element)."""
    nodes = [doc]
    for step in path.split("."):
        key = step.split("[", 1)[0]
        nxt = []
        for node in nodes:
            if isinstance(node, dict) and key in node:
                value = node[key]
                nxt += value if isinstance(value, list) else [value]
        nodes = nxt
    return [n for n in nodes if not isinstance(n, (dict, list))]


def same_value(a: Any, b: Any) -> bool:
    """Equal as JSON values, numbers compared exactly as decimals."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return Decimal(str(a)) == Decimal(str(b))
    return a == b


def render(core, template: Template, tables: dict, rows=None) -> bytes:
    """NDJSON of `template` over `rows` (default: all root rows) from one backend."""
    plan = template.bind(tables)
    out = core.OutBuffer()
    core.Writer(plan).write(np.arange(plan.root.n) if rows is None else rows, out)
    return out.getvalue()


def render_both(template: Template, tables: dict) -> bytes:
    """NDJSON of `template` over all root rows; asserts every backend writes the same bytes."""
    outs = [render(core, template, tables) for core in BACKENDS]
    assert all(o == outs[0] for o in outs), "backends disagree"
    return outs[0]


def assert_valid(line: bytes) -> dict:
    """Parse one NDJSON line; assert it is valid FHIR R4 and C4BB-conformant; return it."""
    doc = json.loads(line)
    validate_r4(doc)
    c4bb.assert_conformant(doc)
    return doc
