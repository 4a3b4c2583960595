"""Every resource fhirhose emits: which template, over which table, for which rows.

The exporter walks `SOURCES` in order; sources of one resource type go to the
same files (all eight claim types, and the shared-system claims, to ExplanationOfBenefit).
Each claim source names its System-Type: NCH claims `NationalClaimsHistory`, Part D
events `DDPS`, the shared-system feed (FISS, MCS) `SharedSystem` — left out unless a
BCDA v3 `_typeFilter` asks for it (`export.exporter.DEFAULT_SYSTEM_TYPES`). `RESOURCE_TYPES`,
derived from them, is the one list of types the CLI, server and access rules accept.
"""

from __future__ import annotations

import weakref
from typing import Callable

import numpy as np

from ..columns import Table
from . import coverage, eob_institutional, eob_pharmacy, eob_professional, eob_shared_system, patient
from .source import Source

__all__ = ["SOURCES", "EOB_TYPES", "SHARED_SYSTEM_TYPES", "RESOURCE_TYPES", "Source", "registry_sources"]

_NCH = "NationalClaimsHistory"


def _cached_mask(fn: Callable[[Table], np.ndarray]) -> Callable[[Table, np.ndarray], np.ndarray]:
    """A select() from a whole-table row finder: the mask is built once per table
    (stores are immutable snapshots), then each chunk costs O(its rows)."""
    masks: "weakref.WeakKeyDictionary[Table, np.ndarray]" = weakref.WeakKeyDictionary()

    def select(table: Table, rows: np.ndarray) -> np.ndarray:
        mask = masks.get(table)
        if mask is None:
            mask = np.zeros(table.n, dtype=bool)
            mask[fn(table)] = True
            masks[table] = mask
        return rows[mask[rows]]

    return select


def _coverage(part: str) -> Source:
    return Source(
        "Coverage",
        coverage.COVERAGES[part],
        "bene",
        _cached_mask(lambda bene: coverage.coverage_rows(bene, part)),
    )


def _institutional(kind: str) -> Source:
    return Source(
        "ExplanationOfBenefit",
        eob_institutional.TEMPLATES[kind],
        "parta",
        _cached_mask(lambda parta: eob_institutional.institutional_rows(parta, kind)),
        ("clm_from_dt", "clm_thru_dt"),
        _NCH,
    )


def _final_rows(table: Table) -> np.ndarray:
    """Rows of the latest version of each claim (the feed is deduplicated within its system)."""
    fa = table["final_action"]
    return np.flatnonzero(np.isin(fa.codes, [i for i, lab in enumerate(fa.labels) if lab == "F"]))


def _fiss(kind: str) -> Source:
    return Source(
        "ExplanationOfBenefit",
        eob_shared_system.FISS_TEMPLATES[kind],
        "fiss",
        _cached_mask(lambda fiss: np.intersect1d(eob_institutional.institutional_rows(fiss, kind), _final_rows(fiss))),
        ("clm_from_dt", "clm_thru_dt"),
        "SharedSystem",
        "outcome",
    )


_CLAIM_DATES = ("clm_from_dt", "clm_thru_dt")

# Blue Button EOB type → source (clients filter on these codes).
EOB_TYPES: dict[str, Source] = {
    "CARRIER": Source("ExplanationOfBenefit", eob_professional.EOB_CARRIER, "partb", None, _CLAIM_DATES, _NCH),
    "DME": Source("ExplanationOfBenefit", eob_professional.EOB_DME, "dme", None, _CLAIM_DATES, _NCH),
    "HHA": _institutional("hha"),
    "HOSPICE": _institutional("hospice"),
    "INPATIENT": _institutional("inpatient"),
    "OUTPATIENT": _institutional("outpatient"),
    "SNF": _institutional("snf"),
    "PDE": Source(
        "ExplanationOfBenefit", eob_pharmacy.EOB_PDE, "pde", None, ("clm_line_from_dt", "clm_line_from_dt"), "DDPS"
    ),
}

# The shared-system feed (BCDA v3 partially adjudicated claims): MCS, then FISS per kind.
SHARED_SYSTEM_TYPES: dict[str, Source] = {
    "MCS": Source("ExplanationOfBenefit", eob_shared_system.EOB_MCS, "mcs", _cached_mask(_final_rows), _CLAIM_DATES,
                  "SharedSystem", "outcome"),
    **{f"FISS-{kind.upper()}": _fiss(kind) for kind in eob_shared_system.FISS_KINDS},
}

SOURCES: list[Source] = [
    Source("Patient", patient.PATIENT, "bene"),
    *(_coverage(p) for p in "abcd"),
    *EOB_TYPES.values(),
    *SHARED_SYSTEM_TYPES.values(),
]

# In emission order (manifests list files in it); each type once.
RESOURCE_TYPES: tuple[str, ...] = tuple(dict.fromkeys(s.rtype for s in SOURCES))


def registry_sources() -> list[Source]:
    """`SOURCES`, from a picklable function: pool workers call it to get their sources."""
    return SOURCES
