"""Part D event EOB template: golden against BFD v2, FHIR/C4BB validity, hostile random tables."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from fhirhose.columns import Str
from fhirhose.fhir.eob_pharmacy import EOB_PDE, fill_number

from .support import FIXTURES
from .support.fhir import assert_valid, render, render_both
from .support.golden import rif_inst
from .support.golden.facts import Allow, diff
from .support.golden.inst_allowed import ALLOWED
from .support.inst_strategies import claim_tables

# Header allowances shared with the institutional goldens (meta, created, insurer, NPI typing).
# Part D events carry no claim control number (the header allowance for it does not apply).
_SHARED = [a for a in ALLOWED if a.pattern.startswith(("^meta", "^created", "^(insurer", "^identifier", "(careTeam"))
           and "CLM-CNTL-NUM" not in a.pattern]
ALLOWED_PDE = _SHARED + [
    Allow(r"^identifier\[\S*rx_srvc_rfrnc_num\]\.type", "only the event id is typed uc: C4BB allows one unique claim id"),
    Allow(r"^(facility|careTeam\[prescribing\]\.provider)\.identifier\.(type|system)", "ids get their system from the CCLF7 qualifier (01 = NPI); v2 typed them C4BBIdentifierType#npi"),
    Allow(r"^careTeam\[[^]]*\]\.qualification", "provider taxonomy came from BFD's NPPES lookup, not from the event"),
    Allow(r"^supportingInfo\[compoundcode\]\.code\.coding", "compound code as NCPDP + Blue Button codings (idr-out); v2 derived a v3-ActCode"),
    Allow(r"^supportingInfo\[(\S*daw_prod_slctn_cd|dawcode)\]", "DAW code in C4BB's required dawcode slice (idr-out); v2 used the info category"),
    Allow(r"^supportingInfo\[(rxorigincode|brandgenericindicator)\]\.code\.coding\[http://terminology\.hl7\.org/CodeSystem/NCPDP", "NCPDP codings added as idr-out"),
    Allow(r"^supportingInfo\[(refillnum|dayssupply)\]\.valueQuantity\.unit", "units as idr-out"),
    Allow(r"^adjudication\[benefitpaymentstatus\]", "C4BB 2.x requires the header benefit-payment-status slice"),
    Allow(r"^total\[", "totals as idr-out (drug cost and patient pay with Blue Button codings); v2 wrote drugcost without one and a payer-status 'other' of 0 as a total"),
]


def _tables():
    return rif_inst.read_pde(FIXTURES / "rif" / "sample-a-pde.txt")


def test_golden_matches_bfd_v2(core):
    (line,) = render(core, EOB_PDE, _tables()).splitlines()
    ours = assert_valid(line)
    assert ours["id"] == "pde-89"
    theirs = json.loads((FIXTURES / "bfd_v2" / "eobReadPde.json").read_text())
    missing, extra, used = diff(ours, theirs, ALLOWED_PDE)
    assert missing == [], "BFD says, we do not:\n" + "\n".join(missing)
    assert extra == [], "we say, BFD does not:\n" + "\n".join(extra)
    assert set(ALLOWED_PDE) - used == set(), "unused allowances"


def test_golden_identical_across_backends():
    render_both(EOB_PDE, _tables())


def test_fill_number():
    assert fill_number(Str.from_list(["3", "", " 12 ", "x1", "٣"])).to_list() == [3, None, 12, None, None]


_REQUIRED = frozenset(
    {
        "clm_id", "bene_id", "final_action", "clm_line_from_dt", "clm_srvc_prvdr_gnrc_id_num",
        "clm_line_days_suply_qty", "clm_daw_prod_slctn_cd", "fill_num", "clm_line_bene_pmt_amt",
    }
)


@settings(max_examples=15)
@given(claim_tables("pde", required=_REQUIRED, domains={"final_action": st.sampled_from(["F", "N"]), "fill_num": st.integers(0, 99)}))
def test_hostile_tables_validate_in_both_backends(tables):
    lines = render_both(EOB_PDE, tables).splitlines()
    assert len(lines) == tables["pde"].n
    for line in lines:
        assert_valid(line)
