"""CCW RIF samples (BFD's rif-static-samples) → the store's schema tables.

A test-only reader: pipe-delimited, header line first, one line per revenue line
with the claim header repeated (Part A), or one line per event (PDE). RIF names
map to CCLF-named schema columns as the data dictionary pairs them (e.g.
NCH_WKLY_PROC_DT → CLM_EFCTV_DT); RIF-only fields keep their own names.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import numpy as np

from fhirhose.columns import Table, Time
from fhirhose.fhir.eob_institutional import type_of_bill
from fhirhose.store import schema

# schema column → RIF field(s) (the first non-empty one wins) where the names differ.
PARTA = {
    "clm_type_cd": "NCH_CLM_TYPE_CD",
    "clm_efctv_dt": "NCH_WKLY_PROC_DT",
    "clm_query_cd": "CLAIM_QUERY_CODE",
    "prvdr_oscar_num": "PRVDR_NUM",
    "clm_bill_fac_type_cd": "CLM_FAC_TYPE_CD",
    "clm_bill_clsfctn_cd": "CLM_SRVC_CLSFCTN_TYPE_CD",
    "clm_bill_freq_cd": "CLM_FREQ_CD",
    "clm_mdcr_npmt_rsn_cd": "CLM_MDCR_NON_PMT_RSN_CD",
    "clm_nch_prmry_pyr_cd": "NCH_PRMRY_PYR_CD",
    "prvdr_fac_fips_st_cd": "PRVDR_STATE_CD",
    "fac_prvdr_npi_num": "ORG_NPI_NUM",
    "atndg_prvdr_npi_num": "AT_PHYSN_NPI",
    "oprtg_prvdr_npi_num": "OP_PHYSN_NPI",
    "othr_prvdr_npi_num": "OT_PHYSN_NPI",
    "bene_ptnt_stus_cd": "PTNT_DSCHRG_STUS_CD",
    "clm_mdcr_instnl_tot_chrg_amt": "CLM_TOT_CHRG_AMT",
    "clm_actv_care_from_dt": ("CLM_ADMSN_DT", "CLM_HOSPC_START_DT_ID"),
    "clm_admsn_type_cd": "CLM_IP_ADMSN_TYPE_CD",
    "clm_admsn_src_cd": "CLM_SRC_IP_ADMSN_CD",
    "dgns_drg_cd": "CLM_DRG_CD",
    "prncpl_dgns_cd": "PRNCPAL_DGNS_CD",
    "dgns_prcdr_icd_ind": "PRNCPAL_DGNS_VRSN_CD",
    "clm_oprtnl_ime_amt": "IME_OP_CLM_VAL_AMT",
    "clm_oprtnl_dsprprtnt_amt": "DSH_OP_CLM_VAL_AMT",
    "clm_hipps_uncompd_care_amt": "CLM_UNCOMPD_CARE_PMT_AMT",
    "clm_mdcr_ip_pps_cptl_ime_amt": "CLM_PPS_CPTL_IME_AMT",
    "clm_mdcr_ip_pps_dsprprtnt_amt": "CLM_PPS_CPTL_DSPRPRTNT_SHR_AMT",
    "clm_cntl_num": "FI_DOC_CLM_CNTL_NUM",
    "clm_org_cntl_num": "FI_ORIG_CLM_CNTL_NUM",
    "clm_instnl_per_diem_amt": "CLM_PASS_THRU_PER_DIEM_AMT",
    "clm_mdcr_ip_bene_ddctbl_amt": "NCH_BENE_IP_DDCTBL_AMT",
    "clm_mdcr_ddctbl_amt": "NCH_BENE_PTB_DDCTBL_AMT",
    "clm_mdcr_coinsrnc_amt": ("NCH_BENE_PTA_COINSRNC_LBLTY_AM", "NCH_BENE_PTB_COINSRNC_AMT"),
    "clm_blood_lblty_amt": "NCH_BENE_BLOOD_DDCTBL_LBLTY_AM",
    "clm_instnl_prfnl_amt": "NCH_PROFNL_CMPNT_CHRG_AMT",
    "clm_ncvrd_chrg_amt": "NCH_IP_NCVRD_CHRG_AMT",
}
PARTA_REV = {
    "clm_line_prod_rev_ctr_cd": "REV_CNTR",
    "clm_line_instnl_rev_ctr_dt": "REV_CNTR_DT",
    "clm_line_hcpcs_cd": "HCPCS_CD",
    "clm_line_srvc_unit_qty": "REV_CNTR_UNIT_CNT",
    "clm_line_cvrd_pd_amt": "REV_CNTR_PRVDR_PMT_AMT",
    "hcpcs_1_mdfr_cd": "HCPCS_1ST_MDFR_CD",
    "hcpcs_2_mdfr_cd": "HCPCS_2ND_MDFR_CD",
    "hcpcs_3_mdfr_cd": "HCPCS_3RD_MDFR_CD",
    "hcpcs_4_mdfr_cd": "HCPCS_4TH_MDFR_CD",
    "clm_rev_apc_hipps_cd": "REV_CNTR_APC_HIPPS_CD",
}
PDE = {
    "clm_id": "PDE_ID",
    "clm_line_from_dt": "SRVC_DT",
    "prvdr_srvc_id_qlfyr_cd": "SRVC_PRVDR_ID_QLFYR_CD",
    "clm_srvc_prvdr_gnrc_id_num": "SRVC_PRVDR_ID",
    "prvdr_prsbng_id_qlfyr_cd": "PRSCRBR_ID_QLFYR_CD",
    "clm_prsbng_prvdr_gnrc_id_num": "PRSCRBR_ID",
    "clm_line_rx_srvc_rfrnc_num": "RX_SRVC_RFRNC_NUM",
    "clm_line_ndc_cd": "PROD_SRVC_ID",
    "ptd_cntrct_id": "PLAN_CNTRCT_REC_ID",
    "clm_daw_prod_slctn_cd": "DAW_PROD_SLCTN_CD",
    "clm_line_srvc_unit_qty": "QTY_DSPNSD_NUM",
    "clm_line_days_suply_qty": "DAYS_SUPLY_NUM",
    "clm_line_rx_fill_num": "FILL_NUM",
    "clm_dspnsng_stus_cd": "DSPNSNG_STUS_CD",
    "clm_line_bene_pmt_amt": "PTNT_PAY_AMT",
    "clm_phrmcy_srvc_type_cd": "PHRMCY_SRVC_TYPE_CD",
}
# The load time the store would stamp (meta.lastUpdated is not compared).
LOADED = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _records(path: Path) -> list[dict[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("|")
    # Data rows of some BFD samples carry one field more than the header names: it is not a column.
    return [dict(zip(header, (v.strip() for v in line.split("|")), strict=False)) for line in lines[1:] if line]


def _value(kind: str, text: str):
    if text == "":
        return None
    if kind == "date":
        return dt.datetime.strptime(text, "%d-%b-%Y").date()
    if kind == "int":
        return int(Decimal(text))
    return text


def _pick(record: dict[str, str], col: str, renames: dict) -> str:
    fields = renames.get(col, col.upper())
    for f in (fields,) if isinstance(fields, str) else fields:
        if record.get(f):
            return record[f]
    return ""


def _table(name: str, records: list[dict[str, str]], renames: dict, extra=None, links=None) -> Table:
    kinds = schema.kinds(name)
    cols = {}
    for col, kind in kinds.items():
        if kind == "time":
            continue
        values = [_value(kind, _pick(r, col, renames)) for r in records]
        if any(v is not None for v in values):
            cols[col] = schema.column_for(kind, values)
    if "last_updated" in kinds:
        cols["last_updated"] = Time.from_list([LOADED] * len(records))
    cols.update(extra or {})
    return schema.complete(name, cols, len(records), links)


def _offsets(counts: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def read_parta(path: Path) -> dict[str, Table]:
    """A Part A RIF sample as `parta` + `parta_rev` / `parta_px` / `parta_dx`."""
    lines = _records(path)
    claims: dict[str, list[dict[str, str]]] = {}
    for r in lines:
        claims.setdefault(r["CLM_ID"], []).append(r)
    headers = [rows[0] for rows in claims.values()]
    revs = [r for rows in claims.values() for r in rows]
    px = [_procedures(h) for h in headers]
    dx = [_diagnoses(h) for h in headers]
    tables = {
        "parta_rev": _table("parta_rev", revs, PARTA_REV),
        "parta_px": _table("parta_px", [p for ps in px for p in ps], {}),
        "parta_dx": _table("parta_dx", [d for ds in dx for d in ds], {}),
    }
    links = {
        "parta_rev": _offsets([len(rows) for rows in claims.values()]),
        "parta_px": _offsets([len(p) for p in px]),
        "parta_dx": _offsets([len(d) for d in dx]),
    }
    parta = _table("parta", headers, PARTA, links=links)
    # The store derives the NUBC type of bill at load; so does this reader.
    bill_type = type_of_bill(parta["clm_bill_fac_type_cd"], parta["clm_bill_clsfctn_cd"], parta["clm_bill_freq_cd"])
    tables["parta"] = Table("parta", {**parta.columns, "clm_bill_type_cd": bill_type}, parta.links)
    return tables


def _procedures(h: dict[str, str]) -> list[dict[str, str]]:
    return [
        {
            "CLM_VAL_SQNC_NUM": str(n),
            "CLM_PRCDR_CD": h[f"ICD_PRCDR_CD{n}"],
            "CLM_PRCDR_PRFRM_DT": h.get(f"PRCDR_DT{n}", ""),
            "DGNS_PRCDR_ICD_IND": h.get(f"ICD_PRCDR_VRSN_CD{n}", ""),
        }
        for n in range(1, 26)
        if h.get(f"ICD_PRCDR_CD{n}")
    ]


def _diagnoses(h: dict[str, str]) -> list[dict[str, str]]:
    # CCLF4 rows: D other (ICD_DGNS_CDn), 1 first external cause, E external cause, R reason for visit.
    slots = [("D", n, f"ICD_DGNS_CD{n}", f"ICD_DGNS_VRSN_CD{n}", f"CLM_POA_IND_SW{n}") for n in range(1, 26)]
    slots.append(("1", 1, "FST_DGNS_E_CD", "FST_DGNS_E_VRSN_CD", ""))
    slots += [("E", n, f"ICD_DGNS_E_CD{n}", f"ICD_DGNS_E_VRSN_CD{n}", f"CLM_E_POA_IND_SW{n}") for n in range(1, 13)]
    slots += [("R", n, f"RSN_VISIT_CD{n}", f"RSN_VISIT_VRSN_CD{n}", "") for n in range(1, 4)]
    return [
        {
            "CLM_PROD_TYPE_CD": kind,
            "CLM_VAL_SQNC_NUM": str(n),
            "CLM_DGNS_CD": h[code],
            "DGNS_PRCDR_ICD_IND": h.get(ver, ""),
            "CLM_POA_IND": h.get(poa, ""),
        }
        for kind, n, code, ver, poa in slots
        if h.get(code)
    ]


def read_pde(path: Path) -> dict[str, Table]:
    """A PDE RIF sample as the `pde` table."""
    return {"pde": _table("pde", _records(path), {**PDE, "fill_num": "FILL_NUM"})}
