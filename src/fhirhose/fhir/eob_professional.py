"""ExplanationOfBenefit templates for professional claims: carrier (CCLF5) and DME (CCLF6).

Profile C4BB ExplanationOfBenefit Professional-NonClinician 2.x. The map is
BFD's data dictionary (CCW variable → CCLF field → R4 element) with BFD v2's
Blue Button codings; where v2 and C4BB 2.x disagree the idr-out samples win:

- careTeam roles are C4BB 2.x professional roles (`rendering`, not v2's
  `performing`), and line providers are numbered entries that items point to;
- amounts v2 put in `benefitBalance` are `total`s with C4BB categories;
- `insurer` is a contained CMS Organization; `provider` is the billing NPI,
  or a data-absent reference when the source has none (CCLF5 carries no
  billing NPI; C4BB requires a provider);
- `created` is the IDR load date, else the load time.

Line-level references: careTeam entries of each line come first (one counter),
items number their `careTeamSequence` with a second counter under the same
conditions; header diagnoses come first, line diagnoses after, and items
replay the header's presence with `Tick`s before numbering theirs.
"""

from __future__ import annotations

from ..template import Arr, Each, If, IfHas, IfMissing, K, Node, Obj, Seq, Template, Tick, Val
from . import common as c

__all__ = ["EOB_CARRIER", "EOB_DME", "REQUIRED_COLUMNS"]

# Columns the templates need present for C4BB conformance (billablePeriod.start, item
# sequence and serviced[x], an item adjudication amount, total, payment); the store
# guarantees them for CCLF input (CCLF5/6 zero-fill the line paid amount).
REQUIRED_COLUMNS = {
    "partb": ("clm_id", "bene_id", "last_updated", "final_action", "clm_from_dt", "clm_pmt_amt"),
    "partb_line": ("clm_line_num", "clm_line_from_dt", "clm_line_cvrd_pd_amt"),
    "dme": ("clm_id", "bene_id", "last_updated", "final_action", "clm_from_dt", "clm_pmt_amt"),
    "dme_line": ("clm_line_num", "clm_line_from_dt", "clm_line_cvrd_pd_amt"),
}

_DX_COLS = tuple(f"clm_dgns_{k}_cd" for k in range(1, 13))


def _header_extensions() -> Node:
    return c.extensions(
        c.bb_ext_coding("nch_near_line_rec_ident_cd", "nch_near_line_rec_ident_cd"),
        c.bb_ext_identifier("carr_num", "clm_cntrctr_num"),
        c.bb_ext_identifier("carr_clm_cntl_num", "clm_cntl_num"),
        c.bb_ext_coding("carr_clm_pmt_dnl_cd", "clm_carr_pmt_dnl_cd"),
        c.bb_ext_coding("asgmntcd", "carr_clm_prvdr_asgnmt_ind_sw"),
        c.bb_ext_identifier("clm_clncl_tril_num", "clm_clncl_tril_num"),
        c.bb_ext_coding("carr_clm_entry_cd", "carr_clm_entry_cd"),
    )


def _provider() -> tuple[Node, ...]:
    blg = "clm_blg_prvdr_npi_num"
    return (IfHas(blg, c.npi_ref("provider", blg)), IfMissing(blg, c.data_absent("provider")))


def _referral(col: str) -> Node:
    return c.npi_ref("referral", col)


def _diagnoses(line: str, root: str) -> Node:
    ind = "dgns_prcdr_icd_ind"
    slots = [c.diagnosis_slot(_DX_COLS[0], ind, c.DX_PRINCIPAL), c.diagnosis_unknown(_DX_COLS[0], c.DX_PRINCIPAL)]
    slots += [c.diagnosis_slot(col, ind, c.DX_SECONDARY) for col in _DX_COLS[1:]]
    slots.append(Each(line, c.diagnosis_slot("clm_line_dgns_cd", f"{root}.{ind}", c.DX_SECONDARY)))
    return Arr("diagnosis", *slots)


def _replay_header_diagnoses() -> tuple[Node, ...]:
    """Advance the items' diagnosis counter past the header diagnoses actually written
    (the principal one is written, data-absent, even when its column is blank)."""
    return (IfMissing(_DX_COLS[0], Tick(c.SEQ_ITEM_DIAGNOSIS)),) + tuple(IfHas(col, Tick(c.SEQ_ITEM_DIAGNOSIS)) for col in _DX_COLS)


def _ref(col: str, counter: int) -> Node:
    return IfHas(col, Seq(None, counter, strong=True))


def _modifiers(root: str, cols: tuple[str, ...]) -> Node:
    """HCPCS modifiers, versioned by the claim's HCPCS year code as v2 does."""
    return Arr(
        "modifier",
        *(
            IfHas(col, c.codeable(None, Obj(None, K("system", c.BB_CS_HCPCS), Val("version", f"{root}.carr_clm_hcpcs_yr_cd"), Val("code", col))))
            for col in cols
        ),
    )


def _product(hcpcs: str = "clm_line_hcpcs_cd") -> Node:
    """productOrService (required): the HCPCS code, the NDC as v2's extension, or data-absent."""
    return Obj(
        "productOrService",
        c.extensions(c.ext_coding(c.SYS_NDC, "line_ndc_cd")),
        Arr(
            "coding",
            c.coding(c.BB_CS_HCPCS, hcpcs),
            IfMissing(hcpcs, c.const_coding(c.CS_DATA_ABSENT, "unknown", "Unknown")),
        ),
    )


def _location(*exts: Node) -> Node:
    """locationCodeableConcept (C4BB requires location[x]): place of service as the Blue Button
    variable and the CMS POS code set; data-absent when the code is missing."""
    pos = "clm_pos_cd"
    return Obj(
        "locationCodeableConcept",
        c.extensions(*exts),
        Arr(
            "coding",
            c.bb_coding("line_place_of_srvc_cd", pos),
            c.coding(c.SYS_POS, pos),
            If(pos, [""], c.const_coding(c.CS_DATA_ABSENT, "unknown", "Unknown")),
        ),
    )


def _line_adjudications(*extra: Node) -> Node:
    """Line adjudications: amounts, then the benefitpaymentstatus slice C4BB 2.2.0 requires
    once on every item (last, as the idr-out samples write it)."""
    return Arr(
        "adjudication",
        c.adjudication(
            "clm_line_cvrd_pd_amt", "line_nch_pmt_amt", c.ADJ_BENEFIT, c.bb_ext_coding("line_pmt_80_100_cd", "line_pmt_80_100_cd")
        ),
        c.adjudication("line_bene_pmt_amt", "line_bene_pmt_amt", c.ADJ_PAID_TO_PATIENT),
        c.adjudication("line_prvdr_pmt_amt", "line_prvdr_pmt_amt", c.ADJ_PAID_TO_PROVIDER),
        c.adjudication("line_bene_ptb_ddctbl_amt", "line_bene_ptb_ddctbl_amt", c.ADJ_DEDUCTIBLE),
        c.adjudication("line_bene_prmry_pyr_pd_amt", "line_bene_prmry_pyr_pd_amt", c.ADJ_PRIOR_PAYER_PAID),
        c.adjudication("line_coinsrnc_amt", "line_coinsrnc_amt", c.ADJ_COINSURANCE),
        c.adjudication("line_sbmtd_chrg_amt", "line_sbmtd_chrg_amt", c.ADJ_SUBMITTED),
        c.adjudication("clm_line_alowd_chrg_amt", "line_alowd_chrg_amt", c.ADJ_ELIGIBLE),
        *extra,
        c.benefit_payment_status(),
    )


def _totals() -> tuple[Node, ...]:
    """Claim totals (v2's benefitBalance amounts, as C4BB 2.x totals), and payment."""
    return (
        Arr(
            "total",
            c.total("clm_pmt_amt", "clm_pmt_amt", c.ADJ_BENEFIT),
            c.total("nch_carr_clm_sbmtd_chrg_amt", "nch_carr_clm_sbmtd_chrg_amt", c.ADJ_SUBMITTED),
            c.total("clm_alowd_chrg_amt", "nch_carr_clm_alowd_amt", c.ADJ_ELIGIBLE),
            c.total("nch_clm_prvdr_pmt_amt", "nch_clm_prvdr_pmt_amt", c.ADJ_PAID_TO_PROVIDER),
            c.total("nch_clm_bene_pmt_amt", "nch_clm_bene_pmt_amt", c.ADJ_PAID_TO_PATIENT),
            c.total("carr_clm_cash_ddctbl_apld_amt", "carr_clm_cash_ddctbl_apld_amt", c.ADJ_DEDUCTIBLE),
            c.total("carr_clm_prmry_pyr_pd_amt", "carr_clm_prmry_pyr_pd_amt", c.ADJ_PRIOR_PAYER_PAID),
        ),
        c.payment("clm_pmt_amt"),
    )


def _line_extensions(primary_payer: str, *extra: Node) -> Node:
    return c.extensions(
        *extra,
        c.bb_ext_coding("betos_cd", "hcpcs_betos_cd"),
        c.bb_ext_coding("line_bene_prmry_pyr_cd", primary_payer),
        c.bb_ext_coding("line_prcsg_ind_cd", "clm_prcsg_ind_cd"),
        c.bb_ext_coding("line_service_deductible", "line_service_deductible"),
        c.bb_ext_coding("tax_num", "clm_rndrg_prvdr_tax_num"),
    )


def _eob(
    name: str,
    root: str,
    line: str,
    bb_type: str,
    *,
    line_team: tuple[tuple[str, tuple[str, str, str], tuple[Node, ...]], ...],
    header_team: tuple[str, ...],
    referral: str,
    line_members: tuple[Node, ...],
    modifiers: tuple[str, ...],
    location_exts: tuple[Node, ...],
) -> Template:
    """The professional EOB shape shared by carrier and DME; the arguments are what differs."""
    team_entries = [
        c.care_team_member(npi, role, None, *more, counter=c.SEQ_CARE_TEAM) for npi, role, more in line_team
    ]
    return Template(
        name,
        root,
        K("resourceType", "ExplanationOfBenefit"),
        Val("id", "clm_id", prefix=f"{bb_type.lower()}-"),
        c.meta(c.PROFILE_EOB_PROFESSIONAL, c.system_type_tag("NationalClaimsHistory"), c.final_action_tag()),
        Arr("contained", c.cms_organization()),
        _header_extensions(),
        Arr("identifier", c.uc_identifier(), c.claim_group_identifier(), c.control_number_identifier()),
        *c.status(),
        c.eob_type("professional", bb_type),
        K("use", "claim"),
        c.patient_ref(),
        c.period("billablePeriod", "clm_from_dt", "clm_thru_dt"),
        *c.created("clm_idr_ld_dt"),
        c.insurer(),
        *_provider(),
        _referral(referral),
        K("outcome", "complete"),
        Val("disposition", "clm_disp_cd"),
        Arr(
            "careTeam",
            Each(line, *team_entries),
            *(c.care_team_member(npi, c.ROLE_REFERRING) for npi in header_team),
        ),
        Arr(
            "supportingInfo",
            # The dictionary maps CLM_EFCTV_DT to NCH_WKLY_PROC_DT, which v2 writes as the
            # C4BB claim received date.
            c.info_date("nch_wkly_proc_dt", "clm_efctv_dt", "clmrecvddate"),
        ),
        _diagnoses(line, root),
        c.insurance("b"),
        *_replay_header_diagnoses(),
        Arr(
            "item",
            Each(
                line,
                Obj(
                    None,
                    *line_members[:1],
                    Val("sequence", "clm_line_num"),
                    Arr("careTeamSequence", *(_ref(npi, c.SEQ_ITEM_CARE_TEAM) for npi, _, _ in line_team)),
                    Arr("diagnosisSequence", _ref("clm_line_dgns_cd", c.SEQ_ITEM_DIAGNOSIS)),
                    c.bb_codeable("category", "line_cms_type_srvc_cd", "clm_fed_type_srvc_cd"),
                    _product(),
                    _modifiers(root, modifiers),
                    c.period("servicedPeriod", "clm_line_from_dt", "clm_line_thru_dt"),
                    _location(*location_exts),
                    Obj("quantity", Val("value", "clm_line_srvc_unit_qty")),
                    *line_members[1:],
                ),
            ),
        ),
        *_totals(),
    )


_PARTICIPATING = c.bb_ext_coding("prtcptng_ind_cd", "prtcptng_ind_cd")

EOB_CARRIER = _eob(
    "eob-carrier",
    "partb",
    "partb_line",
    "CARRIER",
    line_team=(
        (
            "rndrg_prvdr_npi_num",
            c.ROLE_RENDERING,
            (
                c.extensions(c.bb_ext_coding("carr_line_prvdr_type_cd", "rndrg_prvdr_type_cd"), _PARTICIPATING),
                K("responsible", True),
                c.bb_codeable("qualification", "prvdr_spclty", "clm_prvdr_spclty_cd"),
            ),
        ),
        ("org_npi_num", c.ROLE_PRIMARY, ()),
    ),
    header_team=("clm_rfrg_prvdr_npi_num",),
    referral="clm_rfrg_prvdr_npi_num",
    line_members=(
        _line_extensions(
            "clm_line_prmry_pyr_cd",
            c.bb_ext_quantity("carr_line_mtus_cnt", "carr_line_mtus_cnt"),
            c.bb_ext_coding("carr_line_mtus_cd", "carr_line_mtus_cd"),
        ),
        _line_adjudications(
            c.adjudication_reason("carr_line_rdcd_pmt_phys_astn_c", "carr_line_rdcd_pmt_phys_astn_c"),
        ),
    ),
    modifiers=tuple(f"hcpcs_{k}_mdfr_cd" for k in range(1, 6)),
    location_exts=(
        c.bb_ext_coding("prvdr_state_cd", "rndrg_prvdr_fips_st_cd"),
        c.bb_ext_coding("prvdr_zip", "prvdr_zip"),
        c.bb_ext_coding("carr_line_prcng_lclty_cd", "carr_line_prcng_lclty_cd"),
        c.bb_ext_identifier("carr_line_clia_lab_num", "carr_line_clia_lab_num"),
    ),
)
"""Carrier (Part B physician/supplier) claims: root `partb`, lines `partb_line`."""

EOB_DME = _eob(
    "eob-dme",
    "dme",
    "dme_line",
    "DME",
    line_team=(
        (
            "payto_prvdr_npi_num",
            c.ROLE_RENDERING,
            (
                c.extensions(_PARTICIPATING),
                K("responsible", True),
                c.bb_codeable("qualification", "prvdr_spclty", "clm_prvdr_spclty_cd"),
            ),
        ),
        ("ordrg_prvdr_npi_num", c.ROLE_REFERRING, ()),
    ),
    # CCLF6's ordering provider is a line field (above); the header referring NPI is the referral.
    header_team=(),
    referral="clm_rfrg_prvdr_npi_num",
    line_members=(
        _line_extensions(
            "clm_prmry_pyr_cd",
            c.bb_ext_identifier("suplrnum", "prvdr_num"),
            c.bb_ext_quantity("dmerc_line_scrn_svgs_amt", "dmerc_line_scrn_svgs_amt"),
            # v2 codes the unit of the count as a Quantity code (the MTUS code).
            Obj(
                None,
                K("url", c.bb_var("dmerc_line_mtus_cnt"), weak=True),
                Obj(
                    "valueQuantity",
                    Val("value", "dmerc_line_mtus_cnt"),
                    K("system", c.bb_var("dmerc_line_mtus_cd"), weak=True),
                    Val("code", "dmerc_line_mtus_cd"),
                ),
            ),
            c.bb_ext_coding("dmerc_line_prcng_state_cd", "dmerc_line_prcng_state_cd"),
            c.bb_ext_coding("dmerc_line_supplr_type_cd", "dmerc_line_supplr_type_cd"),
        ),
        _line_adjudications(
            c.adjudication("line_prmry_alowd_chrg_amt", "line_prmry_alowd_chrg_amt", c.ADJ_ELIGIBLE),
            c.adjudication("line_dme_prchs_price_amt", "line_dme_prchs_price_amt", c.ADJ_SUBMITTED),
        ),
    ),
    modifiers=tuple(f"hcpcs_{k}_mdfr_cd" for k in range(1, 5)),
    location_exts=(c.bb_ext_coding("prvdr_state_cd", "prvdr_state_cd"),),
)
"""DME (durable medical equipment) claims: root `dme`, lines `dme_line`."""
