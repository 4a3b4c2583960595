"""The mapping's vocabulary: profiles, code systems, naming systems, sequence counters.

Strings only (no template nodes): the URLs every template spells, and the counters that
number a resource's repeated elements. Spellings the C4BB checker shares come from `c4bb`.
"""

from __future__ import annotations

from .. import c4bb as _c4bb

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
    "bb_var",
    "versioned",
    "CS_C4BB_PROCEDURE_TYPE",
]

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


# C4BB Inpatient requires procedure.type (C4BBClaimProcedureType).
CS_C4BB_PROCEDURE_TYPE = f"{C4BB}/CodeSystem/C4BBClaimProcedureType"
