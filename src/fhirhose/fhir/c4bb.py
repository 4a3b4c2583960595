"""CARIN Blue Button 2.x (C4BB) required-element checks for exported resources.

A test helper, not a validator: it checks the C4BB elements the export templates
must fill (see DESIGN.md, "C4BB required elements"), names the rule and the path
of every miss, and stays pure standard library so it can run over every resource
a test writes. Terminology membership beyond the code systems named here, and
FHIR datatype rules, are left to `fhirhose.fhir.validate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = [
    "check",
    "assert_conformant",
    "PROFILE_INPATIENT",
    "PROFILE_OUTPATIENT",
    "PROFILE_PROFESSIONAL",
    "PROFILE_PHARMACY",
]

_C4BB = "http://hl7.org/fhir/us/carin-bb"
PROFILE_INPATIENT = f"{_C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Inpatient-Institutional"
PROFILE_OUTPATIENT = f"{_C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Outpatient-Institutional"
PROFILE_PROFESSIONAL = f"{_C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Professional-NonClinician"
PROFILE_PHARMACY = f"{_C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Pharmacy"
_EOB_PROFILES = (PROFILE_INPATIENT, PROFILE_OUTPATIENT, PROFILE_PROFESSIONAL, PROFILE_PHARMACY)

CS_IDENTIFIER_TYPE = f"{_C4BB}/CodeSystem/C4BBIdentifierType"
CS_ADJUDICATION = f"{_C4BB}/CodeSystem/C4BBAdjudication"
CS_ADJUDICATION_DISCRIMINATOR = f"{_C4BB}/CodeSystem/C4BBAdjudicationDiscriminator"
CS_SUPPORTING_INFO = f"{_C4BB}/CodeSystem/C4BBSupportingInfoType"
CS_HL7_ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
CS_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
NS_MBI = "http://hl7.org/fhir/sid/us-mbi"

# The C4BBAdjudication value set = HL7 adjudication codes + C4BBAdjudication codes;
# it binds the `adjudicationamounttype` slices of adjudication, item.adjudication and total.
_AMOUNT_TYPE_SYSTEMS = frozenset({CS_HL7_ADJUDICATION, CS_ADJUDICATION})
_TOTAL_SYSTEMS = _AMOUNT_TYPE_SYSTEMS | {CS_ADJUDICATION_DISCRIMINATOR}

_EOB_REQUIRED = ("status", "type", "use", "patient", "created", "insurer", "provider", "outcome")
_COVERAGE_REQUIRED = ("status", "subscriberId", "beneficiary", "relationship", "payor")


def check(resource: dict) -> list[str]:
    """Return the C4BB / FHIR-JSON violations of one resource; an empty list means conformant.

    Dispatches on ``resourceType`` (ExplanationOfBenefit, Patient, Coverage; any other type
    gets only the empty-value check) and, for an ExplanationOfBenefit, on the C4BB profile
    in ``meta.profile`` (version suffixes such as ``|2.2.0`` are ignored). Every message
    starts with the resource label, e.g. ``"EOB carrier-123: insurance must have exactly
    one focal=true (found 0)"``.
    """
    rtype = resource.get("resourceType")
    label = _label(resource)
    out = [f"{label}: {path} must not be {what} (FHIR JSON forbids it)" for path, what in _empties(resource, "")]
    if rtype == "ExplanationOfBenefit":
        out += (f"{label}: {m}" for m in _check_eob(resource))
    elif rtype == "Patient":
        out += (f"{label}: {m}" for m in _check_patient(resource))
    elif rtype == "Coverage":
        out += (f"{label}: {m}" for m in _check_coverage(resource))
    return out


def assert_conformant(resource: dict) -> None:
    """Raise AssertionError listing every violation `check` finds in ``resource``."""
    problems = check(resource)
    if problems:
        raise AssertionError(f"{len(problems)} C4BB violation(s):\n" + "\n".join(problems))


# --- helpers -------------------------------------------------------------------------------


def _label(r: dict) -> str:
    rtype = r.get("resourceType") or "resource"
    short = "EOB" if rtype == "ExplanationOfBenefit" else rtype
    # BFD's sample EOBs carry no id, so fall back to the unique claim id to keep messages useful.
    rid = r.get("id")
    if not rid and isinstance(r.get("identifier"), list):
        rid = next((i.get("value") for i in r["identifier"] if isinstance(i, dict) and i.get("value")), None)
    return f"{short} {rid or '?'}"


def _empties(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Yield (path, kind) for every null, empty string, empty array or empty object."""
    if node is None:
        yield path or "<root>", "null"
    elif isinstance(node, str):
        if node == "":
            yield path, "an empty string"
    elif isinstance(node, dict):
        if not node:
            yield path or "<root>", "an empty object"
        for k, v in node.items():
            yield from _empties(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        if not node:
            yield path, "an empty array"
        for i, v in enumerate(node):
            yield from _empties(v, f"{path}[{i}]")


def _present(v: Any) -> bool:
    # Empty values are reported by _empties; here they simply do not count as present.
    return v is not None and v != "" and v != [] and v != {}


def _list(r: dict, key: str) -> list:
    v = r.get(key)
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _has_coding(cc: Any, system: str | frozenset[str], code: str | None = None) -> bool:
    """True if CodeableConcept ``cc`` has a coding from ``system`` (and ``code``, if given)."""
    if not isinstance(cc, dict):
        return False
    systems = {system} if isinstance(system, str) else system
    return any(
        isinstance(c, dict) and c.get("system") in systems and (code is None or c.get("code") == code)
        for c in cc.get("coding") or ()
    )


def _profiles(r: dict) -> set[str]:
    meta = r.get("meta") if isinstance(r.get("meta"), dict) else {}
    return {p.split("|", 1)[0] for p in meta.get("profile") or () if isinstance(p, str)}


def _has_supporting_info(eob: dict, code: str) -> bool:
    return any(_has_coding(s.get("category"), CS_SUPPORTING_INFO, code) for s in _list(eob, "supportingInfo"))


def _item_adjudications(eob: dict) -> Iterator[tuple[str, dict]]:
    """Yield (path, adjudication) for item, item.detail and item.detail.subDetail levels."""
    for i, item in enumerate(_list(eob, "item")):
        for j, a in enumerate(_list(item, "adjudication")):
            yield f"item[{i}].adjudication[{j}]", a
        for d, det in enumerate(_list(item, "detail")):
            for j, a in enumerate(_list(det, "adjudication")):
                yield f"item[{i}].detail[{d}].adjudication[{j}]", a
            for s, sub in enumerate(_list(det, "subDetail")):
                for j, a in enumerate(_list(sub, "adjudication")):
                    yield f"item[{i}].detail[{d}].subDetail[{s}].adjudication[{j}]", a


def _is_amount_type(adj: dict) -> bool:
    """Adjudication in the C4BB `adjudicationamounttype` slice: C4BBAdjudication category + amount."""
    return _present(adj.get("amount")) and _has_coding(adj.get("category"), _AMOUNT_TYPE_SYSTEMS)


# --- resource rules ------------------------------------------------------------------------


def _check_meta(r: dict, need_profile: bool) -> Iterator[str]:
    meta = r.get("meta") if isinstance(r.get("meta"), dict) else {}
    if not _present(meta.get("lastUpdated")):
        yield "meta.lastUpdated is required"
    if need_profile and not _present(meta.get("profile")):
        yield "meta.profile is required"


def _check_eob(eob: dict) -> Iterator[str]:
    yield from _check_meta(eob, need_profile=True)
    profiles = _profiles(eob)
    if not profiles.intersection(_EOB_PROFILES):
        yield "meta.profile names no C4BB ExplanationOfBenefit profile (Inpatient-Institutional, " \
              "Outpatient-Institutional, Professional-NonClinician, Pharmacy)"

    if not any(_has_coding(i.get("type"), CS_IDENTIFIER_TYPE, "uc") for i in _list(eob, "identifier")):
        yield f"identifier must include one with type {CS_IDENTIFIER_TYPE}#uc (unique claim id)"
    for key in _EOB_REQUIRED:
        if not _present(eob.get(key)):
            yield f"{key} is required"
    bp = eob.get("billablePeriod")
    if not (isinstance(bp, dict) and _present(bp.get("start"))):
        yield "billablePeriod.start is required"

    insurance = _list(eob, "insurance")
    if not insurance:
        yield "insurance is required (1..*)"
    else:
        focal = sum(1 for ins in insurance if ins.get("focal") is True)
        if focal != 1:
            yield f"insurance must have exactly one focal=true (found {focal})"
        for n, ins in enumerate(insurance):
            if not _present(ins.get("coverage")):
                yield f"insurance[{n}].coverage is required"

    for n, item in enumerate(_list(eob, "item")):
        if not _present(item.get("sequence")):
            yield f"item[{n}].sequence is required"
    header = [(f"adjudication[{n}]", a) for n, a in enumerate(_list(eob, "adjudication"))]
    for path, adj in header + list(_item_adjudications(eob)):
        if not _present(adj.get("category")):
            yield f"{path}.category is required"

    totals = _list(eob, "total")
    if not totals:
        yield "total is required (1..*)"
    elif not any(_has_coding(t.get("category"), _TOTAL_SYSTEMS) for t in totals):
        yield "total must have an entry whose category is from C4BBAdjudication, " \
              "terminology.hl7.org adjudication or C4BBAdjudicationDiscriminator"
    for n, t in enumerate(totals):
        # total.category and total.amount are 1..1 in base R4.
        for key in ("category", "amount"):
            if not _present(t.get(key)):
                yield f"total[{n}].{key} is required"

    for n, ct in enumerate(_list(eob, "careTeam")):
        for key in ("provider", "role"):
            if not _present(ct.get(key)):
                yield f"careTeam[{n}].{key} is required"

    if PROFILE_INPATIENT in profiles or PROFILE_OUTPATIENT in profiles:
        yield from _check_institutional(eob, inpatient=PROFILE_INPATIENT in profiles)
    if PROFILE_PROFESSIONAL in profiles:
        yield from _check_professional(eob)
    if PROFILE_PHARMACY in profiles:
        yield from _check_pharmacy(eob)


def _check_diagnosis_type(eob: dict) -> Iterator[str]:
    for n, dx in enumerate(_list(eob, "diagnosis")):
        if not _present(dx.get("type")):
            yield f"diagnosis[{n}].type is required"


def _check_institutional(eob: dict, inpatient: bool) -> Iterator[str]:
    kind = "inpatient" if inpatient else "outpatient"
    if not _present(eob.get("subType")):
        yield f"subType is required ({kind} institutional)"
    yield from _check_diagnosis_type(eob)
    if inpatient and not _has_supporting_info(eob, "admissionperiod"):
        yield f"supportingInfo must include category {CS_SUPPORTING_INFO}#admissionperiod"
    if not any(
        _has_coding(a.get("category"), CS_ADJUDICATION_DISCRIMINATOR, "benefitpaymentstatus")
        for a in _list(eob, "adjudication")
    ):
        yield f"adjudication must include category {CS_ADJUDICATION_DISCRIMINATOR}#benefitpaymentstatus"
    # C4BB invariant EOB-institutional-item-or-header-adjudication: the adjudicationamounttype
    # slice (C4BBAdjudication category with an amount) sits at item or header level, not both
    # and not neither. Header amounts coded only in a payer's own system (BFD's
    # bluebutton.cms.gov/.../Adjudication) are outside the slice and do not count.
    at_header = any(_is_amount_type(a) for a in _list(eob, "adjudication"))
    at_item = any(_is_amount_type(a) for item in _list(eob, "item") for a in _list(item, "adjudication"))
    if at_header == at_item:
        where = "both item and header level" if at_header else "neither level"
        yield f"adjudication amounts (C4BBAdjudication category + amount) must be at item or header " \
              f"level, not both (found at {where})"


def _check_professional(eob: dict) -> Iterator[str]:
    yield from _check_diagnosis_type(eob)
    for n, item in enumerate(_list(eob, "item")):
        if not (_present(item.get("servicedDate")) or _present(item.get("servicedPeriod"))):
            yield f"item[{n}].serviced[x] is required (servicedDate or servicedPeriod)"
        if not any(_present(item.get(k)) for k in ("locationCodeableConcept", "locationAddress", "locationReference")):
            yield f"item[{n}].location[x] is required"


def _check_pharmacy(eob: dict) -> Iterator[str]:
    for code in ("dayssupply", "dawcode", "refillnum"):
        if not _has_supporting_info(eob, code):
            yield f"supportingInfo must include category {CS_SUPPORTING_INFO}#{code} (pharmacy)"


def _check_patient(p: dict) -> Iterator[str]:
    yield from _check_meta(p, need_profile=False)
    mb = [i for i in _list(p, "identifier") if _has_coding(i.get("type"), CS_V2_0203, "MB")]
    if not mb:
        yield f"identifier must include one with type {CS_V2_0203}#MB (the MBI)"
    elif not any(i.get("system") == NS_MBI and _present(i.get("value")) for i in mb):
        yield f"MB identifier must have system {NS_MBI} and a value"


def _check_coverage(c: dict) -> Iterator[str]:
    yield from _check_meta(c, need_profile=False)
    for key in _COVERAGE_REQUIRED:
        if not _present(c.get(key)):
            yield f"{key} is required"
