"""The C4BB checker: rules derived from the FSH, BFD's idr-out samples, and mutations.

Fixtures in tests/fixtures/idr_out are copies of BFD's public-domain sample outputs
(reference/bfd/idr-out), profiled on C4BB 2.2.0. The rules come from
tools/c4bb_rules.py over tools/carin-bb-fsh (a copy of the C4BB 2.2.0 FSH).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fhirhose import synth
from fhirhose._backend import core
from fhirhose.fhir import _fhirpath, c4bb
from fhirhose.fhir.c4bb import (
    CS_ADJUDICATION,
    CS_ADJUDICATION_DISCRIMINATOR,
    PROFILE_PROFESSIONAL,
    assert_conformant,
    check,
)
from fhirhose.fhir.registry import SOURCES
from fhirhose.fhir.validate import R4ValidationError, validate_r4

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "idr_out"
# BFD's prior-authorization EOB is profiled on Da Vinci PDex, not C4BB (see test below).
NOT_C4BB = {"ExplanationOfBenefit-PriorAuth.json"}
# CMS's professional samples break one C4BB 2.2.0 invariant: a non-vision claim's line has
# productOrService data-absent#not-applicable (EOB-vision-item-productorservice forbids it).
# The checker reports exactly that and nothing else on them.
KNOWN = {
    name: ["EOB-vision-item-productorservice"]
    for name in ("ExplanationOfBenefit-Carrier.json", "ExplanationOfBenefit-DME.json", "ExplanationOfBenefit-MCS.json")
}


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


def _fixed(name: str) -> dict:
    """``_one(name)`` with the known sample defect repaired, so it checks clean."""
    res = _one(name)
    if name in KNOWN:
        for item in res["item"]:
            for cd in item["productOrService"]["coding"]:
                if cd["code"] == "not-applicable":
                    cd["code"] = "unknown"
    return res


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


# --- the rules are generated, complete and current ------------------------------------------


def _generator():
    spec = importlib.util.spec_from_file_location("c4bb_rules", ROOT / "tools" / "c4bb_rules.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["c4bb_rules"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_generator_reproduces_committed_rules():
    gen = _generator()
    packaged = (Path(c4bb.__file__).parent / "data" / "c4bb_rules.json").read_text(encoding="utf-8")
    assert gen.render(gen.generate()) == packaged, "run: python tools/c4bb_rules.py"
    assert gen.main(["--check"]) == 0


def test_every_emitted_profile_has_rules():
    profiles = c4bb.rules()["profiles"]
    assert set(profiles) == {
        c4bb.PROFILE_PATIENT, c4bb.PROFILE_COVERAGE, c4bb.PROFILE_INPATIENT,
        c4bb.PROFILE_OUTPATIENT, c4bb.PROFILE_PROFESSIONAL, c4bb.PROFILE_PHARMACY,
    }
    prof = profiles[PROFILE_PROFESSIONAL]
    # The slice the hand-written rules missed, with its place in the FSH.
    assert prof["card"]["item.adjudication[benefitpaymentstatus]"]["min"] == 1
    assert prof["card"]["item.adjudication[benefitpaymentstatus]"]["from"].startswith("EOBProfessionalProfile.fsh:")
    assert prof["binding"]["item.adjudication[benefitpaymentstatus].reason"]["valueSet"].endswith(
        "/ValueSet/C4BBPayerBenefitPaymentStatus"
    )
    # Parent chain flattened: base-profile rules are in every EOB profile.
    assert prof["chain"][:2] == ["ExplanationOfBenefit", "C4BB-ExplanationOfBenefit"]
    for url in (c4bb.PROFILE_INPATIENT, c4bb.PROFILE_OUTPATIENT, c4bb.PROFILE_PHARMACY):
        assert profiles[url]["card"]["identifier[uniqueclaimid]"] == prof["card"]["identifier[uniqueclaimid]"]
    vs = c4bb.rules()["valueSets"][prof["binding"]["item.adjudication[benefitpaymentstatus].reason"]["valueSet"]]
    assert sorted(c for _, c in vs["codes"]) == ["innetwork", "other", "outofnetwork"]


def test_generator_stops_on_fsh_it_cannot_read(tmp_path):
    gen = _generator()
    bad = tmp_path / "Bad.fsh"
    bad.write_text('RuleSet: Params(a, b)\n* status = {a}\n', encoding="utf-8")
    with pytest.raises(gen.FshError, match=r"Bad\.fsh:1: parameterized RuleSet"):
        gen.load(tmp_path)
    bad.write_text('Profile: P\nParent: ExplanationOfBenefit\nId: P\n\n* status frobnicate 3\n', encoding="utf-8")
    with pytest.raises(gen.FshError, match=r"Bad\.fsh:5: cannot read rule"):
        gen.profile_rules(gen.load(tmp_path), "P")


def test_fsh_comments_and_urls():
    gen = _generator()
    text = 'Alias: $X = http://example.org/a|1.0 // trailing\n/* block\n* gone 1..1 */\n* kept "a // b"\n'
    stripped = gen._strip_comments(text)
    assert "http://example.org/a|1.0" in stripped and "trailing" not in stripped and "gone" not in stripped
    assert '"a // b"' in stripped and stripped.count("\n") == text.count("\n")


# --- samples ------------------------------------------------------------------------------


def test_fixtures_present():
    assert len(C4BB_FILES) >= 15


@pytest.mark.parametrize("name", C4BB_FILES)
def test_idr_out_samples_conform(name):
    for res in _load(name):
        msgs = check(res)
        assert len(msgs) == len(KNOWN.get(name, [])), msgs
        for key, msg in zip(KNOWN.get(name, []), msgs, strict=True):
            assert key in msg
    assert check(_fixed(name)) == []


def test_prior_auth_is_not_c4bb():
    # PDex prior-authorization EOB: no C4BB profile in meta.profile.
    msgs = check(_one("ExplanationOfBenefit-PriorAuth.json"))
    assert any("meta.profile names no C4BB ExplanationOfBenefit profile" in m for m in msgs)


# --- mutations: every required element and slice, removed in turn, is named -------------------


def _remove(profile, resource: dict, path: str) -> int:
    """Remove every instance of rule ``path`` under the first parent that has one; how many."""
    steps = c4bb._steps(path)
    for loc, parent in profile.nodes(resource, steps[:-1]):
        found = profile.children(parent, steps, len(steps) - 1, loc)
        if not found or not isinstance(parent, dict):
            continue
        name, slice_name, choice = steps[-1]
        keys = [k for k in list(parent) if (c4bb._is_choice_key(k.lstrip("_"), name) if choice else k.lstrip("_") == name)]
        for k in keys:
            if slice_name is None:
                del parent[k]
                continue
            key = c4bb._sliced_key(steps, len(steps) - 1)
            kept = [x for x in parent[k] if not profile.in_slice(key, slice_name, x)]
            if kept:
                parent[k] = kept
            else:
                del parent[k]
        return len(found)
    return 0


def _mutation_cases() -> list[tuple[str, str, str]]:
    cases = []
    for name in C4BB_FILES:
        res = _fixed(name)
        for profile in c4bb._profiles_for(res)[0]:
            for path in c4bb.required_rules(profile.url):
                if _remove(profile, copy.deepcopy(res), path):
                    cases.append((name, profile.url, path))
    return cases


MUTATIONS = _mutation_cases()


def test_mutations_cover_every_profile_and_the_defect():
    profiles = {url for _, url, _ in MUTATIONS}
    assert profiles == set(c4bb.rules()["profiles"])
    assert (CARRIER, PROFILE_PROFESSIONAL, "item.adjudication[benefitpaymentstatus]") in MUTATIONS
    assert len(MUTATIONS) >= 150


@pytest.mark.parametrize("name,profile_url,path", MUTATIONS)
def test_removing_a_required_element_is_named(name, profile_url, path):
    res = _fixed(name)
    assert check(res) == []
    _remove(c4bb._profile(profile_url), res, path)
    rule = c4bb.rules()["profiles"][profile_url]["card"][path]
    _violations_with(res, f"[{path} @ {rule['from']}]")


@pytest.fixture(scope="module")
def template_outputs() -> list[tuple[str, dict]]:
    """One resource from each of our templates (Patient, Coverage A-D, eight EOB kinds),
    written from a small synthetic store; the richest of the first 60 rows of each."""
    data = synth.generate(300, seed=5)
    out = []
    for src in SOURCES:
        table = data.tables[src.table]
        rows = np.arange(table.n, dtype=np.int64)
        if src.select is not None:
            rows = src.select(table, rows)
        buf = core.OutBuffer()
        core.Writer(src.template.bind(data.tables)).write(rows[:60], buf)
        docs = [json.loads(line) for line in buf.getvalue().splitlines()]
        out.append((src.template.name, max(docs, key=lambda d: len(json.dumps(d)))))
    return out


def test_removing_a_required_element_from_our_output_is_named(template_outputs):
    """The same mutation over what our templates write: every required element or slice a
    resource has, removed in turn, is named by its rule (so the checker can fail on our output)."""
    tried, missed = 0, []
    profiles_seen = set()
    for name, res in template_outputs:
        assert check(res) == [], (name, check(res))
        for profile in c4bb._profiles_for(res)[0]:
            for path in c4bb.required_rules(profile.url):
                mutated = copy.deepcopy(res)
                if not _remove(profile, mutated, path):
                    continue
                tried += 1
                profiles_seen.add(profile.url)
                rule = c4bb.rules()["profiles"][profile.url]["card"][path]
                if not any(f"[{path} @ {rule['from']}]" in m for m in check(mutated)):
                    missed.append((name, path))
    assert missed == []
    assert profiles_seen == set(c4bb.rules()["profiles"]) and tried >= 300, (tried, profiles_seen)


def test_missing_benefit_payment_status_on_a_line():
    # Hand-made (no checker helpers): drop the slice from the carrier sample's second line.
    eob = _fixed(CARRIER)
    eob["item"][1]["adjudication"] = [
        a for a in eob["item"][1]["adjudication"]
        if a["category"]["coding"][0] != {
            "system": CS_ADJUDICATION_DISCRIMINATOR, "code": "benefitpaymentstatus", "display": "Benefit Payment Status"
        }
    ]
    (msg,) = check(eob)
    assert msg.startswith(
        "EOB NON-UNIQUE-ID-HERE: item[1].adjudication[benefitpaymentstatus]: 0 found, 1..1 required "
        "[item.adjudication[benefitpaymentstatus] @ EOBProfessionalProfile.fsh:"
    )


# --- required bindings, fixed values, types, references --------------------------------------


def _binding_cases() -> list[tuple[str, str, str]]:
    """(fixture, profile, binding path) for required, expandable bindings present in a sample,
    other than on a slice discriminator (changing that moves the element out of its slice)."""
    cases = []
    data = c4bb.rules()
    for name in C4BB_FILES:
        res = _fixed(name)
        for profile in c4bb._profiles_for(res)[0]:
            pdata = data["profiles"][profile.url]
            discriminators = {
                f"{key}[{s}].{d['path']}"
                for key, names in pdata["slices"].items() for s in names
                for d in pdata["slicing"][key]["discriminator"]
            }
            for path, b in pdata["binding"].items():
                usable = b["strength"] == "required" and b["valueSet"] in data["valueSets"]
                if usable and path not in discriminators and profile.nodes(res, c4bb._steps(path)):
                    cases.append((name, profile.url, path))
    return cases


BINDINGS = _binding_cases()


def test_binding_cases_span_profiles():
    # Patient's bindings are extensible and Coverage's one required binding is to an HL7
    # value set the C4BB FSH does not define, so the EOB profiles carry these.
    assert {p for _, p, _ in BINDINGS} == {
        c4bb.PROFILE_INPATIENT, c4bb.PROFILE_OUTPATIENT, c4bb.PROFILE_PROFESSIONAL, c4bb.PROFILE_PHARMACY
    }
    assert len(BINDINGS) >= 20


@pytest.mark.parametrize("name,profile_url,path", BINDINGS)
def test_wrong_code_in_required_binding_is_named(name, profile_url, path):
    res = _fixed(name)
    profile = c4bb._profile(profile_url)
    steps = c4bb._steps(path)
    _, parent = profile.nodes(res, steps[:-1])[0]
    key = steps[-1][0]
    value = parent[key]
    for node in value if isinstance(value, list) else [value]:
        if isinstance(node, dict):
            for cd in node.get("coding", [node]):
                cd["code"] = "not-a-c4bb-code"
    if isinstance(value, str):
        parent[key] = "not-a-c4bb-code"
    rule = c4bb.rules()["profiles"][profile_url]["binding"][path]
    vs_name = c4bb.rules()["valueSets"][rule["valueSet"]]["name"]
    msgs = _violations_with(res, f"is not in required value set {vs_name} [{path} @ {rule['from']}]")
    assert "not-a-c4bb-code" in msgs[0]


def test_wrong_benefit_payment_status_reason():
    eob = _fixed(CARRIER)
    eob["item"][0]["adjudication"][-1]["reason"]["coding"][0]["code"] = "paid"
    (msg,) = check(eob)
    assert "item[0].adjudication[8].reason: http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBPayerAdjudicationStatus#paid " \
           "is not in required value set C4BBPayerBenefitPaymentStatus" in msg


def test_code_not_in_a_c4bb_code_system():
    # C4BB 1.x's denialreason and npi are gone from the 2.2.0 code systems (all `complete`).
    eob = _fixed(CARRIER)
    eob["item"][0]["adjudication"].append({
        "category": {"coding": [{"system": CS_ADJUDICATION_DISCRIMINATOR, "code": "denialreason"}]},
        "reason": {"coding": [{"system": "https://example.org/x", "code": "A"}]},
    })
    eob["careTeam"][0]["provider"]["identifier"]["type"]["coding"].append(
        {"system": c4bb.CS_IDENTIFIER_TYPE, "code": "npi"}
    )
    msgs = check(eob)
    assert any(m.endswith("item[0].adjudication[9].category.coding[0]: code 'denialreason' is not in code system "
                          "C4BBAdjudicationDiscriminator [CodeSystems.fsh:173]") for m in msgs), msgs
    _violations_with(eob, "careTeam[0].provider.identifier.type.coding[1]: code 'npi' is not in code system C4BBIdentifierType")


def test_fixed_values():
    eob = _fixed(INPATIENT)
    eob["subType"]["coding"][0]["code"] = "outpatient"
    eob["use"] = "preauthorization"
    _violations_with(eob, "subType: must be http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBInstitutionalClaimSubType#inpatient")
    _violations_with(eob, "use: must be claim [use @ EOBBaseProfile.fsh:")


def test_choice_type_and_reference_targets():
    eob = _fixed(CARRIER)
    item = eob["item"][0]
    item["locationAddress"] = {"state": "MD"}
    del item["locationCodeableConcept"]
    eob["insurer"] = {"reference": "Patient/123"}
    eob["insurance"][0]["coverage"] = {"reference": "#insurer-org"}
    _violations_with(eob, "item[0].locationAddress: type not allowed; location[x] only CodeableConcept")
    _violations_with(eob, "insurer: refers to a Patient; allowed: Organization")
    _violations_with(eob, "insurance[0].coverage: refers to a Organization; allowed: Coverage")


def test_primitive_extension_counts_as_present():
    eob = _fixed(OUTPATIENT)
    date = eob["item"][0].pop("servicedDate")
    _violations_with(eob, "item[0].serviced[x]: 0 found, 1..1 required")
    eob["item"][0]["_servicedDate"] = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                                      "valueCode": "unknown"}]}
    assert check(eob) == []
    eob["item"][0]["servicedDate"] = date
    assert check(eob) == []


# --- invariants -----------------------------------------------------------------------------


def _header_amount(code: str = "paidtoprovider") -> dict:
    return {
        "category": {"coding": [{"system": CS_ADJUDICATION, "code": code}]},
        "amount": {"value": 1.0, "currency": "USD"},
    }


@pytest.mark.parametrize("name", [INPATIENT, OUTPATIENT, "ExplanationOfBenefit-SNF.json"])
def test_institutional_amounts_at_both_levels(name):
    eob = _fixed(name)
    eob["adjudication"].append(_header_amount())
    _violations_with(eob, "<resource>: violates EOB-institutional-item-or-header-adjudication")


def test_institutional_amounts_moved_to_header_only_is_fine():
    eob = _fixed(INPATIENT)
    moved = [a for item in eob["item"] for a in item["adjudication"] if "amount" in a]
    for item in eob["item"]:
        item["adjudication"] = [a for a in item["adjudication"] if "amount" not in a]
        if not item["adjudication"]:
            del item["adjudication"]
    eob["adjudication"] += moved
    assert check(eob) == []
    eob["adjudication"] = [a for a in eob["adjudication"] if a not in moved]
    _violations_with(eob, "violates EOB-institutional-item-or-header-adjudication")


def test_item_adjudication_needs_an_amount_type():
    eob = _fixed(INPATIENT)
    eob["item"][0]["adjudication"] = [
        {"category": {"coding": [{"system": CS_ADJUDICATION_DISCRIMINATOR, "code": "allowedunits"}]}, "value": 1}
    ]
    _violations_with(eob, "item[0]: violates adjudication-has-amount-type-slice")


def test_payee_other_requires_party():
    eob = _fixed(PHARMACY)
    eob["payee"] = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/payeetype", "code": "other"}]}}
    _violations_with(eob, "payee: violates EOB-payee-other-type-requires-party")
    eob["payee"]["party"] = {"reference": "#insurer-org"}
    assert check(eob) == []


def test_vision_invariant_on_the_cms_sample():
    (msg,) = check(_one(CARRIER))
    assert msg == (
        "EOB NON-UNIQUE-ID-HERE: <resource>: violates EOB-vision-item-productorservice (Vision EOB: Item "
        "productOrService not required in item.productOrService if and only if type is vision.) "
        f"[. @ {c4bb.rules()['profiles'][PROFILE_PROFESSIONAL]['obeys'][4]['from']}]"
    )


def test_fhirpath_subset():
    res = {"resourceType": "X", "a": [{"b": 1}, {"b": 2}], "contained": [{"resourceType": "Organization", "id": "o"}],
           "r": {"reference": "#o"}, "s": {"reference": "Practitioner/7"}, "t": {"identifier": {"value": "1"}}}
    def holds(e):
        return _fhirpath.holds(e, res, res, lambda node, url: None)
    assert holds("a.where(b = 1).count() < 2") is True
    assert holds("a.select(b = 1).count() = 2") is True  # select keeps the false too
    assert holds("a.where(b > 1).exists() and a.b.count() = 2") is True
    assert holds("a.all(b = 1)") is False
    assert holds("(a.b in (1 | 3)) implies a.exists().not()") is False
    assert holds("r.resolve() is Organization and s.resolve() is Practitioner") is True
    assert holds("t.resolve() is Organization") is None  # an identifier-only reference: unknown
    assert holds("a.memberOf('http://x')") is None  # a value set the rules do not expand
    assert holds("a.b.subsetOf(%context.a.b)") is True
    assert holds("a.frobnicate()") is None


# --- empty values, messages -------------------------------------------------------------------


def test_empty_values_reported_with_path():
    eob = _fixed(CARRIER)
    eob["item"][0]["productOrService"]["coding"][0]["code"] = ""
    eob["diagnosis"][0]["type"] = []
    eob["payment"] = {}
    eob["created"] = None
    msgs = check(eob)
    assert "EOB NON-UNIQUE-ID-HERE: item[0].productOrService.coding[0].code must not be an empty string " \
           "(FHIR JSON forbids it)" in msgs
    _violations_with(eob, "diagnosis[0].type must not be an empty array")
    _violations_with(eob, "diagnosis[0].type: 0 found, 1..1 required")
    _violations_with(eob, "payment must not be an empty object")
    _violations_with(eob, "created must not be null")


def test_assert_conformant_lists_every_message():
    eob = _fixed(CARRIER)
    del eob["insurance"][0]["focal"]
    del eob["billablePeriod"]["start"]
    with pytest.raises(AssertionError) as exc:
        assert_conformant(eob)
    text = str(exc.value)
    assert "2 C4BB violation(s)" in text and "insurance[0].focal: 0 found" in text and "billablePeriod.start" in text


def test_patient_member_id_slice():
    pat = _one("Patient.json")
    for ident in pat["identifier"]:
        ident["type"]["coding"][0]["code"] = "MR"
    where = c4bb.rules()["profiles"][c4bb.PROFILE_PATIENT]["card"]["identifier[memberid]"]["from"]
    assert check(pat) == [f"Patient 123456789: identifier[memberid]: 0 found, 1..* required [identifier[memberid] @ {where}]"]


@pytest.mark.parametrize("key", ["subscriberId", "relationship", "payor"])
def test_coverage_required(key):
    cov = _one("Coverage-PartD.json")
    del cov[key]
    _violations_with(cov, f"{key}: 0 found, 1..")


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
