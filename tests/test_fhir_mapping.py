"""Mapping coverage: every CCLF5/6/8/9 field the BFD data dictionary maps reaches our output.

For each dictionary row (copied into fixtures/bfd_dictionary_cclf5689.csv) that maps a field
of CCLF5 or CCLF6 (for carrier / DME claims) or CCLF8 / CCLF9 (Patient, Coverage), the
template for that file must (1) read the field's column and (2) write a unique sentinel
value of it at the dictionary's element path. Exceptions are listed with their reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from fhirhose.fhir.coverage import COVERAGES
from fhirhose.fhir.eob_professional import EOB_CARRIER, EOB_DME
from fhirhose.fhir.patient import PATIENT
from fhirhose.store import schema

from .support.fhir import same_value, values_at, write_all

DICTIONARY = Path(__file__).parent / "fixtures" / "bfd_dictionary_cclf5689.csv"

# File → (templates, their tables) for the claim types / resources a row can apply to.
_PROFESSIONAL = {"CCLF5": ("Carrier", EOB_CARRIER), "CCLF6": ("DME", EOB_DME)}
_PARTS = {"Part-A": "a", "Part-B": "b", "Part-C": "c", "Part-D": "d"}
_TABLES = {
    EOB_CARRIER.name: ("partb", "partb_line"),
    EOB_DME.name: ("dme", "dme_line"),
    PATIENT.name: ("bene", "bene_mbi"),
    **{t.name: ("bene",) for t in COVERAGES.values()},
}
# Field names that differ from the schema column (same data).
_ALIASES = {
    "CCLF5.CLM_DGNS_CD": "clm_dgns_1_cd",
    "CCLF6.CLM_LINE_PRMRY_PYR_CD": "clm_prmry_pyr_cd",
    "CCLF9.PRVS_NUM": "prvs_num",
}

_PART_OF_FIELD = {"CCLF8.BENE_PART_A_ENRLMT_BGN_DT": "Part-A", "CCLF8.BENE_PART_B_ENRLMT_BGN_DT": "Part-B"}
# Fields written only when another one is missing: field → that column.
FALLBACK_FOR = {"CCLF8.BENE_FIPS_STATE_CD": "geo_usps_state_cd", "CCLF8.GEO_ZIP5_CD": "bene_zip_cd"}

# Fields the templates do not read, and why.
NOT_READ = {
    "CCLF9.CRNT_NUM": "the current MBI; Patient takes it from CCLF8 BENE_MBI_ID (the same value, listed beside it)",
    "CCLF8.GEO_ZIP4_CD": "the template DSL cannot join ZIP5 and ZIP4 into one postalCode; BENE_ZIP_CD / GEO_ZIP5_CD are written",
    "CCLF8.BENE_RNG_BGN_DT": "mapped to hospice EOBs (institutional templates)",
}
# Fields read but written somewhere else than the dictionary's element, and why.
ELSEWHERE = {
    "CCLF5.DGNS_PRCDR_ICD_IND": "selects the diagnosis coding system (icd-9-cm for 9, else icd-10-cm); not a value",
    "CCLF6.ORDRG_PRVDR_NPI_NUM": "a line field in CCLF6: a referring careTeam member its item points to; "
    "`referral` carries the header CLM_RFRG_PRVDR_NPI_NUM",
    "CCLF8.BENE_SEX_CD": "written as gender (code 1 → male), checked in test_fhir_bene",
}


def _rows():
    with DICTIONARY.open(newline="") as f:
        return list(csv.DictReader(f))


def _requirements():
    """(field, template, element) for every dictionary row that concerns our templates."""
    out = []
    for row in _rows():
        applies = set(filter(None, row["appliesTo"].split(";")))
        fields = [f.replace(" ", "") for f in row["cclfMapping"].split(";") if f.strip()]
        for field in fields:
            file = field.split(".")[0]
            if file in _PROFESSIONAL and row["resource"] == "ExplanationOfBenefit":
                claim_type, template = _PROFESSIONAL[file]
                # A CCLF5 field in a row for DME only still names the carrier column.
                if applies & {"Carrier", "DME"}:
                    out.append((field, template, row["element"]))
            elif file in ("CCLF8", "CCLF9") and row["resource"] == "Patient":
                out.append((field, PATIENT, row["element"]))
            elif file in ("CCLF8", "CCLF9") and row["resource"] == "Coverage":
                parts = sorted(applies & set(_PARTS)) or sorted(_PARTS)
                # A Part A / Part B entitlement date belongs to its own part's period.
                parts = [p for p in parts if _PART_OF_FIELD.get(field, p) == p]
                for part in parts:
                    out.append((field, COVERAGES[_PARTS[part]], row["element"]))
            elif file in ("CCLF8", "CCLF9"):
                assert field in NOT_READ, f"{field}: dictionary row for {row['resource']} not handled"
    return out


def _column(field: str, tables: tuple[str, ...]) -> tuple[str, str]:
    name = _ALIASES.get(field, field.split(".")[1].lower())
    for table in tables:
        if name in schema.kinds(table):
            return table, name
    raise AssertionError(f"{field}: no column {name!r} in {tables}")


def _sentinel(table: str, name: str, kind: str, k: int):
    """A value unique to the column (k), and how it appears in JSON."""
    if kind in ("str", "cat"):
        return f"S{k}", f"S{k}"
    if kind == "date":
        d = dt.date(2001, 1, 1) + dt.timedelta(days=k)
        return d, d.isoformat()
    if kind == "money":
        return f"{k}.37", Decimal(f"{k}.37")
    if kind == "qty":
        return f"{k}.5", Decimal(f"{k}.5")
    if kind == "int":
        return k, k
    return dt.datetime(2024, 1, 1, tzinfo=dt.UTC), None


@functools.cache
def _sentinel_output(template_name: str, without: str | None = None):
    """The template's output over one row per table where every column (but `without`)
    holds its sentinel, the sentinels by column, and the columns the template reads."""
    template = next(t for t in (EOB_CARRIER, EOB_DME, PATIENT, *COVERAGES.values()) if t.name == template_name)
    names = _TABLES[template_name]
    expect, tables, k = {}, {}, 0
    for name in names:
        cols = {}
        for spec in schema.TABLES[name]:
            k += 1
            value, shown = _sentinel(name, spec.name, spec.kind, k)
            if spec.name == "final_action":
                value, shown = "F", "F"
            if spec.name == without:
                value = None
            cols[spec.name] = schema.column_for(spec.kind, [value])
            expect[(name, spec.name)] = shown
        links = {child: np.array([0, 1]) for child in schema.LINKS.get(name, ()) if child in names}
        tables[name] = schema.complete(name, cols, 1, links)
    for name in names:
        for child in schema.LINKS.get(name, ()):
            tables.setdefault(child, schema.complete(child, {}, 0))
    (doc,) = write_all(template, tables)
    plan = template.bind(tables)
    slots = {i: t.name for i, t in enumerate(plan.tables)}
    read = {(slots[ref.slot], _name_of(plan, ref)) for ref in plan.columns}
    return doc, expect, read


def _name_of(plan, ref) -> str:
    table = plan.tables[ref.slot]
    return next(n for n, col in table.columns.items() if col is ref.column)


def _values(doc, path):
    """Values at `path`; a diagnosisSequence resolves to the codes of the diagnoses it names."""
    if path.endswith(".diagnosisSequence"):
        codes = {d["sequence"]: d["diagnosisCodeableConcept"]["coding"][0]["code"] for d in doc.get("diagnosis", [])}
        return [codes[n] for n in values_at(doc, path)]
    return values_at(doc, path)


REQUIREMENTS = _requirements()


def test_dictionary_fixture_covers_our_files():
    fields = {f for f, _, _ in REQUIREMENTS}
    assert any(f.startswith("CCLF5.") for f in fields) and any(f.startswith("CCLF6.") for f in fields)
    assert any(f.startswith("CCLF8.") for f in fields) and any(f.startswith("CCLF9.") for f in fields)


@pytest.mark.parametrize(
    "field,template,element", REQUIREMENTS, ids=[f"{t.name}:{f}:{e}" for f, t, e in REQUIREMENTS]
)
def test_field_reaches_its_element(field, template, element):
    if field in NOT_READ:
        pytest.skip(NOT_READ[field])
    doc, expect, read = _sentinel_output(template.name, FALLBACK_FOR.get(field))
    column = _column(field, _TABLES[template.name])
    assert column in read, f"{template.name} does not read {column} ({field})"
    if field in ELSEWHERE:
        return
    want = expect[column]
    paths = [p.strip() for p in element.replace(" OR ", " AND ").split(" AND ")]
    found = [v for p in paths for v in _values(doc, p)]
    assert any(same_value(v, want) or str(v) == str(want) for v in found), (
        f"{field} ({column}): {want!r} not at {element} (found {found[:8]})"
    )


def test_exceptions_are_real():
    """Every listed exception names a field the dictionary maps for our templates."""
    fields = {f for f, _, _ in REQUIREMENTS} | {
        f.replace(" ", "") for row in _rows() for f in row["cclfMapping"].split(";")
    }
    assert set(NOT_READ) <= fields and set(ELSEWHERE) <= fields
