"""Who is in an export: an organization's groups resolved to store beneficiary rows.

Groups (the `Group/{id}/$export` ids):

- ACO (`kind` aco): `all` — the attribution roster (`roster_kind` Y) of the latest
  performance year; `runout` — the runout roster (`roster_kind` R) of its latest year.
- Part D sponsor (`kind` pdp, organization = contract id): `all` — beneficiaries enrolled
  in the contract in any month of the latest enrollment year; `runout` — those enrolled
  in the year before.
- `system` clients: `all` — every beneficiary in the store.

`Patient/$export` exports group `all`. Data-sharing preferences (opt-outs) and other CMS
access rules are applied by a later layer on top of these rows.
"""

from __future__ import annotations

import threading
from typing import Callable, Mapping, Protocol

import numpy as np

from ..columns import Cat, Str, Table
from .auth import ClientIdentity

__all__ = ["Population", "TablePopulation", "store_tables"]

GROUPS = ("all", "runout")


class Population(Protocol):
    """Resolves an identity's export scope to sorted int64 beneficiary rows (sync; run in a thread)."""

    def groups(self, who: ClientIdentity) -> list[str]: ...

    def members(self, who: ClientIdentity, group_id: str) -> np.ndarray | None:
        """Rows of the group, or None when the identity has no such group."""
        ...

    def patient_rows(self, ids: list[str]) -> dict[str, int]:
        """Store rows of the given Patient ids (ids not in the store are absent)."""
        ...


def store_tables(store_path: str) -> Mapping[str, Table]:
    """The tables of the store at `store_path` (the store branch's `Store.open(path).tables`)."""
    from ..store import Store  # imported late: the server runs without a store until asked

    return Store.open(store_path).tables


def _str_equals(col: Str, value: str) -> np.ndarray:
    """Boolean mask of rows whose string is exactly `value` (no per-row Python objects for misses)."""
    want = value.encode()
    mask = np.diff(col.offsets) == len(want)
    for i in np.flatnonzero(mask).tolist():
        mask[i] = col.data[col.offsets[i] : col.offsets[i + 1]].tobytes() == want
    return mask


def _cat_equals(col: Cat, label: str) -> np.ndarray:
    if label not in col.labels:
        return np.zeros(len(col), bool)
    return col.codes == col.labels.index(label)


class TablePopulation:
    """`Population` over the store's roster / enroll / bene tables (see module doc)."""

    def __init__(self, tables: Callable[[], Mapping[str, Table]]):
        self._load = tables
        self._tables: Mapping[str, Table] | None = None
        self._ids: dict[str, int] | None = None
        self._lock = threading.RLock()

    @property
    def tables(self) -> Mapping[str, Table]:
        with self._lock:
            if self._tables is None:
                self._tables = self._load()
            return self._tables

    def groups(self, who: ClientIdentity) -> list[str]:
        return ["all"] if who.kind == "system" else list(GROUPS)

    def members(self, who: ClientIdentity, group_id: str) -> np.ndarray | None:
        if group_id not in self.groups(who):
            return None
        if who.kind == "system":
            return np.arange(self.tables["bene"].n, dtype=np.int64)
        if who.kind == "aco":
            return self._roster(who.org_id, "Y" if group_id == "all" else "R")
        return self._enrolled(who.org_id, latest=group_id == "all")

    def _roster(self, org: str, kind: str) -> np.ndarray:
        t = self.tables["roster"]
        mask = _str_equals(t["org_id"], org) & _cat_equals(t["roster_kind"], kind)
        if not mask.any():
            return np.zeros(0, np.int64)
        years = t["performance_year"].values[mask]
        rows = t["bene_row"].values[mask]
        return np.unique(rows[years == years.max()])

    def _enrolled(self, contract: str, *, latest: bool) -> np.ndarray:
        t = self.tables["enroll"]
        mask = _str_equals(t["cntrct_id"], contract) & (t["month_mask"].values > 0)
        if not mask.any():
            return np.zeros(0, np.int64)
        years = t["year"].values[mask]
        year = years.max() if latest else years.max() - 1
        return np.unique(t["bene_row"].values[mask][years == year])

    def patient_rows(self, ids: list[str]) -> dict[str, int]:
        with self._lock:
            if self._ids is None:
                self._ids = {v: i for i, v in enumerate(self.tables["bene"]["bene_id"].to_list())}
        return {i: self._ids[i] for i in ids if i in self._ids}
