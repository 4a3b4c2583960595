"""The shared-system feed below the server: what the generator produces, a daily delivery
loaded into the store, and the exporter's System-Type / outcome selection."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from fhirhose import synth
from fhirhose.columns import NO_DATE
from fhirhose.export.exporter import ClaimFilter, Exporter, ExportSpec
from fhirhose.fhir.registry import SHARED_SYSTEM_TYPES, SOURCES
from fhirhose.store import Store, schema
from fhirhose.store.schema import column_for

AS_OF = dt.date(2025, 6, 30)
ALL = ("SharedSystem", "NationalClaimsHistory", "DDPS")


def _days(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


@pytest.fixture(scope="module")
def data():
    return synth.generate(400, seed=2, as_of=AS_OF)


def _final(table) -> np.ndarray:
    fa = table["final_action"]
    return np.asarray(fa.labels)[fa.codes] == "F"


@pytest.mark.parametrize("ss, nch", [("mcs", "partb"), ("fiss", "parta")])
def test_feed_is_earlier_versions_of_nch_claims_and_claims_not_in_nch_yet(data, ss, nch):
    t, n = data.tables[ss], data.tables[nch]
    outcome = np.asarray(t["outcome"].labels)[t["outcome"].codes]
    status = np.asarray(t["ss_clm_stus_cd"].labels)[t["ss_clm_stus_cd"].codes]
    cntl = np.asarray(t["clm_cntl_num"].to_list())
    nch_cntl = np.asarray(n["clm_cntl_num"].to_list())
    done, pending = outcome == "complete", outcome == "partial"
    assert done.sum() > 10 * pending.sum() > 0
    assert set(outcome) == {"complete", "partial"} and set(_final(t)) == {True}
    assert len(set(cntl)) == t.n  # one version per claim: the feed is deduplicated
    # Adjudicated claims are final NCH claims under the same control number, updated before them.
    final_nch = dict(zip(nch_cntl[_final(n)], n["last_updated"].values[_final(n)], strict=True))
    assert set(cntl[done]) <= set(final_nch)
    assert all(u < final_nch[c] for c, u in zip(cntl[done], t["last_updated"].values[done], strict=True))
    assert set(status[done]) == {"P"} and set(status[pending]) <= {"S", "R", "A"}
    # Claims in process are recent and not in NCH yet.
    assert not set(cntl[pending]) & set(nch_cntl)
    thru = t["clm_thru_dt"].values[pending].astype(np.int64)
    assert ((thru >= _days(AS_OF) - 25) & (thru <= _days(AS_OF) - 2)).all()
    assert (t["ss_clm_stus_dt"].values[pending] <= _days(AS_OF)).all()
    # Some claims were given a new control number: the old one is kept, and differs.
    prev = np.asarray(t["clm_prev_cntl_num"].to_list())
    assert 0 < (prev != "").sum() < t.n and not (prev == cntl).any()


def test_exporter_selects_system_types_and_outcomes(data):
    ex = Exporter(data.tables, SOURCES)
    benes = np.arange(data.tables["bene"].n)
    mcs = SHARED_SYSTEM_TYPES["MCS"]

    def rows(spec: ExportSpec) -> int:
        return len(ex.rows_for(mcs, benes, spec))

    everything = rows(ExportSpec(system_types=ALL, exclude_sud=False))
    assert everything == data.tables["mcs"].n
    assert rows(ExportSpec()) == 0  # by default no shared-system claims
    assert rows(ExportSpec(system_types=ALL, allowed_system_types=("NationalClaimsHistory", "DDPS"))) == 0
    partial = rows(ExportSpec(claim_filters=(ClaimFilter(system_types=("SharedSystem",), outcome="partial"),),
                              exclude_sud=False))
    outcome = data.tables["mcs"]["outcome"]
    assert partial == int((np.asarray(outcome.labels)[outcome.codes] == "partial").sum()) > 0
    carrier = next(s for s in SOURCES if s.table == "partb")
    assert len(ex.rows_for(carrier, benes, ExportSpec(claim_filters=(ClaimFilter(outcome="partial"),)))) == 0
    assert len(ex.rows_for(carrier, benes, ExportSpec(claim_filters=(ClaimFilter(outcome="complete"),)))) > 0


def test_a_daily_delivery_replaces_a_claims_earlier_version(tmp_path):
    """The feed as a store source: a delivery with a new version of a claim in process (same
    control number, later effective date) makes it the claim's final version; exports show it alone."""
    synth.write(tmp_path / "store", 200, seed=4, as_of=AS_OF)
    store = Store(tmp_path / "store")
    with Store.open(store.path) as snap:
        t = snap.tables["mcs"]
        outcome = np.asarray(t["outcome"].labels)[t["outcome"].codes]
        row = int(np.flatnonzero(outcome == "partial")[0])
        cntl = t["clm_cntl_num"].get(row)
        claim = t["clm_grp_id"].get(row)
        mbi = t["bene_mbi_id"].get(row)
        before = t.n
        frm, thru = t["clm_from_dt"].to_list()[row], t["clm_thru_dt"].to_list()[row]
        stus = t["ss_clm_stus_dt"].to_list()[row]
    later = stus + dt.timedelta(days=3)
    kinds = schema.kinds("mcs")
    header = {
        "clm_id": "9000000000001", "cur_clm_uniq_id": "9000000000001", "bene_mbi_id": mbi, "clm_cntl_num": cntl,
        "clm_type_cd": "71", "clm_from_dt": frm, "clm_thru_dt": thru, "clm_efctv_dt": later, "clm_idr_ld_dt": later,
        "outcome": "complete", "ss_clm_stus_cd": "P", "ss_clm_stus_dt": later, "clm_pmt_amt": "42.10",
    }
    mcs = schema.complete("mcs", {k: column_for(kinds[k], [v]) for k, v in header.items()}, 1,
                          {"mcs_line": np.array([0, 1], np.int64)})
    lkinds = schema.kinds("mcs_line")
    line = {"clm_line_num": 1, "clm_line_from_dt": frm, "clm_line_thru_dt": thru, "clm_line_hcpcs_cd": "99213",
            "clm_line_cvrd_pd_amt": "42.10"}
    mcs_line = schema.complete("mcs_line", {k: column_for(lkinds[k], [v]) for k, v in line.items()}, 1)
    store.load({"mcs": mcs, "mcs_line": mcs_line}, "shared-system feed",
               now=dt.datetime(2025, 7, 1, 6, tzinfo=dt.UTC))
    with Store.open(store.path) as snap:
        t = snap.tables["mcs"]
        assert t.n == before + 1
        same = [i for i, c in enumerate(t["clm_cntl_num"].to_list()) if c == cntl]
        assert sorted(t["final_action"].to_list()[i] for i in same) == ["F", "N"]
        ex = Exporter(snap.tables, SOURCES)
        mcs_source = SHARED_SYSTEM_TYPES["MCS"]
        rows = ex.rows_for(mcs_source, np.arange(snap.tables["bene"].n), ExportSpec(system_types=ALL))
        assert [int(r) for r in rows if r in same] == [i for i in same if t["final_action"].to_list()[i] == "F"]
        from fhirhose import OutBuffer, Writer

        out = OutBuffer()
        Writer(mcs_source.template.bind(snap.tables)).write(np.array([r for r in rows if r in same]), out)
        (doc,) = [json.loads(x) for x in bytes(out).splitlines()]
        # The claim keeps its resource id: the new status replaces the old one at the client.
        assert doc["id"] == f"mcs-{claim}" and doc["outcome"] == "complete"
        assert {"system": "https://bluebutton.cms.gov/identifiers/CLM-CNTL-NUM", "value": cntl} in doc["identifier"]
        assert doc["billablePeriod"] == {"start": frm.isoformat(), "end": thru.isoformat()}
        assert frm != NO_DATE
