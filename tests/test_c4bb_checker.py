"""The C4BB checker and the R4 validator against BFD's idr-out samples and targeted mutations.

Fixtures in tests/fixtures/idr_out are copies of BFD's public-domain sample outputs
(reference/bfd/idr-out), profiled on C4BB 2.2.0.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from fhirhose.fhir.c4bb import (
    CS_ADJUDICATION,
    CS_ADJUDICATION_DISCRIMINATOR,
    CS_SUPPORTING_INFO,
    assert_conformant,
    check,
)
from fhirhose.fhir.validate import R4ValidationError, validate_r4

FIXTURES = Path(__file__).parent / "fixtures" / "idr_out"
# BFD's prior-authorization EOB is profiled on Da Vinci PDex, not C4BB (see test below).
NOT_C4BB = {"ExplanationOfBenefit-PriorAuth.json"}


def _unwrap(doc: object) -> list[dict]:
    """Resources in a file that may hold one resource, a Bundle, or a JSON array of either."""
    if isinstance(doc, list):
        return [r for d in doc for r in _unwrap(d)]
    assert isinstance(doc, dict)
    if doc.get("resourceType") == "Bundle":
        return [r for e in doc.get("entry", []) for r in _unwrap(e["resource"])]
    return [doc]


def _load(name: str) -> list[dict]:
    with open(FIXTURES / name, encoding="utf-8") as f:
        return _unwrap(json.load(f))


def _one(name: str) -> dict:
    """A fresh (mutable) copy of the single resource in fixture ``name``."""
    (res,) = _load(name)
    return copy.deepcopy(res)


ALL_FILES = sorted(p.name for p in FIXTURES.glob("*.json"))
C4BB_FILES = [n for n in ALL_FILES if n not in NOT_C4BB]
INPATIENT = "ExplanationOfBenefit.json"
OUTPATIENT = "ExplanationOfBenefit-Outpatient.json"
CARRIER = "ExplanationOfBenefit-Carrier.json"
PHARMACY = "ExplanationOfBenefit-Pharmacy.json"


def _violations_with(resource: dict, fragment: str) -> list[str]:
    found = [m for m in check(resource) if fragment in m]
    assert found, f"expected a violation containing {fragment!r}, got {check(resource)}"
    return found


def test_fixtures_present():
    assert len(C4BB_FILES) >= 15


@pytest.mark.parametrize("name", C4BB_FILES)
def test_idr_out_samples_conform(name):
    for res in _load(name):
        assert check(res) == [], name
        assert_conformant(res)


def test_prior_auth_is_not_c4bb():
    # PDex prior-authorization EOB: use=preauthorization, no uc identifier, no billablePeriod/total.
    msgs = check(_one("ExplanationOfBenefit-PriorAuth.json"))
    assert any("names no C4BB ExplanationOfBenefit profile" in m for m in msgs)
    assert any("billablePeriod.start" in m for m in msgs)


# --- EOB base rules ------------------------------------------------------------------------


def test_no_focal_insurance():
    eob = _one(CARRIER)
    del eob["insurance"][0]["focal"]
    (msg,) = _violations_with(eob, "exactly one focal=true")
    assert msg == "EOB NON-UNIQUE-ID-HERE: insurance must have exactly one focal=true (found 0)"


def test_duplicate_focal_insurance():
    eob = _one(CARRIER)
    eob["insurance"].append(copy.deepcopy(eob["insurance"][0]))
    _violations_with(eob, "exactly one focal=true (found 2)")


def test_insurance_without_coverage_and_missing_insurance():
    eob = _one(CARRIER)
    del eob["insurance"][0]["coverage"]
    _violations_with(eob, "insurance[0].coverage is required")
    del eob["insurance"]
    _violations_with(eob, "insurance is required")


def test_drop_billable_period_start():
    eob = _one(INPATIENT)
    del eob["billablePeriod"]["start"]
    _violations_with(eob, "billablePeriod.start is required")


@pytest.mark.parametrize("key", ["status", "type", "use", "patient", "created", "insurer", "provider", "outcome"])
def test_required_header_elements(key):
    eob = _one(PHARMACY)
    del eob[key]
    _violations_with(eob, f"{key} is required")


def test_meta_and_uc_identifier():
    eob = _one(CARRIER)
    del eob["meta"]["lastUpdated"]
    eob["identifier"] = [i for i in eob["identifier"] if "type" not in i]
    _violations_with(eob, "meta.lastUpdated is required")
    _violations_with(eob, "C4BBIdentifierType#uc")


def test_item_sequence_and_adjudication_category():
    eob = _one(CARRIER)
    del eob["item"][1]["sequence"]
    del eob["item"][0]["adjudication"][0]["category"]
    del eob["adjudication"][0]["category"]
    _violations_with(eob, "item[1].sequence is required")
    _violations_with(eob, "item[0].adjudication[0].category is required")
    _violations_with(eob, "adjudication[0].category is required")


def test_total_needs_c4bb_category():
    eob = _one(CARRIER)
    for t in eob["total"]:
        t["category"]["coding"] = [c for c in t["category"]["coding"] if "bluebutton" in c["system"]]
    _violations_with(eob, "total must have an entry whose category is from C4BBAdjudication")


def test_care_team_needs_role():
    eob = _one(INPATIENT)
    del eob["careTeam"][1]["role"]
    _violations_with(eob, "careTeam[1].role is required")


def test_empty_values_reported_with_path():
    eob = _one(CARRIER)
    eob["item"][0]["productOrService"]["coding"][0]["code"] = ""
    eob["diagnosis"][0]["type"] = []
    eob["payment"] = {}
    eob["created"] = None
    msgs = check(eob)
    assert "EOB NON-UNIQUE-ID-HERE: item[0].productOrService.coding[0].code must not be an empty string " \
           "(FHIR JSON forbids it)" in msgs
    _violations_with(eob, "diagnosis[0].type must not be an empty array")
    _violations_with(eob, "payment must not be an empty object")
    _violations_with(eob, "created must not be null")


# --- profile-specific rules ----------------------------------------------------------------


def _header_amount(code: str = "paidtoprovider") -> dict:
    return {
        "category": {"coding": [{"system": CS_ADJUDICATION, "code": code}]},
        "amount": {"value": 1.0, "currency": "USD"},
    }


@pytest.mark.parametrize("name", [INPATIENT, OUTPATIENT, "ExplanationOfBenefit-SNF.json"])
def test_institutional_amounts_at_both_levels(name):
    eob = _one(name)
    eob["adjudication"].append(_header_amount())
    _violations_with(eob, "found at both item and header level")


def test_institutional_amounts_moved_to_header_only_is_fine():
    eob = _one(INPATIENT)
    moved = [a for item in eob["item"] for a in item["adjudication"] if "amount" in a]
    for item in eob["item"]:
        item["adjudication"] = [a for a in item["adjudication"] if "amount" not in a]
        if not item["adjudication"]:
            del item["adjudication"]
    eob["adjudication"] += moved
    assert check(eob) == []
    eob["adjudication"] = [a for a in eob["adjudication"] if a not in moved]
    _violations_with(eob, "found at neither level")


def test_institutional_subtype_diagnosis_type_and_benefit_payment_status():
    eob = _one(OUTPATIENT)
    del eob["subType"]
    del eob["diagnosis"][2]["type"]
    eob["adjudication"] = [
        a for a in eob["adjudication"]
        if not any(c["system"] == CS_ADJUDICATION_DISCRIMINATOR for c in a["category"]["coding"])
    ]
    _violations_with(eob, "subType is required (outpatient institutional)")
    _violations_with(eob, "diagnosis[2].type is required")
    _violations_with(eob, "C4BBAdjudicationDiscriminator#benefitpaymentstatus")


def _drop_supporting_info(eob: dict, code: str) -> None:
    eob["supportingInfo"] = [
        s for s in eob["supportingInfo"]
        if not any(c["system"] == CS_SUPPORTING_INFO and c["code"] == code for c in s["category"]["coding"])
    ]


def test_inpatient_needs_admission_period_outpatient_does_not():
    eob = _one(INPATIENT)
    _drop_supporting_info(eob, "admissionperiod")
    _violations_with(eob, "C4BBSupportingInfoType#admissionperiod")
    out = _one(OUTPATIENT)
    _drop_supporting_info(out, "admissionperiod")
    assert check(out) == []


def test_professional_item_serviced_and_location():
    eob = _one(CARRIER)
    item = eob["item"][0]
    item.pop("servicedDate", None)
    item.pop("servicedPeriod", None)
    del item["locationCodeableConcept"]
    del eob["diagnosis"][0]["type"]
    _violations_with(eob, "item[0].serviced[x] is required")
    _violations_with(eob, "item[0].location[x] is required")
    _violations_with(eob, "diagnosis[0].type is required")


@pytest.mark.parametrize("code", ["dayssupply", "dawcode", "refillnum"])
def test_pharmacy_supporting_info(code):
    eob = _one(PHARMACY)
    _drop_supporting_info(eob, code)
    (msg,) = check(eob)
    assert msg.endswith(f"C4BBSupportingInfoType#{code} (pharmacy)")


# --- Patient and Coverage ------------------------------------------------------------------


def test_patient_without_mb_identifier():
    pat = _one("Patient.json")
    for ident in pat["identifier"]:
        ident["type"]["coding"][0]["code"] = "MR"
    assert check(pat) == [
        "Patient 123456789: identifier must include one with type "
        "http://terminology.hl7.org/CodeSystem/v2-0203#MB (the MBI)"
    ]


def test_patient_mb_identifier_needs_mbi_system():
    pat = _one("Patient.json")
    for ident in pat["identifier"]:
        ident["system"] = "https://bluebutton.cms.gov/resources/variables/bene_id"
    _violations_with(pat, "MB identifier must have system http://hl7.org/fhir/sid/us-mbi")


@pytest.mark.parametrize("key", ["status", "subscriberId", "beneficiary", "relationship", "payor"])
def test_coverage_required(key):
    cov = _one("Coverage-PartD.json")
    del cov[key]
    _violations_with(cov, f"{key} is required")


def test_assert_conformant_lists_every_message():
    eob = _one(CARRIER)
    del eob["insurance"][0]["focal"]
    del eob["billablePeriod"]["start"]
    with pytest.raises(AssertionError) as exc:
        assert_conformant(eob)
    text = str(exc.value)
    assert "2 C4BB violation(s)" in text and "focal=true" in text and "billablePeriod.start" in text


# --- fhir.resources R4 validation ----------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FILES)
def test_validate_r4_accepts_fixtures(name):
    for res in _load(name):
        validate_r4(res)


def test_validate_r4_rejects_bogus_status():
    eob = _one(CARRIER)
    eob["id"] = "carrier-123"
    eob["status"] = "bogus"
    with pytest.raises(R4ValidationError, match=r"ExplanationOfBenefit/carrier-123: status 'bogus'"):
        validate_r4(eob)


def test_validate_r4_reports_pydantic_message():
    cov = _one("Coverage-FFS.json")
    del cov["beneficiary"]
    cov["period"]["start"] = "2018-13-45"
    with pytest.raises(R4ValidationError) as exc:
        validate_r4(cov)
    text = str(exc.value)
    assert text.startswith("Coverage/part-A-123456789: ")
    assert "beneficiary" in text and "period" in text
    assert isinstance(exc.value, ValueError)


def test_validate_r4_unknown_type():
    with pytest.raises(R4ValidationError, match="unknown resourceType"):
        validate_r4({"resourceType": "NotAThing", "id": "x"})
