"""Carrier and DME ExplanationOfBenefit templates: BFD goldens, conformance, hostile tables."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhirhose.fhir import common as c
from fhirhose.fhir.eob_professional import EOB_CARRIER, EOB_DME, REQUIRED_COLUMNS

from .support.fhir import assert_conformant, same_value, write_all
from .support.golden import rif_prof
from .support.golden.compare import uncovered
from .support.strategies import schema_tables, template_columns

FIXTURES = Path(__file__).parent / "fixtures"
RIF = FIXTURES / "rif"
BFD = FIXTURES / "bfd_v2"

_HCT = "https://bluebutton\\.cms\\.gov/resources/variables/line_hct_hgb_rslt_num"
_ANY = "[^\\]]*"

# BFD v2 elements we do not reproduce, each with why: v2 → C4BB 2.x differences (following
# idr-out), RIF-only fields CCLF lacks, and v2 quirks. Patterns are full-match regexes over
# compare.py's paths.
V2_TO_C4BB_EOB = {
    r"meta\.profile\[\]": "C4BB 2.x canonical pinned to |2.2.0 as idr-out does (v2 unversioned)",
    r".*\.display": "display texts come from the CCW codebook, which the store does not carry",
    r"identifier\[https://bluebutton\.cms\.gov/resources/identifier/claim-group\]\.type":
        "C4BB allows one identifier typed uc (the claim id); the claim group keeps its system only",
    r"insurer\.identifier": "insurer references a contained C4BB Organization for CMS (idr-out)",
    r"provider\.identifier\.system": "the billing NPI has system us-npi (C4BB, idr-out), not v2's variable URL",
    rf"careTeam\[{_ANY}\]\.sequence": "careTeam lists line providers first and header ones last; item "
        "references are compared resolved (test_item_references_resolve_like_bfd)",
    rf"item\[{_ANY}\]\.careTeamSequence\[\]": "numbering differs; resolved references are compared",
    rf"item\[{_ANY}\]\.diagnosisSequence\[\]": "line diagnoses follow the header ones without de-duplication; "
        "resolved codes are compared",
    rf"careTeam\[{_ANY}\]\.role\.coding\[http://hl7\.org/fhir/us/carin-bb/CodeSystem/C4BBClaimCareTeamRole\]\.code":
        "C4BB 2.x professional care-team roles: rendering (v2: performing)",
    rf"careTeam\[{_ANY}\]\.qualification\.coding\[http://nucc\.org/provider-taxonomy\]":
        "v2 derives a NUCC taxonomy from the specialty with a BFD lookup table the store lacks",
    rf"careTeam\[referring{_ANY}\]\.qualification": "NUCC taxonomy lookup (as above)",
    r"diagnosis\[\]\.diagnosisCodeableConcept\.coding\[http://hl7\.org/fhir/sid/icd-10\]":
        "C4BB 2.x / idr-out code diagnoses in ICD-10-CM only; v2 repeats them as WHO ICD-10",
    rf"item\[{_ANY}\]\.adjudication\[denialreason\]\.category\.coding\[http://hl7\.org/fhir/us/carin-bb/CodeSystem/"
    r"C4BBAdjudicationDiscriminator\]\.code": "C4BB 2.x has no denialreason (1.x did): reason codes take the "
        "adjustmentreason slice; the reason itself is compared",
    r"(.*\.)?(provider|referral)\.identifier\.type\.coding"
    r"\[http://hl7\.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType\]\.(system|code)":
        "NPIs typed v2-0203#NPI (idr-out); v2's C4BBIdentifierType#npi is not a C4BB 2.x code",
    r"benefitBalance": "v2's benefitBalance amounts are C4BB 2.x totals (idr-out); test_benefit_balance_moved_to_totals",
    r"total\[priorpayerpaid\|https://bluebutton\.cms\.gov/resources/variables/clm_tot_chrg_amt\]\.category"
    r"\.coding\[https://bluebutton\.cms\.gov/resources/codesystem/adjudication\]\.code":
        "v2 labels CARR_CLM_PRMRY_PYR_PD_AMT clm_tot_chrg_amt; we name the variable it is (amount compared)",
}
RIF_ONLY_EOB = {
    r"contained\[\]": "line HCT/HGB Observations from RIF-only LINE_HCT_HGB_* (not in CCLF)",
    rf"supportingInfo\[info\|{_HCT}\]": "HCT/HGB result (RIF-only)",
    rf"item\[{_ANY}\]\.informationSequence": "points at the HCT/HGB supportingInfo (RIF-only)",
    r"careTeam\[referring@K25852\]": "v2's second referring member is the RIF-only UPIN/PIN CARR_CLM_RFRNG_PIN_NUM",
    rf"item\[{_ANY}\]\.extension\[https://bluebutton\.cms\.gov/resources/variables/carr_line_mtus_cnt\]\.valueCoding":
        "v2 writes CARR_LINE_MTUS_CNT twice, once miscoded as a Coding; the Quantity is compared",
}
V2_DME_QUIRKS = {
    r"type\.coding\[http://terminology\.hl7\.org/CodeSystem/claim-type\]\.code":
        "v2 types DME claims institutional; C4BB Professional-NonClinician requires professional",
    r"insurance\[\]\.coverage\.reference": "v2 points DME claims at Part A; DME is Part B",
    r"provider\.(type|identifier)": "v2 takes the provider from the line's supplier NPI (PRVDR_NPI, which the "
        "dictionary maps to careTeam); C4BB's provider is the billing NPI (CCLF6 CLM_BLG_PRVDR_NPI_NUM), "
        "absent from the RIF sample, so ours is data-absent",
    r"diagnosis\[\]\.type\[\]\.coding\[http://hl7\.org/fhir/us/carin-bb/CodeSystem/C4BBClaimDiagnosisType\]\.code":
        "v2 types one DME secondary diagnosis 'other', outside C4BB's professional diagnosis types",
    rf"item\[{_ANY}\]\.extension\[https://bluebutton\.cms\.gov/resources/variables/dmerc_line_mtus_cnt\]"
    r"\.valueQuantity\.unit": "the unit text is the MTUS code's codebook display; the code is compared",
    rf"item\[{_ANY}\]\.adjudication\[paidtoprovider\|https://bluebutton\.cms\.gov/resources/variables/"
    r"rev_cntr_prvdr_pmt_amt\]": "v2 repeats LINE_PRVDR_PMT_AMT under the institutional rev_cntr variable",
    rf"item\[{_ANY}\]\.adjudication\[paidtoprovider\|https://bluebutton\.cms\.gov/resources/variables/"
    r"line_bene_pmt_amt\]": "v2 repeats LINE_DME_PRCHS_PRICE_AMT as paid-to-provider line_bene_pmt_amt; "
        "its line_dme_prchs_price_amt entry is compared",
}

CASES = {
    "carrier": (EOB_CARRIER, lambda: rif_prof.carrier_tables(RIF / "sample-a-bcarrier.txt"), "eobReadCarrier.json", {}),
    "carrier-lines": (
        EOB_CARRIER,
        lambda: rif_prof.carrier_tables(RIF / "sample-a-bcarrier-multiple-lines.txt"),
        "eobReadCarrierWithMultipleLines.json",
        {},
    ),
    "dme": (EOB_DME, lambda: rif_prof.dme_tables(RIF / "sample-a-dme.txt"), "eobReadDme.json", V2_DME_QUIRKS),
}


@functools.cache
def _golden(case):
    """(ours, BFD's, allowances) for a case; computed once (callers only read)."""
    template, tables, bfd_name, extra = CASES[case]
    (ours,) = write_all(template, tables())
    bfd = json.loads((BFD / bfd_name).read_text())
    return ours, bfd, {**V2_TO_C4BB_EOB, **RIF_ONLY_EOB, **extra}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_bfd_field_by_field(case):
    ours, bfd, allowed = _golden(case)
    assert ours["id"] == bfd["id"]
    assert uncovered(bfd, ours, allowed) == []
    assert_conformant(ours)


def test_every_allowance_excuses_a_real_difference():
    """No dead excuses: dropping any allowance makes some golden comparison fail."""
    patterns = {p for case in CASES for p in _golden(case)[2]}
    for pattern in patterns:
        assert any(
            uncovered(bfd, ours, [p for p in allowed if p != pattern])
            for ours, bfd, allowed in map(_golden, CASES)
            if pattern in allowed
        ), f"allowance {pattern!r} excuses nothing"


def _resolved(doc):
    """item sequence → (NPIs of the referenced careTeam members, codes of referenced diagnoses)."""
    team = {m["sequence"]: m["provider"]["identifier"]["value"] for m in doc.get("careTeam", [])}
    dx = {d["sequence"]: d["diagnosisCodeableConcept"]["coding"][0]["code"] for d in doc.get("diagnosis", [])}
    return {
        item["sequence"]: (
            sorted(team[s] for s in item.get("careTeamSequence", [])),
            sorted(dx[s] for s in item.get("diagnosisSequence", [])),
        )
        for item in doc["item"]
    }


# References ours has beyond BFD's: CCLF6's ordering provider is a line field, so the DME
# item also points at its (referring) care-team member.
EXTRA_REFERENCES = {"dme": {1: ["1306849450"]}}


@pytest.mark.parametrize("case", sorted(CASES))
def test_item_references_resolve_like_bfd(case):
    ours, bfd, _ = _golden(case)
    want = _resolved(bfd)
    for seq, npis in EXTRA_REFERENCES.get(case, {}).items():
        want[seq] = (sorted(want[seq][0] + npis), want[seq][1])
    assert _resolved(ours) == want


@pytest.mark.parametrize("case", sorted(CASES))
def test_benefit_balance_moved_to_totals(case):
    ours, bfd, _ = _golden(case)
    totals = {
        coding["code"]: t["amount"]["value"]
        for t in ours["total"]
        for coding in t["category"]["coding"]
        if coding["system"] == c.BB_CS_ADJUDICATION
    }
    moved = {
        f["type"]["coding"][0]["code"]: f["usedMoney"]["value"]
        for b in bfd["benefitBalance"]
        for f in b["financial"]
    }
    assert moved
    for code, value in moved.items():
        assert same_value(totals[code], value), code


def test_header_codes_and_status():
    (doc,) = write_all(EOB_CARRIER, rif_prof.carrier_tables(RIF / "sample-a-bcarrier.txt"))
    assert doc["status"] == "active"
    assert {"system": c.BB_CS_FINAL_ACTION, "code": "FinalAction"} in doc["meta"]["tag"]
    assert [x["code"] for x in doc["type"]["coding"]] == ["professional", "CARRIER", "71"]
    assert doc["insurance"] == [{"focal": True, "coverage": {"reference": "Coverage/part-b-567834"}}]
    received = [s for s in doc["supportingInfo"] if s["category"]["coding"][0]["code"] == "clmrecvddate"]
    assert [s["timingDate"] for s in received] == ["1999-11-06"]
    assert doc["payment"]["amount"] == {"value": 199.99, "currency": "USD"}


# ---- hostile tables: both backends agree byte for byte, every line is valid R4 and C4BB


def _hostile(template, root, line):
    codes, ids = template_columns(template)
    return schema_tables(
        [root, line],
        present=[f"{t}.{col}" for t in (root, line) for col in REQUIRED_COLUMNS[t]],
        codes=codes,
        ids=ids | {f"{root}.clm_id", f"{root}.bene_id"},
        overrides={"clm_line_num": st.integers(1, 2**31 - 1)},
        # CCLF5/6 hold one row per claim line, so a claim has at least one (C4BB: item 1..*).
        min_children=1,
    )


@pytest.mark.slow
@given(_hostile(EOB_CARRIER, "partb", "partb_line"))
def test_hostile_carrier_tables(tables):
    for doc in write_all(EOB_CARRIER, tables):
        assert_conformant(doc)


@pytest.mark.slow
@given(_hostile(EOB_DME, "dme", "dme_line"))
def test_hostile_dme_tables(tables):
    for doc in write_all(EOB_DME, tables):
        assert_conformant(doc)
