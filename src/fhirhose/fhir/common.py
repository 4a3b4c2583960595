"""The mapping's shared vocabulary: systems, profiles and template pieces every resource uses.

Codes follow BFD's v2 output (Blue Button variables,
``https://bluebutton.cms.gov/resources/variables/<var>``) and, where v2 and
CARIN Blue Button 2.x disagree, the newer idr-out samples (C4BB 2.2.0).

Every helper returns template nodes (see `fhirhose.template`); a helper whose
name is plural or that documents "members" returns a tuple to splat into the
enclosing `Obj`/`Template`. Column arguments are column names of the table the
node is evaluated in (or "table.col" for an enclosing table).

Sequence counters: a resource has `MAX_COUNTERS` of them; these names keep
the families from colliding (`Seq(..., counter=SEQ_CARE_TEAM)`).
"""

from __future__ import annotations

from ..template import Arr, E, If, IfHas, IfMissing, K, Map, Node, Obj, Seq, Val
from . import c4bb as _c4bb

# ---------------------------------------------------------------- profiles

C4BB = "http://hl7.org/fhir/us/carin-bb"
C4BB_VERSION = "2.2.0"
PROFILE_PATIENT = f"{C4BB}/StructureDefinition/C4BB-Patient"
PROFILE_COVERAGE = f"{C4BB}/StructureDefinition/C4BB-Coverage"
PROFILE_ORGANIZATION = f"{C4BB}/StructureDefinition/C4BB-Organization"
PROFILE_EOB_INPATIENT = _c4bb.PROFILE_INPATIENT
PROFILE_EOB_OUTPATIENT = _c4bb.PROFILE_OUTPATIENT
PROFILE_EOB_PROFESSIONAL = _c4bb.PROFILE_PROFESSIONAL
PROFILE_EOB_PHARMACY = _c4bb.PROFILE_PHARMACY

# ---------------------------------------------------------------- code systems and naming systems

BB = "https://bluebutton.cms.gov/resources"
BB_VARIABLES = f"{BB}/variables/"
BB_CS_EOB_TYPE = f"{BB}/codesystem/eob-type"
BB_CS_ADJUDICATION = f"{BB}/codesystem/adjudication"
BB_CS_INFORMATION = f"{BB}/codesystem/information"
BB_CS_BENEFIT_BALANCE = f"{BB}/codesystem/benefit-balance"
BB_CS_HCPCS = f"{BB}/codesystem/hcpcs"
BB_CS_IDENTIFIER_CURRENCY = f"{BB}/codesystem/identifier-currency"
BB_ID_CLAIM_GROUP = f"{BB}/identifier/claim-group"
# idr-out (C4BB 2.2.0) tags final and non-final claim versions in meta.tag.
BB_CS_FINAL_ACTION = "https://bluebutton.cms.gov/fhir/CodeSystem/Final-Action"
# BCDA v3 / idr-out: which system a claim came from (meta.tag), and the claim control number
# that matches a shared-system claim with its National Claims History version.
BB_CS_SYSTEM_TYPE = "https://bluebutton.cms.gov/fhir/CodeSystem/System-Type"
SYSTEM_TYPES = ("SharedSystem", "NationalClaimsHistory", "DDPS")
BB_ID_CLM_CNTL_NUM = "https://bluebutton.cms.gov/identifiers/CLM-CNTL-NUM"
CS_RELATED_CLAIM = "http://terminology.hl7.org/CodeSystem/ex-relatedclaimrelationship"

SYS_MBI = _c4bb.NS_MBI
SYS_NPI = "http://hl7.org/fhir/sid/us-npi"
SYS_ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SYS_ICD9CM = "http://hl7.org/fhir/sid/icd-9-cm"
SYS_ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
SYS_ICD9PCS = "http://www.cms.gov/Medicare/Coding/ICD9"
SYS_HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
SYS_CPT = "http://www.ama-assn.org/go/cpt"
SYS_NDC = "http://hl7.org/fhir/sid/ndc"
SYS_NUCC = "http://nucc.org/provider-taxonomy"
SYS_NUBC_REVENUE = "https://www.nubc.org/CodeSystem/RevenueCodes"
SYS_POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
SYS_UCUM = "http://unitsofmeasure.org"
SYS_SOPT = "https://nahdo.org/sopt"

CS_CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
CS_DIAGNOSIS_TYPE = "http://terminology.hl7.org/CodeSystem/ex-diagnosistype"
CS_C4BB_DIAGNOSIS_TYPE = f"{C4BB}/CodeSystem/C4BBClaimDiagnosisType"
CS_CARE_TEAM_ROLE = "http://terminology.hl7.org/CodeSystem/claimcareteamrole"
CS_C4BB_CARE_TEAM_ROLE = f"{C4BB}/CodeSystem/C4BBClaimCareTeamRole"
CS_INFO_CATEGORY = "http://terminology.hl7.org/CodeSystem/claiminformationcategory"
CS_C4BB_INSTITUTIONAL_SUBTYPE = f"{C4BB}/CodeSystem/C4BBInstitutionalClaimSubType"
CS_PAYER_ADJUDICATION_STATUS = f"{C4BB}/CodeSystem/C4BBPayerAdjudicationStatus"
CS_SUBSCRIBER_RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
CS_COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
CS_DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
EXT_DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
# The checker's spellings, so templates and checks share one.
CS_ADJUDICATION = _c4bb.CS_ADJUDICATION
CS_ADJUDICATION_DISCRIMINATOR = _c4bb.CS_ADJUDICATION_DISCRIMINATOR
CS_IDENTIFIER_TYPE = _c4bb.CS_IDENTIFIER_TYPE
CS_SUPPORTING_INFO = _c4bb.CS_SUPPORTING_INFO
CS_C4BB_ADJUDICATION = CS_ADJUDICATION
CS_C4BB_ADJUDICATION_DISCRIMINATOR = CS_ADJUDICATION_DISCRIMINATOR
CS_C4BB_IDENTIFIER_TYPE = CS_IDENTIFIER_TYPE
CS_C4BB_SUPPORTING_INFO = CS_SUPPORTING_INFO
CS_HL7_ADJUDICATION = _c4bb.CS_HL7_ADJUDICATION
CS_V2_0203 = _c4bb.CS_V2_0203

CMS_ORG_ID = "insurer-org"
CMS_NAME = "Centers for Medicare & Medicaid Services"

# ---------------------------------------------------------------- sequence counters (< MAX_COUNTERS)

SEQ_DIAGNOSIS = 0
SEQ_CARE_TEAM = 1
SEQ_INFO = 2
SEQ_PROCEDURE = 3
SEQ_ITEM = 4
# Items number their careTeamSequence / diagnosisSequence with these, replaying the
# conditions under which the referenced entries were emitted (see fhirhose.template).
SEQ_ITEM_CARE_TEAM = 5
SEQ_ITEM_DIAGNOSIS = 6
SEQ_SPARE = 7


def bb_var(var: str) -> str:
    """The Blue Button variable URL (system and extension url) for a CCW variable name."""
    return BB_VARIABLES + var.lower()


def versioned(profile: str) -> str:
    """A canonical with the C4BB version idr-out pins (``...|2.2.0``)."""
    return f"{profile}|{C4BB_VERSION}"


# ---------------------------------------------------------------- codings, codeable concepts, extensions


def coding(system: str, col: str, display: str | None = None) -> Node:
    """A Coding whose code is a column; the system (weak) goes with it or not at all."""
    members: list[Node] = [K("system", system, weak=True), Val("code", col)]
    if display is not None:
        members.append(K("display", display, weak=True))
    return Obj(None, *members)


def const_coding(system: str, code: str, display: str | None = None, *, weak: bool = False) -> Node:
    """A constant Coding (strong unless `weak`: then it only decorates values beside it)."""
    members = [K("system", system, weak=weak), K("code", code, weak=weak)]
    if display is not None:
        members.append(K("display", display, weak=weak))
    return Obj(None, *members)


def bb_coding(var: str, col: str) -> Node:
    """A Coding in the Blue Button variable system of `var`, code from `col`."""
    return coding(bb_var(var), col)


def codeable(key: str | None, *codings: Node) -> Node:
    """A CodeableConcept `{"coding": [...]}` under `key`."""
    return Obj(key, Arr("coding", *codings))


def bb_codeable(key: str | None, var: str, col: str) -> Node:
    """A CodeableConcept with one Blue Button variable coding."""
    return codeable(key, bb_coding(var, col))


def ext_coding(url: str, col: str, system: str | None = None) -> Node:
    """An extension element `{url, valueCoding{system, code}}`; dropped when `col` is missing."""
    return Obj(None, K("url", url, weak=True), Obj("valueCoding", K("system", system or url, weak=True), Val("code", col)))


def bb_ext_coding(var: str, col: str) -> Node:
    """Blue Button variable extension with a valueCoding (url = system = the variable URL)."""
    return ext_coding(bb_var(var), col)


def bb_ext_identifier(var: str, col: str) -> Node:
    """Blue Button variable extension with a valueIdentifier."""
    url = bb_var(var)
    return Obj(None, K("url", url, weak=True), Obj("valueIdentifier", K("system", url, weak=True), Val("value", col)))


def bb_ext_quantity(var: str, col: str) -> Node:
    """Blue Button variable extension with a valueQuantity (a Num column)."""
    return Obj(None, K("url", bb_var(var), weak=True), Obj("valueQuantity", Val("value", col)))


def bb_ext_date(var: str, col: str) -> Node:
    """Blue Button variable extension with a valueDate."""
    return Obj(None, K("url", bb_var(var), weak=True), Val("valueDate", col))


def extensions(*exts: Node) -> Node:
    """The `extension` array (dropped when every element is)."""
    return Arr("extension", *exts)


# ---------------------------------------------------------------- resource header pieces


def final_action_tag(col: str = "final_action") -> Node:
    """meta.tag element from the store's final-action flag (F final, N not final), as idr-out tags."""
    return Map(
        col,
        {
            "F": Obj(None, K("system", BB_CS_FINAL_ACTION), K("code", "FinalAction")),
            "N": Obj(None, K("system", BB_CS_FINAL_ACTION), K("code", "NotFinalAction")),
        },
    )


def system_type_tag(code: str) -> Node:
    """meta.tag element naming the claim's source system (BCDA v3 filters `_tag` on it)."""
    if code not in SYSTEM_TYPES:
        raise ValueError(f"System-Type {code!r} is not one of {', '.join(SYSTEM_TYPES)}")
    return Obj(None, K("system", BB_CS_SYSTEM_TYPE), K("code", code))


def control_number_identifier(col: str = "clm_cntl_num") -> Node:
    """The claim control number identifier (CLM-CNTL-NUM): equal on a claim's shared-system
    and NCH versions, so clients match them on it."""
    return IfHas(col, Obj(None, K("system", BB_ID_CLM_CNTL_NUM, weak=True), Val("value", col)))


def related_control_number(col: str = "clm_prev_cntl_num") -> Node:
    """`related`: the control number a claim had before it was given a new one (relationship prior)."""
    return Arr(
        "related",
        IfHas(col, Obj(
            None,
            codeable("relationship", const_coding(CS_RELATED_CLAIM, "prior", "Prior Claim")),
            Obj("reference", K("system", BB_ID_CLM_CNTL_NUM, weak=True), Val("value", col)),
        )),
    )


def meta(profile: str, *tags: Node, last_updated: str = "last_updated") -> Node:
    """`meta`: lastUpdated from the load time, the C4BB profile (versioned), optional tags."""
    members: list[Node] = [Val("lastUpdated", last_updated), Arr("profile", E(versioned(profile)))]
    if tags:
        members.append(Arr("tag", *tags))
    return Obj("meta", *members)


def status(col: str = "final_action") -> tuple[Node, ...]:
    """Members: `status` active for a final version (F), cancelled otherwise (N, missing, other),
    as BFD maps FINAL_ACTION; status is required, so every label yields one."""
    return (
        Map(col, {"F": K("status", "active")}, default=K("status", "cancelled")),
        If(col, [""], K("status", "cancelled")),
    )


def uc_identifier(col: str = "clm_id", system: str | None = None) -> Node:
    """The C4BB unique claim id (`identifier` element with type uc), system clm_id by default."""
    return IfHas(col, Obj(
        None,
        codeable("type", const_coding(CS_IDENTIFIER_TYPE, "uc", "Unique Claim ID")),
        K("system", system or bb_var("clm_id")),
        Val("value", col),
    ))


def claim_group_identifier(col: str = "clm_grp_id") -> Node:
    """The claim-group identifier element (no `uc` type: C4BB allows one unique claim id)."""
    return Obj(None, K("system", BB_ID_CLAIM_GROUP, weak=True), Val("value", col))


def reference(key: str, col: str, prefix: str) -> Node:
    """`{key: {"reference": prefix + col}}`."""
    return Obj(key, Val("reference", col, prefix=prefix))


def patient_ref(col: str = "bene_id", key: str = "patient") -> Node:
    """Reference to the beneficiary's Patient (`Patient/<bene_id>`)."""
    return reference(key, col, "Patient/")


def coverage_id_prefix(part: str) -> str:
    """Coverage id prefix of a Medicare part ("a".."d"): `part-a-`."""
    part = part.lower()
    if part not in ("a", "b", "c", "d"):
        raise ValueError(f"Medicare part must be one of a, b, c, d; got {part!r}")
    return f"part-{part}-"


def insurance(part: str, col: str = "bene_id") -> Node:
    """`insurance`: one focal entry referencing `Coverage/part-<part>-<bene_id>`."""
    return Arr(
        "insurance",
        Obj(None, K("focal", True, weak=True), reference("coverage", col, "Coverage/" + coverage_id_prefix(part))),
    )


def cms_organization(org_id: str = CMS_ORG_ID) -> Node:
    """A contained C4BB Organization for CMS (insurer of every EOB, payor of every Coverage)."""
    return Obj(
        None,
        K("resourceType", "Organization"),
        K("id", org_id),
        Obj("meta", Arr("profile", E(versioned(PROFILE_ORGANIZATION)))),
        K("active", True),
        K("name", CMS_NAME),
    )


def local_ref(key: str, contained_id: str) -> Node:
    """A reference to a contained resource: `{key: {"reference": "#id"}}`."""
    return Obj(key, K("reference", "#" + contained_id))


def insurer() -> Node:
    """`insurer` → the contained CMS organization (put `cms_organization()` in `contained`)."""
    return local_ref("insurer", CMS_ORG_ID)


def eob_type(claim_type: str, bb_eob_type: str, clm_type_col: str = "clm_type_cd") -> Node:
    """EOB `type`: C4BB claim type (professional, institutional, pharmacy), the Blue Button
    EOB type (CARRIER, DME, ...) that clients filter on, and the NCH claim type code."""
    return codeable(
        "type",
        const_coding(CS_CLAIM_TYPE, claim_type),
        const_coding(BB_CS_EOB_TYPE, bb_eob_type),
        bb_coding("nch_clm_type_cd", clm_type_col),
    )


def period(key: str, start_col: str, end_col: str) -> Node:
    """A Period from two date columns."""
    return Obj(key, Val("start", start_col), Val("end", end_col))


def money(key: str | None, col: str) -> Node:
    """A Money `{value, currency: USD}`; dropped with its value."""
    return Obj(key, Val("value", col), K("currency", "USD", weak=True))


# ---------------------------------------------------------------- adjudication and totals


def _category(c4bb: tuple[str, str, str] | None, var: str | None, key: str = "category") -> Node:
    codings = []
    if c4bb is not None:
        system, code, display = c4bb
        codings.append(const_coding(system, code, display))
    if var is not None:
        codings.append(const_coding(BB_CS_ADJUDICATION, bb_var(var)))
    return codeable(key, *codings)


# The C4BB adjudication categories BFD uses, as (system, code, display).
ADJ_SUBMITTED = (CS_HL7_ADJUDICATION, "submitted", "Submitted Amount")
ADJ_ELIGIBLE = (CS_HL7_ADJUDICATION, "eligible", "Eligible Amount")
ADJ_DEDUCTIBLE = (CS_HL7_ADJUDICATION, "deductible", "Deductible")
ADJ_BENEFIT = (CS_HL7_ADJUDICATION, "benefit", "Benefit Amount")
ADJ_COPAY = (CS_HL7_ADJUDICATION, "copay", "CoPay")
ADJ_PAID_TO_PROVIDER = (CS_ADJUDICATION, "paidtoprovider", "Paid to provider")
ADJ_PAID_TO_PATIENT = (CS_ADJUDICATION, "paidtopatient", "Paid to patient")
ADJ_PAID_BY_PATIENT = (CS_ADJUDICATION, "paidbypatient", "Paid by patient")
ADJ_PRIOR_PAYER_PAID = (CS_ADJUDICATION, "priorpayerpaid", "Prior payer paid")
ADJ_COINSURANCE = (CS_ADJUDICATION, "coinsurance", "Co-insurance")
ADJ_NONCOVERED = (CS_ADJUDICATION, "noncovered", "Noncovered")
ADJ_DISCOUNT = (CS_ADJUDICATION, "discount", "Discount")
# C4BB 2.x dropped 1.x's `denialreason`; reason codes sit in the `adjustmentreason` slice.
ADJ_ADJUSTMENT_REASON = (CS_ADJUDICATION_DISCRIMINATOR, "adjustmentreason", "Adjustment Reason")


def adjudication(col: str, var: str, c4bb: tuple[str, str, str] | None = None, *exts: Node) -> Node:
    """An adjudication element: category = C4BB code (if any) + Blue Button adjudication coding
    for `var`; amount from the money column `col`. Dropped when the amount is missing."""
    members: list[Node] = []
    if exts:
        members.append(extensions(*exts))
    members += [_category(c4bb, var), money("amount", col)]
    return IfHas(col, Obj(None, *members))


def adjudication_reason(col: str, var: str, c4bb: tuple[str, str, str] = ADJ_ADJUSTMENT_REASON) -> Node:
    """An adjudication element carrying a coded reason (e.g. denial reason) instead of an amount."""
    return IfHas(col, Obj(None, _category(c4bb, None), bb_codeable("reason", var, col)))


def total(col: str, var: str, c4bb: tuple[str, str, str]) -> Node:
    """A `total` element (C4BB requires its category from C4BBAdjudication/HL7 adjudication)."""
    return IfHas(col, Obj(None, _category(c4bb, var), money("amount", col)))


def data_absent(key: str, reason: str = "unknown") -> Node:
    """`{key: {"extension": [data-absent-reason]}}`: a required complex element whose source
    value is missing (pair with `IfMissing`)."""
    return Obj(key, Arr("extension", Obj(None, K("url", EXT_DATA_ABSENT), K("valueCode", reason))))


def created(col: str, fallback: str = "last_updated") -> tuple[Node, ...]:
    """Members: `created` from a date column, else the load time (C4BB requires created)."""
    return (IfHas(col, Val("created", col)), IfMissing(col, Val("created", fallback)))


def payment(col: str) -> Node:
    """`payment.amount` from a money column."""
    return Obj("payment", money("amount", col))


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


def info_date(var: str, col: str, c4bb_code: str | None = None) -> Node:
    """A supportingInfo element with `timingDate` from a date column."""
    return IfHas(col, Obj(None, Seq("sequence", SEQ_INFO), info_category(var, c4bb_code), Val("timingDate", col)))


def info_code(var: str, col: str, c4bb_code: str | None = None) -> Node:
    """A supportingInfo element with a Blue Button coded `code`."""
    return IfHas(col, Obj(None, Seq("sequence", SEQ_INFO), info_category(var, c4bb_code), bb_codeable("code", var, col)))


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


__all__ = [
    "C4BB",
    "C4BB_VERSION",
    "PROFILE_PATIENT",
    "PROFILE_COVERAGE",
    "PROFILE_ORGANIZATION",
    "PROFILE_EOB_INPATIENT",
    "PROFILE_EOB_OUTPATIENT",
    "PROFILE_EOB_PROFESSIONAL",
    "PROFILE_EOB_PHARMACY",
    "BB",
    "BB_VARIABLES",
    "BB_CS_EOB_TYPE",
    "BB_CS_ADJUDICATION",
    "BB_CS_INFORMATION",
    "BB_CS_BENEFIT_BALANCE",
    "BB_CS_HCPCS",
    "BB_CS_IDENTIFIER_CURRENCY",
    "BB_ID_CLAIM_GROUP",
    "BB_CS_FINAL_ACTION",
    "BB_CS_SYSTEM_TYPE",
    "SYSTEM_TYPES",
    "BB_ID_CLM_CNTL_NUM",
    "CS_RELATED_CLAIM",
    "SYS_MBI",
    "SYS_NPI",
    "SYS_ICD10CM",
    "SYS_ICD9CM",
    "SYS_ICD10PCS",
    "SYS_ICD9PCS",
    "SYS_HCPCS",
    "SYS_CPT",
    "SYS_NDC",
    "SYS_NUCC",
    "SYS_NUBC_REVENUE",
    "SYS_POS",
    "SYS_UCUM",
    "SYS_SOPT",
    "CS_CLAIM_TYPE",
    "CS_DIAGNOSIS_TYPE",
    "CS_C4BB_DIAGNOSIS_TYPE",
    "CS_CARE_TEAM_ROLE",
    "CS_C4BB_CARE_TEAM_ROLE",
    "CS_INFO_CATEGORY",
    "CS_C4BB_INSTITUTIONAL_SUBTYPE",
    "CS_PAYER_ADJUDICATION_STATUS",
    "CS_SUBSCRIBER_RELATIONSHIP",
    "CS_COVERAGE_CLASS",
    "CS_DATA_ABSENT",
    "EXT_DATA_ABSENT",
    "CS_ADJUDICATION",
    "CS_ADJUDICATION_DISCRIMINATOR",
    "CS_IDENTIFIER_TYPE",
    "CS_SUPPORTING_INFO",
    "CS_C4BB_ADJUDICATION",
    "CS_C4BB_ADJUDICATION_DISCRIMINATOR",
    "CS_C4BB_IDENTIFIER_TYPE",
    "CS_C4BB_SUPPORTING_INFO",
    "CS_HL7_ADJUDICATION",
    "CS_V2_0203",
    "CMS_ORG_ID",
    "CMS_NAME",
    "SEQ_DIAGNOSIS",
    "SEQ_CARE_TEAM",
    "SEQ_INFO",
    "SEQ_PROCEDURE",
    "SEQ_ITEM",
    "SEQ_ITEM_CARE_TEAM",
    "SEQ_ITEM_DIAGNOSIS",
    "SEQ_SPARE",
    "ADJ_SUBMITTED",
    "ADJ_ELIGIBLE",
    "ADJ_DEDUCTIBLE",
    "ADJ_BENEFIT",
    "ADJ_COPAY",
    "ADJ_PAID_TO_PROVIDER",
    "ADJ_PAID_TO_PATIENT",
    "ADJ_PAID_BY_PATIENT",
    "ADJ_PRIOR_PAYER_PAID",
    "ADJ_COINSURANCE",
    "ADJ_NONCOVERED",
    "ADJ_DISCOUNT",
    "ADJ_ADJUSTMENT_REASON",
    "DX_PRINCIPAL",
    "DX_ADMITTING",
    "DX_SECONDARY",
    "DX_OTHER",
    "DX_EXTERNAL_CAUSE",
    "DX_PATIENT_REASON",
    "ROLE_RENDERING",
    "ROLE_REFERRING",
    "ROLE_PERFORMING",
    "ROLE_ATTENDING",
    "ROLE_OPERATING",
    "ROLE_OTHER_OPERATING",
    "ROLE_PRESCRIBING",
    "ROLE_PRIMARY",
    "ROLE_SUPERVISOR",
    "bb_var",
    "versioned",
    "coding",
    "const_coding",
    "bb_coding",
    "codeable",
    "bb_codeable",
    "ext_coding",
    "bb_ext_coding",
    "bb_ext_identifier",
    "bb_ext_quantity",
    "bb_ext_date",
    "extensions",
    "final_action_tag",
    "system_type_tag",
    "control_number_identifier",
    "related_control_number",
    "meta",
    "status",
    "uc_identifier",
    "claim_group_identifier",
    "reference",
    "patient_ref",
    "coverage_id_prefix",
    "insurance",
    "cms_organization",
    "local_ref",
    "insurer",
    "eob_type",
    "period",
    "money",
    "adjudication",
    "adjudication_reason",
    "total",
    "data_absent",
    "created",
    "payment",
    "info_category",
    "info_date",
    "info_code",
    "icd_coding",
    "diagnosis_slot",
    "npi_identifier",
    "npi_ref",
    "care_team_member",
]


# ---------------------------------------------------------------- additions (institutional / pharmacy)


def bb_ext_money(var: str, col: str) -> Node:
    """Blue Button variable extension with a valueMoney."""
    return Obj(None, K("url", bb_var(var), weak=True), money("valueMoney", col))


def created(col: str = "clm_idr_ld_dt", fallback: str = "last_updated") -> tuple[Node, ...]:
    """Members: `created` (required by C4BB) from the IDR load date as idr-out does, else the
    store's load time (RIF and synthetic inputs carry no IDR load date)."""
    return IfHas(col, Val("created", col)), IfMissing(col, Val("created", fallback))


def benefit_payment_status(code: str = "other", display: str = "Other") -> Node:
    """Header adjudication slice C4BB requires on institutional and pharmacy EOBs: category
    benefitpaymentstatus, reason from C4BBPayerAdjudicationStatus. Medicare claims do not say
    whether the provider was in network, hence "other" as idr-out writes."""
    return Obj(
        None,
        codeable("category", const_coding(CS_ADJUDICATION_DISCRIMINATOR, "benefitpaymentstatus", "Benefit Payment Status")),
        codeable("reason", const_coding(CS_PAYER_ADJUDICATION_STATUS, code, display)),
    )


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


# C4BB Inpatient requires procedure.type (C4BBClaimProcedureType). CCLF3 does not flag the
# principal procedure, so every CCLF3 procedure is typed `other` rather than guessing one.
CS_C4BB_PROCEDURE_TYPE = f"{C4BB}/CodeSystem/C4BBClaimProcedureType"
PROCEDURE_OTHER = (CS_C4BB_PROCEDURE_TYPE, "other", "Other")


# productOrService is 1..1: lines without a procedure code say so (idr-out does the same).
DATA_ABSENT_NOT_APPLICABLE = const_coding(CS_DATA_ABSENT, "not-applicable", "Not Applicable")

__all__ += [
    "bb_ext_money",
    "created",
    "benefit_payment_status",
    "diagnosis_unknown",
    "CS_C4BB_PROCEDURE_TYPE",
    "PROCEDURE_OTHER",
    "DATA_ABSENT_NOT_APPLICABLE",
]
