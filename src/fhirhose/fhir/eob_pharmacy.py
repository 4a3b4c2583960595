"""Part D event ExplanationOfBenefit (C4BB Pharmacy) over table `pde` (CCLF7).

Layout as BFD's v2 PDE output (Blue Button variable codings) and, where C4BB 2.x
asks for more, as BFD's C4BB 2.2.0 output: the dayssupply / dawcode / refillnum
supporting-info slices, the header benefit-payment-status adjudication, amounts
at the item.
"""

from __future__ import annotations

import numpy as np

from ..columns import NO_NUM, Num, Str
from ..template import Arr, IfHas, IfMissing, K, Map, Node, Obj, Seq, Template, Val
from . import common as c

__all__ = ["EOB_PDE", "fill_number"]

_NCPDP = "http://terminology.hl7.org/CodeSystem/"
# CCLF7 PRVDR_SRVC_ID_QLFYR_CD: how the service provider (pharmacy) id is coded.
_SERVICE_PROVIDER_SYSTEMS = {
    "01": c.SYS_NPI,
    "06": "http://terminology.hl7.org/NamingSystem/upin",
    "07": "https://bluebutton.cms.gov/resources/variables/ncpdp_id",
    "08": "https://bluebutton.cms.gov/resources/variables/state_license_num",
    "11": "urn:oid:2.16.840.1.113883.4.4",
}


def _info_code(c4bb_code: str | None, var: str, col: str, *systems: str) -> Node:
    codings = (c.coding(s, col) for s in systems + (c.bb_var(var),))
    return c.supporting_info(var if c4bb_code is None else None, c4bb_code, col, c.codeable("code", *codings))


def _info_quantity(c4bb_code: str, col: str, unit: str) -> Node:
    return c.supporting_info(None, c4bb_code, col, Obj("valueQuantity", Val("value", col), K("unit", unit, weak=True)))


# Item amounts: (column, Blue Button variable, C4BB category).
_AMOUNTS = (
    ("cvrd_d_plan_pd_amt", "cvrd_d_plan_pd_amt", c.ADJ_BENEFIT),
    ("gdc_blw_oopt_amt", "gdc_blw_oopt_amt", c.ADJ_COINSURANCE),
    ("gdc_abv_oopt_amt", "gdc_abv_oopt_amt", c.ADJ_COINSURANCE),
    ("clm_line_bene_pmt_amt", "ptnt_pay_amt", c.ADJ_PAID_BY_PATIENT),
    ("othr_troop_amt", "othr_troop_amt", c.ADJ_PRIOR_PAYER_PAID),
    ("lics_amt", "lics_amt", c.ADJ_DISCOUNT),
    ("plro_amt", "plro_amt", c.ADJ_PRIOR_PAYER_PAID),
    ("tot_rx_cst_amt", "tot_rx_cst_amt", (c.CS_C4BB_ADJUDICATION, "drugcost", "Drug Cost")),
    ("rptd_gap_dscnt_num", "rptd_gap_dscnt_num", c.ADJ_DISCOUNT),
)


def _service_provider(key: str) -> Node:
    """The pharmacy as a Reference by identifier, its system from the id qualifier."""
    return Obj(
        key,
        Obj(
            "identifier",
            Map("prvdr_srvc_id_qlfyr_cd", {q: K("system", s) for q, s in _SERVICE_PROVIDER_SYSTEMS.items()}),
            Val("value", "clm_srvc_prvdr_gnrc_id_num"),
        ),
    )


def _prescriber() -> Node:
    # The prescriber id is an NPI when its qualifier is 01 (the usual case), else its type is unknown.
    qualified = Obj(
        None,
        Seq("sequence", c.SEQ_CARE_TEAM),
        Obj(
            "provider",
            Obj(
                "identifier",
                Map(
                    "prvdr_prsbng_id_qlfyr_cd",
                    {"01": K("system", c.SYS_NPI)},
                ),
                Val("value", "clm_prsbng_prvdr_gnrc_id_num"),
            ),
        ),
        c.codeable("role", c.const_coding(*c.ROLE_PRESCRIBING)),
    )
    return Arr("careTeam", IfHas("clm_prsbng_prvdr_gnrc_id_num", qualified))


EOB_PDE = Template(
    "eob_pde",
    "pde",
    K("resourceType", "ExplanationOfBenefit"),
    Val("id", "clm_id", prefix="pde-"),
    c.meta(c.PROFILE_EOB_PHARMACY, c.system_type_tag("DDPS"), c.final_action_tag()),
    Arr("contained", c.cms_organization()),
    Arr(
        "identifier",
        c.uc_identifier("clm_id", c.bb_var("pde_id")),
        c.claim_group_identifier(),
        Obj(None, K("system", c.bb_var("rx_srvc_rfrnc_num"), weak=True), Val("value", "clm_line_rx_srvc_rfrnc_num")),
    ),
    *c.status(),
    c.codeable(
        "type",
        c.const_coding(c.CS_CLAIM_TYPE, "pharmacy"),
        c.const_coding(c.BB_CS_EOB_TYPE, "PDE"),
    ),
    K("use", "claim"),
    c.patient_ref(),
    c.period("billablePeriod", "clm_line_from_dt", "clm_line_from_dt"),
    *c.created(),
    c.insurer(),
    _service_provider("provider"),
    Obj(
        "facility",
        c.extensions(c.bb_ext_coding("phrmcy_srvc_type_cd", "clm_phrmcy_srvc_type_cd")),
        Obj(
            "identifier",
            Map("prvdr_srvc_id_qlfyr_cd", {q: K("system", s) for q, s in _SERVICE_PROVIDER_SYSTEMS.items()}),
            Val("value", "clm_srvc_prvdr_gnrc_id_num"),
        ),
    ),
    K("outcome", "complete"),
    _prescriber(),
    Arr(
        "supportingInfo",
        c.info_date("nch_wkly_proc_dt", "clm_efctv_dt", "clmrecvddate"),
        _info_code("compoundcode", "cmpnd_cd", "cmpnd_cd", _NCPDP + "NCPDPCompoundCode"),
        _info_quantity("refillnum", "fill_num", "fill"),
        _info_quantity("dayssupply", "clm_line_days_suply_qty", "days"),
        _info_code(None, "drug_cvrg_stus_cd", "drug_cvrg_stus_cd"),
        _info_code("dawcode", "daw_prod_slctn_cd", "clm_daw_prod_slctn_cd", _NCPDP + "NCPDPDispensedAsWrittenOrProductSelectionCode"),
        _info_code(None, "dspnsng_stus_cd", "clm_dspnsng_stus_cd"),
        _info_code(None, "adjstmt_dltn_cd", "adjstmt_dltn_cd"),
        _info_code(None, "nstd_frmt_cd", "nstd_frmt_cd"),
        _info_code(None, "prcng_excptn_cd", "prcng_excptn_cd"),
        _info_code(None, "ctstrphc_cvrg_cd", "ctstrphc_cvrg_cd"),
        _info_code("rxorigincode", "rx_orgn_cd", "rx_orgn_cd", _NCPDP + "NCPDPPrescriptionOriginCode"),
        _info_code("brandgenericindicator", "brnd_gnrc_cd", "brnd_gnrc_cd", _NCPDP + "NCPDPBrandGenericIndicator"),
        _info_code(None, "ptnt_rsdnc_cd", "ptnt_rsdnc_cd"),
        _info_code(None, "submsn_clr_cd", "submsn_clr_cd"),
    ),
    Arr(
        "insurance",
        Obj(
            None,
            K("focal", True, weak=True),
            Obj(
                "coverage",
                c.extensions(
                    c.bb_ext_identifier("plan_cntrct_rec_id", "ptd_cntrct_id"),
                    c.bb_ext_identifier("plan_pbp_rec_num", "plan_pbp_rec_num"),
                ),
                Val("reference", "bene_id", prefix="Coverage/" + c.coverage_id_prefix("d")),
            ),
        ),
    ),
    Arr(
        "item",
        Obj(
            None,
            K("sequence", 1),
            Arr("careTeamSequence", IfHas("clm_prsbng_prvdr_gnrc_id_num", K(None, 1))),
            c.codeable(
                "productOrService",
                IfMissing("clm_line_ndc_cd", c.DATA_ABSENT_NOT_APPLICABLE),
                c.coding(c.SYS_NDC, "clm_line_ndc_cd"),
            ),
            Val("servicedDate", "clm_line_from_dt"),
            Obj("quantity", Val("value", "clm_line_srvc_unit_qty")),
            Arr("adjudication", *(c.adjudication(col, var, cat) for col, var, cat in _AMOUNTS)),
        ),
    ),
    Arr("adjudication", c.benefit_payment_status()),
    Arr(
        "total",
        c.total("tot_rx_cst_amt", "tot_rx_cst_amt", (c.CS_C4BB_ADJUDICATION, "drugcost", "Drug Cost")),
        c.total("clm_line_bene_pmt_amt", "ptnt_pay_amt", c.ADJ_PAID_BY_PATIENT),
    ),
    Obj("payment", Val("date", "pd_dt")),
)


def fill_number(fill: Str) -> Num:
    """CCLF7 CLM_LINE_RX_FILL_NUM (X(09) text) as the number `pde.fill_num` holds for C4BB's
    refillnum; missing where the text is not a plain non-negative integer."""
    out = np.full(len(fill), NO_NUM, np.int64)
    for i, text in enumerate(fill.to_list()):
        text = text.strip()
        if text.isascii() and text.isdigit() and len(text) <= 18:
            out[i] = int(text)
    return Num(out, 0)
