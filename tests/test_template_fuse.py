"""The plan's peephole fusion (`Template.bind(fuse=True)`) writes the same bytes as the
unfused ops, in both backends: on random templates and on every template fhirhose emits."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhirhose import synth
from fhirhose.columns import NO_NUM, Cat, Date, Num, Str, Table, Time
from fhirhose.fhir.registry import SOURCES
from fhirhose.template import Arr, Each, If, IfHas, IfMissing, K, Map, Obj, Seq, Template, Tick, Val

from .support.backends import BACKENDS

LABELS = ["", "A", "B\"", "C"]


def render(core, plan, rows) -> bytes:
    out = core.OutBuffer(64)
    core.Writer(plan).write(rows, out)
    return out.getvalue()


def assert_fusion_keeps_bytes(template: Template, tables, rows=None) -> tuple[int, int]:
    """Fused and unfused plans give the same bytes in every backend; (fused, unfused) op counts."""
    fused, plain = template.bind(tables), template.bind(tables, fuse=False)
    rows = np.arange(fused.root.n, dtype=np.int64) if rows is None else rows
    want = render(BACKENDS[0], plain, rows)
    for core in BACKENDS:
        assert render(core, plain, rows) == want, core.__name__
        assert render(core, fused, rows) == want, core.__name__
    return len(fused.ops) // 4, len(plain.ops) // 4


# ---- random templates over random tables

@st.composite
def tables(draw):
    n = draw(st.integers(1, 6))
    maybe_str = st.sampled_from(["", "x", 'q"', "long value, 17+ b", "\n"])
    counts = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    m = int(offsets[-1])
    parent = Table(
        "p",
        {
            "s": Str.from_list(draw(st.lists(maybe_str, min_size=n, max_size=n))),
            "d": Date.from_list(draw(st.lists(st.sampled_from([None, "2024-02-29", "1969-12-31"]), min_size=n, max_size=n))),
            "n": Num(np.array(draw(st.lists(st.sampled_from([NO_NUM, 0, -5, 12345]), min_size=n, max_size=n)), np.int64), 2),
            "t": Time(np.array(draw(st.lists(st.sampled_from([NO_NUM, 0, 1_700_000_000_123]), min_size=n, max_size=n)), np.int64)),
            "k": Cat.from_list(draw(st.lists(st.sampled_from(LABELS), min_size=n, max_size=n)), LABELS),
        },
        links={"c": offsets},
    )
    child = Table("c", {"s": Str.from_list(draw(st.lists(maybe_str, min_size=m, max_size=m)))})
    return {"p": parent, "c": child}


KEYS = st.sampled_from(["a", "b", "c"])


def nodes(keyed: bool, cols: list[str], depth: int):
    """A node for an object (`keyed`) or an array; `cols` are the columns in scope."""
    key = KEYS if keyed else st.none()
    cat = "k" if "k" in cols else "p.k"
    leaf = st.one_of(
        st.builds(K, key, st.sampled_from([1, "v", True]), st.booleans()),
        st.builds(Val, key, st.sampled_from(cols)),
        st.builds(Seq, key, st.integers(0, 1), st.booleans()),
        st.builds(Tick, st.integers(0, 1)),
        st.builds(lambda k: Map(cat, {"A": K(k, "mapped") if k else K(None, "mapped")}), key),
    )
    if depth == 0:
        return leaf
    sub = depth - 1
    keyed_kids = st.lists(st.deferred(lambda: nodes(True, cols, sub)), min_size=1, max_size=3)
    here_kids = st.lists(st.deferred(lambda: nodes(keyed, cols, sub)), min_size=1, max_size=3)
    array_kids = st.lists(st.deferred(lambda: nodes(False, cols, sub)), min_size=1, max_size=3)
    guards = st.sampled_from([c for c in cols if "." not in c and c != "k"] or cols)
    containers = [
        st.builds(lambda k, kids: Obj(k, *kids), key, keyed_kids),
        st.builds(lambda k, kids: Arr(k, *kids), key, array_kids),
        st.builds(lambda c, kids: IfHas(c, *kids), st.sampled_from(cols), here_kids),
        st.builds(lambda c, kids: IfMissing(c, *kids), guards, here_kids),
        st.builds(lambda labs, kids: If(cat, labs, *kids), st.sets(st.sampled_from(LABELS)), here_kids),
    ]
    if "k" in cols and not keyed:  # in the parent table (Each does not nest here)
        child_kids = st.lists(nodes(False, ["s", "p.n", "p.k"], sub), min_size=1, max_size=3)
        containers.append(st.builds(lambda kids: Each("c", *kids), child_kids))
    return st.one_of(leaf, *containers)


PARENT_COLS = ["s", "d", "n", "t", "k"]


@settings(max_examples=300, deadline=None)
@given(tables(), st.lists(nodes(True, PARENT_COLS, 3), min_size=1, max_size=5))
def test_random_templates_write_the_same_bytes_fused(tabs, members):
    assert_fusion_keeps_bytes(Template("t", "p", *members), tabs)


def test_fusion_patterns_each_remove_ops():
    """Each pattern on its own: guarded value, one-value group, constant + Seq, nested
    groups, constant + raw."""
    t = Table("p", {"s": Str.from_list(["x", ""]), "n": Num(np.array([5, NO_NUM], np.int64), 2)})
    cases = [
        IfHas("n", Obj("amount", K("category", "c"), Val("value", "n"))),
        Obj("o", Val("v", "s"), Obj("w", K("weak", 1, weak=True))),
        Arr("a", IfHas("s", Obj(None, K("first", 1), Seq("sequence", 0), Val("v", "s")))),
        Obj("outer", Obj("inner", Val("v", "s"), Val("m", "n"))),
        Arr("a", Obj(None, Seq("sequence", 0, strong=True), K("x", 1))),
    ]
    for case in cases:
        fused, plain = assert_fusion_keeps_bytes(Template("t", "p", case), {"p": t})
        assert fused < plain, case


# ---- every template fhirhose emits, over a synthetic population

@pytest.fixture(scope="module")
def population():
    return synth.generate(40, seed=11).tables


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.template.name)
def test_registry_templates_write_the_same_bytes_fused(source, population):
    table = population[source.table]
    rows = np.arange(table.n, dtype=np.int64)
    if source.select is not None:
        rows = source.select(table, rows)
    assert_fusion_keeps_bytes(source.template, population, rows)


# ---- short strings read as whole words near the end of their column buffer

@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 24])
def test_strings_at_the_end_of_the_column_buffer(n):
    values = []
    for pos in range(n):
        for ch in ('"', "\\", "\x01", "\n", "é"):
            values.append("a" * pos + ch + "b" * (n - pos - 1))
    values.append("z" * n)
    for last in values:  # each value once as the last (only partly word-readable) string
        t = Table("p", {"s": Str.from_list([*values[:3], last])})
        outs = [render(core, Template("t", "p", Val("s", "s")).bind({"p": t}), np.arange(t.n)) for core in BACKENDS]
        assert all(o == outs[0] for o in outs), last
