"""CCLF and preference-file ingest: real fixed-width files, real zips, a real store."""

import datetime as dt
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fhirhose
from fhirhose import FhirhoseError, IngestError
from fhirhose.cli import main
from fhirhose.store import Store
from fhirhose.store.cclf import ingest_cclf, ingest_prefs, layout, read_cclf, read_prefs
from fhirhose.store.cclf.fixed import parse_dates, parse_decimal

from .support.cclf_writer import file_name, reclen, write_delivery

FIX = Path(__file__).parent / "fixtures" / "cclf"
A0001 = FIX / "bcda_archive_valid_A0001"
T0 = dt.datetime(2024, 1, 15, tzinfo=dt.UTC)

A, B, B_OLD = "1AA0AA0AA00", "1BB0BB0BB00", "1OL0OL0OL00"


def bene(mbi, first, dob="1950-03-04"):
    return {"BENE_MBI_ID": mbi, "BENE_FIPS_STATE_CD": "24", "BENE_FIPS_CNTY_CD": "005", "BENE_ZIP_CD": "21117",
            "BENE_DOB": dob, "BENE_SEX_CD": "2", "BENE_RACE_CD": "1", "BENE_AGE": "74", "BENE_MDCR_STUS_CD": "10",
            "BENE_DUAL_STUS_CD": "NA", "BENE_1ST_NAME": first, "BENE_LAST_NAME": "Doe",
            "BENE_PART_A_ENRLMT_BGN_DT": "2015-03-01", "GEO_USPS_STATE_CD": "MD"}


def part_a(uid, mbi, adj, eff, tp="60", amt="1200.00"):
    return {"CUR_CLM_UNIQ_ID": uid, "PRVDR_OSCAR_NUM": "210009", "BENE_MBI_ID": mbi, "CLM_TYPE_CD": tp,
            "CLM_FROM_DT": "2024-01-02", "CLM_THRU_DT": "2024-01-05", "CLM_BILL_FAC_TYPE_CD": "1",
            "PRNCPL_DGNS_CD": "I214", "CLM_PMT_AMT": amt, "CLM_ADJSMT_TYPE_CD": adj, "CLM_EFCTV_DT": eff,
            "CLM_IDR_LD_DT": eff, "DGNS_PRCDR_ICD_IND": "0", "CLM_MDCR_INSTNL_TOT_CHRG_AMT": "5000.00",
            "CLM_CNTL_NUM": f"A{uid}"}


def carrier(uid, line, mbi, adj, eff, amt, cntl="CTL1", dx="E119"):
    return {"CUR_CLM_UNIQ_ID": uid, "CLM_LINE_NUM": line, "BENE_MBI_ID": mbi, "CLM_TYPE_CD": "71",
            "CLM_FROM_DT": "2024-01-03", "CLM_THRU_DT": "2024-01-03", "CLM_POS_CD": "11",
            "CLM_LINE_FROM_DT": "2024-01-03", "CLM_LINE_THRU_DT": "2024-01-03", "CLM_LINE_HCPCS_CD": "99213",
            "CLM_LINE_CVRD_PD_AMT": amt, "CLM_ADJSMT_TYPE_CD": adj, "CLM_EFCTV_DT": eff, "CLM_IDR_LD_DT": eff,
            "CLM_CNTL_NUM": cntl, "CLM_LINE_ALOWD_CHRG_AMT": amt, "CLM_LINE_SRVC_UNIT_QTY": "1.5",
            "CLM_DGNS_1_CD": dx, "DGNS_PRCDR_ICD_IND": "0", "RNDRG_PRVDR_NPI_NUM": "1234567893"}


def claim_files():
    """A delivery with every claim file: original + adjustment + cancel where versions apply."""
    return {
        "1": [part_a("1001", A, "0", "2024-01-10"), part_a("1002", A, "2", "2024-02-10", amt="1100.00"),
              part_a("1003", A, "1", "2024-03-01", amt="-1100.00"), part_a("1010", B_OLD, "0", "2024-01-20", tp="40")],
        "2": [{"CUR_CLM_UNIQ_ID": u, "CLM_LINE_NUM": ln, "BENE_MBI_ID": A, "CLM_TYPE_CD": "60",
               "CLM_LINE_PROD_REV_CTR_CD": rc, "CLM_LINE_SRVC_UNIT_QTY": "2", "CLM_LINE_CVRD_PD_AMT": "10.00"}
              for u, ln, rc in (("1001", "2", "0250"), ("1001", "1", "0120"), ("1002", "1", "0120"),
                                ("1003", "1", "0120"), ("1010", "1", "0450"))],
        "3": [{"CUR_CLM_UNIQ_ID": "1001", "BENE_MBI_ID": A, "CLM_TYPE_CD": "60", "CLM_VAL_SQNC_NUM": "1",
               "CLM_PRCDR_CD": "02703ZZ", "CLM_PRCDR_PRFRM_DT": "2024-01-03", "DGNS_PRCDR_ICD_IND": "0"}],
        "4": [{"CUR_CLM_UNIQ_ID": u, "BENE_MBI_ID": m, "CLM_TYPE_CD": "60", "CLM_PROD_TYPE_CD": "P",
               "CLM_VAL_SQNC_NUM": s, "CLM_DGNS_CD": dx, "CLM_POA_IND": "Y", "DGNS_PRCDR_ICD_IND": "0"}
              for u, m, s, dx in (("1001", A, "1", "I214"), ("1010", B_OLD, "1", "R079"), ("1010", B_OLD, "2", "F1120"))],
        "5": [carrier("2001", "1", A, "0", "2024-01-10", "50.00"), carrier("2001", "2", A, "0", "2024-01-10", "25.50"),
              carrier("2002", "1", A, "2", "2024-02-01", "40.00"), carrier("2002", "2", A, "2", "2024-02-01", "25.50"),
              carrier("2003", "1", A, "1", "2024-03-01", "-65.50"),
              carrier("2100", "1", B, "0", "2024-01-11", "9.99", cntl="CTL9", dx="F17210")],
        "6": [{"CUR_CLM_UNIQ_ID": "3001", "CLM_LINE_NUM": "1", "BENE_MBI_ID": A, "CLM_TYPE_CD": "81",
               "CLM_FROM_DT": "2024-01-04", "CLM_THRU_DT": "2024-01-04", "CLM_LINE_HCPCS_CD": "E0601",
               "CLM_LINE_CVRD_PD_AMT": "80.00", "CLM_LINE_ALOWD_CHRG_AMT": "100.00", "CLM_ADJSMT_TYPE_CD": "0",
               "CLM_EFCTV_DT": "2024-01-12", "CLM_CNTL_NUM": "DME1", "PAYTO_PRVDR_NPI_NUM": "1234567893"}],
        "7": [{"CUR_CLM_UNIQ_ID": u, "BENE_MBI_ID": B, "CLM_LINE_NDC_CD": "00002771001", "CLM_TYPE_CD": "01",
               "CLM_LINE_FROM_DT": "2024-01-06", "PRVDR_SRVC_ID_QLFYR_CD": "01",
               "CLM_SRVC_PRVDR_GNRC_ID_NUM": "1234567893", "CLM_DSPNSNG_STUS_CD": "C", "CLM_DAW_PROD_SLCTN_CD": "0",
               "CLM_LINE_SRVC_UNIT_QTY": "30", "CLM_LINE_DAYS_SUPLY_QTY": "30", "CLM_LINE_BENE_PMT_AMT": pay,
               "CLM_ADJSMT_TYPE_CD": adj, "CLM_EFCTV_DT": eff, "CLM_LINE_RX_SRVC_RFRNC_NUM": "123456",
               "CLM_LINE_RX_FILL_NUM": "1"} for u, adj, eff, pay in (("4001", "0", "2024-01-07", "5.00"),
                                                                      ("4002", "2", "2024-01-09", "4.00"))],
        "8": [bene(A, "Ann"), bene(B, "Bea", dob="1948-02-29")],
        "9": [{"HICN_MBI_XREF_IND": "M", "CRNT_NUM": B, "PRVS_NUM": B_OLD, "PRVS_ID_EFCTV_DT": "2019-01-01",
               "PRVS_ID_OBSLT_DT": "2023-06-30"}],
        "A": [{"CUR_CLM_UNIQ_ID": "1001", "BENE_MBI_ID": A, "CLM_TYPE_CD": "60", "CLM_ACTV_CARE_FROM_DT": "2024-01-02",
               "CLM_MDCR_DDCTBL_AMT": "1632.00", "CLM_DEMO_1ST_NUM": "77"}],
        "B": [{"CUR_CLM_UNIQ_ID": "2001", "CLM_LINE_NUM": "1", "BENE_MBI_ID": A, "CLM_TYPE_CD": "71",
               "CLM_PBP_INCLSN_AMT": "0.00", "CLM_LINE_CARR_HPSA_SCRCTY_CD": "N"}],
    }


@pytest.fixture
def store(tmp_path):
    return Store.create(tmp_path / "store")


def col(snap, table, name):
    return snap.tables[table][name].to_list()


def test_layouts_are_packaged_and_contiguous():
    for fid in "123456789AB":
        fields = layout(fid)
        assert fields[0].start == 0
        assert all(a.end == b.start for a, b in itertools.pairwise(fields)), fid
        assert len({f.name for f in fields}) == len(fields)
    assert reclen("8") == 549 and reclen("1") == 437 and layout("5")[-1].name == "CLM_CNTRCTR_NUM"


def test_bcda_archive_loads_fully(store):
    gen = ingest_cclf(store, [A0001], now=T0)
    with Store.open(store.path) as snap:
        assert snap.generation == gen == 1
        mbis = [bytes(r[:11]).decode() for r in (A0001 / "T.BCD.A0001.ZC8Y18.D181120.T1000009").read_bytes().splitlines()]
        # Every CCLF8 MBI resolves; MBIs the CCLF9 links (…CD32 → CD33 → CD34 → CD35) are one person.
        rows = {m: snap.bene_index(m) for m in mbis}
        assert rows["1A69B98CD32"] == rows["1A69B98CD33"] == rows["1A69B98CD34"] == rows["1A69B98CD35"]
        assert len(set(rows.values())) == snap.tables["bene"].n == 3
        assert col(snap, "bene", "bene_1st_name")[rows["1A69B98CD30"]] == "FnameOne"
        assert col(snap, "bene", "bene_mbi_id")[rows["1A69B98CD32"]] == "1A69B98CD35"  # the current MBI wins
        assert col(snap, "bene", "bene_dob")[rows["1A69B98CD30"]] == dt.date(1940, 10, 27)
        assert snap.tables["bene_mbi"].n == 6
        r = snap.tables["roster"]
        assert set(col(snap, "roster", "org_id")) == {"A0001"} and set(col(snap, "roster", "roster_kind")) == {"Y"}
        assert set(r["performance_year"].values.tolist()) == {2018}
        assert set(col(snap, "roster", "file_date")) == {dt.date(2018, 11, 20)}
        assert set(r["bene_row"].values.tolist()) == set(rows.values())
        h = snap.manifest.history[0]
        assert h.source.kind == "cclf" and len(h.source.files) == 3 and h.source.rows["bene"] == 7
        assert all(len(f.sha256) == 64 for f in h.source.files)
    store.verify()


@pytest.mark.parametrize("name,n", [("bcda_synthetic_test_small", 2490), ("bcda_synthetic_improved_dev", 35)])
def test_synthetic_mbi_only_sets_load_as_rosters(store, name, n):
    with pytest.raises(IngestError, match=r"ZC8: line 1: record is 37 bytes, expected 549 \(every line is shorter"):
        read_cclf([FIX / name], org_id="A9990", year=2024)
    ingest_cclf(store, [FIX / name], org_id="A9990", year=2024, trimmed=True, now=T0)
    with Store.open(store.path) as snap:
        assert snap.tables["roster"].n == n and snap.tables["bene"].n == 0
        assert set(col(snap, "roster", "org_id")) == {"A9990"}
        assert snap.tables["roster"]["bene_row"].to_list()[0] is None  # nobody known yet
        assert all(len(m) == 11 for m in col(snap, "roster", "bene_mbi_id"))


def test_bare_names_need_an_aco(store):
    with pytest.raises(IngestError, match="ZC0: the name carries no ACO id and year; give org_id and year"):
        read_cclf([FIX / "bcda_synthetic_improved_dev"])


def test_every_claim_file_loads(tmp_path, store):
    paths = write_delivery(tmp_path / "in", claim_files())
    gen = ingest_cclf(store, paths, now=T0)
    with Store.open(store.path) as snap:
        assert snap.generation == gen
        rows = {t: snap.tables[t].n for t in snap.tables}
        assert rows == {"bene": 2, "bene_mbi": 1, "parta": 4, "parta_rev": 5, "parta_px": 1, "parta_dx": 3,
                        "partb": 4, "partb_line": 6, "dme": 1, "dme_line": 1, "pde": 2, "roster": 2,
                        "optout": 0, "enroll": 0,  # CCLF delivers no shared-system claims:
                        "fiss": 0, "fiss_rev": 0, "fiss_px": 0, "fiss_dx": 0, "mcs": 0, "mcs_line": 0}
        a, b = snap.bene_index(A), snap.bene_index(B)
        assert snap.bene_index(B_OLD) == b

        def claims(table, who):
            lo, hi = snap.claim_rows(table, who, who + 1)
            t = snap.tables[table]
            return {t["clm_id"].get(i): (t["final_action"].label(i), t["clm_adjsmt_type_cd"].label(i),
                                         t["sud_ind"].label(i), t["clm_grp_id"].get(i)) for i in range(lo, hi)}

        pa = claims("parta", a)
        assert {k: v[:3] for k, v in pa.items()} == {
            "1001": ("N", "0", "N"), "1002": ("N", "2", "N"), "1003": ("F", "1", "N")}
        assert len({v[3] for v in pa.values()}) == 1
        assert claims("parta", b)["1010"][:3] == ("F", "0", "Y")  # F11.20 opioid dependence in CCLF4
        pb = claims("partb", a)
        assert {k: v[:2] for k, v in pb.items()} == {"2001": ("N", "0"), "2002": ("N", "2"), "2003": ("F", "1")}
        assert claims("partb", b)["2100"][:3] == ("F", "0", "N")  # nicotine is not withheld
        assert {k: v[0] for k, v in claims("pde", b).items()} == {"4001": "N", "4002": "F"}
        assert {k: v[0] for k, v in claims("dme", a).items()} == {"3001": "F"}

        t = snap.tables["partb"]
        i = col(snap, "partb", "clm_id").index("2001")
        assert t["clm_pmt_amt"].to_list()[i] == Decimal("75.50")
        j = col(snap, "partb", "clm_id").index("2003")
        assert t["clm_pmt_amt"].to_list()[j] == Decimal("-65.50")
        lo, hi = t.links["partb_line"][i], t.links["partb_line"][i + 1]
        line = snap.tables["partb_line"]
        assert line["clm_line_num"].to_list()[lo:hi] == [1, 2]
        assert line["clm_line_srvc_unit_qty"].to_list()[lo] == Decimal("1.5")

        p = snap.tables["parta"]
        k = col(snap, "parta", "clm_id").index("1001")
        assert p["clm_from_dt"].to_list()[k] == dt.date(2024, 1, 2)
        assert p["clm_mdcr_ddctbl_amt"].to_list()[k] == Decimal("1632.00")  # from CCLFA
        assert p["clm_demo_1st_num"].get(k) == "77"
        assert p["clm_mdcr_ddctbl_amt"].to_list()[col(snap, "parta", "clm_id").index("1002")] is None
        rl, rh = p.links["parta_rev"][k], p.links["parta_rev"][k + 1]
        assert col(snap, "parta_rev", "clm_line_prod_rev_ctr_cd")[rl:rh] == ["0120", "0250"]
        assert col(snap, "parta", "bene_mbi_id")[col(snap, "parta", "clm_id").index("1010")] == B_OLD
        assert col(snap, "bene", "bene_dob")[b] == dt.date(1948, 2, 29)
        pde = snap.tables["pde"]
        assert pde["clm_line_days_suply_qty"].to_list() == [Decimal(30)] * 2
        assert set(pde["last_updated"].values.tolist()) == {int(T0.timestamp() * 1000)}
    store.verify()


def test_zipped_delivery_equals_plain(tmp_path):
    plain, _ = read_cclf(write_delivery(tmp_path / "a", claim_files()))
    zipped, src = read_cclf(write_delivery(tmp_path / "b", claim_files(), zip_name="P.A1234.ACO.ZCY24.D240115.zip"))
    assert any(f.name.endswith(".zip:" + file_name("0")) for f in src.files)
    for name, t in plain.items():
        for c, v in t.columns.items():
            z = zipped[name][c]
            assert (z.values.tolist() if hasattr(z, "values") else z.to_list()) == (
                v.values.tolist() if hasattr(v, "values") else v.to_list()), (name, c)


def test_weekly_delivery_adds_versions(tmp_path, store):
    ingest_cclf(store, write_delivery(tmp_path / "w1", {"5": [carrier("2001", "1", A, "0", "2024-01-10", "50.00")],
                                                          "8": [bene(A, "Ann")]}, listed=["5", "8"]), now=T0)
    week2 = {"5": [carrier("2002", "1", A, "2", "2024-01-20", "45.00")], "8": [bene(A, "Anne")]}
    ingest_cclf(store, write_delivery(tmp_path / "w2", week2, date="240122"), now=T0 + dt.timedelta(days=7))
    with Store.open(store.path) as snap:
        assert dict(zip(col(snap, "partb", "clm_id"), col(snap, "partb", "final_action"), strict=True)) == {"2001": "N", "2002": "F"}
        assert col(snap, "bene", "bene_1st_name") == ["Anne"] and col(snap, "bene", "bene_id") == ["1"]
        assert [h.source.note for h in snap.manifest.history] == ["A1234 Y2024 2024-01-15", "A1234 Y2024 2024-01-22"]


def test_older_shorter_records_load(tmp_path):
    # A CCLF5 of an older version: records end after DGNS_PRCDR_ICD_IND (byte 332).
    files = {"5": [carrier("2001", "1", A, "0", "2024-01-10", "50.00")], "8": [bene(A, "Ann")]}
    tables, _ = read_cclf(write_delivery(tmp_path, files, lengths={"5": 332}))
    t = tables["partb"]
    assert t["clm_dgns_8_cd"].to_list() == [""] and t["clm_dgns_9_cd"].to_list() == [""]
    assert t["clm_cntrctr_num"].to_list() == [""] and t["clm_dgns_1_cd"].to_list() == ["E119"]


# -- errors: each names file, line and field; nothing is loaded ------------------------------------


def tree(root):
    """Every file under `root` and a digest of its bytes: equal trees are byte-identical."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def _bad(tmp_path, store, files, match, **kw):
    ingest_cclf(store, write_delivery(tmp_path / "ok", {"8": [bene(A, "Ann")]}), now=T0)
    before, current = tree(store.path), store.current()
    with pytest.raises(IngestError, match=match):
        ingest_cclf(store, write_delivery(tmp_path / "bad", files, **kw))
    assert tree(store.path) == before and store.current() == current


def test_bad_date(tmp_path, store):
    files = claim_files()
    files["1"][2]["CLM_FROM_DT"] = "2024-13-01"
    _bad(tmp_path, store, files, r"ZC1Y24\.D240115\.T1234567: line 3: CLM_FROM_DT '2024-13-01' is not a date")


def test_bad_day_of_month(tmp_path, store):
    files = claim_files()
    files["8"][1]["BENE_DOB"] = "1949-02-29"
    _bad(tmp_path, store, files, r"ZC8Y24\.D240115\.T1234567: line 2: BENE_DOB '1949-02-29' is not a date")


def test_bad_amount(tmp_path, store):
    files = claim_files()
    files["5"][3]["CLM_LINE_CVRD_PD_AMT"] = "12.3.4"
    _bad(tmp_path, store, files, r"ZC5Y24\.D240115\.T1234567: line 4: CLM_LINE_CVRD_PD_AMT '12.3.4' is not a signed amount")
    files["5"][3]["CLM_LINE_CVRD_PD_AMT"] = "1-2.00"
    with pytest.raises(IngestError, match="'1-2.00' is not a signed amount"):
        read_cclf(write_delivery(tmp_path / "again", files))


def test_bad_codes(tmp_path, store):
    files = claim_files()
    files["6"][0]["CLM_ADJSMT_TYPE_CD"] = "7"
    _bad(tmp_path, store, files, r"ZC6Y24\.D240115\.T1234567: line 1: CLM_ADJSMT_TYPE_CD '7' is not 0 \(original\), 1 \(cancel\)")
    files = claim_files()
    files["5"][0]["CLM_TYPE_CD"] = "60"
    with pytest.raises(IngestError, match=r"ZC5Y24\.D240115\.T1234567: line 1: CLM_TYPE_CD '60' is not one of 71, 72"):
        read_cclf(write_delivery(tmp_path / "t", files))
    files = claim_files()
    files["2"][0]["CLM_LINE_NUM"] = "1A"
    with pytest.raises(IngestError, match=r"ZC2Y24\.D240115\.T1234567: line 1: CLM_LINE_NUM '1A' is not a number"):
        read_cclf(write_delivery(tmp_path / "n", files))


def test_record_count_mismatch(tmp_path, store):
    _bad(tmp_path, store, claim_files(), r"ZC4Y24\.D240115\.T1234567: the file has 3 records, CCLF0 says 9 \(.*ZC0Y24\.D240115\.T1234567: line 5\)$",
         counts={"4": 9})


def test_wrong_record_length(tmp_path, store):
    files = {"8": [bene(A, "Ann")], "9": claim_files()["9"]}
    paths = write_delivery(tmp_path / "bad", files, lengths={"9": 55})
    nine = next(p for p in paths if "ZC9" in p.name)
    nine.write_bytes(nine.read_bytes().rstrip(b"\n") + b"XYZ\n")
    with pytest.raises(IngestError, match=r"ZC9Y24\.D240115\.T1234567: line 1: record is 58 bytes, expected 55$"):
        read_cclf(paths)


def test_non_ascii_byte(tmp_path):
    paths = write_delivery(tmp_path, {"8": [bene(A, "Ann"), bene(B, "Bea")]})
    eight = next(p for p in paths if "ZC8" in p.name)
    data = bytearray(eight.read_bytes())
    data[549 + 1 + 81] = 0xC9  # first byte of the second record's first name
    eight.write_bytes(bytes(data))
    with pytest.raises(IngestError, match=r"ZC8Y24\.D240115\.T1234567: line 2: BENE_1ST_NAME has byte 0xc9, not printable ASCII"):
        read_cclf(paths)


def test_missing_file(tmp_path, store):
    files = claim_files()
    del files["3"]
    _bad(tmp_path, store, files, r"delivery A1234 Y2024 2024-01-15: CCLF0 lists CCLF3 \(1 records\) but no CCLF3 file",
         listed=list(claim_files()), counts={"3": 1})


def test_file_not_in_cclf0(tmp_path):
    paths = write_delivery(tmp_path, {"8": [bene(A, "Ann")], "9": []}, listed=["8"])
    with pytest.raises(IngestError, match=r"CCLF9 \(.*ZC9Y24.*\): not listed in CCLF0"):
        read_cclf(paths)


def test_missing_cclf0(tmp_path):
    paths = write_delivery(tmp_path, {"8": [bene(A, "Ann")]})
    next(p for p in paths if "ZC0" in p.name).unlink()
    with pytest.raises(IngestError, match=r"delivery A1234 Y2024 2024-01-15: no CCLF0"):
        read_cclf([tmp_path])


def test_child_without_header(tmp_path):
    files = claim_files()
    files["2"][4]["CUR_CLM_UNIQ_ID"] = "9999"
    with pytest.raises(IngestError, match=r"ZC2Y24\.D240115\.T1234567: line 5: CUR_CLM_UNIQ_ID '9999' has no CCLF1 header"):
        read_cclf(write_delivery(tmp_path, files))
    files = claim_files()
    files["1"][1]["CUR_CLM_UNIQ_ID"] = "1001"
    with pytest.raises(IngestError, match=r"ZC1Y24\.D240115\.T1234567: line 2: CUR_CLM_UNIQ_ID '1001' repeats line 1"):
        read_cclf(write_delivery(tmp_path / "dup", files))


def test_claim_of_unknown_beneficiary_loads_nothing(tmp_path, store):
    files = {"5": [carrier("2001", "1", "9XX9XX9XX99", "0", "2024-01-10", "5.00")], "8": [bene(A, "Ann")]}
    before = tree(store.path)
    with pytest.raises(ValueError, match="beneficiary '9XX9XX9XX99' is in neither this load nor the store"):
        ingest_cclf(store, write_delivery(tmp_path, files))
    assert tree(store.path) == before


def test_corrupt_zip(tmp_path, store):
    z = write_delivery(tmp_path / "z", claim_files(), zip_name="P.A1234.ACO.ZCY24.D240115.zip")[0]
    data = z.read_bytes()
    z.write_bytes(data[: len(data) // 2])
    ingest_cclf(store, write_delivery(tmp_path / "ok", {"8": [bene(A, "Ann")]}), now=T0)
    before = tree(store.path)
    with pytest.raises(IngestError, match=r"P.A1234.ACO.ZCY24.D240115.zip: corrupt zip archive"):
        ingest_cclf(store, [z])
    assert tree(store.path) == before
    # A member whose bytes were damaged fails its CRC check.
    z2 = write_delivery(tmp_path / "z2", claim_files(), zip_name="P.A1234.ACO.ZCY24.D240116.zip")[0]
    raw = bytearray(z2.read_bytes())
    with zipfile.ZipFile(z2) as zf:
        info = zf.infolist()[0]
    raw[info.header_offset + 30 + len(info.filename) + 5] ^= 0xFF
    z2.write_bytes(bytes(raw))
    with pytest.raises(IngestError, match="corrupt zip archive"):
        read_cclf([z2])


def test_bad_file_name(tmp_path):
    p = tmp_path / "claims.txt"
    p.write_bytes(b"x\n")
    with pytest.raises(IngestError, match="claims.txt: not a CCLF file name"):
        read_cclf([p])


# -- record structure: a cut, lengthened or split record refuses the whole delivery ------------------

EIGHT = "T.BCD.A0001.ZC8Y18.D181120.T1000009"


def _env() -> dict[str, str]:
    src = str(Path(fhirhose.__file__).parent.parent)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))


def archive_copy(tmp_path, name="delivery"):
    """A writable copy of the BCDA archive delivery."""
    d = tmp_path / name
    shutil.copytree(A0001, d)
    for p in [d, *d.iterdir()]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return d


def edit_record(path, line, fn):
    """Replace record `line` (1-based) of a file by fn(record)."""
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = fn(lines[line - 1])
    path.write_bytes(b"\n".join(lines))


def rows(tables):
    """Every value and link of delta tables, comparable with ==."""
    return {name: ({c: col.to_list() if hasattr(col, "to_list") else col.values.tolist() for c, col in t.columns.items()},
                   {k: v.tolist() for k, v in t.links.items()}) for name, t in tables.items()}


@pytest.mark.parametrize("line", [3, 7])  # a record in the middle; the last record
def test_cli_refuses_truncated_record(tmp_path, line):
    root = tmp_path / "store"

    def ingest(*args):
        cmd = [sys.executable, "-m", "fhirhose.cli", "ingest", "cclf", "--store", str(root), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)

    first = ingest("--create", str(A0001))
    assert first.returncode == 0, first.stderr
    before = tree(root)
    d = archive_copy(tmp_path)
    edit_record(d / EIGHT, line, lambda r: r[:200])
    done = ingest(str(d))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"fhirhose ingest: {d / EIGHT}: line {line}: record is 200 bytes, expected 549\n"
    assert tree(root) == before
    with Store.open(root) as snap:
        assert snap.generation == 1


@pytest.mark.parametrize("line,edit,length", [
    (3, lambda r: r[:200], 200),
    (7, lambda r: r[:200], 200),
    (7, lambda r: r[:548], 548),  # one trailing blank cut
    (3, lambda r: r[:300] + b"  " + r[300:], 551),  # two bytes in the address: every later field shifts
    (7, lambda r: r + b"  ", 551),
])
def test_record_of_wrong_length_refuses_delivery(tmp_path, store, line, edit, length):
    ingest_cclf(store, [A0001], now=T0)
    before, current = tree(store.path), store.current()
    d = archive_copy(tmp_path)
    edit_record(d / EIGHT, line, edit)
    want = f"{d / EIGHT}: line {line}: record is {length} bytes, expected 549"
    with pytest.raises(IngestError, match=re.escape(want) + "$"):
        ingest_cclf(store, [d], now=T0)
    assert tree(store.path) == before and store.current() == current


def test_bad_date_names_file_line_field(tmp_path, store):
    ingest_cclf(store, [A0001], now=T0)
    before = tree(store.path)
    d = archive_copy(tmp_path)
    dob = next(f for f in layout("8") if f.name == "BENE_DOB")
    edit_record(d / EIGHT, 7, lambda r: r[: dob.start] + b"x".ljust(10) + r[dob.end :])
    want = f"{d / EIGHT}: line 7: BENE_DOB 'x' is not a date (YYYY-MM-DD)"
    with pytest.raises(IngestError, match=re.escape(want) + "$"):
        ingest_cclf(store, [d], now=T0)
    assert tree(store.path) == before


def test_digits_field_read_as_number_takes_no_sign(tmp_path):
    files = claim_files()
    files["2"][0]["CLM_LINE_NUM"] = "-1"
    with pytest.raises(IngestError, match=r"ZC2Y24\.D240115\.T1234567: line 1: CLM_LINE_NUM '-1' is not a number"):
        read_cclf(write_delivery(tmp_path, files))


def test_mbi_only_records_are_checked(tmp_path):
    # A CCLF0 that gives CCLF8 records ending before BENE_DOB: roster only, the fields there still parse.
    paths = write_delivery(tmp_path, {"8": [{"BENE_MBI_ID": A, "BENE_FIPS_STATE_CD": "2X"}]}, lengths={"8": 32})
    with pytest.raises(IngestError, match=r"ZC8Y24\.D240115\.T1234567: line 1: BENE_FIPS_STATE_CD '2X' is not a number"):
        read_cclf(paths)


def test_line_ends(tmp_path):
    """CRLF is accepted when a file uses it for every line; a trailing newline, blank lines at
    the end and a missing final newline are not records; LF and CRLF mixed in a file are refused."""
    want = rows(read_cclf([A0001])[0])
    variants = {
        "crlf": lambda b: b.replace(b"\n", b"\r\n"),
        "crlf-no-final": lambda b: b.replace(b"\n", b"\r\n").removesuffix(b"\r\n"),
        "no-final-newline": lambda b: b.removesuffix(b"\n"),
        "blank-lines-at-end": lambda b: b + b"\n\n",
    }
    for name, fn in variants.items():
        d = archive_copy(tmp_path, name)
        for p in d.iterdir():
            p.write_bytes(fn(p.read_bytes()))
        assert rows(read_cclf([d])[0]) == want, name
    d = archive_copy(tmp_path, "mixed")
    edit_record(d / EIGHT, 2, lambda r: r + b"\r")
    with pytest.raises(IngestError, match=re.escape(f"{d / EIGHT}: line 1: ends in LF, but line 2 ends in CRLF")):
        read_cclf([d])
    d = archive_copy(tmp_path, "blank-inside")
    edit_record(d / EIGHT, 3, lambda r: r + b"\n")
    with pytest.raises(IngestError, match=re.escape(f"{d / EIGHT}: line 4: record is 0 bytes, expected 549")):
        read_cclf([d])


# The property below: what "valid" means per field, and so what a damaged delivery may do.
#   Structure (any file, CCLF0 included): records are exactly CCLF0's length, one per line, every
#   byte printable ASCII, counts as CCLF0 says. Any truncation, insertion, inserted or deleted
#   newline, or a byte flipped to a non-printable value changes the structure of a record or of
#   the file, so the delivery is refused -- or the change falls where nothing is read (a CCLF0
#   description, a trailing newline) and the same rows load.
#   Fields: X(n) text is any printable characters, so a flip inside a name or address is new,
#   valid data that no layout can detect; it is not generated. Digits (9), signed amounts (-9),
#   dates (YYYY-MM-DD) and coded fields (claim type, adjustment type, sex, xref indicator) have a
#   picture or a domain: a printable flip outside it (a letter or symbol) must be refused, naming
#   file, line and field. (A digit flipped to another digit is valid data and is not generated.)
#   `trimmed=True` (BCDA's synthetic sets) gives up the structure check and is not covered.

CODED = {"1": ("CLM_TYPE_CD", "CLM_ADJSMT_TYPE_CD"), "5": ("CLM_TYPE_CD", "CLM_ADJSMT_TYPE_CD"),
         "6": ("CLM_TYPE_CD", "CLM_ADJSMT_TYPE_CD"), "7": ("CLM_ADJSMT_TYPE_CD",), "8": ("BENE_SEX_CD",),
         "9": ("HICN_MBI_XREF_IND",)}
NOT_IN_ANY_PICTURE = b"QZ#*%&@!?^~x"
NON_PRINTABLE = bytes([*range(32), *range(127, 256)])


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    """Valid deliveries as {file name: bytes}, with what each loads and its CCLF0 record lengths."""
    made = write_delivery(tmp_path_factory.mktemp("claims"), claim_files())
    out = {}
    for name, paths in (("archive", sorted(A0001.iterdir())), ("claims", made)):
        files = {p.name: p.read_bytes() for p in paths}
        zero = next(b for n, b in files.items() if "ZC0" in n).decode().splitlines()[1:]
        lengths = {ln.split("|")[0].strip()[4:]: int(ln.split("|")[3]) for ln in zero if ln.strip()}
        out[name] = (files, rows(read_cclf(paths)[0]), lengths)
    return out


def _fid(name):
    return re.search(r"ZC([0-9AB])", name)[1]


@given(data=st.data())
def test_damaged_delivery_is_refused_or_loads_the_same(deliveries, data):
    files, want, lengths = deliveries[data.draw(st.sampled_from(sorted(deliveries)))]
    files = dict(files)
    how = data.draw(st.sampled_from(["truncate", "extend", "add newline", "drop newline", "flip byte", "flip field"]))
    named = None  # (file, line, field) the refusal must name
    if how == "flip field":
        name = data.draw(st.sampled_from(sorted(n for n in files if _fid(n) != "0" and files[n])))
        fid, reclen_ = _fid(name), lengths[_fid(name)]
        checked = [f for f in layout(fid) if f.end <= reclen_ and (
            f.fmt.startswith(("9", "-9", "YYYY")) or f.name in CODED.get(fid, ()))]
        f = data.draw(st.sampled_from(checked))
        starts = [0] + [i + 1 for i, c in enumerate(files[name]) if c == 10]  # lines may be longer than CCLF0's
        row = data.draw(st.integers(0, len(files[name].splitlines()) - 1))
        at = starts[row] + data.draw(st.integers(f.start, f.end - 1))
        byte = data.draw(st.sampled_from(NOT_IN_ANY_PICTURE))
        b = bytearray(files[name])
        b[at] = byte
        named = (name, row + 1, f.name)
    else:
        name = data.draw(st.sampled_from(sorted(files)))
        b = bytearray(files[name])
        if how == "truncate":
            del b[data.draw(st.integers(0, max(len(b) - 1, 0))):]
        elif how == "extend":
            at = data.draw(st.integers(0, len(b)))
            b[at:at] = data.draw(st.binary(min_size=1, max_size=3).map(lambda x: bytes(32 + c % 95 for c in x)))
        elif how == "add newline":
            at = data.draw(st.integers(0, len(b)))
            b[at:at] = b"\n"
        elif how == "drop newline":
            newlines = [i for i, c in enumerate(b) if c == 10]
            if newlines:
                del b[data.draw(st.sampled_from(newlines))]
        elif b:
            b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.sampled_from(NON_PRINTABLE))
    files[name] = bytes(b)
    with tempfile.TemporaryDirectory() as tmp:
        for n, content in files.items():
            Path(tmp, n).write_bytes(content)
        try:
            got = rows(read_cclf([tmp])[0])
        except FhirhoseError as e:
            assert any(n in str(e) for n in files), str(e)  # names the file
            if named:
                assert f"{named[0]}: line {named[1]}: {named[2]} " in str(e), (named, str(e))
            return
    assert named is None, f"{named} damaged and loaded"
    assert got == want, how


# -- 1-800-MEDICARE preference files -------------------------------------------------------------


def prefs_record(mbi, date, ind, source="1-800"):
    rec = bytearray(b" " * 389)
    rec[0:11] = mbi.encode()
    rec[354:362] = date.encode()
    rec[362:362 + len(source)] = source.encode()
    rec[368:369] = ind.encode()
    rec[384:389] = b"A1234"
    return bytes(rec)


def prefs_file(path, records, count=None):
    body = [prefs_record(*r) for r in records]
    trailer = b"TRL_BENEDATASHR20240115" + str(len(body) if count is None else count).rjust(10).encode()
    path.write_bytes(b"\n".join([b"HDR_BENEDATASHR20240115", *body, trailer]) + b"\n")
    return path


def test_preferences_latest_wins(tmp_path, store):
    ingest_cclf(store, write_delivery(tmp_path / "c", {"8": [bene(A, "Ann"), bene(B, "Bea")]}), now=T0)
    f1 = prefs_file(tmp_path / "P#EFT.ON.ACO.NGD1800.DPRF.D240110.T0000001",
                    [(A, "20240105", "N"), (B, "20240106", "N"), ("1CC0CC0CC00", "20240101", "Y", "")])
    f2 = prefs_file(tmp_path / "P#EFT.ON.ACO.NGD1800.DPRF.D240117.T0000001", [(A, "20240112", "Y")])
    ingest_prefs(store, [f2, f1], now=T0)
    with Store.open(store.path) as snap:
        o = snap.tables["optout"]
        got = dict(zip(col(snap, "optout", "bene_mbi_id"), col(snap, "optout", "pref_ind"), strict=True))
        assert got == {A: "Y", B: "N"}  # the blank-source record carries no preference
        assert o["bene_row"].values.tolist() == [snap.bene_index(A), snap.bene_index(B)]
        assert col(snap, "optout", "effective_dt")[0] == dt.date(2024, 1, 12)
        assert col(snap, "optout", "source_file")[0] == f2.name


def test_preference_file_errors(tmp_path):
    name = "P#EFT.ON.ACO.NGD1800.DPRF.D240110.T0000001"
    with pytest.raises(IngestError, match=r"line 3: trailer count '5', the file has 1 records"):
        read_prefs([prefs_file(tmp_path / name, [(A, "20240105", "N")], count=5)])
    with pytest.raises(IngestError, match=r"line 2: PREF_IND 'X' is not Y or N"):
        read_prefs([prefs_file(tmp_path / name, [(A, "20240105", "X")])])
    with pytest.raises(IngestError, match=r"line 3: EFFECTIVE_DT '20240230' is not a date"):
        read_prefs([prefs_file(tmp_path / name, [(A, "20240105", "N"), (B, "20240230", "N")])])
    with pytest.raises(IngestError, match=r"line 2: SOURCE_CD 'WEB' is not a 1-800-MEDICARE source code"):
        read_prefs([prefs_file(tmp_path / name, [(A, "20240105", "N", "WEB")])])
    (tmp_path / name).write_bytes(b"nothing\n")
    with pytest.raises(IngestError, match=r"line 1: no header record"):
        read_prefs([tmp_path / name])


# -- command line --------------------------------------------------------------------------------


def test_cli_ingest(tmp_path, capsys):
    root = tmp_path / "store"
    assert main(["ingest", "cclf", "--store", str(root), "--create", str(A0001)]) == 0
    out = capsys.readouterr().out
    assert "generation 1" in out and "bene +3" in out
    prefs = prefs_file(tmp_path / "P#EFT.ON.ACO.NGD1800.DPRF.D240110.T0000001", [("1A69B98CD30", "20240105", "N")])
    assert main(["ingest", "prefs", "--store", str(root), str(prefs)]) == 0
    assert "optout +1" in capsys.readouterr().out
    bad = tmp_path / "bad"
    shutil.copytree(A0001, bad)
    os.chmod(bad, 0o755)
    for p in bad.iterdir():
        if "ZC9" in p.name:
            os.chmod(p, 0o644)
            p.unlink()
    assert main(["ingest", "cclf", "--store", str(root), str(bad)]) == 2
    assert "CCLF0 lists CCLF9 (6 records) but no CCLF9 file is present" in capsys.readouterr().err
    with Store.open(root) as snap:
        assert snap.generation == 2 and snap.tables["optout"].n == 1
        assert np.all(snap.tables["optout"]["bene_row"].values >= 0)
    synthetic = ["ingest", "cclf", "--store", str(root), "--org-id", "A9990", "--year", "2024",
                 str(FIX / "bcda_synthetic_improved_dev")]
    assert main(synthetic) == 2
    assert "ZC8: line 1: record is 37 bytes, expected 549 (every line is shorter" in capsys.readouterr().err
    assert main([*synthetic, "--trimmed"]) == 0
    assert "generation 3: roster +35" in capsys.readouterr().out


# -- the vectorized field parsers against Python's own ---------------------------------------------


def _matrix(texts, width):
    return np.frombuffer("".join(t.rjust(width) for t in texts).encode(), np.uint8).reshape(len(texts), width)


@given(st.lists(st.tuples(st.integers(-(10**15), 10**15), st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=20))
def test_decimal_parser_matches_decimal(items):
    texts, want = [], []
    for cents, decimals, zeros in items:
        d = Decimal(cents).scaleb(-2).quantize(Decimal(1).scaleb(-decimals), rounding="ROUND_DOWN")
        sign = "-" if d < 0 else ""
        digits = f"{abs(d):.{decimals}f}"
        texts.append(sign + "0" * zeros + digits)
        want.append(int(d.scaleb(2)))
    values, bad = parse_decimal(_matrix(texts, 24), 2)
    assert not bad.any() and values.tolist() == want


@given(st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_date_parser_matches_datetime(d):
    days, bad = parse_dates(_matrix([d.isoformat().rjust(10, "0")], 10), "iso")
    assert not bad.any() and int(days[0]) == (d - dt.date(1970, 1, 1)).days
    ymd, bad = parse_dates(_matrix([d.strftime("%Y%m%d").rjust(8, "0")], 8), "ymd")
    assert not bad.any() and int(ymd[0]) == int(days[0])


def test_parsers_reject_malformed():
    _, bad = parse_decimal(_matrix(["1 2", "--1", "1.2.3", "1.234", "12-", ".", "99999999999999999999"], 24), 2)
    assert bad.tolist() == [True] * 7
    _, bad = parse_dates(_matrix(["2023-02-29", "2023-00-10", "2023/01/01", "0000-01-01", "          "], 10), "iso")
    assert bad.tolist() == [True, True, True, True, False]


def test_empty_claim_files_load(tmp_path, store):
    files = {fid: [] for fid in "1234567AB"} | {"8": [bene(A, "Ann")], "9": []}
    ingest_cclf(store, write_delivery(tmp_path, files), now=T0)
    with Store.open(store.path) as snap:
        assert {t: snap.tables[t].n for t in ("bene", "roster", "parta", "partb", "pde")} == {
            "bene": 1, "roster": 1, "parta": 0, "partb": 0, "pde": 0}
