"""A claim's clinical parts: supportingInfo, diagnoses, procedures and care team.

Each element is numbered with its family's sequence counter (`SEQ_INFO`, `SEQ_DIAGNOSIS`,
`SEQ_CARE_TEAM`), so items can point at the entries emitted for the same claim.
"""

from __future__ import annotations

from ...template import Arr, If, IfHas, IfMissing, K, Map, Node, Obj, Seq, Val
from .datatypes import bb_codeable, codeable, const_coding
from .systems import (
    BB_CS_INFORMATION,
    CS_C4BB_CARE_TEAM_ROLE,
    CS_C4BB_DIAGNOSIS_TYPE,
    CS_C4BB_PROCEDURE_TYPE,
    CS_C4BB_SUPPORTING_INFO,
    CS_CARE_TEAM_ROLE,
    CS_DATA_ABSENT,
    CS_DIAGNOSIS_TYPE,
    CS_INFO_CATEGORY,
    CS_SUPPORTING_INFO,
    CS_V2_0203,
    SEQ_CARE_TEAM,
    SEQ_DIAGNOSIS,
    SEQ_INFO,
    SYS_ICD9CM,
    SYS_ICD10CM,
    SYS_NPI,
    bb_var,
)

__all__ = [
    "info_category",
    "supporting_info",
    "info_date",
    "info_code",
    "icd_coding",
    "DX_PRINCIPAL",
    "DX_ADMITTING",
    "DX_SECONDARY",
    "DX_OTHER",
    "DX_EXTERNAL_CAUSE",
    "DX_PATIENT_REASON",
    "diagnosis_unknown",
    "diagnosis_slot",
    "PROCEDURE_OTHER",
    "npi_identifier",
    "npi_ref",
    "ROLE_RENDERING",
    "ROLE_REFERRING",
    "ROLE_PERFORMING",
    "ROLE_ATTENDING",
    "ROLE_OPERATING",
    "ROLE_OTHER_OPERATING",
    "ROLE_PRESCRIBING",
    "ROLE_PRIMARY",
    "ROLE_SUPERVISOR",
    "care_team_member",
]

# ---------------------------------------------------------------- supporting information


def info_category(var: str, c4bb_code: str | None = None) -> Node:
    """supportingInfo.category: C4BB code when one applies (else HL7 `info`) + the Blue Button
    information coding whose code is the variable URL."""
    first = (
        const_coding(CS_SUPPORTING_INFO, c4bb_code)
        if c4bb_code
        else const_coding(CS_INFO_CATEGORY, "info", "Information")
    )
    return codeable("category", first, const_coding(BB_CS_INFORMATION, bb_var(var)))


def supporting_info(var: str | None, c4bb_code: str | None, col: str, *value: Node) -> Node:
    """A supportingInfo element (only when `col` has a value): category C4BB code and/or the
    Blue Button information coding of `var`, then `value` members."""
    if var is None:
        assert c4bb_code is not None, "supportingInfo without a Blue Button variable needs a C4BB code"
        category = codeable("category", const_coding(CS_C4BB_SUPPORTING_INFO, c4bb_code))
    else:
        category = info_category(var, c4bb_code)
    return IfHas(col, Obj(None, Seq("sequence", SEQ_INFO), category, *value))


def info_date(var: str, col: str, c4bb_code: str | None = None) -> Node:
    """A supportingInfo element with `timingDate` from a date column."""
    return supporting_info(var, c4bb_code, col, Val("timingDate", col))


def info_code(var: str, col: str, c4bb_code: str | None = None) -> Node:
    """A supportingInfo element with a Blue Button coded `code`."""
    return supporting_info(var, c4bb_code, col, bb_codeable("code", var, col))


# ---------------------------------------------------------------- diagnoses


def icd_coding(code_col: str, icd_col: str) -> Node:
    """ICD diagnosis coding: ICD-9-CM when the version indicator is "9", else ICD-10-CM
    (BFD's rule; a missing indicator means ICD-10). Use inside `IfHas(code_col, ...)`."""
    return Obj(
        None,
        Map(icd_col, {"9": K("system", SYS_ICD9CM)}, default=K("system", SYS_ICD10CM)),
        If(icd_col, [""], K("system", SYS_ICD10CM)),
        Val("code", code_col),
    )


DX_PRINCIPAL = (CS_DIAGNOSIS_TYPE, "principal", "Principal Diagnosis")
DX_ADMITTING = (CS_DIAGNOSIS_TYPE, "admitting", "Admitting Diagnosis")
DX_SECONDARY = (CS_C4BB_DIAGNOSIS_TYPE, "secondary", "Secondary")
DX_OTHER = (CS_C4BB_DIAGNOSIS_TYPE, "other", "Other")
DX_EXTERNAL_CAUSE = (CS_C4BB_DIAGNOSIS_TYPE, "externalcauseofinjury", "External Cause of Injury")
DX_PATIENT_REASON = (CS_C4BB_DIAGNOSIS_TYPE, "patientreasonforvisit", "Patient Reason for Visit")


def diagnosis_unknown(code_col: str, dx_type: tuple[str, str, str], counter: int = SEQ_DIAGNOSIS) -> Node:
    """The `diagnosis` C4BB requires (1..*) when the claim's principal code column is blank:
    that diagnosis, typed, with a data-absent `unknown` coding (as productOrService does)."""
    system, code, display = dx_type
    return IfMissing(
        code_col,
        Obj(
            None,
            Seq("sequence", counter),
            codeable("diagnosisCodeableConcept", const_coding(CS_DATA_ABSENT, "unknown", "Unknown")),
            Arr("type", codeable(None, const_coding(system, code, display))),
        ),
    )


def diagnosis_slot(
    code_col: str,
    icd_col: str,
    dx_type: tuple[str, str, str],
    *more: Node,
    counter: int = SEQ_DIAGNOSIS,
) -> Node:
    """A `diagnosis` element for one diagnosis-code column: sequence (per-resource counter),
    ICD coding by the version indicator, the type coding, and any `more` members (e.g. onAdmission).
    Emitted only when the code is present, so the numbering stays dense."""
    system, code, display = dx_type
    return IfHas(
        code_col,
        Obj(
            None,
            Seq("sequence", counter),
            codeable("diagnosisCodeableConcept", icd_coding(code_col, icd_col)),
            Arr("type", codeable(None, const_coding(system, code, display))),
            *more,
        ),
    )


# CCLF3 does not flag the principal procedure, so every CCLF3 procedure is typed `other`
# rather than guessing one.
PROCEDURE_OTHER = (CS_C4BB_PROCEDURE_TYPE, "other", "Other")


# ---------------------------------------------------------------- providers and care team


def npi_identifier(col: str, key: str | None = "identifier") -> Node:
    """An NPI Identifier from a column: system us-npi, typed v2-0203 NPI as idr-out does
    (BFD v2's C4BBIdentifierType#npi is no longer a code of that system in C4BB 2.x)."""
    return IfHas(col, Obj(
        key,
        codeable("type", const_coding(CS_V2_0203, "NPI", "National provider identifier")),
        K("system", SYS_NPI),
        Val("value", col),
    ))


def npi_ref(key: str, col: str) -> Node:
    """A Reference by NPI identifier: `{key: {"identifier": {...NPI...}}}`."""
    return Obj(key, npi_identifier(col))


ROLE_RENDERING = (CS_C4BB_CARE_TEAM_ROLE, "rendering", "Rendering provider")
ROLE_REFERRING = (CS_C4BB_CARE_TEAM_ROLE, "referring", "Referring")
ROLE_PERFORMING = (CS_C4BB_CARE_TEAM_ROLE, "performing", "Performing provider")
ROLE_ATTENDING = (CS_C4BB_CARE_TEAM_ROLE, "attending", "Attending")
ROLE_OPERATING = (CS_C4BB_CARE_TEAM_ROLE, "operating", "Operating")
ROLE_OTHER_OPERATING = (CS_C4BB_CARE_TEAM_ROLE, "otheroperating", "Other Operating")
ROLE_PRESCRIBING = (CS_C4BB_CARE_TEAM_ROLE, "prescribing", "Prescribing provider")
ROLE_PRIMARY = (CS_CARE_TEAM_ROLE, "primary", "Primary provider")
ROLE_SUPERVISOR = (CS_CARE_TEAM_ROLE, "supervisor", "Supervising Provider")


def care_team_member(
    npi_col: str,
    role: tuple[str, str, str],
    sequence: Node | None = None,
    *more: Node,
    counter: int = SEQ_CARE_TEAM,
) -> Node:
    """A careTeam element for the provider whose NPI is in `npi_col`: sequence (`sequence` node,
    default the per-resource care-team counter), provider by NPI, role (constant), and `more`
    members (qualification, extension, responsible). Emitted only when the NPI is present, so
    C4BB's provider+role rule holds."""
    system, code, display = role
    return IfHas(
        npi_col,
        Obj(
            None,
            sequence if sequence is not None else Seq("sequence", counter),
            npi_ref("provider", npi_col),
            codeable("role", const_coding(system, code, display)),
            *more,
        ),
    )
