"""The store's tables and their columns: the contract between ingest, synth and templates.

Column names are the CCLF field names in lower case (CCLF Information Packet
v36), so a template reads like the data dictionary it implements. Kinds:

  str    Str (UTF-8, empty = missing)        date   Date (int32 days)
  cat    Cat (small code domain, uint16)     money  Num scale 2 (cents)
  int    Num scale 0                         qty    Num scale 4, trimmed
  time   Time (ms since epoch, UTC)

Every claim table also carries the columns the store derives (`CLAIM_STORE`):
the FHIR id part, the beneficiary's FHIR id, the load time of the version
(`meta.lastUpdated`, what `_since` filters on) and whether it is the final
version. Producers that do not know a column leave it missing:
`empty_table()` / `complete()` fill absent columns with missing values.

The shared-system tables (`fiss`, `mcs`) are a second claim source beside the NCH
ones: a daily feed of claims still in processing. Tables are sorted by beneficiary; `bene` links to each claim table and claim
headers link to their child tables (see LINKS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..columns import NO_DATE, NO_NUM, Cat, Column, Date, Num, Str, Table, Time
from ..errors import BatchError

__all__ = ["ColSpec", "TABLES", "LINKS", "CLAIM_TABLES", "NCH_TABLES", "SHARED_SYSTEM_TABLES", "column_for", "empty_column", "complete", "kinds"]


@dataclass(frozen=True)
class ColSpec:
    name: str
    kind: str  # str | cat | date | money | int | qty | time


def _parse(spec: str) -> tuple[ColSpec, ...]:
    out = []
    for item in spec.split():
        name, kind = item.split(":")
        out.append(ColSpec(name, kind))
    return tuple(out)


# Columns the store derives for every claim table.
CLAIM_STORE = (
    "clm_id:str bene_id:str bene_mbi_id:str cur_clm_uniq_id:str last_updated:time "
    "final_action:cat clm_grp_id:str sud_ind:cat"
)

TABLES: dict[str, tuple[ColSpec, ...]] = {
    # CCLF8 (+ Part C/D contracts for Coverage and the load time).
    "bene": _parse(
        "bene_id:str bene_mbi_id:str bene_hic_num:str bene_fips_state_cd:cat bene_fips_cnty_cd:cat "
        "bene_zip_cd:str bene_dob:date bene_sex_cd:cat bene_race_cd:cat bene_age:int "
        "bene_mdcr_stus_cd:cat bene_dual_stus_cd:cat bene_death_dt:date bene_rng_bgn_dt:date "
        "bene_rng_end_dt:date bene_1st_name:str bene_midl_name:str bene_last_name:str "
        "bene_orgnl_entlmt_rsn_cd:cat bene_entlmt_buyin_ind:cat bene_part_a_enrlmt_bgn_dt:date "
        "bene_part_b_enrlmt_bgn_dt:date bene_line_1_adr:str bene_line_2_adr:str bene_line_3_adr:str "
        "bene_line_4_adr:str bene_line_5_adr:str bene_line_6_adr:str geo_zip_plc_name:str "
        "geo_usps_state_cd:cat geo_zip5_cd:str geo_zip4_cd:str "
        "ptc_cntrct_id:str ptc_pbp_id:str ptd_cntrct_id:str ptd_pbp_id:str "
        "bene_crec_cd:cat bene_esrd_ind:cat last_updated:time "
        # RIF-only (CCW beneficiary file), so BFD's Patient/Coverage can be compared: entitlement
        # end (termination code, coverage end), Part D coverage, reference year, MBI start.
        "bene_pta_trmntn_cd:cat bene_ptb_trmntn_cd:cat pta_cvrg_end_dt:date ptb_cvrg_end_dt:date "
        "ptd_cvrg_strt_dt:date ptd_cvrg_end_dt:date ptd_sgmt_id:str rfrnc_yr:int mbi_efctv_bgn_dt:date"
    ),
    # CCLF9: historic MBIs of a beneficiary.
    "bene_mbi": _parse("crnt_num:str prvs_num:str prvs_id_efctv_dt:date prvs_id_obslt_dt:date"),
    # CCLF1 header with the CCLFA fields (1:1 per claim) folded in.
    "parta": _parse(
        CLAIM_STORE + " " + (_PARTA := "prvdr_oscar_num:str bene_hic_num:str clm_type_cd:cat clm_from_dt:date "
        "clm_thru_dt:date clm_bill_fac_type_cd:cat clm_bill_clsfctn_cd:cat prncpl_dgns_cd:str "
        "admtg_dgns_cd:str clm_mdcr_npmt_rsn_cd:cat clm_pmt_amt:money clm_nch_prmry_pyr_cd:cat "
        "prvdr_fac_fips_st_cd:cat bene_ptnt_stus_cd:cat dgns_drg_cd:cat clm_op_srvc_type_cd:cat "
        "fac_prvdr_npi_num:str oprtg_prvdr_npi_num:str atndg_prvdr_npi_num:str othr_prvdr_npi_num:str "
        "clm_adjsmt_type_cd:cat clm_efctv_dt:date clm_idr_ld_dt:date bene_eqtbl_bic_hicn_num:str "
        "clm_admsn_type_cd:cat clm_admsn_src_cd:cat clm_bill_freq_cd:cat clm_query_cd:cat "
        "dgns_prcdr_icd_ind:cat clm_mdcr_instnl_tot_chrg_amt:money clm_mdcr_ip_pps_cptl_ime_amt:money "
        "clm_oprtnl_ime_amt:money clm_mdcr_ip_pps_dsprprtnt_amt:money clm_hipps_uncompd_care_amt:money "
        "clm_oprtnl_dsprprtnt_amt:money clm_blg_prvdr_oscar_num:str clm_blg_prvdr_npi_num:str "
        "clm_oprtg_prvdr_npi_num:str clm_atndg_prvdr_npi_num:str clm_othr_prvdr_npi_num:str "
        "clm_cntl_num:str clm_org_cntl_num:str clm_cntrctr_num:str "
        # CCLFA
        "clm_actv_care_from_dt:date clm_ngaco_pbpmt_sw:cat clm_ngaco_pdschrg_hcbs_sw:cat "
        "clm_ngaco_snf_wvr_sw:cat clm_ngaco_tlhlth_sw:cat clm_ngaco_cptatn_sw:cat "
        "clm_demo_1st_num:str clm_demo_2nd_num:str clm_demo_3rd_num:str clm_demo_4th_num:str "
        "clm_demo_5th_num:str clm_pbp_inclsn_amt:money clm_pbp_rdctn_amt:money clm_ngaco_cmg_wvr_sw:cat "
        "clm_instnl_per_diem_amt:money clm_mdcr_ip_bene_ddctbl_amt:money clm_mdcr_coinsrnc_amt:money "
        "clm_blood_lblty_amt:money clm_instnl_prfnl_amt:money clm_ncvrd_chrg_amt:money "
        "clm_mdcr_ddctbl_amt:money clm_rlt_cond_cd:cat clm_oprtnl_outlr_amt:money "
        "clm_mdcr_new_tech_amt:money clm_islet_isoln_amt:money clm_sqstrtn_rdctn_amt:money "
        "clm_1_rev_cntr_ansi_rsn_cd:cat clm_1_rev_cntr_ansi_grp_cd:cat clm_mips_pmt_amt:money "
        # Derived at load from the three bill-type parts (fhir.eob_institutional.type_of_bill).
        "clm_bill_type_cd:cat "
        # RIF-only fields (CCW names) that BFD maps; CCLF leaves them missing.
        "nch_near_line_rec_ident_cd:cat fi_num:cat fi_clm_proc_dt:date fi_clm_actn_cd:cat "
        "clm_mco_pd_sw:cat nch_ptnt_status_ind_cd:cat clm_pps_ind_cd:cat nch_blood_pnts_frnshd_qty:int "
        "nch_bene_dschrg_dt:date nch_vrfd_ncvrd_stay_from_dt:date nch_vrfd_ncvrd_stay_thru_dt:date "
        "nch_bene_mdcr_bnfts_exhtd_dt_i:date nch_qlfyd_stay_from_dt:date nch_qlfyd_stay_thru_dt:date "
        "clm_hha_lupa_ind_cd:cat clm_hha_rfrl_cd:cat clm_hha_tot_visit_cnt:int bene_hospc_prd_cnt:int "
        "nch_prmry_pyr_clm_pd_amt:money clm_utlztn_day_cnt:int bene_tot_coinsrnc_days_cnt:int "
        "clm_non_utlztn_days_cnt:int bene_lrd_used_cnt:int clm_tot_pps_cptl_amt:money "
        "clm_pps_cptl_fsp_amt:money clm_pps_cptl_outlier_amt:money clm_pps_cptl_excptn_amt:money "
        "clm_pps_old_cptl_hld_hrmls_amt:money nch_drg_outlier_aprvd_pmt_amt:money "
        "nch_ip_tot_ddctn_amt:money clm_op_prvdr_pmt_amt:money clm_op_bene_pmt_amt:money")
    ),
    # CCLF2 revenue center lines.
    "parta_rev": _parse(
        _PARTA_REV := "clm_line_num:int clm_line_from_dt:date clm_line_thru_dt:date clm_line_prod_rev_ctr_cd:cat "
        "clm_line_instnl_rev_ctr_dt:date clm_line_hcpcs_cd:str clm_line_srvc_unit_qty:qty "
        "clm_line_cvrd_pd_amt:money hcpcs_1_mdfr_cd:cat hcpcs_2_mdfr_cd:cat hcpcs_3_mdfr_cd:cat "
        "hcpcs_4_mdfr_cd:cat hcpcs_5_mdfr_cd:cat clm_rev_apc_hipps_cd:str clm_fac_prvdr_oscar_num:str "
        # RIF-only revenue center fields BFD maps.
        "rev_cntr_stus_ind_cd:cat rev_cntr_ddctbl_coinsrnc_cd:cat rev_cntr_1st_ansi_cd:cat "
        "rev_cntr_2nd_ansi_cd:cat rev_cntr_rate_amt:money rev_cntr_tot_chrg_amt:money "
        "rev_cntr_ncvrd_chrg_amt:money rev_cntr_pmt_amt_amt:money rev_cntr_bene_pmt_amt:money "
        "rev_cntr_ptnt_rspnsblty_pmt:money rev_cntr_blood_ddctbl_amt:money rev_cntr_cash_ddctbl_amt:money "
        "rev_cntr_coinsrnc_wge_adjstd_c:money rev_cntr_rdcd_coinsrnc_amt:money "
        "rev_cntr_1st_msp_pd_amt:money rev_cntr_2nd_msp_pd_amt:money"
    ),
    # CCLF3 procedures.
    "parta_px": _parse(
        _PARTA_PX := "clm_val_sqnc_num:int clm_prcdr_cd:str clm_prcdr_prfrm_dt:date dgns_prcdr_icd_ind:cat"
    ),
    # CCLF4 diagnoses.
    "parta_dx": _parse(
        _PARTA_DX := "clm_prod_type_cd:cat clm_val_sqnc_num:int clm_dgns_cd:str clm_poa_ind:str dgns_prcdr_icd_ind:cat"
    ),
    # CCLF5 header fields (repeated on every line in the file, once here).
    "partb": _parse(
        CLAIM_STORE + " " + (_PARTB := "bene_hic_num:str clm_type_cd:cat clm_from_dt:date clm_thru_dt:date "
        "clm_carr_pmt_dnl_cd:cat clm_adjsmt_type_cd:cat clm_efctv_dt:date clm_idr_ld_dt:date "
        "clm_cntl_num:str bene_eqtbl_bic_hicn_num:str clm_disp_cd:cat clm_dgns_1_cd:str "
        "clm_dgns_2_cd:str clm_dgns_3_cd:str clm_dgns_4_cd:str clm_dgns_5_cd:str clm_dgns_6_cd:str "
        "clm_dgns_7_cd:str clm_dgns_8_cd:str clm_dgns_9_cd:str clm_dgns_10_cd:str clm_dgns_11_cd:str "
        "clm_dgns_12_cd:str dgns_prcdr_icd_ind:cat clm_rfrg_prvdr_npi_num:str clm_cntrctr_num:str "
        # Derived at load: sums over the lines (CCLF5 has no header amounts).
        "clm_pmt_amt:money clm_alowd_chrg_amt:money "
        # RIF-only: the billing NPI (CCLF6's name; CCLF5 lacks it).
        "clm_blg_prvdr_npi_num:str "
        # RIF-only carrier/DME header fields BFD maps (CCW claim file).
        "nch_near_line_rec_ident_cd:cat carr_clm_entry_cd:cat carr_clm_prvdr_asgnmt_ind_sw:cat "
        "clm_clncl_tril_num:str carr_clm_hcpcs_yr_cd:cat carr_clm_prmry_pyr_pd_amt:money "
        "nch_clm_prvdr_pmt_amt:money nch_clm_bene_pmt_amt:money nch_carr_clm_sbmtd_chrg_amt:money "
        "carr_clm_cash_ddctbl_apld_amt:money")
    ),
    # CCLF5 line fields.
    "partb_line": _parse(
        _PARTB_LINE := "clm_line_num:int rndrg_prvdr_type_cd:cat rndrg_prvdr_fips_st_cd:cat clm_prvdr_spclty_cd:cat "
        "clm_fed_type_srvc_cd:cat clm_pos_cd:cat clm_line_from_dt:date clm_line_thru_dt:date "
        "clm_line_hcpcs_cd:str clm_line_cvrd_pd_amt:money clm_line_prmry_pyr_cd:cat "
        "clm_line_dgns_cd:str clm_rndrg_prvdr_tax_num:str rndrg_prvdr_npi_num:str clm_prcsg_ind_cd:cat "
        "clm_line_alowd_chrg_amt:money clm_line_srvc_unit_qty:qty hcpcs_1_mdfr_cd:cat "
        "hcpcs_2_mdfr_cd:cat hcpcs_3_mdfr_cd:cat hcpcs_4_mdfr_cd:cat hcpcs_5_mdfr_cd:cat "
        "hcpcs_betos_cd:cat clm_rndrg_prvdr_npi_num:str "
        # RIF-only line fields BFD maps (CCW claim file).
        "prtcptng_ind_cd:cat line_pmt_80_100_cd:cat line_service_deductible:cat line_ndc_cd:str "
        "line_bene_pmt_amt:money line_prvdr_pmt_amt:money line_bene_ptb_ddctbl_amt:money "
        "line_bene_prmry_pyr_pd_amt:money line_coinsrnc_amt:money line_sbmtd_chrg_amt:money "
        "org_npi_num:str carr_line_rdcd_pmt_phys_astn_c:cat carr_line_prcng_lclty_cd:cat prvdr_zip:str "
        "carr_line_clia_lab_num:str carr_line_mtus_cnt:qty carr_line_mtus_cd:cat"
    ),
    # CCLF6 header fields.
    "dme": _parse(
        CLAIM_STORE + " bene_hic_num:str clm_type_cd:cat clm_from_dt:date clm_thru_dt:date "
        "clm_carr_pmt_dnl_cd:cat clm_adjsmt_type_cd:cat clm_efctv_dt:date clm_idr_ld_dt:date "
        "clm_cntl_num:str bene_eqtbl_bic_hicn_num:str clm_disp_cd:cat clm_blg_prvdr_npi_num:str "
        "clm_rfrg_prvdr_npi_num:str clm_pmt_amt:money clm_alowd_chrg_amt:money "
        # RIF-only: the DME claim's diagnoses and carrier number (CCLF5 names), header fields.
        "clm_dgns_1_cd:str clm_dgns_2_cd:str clm_dgns_3_cd:str clm_dgns_4_cd:str clm_dgns_5_cd:str "
        "clm_dgns_6_cd:str clm_dgns_7_cd:str clm_dgns_8_cd:str clm_dgns_9_cd:str clm_dgns_10_cd:str "
        "clm_dgns_11_cd:str clm_dgns_12_cd:str dgns_prcdr_icd_ind:cat clm_cntrctr_num:str "
        # RIF-only carrier/DME header fields BFD maps (CCW claim file).
        "nch_near_line_rec_ident_cd:cat carr_clm_entry_cd:cat carr_clm_prvdr_asgnmt_ind_sw:cat "
        "clm_clncl_tril_num:str carr_clm_hcpcs_yr_cd:cat carr_clm_prmry_pyr_pd_amt:money "
        "nch_clm_prvdr_pmt_amt:money nch_clm_bene_pmt_amt:money nch_carr_clm_sbmtd_chrg_amt:money "
        "carr_clm_cash_ddctbl_apld_amt:money"
    ),
    # CCLF6 line fields.
    "dme_line": _parse(
        "clm_line_num:int clm_fed_type_srvc_cd:cat clm_pos_cd:cat clm_line_from_dt:date "
        "clm_line_thru_dt:date clm_line_hcpcs_cd:str clm_line_cvrd_pd_amt:money clm_prmry_pyr_cd:cat "
        "payto_prvdr_npi_num:str ordrg_prvdr_npi_num:str clm_prcsg_ind_cd:cat "
        "clm_line_alowd_chrg_amt:money clm_line_srvc_unit_qty:qty hcpcs_1_mdfr_cd:cat "
        "hcpcs_2_mdfr_cd:cat hcpcs_3_mdfr_cd:cat hcpcs_4_mdfr_cd:cat hcpcs_betos_cd:cat "
        # RIF-only (CCLF5 names where CCLF5 has the field): line diagnosis, supplier specialty,
        # tax number, state; then DME line fields BFD maps.
        "clm_line_dgns_cd:str clm_prvdr_spclty_cd:cat clm_rndrg_prvdr_tax_num:str prvdr_state_cd:cat "
        # RIF-only line fields BFD maps (CCW claim file).
        "prtcptng_ind_cd:cat line_pmt_80_100_cd:cat line_service_deductible:cat line_ndc_cd:str "
        "line_bene_pmt_amt:money line_prvdr_pmt_amt:money line_bene_ptb_ddctbl_amt:money "
        "line_bene_prmry_pyr_pd_amt:money line_coinsrnc_amt:money line_sbmtd_chrg_amt:money "
        "line_prmry_alowd_chrg_amt:money line_dme_prchs_price_amt:money prvdr_num:str "
        "dmerc_line_prcng_state_cd:cat dmerc_line_supplr_type_cd:cat dmerc_line_scrn_svgs_amt:money "
        "dmerc_line_mtus_cnt:qty dmerc_line_mtus_cd:cat"
    ),
    # CCLF7 Part D events.
    "pde": _parse(
        CLAIM_STORE + " bene_hic_num:str clm_line_ndc_cd:str clm_type_cd:cat clm_line_from_dt:date "
        "prvdr_srvc_id_qlfyr_cd:cat clm_srvc_prvdr_gnrc_id_num:str clm_dspnsng_stus_cd:cat "
        "clm_daw_prod_slctn_cd:cat clm_line_srvc_unit_qty:qty clm_line_days_suply_qty:qty "
        "prvdr_prsbng_id_qlfyr_cd:cat clm_prsbng_prvdr_gnrc_id_num:str clm_line_bene_pmt_amt:money "
        "clm_adjsmt_type_cd:cat clm_efctv_dt:date clm_idr_ld_dt:date clm_line_rx_srvc_rfrnc_num:str "
        "clm_line_rx_fill_num:str clm_phrmcy_srvc_type_cd:cat ptd_cntrct_id:str "
        # RIF-only PDE fields BFD maps. fill_num is CLM_LINE_RX_FILL_NUM read as a number
        # (the CCLF field is X(09) text; C4BB's refillnum needs a valueQuantity).
        "fill_num:int plan_pbp_rec_num:str pd_dt:date cmpnd_cd:cat drug_cvrg_stus_cd:cat "
        "adjstmt_dltn_cd:cat nstd_frmt_cd:cat prcng_excptn_cd:cat ctstrphc_cvrg_cd:cat rx_orgn_cd:cat "
        "brnd_gnrc_cd:cat ptnt_rsdnc_cd:cat submsn_clr_cd:cat cvrd_d_plan_pd_amt:money "
        "gdc_blw_oopt_amt:money gdc_abv_oopt_amt:money othr_troop_amt:money "
        "lics_amt:money plro_amt:money tot_rx_cst_amt:money rptd_gap_dscnt_num:money"
    ),
    # The shared-system daily feed (BCDA v3 partially adjudicated claims): claims as the
    # Medicare shared systems hold them while they are processed, FISS (Part A, institutional)
    # and MCS (Part B, professional), in the NCH tables' columns (a claim that finalizes
    # reappears in parta/partb under the same `clm_cntl_num`) plus the feed's own:
    # `outcome` (partial while processing, complete once adjudicated), the shared-system
    # status code and its date, the receipt date, and the control number the claim had
    # before it was given a new one (`clm_prev_cntl_num`, FHIR `related`).
    "fiss": _parse(CLAIM_STORE + " " + _PARTA + " " + (_SHARED_SYSTEM := (
        "outcome:cat ss_clm_stus_cd:cat ss_clm_stus_dt:date ss_clm_rcpt_dt:date clm_prev_cntl_num:str"))),
    "fiss_rev": _parse(_PARTA_REV),
    "fiss_px": _parse(_PARTA_PX),
    "fiss_dx": _parse(_PARTA_DX),
    "mcs": _parse(CLAIM_STORE + " " + _PARTB + " " + _SHARED_SYSTEM),
    "mcs_line": _parse(_PARTB_LINE),
    # Organization-level tables (not sorted by beneficiary).
    # Attribution rosters: CCLF8 per ACO and performance year; `roster_kind` Y (current) or R (runout).
    "roster": _parse(
        "org_id:str bene_mbi_id:str bene_row:int roster_kind:cat performance_year:int file_date:date"
    ),
    # 1-800-MEDICARE data-sharing preferences (latest per MBI wins); `pref_ind` Y share, N opt out.
    "optout": _parse("bene_mbi_id:str bene_row:int pref_ind:cat effective_dt:date source_file:str"),
    # Part D / Part C enrollment per contract and month (AB2D): bit m-1 of `month_mask` = month m.
    "enroll": _parse("bene_row:int cntrct_id:str year:int month_mask:int"),
}

# parent table → child tables it links to (offsets per parent row).
LINKS: dict[str, tuple[str, ...]] = {
    "bene": ("bene_mbi", "parta", "partb", "dme", "pde", "fiss", "mcs"),
    "parta": ("parta_rev", "parta_px", "parta_dx"),
    "partb": ("partb_line",),
    "dme": ("dme_line",),
    "fiss": ("fiss_rev", "fiss_px", "fiss_dx"),
    "mcs": ("mcs_line",),
}

# National Claims History (CCLF) and Part D claims, then the shared-system feed.
NCH_TABLES = ("parta", "partb", "dme", "pde")
SHARED_SYSTEM_TABLES = ("fiss", "mcs")
CLAIM_TABLES = NCH_TABLES + SHARED_SYSTEM_TABLES

_MONEY_SCALE = 2
_QTY_SCALE = 4


def kinds(table: str) -> dict[str, str]:
    """Column name → kind for a table."""
    return {c.name: c.kind for c in TABLES[table]}


def empty_column(kind: str, n: int, labels=("",)) -> Column:
    """A column of n missing values."""
    if kind == "str":
        return Str(np.zeros(n + 1, np.int64), np.zeros(0, np.uint8))
    if kind == "cat":
        return Cat(np.zeros(n, np.uint16), labels)
    if kind == "date":
        return Date(np.full(n, NO_DATE, np.int32))
    if kind == "money":
        return Num(np.full(n, NO_NUM, np.int64), _MONEY_SCALE)
    if kind == "int":
        return Num(np.full(n, NO_NUM, np.int64), 0)
    if kind == "qty":
        return Num(np.full(n, NO_NUM, np.int64), _QTY_SCALE, trim=True)
    if kind == "time":
        return Time(np.full(n, NO_NUM, np.int64))
    raise BatchError(f"unknown column kind {kind!r}")


def column_for(kind: str, values) -> Column:
    """Build a column of `kind` from Python values (tests, small fixtures)."""
    if kind == "str":
        return Str.from_list(values)
    if kind == "cat":
        return Cat.from_list(values)
    if kind == "date":
        return Date.from_list(values)
    if kind == "money":
        return Num.from_list(values, _MONEY_SCALE)
    if kind == "int":
        return Num.from_list(values, 0)
    if kind == "qty":
        return Num.from_list(values, _QTY_SCALE, trim=True)
    if kind == "time":
        return Time.from_list(values)
    raise BatchError(f"unknown column kind {kind!r}")


def _check_kind(table: str, name: str, kind: str, col: Column) -> None:
    want = {"money": "num", "int": "num", "qty": "num"}.get(kind, kind)
    if col.kind != want:
        raise BatchError(f"{table}.{name}: schema says {kind}, column is {col.kind}")
    if kind == "money" and col.scale != _MONEY_SCALE:
        raise BatchError(f"{table}.{name}: money needs scale {_MONEY_SCALE}, got {col.scale}")


def complete(
    table: str,
    columns: Mapping[str, Column],
    n: int,
    links: Mapping[str, np.ndarray] | None = None,
    *,
    check: bool = True,
) -> Table:
    """A schema table from the columns a producer has; the rest are missing.
    Unknown column names are an error (a typo would otherwise vanish)."""
    spec = kinds(table)
    extra = set(columns) - set(spec)
    if extra:
        raise BatchError(f"{table}: columns not in the schema: {sorted(extra)}")
    cols: dict[str, Column] = {}
    for name, kind in spec.items():
        if name in columns:
            _check_kind(table, name, kind, columns[name])
            cols[name] = columns[name]
        else:
            cols[name] = empty_column(kind, n)
    want_links = set(LINKS.get(table, ()))
    got = dict(links or {})
    if set(got) - want_links:
        raise BatchError(f"{table}: links not in the schema: {sorted(set(got) - want_links)}")
    for child in want_links - set(got):
        got[child] = np.zeros(n + 1, np.int64)
    return Table(table, cols, got, n, check=check)
