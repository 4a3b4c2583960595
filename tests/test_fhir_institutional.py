"""Institutional EOB templates: goldens against BFD v2, mapping coverage, FHIR/C4BB validity,
both backends byte-identical on hostile random tables."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhirhose.columns import Cat, Table
from fhirhose.fhir import eob_institutional as inst
from fhirhose.fhir import eob_pharmacy
from fhirhose.template import If, IfHas, IfMissing, Map, Template, Val

from .support import FIXTURES
from .support.backends import BACKENDS
from .support.fhir import assert_valid, render, render_both
from .support.golden import rif_inst
from .support.golden.facts import diff
from .support.golden.inst_allowed import ALLOWED, ALLOWED_BY_KIND
from .support.inst_strategies import claim_tables

# (kind, RIF sample, BFD v2 output)
GOLDENS = [
    ("inpatient", "sample-a-inpatient.txt", "eobReadInpatient.json"),
    ("outpatient", "sample-a-outpatient.txt", "eobReadOutpatient.json"),
    ("snf", "sample-a-snf.txt", "eobReadSnf.json"),
    ("hha", "sample-a-hha.txt", "eobReadHha.json"),
    ("hospice", "sample-a-hospice.txt", "eobReadHospice.json"),
]

def _golden(kind: str, rif: str) -> tuple[Template, dict]:
    tables = rif_inst.read_parta(FIXTURES / "rif" / rif)
    rows = inst.institutional_rows(tables["parta"], kind)
    assert rows.tolist() == [0]
    return inst.TEMPLATES_BY_CLM_TYPE[tables["parta"]["clm_type_cd"].label(0)], tables


@pytest.mark.parametrize("kind,rif,bfd", GOLDENS, ids=[g[0] for g in GOLDENS])
def test_golden_matches_bfd_v2(core, kind, rif, bfd):
    template, tables = _golden(kind, rif)
    assert template is getattr(inst, f"EOB_{kind.upper()}")
    (line,) = render(core, template, tables).splitlines()
    ours = assert_valid(line)
    assert ours["id"] == f"{kind}-{tables['parta']['clm_id'].get(0)}"
    theirs = json.loads((FIXTURES / "bfd_v2" / bfd).read_text())
    allowed = ALLOWED + ALLOWED_BY_KIND.get(kind, [])
    missing, extra, _ = diff(ours, theirs, allowed)
    assert missing == [], "BFD says, we do not:\n" + "\n".join(missing)
    assert extra == [], "we say, BFD does not:\n" + "\n".join(extra)


def test_goldens_identical_across_backends():
    for kind, rif, _ in GOLDENS:
        render_both(*_golden(kind, rif))


def test_every_allowance_is_needed():
    # An allowance no golden uses hides nothing and should go.
    used = set()
    for kind, rif, bfd in GOLDENS:
        template, tables = _golden(kind, rif)
        ours = json.loads(render(BACKENDS[0], template, tables))
        theirs = json.loads((FIXTURES / "bfd_v2" / bfd).read_text())
        used |= diff(ours, theirs, ALLOWED + ALLOWED_BY_KIND.get(kind, []))[2]
    unused = [a.reason for a in ALLOWED + [a for v in ALLOWED_BY_KIND.values() for a in v] if a not in used]
    assert unused == []


def test_institutional_rows_select_by_claim_type():
    parta = Table("parta", {"clm_type_cd": Cat.from_list(["60", "40", "20", "30", "10", "50", "", "71", "60 "])})
    got = {k: inst.institutional_rows(parta, k).tolist() for k in inst.KINDS}
    assert got == {"inpatient": [0, 8], "outpatient": [1], "snf": [2, 3], "hha": [4], "hospice": [5]}
    assert inst.institutional_rows(parta, "snf").dtype == np.int64
    with pytest.raises(ValueError, match="carrier"):
        inst.institutional_rows(parta, "carrier")


def test_type_of_bill():
    tob = inst.type_of_bill(Cat.from_list(["1", "", "8", "1"]), Cat.from_list(["1", "2", "3", "1"]), Cat.from_list(["1", "1", "4", "1"]))
    assert tob.to_list() == ["0111", "", "0834", "0111"]
    assert tob.labels[0] == ""


# ---------------------------------------------------------------- mapping coverage


def _columns_referenced(node, out: set) -> set:
    if isinstance(node, (Val, Map, If, IfHas, IfMissing)):
        out.add(node.col.rsplit(".", 1)[-1])
    for child in getattr(node, "children", ()) or ():
        _columns_referenced(child, out)
    if isinstance(node, Template):
        for m in node.members:
            _columns_referenced(m, out)
    return out


# Where the dictionary's CCLF name is not the schema column (misspelt or swapped there).
CCLF_ALIASES = {
    "CCLF1.CLM_OPRTNL_DSPRTNT_AMT": "clm_oprtnl_dsprprtnt_amt",  # dictionary drops "PR"
    "CCLF7.CLM_LINE_RX_FILL_NUM": "fill_num",  # X(09) text; refillnum needs its number
}
_CCLF_FIELD = re.compile(r"^(CCLF[1-4A7])\.\s*(\w+)$")


def test_every_mapped_cclf_field_is_used():
    templates = [inst.EOB_INPATIENT, inst.EOB_OUTPATIENT, inst.EOB_SNF, inst.EOB_HHA, inst.EOB_HOSPICE, eob_pharmacy.EOB_PDE]
    used = set()
    for t in templates:
        _columns_referenced(t, used)
    checked, missing = 0, []
    with open(FIXTURES / "bfd_dictionary_inst_pde.csv", newline="") as f:
        for row in csv.DictReader(f):
            for ref in row["cclfMapping"].split(";"):
                m = _CCLF_FIELD.match(ref.strip())
                if not m:
                    continue  # CCLF5/6/8/9/B fields belong to other resources
                if m.group(1) == "CCLF7" and "PDE" not in row["appliesTo"]:
                    continue
                col = CCLF_ALIASES.get(f"{m.group(1)}.{m.group(2)}", m.group(2).lower())
                checked += 1
                if col not in used:
                    missing.append(f"{row['dd_file']} {ref.strip()} → {col}")
    assert checked >= 60
    assert missing == []


# ---------------------------------------------------------------- hostile random tables

_REQUIRED_PARTA = frozenset(
    {"clm_id", "bene_id", "final_action", "clm_type_cd", "clm_from_dt", "prvdr_oscar_num", "clm_mdcr_instnl_tot_chrg_amt"}
)
_DOMAINS = {
    "final_action": st.sampled_from(["F", "N"]),
    "clm_prod_type_cd": st.sampled_from(["P", "A", "D", "E", "1", "R", "S"]),
    "dgns_prcdr_icd_ind": st.sampled_from(["0", "9", "U"]),
}


@pytest.mark.parametrize("kind", list(inst.KINDS))
@settings(max_examples=8)  # each example validates up to 3 full EOBs with pydantic
@given(data=st.data())
def test_hostile_tables_validate_in_both_backends(kind, data):
    codes = inst.KINDS[kind].clm_type_cds
    tables = data.draw(
        claim_tables(
            "parta",
            required=_REQUIRED_PARTA,
            domains={**_DOMAINS, "clm_type_cd": st.sampled_from(codes)},
            # CCLF1 claims have at least one CCLF2 line, whose paid amount is never blank.
            children_required={"parta_rev": frozenset({"clm_line_num", "clm_line_cvrd_pd_amt"})},
            min_children={"parta_rev": 1},
        )
    )
    rows = inst.institutional_rows(tables["parta"], kind)
    assert len(rows) == tables["parta"].n
    out = render_both(inst.TEMPLATES[kind], tables)
    lines = out.splitlines()
    assert len(lines) == tables["parta"].n
    for line in lines:
        assert_valid(line)
