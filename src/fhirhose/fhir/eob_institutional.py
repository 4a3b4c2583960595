"""Institutional ExplanationOfBenefit templates: inpatient, outpatient, SNF, HHA, hospice.

One shape (`_institutional`) parameterised per claim type (`InstKind`), over table
`parta` (CCLF1 + CCLFA) with its children `parta_rev` (CCLF2 revenue lines),
`parta_px` (CCLF3 procedures) and `parta_dx` (CCLF4 diagnoses). The element
layout follows BFD's v2 output (Blue Button variable codings, which clients read)
and, where v2 and CARIN Blue Button 2.x disagree, BFD's C4BB 2.2.0 output
(`reference/bfd/idr-out`): one diagnosis per source slot, POA also as
`onAdmission`, point-of-origin and DRG in their C4BB slices, a header
benefit-payment-status adjudication, data-absent productOrService for lines
without HCPCS. Amounts in C4BB adjudication categories sit on the items only
(C4BB invariant: item or header level, not both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..columns import Cat, Table
from ..template import Arr, Each, If, IfHas, IfMissing, K, Map, Node, Obj, Seq, Template, Val
from . import common as c

__all__ = [
    "InstKind",
    "KINDS",
    "EOB_INPATIENT",
    "EOB_OUTPATIENT",
    "EOB_SNF",
    "EOB_HHA",
    "EOB_HOSPICE",
    "TEMPLATES",
    "TEMPLATES_BY_CLM_TYPE",
    "institutional_rows",
    "type_of_bill",
]

_NUBC = "https://www.nubc.org/CodeSystem/"
_MS_DRG = "https://www.cms.gov/Medicare/Medicare-Fee-for-Service-Payment/AcuteInpatientPPS/MS-DRG-Classifications-and-Software"
_HIPPS = "https://www.cms.gov/Medicare/Medicare-Fee-for-Service-Payment/ProspMedicareFeeSvcPmtGen/HIPPSCodes"
_POA = "https://www.cms.gov/Medicare/Medicare-Fee-for-Service-Payment/HospitalAcqCond/Coding"
_BENEFIT_CATEGORY = "http://terminology.hl7.org/CodeSystem/ex-benefitcategory"
_PROVIDER_ORG = "provider-org"


@dataclass(frozen=True)
class InstKind:
    """What differs between the institutional claim types."""

    name: str  # EOB id prefix and BFD's name for the type
    eob_type: str  # Blue Button eob-type code
    clm_type_cds: tuple[str, ...]  # NCH claim type codes (CCLF1 CLM_TYPE_CD)
    inpatient: bool  # C4BB Inpatient-Institutional (else Outpatient-Institutional)
    part: str  # Coverage part: "a" or "b"
    ip_amounts: bool = False  # operating IME/DSH/uncompensated-care extensions (inpatient only)


INPATIENT = InstKind("inpatient", "INPATIENT", ("60",), True, "a", ip_amounts=True)
OUTPATIENT = InstKind("outpatient", "OUTPATIENT", ("40",), False, "b")
SNF = InstKind("snf", "SNF", ("20", "30"), True, "a")
HHA = InstKind("hha", "HHA", ("10",), True, "a")
HOSPICE = InstKind("hospice", "HOSPICE", ("50",), True, "a")
KINDS: dict[str, InstKind] = {k.name: k for k in (INPATIENT, OUTPATIENT, SNF, HHA, HOSPICE)}


# ---------------------------------------------------------------- header


def _with_fallback(col: str, fallback: str, make) -> tuple[Node, Node]:
    """`make(col)`, or `make(fallback)` when `col` is missing (CCLF1 carries both the
    10-character NPI/OSCAR fields and their 20-character successors)."""
    return IfHas(col, make(col)), IfMissing(col, make(fallback))


def _oscar_identifier(col: str) -> Node:
    return Obj(None, c.codeable("type", c.const_coding(c.CS_V2_0203, "PRN")), Val("value", col))


def _provider_org() -> Node:
    # The billing institution. No C4BB-Organization profile is claimed: that profile
    # requires a name, which claims do not carry.
    return Obj(
        None,
        K("resourceType", "Organization"),
        K("id", _PROVIDER_ORG),
        Arr(
            "identifier",
            *_with_fallback("prvdr_oscar_num", "clm_blg_prvdr_oscar_num", _oscar_identifier),
            *_with_fallback("fac_prvdr_npi_num", "clm_blg_prvdr_npi_num", lambda col: c.npi_identifier(col, None)),
        ),
        K("active", True),
    )


def _header(kind: InstKind) -> list[Node]:
    profile = c.PROFILE_EOB_INPATIENT if kind.inpatient else c.PROFILE_EOB_OUTPATIENT
    sub = ("inpatient", "Inpatient") if kind.inpatient else ("outpatient", "Outpatient")
    ip_amounts = (
        (
            c.bb_ext_money("ime_op_clm_val_amt", "clm_oprtnl_ime_amt"),
            c.bb_ext_money("clm_uncompd_care_pmt_amt", "clm_hipps_uncompd_care_amt"),
            c.bb_ext_money("dsh_op_clm_val_amt", "clm_oprtnl_dsprprtnt_amt"),
        )
        if kind.ip_amounts
        else ()
    )
    return [
        K("resourceType", "ExplanationOfBenefit"),
        Val("id", "clm_id", prefix=f"{kind.name}-"),
        c.meta(profile, c.system_type_tag("NationalClaimsHistory"), c.final_action_tag()),
        Arr("contained", c.cms_organization(), _provider_org()),
        c.extensions(
            c.bb_ext_coding("nch_near_line_rec_ident_cd", "nch_near_line_rec_ident_cd"),
            c.bb_ext_coding("fi_clm_actn_cd", "fi_clm_actn_cd"),
            *ip_amounts,
            c.bb_ext_identifier("fi_doc_clm_cntl_num", "clm_cntl_num"),
            c.bb_ext_date("fi_clm_proc_dt", "fi_clm_proc_dt"),
            c.bb_ext_coding("clm_mdcr_non_pmt_rsn_cd", "clm_mdcr_npmt_rsn_cd"),
            c.bb_ext_coding("clm_srvc_clsfctn_type_cd", "clm_bill_clsfctn_cd"),
            c.bb_ext_coding("fi_num", "fi_num"),
            c.bb_ext_quantity("bene_hospc_prd_cnt", "bene_hospc_prd_cnt"),
        ),
        Arr("identifier", c.uc_identifier("clm_id"), c.claim_group_identifier(), c.control_number_identifier()),
        *c.status(),
        c.eob_type("institutional", kind.eob_type),
        Obj("subType", Arr("coding", c.const_coding(c.CS_C4BB_INSTITUTIONAL_SUBTYPE, sub[0])), K("text", sub[1])),
        K("use", "claim"),
        c.patient_ref(),
        Obj(
            "billablePeriod",
            c.extensions(c.bb_ext_coding("claim_query_cd", "clm_query_cd")),
            Val("start", "clm_from_dt"),
            Val("end", "clm_thru_dt"),
        ),
        *c.created(),
        c.insurer(),
        c.local_ref("provider", _PROVIDER_ORG),
        Obj("facility", c.extensions(c.bb_ext_coding("clm_fac_type_cd", "clm_bill_fac_type_cd"))),
        K("outcome", "complete"),
    ]


_ROLES = (
    ("atndg_prvdr_npi_num", "clm_atndg_prvdr_npi_num", c.ROLE_ATTENDING),
    ("oprtg_prvdr_npi_num", "clm_oprtg_prvdr_npi_num", c.ROLE_OPERATING),
    ("othr_prvdr_npi_num", "clm_othr_prvdr_npi_num", c.ROLE_OTHER_OPERATING),
)


def _care_team() -> Node:
    return Arr(
        "careTeam",
        *(
            node
            for col, fallback, role in _ROLES
            for node in _with_fallback(col, fallback, lambda npi, r=role: c.care_team_member(npi, r))
        ),
    )


# ---------------------------------------------------------------- supporting information


def _info_codes(var: str | None, col: str, c4bb_code: str | None, *systems: str) -> Node:
    """supportingInfo with `code` coded in each of `systems` (default: the variable's own)."""
    if not systems:
        assert var is not None, "supportingInfo codes need systems or a Blue Button variable"
        systems = (c.bb_var(var),)
    return c.supporting_info(var, c4bb_code, col, c.codeable("code", *(c.coding(s, col) for s in systems)))


def _info_quantity(var: str, col: str, unit: tuple[str, str] | None = None) -> Node:
    members: list[Node] = [Val("value", col)]
    if unit is not None:
        members += [K("unit", unit[0], weak=True), K("system", c.SYS_UCUM, weak=True), K("code", unit[1], weak=True)]
    return c.supporting_info(var, None, col, Obj("valueQuantity", *members))


def _info_period(var: str, start: str, end: str) -> Node:
    return c.supporting_info(var, None, start, c.period("timingPeriod", start, end))


def _admission_period() -> Node:
    # Required by the Inpatient-Institutional profile, so kept even without dates.
    return Obj(
        None,
        Seq("sequence", c.SEQ_INFO),
        c.codeable("category", c.const_coding(c.CS_C4BB_SUPPORTING_INFO, "admissionperiod", "Admission Period")),
        c.period("timingPeriod", "clm_actv_care_from_dt", "nch_bene_dschrg_dt"),
        # timingPeriod is 1..1 in the slice: say "unknown" when neither date is known.
        IfMissing("clm_actv_care_from_dt", IfMissing("nch_bene_dschrg_dt", c.data_absent("timingPeriod"))),
    )


def _type_of_bill() -> Node:
    # C4BB typeofbill: the NUBC code (derived column, see `type_of_bill`) and its three parts.
    parts = (
        (_NUBC + "TypeOfBill", "clm_bill_type_cd"),
        (c.bb_var("clm_fac_type_cd"), "clm_bill_fac_type_cd"),
        (c.bb_var("clm_srvc_clsfctn_type_cd"), "clm_bill_clsfctn_cd"),
        (c.bb_var("clm_freq_cd"), "clm_bill_freq_cd"),
    )
    # Keyed on the frequency code, the part BFD v2 reports.
    return IfHas(
        "clm_bill_freq_cd",
        Obj(
            None,
            Seq("sequence", c.SEQ_INFO),
            c.codeable("category", c.const_coding(c.CS_C4BB_SUPPORTING_INFO, "typeofbill", "Type of Bill")),
            c.codeable("code", *(c.coding(system, col) for system, col in parts)),
        ),
    )


def _supporting_info(kind: InstKind) -> Node:
    return Arr(
        "supportingInfo",
        c.info_date("nch_wkly_proc_dt", "clm_efctv_dt", "clmrecvddate"),
        *((_admission_period(),) if kind.inpatient else ()),
        _info_codes("clm_ip_admsn_type_cd", "clm_admsn_type_cd", "admtype", _NUBC + "PriorityTypeOfAdmitOrVisit"),
        _info_codes(
            "clm_src_ip_admsn_cd", "clm_admsn_src_cd", "pointoforigin", _NUBC + "PointOfOrigin", c.bb_var("clm_src_ip_admsn_cd")
        ),
        _info_codes("clm_drg_cd", "dgns_drg_cd", "drg", _MS_DRG, c.bb_var("clm_drg_cd")),
        _info_codes("nch_ptnt_stus_ind_cd", "nch_ptnt_status_ind_cd", None),
        _info_quantity("nch_blood_pnts_frnshd_qty", "nch_blood_pnts_frnshd_qty", ("pint", "[pt_us]")),
        _info_codes("clm_mco_pd_sw", "clm_mco_pd_sw", None),
        _type_of_bill(),
        _info_codes(None, "bene_ptnt_stus_cd", "discharge-status", c.bb_var("ptnt_dschrg_stus_cd"), _NUBC + "PatDischargeStatus"),
        _info_codes("nch_prmry_pyr_cd", "clm_nch_prmry_pyr_cd", None),
        _info_codes("clm_pps_ind_cd", "clm_pps_ind_cd", None),
        _info_codes("clm_hha_lupa_ind_cd", "clm_hha_lupa_ind_cd", None),
        _info_codes("clm_hha_rfrl_cd", "clm_hha_rfrl_cd", None),
        _info_quantity("clm_hha_tot_visit_cnt", "clm_hha_tot_visit_cnt"),
        _info_period("nch_vrfd_ncvrd_stay_from_dt", "nch_vrfd_ncvrd_stay_from_dt", "nch_vrfd_ncvrd_stay_thru_dt"),
        c.info_date("nch_bene_mdcr_bnfts_exhtd_dt_i", "nch_bene_mdcr_bnfts_exhtd_dt_i"),
        _info_period("nch_qlfyd_stay_from_dt", "nch_qlfyd_stay_from_dt", "nch_qlfyd_stay_thru_dt"),
    )


# ---------------------------------------------------------------- diagnoses and procedures


def _poa(var: str) -> Node:
    """POA of a CCLF4 row: the v2 extension (`<var><slot>`) and C4BB's onAdmission."""
    url = c.BB_VARIABLES + var
    return IfHas(
        "clm_poa_ind",
        IfHas(
            "clm_val_sqnc_num",
            Arr(
                "extension",
            Obj(
                None,
                Val("url", "clm_val_sqnc_num", prefix=url),
                    Obj("valueCoding", Val("system", "clm_val_sqnc_num", prefix=url), Val("code", "clm_poa_ind")),
                ),
            ),
        ),
        c.codeable("onAdmission", c.coding(_POA, "clm_poa_ind")),
    )


def _diagnoses(kind: InstKind) -> Node:
    # Principal and admitting come from the CCLF1 header; CCLF4 rows of those types are
    # skipped so a code is not listed twice for the same role. The diagnosis-type value sets
    # differ (C4BB): admitting is inpatient-only and patient-reason outpatient-only, so the
    # other kind types those codes `other`.
    admitting = c.DX_ADMITTING if kind.inpatient else c.DX_OTHER
    reason = c.DX_OTHER if kind.inpatient else c.DX_PATIENT_REASON
    def row(dx_type, *more):
        return c.diagnosis_slot("clm_dgns_cd", "dgns_prcdr_icd_ind", dx_type, *more)

    return Arr(
        "diagnosis",
        c.diagnosis_slot("prncpl_dgns_cd", "dgns_prcdr_icd_ind", c.DX_PRINCIPAL),
        c.diagnosis_unknown("prncpl_dgns_cd", c.DX_PRINCIPAL),
        c.diagnosis_slot("admtg_dgns_cd", "dgns_prcdr_icd_ind", admitting),
        Each(
            "parta_dx",
            If("clm_prod_type_cd", ["D"], row(c.DX_OTHER, _poa("clm_poa_ind_sw"))),
            If("clm_prod_type_cd", ["E"], row(c.DX_EXTERNAL_CAUSE, _poa("clm_e_poa_ind_sw"))),
            If("clm_prod_type_cd", ["1"], row(c.DX_EXTERNAL_CAUSE)),
            If("clm_prod_type_cd", ["R"], row(reason)),
        ),
    )


def _procedures() -> Node:
    # ICD-9-CM volume 3 procedures share the ICD-9-CM system (as BFD writes them).
    system = Map("dgns_prcdr_icd_ind", {"9": K("system", c.SYS_ICD9CM)}, default=K("system", c.SYS_ICD10PCS))
    return Arr(
        "procedure",
        Each(
            "parta_px",
            IfHas(
                "clm_prcdr_cd",
                Obj(
                    None,
                    Seq("sequence", c.SEQ_PROCEDURE),
                    Arr("type", c.codeable(None, c.const_coding(*c.PROCEDURE_OTHER))),
                    Val("date", "clm_prcdr_prfrm_dt"),
                    c.codeable(
                        "procedureCodeableConcept",
                        Obj(None, system, If("dgns_prcdr_icd_ind", [""], K("system", c.SYS_ICD10PCS)), Val("code", "clm_prcdr_cd")),
                    ),
                ),
            ),
        ),
    )


# ---------------------------------------------------------------- items and money

# Revenue-line amounts: (column, Blue Button variable, C4BB category).
_LINE_AMOUNTS = (
    ("rev_cntr_rate_amt", "rev_cntr_rate_amt", c.ADJ_SUBMITTED),
    ("rev_cntr_tot_chrg_amt", "rev_cntr_tot_chrg_amt", c.ADJ_SUBMITTED),
    ("rev_cntr_ncvrd_chrg_amt", "rev_cntr_ncvrd_chrg_amt", c.ADJ_NONCOVERED),
    ("rev_cntr_blood_ddctbl_amt", "rev_cntr_blood_ddctbl_amt", c.ADJ_DEDUCTIBLE),
    ("rev_cntr_cash_ddctbl_amt", "rev_cntr_cash_ddctbl_amt", c.ADJ_DEDUCTIBLE),
    ("rev_cntr_coinsrnc_wge_adjstd_c", "rev_cntr_coinsrnc_wge_adjstd_c", c.ADJ_COINSURANCE),
    ("rev_cntr_rdcd_coinsrnc_amt", "rev_cntr_rdcd_coinsrnc_amt", c.ADJ_COINSURANCE),
    ("rev_cntr_1st_msp_pd_amt", "rev_cntr_1st_msp_pd_amt", c.ADJ_PRIOR_PAYER_PAID),
    ("rev_cntr_2nd_msp_pd_amt", "rev_cntr_2nd_msp_pd_amt", c.ADJ_PRIOR_PAYER_PAID),
    ("clm_line_cvrd_pd_amt", "rev_cntr_prvdr_pmt_amt", c.ADJ_PAID_TO_PROVIDER),
    ("rev_cntr_bene_pmt_amt", "rev_cntr_bene_pmt_amt", c.ADJ_PAID_TO_PATIENT),
    ("rev_cntr_ptnt_rspnsblty_pmt", "rev_cntr_ptnt_rspnsblty_pmt", c.ADJ_PAID_BY_PATIENT),
    ("rev_cntr_pmt_amt_amt", "rev_cntr_pmt_amt_amt", c.ADJ_SUBMITTED),
)

_MODIFIERS = ("hcpcs_1_mdfr_cd", "hcpcs_2_mdfr_cd", "hcpcs_3_mdfr_cd", "hcpcs_4_mdfr_cd", "hcpcs_5_mdfr_cd")


def _items(kind: InstKind) -> Node:
    product = [c.coding(c.BB_CS_HCPCS, "clm_line_hcpcs_cd")]
    line_ext = [c.bb_ext_quantity("rev_cntr_unit_cnt", "clm_line_srvc_unit_qty")]
    if kind.inpatient:
        product.append(c.coding(_HIPPS, "clm_rev_apc_hipps_cd"))
    else:
        # Outpatient lines carry an APC code there, not a HIPPS code.
        line_ext.append(c.bb_ext_coding("rev_cntr_apc_hipps_cd", "clm_rev_apc_hipps_cd"))
    item = Obj(
        None,
        c.extensions(*line_ext),
        Val("sequence", "clm_line_num"),
        Obj(
            "revenue",
            c.extensions(c.bb_ext_coding("rev_cntr_stus_ind_cd", "rev_cntr_stus_ind_cd")),
            Arr(
                "coding",
                c.bb_coding("rev_cntr", "clm_line_prod_rev_ctr_cd"),
                c.coding(c.SYS_NUBC_REVENUE, "clm_line_prod_rev_ctr_cd"),
                # revenue is 1..1 (C4BB Inpatient): a line without its code says so.
                IfMissing("clm_line_prod_rev_ctr_cd", c.const_coding(c.CS_DATA_ABSENT, "unknown", "Unknown")),
                c.bb_coding("rev_cntr_ddctbl_coinsrnc_cd", "rev_cntr_ddctbl_coinsrnc_cd"),
            ),
        ),
        c.codeable("productOrService", IfMissing("clm_line_hcpcs_cd", c.DATA_ABSENT_NOT_APPLICABLE), *product),
        Arr("modifier", *(c.codeable(None, c.coding(c.BB_CS_HCPCS, m)) for m in _MODIFIERS)),
        Val("servicedDate", "clm_line_instnl_rev_ctr_dt"),
        # serviced[x] is 1..1 (C4BB Outpatient): a data-absent extension on the primitive.
        *(() if kind.inpatient else (IfMissing("clm_line_instnl_rev_ctr_dt", c.data_absent("_servicedDate")),)),
        Obj("locationAddress", Val("state", "parta.prvdr_fac_fips_st_cd")),
        Obj("quantity", Val("value", "clm_line_srvc_unit_qty")),
        Arr(
            "adjudication",
            c.adjudication_reason("rev_cntr_1st_ansi_cd", "rev_cntr_1st_ansi_cd"),
            c.adjudication_reason("rev_cntr_2nd_ansi_cd", "rev_cntr_2nd_ansi_cd"),
            *(c.adjudication(col, var, cat) for col, var, cat in _LINE_AMOUNTS),
        ),
    )
    return Arr("item", Each("parta_rev", item))


# Header amounts and counts BFD reports as benefit balances: (column, variable).
_BALANCES = (
    ("clm_instnl_per_diem_amt", "clm_pass_thru_per_diem_amt"),
    ("clm_instnl_prfnl_amt", "nch_profnl_cmpnt_chrg_amt"),
    ("clm_tot_pps_cptl_amt", "clm_tot_pps_cptl_amt"),
    ("bene_tot_coinsrnc_days_cnt", "bene_tot_coinsrnc_days_cnt"),
    ("clm_non_utlztn_days_cnt", "clm_non_utlztn_days_cnt"),
    ("clm_ncvrd_chrg_amt", "nch_ip_ncvrd_chrg_amt"),
    ("nch_ip_tot_ddctn_amt", "nch_ip_tot_ddctn_amt"),
    ("clm_mdcr_ip_pps_dsprprtnt_amt", "clm_pps_cptl_dsprprtnt_shr_amt"),
    ("clm_pps_cptl_excptn_amt", "clm_pps_cptl_excptn_amt"),
    ("clm_pps_cptl_fsp_amt", "clm_pps_cptl_fsp_amt"),
    ("clm_mdcr_ip_pps_cptl_ime_amt", "clm_pps_cptl_ime_amt"),
    ("clm_pps_cptl_outlier_amt", "clm_pps_cptl_outlier_amt"),
    ("clm_pps_old_cptl_hld_hrmls_amt", "clm_pps_old_cptl_hld_hrmls_amt"),
    ("nch_drg_outlier_aprvd_pmt_amt", "nch_drg_outlier_aprvd_pmt_amt"),
    ("clm_blood_lblty_amt", "nch_bene_blood_ddctbl_lblty_am"),
    ("nch_prmry_pyr_clm_pd_amt", "prpayamt"),
    ("clm_utlztn_day_cnt", "clm_utlztn_day_cnt"),
    ("bene_lrd_used_cnt", "bene_lrd_used_cnt"),
    ("clm_op_prvdr_pmt_amt", "clm_op_prvdr_pmt_amt"),
    ("clm_op_bene_pmt_amt", "clm_op_bene_pmt_amt"),
)
# CCLFA's deductible and coinsurance are Part A amounts, or Part B ones on outpatient claims.
_BALANCES_PART = {
    "a": (("clm_mdcr_ip_bene_ddctbl_amt", "nch_bene_ip_ddctbl_amt"), ("clm_mdcr_coinsrnc_amt", "nch_bene_pta_coinsrnc_lblty_amt")),
    "b": (("clm_mdcr_ddctbl_amt", "nch_bene_ptb_ddctbl_amt"), ("clm_mdcr_coinsrnc_amt", "nch_bene_ptb_coinsrnc_amt")),
}
_COUNTS = frozenset(col for col, _ in _BALANCES if col.endswith("_cnt"))


def _financial(col: str, var: str) -> Node:
    used = Val("usedUnsignedInt", col) if col in _COUNTS else c.money("usedMoney", col)
    return Obj(None, K("type", {"coding": [{"system": c.BB_CS_BENEFIT_BALANCE, "code": c.bb_var(var)}]}, weak=True), used)


def _money(kind: InstKind) -> list[Node]:
    return [
        Arr("adjudication", c.benefit_payment_status()),
        Arr("total", c.total("clm_mdcr_instnl_tot_chrg_amt", "clm_tot_chrg_amt", c.ADJ_SUBMITTED)),
        c.payment("clm_pmt_amt"),
        Arr(
            "benefitBalance",
            Obj(
                None,
                # One weak constant (a weak sub-object would be dropped at its own close).
                K("category", {"coding": [{"system": _BENEFIT_CATEGORY, "code": "1", "display": "Medical Care"}]}, weak=True),
                Arr("financial", *(_financial(col, var) for col, var in _BALANCES + _BALANCES_PART[kind.part])),
            ),
        ),
    ]


def _institutional(kind: InstKind) -> Template:
    return Template(
        f"eob_{kind.name}",
        "parta",
        *_header(kind),
        _care_team(),
        _supporting_info(kind),
        _diagnoses(kind),
        _procedures(),
        c.insurance(kind.part),
        _items(kind),
        *_money(kind),
    )


EOB_INPATIENT = _institutional(INPATIENT)
EOB_OUTPATIENT = _institutional(OUTPATIENT)
EOB_SNF = _institutional(SNF)
EOB_HHA = _institutional(HHA)
EOB_HOSPICE = _institutional(HOSPICE)

TEMPLATES: dict[str, Template] = {
    "inpatient": EOB_INPATIENT,
    "outpatient": EOB_OUTPATIENT,
    "snf": EOB_SNF,
    "hha": EOB_HHA,
    "hospice": EOB_HOSPICE,
}
# NCH claim type code → template (what an exporter dispatches on).
TEMPLATES_BY_CLM_TYPE: dict[str, Template] = {code: TEMPLATES[k.name] for k in KINDS.values() for code in k.clm_type_cds}


def institutional_rows(parta: Table, kind: str) -> np.ndarray:
    """Row numbers (int64, ascending) of `parta` whose CLM_TYPE_CD belongs to `kind`
    ("inpatient", "outpatient", "snf", "hha" or "hospice")."""
    try:
        codes = KINDS[kind].clm_type_cds
    except KeyError:
        raise ValueError(f"unknown institutional claim kind {kind!r}; expected one of {sorted(KINDS)}") from None
    col = parta["clm_type_cd"]
    # Which label codes are of this kind, then one vectorised lookup over the rows.
    member = np.fromiter((lab.strip() in codes for lab in col.labels), dtype=bool, count=len(col.labels))
    return np.flatnonzero(member[col.codes]).astype(np.int64)


def type_of_bill(fac: Cat, clsfctn: Cat, freq: Cat) -> Cat:
    """The NUBC type of bill ("0" + facility type + classification + frequency) as a Cat
    column for `parta.clm_bill_type_cd`; missing where any part is missing. Vectorised:
    one pass over the rows, Python only over the distinct combinations."""
    nc, nq = len(clsfctn.labels), len(freq.labels)
    present = (fac.codes > 0) & (clsfctn.codes > 0) & (freq.codes > 0)
    combo = np.where(present, (fac.codes.astype(np.int64) * nc + clsfctn.codes) * nq + freq.codes, -1)
    uniq, inverse = np.unique(combo, return_inverse=True)
    labels: dict[str, int] = {"": 0}
    lut = np.zeros(len(uniq), np.uint16)
    for i, u in enumerate(uniq.tolist()):
        if u >= 0:
            f, rest = divmod(u, nc * nq)
            label = "0" + fac.labels[f] + clsfctn.labels[rest // nq] + freq.labels[rest % nq]
            lut[i] = labels.setdefault(label, len(labels))
    return Cat(lut[inverse.reshape(-1)], list(labels))
