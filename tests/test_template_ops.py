"""Strong `Seq`, `Tick` and `IfMissing`: cross-references and fallbacks, identical in both backends."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhirhose import Str, Table, TemplateError
from fhirhose.template import Arr, Each, IfHas, IfMissing, K, Obj, Seq, Template, Tick, Val

from .support.backends import BACKENDS


def both(template, tables):
    outs = []
    for core in BACKENDS:
        out = core.OutBuffer()
        plan = template.bind(tables)
        core.Writer(plan).write(np.arange(plan.root.n), out)
        outs.append(out.getvalue())
    assert all(o == outs[0] for o in outs), outs
    return [json.loads(line) for line in outs[0].splitlines()]


def test_weak_seq_alone_is_dropped_strong_seq_is_kept():
    t = Table("c", {"x": Str.from_list(["x"])})
    tpl = Template("t", "c", Arr("weak", Seq(None, 0)), Arr("strong", Seq(None, 1, strong=True)), Val("x", "x"))
    assert both(tpl, {"c": t}) == [{"strong": [1], "x": "x"}]


def test_tick_advances_silently_and_rolls_back_with_its_group():
    t = Table("c", {"x": Str.from_list(["x"]), "e": Str.from_list([""])})
    tpl = Template(
        "t",
        "c",
        Tick(0),
        Tick(0),
        # Dropped (nothing strong): its tick is undone with it.
        Obj("gone", Tick(0), Val("e", "e")),
        Val("n", "x"),
        Seq("seq", 0),
    )
    assert both(tpl, {"c": t}) == [{"n": "x", "seq": 3}]


def test_counter_bounds_are_checked():
    t = Table("c", {"x": Str.from_list(["x"])})
    with pytest.raises(TemplateError, match="Tick counter 8"):
        Template("t", "c", Tick(8)).bind({"c": t})
    with pytest.raises(TemplateError, match="Seq counter -1"):
        Template("t", "c", Seq("s", -1, strong=True)).bind({"c": t})


@given(st.lists(st.tuples(st.sampled_from(["", "A", "B"]), st.sampled_from(["", "C"])), max_size=6),
       st.lists(st.sampled_from(["", "H"]), min_size=2, max_size=2))
def test_item_references_match_entries(lines, header):
    """The shape EOB templates use: header entries, then per-line entries numbered by one
    counter; items replay the header with Ticks and number their references with a second
    counter under the same conditions, so every reference names the entry of its own line."""
    claims = Table("c", {"h1": Str.from_list([header[0]]), "h2": Str.from_list([header[1]])},
                   links={"l": [0, len(lines)]})
    line_t = Table("l", {"a": Str.from_list([a for a, _ in lines]), "b": Str.from_list([b for _, b in lines]),
                         "n": Str.from_list([str(i) for i in range(len(lines))])})
    tpl = Template(
        "t",
        "c",
        Arr(
            "entry",
            IfHas("c.h1", Obj(None, Seq("sequence", 0), Val("v", "c.h1"))),
            IfHas("c.h2", Obj(None, Seq("sequence", 0), Val("v", "c.h2"))),
            Each("l", IfHas("a", Obj(None, Seq("sequence", 0), Val("v", "a"), Val("line", "n"))),
                 IfHas("b", Obj(None, Seq("sequence", 0), Val("v", "b"), Val("line", "n")))),
        ),
        IfHas("h1", Tick(1)),
        IfHas("h2", Tick(1)),
        Arr("item", Each("l", Obj(None, Val("line", "n"), Arr("ref", IfHas("a", Seq(None, 1, strong=True)),
                                                              IfHas("b", Seq(None, 1, strong=True)))))),
    )
    doc = both(tpl, {"c": claims, "l": line_t})[0]
    entries = {e["sequence"]: e for e in doc.get("entry", [])}
    assert sorted(entries) == list(range(1, len(entries) + 1))
    for item in doc.get("item", []):
        want = [entries[r]["v"] for r in item.get("ref", [])]
        i = int(item["line"])
        assert want == [v for v in lines[i] if v]
        assert all(entries[r]["line"] == item["line"] for r in item.get("ref", []))


@given(st.lists(st.sampled_from(["", "x", "💡\""]), max_size=5), st.lists(st.sampled_from(["", "d"]), max_size=5))
def test_if_missing_is_the_complement_of_if_has(values, other):
    n = min(len(values), len(other))
    t = Table("c", {"v": Str.from_list(values[:n]), "o": Str.from_list(other[:n])})
    tpl = Template(
        "t",
        "c",
        Obj("ref", IfHas("v", Val("id", "v")), IfMissing("v", K("absent", True))),
        IfMissing("o", Arr("gone", Val(None, "o"))),
    )
    docs = both(tpl, {"c": t})
    assert len(docs) == n
    for v, doc in zip(values[:n], docs, strict=True):
        assert doc["ref"] == ({"id": v} if v else {"absent": True})
        assert "gone" not in doc
