"""The claims store: generations, atomic loads, merge rules, zero-copy snapshots."""

import datetime as dt
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhirhose import BatchError, StoreError
from fhirhose.store import SourceInfo, Store, _merge, layout
from fhirhose.store.schema import TABLES, column_for, complete, kinds

from .support.store import listing

T0 = dt.datetime(2024, 1, 15, 12, tzinfo=dt.UTC)
T1 = dt.datetime(2024, 1, 22, 12, tzinfo=dt.UTC)
MS0 = int(T0.timestamp() * 1000)
MS1 = int(T1.timestamp() * 1000)
A, B, C = "1AA0AA0AA00", "1AA0AA0AA01", "1AA0AA0AA02"


def tab(name, n, links=None, **vals):
    k = kinds(name)
    return complete(name, {c: column_for(k[c], v) for c, v in vals.items()}, n, links)


def benes(*mbis, names=None):
    return tab("bene", len(mbis), bene_mbi_id=list(mbis), bene_1st_name=names or [m[-2:] for m in mbis])


def carrier(rows):
    """Part B claims from (uid, mbi, control number, effective date, dx1) with one line each."""
    n = len(rows)
    t = tab(
        "partb", n, links={"partb_line": np.arange(n + 1)},
        cur_clm_uniq_id=[r[0] for r in rows], bene_mbi_id=[r[1] for r in rows],
        clm_cntl_num=[r[2] for r in rows], clm_efctv_dt=[r[3] for r in rows],
        clm_dgns_1_cd=[r[4] for r in rows], clm_adjsmt_type_cd=["0"] * n,
    )
    lines = tab("partb_line", n, clm_line_num=[1] * n, clm_line_hcpcs_cd=[f"H{r[0]}" for r in rows])
    return {"partb": t, "partb_line": lines}


@pytest.fixture
def store(tmp_path):
    return Store.create(tmp_path / "s", keep=2)


def claims_of(snap, table, mbi):
    row = snap.bene_index(mbi)
    lo, hi = snap.claim_rows(table, row, row + 1)
    t = snap.tables[table]
    return [
        {c: t[c].to_list()[i] for c in ("clm_id", "final_action", "clm_grp_id", "sud_ind", "bene_id")}
        for i in range(lo, hi)
    ]


def test_new_store_is_empty_generation_zero(store):
    with Store.open(store.path) as snap:
        assert snap.generation == 0
        assert all(t.n == 0 for t in snap.tables.values())
        assert snap.manifest.history == []
    store.verify()


def test_snapshot_columns_are_views_of_the_memory_maps(store):
    store.load({"bene": benes(A, B), **carrier([("100", A, "C1", "2024-01-01", "E119"),
                                                ("101", B, "C2", "2024-01-02", "I10")])}, "t", now=T0)
    with Store.open(store.path) as snap:
        pay = snap.tables["partb"]["clm_efctv_dt"].values
        mm = snap.mmap("partb.clm_efctv_dt.values.npy")
        assert isinstance(mm, np.memmap) and not mm.flags.writeable
        lo, hi = snap.claim_rows("partb", 1, 2)
        assert np.shares_memory(pay[lo:hi], mm)
        names = snap.tables["partb"]["clm_id"]
        assert np.shares_memory(names.data, snap.mmap("partb.clm_id.data.npy"))
        assert snap.tables["partb"]["clm_id"].to_list()[lo:hi] == ["101"]


def test_versions_grouped_and_final_action(store):
    # Original, adjustment and cancel of one carrier claim (same control number), one other claim.
    rows = [
        ("100", A, "C1", "2024-01-01", "E119"),
        ("102", A, "C1", "2024-03-01", "E119"),
        ("101", A, "C1", "2024-02-01", "E119"),
        ("200", A, "C9", "2024-01-05", "F1020"),  # alcohol abuse → SUD
        ("300", B, "C1", "2024-01-01", "F17210"),  # nicotine: not withheld
    ]
    store.load({"bene": benes(A, B), **carrier(rows)}, "t", now=T0)
    with Store.open(store.path) as snap:
        a = claims_of(snap, "partb", A)
        by_id = {c["clm_id"]: c for c in a}
        assert [by_id[i]["final_action"] for i in ("100", "101", "102")] == ["N", "N", "F"]
        assert len({by_id[i]["clm_grp_id"] for i in ("100", "101", "102")}) == 1
        assert by_id["200"]["clm_grp_id"] != by_id["100"]["clm_grp_id"]
        assert by_id["200"]["final_action"] == "F" and by_id["200"]["sud_ind"] == "Y"
        assert {c["sud_ind"] for c in a if c["clm_id"] != "200"} == {"N"}
        b = claims_of(snap, "partb", B)
        assert [(c["clm_id"], c["final_action"], c["sud_ind"]) for c in b] == [("300", "F", "N")]
        # Same control number, other beneficiary: another group.
        assert b[0]["clm_grp_id"] != by_id["100"]["clm_grp_id"]
        assert {c["bene_id"] for c in a} == {snap.tables["bene"]["bene_id"].get(snap.bene_index(A))}
        # Lines follow their headers.
        lines = snap.tables["partb_line"]["clm_line_hcpcs_cd"].to_list()
        off = snap.tables["partb"].links["partb_line"]
        ids = snap.tables["partb"]["clm_id"].to_list()
        assert [lines[off[i]] for i in range(len(ids))] == [f"H{i}" for i in ids]
        assert set(snap.tables["partb"]["last_updated"].values.tolist()) == {MS0}


def test_incremental_load_adds_versions_and_updates_benes(store):
    store.load({"bene": benes(A, B), **carrier([("100", A, "C1", "2024-01-01", "E119")])}, "week1", now=T0)
    with Store.open(store.path) as first:
        bene_ids = first.tables["bene"]["bene_id"].to_list()
    # Week 2: an adjustment of claim C1, a re-delivery of version 100, a new beneficiary, a new name for B.
    week2 = carrier([("100", A, "C1", "2024-01-01", "E119"), ("110", A, "C1", "2024-02-01", "E119"),
                     ("400", C, "X4", "2024-02-03", "I10")])
    gen = store.load({"bene": benes(B, C, names=["Robert", "Cy"]), **week2},
                     SourceInfo("cclf", note="week 2"), now=T1)
    assert gen == 2
    with Store.open(store.path) as snap:
        assert snap.generation == 2
        a = {c["clm_id"]: c for c in claims_of(snap, "partb", A)}
        assert (a["100"]["final_action"], a["110"]["final_action"]) == ("N", "F")
        t = snap.tables["partb"]
        upd = dict(zip(t["clm_id"].to_list(), t["last_updated"].values.tolist(), strict=True))
        assert upd == {"100": MS0, "110": MS1, "400": MS1}  # version 100 keeps its first load time
        bene = snap.tables["bene"]
        assert bene["bene_id"].to_list()[:2] == bene_ids  # ids carried; the new one appended
        assert bene["bene_1st_name"].to_list() == ["00", "Robert", "Cy"]
        hist = snap.manifest.history
        assert [h.generation for h in hist] == [1, 2]
        assert hist[1].source.note == "week 2" and hist[1].skipped == {"partb": 1}
        assert hist[1].added["partb"] == 2 and hist[1].added["bene"] == 1
        assert snap.manifest.rows()["partb_line"] == 3
    # Unchanged arrays are hard links to the previous generation's files.
    g1, g2 = store.path / "generations/1", store.path / "generations/2"
    same = g2 / "dme.clm_pmt_amt.values.npy"
    assert same.stat().st_ino == (g1 / same.name).stat().st_ino
    assert (g2 / "partb.clm_id.data.npy").stat().st_ino != (g1 / "partb.clm_id.data.npy").stat().st_ino


def test_mbi_change_keeps_bene_id_and_claims(store):
    new_mbi = "9ZZ9ZZ9ZZ99"
    store.load({"bene": benes(A), **carrier([("100", A, "C1", "2024-01-01", "E119")])}, "t", now=T0)
    xref = tab("bene_mbi", 1, crnt_num=[new_mbi], prvs_num=[A], prvs_id_efctv_dt=["2020-01-01"],
               prvs_id_obslt_dt=["2024-01-20"])
    store.load({"bene": benes(new_mbi), "bene_mbi": xref,
                **carrier([("101", new_mbi, "C1", "2024-02-01", "E119")])}, "t", now=T1)
    with Store.open(store.path) as snap:
        bene = snap.tables["bene"]
        assert bene.n == 1 and bene["bene_id"].to_list() == ["1"]
        assert bene["bene_mbi_id"].to_list() == [new_mbi]
        assert snap.bene_index(A) == snap.bene_index(new_mbi) == snap.bene_index("1") == 0
        c = claims_of(snap, "partb", A)
        assert [(x["clm_id"], x["final_action"]) for x in c] == [("100", "N"), ("101", "F")]
        assert bene.links["bene_mbi"].tolist() == [0, 1]
        with pytest.raises(KeyError, match="no beneficiary"):
            snap.bene_index("nobody")


def test_producer_bene_ids_and_links(store):
    # A generator may name its own bene_ids and attach claims through bene.links only.
    bene = tab("bene", 2, links={"pde": np.array([0, 2, 3])}, bene_id=["-100", "-101"], bene_mbi_id=[A, B])
    pde = tab("pde", 3, clm_id=["p1", "p2", "p3"], clm_line_from_dt=["2024-01-01", "2024-01-02", "2024-01-01"])
    store.load({"bene": bene, "pde": pde}, "synth", now=T0)
    with Store.open(store.path) as snap:
        t = snap.tables["pde"]
        assert t["bene_id"].to_list() == ["-100", "-100", "-101"]
        assert t["bene_mbi_id"].to_list() == [A, A, B]
        assert t["cur_clm_uniq_id"].to_list() == t["clm_id"].to_list()
        assert t["final_action"].to_list() == ["F", "F", "F"]
        assert snap.manifest.next_bene_seq == 1


def test_org_tables(store):
    roster = tab("roster", 2, org_id=["A0001"] * 2, bene_mbi_id=[A, C], roster_kind=["Y", "Y"],
                 performance_year=[2024, 2024], file_date=["2024-01-15"] * 2)
    optout = tab("optout", 3, bene_mbi_id=[A, A, B], pref_ind=["N", "Y", "N"],
                 effective_dt=["2024-01-02", "2023-05-01", "2024-01-01"])
    enroll = tab("enroll", 2, bene_row=[1, 0], cntrct_id=["S0001", "S0001"], year=[2024, 2024],
                 month_mask=[3, 1])
    store.load({"bene": benes(B, A), "roster": roster, "optout": optout, "enroll": enroll}, "t", now=T0)
    with Store.open(store.path) as snap:
        ra, rb = snap.bene_index(A), snap.bene_index(B)
        r = snap.tables["roster"]
        assert r["bene_mbi_id"].to_list() == [A, C]
        assert r["bene_row"].values.tolist()[0] == ra and r["bene_row"].to_list()[1] is None
        o = snap.tables["optout"]
        assert dict(zip(o["bene_mbi_id"].to_list(), o["pref_ind"].to_list(), strict=True)) == {A: "N", B: "N"}
        e = snap.tables["enroll"]
        assert dict(zip(e["bene_row"].values.tolist(), e["month_mask"].values.tolist(), strict=True)) == {ra: 3, rb: 1}
    # A new roster of the same ACO and year replaces the old one; another year is kept.
    roster2 = tab("roster", 2, org_id=["A0001"] * 2, bene_mbi_id=[B, A], roster_kind=["Y", "R"],
                  performance_year=[2024, 2023], file_date=["2024-02-15"] * 2)
    store.load({"roster": roster2, "bene": benes(C)}, "t", now=T1)
    with Store.open(store.path) as snap:
        r = snap.tables["roster"]
        got = sorted(zip(r["bene_mbi_id"].to_list(), r["roster_kind"].to_list(), r["performance_year"].values.tolist(), strict=True))
        assert got == [(A, "R", 2023), (B, "Y", 2024)]
        assert snap.tables["enroll"].n == 2


def _bad_claim_delta():
    return {"bene": benes(B), **carrier([("500", B, "Q", "2024-01-01", "E11"), ("501", "NOBODY", "Q", "2024-01-01", "")])}


def test_bad_input_leaves_store_unchanged(store):
    store.load({"bene": benes(A), **carrier([("100", A, "C1", "2024-01-01", "E119")])}, "t", now=T0)
    before, current = listing(store.path), store.current()
    with pytest.raises(BatchError, match="partb claim '501': beneficiary 'NOBODY' is in neither"):
        store.load(_bad_claim_delta(), "t")
    assert listing(store.path) == before and store.current() == current
    with pytest.raises(BatchError, match=r"partb.links\[partb_line\] covers 2 rows, partb_line has 0"):
        store.load({"partb": carrier([("1", A, "", "", ""), ("2", A, "", "", "")])["partb"]}, "t")
    with pytest.raises(BatchError, match="unknown table 'claims'"):
        store.load({"claims": benes(A)}, "t")
    assert listing(store.path) == before and store.current() == current


def test_failure_while_writing_leaves_store_unchanged(store, monkeypatch):
    store.load({"bene": benes(A), **carrier([("100", A, "C1", "2024-01-01", "E119")])}, "t", now=T0)
    before, current = listing(store.path), store.current()
    real, calls = layout.GenerationWriter.array, []

    def failing(self, name, arr):
        calls.append(name)
        if len(calls) == 200:  # mid-way through the generation's files
            raise OSError(28, "No space left on device")
        return real(self, name, arr)

    monkeypatch.setattr(layout.GenerationWriter, "array", failing)
    with pytest.raises(OSError, match="No space left"):
        store.load({"bene": benes(B), **carrier([("101", B, "C2", "2024-01-01", "E119")])}, "t")
    assert len(calls) == 200
    assert listing(store.path) == before and store.current() == current
    monkeypatch.undo()
    assert store.load({"bene": benes(B)}, "t") == 2


def test_readers_keep_their_generation(store):
    store.load({"bene": benes(A)}, "t", now=T0)
    old = Store.open(store.path)
    names = old.tables["bene"]["bene_mbi_id"]
    for mbi in (B, C, "1AA0AA0AA03"):
        store.load({"bene": benes(mbi)}, "t")
    assert store.current() == 4
    assert 1 in store.generations()  # held by `old` although older than keep=2
    assert names.to_list() == [A] and old.generation == 1
    old.close()
    store.load({"bene": benes("1AA0AA0AA04")}, "t")
    assert store.generations() == [4, 5]


def test_stale_lease_of_dead_process_is_ignored(store):
    store.load({"bene": benes(A)}, "t")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lease = store.path / "readers" / f"g1.p{int(dead.stdout)}.0000"
    lease.touch()
    for mbi in (B, C):
        store.load({"bene": benes(mbi)}, "t")
    assert store.generations() == [2, 3] and not lease.exists()


def test_verify_finds_corruption(store):
    store.load({"bene": benes(A, B)}, "t")
    store.verify()
    f = store.path / "generations/1/bene.bene_mbi_id.data.npy"
    os.chmod(f, 0o644)
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    # A hard-linked file would change in both generations: write a new inode.
    f.unlink()
    f.write_bytes(bytes(data))
    Store.open(store.path).close()  # opening checks structure only
    with pytest.raises(StoreError, match=r"1 file\(s\) differ from the manifest: bene.bene_mbi_id.data.npy"):
        store.verify()


def test_open_errors(tmp_path, store):
    with pytest.raises(StoreError, match="not a store"):
        Store.open(tmp_path / "nowhere")
    with pytest.raises(StoreError, match="already a store"):
        Store.create(store.path)
    store.load({"bene": benes(A)}, "t")
    m = store.path / "generations/1/manifest.json"
    doc = json.loads(m.read_bytes())
    doc["format_version"] = 99
    m.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="store format 99, this fhirhose reads format 1"):
        Store.open(store.path)
    doc["format_version"] = 1
    doc["tables"]["bene"]["n"] = 5
    m.write_text(json.dumps(doc))
    with Store.open(store.path) as snap, pytest.raises(StoreError, match="bene_id: offsets do not span its data for 5"):
        snap.tables["bene"]
    (store.path / "CURRENT").write_text("x\n")
    with pytest.raises(StoreError, match="'x' is not a generation number"):
        Store.open(store.path)


def test_row_under_an_obsolete_mbi_does_not_replace_the_current_one(store):
    xref = tab("bene_mbi", 1, crnt_num=[B], prvs_num=[A])
    store.load({"bene": benes(B, names=["Current"]), "bene_mbi": xref}, "t", now=T0)
    store.load({"bene": benes(A, names=["Stale"])}, "t", now=T1)
    with Store.open(store.path) as snap:
        assert snap.tables["bene"]["bene_1st_name"].to_list() == ["Current"]
        assert snap.bene_index(A) == snap.bene_index(B) == 0


READER = """
import sys
from fhirhose.store import Store
snap = Store.open(sys.argv[1])
names = snap.tables["bene"]["bene_mbi_id"]
print(snap.generation, flush=True)
sys.stdin.readline()  # hold the snapshot while the parent loads
print(",".join(names.to_list()), flush=True)
"""


def test_reader_in_another_process_keeps_its_generation(store):
    store.load({"bene": benes(A)}, "t")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", READER, str(store.path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "1"
        for mbi in (B, C, "1AA0AA0AA03"):
            store.load({"bene": benes(mbi)}, "t")
        assert 1 in store.generations()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == A
    finally:
        child.stdin.close()
        rc = child.wait(timeout=60)
        child.stdout.close()
    assert rc == 0
    store.load({"bene": benes("1AA0AA0AA04")}, "t")
    assert 1 not in store.generations() and not list((store.path / "readers").iterdir())


def test_two_records_found_to_be_one_person(store):
    # A and B were loaded as two people; a cross-reference then says B is A's new MBI.
    store.load({"bene": benes(A, B), **carrier([("100", A, "C1", "2024-01-01", "E119"),
                                                ("101", B, "C1", "2024-02-01", "E119")])}, "t", now=T0)
    with Store.open(store.path) as snap:
        assert len(set(col["final_action"] for col in claims_of(snap, "partb", A))) == 1  # both F: two people
    store.load({"bene_mbi": tab("bene_mbi", 1, crnt_num=[B], prvs_num=[A])}, "t", now=T1)
    with Store.open(store.path) as snap:
        assert snap.tables["bene"].n == 1 and snap.bene_index(A) == snap.bene_index(B) == 0
        c = claims_of(snap, "partb", B)
        assert [(x["clm_id"], x["final_action"], x["bene_id"]) for x in c] == [("100", "N", "1"), ("101", "F", "1")]
        assert c[0]["clm_grp_id"] == c[1]["clm_grp_id"]


def test_commit_writes_already_merged_tables(store):
    empty = {name: complete(name, {}, 0) for name in TABLES}
    merged = _merge.merge(empty, {"bene": benes(A, B), **carrier([("100", A, "C1", "2024-01-01", "E119")])}, MS0, 1)
    gen = store.commit(merged.tables, SourceInfo("synth", note="chunked"), next_bene_seq=merged.next_bene_seq, now=T0)
    with Store.open(store.path) as snap:
        assert snap.generation == gen == 1 and snap.tables["partb"].n == 1
        assert snap.manifest.history[0].added["bene"] == 2 and snap.manifest.next_bene_seq == 3
    bad = dict(merged.tables)
    bad["partb"] = complete("partb", {}, 0)  # bene still links to one claim
    with pytest.raises(BatchError, match=r"bene.links\[partb\]: offset 1 is past 0 rows"):
        store.commit(bad, "synth", next_bene_seq=3)
    assert store.current() == 1


# -- merge invariants over random load sequences (in memory: the merge is pure) ---------------------

_MBIS = [f"1AA0AA0AA{i:02d}" for i in range(6)]
_version = st.tuples(st.integers(0, 5), st.sampled_from(["C1", "C2", "C3"]), st.integers(0, 40), st.integers(0, 99))
_load = st.tuples(st.lists(st.integers(0, 5), max_size=4), st.lists(_version, max_size=6))


@given(st.lists(_load, min_size=1, max_size=4))
def test_merge_invariants(loads):
    tables = {name: complete(name, {}, 0) for name in TABLES}
    seq, seen, known = 1, {}, set()
    for k, (bene_rows, versions) in enumerate(loads):
        people = sorted(set(bene_rows) | {v[0] for v in versions})
        rows = [(f"{k}{i:03d}{v[3]}", _MBIS[v[0]], v[1], f"2024-01-{1 + v[2] % 28:02d}", "F1010" if v[3] % 7 == 0 else "I10")
                for i, v in enumerate(versions)]
        delta = {"bene": benes(*[_MBIS[p] for p in people]), **carrier(rows)} if people else {}
        merged = _merge.merge(tables, delta, MS0 + k, seq)
        tables, seq = merged.tables, merged.next_bene_seq
        known |= {_MBIS[p] for p in people}
        for r in rows:
            seen.setdefault(r[0], r)
    bene, partb = tables["bene"], tables["partb"]
    assert sorted(bene["bene_mbi_id"].to_list()) == sorted(known)
    ids = partb["clm_id"].to_list()
    assert sorted(ids) == sorted(seen)  # every version once, none lost
    off = bene.links["partb"]
    mbi_of_row = np.repeat(np.arange(bene.n), np.diff(off))
    assert [bene["bene_mbi_id"].get(r) for r in mbi_of_row] == [seen[i][1] for i in ids]
    groups = {}
    for i, cid in enumerate(ids):
        groups.setdefault((seen[cid][1], seen[cid][2]), []).append(i)
    fa, eff = partb["final_action"].to_list(), partb["clm_efctv_dt"].values
    grp = partb["clm_grp_id"].to_list()
    for members in groups.values():
        assert [fa[i] for i in members].count("F") == 1
        last = max(members, key=lambda i: (eff[i], ids[i]))
        assert fa[last] == "F" and len({grp[i] for i in members}) == 1
    assert len(set(grp)) == len(groups)
    assert [s == "Y" for s in partb["sud_ind"].to_list()] == [seen[i][4] == "F1010" for i in ids]
    line_off = partb.links["partb_line"]
    assert tables["partb_line"]["clm_line_hcpcs_cd"].to_list() == [f"H{ids[i]}" for i in range(partb.n) for _ in range(line_off[i + 1] - line_off[i])]


def test_roster_replacement_does_not_depend_on_id_widths(store):
    def roster(orgs, mbis):
        n = len(mbis)
        return tab("roster", n, org_id=orgs, bene_mbi_id=mbis, roster_kind=["Y"] * n,
                   performance_year=[2024] * n, file_date=["2024-01-15"] * n)

    store.load({"roster": roster(["A0001", "Z123456789"], [A, B])}, "t")
    store.load({"roster": roster(["A0001"], [C])}, "t")  # A0001's new roster: C only
    with Store.open(store.path) as snap:
        r = snap.tables["roster"]
        assert sorted(zip(r["org_id"].to_list(), r["bene_mbi_id"].to_list(), strict=True)) == [("A0001", C), ("Z123456789", B)]


def test_unchanged_beneficiary_keeps_its_last_updated(store):
    store.load({"bene": benes(A, B, names=["Ann", "Bob"])}, "t", now=T0)
    store.load({"bene": benes(A, B, names=["Ann", "Robert"])}, "t", now=T1)  # the monthly CCLF8 again
    with Store.open(store.path) as snap:
        bene = snap.tables["bene"]
        assert bene["bene_1st_name"].to_list() == ["Ann", "Robert"]
        assert bene["last_updated"].values.tolist() == [MS0, MS1]
        assert snap.manifest.history[-1].updated == {"bene": 1}


def _resident_pages(path) -> int:
    """Pages of `path` in the page cache (mincore(2) over a private mapping of it)."""
    import ctypes
    import mmap

    size = os.path.getsize(path)
    if size == 0:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
        pages = -(-size // mmap.PAGESIZE)
        vec = (ctypes.c_ubyte * pages)()
        anchor = ctypes.c_char.from_buffer(m)
        try:
            assert libc.mincore(ctypes.addressof(anchor), size, vec) == 0, os.strerror(ctypes.get_errno())
        finally:
            del anchor
        return sum(v & 1 for v in vec)


def _fs_type(path) -> str:
    """The file system type of the mount `path` is on (Linux /proc/mounts)."""
    best, kind = "", ""
    with open("/proc/mounts") as mounts:
        lines = mounts.read().splitlines()
    for line in lines:
        _dev, mnt, fstype, *_ = line.split()
        if (str(path) + "/").startswith(mnt.rstrip("/") + "/") and len(mnt) >= len(best):
            best, kind = mnt, fstype
    return kind


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise on this system")
def test_a_written_generation_leaves_the_page_cache(tmp_path):
    """A load's files are fsynced, then dropped from the page cache: written in large folios,
    each would be mapped whole by a reader's first touch (~300 MB per export worker at
    100,000 beneficiaries). Read back, the pages are cached again (the check sees them)."""
    from fhirhose import synth

    if _fs_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip(f"{tmp_path} is in memory: its pages are the file and cannot be dropped")

    synth.write(tmp_path / "s", 200, 3)
    gen = tmp_path / "s" / "generations" / str(Store(tmp_path / "s").current())
    data = sorted(p for p in gen.iterdir() if p.suffix == ".npy" and p.stat().st_size >= 4096)
    assert len(data) > 100
    assert sum(_resident_pages(p) for p in data) == 0
    np.load(data[0], mmap_mode="r").sum()  # read back through a mapping, as the exporter does
    assert _resident_pages(data[0]) > 0


def test_a_server_worker_lets_old_generations_go(tmp_path, monkeypatch):
    """A server's export worker keeps the exporters (and snapshot leases) of the last two
    generations it exported and lets older ones go: loads while the server runs can
    collect them. (Kept for the worker's life, every generation it ever exported stayed.)"""
    from collections import OrderedDict

    from fhirhose.fhir.registry import SOURCES
    from fhirhose.server import worker
    from fhirhose.store.opener import forget_snapshot

    monkeypatch.setattr(worker, "_EXPORTERS", OrderedDict())
    store = Store.create(tmp_path / "s", keep=3)
    gens = [store.load({"bene": benes(A, B), **carrier([(f"{i}", A, f"C{i}", "2024-01-01", "E119")])}, "t", now=T0)
            for i in range(3)]
    path = str(store.path)

    def leased() -> set[int]:
        mine = [p.name.split(".") for p in (store.path / "readers").iterdir()]
        return {int(g[1:]) for g, pid, *_ in mine if pid == f"p{os.getpid()}"}

    try:
        first = worker._exporter(path, gens[0], SOURCES)
        assert worker._exporter(path, gens[0], SOURCES) is first  # a job's chunks reuse it
        worker._exporter(path, gens[1], SOURCES)
        assert leased() == set(gens[:2])
        worker._exporter(path, gens[2], SOURCES)
        assert leased() == set(gens[1:])  # the oldest let go
        Store(store.path, keep=1).collect()  # only the current one kept, but what a reader holds
        assert gens[0] not in store.generations() and set(gens[1:]) <= set(store.generations())
    finally:
        for key in list(worker._EXPORTERS):
            forget_snapshot(key[0], key[1])
