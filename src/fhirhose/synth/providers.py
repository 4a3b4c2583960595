"""The providers of a synthetic dataset: individual NPIs (valid Luhn check
digits) by specialty, their practices' tax numbers and organization NPIs, and
facilities (hospitals, SNFs, home health agencies, hospices, pharmacies, DME
suppliers) with CCNs, per seed."""

from __future__ import annotations

import numpy as np

from . import vocab as V
from .kit import Txt, concat, digits, npi, rng_for

PER_SPECIALTY = 160  # individual providers per specialty
_PER_LOCATION = {"hospital": 4, "snf": 6, "hha": 4, "hospice": 3, "pharmacy": 10}
_CCN_BASE = {"hospital": 10, "snf": 5000, "hha": 7000, "hospice": 1500}
NATIONAL = {"dme": 40, "mail": 3}


class Providers:
    """NPIs (valid Luhn check digits), tax numbers and CCNs for one seed."""

    def __init__(self, seed: int):
        rng = rng_for(seed, "providers")
        n_ind = len(V.SPECIALTY) * PER_SPECIALTY
        stride = 90_000_000 // n_ind
        base = 100_000_000 + np.arange(n_ind) * stride + rng.integers(0, stride, n_ind)
        self.individual = digits(npi(base), 10)
        # Practices of six: one tax number and one organization NPI each.
        groups = -(-n_ind // 6)
        practice = np.arange(n_ind) // 6
        self.tin = digits(100_000_000 + practice * 7_919 + rng.integers(0, 7_919, groups)[practice], 9)
        self.group = digits(npi(300_000_000 + np.arange(groups) * 97_001 + rng.integers(0, 97_001, groups)), 10)
        nloc = len(V.LOCATIONS)
        self.facility: dict[str, Txt] = {}
        self.ccn: dict[str, Txt] = {}
        kinds = list(_PER_LOCATION) + list(NATIONAL)
        sizes = [k * nloc for k in _PER_LOCATION.values()] + list(NATIONAL.values())
        start = 0
        org_stride = 90_000_000 // sum(sizes)
        ssa = np.array([int(loc[3]) for loc in V.LOCATIONS])
        # rank of a location among those of its state, so CCNs stay unique per state
        rank = np.array([sum(1 for p in V.LOCATIONS[:i] if p[3] == loc[3]) for i, loc in enumerate(V.LOCATIONS)])
        for kind, size in zip(kinds, sizes, strict=True):
            idx = np.arange(start, start + size)
            self.facility[kind] = digits(npi(200_000_000 + idx * org_stride + rng.integers(0, org_stride, size)), 10)
            if kind in _CCN_BASE:
                k = _PER_LOCATION[kind]
                loc, j = np.divmod(np.arange(size), k)
                self.ccn[kind] = concat(digits(ssa[loc], 2), digits(_CCN_BASE[kind] + rank[loc] * k + j, 4))
            start += size

    def by_specialty(self, rng: np.random.Generator, spec: np.ndarray) -> np.ndarray:
        """Provider index for each specialty index; a few providers are busy."""
        return spec * PER_SPECIALTY + (rng.random(len(spec)) ** 2 * PER_SPECIALTY).astype(np.int64)

    def local(self, kind: str, loc: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A facility of `kind` in the beneficiary's area, chosen by uniforms `u`."""
        k = _PER_LOCATION[kind]
        return loc * k + (u**1.5 * k).astype(np.int64)

