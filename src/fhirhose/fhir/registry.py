"""Every resource fhirhose emits: which template, over which table, for which rows.

The exporter walks `SOURCES` in order; sources of one resource type go to the
same files (all eight claim types to ExplanationOfBenefit). `RESOURCE_TYPES`,
derived from them, is the one list of types the CLI, server and access rules accept.
"""

from __future__ import annotations

import weakref
from typing import Callable

import numpy as np

from ..columns import Table
from . import coverage, eob_institutional, eob_pharmacy, eob_professional, patient
from .source import Source

__all__ = ["SOURCES", "EOB_TYPES", "RESOURCE_TYPES", "Source", "registry_sources"]


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
    )


_CLAIM_DATES = ("clm_from_dt", "clm_thru_dt")

# Blue Button EOB type → source (clients filter on these codes).
EOB_TYPES: dict[str, Source] = {
    "CARRIER": Source("ExplanationOfBenefit", eob_professional.EOB_CARRIER, "partb", None, _CLAIM_DATES),
    "DME": Source("ExplanationOfBenefit", eob_professional.EOB_DME, "dme", None, _CLAIM_DATES),
    "HHA": _institutional("hha"),
    "HOSPICE": _institutional("hospice"),
    "INPATIENT": _institutional("inpatient"),
    "OUTPATIENT": _institutional("outpatient"),
    "SNF": _institutional("snf"),
    "PDE": Source(
        "ExplanationOfBenefit", eob_pharmacy.EOB_PDE, "pde", None, ("clm_line_from_dt", "clm_line_from_dt")
    ),
}

SOURCES: list[Source] = [
    Source("Patient", patient.PATIENT, "bene"),
    *(_coverage(p) for p in "abcd"),
    *EOB_TYPES.values(),
]

# In emission order (manifests list files in it); each type once.
RESOURCE_TYPES: tuple[str, ...] = tuple(dict.fromkeys(s.rtype for s in SOURCES))


def registry_sources() -> list[Source]:
    """`SOURCES`, from a picklable function: pool workers call it to get their sources."""
    return SOURCES
