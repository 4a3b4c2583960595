"""Differences between our institutional EOBs and BFD v2 that are intended, each with its reason
(the Part D goldens reuse the header ones)."""

from .facts import Allow

ALLOWED = [
    Allow(r"^meta\.lastUpdated$", "volatile in BFD (IGNORED_FIELD); ours is the store's load time"),
    Allow(r"^created$", "volatile in BFD (IGNORED_FIELD); ours is the IDR load date, else the load time"),
    Allow(r"^meta\.(profile|tag)", "C4BB profile pinned to 2.2.0 and the final-action tag, as idr-out"),
    Allow(r"^(insurer\.|contained\[insurer-org\])", "insurer is a contained CMS Organization (idr-out); v2 wrote identifier 'CMS'"),
    Allow(
        r"^contained\[provider-org\]\.(meta|name)",
        "claims carry no organization name (v2 looked it up in NPPES); without one the "
        "C4BB-Organization profile (name 1..1) is not claimed",
    ),
    Allow(
        r"(careTeam\[[^]]*\]\.provider|contained\[provider-org\])\.identifier(\[[^]]*\])?\.(type\.coding|system)",
        "NPIs typed v2-0203#NPI with system us-npi (idr-out); v2 typed them C4BBIdentifierType#npi",
    ),
    Allow(r"^identifier\[[^]]*claim-group\]\.type", "only the claim id is typed uc: C4BB allows one unique claim id"),
    Allow(r"^identifier\[https://bluebutton\.cms\.gov/identifiers/CLM-CNTL-NUM\]",
          "the claim control number identifier of BCDA v3 / idr-out (matches a shared-system claim's NCH version)"),
    Allow(r"^careTeam\[performing\]", "rendering physician (RNDRNG_PHYSN_NPI) is RIF-only: CCLF2 has no line NPI"),
    Allow(r"^careTeam\[[^]]*\]\.qualification", "provider taxonomy came from BFD's NPPES lookup, not from the claim"),
    Allow(
        r"^supportingInfo\[[^]]*(clm_src_ip_admsn_cd|clm_drg_cd)\]\.(category|code)\.coding\[(http://terminology\.hl7\.org/CodeSystem/claiminformationcategory|http://hl7\.org/fhir/us/carin-bb/CodeSystem/C4BBSupportingInfoType|https://www\.nubc\.org/CodeSystem/PointOfOrigin|https://www\.cms\.gov/\S*MS-DRG\S*)\]",
        "point of origin and DRG sit in their C4BB slices (pointoforigin / drg with NUBC and MS-DRG codes) "
        "as idr-out; v2 used the generic info category",
    ),
    Allow(
        r"^supportingInfo\[typeofbill\]\.code\.coding\[(https://www\.nubc\.org/CodeSystem/TypeOfBill|\S*clm_fac_type_cd|\S*clm_srvc_clsfctn_type_cd)\]",
        "type of bill as idr-out: the NUBC code with its three parts; v2 gave the frequency only",
    ),
    Allow(r"^supportingInfo\[discharge-status\]\.code\.coding\[https://www\.nubc\.org/", "NUBC discharge status added (idr-out)"),
    Allow(
        r"\.(diagnosisCodeableConcept|procedureCodeableConcept)\.coding\[http://hl7\.org/fhir/sid/icd-10\]",
        "v2 repeats each ICD code under the WHO ICD-10 system; C4BB 2.x binds ICD-10-CM/PCS (idr-out)",
    ),
    Allow(
        r"^diagnosis\[[^]]*\]\.type\[other\]",
        "one diagnosis per source slot (idr-out): a code that is both principal and ICD_DGNS_CD1 also "
        "appears typed 'other'; v2 merged the two",
    ),
    Allow(r"^diagnosis\[[^]]*\]\.onAdmission", "present-on-admission also as C4BB onAdmission (idr-out)"),
    Allow(
        r"^item\[[^]]*\]\.adjudication\[[^]]*_ansi_cd\]\.category\.coding\[http://hl7\.org/fhir/us/carin-bb/CodeSystem/"
        r"C4BBAdjudicationDiscriminator\]\.code",
        "C4BB 2.x has no denialreason (1.x did): ANSI reason codes take the adjustmentreason slice",
    ),
    Allow(
        r"^procedure\[[^]]*\]\.type\[other\]",
        "C4BB Inpatient requires procedure.type (1..1); CCLF3 does not flag the principal one, so all are 'other'",
    ),
    Allow(
        r"^item\[[^]]*\]\.revenue\.coding\[https://www\.nubc\.org/CodeSystem/RevenueCodes\]",
        "v2 writes the deductible/coinsurance code (if any) under NUBC RevenueCodes; ours is the revenue center code (idr-out)",
    ),
    Allow(
        r"^item\[[^]]*\]\.productOrService\.coding\[https://bluebutton\.cms\.gov/resources/variables/hcpcs_cd\]",
        "inpatient v2 repeats HCPCS under the hcpcs_cd variable; one HCPCS coding (codesystem/hcpcs) as the other types",
    ),
    Allow(
        r"^item\[[^]]*\]\.(modifier\[[^]]*\]\.coding\[http://unitsofmeasure\.org\]|quantity\.value)",
        "REV_CNTR_NDC_QTY and its qualifier are RIF-only; item.quantity is the service unit count (C4BB 2.x, idr-out)",
    ),
    Allow(r"clm_pps_cptl_drg_wt_num", "RIF-only (and v2 truncates the decimal DRG weight to an unsignedInt)"),
    Allow(r"^adjudication\[benefitpaymentstatus\]", "C4BB 2.x requires the header benefit-payment-status slice"),
    Allow(
        r"^item\[[^]]*\]\.(productOrService\.coding\[\S*HIPPSCodes\]|extension\[\S*rev_cntr_apc_hipps_cd\])",
        "CCLF2 CLM_REV_APC_HIPPS_CD (dictionary 0375, no v2 element): HIPPS in productOrService as idr-out, APC as an extension",
    ),
]
ALLOWED_BY_KIND = {
    "inpatient": [
        Allow(r"^supportingInfo\[\S*clm_pps_ind_cd\]", "v2 maps CLM_PPS_IND_CD on SNF/HHA only; it means the same on inpatient claims"),
        Allow(r"^item\[[^]]*\]\.extension\[\S*rev_cntr_unit_cnt\]", "dictionary 0397 maps the unit count on inpatient lines too; v2 inpatient omits it"),
    ],
    "outpatient": [
        Allow(r"^item\[[^]]*\]\.productOrService\.extension\[http://hl7\.org/fhir/sid/ndc\]", "REV_CNTR_IDE_NDC_UPC_NUM is RIF-only"),
    ],
    "snf": [
        Allow(r"^diagnosis\[[^]]*\]\.type\[admitting\]", "v2 SNF types the admitting diagnosis 'other'; C4BB types it admitting"),
    ],
    "hospice": [
        Allow(r"^item\[[^]]*\]\.adjudication\[\S*rev_cntr_rate_amt\]", "the RIF rate amount is blank; v2 writes 0 for it"),
    ],
    "hha": [
        Allow(r"^diagnosis\[[^]]*\]\.type\[externalcauseofinjury\]", "v2 HHA drops the external-cause codes the RIF carries"),
        Allow(r"^type\.coding\[http://terminology\.hl7\.org/CodeSystem/claim-type\]\.code", "v2 HHA says 'professional'; institutional (idr-out)"),
        Allow(r"^insurance\[0\]\.coverage\.reference", "HHA is Part A coverage (idr-out); v2 referenced Part B"),
        Allow(r"^diagnosis\[[^]]*\]\.type\[secondary\]", "v2 HHA types other diagnoses 'secondary', a Professional code; Inpatient-Institutional binds 'other' (idr-out)"),
    ],
}
