"""Coverage templates: Medicare Parts A, B, C and D of a beneficiary (`bene`).

C4BB Coverage, id `part-<a|b|c|d>-<bene_id>`. BFD v2's Blue Button variable
extensions for the fields the data dictionary maps (ms_cd, orec, crec,
esrd_ind, termination codes, reference year); CCLF8 carries one *current*
buy-in and dual-status code where v2 has twelve monthly ones, so those use
idr-out's current-code extensions, as do the Part C/D contract and plan ids.
The type carries idr-out's Source of Payment (SOPT) code and v2's ActCode.

The writer emits one Coverage per row it is given: `coverage_rows` picks the
beneficiaries that have a part.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..columns import NO_DATE, Date, Str, Table
from ..errors import TemplateError
from ..template import Arr, If, IfHas, K, Map, Node, Obj, Template, Val
from . import common as c

__all__ = [
    "COVERAGE_PART_A",
    "COVERAGE_PART_B",
    "COVERAGE_PART_C",
    "COVERAGE_PART_D",
    "COVERAGES",
    "coverage_rows",
]

_IDR = "https://bluebutton.cms.gov/fhir"
EXT_BUYIN = f"{_IDR}/StructureDefinition/BENE-BUYIN-CD"
EXT_DUAL = f"{_IDR}/StructureDefinition/BENE-DUAL-STUS-CD"
EXT_CONTRACT = f"{_IDR}/StructureDefinition/BENE-CNTRCT-NUM"
EXT_PBP = f"{_IDR}/StructureDefinition/BENE-PBP-NUM"
EXT_SEGMENT = f"{_IDR}/StructureDefinition/CNTRCT-PBP-SGMT-NUM"
CS_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _idr_coding_ext(url: str, col: str) -> Node:
    return c.ext_coding(url, col, url.replace("/StructureDefinition/", "/CodeSystem/"))


def _string_ext(url: str, col: str) -> Node:
    return Obj(None, K("url", url, weak=True), Val("valueString", col))


# Per part: plan name, SOPT type, period columns, termination code (and its variable),
# part-specific extensions, and the column whose presence means the bene has the part.
_PARTS: dict[str, dict[str, Any]] = {
    "a": dict(
        plan="Part A",
        sopt=("1", "MEDICARE"),
        period=("bene_part_a_enrlmt_bgn_dt", "pta_cvrg_end_dt"),
        termination=("bene_pta_trmntn_cd", "a_trm_cd"),
        extensions=(
            c.bb_ext_coding("ms_cd", "bene_mdcr_stus_cd"),
            c.bb_ext_coding("orec", "bene_orgnl_entlmt_rsn_cd"),
            c.bb_ext_coding("crec", "bene_crec_cd"),
            c.bb_ext_coding("esrd_ind", "bene_esrd_ind"),
            _idr_coding_ext(EXT_BUYIN, "bene_entlmt_buyin_ind"),
        ),
    ),
    "b": dict(
        plan="Part B",
        sopt=("1", "MEDICARE"),
        period=("bene_part_b_enrlmt_bgn_dt", "ptb_cvrg_end_dt"),
        termination=("bene_ptb_trmntn_cd", "b_trm_cd"),
        extensions=(
            c.bb_ext_coding("ms_cd", "bene_mdcr_stus_cd"),
            _idr_coding_ext(EXT_BUYIN, "bene_entlmt_buyin_ind"),
        ),
    ),
    "c": dict(
        plan="Part C",
        sopt=("11", "MEDICARE MANAGED CARE (Includes Medicare Advantage Plans)"),
        period=None,
        termination=None,
        extensions=(_string_ext(EXT_CONTRACT, "ptc_cntrct_id"), _string_ext(EXT_PBP, "ptc_pbp_id")),
    ),
    "d": dict(
        plan="Part D",
        sopt=("122", "Medicare Drug Benefit"),
        period=("ptd_cvrg_strt_dt", "ptd_cvrg_end_dt"),
        termination=None,
        extensions=(
            c.bb_ext_coding("ms_cd", "bene_mdcr_stus_cd"),
            _string_ext(EXT_CONTRACT, "ptd_cntrct_id"),
            _string_ext(EXT_PBP, "ptd_pbp_id"),
            _string_ext(EXT_SEGMENT, "ptd_sgmt_id"),
        ),
    ),
}


def _status(termination: tuple[str, str] | None) -> tuple[Node, ...]:
    """Active unless a termination code other than 0 says the entitlement ended."""
    if termination is None:
        return (K("status", "active"),)
    col, _ = termination
    return (
        Map(col, {"0": K("status", "active")}, default=K("status", "cancelled")),
        If(col, [""], K("status", "active")),
    )


def _class(code: str, value: str) -> Node:
    return Obj(None, c.codeable("type", c.const_coding(c.CS_COVERAGE_CLASS, code, code.capitalize())), K("value", value))


def _coverage(part: str) -> Template:
    spec = _PARTS[part]
    sopt_code, sopt_display = spec["sopt"]
    exts = list(spec["extensions"])
    if spec["termination"]:
        col, var = spec["termination"]
        exts.append(c.bb_ext_coding(var, col))
    exts += [
        Obj(None, K("url", c.bb_var("rfrnc_yr"), weak=True), Val("valueDate", "rfrnc_yr", quote=True)),
        _idr_coding_ext(EXT_DUAL, "bene_dual_stus_cd"),
    ]
    members: list[Node] = [
        K("resourceType", "Coverage"),
        Val("id", "bene_id", prefix=c.coverage_id_prefix(part)),
        c.meta(c.PROFILE_COVERAGE),
        Arr("contained", c.cms_organization()),
        c.extensions(*exts),
        Arr(
            "identifier",
            IfHas("bene_mbi_id", Obj(None, c.codeable("type", c.const_coding(c.CS_V2_0203, "MB")), K("system", c.SYS_MBI), Val("value", "bene_mbi_id"))),
        ),
        *_status(spec["termination"]),
        c.codeable("type", c.const_coding(c.SYS_SOPT, sopt_code, sopt_display), c.const_coding(CS_ACT_CODE, "SUBSIDIZ")),
        Val("subscriberId", "bene_mbi_id"),
        c.patient_ref(key="beneficiary"),
        c.codeable("relationship", c.const_coding(c.CS_SUBSCRIBER_RELATIONSHIP, "self", "Self")),
    ]
    if spec["period"]:
        members.append(c.period("period", *spec["period"]))
    members += [
        Arr("payor", c.local_ref(None, c.CMS_ORG_ID)),
        Arr("class", _class("group", "Medicare"), _class("plan", spec["plan"])),
    ]
    return Template(f"coverage-part-{part}", "bene", *members)


COVERAGE_PART_A = _coverage("a")
COVERAGE_PART_B = _coverage("b")
COVERAGE_PART_C = _coverage("c")
COVERAGE_PART_D = _coverage("d")
COVERAGES = {"a": COVERAGE_PART_A, "b": COVERAGE_PART_B, "c": COVERAGE_PART_C, "d": COVERAGE_PART_D}

# The column whose presence means the beneficiary has the part.
_HAS = {"a": "bene_part_a_enrlmt_bgn_dt", "b": "bene_part_b_enrlmt_bgn_dt", "c": "ptc_cntrct_id", "d": "ptd_cntrct_id"}


def _has_contract(col: Str) -> np.ndarray:
    """Rows whose contract id has a character other than '0' (RIF writes "0" for none)."""
    offsets = col.offsets
    nonzero = np.concatenate([[0], np.cumsum(col.data != ord("0"), dtype=np.int64)])
    return (nonzero[offsets[1:]] - nonzero[offsets[:-1]]) > 0


def coverage_rows(bene: Table, part: str) -> np.ndarray:
    """Row numbers (int64) of `bene` that have Medicare `part` ("a".."d"): an entitlement
    begin date for A/B, a contract id for C/D."""
    part = part.lower()
    if part not in _HAS:
        raise TemplateError(f"coverage_rows: Medicare part must be one of a, b, c, d; got {part!r}")
    col = bene[_HAS[part]]
    if isinstance(col, Date):
        mask = col.values != NO_DATE
    else:
        mask = _has_contract(col)
    return np.flatnonzero(mask).astype(np.int64)
