"""The template interpreter: compiled core vs twin, formatting, escaping, group rules."""

import datetime as dt
import json
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fhirhose
from fhirhose import NO_DATE, NO_NUM, BatchError, Cat, Date, Num, Str, Table, TemplateError, Time, _core_py
from fhirhose.template import Arr, Each, If, IfHas, K, Map, Obj, Seq, Template, Val

from .support.backends import BACKENDS


def run(core, template, tables, rows=None):
    plan = template.bind(tables)
    out = core.OutBuffer()
    root = plan.root
    core.Writer(plan).write(np.arange(root.n) if rows is None else rows, out)
    return out.getvalue()


def both(template, tables, rows=None):
    outs = [run(c, template, tables, rows) for c in BACKENDS]
    assert all(o == outs[0] for o in outs), outs
    return outs[0]


def test_backend_is_reported():
    assert fhirhose.backend in ("cext", "py")


def test_formatting_matches_stdlib(core):
    for days in (NO_DATE + 1 + 0, -719162, -1, 0, 59, 60, 365 * 30, 2932896):
        if days < -719162:
            continue
        want = (dt.date(1970, 1, 1) + dt.timedelta(days=days)).isoformat().encode()
        assert core.format_date(days) == want
    assert core.format_time(1700000000123) == b"2023-11-14T22:13:20.123+00:00"
    assert core.format_time(-1) == b"1969-12-31T23:59:59.999+00:00"
    assert core.format_num(12345, 2) == b"123.45"
    assert core.format_num(-5, 2) == b"-0.05"
    assert core.format_num(0, 2) == b"0.00"
    assert core.format_num(12500, 4, True) == b"1.25"
    assert core.format_num(10000, 4, True) == b"1"
    assert core.format_num(-(2**63) + 1, 0) == str(-(2**63) + 1).encode()
    assert core.escape_utf8('a"b\\c\n\x00\x1f é 💡'.encode()) == 'a\\"b\\\\c\\n\\u0000\\u001f é 💡'.encode()


@given(st.integers(min_value=-719162, max_value=2932896))
def test_dates_agree(days):
    want = (dt.date(1970, 1, 1) + dt.timedelta(days=days)).isoformat().encode()
    for c in BACKENDS:
        assert c.format_date(days) == want


@given(st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1), st.integers(0, 18), st.booleans())
def test_numbers_exact(v, scale, trim):
    outs = {c.format_num(v, scale, trim) for c in BACKENDS}
    assert len(outs) == 1
    text = outs.pop()
    assert Decimal(text.decode()) == Decimal(v).scaleb(-scale)
    json.loads(text)


@given(st.text())
def test_escape_round_trips(s):
    for c in BACKENDS:
        assert json.loads(b'"' + c.escape_utf8(s.encode("utf-8", "surrogatepass")) + b'"') == s if _valid(s) else True


@given(st.binary(max_size=300), st.integers(0, 64))
def test_count_newlines_agrees_with_bytes_count(data, cut):
    """Both backends count b"\\n" like bytes.count, on bytes, bytearrays and memoryview slices."""
    want = data.count(b"\n")
    for c in BACKENDS:
        assert c.count_newlines(data) == want
        assert c.count_newlines(bytearray(data)) == want
        assert c.count_newlines(memoryview(data)[cut:]) == data[cut:].count(b"\n")


def _valid(s):
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def test_missing_values_and_empty_groups_are_omitted():
    t = Table(
        "c",
        {
            "s": Str.from_list(["", "x"]),
            "d": Date.from_list([None, "2024-02-29"]),
            "m": Num.from_list([None, "1.5"], 2),
            "k": Cat.from_list(["", "A"]),
        },
    )
    tpl = Template(
        "t",
        "c",
        K("resourceType", "X"),
        Val("s", "s"),
        Val("d", "d"),
        Val("m", "m"),
        Val("k", "k"),
        Obj("o", K("system", "sys", weak=True), Val("code", "s")),
        Arr("a", Obj(None, K("system", "sys", weak=True), Val("code", "k"))),
    )
    lines = both(tpl, {"c": t}).splitlines()
    assert json.loads(lines[0]) == {"resourceType": "X"}
    assert json.loads(lines[1]) == {
        "resourceType": "X",
        "s": "x",
        "d": "2024-02-29",
        "m": 1.5,
        "k": "A",
        "o": {"system": "sys", "code": "x"},
        "a": [{"system": "sys", "code": "A"}],
    }


def test_each_seq_if_map_and_outer_columns():
    claims = Table(
        "c",
        {"id": Str.from_list(["1", "2"]), "st": Cat.from_list(["0", "1"])},
        links={"l": [0, 3, 3]},
    )
    lines = Table("l", {"code": Str.from_list(["A", "", "C"])})
    tpl = Template(
        "t",
        "c",
        Map("st", {"0": K("status", "active"), "1": K("status", "cancelled")}),
        Arr("item", Each("l", Obj(None, Seq("sequence"), Val("code", "code"), Val("claim", "c.id", prefix="C/")))),
        If("st", ["1"], K("cancelled", True)),
        IfHas("id", K("hasId", True)),
    )
    out = [json.loads(x) for x in both(tpl, {"c": claims, "l": lines}).splitlines()]
    # The line with a missing code keeps its claim reference (a value), so it stays.
    assert out[0]["item"] == [
        {"sequence": 1, "code": "A", "claim": "C/1"},
        {"sequence": 2, "claim": "C/1"},
        {"sequence": 3, "code": "C", "claim": "C/1"},
    ]
    assert out[0]["status"] == "active" and "cancelled" not in out[0]
    assert out[1] == {"status": "cancelled", "cancelled": True, "hasId": True}


def test_dropped_group_rolls_back_sequence():
    claims = Table("c", {"x": Str.from_list(["x"])}, links={"l": [0, 3]})
    lines = Table("l", {"code": Str.from_list(["A", "", "C"])})
    tpl = Template(
        "t", "c", Arr("dx", Each("l", Obj(None, Seq("sequence"), Obj("cc", Val("code", "code")))))
    )
    out = json.loads(both(tpl, {"c": claims, "l": lines}))
    assert out["dx"] == [{"sequence": 1, "cc": {"code": "A"}}, {"sequence": 2, "cc": {"code": "C"}}]


def test_rows_select_and_order():
    t = Table("c", {"n": Num.from_list([1, 2, 3])})
    tpl = Template("t", "c", Val("n", "n"))
    assert both(tpl, {"c": t}, np.array([2, 0])) == b'{"n":3}\n{"n":1}\n'
    for c in BACKENDS:
        with pytest.raises(IndexError):
            c.Writer(tpl.bind({"c": t})).write(np.array([3]), c.OutBuffer())


def test_binding_errors_name_the_place():
    t = Table("c", {"n": Num.from_list([1])})
    with pytest.raises(TemplateError, match="c.missing"):
        Template("t", "c", Val("x", "missing")).bind({"c": t})
    with pytest.raises(TemplateError, match="Cat"):
        Template("t", "c", Map("n", {})).bind({"c": t})
    with pytest.raises(TemplateError, match="table 'nope'"):
        Template("t", "nope").bind({"c": t})


@pytest.mark.parametrize("member", [Val("x", "a"), Map("a", {"x": K("m", 1)}), If("a", ["x"], K("c", True))],
                         ids=["Val", "Map", "If"])
def test_a_code_past_its_labels_is_refused_by_both_writers(member):
    """Store tables are opened unchecked (their files are hashed): a damaged one whose Cat code
    outruns its labels must not make a writer read or write past them."""
    cat = Table("c", {"a": Cat(np.array([1, 1], np.uint16), ("", "x"))})
    plan = Template("t", "c", member).bind({"c": cat})
    cat.columns["a"].codes[1] = 7
    for c in (fhirhose.core, _core_py):
        out = c.OutBuffer()
        with pytest.raises(TemplateError, match="Cat code past"):
            c.Writer(plan).write(np.array([0, 1]), out)


def test_batch_validation():
    with pytest.raises(BatchError, match="rows"):
        Table("c", {"a": Num.from_list([1, 2]), "b": Num.from_list([1])})
    with pytest.raises(BatchError, match="decrease"):
        Table("c", {"a": Str(np.array([0, 2, 1]), np.zeros(3, np.uint8))})
    with pytest.raises(BatchError, match="code 5"):
        Table("c", {"a": Cat(np.array([5], np.uint16), ("", "x"))})
    with pytest.raises(BatchError, match="UTF-8"):
        Table("c", {"a": Str(np.array([0, 1]), np.array([0xFF], np.uint8))})
    with pytest.raises(BatchError, match="outside"):
        Table("c", {"a": Date(np.array([10**7], np.int32))})
    with pytest.raises(BatchError, match="offsets"):
        Table("c", {"a": Num.from_list([1])}, links={"l": [0]})
    assert isinstance(BatchError("x"), ValueError)


# ---- hypothesis: random tables with hostile values, both backends agree and parse

hostile = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ['"', "\\", "\n\r\t", "\x00", "\u2028", "💡", "é", "</script>", ""]
)
dates = st.one_of(st.none(), st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)))
nums = st.one_of(st.none(), st.integers(-(2**62), 2**62))
times = st.one_of(st.none(), st.integers(-(2**40), 2**45))


@st.composite
def tables(draw):
    n = draw(st.integers(0, 6))
    strs = draw(st.lists(hostile, min_size=n, max_size=n))
    ds = draw(st.lists(dates, min_size=n, max_size=n))
    ns = draw(st.lists(nums, min_size=n, max_size=n))
    ts = draw(st.lists(times, min_size=n, max_size=n))
    labels = draw(st.lists(hostile.filter(bool), min_size=1, max_size=4, unique=True))
    cats = draw(st.lists(st.sampled_from([""] + labels), min_size=n, max_size=n))
    counts = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    m = int(offsets[-1])
    child_strs = draw(st.lists(hostile, min_size=m, max_size=m))
    scale = draw(st.integers(0, 4))
    parent = Table(
        "p",
        {
            "s": Str.from_list(strs),
            "d": Date.from_list(ds),
            "n": Num(np.array([NO_NUM if v is None else v for v in ns], np.int64), scale),
            "t": Time(np.array([NO_NUM if v is None else v for v in ts], np.int64)),
            "k": Cat.from_list(cats, [""] + labels),
        },
        links={"c": offsets},
    )
    child = Table("c", {"s": Str.from_list(child_strs)})
    return {"p": parent, "c": child}, labels


@given(tables())
def test_hypothesis_backends_agree_and_emit_valid_json(data):
    tabs, labels = data
    tpl = Template(
        "t",
        "p",
        K("resourceType", "X"),
        Val("id", "s", prefix='pre"', suffix="\\suf"),
        Obj("meta", Val("lastUpdated", "t")),
        Val("d", "d"),
        Val("n", "n"),
        Val("k", "k"),
        Map("k", lambda lab: K("mapped", lab) if len(lab) % 2 else None),
        Arr("items", Each("c", Obj(None, Seq("sequence"), Val("s", "s"), Val("parent", "p.s")))),
        Arr("coding", Obj(None, K("system", "x", weak=True), Val("code", "k"))),
        If("k", labels[:1], K("first", True)),
    )
    out = both(tpl, tabs)
    p = tabs["p"]
    lines = out.splitlines()
    assert len(lines) == p.n
    for i, line in enumerate(lines):
        doc = json.loads(line)
        s = p["s"].get(i)
        if s:
            assert doc["id"] == f'pre"{s}\\suf'
        else:
            assert "id" not in doc
        for v in _walk(doc):
            assert v not in ("", None, [], {})


def _walk(x):
    if isinstance(x, dict):
        yield x
        for v in x.values():
            yield from _walk(v)
    elif isinstance(x, list):
        yield x
        for v in x:
            yield from _walk(v)
    else:
        yield x


def test_out_buffer_protocol(core):
    out = core.OutBuffer(16)
    t = Table("c", {"s": Str.from_list(["x" * 100] * 50)})
    core.Writer(Template("t", "c", Val("s", "s")).bind({"c": t})).write(np.arange(50), out)
    assert len(out) == 50 * 109
    assert bytes(memoryview(out))[:10] == b'{"s":"xxxx'
    out.clear()
    assert len(out) == 0


def test_twin_is_pure_python():
    assert _core_py.Writer.__module__ == "fhirhose._core_py"


def test_if_missing_is_the_other_branch_of_if_has():
    from fhirhose.template import IfMissing

    t = Table("c", {"s": Str.from_list(["x", ""]), "d": Date.from_list([None, "2024-01-02"])})
    tpl = Template(
        "t",
        "c",
        IfHas("s", Val("code", "s")),
        IfMissing("s", K("code", "absent")),
        IfMissing("d", K("noDate", True)),
    )
    assert both(tpl, {"c": t}) == b'{"code":"x","noDate":true}\n{"code":"absent"}\n'
