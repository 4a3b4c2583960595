"""A small reader for CCW RIF samples (pipe-delimited, header row) into schema tables.

Only what the golden tests need: beneficiaries (+ history → bene_mbi), carrier
and DME claims (one row per line, header fields repeated). RIF names map to the
schema's CCLF names where CCLF has the field (e.g. LINE_NCH_PMT_AMT →
clm_line_cvrd_pd_amt, per the data dictionary) and to their own lower-cased
names for the RIF-only columns the schema carries.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from fhirhose.store import schema

__all__ = ["read_rif", "bene_tables", "carrier_tables", "dme_tables", "LAST_UPDATED"]

LAST_UPDATED = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

_DX = {f"clm_dgns_{k}_cd": f"ICD_DGNS_CD{k}" for k in range(1, 13)}
_MDFR = {"hcpcs_1_mdfr_cd": "HCPCS_1ST_MDFR_CD", "hcpcs_2_mdfr_cd": "HCPCS_2ND_MDFR_CD",
         "hcpcs_3_mdfr_cd": "HCPCS_3RD_MDFR_CD", "hcpcs_4_mdfr_cd": "HCPCS_4TH_MDFR_CD"}

# schema column ← RIF column, per table.
_CLAIM_HEADER = {
    "clm_id": "CLM_ID", "bene_id": "BENE_ID", "clm_grp_id": "CLM_GRP_ID", "final_action": "FINAL_ACTION",
    "clm_type_cd": "NCH_CLM_TYPE_CD", "clm_from_dt": "CLM_FROM_DT", "clm_thru_dt": "CLM_THRU_DT",
    "clm_efctv_dt": "NCH_WKLY_PROC_DT", "clm_disp_cd": "CLM_DISP_CD", "clm_cntrctr_num": "CARR_NUM",
    "clm_carr_pmt_dnl_cd": "CARR_CLM_PMT_DNL_CD", "clm_pmt_amt": "CLM_PMT_AMT",
    "carr_clm_prmry_pyr_pd_amt": "CARR_CLM_PRMRY_PYR_PD_AMT", "clm_rfrg_prvdr_npi_num": "RFR_PHYSN_NPI",
    "carr_clm_prvdr_asgnmt_ind_sw": "CARR_CLM_PRVDR_ASGNMT_IND_SW",
    "nch_clm_prvdr_pmt_amt": "NCH_CLM_PRVDR_PMT_AMT", "nch_clm_bene_pmt_amt": "NCH_CLM_BENE_PMT_AMT",
    "nch_carr_clm_sbmtd_chrg_amt": "NCH_CARR_CLM_SBMTD_CHRG_AMT", "clm_alowd_chrg_amt": "NCH_CARR_CLM_ALOWD_AMT",
    "carr_clm_cash_ddctbl_apld_amt": "CARR_CLM_CASH_DDCTBL_APLD_AMT", "carr_clm_hcpcs_yr_cd": "CARR_CLM_HCPCS_YR_CD",
    "dgns_prcdr_icd_ind": "ICD_DGNS_VRSN_CD1", "clm_clncl_tril_num": "CLM_CLNCL_TRIL_NUM",
    "clm_cntl_num": "CARR_CLM_CNTL_NUM", "nch_near_line_rec_ident_cd": "NCH_NEAR_LINE_REC_IDENT_CD",
    "carr_clm_entry_cd": "CARR_CLM_ENTRY_CD", **_DX,
}
_CLAIM_LINE = {
    "clm_line_num": "LINE_NUM", "clm_line_srvc_unit_qty": "LINE_SRVC_CNT", "clm_fed_type_srvc_cd": "LINE_CMS_TYPE_SRVC_CD",
    "clm_pos_cd": "LINE_PLACE_OF_SRVC_CD", "clm_line_from_dt": "LINE_1ST_EXPNS_DT", "clm_line_thru_dt": "LINE_LAST_EXPNS_DT",
    "clm_line_hcpcs_cd": "HCPCS_CD", "hcpcs_betos_cd": "BETOS_CD", "clm_line_cvrd_pd_amt": "LINE_NCH_PMT_AMT",
    "line_bene_pmt_amt": "LINE_BENE_PMT_AMT", "line_prvdr_pmt_amt": "LINE_PRVDR_PMT_AMT",
    "line_bene_ptb_ddctbl_amt": "LINE_BENE_PTB_DDCTBL_AMT", "line_bene_prmry_pyr_pd_amt": "LINE_BENE_PRMRY_PYR_PD_AMT",
    "line_coinsrnc_amt": "LINE_COINSRNC_AMT", "line_sbmtd_chrg_amt": "LINE_SBMTD_CHRG_AMT",
    "clm_line_alowd_chrg_amt": "LINE_ALOWD_CHRG_AMT", "clm_prcsg_ind_cd": "LINE_PRCSG_IND_CD",
    "line_pmt_80_100_cd": "LINE_PMT_80_100_CD", "line_service_deductible": "LINE_SERVICE_DEDUCTIBLE",
    "clm_line_dgns_cd": "LINE_ICD_DGNS_CD", "line_ndc_cd": "LINE_NDC_CD", "clm_rndrg_prvdr_tax_num": "TAX_NUM",
    "clm_prvdr_spclty_cd": "PRVDR_SPCLTY", "prtcptng_ind_cd": "PRTCPTNG_IND_CD", **_MDFR,
}
_CARRIER_HEADER = {**_CLAIM_HEADER, "clm_blg_prvdr_npi_num": "CARR_CLM_BLG_NPI_NUM"}
_CARRIER_LINE = {
    **_CLAIM_LINE, "clm_line_prmry_pyr_cd": "LINE_BENE_PRMRY_PYR_CD", "rndrg_prvdr_npi_num": "PRF_PHYSN_NPI",
    "org_npi_num": "ORG_NPI_NUM", "rndrg_prvdr_type_cd": "CARR_LINE_PRVDR_TYPE_CD",
    "rndrg_prvdr_fips_st_cd": "PRVDR_STATE_CD", "prvdr_zip": "PRVDR_ZIP",
    "carr_line_rdcd_pmt_phys_astn_c": "CARR_LINE_RDCD_PMT_PHYS_ASTN_C", "carr_line_prcng_lclty_cd": "CARR_LINE_PRCNG_LCLTY_CD",
    "carr_line_mtus_cnt": "CARR_LINE_MTUS_CNT", "carr_line_mtus_cd": "CARR_LINE_MTUS_CD",
    "carr_line_clia_lab_num": "CARR_LINE_CLIA_LAB_NUM",
}
_DME_LINE = {
    **_CLAIM_LINE, "clm_prmry_pyr_cd": "LINE_BENE_PRMRY_PYR_CD", "payto_prvdr_npi_num": "PRVDR_NPI",
    # The dictionary maps CCLF6 ORDRG_PRVDR_NPI_NUM to RFR_PHYSN_NPI (a RIF header field).
    "ordrg_prvdr_npi_num": "RFR_PHYSN_NPI", "prvdr_state_cd": "PRVDR_STATE_CD", "prvdr_num": "PRVDR_NUM",
    "line_prmry_alowd_chrg_amt": "LINE_PRMRY_ALOWD_CHRG_AMT", "line_dme_prchs_price_amt": "LINE_DME_PRCHS_PRICE_AMT",
    "dmerc_line_prcng_state_cd": "DMERC_LINE_PRCNG_STATE_CD", "dmerc_line_supplr_type_cd": "DMERC_LINE_SUPPLR_TYPE_CD",
    "dmerc_line_scrn_svgs_amt": "DMERC_LINE_SCRN_SVGS_AMT", "dmerc_line_mtus_cnt": "DMERC_LINE_MTUS_CNT",
    "dmerc_line_mtus_cd": "DMERC_LINE_MTUS_CD",
}
_BENE = {
    "bene_id": "BENE_ID", "bene_mbi_id": "MBI_NUM", "bene_hic_num": "BENE_CRNT_HIC_NUM", "bene_zip_cd": "BENE_ZIP_CD",
    "bene_dob": "BENE_BIRTH_DT", "bene_sex_cd": "BENE_SEX_IDENT_CD", "bene_race_cd": "BENE_RACE_CD",
    "bene_mdcr_stus_cd": "BENE_MDCR_STATUS_CD", "bene_death_dt": "DEATH_DT", "bene_1st_name": "BENE_GVN_NAME",
    "bene_midl_name": "BENE_MDL_NAME", "bene_last_name": "BENE_SRNM_NAME", "bene_orgnl_entlmt_rsn_cd": "BENE_ENTLMT_RSN_ORIG",
    "bene_crec_cd": "BENE_ENTLMT_RSN_CURR", "bene_esrd_ind": "BENE_ESRD_IND",
    # CCLF8 carries one current code; the RIF has twelve months: take December's.
    "bene_dual_stus_cd": "META_DUAL_ELGBL_STUS_DEC_CD", "bene_entlmt_buyin_ind": "MDCR_ENTLMT_BUYIN_12_IND",
    "ptc_cntrct_id": "PTC_CNTRCT_DEC_ID", "ptc_pbp_id": "PTC_PBP_DEC_ID", "ptd_cntrct_id": "PTD_CNTRCT_DEC_ID",
    "ptd_pbp_id": "PTD_PBP_DEC_ID", "ptd_sgmt_id": "PTD_SGMT_DEC_ID",
    "bene_part_a_enrlmt_bgn_dt": "PTA_CVRG_STRT_DT", "bene_part_b_enrlmt_bgn_dt": "PTB_CVRG_STRT_DT",
    "pta_cvrg_end_dt": "PTA_CVRG_END_DT", "ptb_cvrg_end_dt": "PTB_CVRG_END_DT", "ptd_cvrg_strt_dt": "PTD_CVRG_STRT_DT",
    "ptd_cvrg_end_dt": "PTD_CVRG_END_DT", "bene_pta_trmntn_cd": "BENE_PTA_TRMNTN_CD",
    "bene_ptb_trmntn_cd": "BENE_PTB_TRMNTN_CD", "rfrnc_yr": "RFRNC_YR", "mbi_efctv_bgn_dt": "EFCTV_BGN_DT",
    **{f"bene_line_{k}_adr": f"DRVD_LINE_{k}_ADR" for k in range(1, 7)},
    "geo_zip_plc_name": "CITY_NAME", "geo_usps_state_cd": "STATE_CODE",
}


def read_rif(path: Path) -> list[dict[str, str]]:
    """Rows of a RIF sample as {column: value}, empty values dropped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    head = lines[0].split("|")
    # Data rows of some BFD samples carry one field more than the header names: it is not a column.
    return [{k: v for k, v in zip(head, line.split("|"), strict=False) if v} for line in lines[1:] if line]


def _value(kind: str, raw: str | None):
    if raw is None:
        return None
    if kind == "date":
        if raw.isdigit():
            return dt.datetime.strptime(raw, "%Y%m%d").date()
        return dt.datetime.strptime(raw, "%d-%b-%Y").date()
    return raw


def _table(name: str, rows: list[dict[str, str]], mapping: dict[str, str], links=None, extra=None):
    kinds = schema.kinds(name)
    cols = {col: schema.column_for(kinds[col], [_value(kinds[col], r.get(src)) for r in rows]) for col, src in mapping.items()}
    cols.update(extra or {})
    return schema.complete(name, cols, len(rows), links)


def _stamp(n: int):
    return {"last_updated": schema.column_for("time", [LAST_UPDATED] * n)}


def _claims(root: str, line: str, rows: list[dict[str, str]], header: dict, line_map: dict):
    by_claim: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_claim.setdefault(r["CLM_ID"], []).append(r)
    heads = [v[0] for v in by_claim.values()]
    lines = [r for v in by_claim.values() for r in v]
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in by_claim.values()])])
    return {
        root: _table(root, heads, header, {line: offsets}, _stamp(len(heads))),
        line: _table(line, lines, line_map),
    }


def carrier_tables(path: Path) -> dict:
    """`partb` + `partb_line` from a RIF carrier sample."""
    return _claims("partb", "partb_line", read_rif(path), _CARRIER_HEADER, _CARRIER_LINE)


def dme_tables(path: Path) -> dict:
    """`dme` + `dme_line` from a RIF DME sample."""
    return _claims("dme", "dme_line", read_rif(path), _CLAIM_HEADER, _DME_LINE)


def bene_tables(bene_path: Path, history_path: Path) -> dict:
    """`bene` + `bene_mbi` (historic MBIs: the history's MBIs other than the current one),
    with empty claim tables for `bene`'s other links."""
    benes = read_rif(bene_path)
    history = read_rif(history_path)
    mbi_rows, counts = [], []
    for b in benes:
        seen = {b.get("MBI_NUM")}
        mine = []
        for h in history:
            if h["BENE_ID"] == b["BENE_ID"] and h.get("MBI_NUM") not in seen:
                seen.add(h.get("MBI_NUM"))
                mine.append({**h, "CRNT_NUM": b.get("MBI_NUM")})
        mbi_rows += mine
        counts.append(len(mine))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    mbi = _table("bene_mbi", mbi_rows, {"crnt_num": "CRNT_NUM", "prvs_num": "MBI_NUM",
                                         "prvs_id_efctv_dt": "EFCTV_BGN_DT", "prvs_id_obslt_dt": "EFCTV_END_DT"})
    bene = _table("bene", benes, _BENE, {"bene_mbi": offsets}, _stamp(len(benes)))
    # Binding checks every link of `bene`, so its claim tables are present (empty).
    claims = {name: schema.complete(name, {}, 0) for name in schema.LINKS["bene"] if name != "bene_mbi"}
    return {"bene": bene, "bene_mbi": mbi, **claims}
