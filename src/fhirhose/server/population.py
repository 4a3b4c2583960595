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
from typing import Callable, Mapping, NamedTuple, Protocol, Sequence

import numpy as np

from ..columns import Cat, Str, Table
from .auth import ClientIdentity

__all__ = ["Members", "Population", "TablePopulation", "StorePopulation"]

GROUPS = ("all", "runout")


class Members(NamedTuple):
    """A resolved export scope: sorted store rows and the store generation they index."""

    rows: np.ndarray
    generation: int | None
    unknown: list[str]  # requested Patient ids that are not members of the group


class Population(Protocol):
    """Resolves an identity's export scope to beneficiary rows (sync; run in a thread)."""

    def groups(self, who: ClientIdentity) -> list[str]: ...

    def members(self, who: ClientIdentity, group_id: str, patients: Sequence[str] = ()) -> Members | None:
        """Rows of the group (only `patients`, by Patient id, when given), or None when the
        identity has no such group. Rows and generation come from one snapshot."""
        ...


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
    """`Population` over roster / enroll / bene tables (see module doc); `tables()` is
    called once, on first use."""

    def __init__(self, tables: Callable[[], Mapping[str, Table]]):
        self._load = tables
        self._tables: Mapping[str, Table] | None = None
        self._ids: dict[str, int] | None = None
        self._lock = threading.RLock()

    def _snapshot(self) -> tuple[Mapping[str, Table], int | None]:
        """The tables to resolve against and their generation (None: not a store)."""
        if self._tables is None:
            self._tables = self._load()
        return self._tables, None

    def groups(self, who: ClientIdentity) -> list[str]:
        return ["all"] if who.kind == "system" else list(GROUPS)

    def members(self, who: ClientIdentity, group_id: str, patients: Sequence[str] = ()) -> Members | None:
        if group_id not in self.groups(who):
            return None
        with self._lock:
            tables, generation = self._snapshot()
            if who.kind == "system":
                rows = np.arange(tables["bene"].n, dtype=np.int64)
            elif who.kind == "aco":
                rows = self._roster(tables, who.org_id, "Y" if group_id == "all" else "R")
            else:
                rows = self._enrolled(tables, who.org_id, latest=group_id == "all")
            unknown: list[str] = []
            if patients:
                found = self._patient_rows(tables, patients)
                asked = np.array([found.get(p, -1) for p in patients], np.int64)
                member = np.isin(asked, rows)
                unknown = [p for p, ok in zip(patients, member.tolist()) if not ok]
                rows = np.unique(asked[member])
            return Members(rows, generation, unknown)

    def _patient_rows(self, tables: Mapping[str, Table], ids: Sequence[str]) -> dict[str, int]:
        if self._ids is None:
            self._ids = {v: i for i, v in enumerate(tables["bene"]["bene_id"].to_list())}
        return {i: self._ids[i] for i in ids if i in self._ids}

    @staticmethod
    def _roster(tables: Mapping[str, Table], org: str, kind: str) -> np.ndarray:
        t = tables["roster"]
        mask = _str_equals(t["org_id"], org) & _cat_equals(t["roster_kind"], kind)
        if not mask.any():
            return np.zeros(0, np.int64)
        years = t["performance_year"].values[mask]
        rows = t["bene_row"].values[mask]
        rows = rows[years == years.max()]
        return np.unique(rows[rows >= 0])  # roster MBIs the store does not know have no row

    @staticmethod
    def _enrolled(tables: Mapping[str, Table], contract: str, *, latest: bool) -> np.ndarray:
        t = tables["enroll"]
        mask = _str_equals(t["cntrct_id"], contract) & (t["month_mask"].values > 0)
        if not mask.any():
            return np.zeros(0, np.int64)
        years = t["year"].values[mask]
        year = years.max() if latest else years.max() - 1
        return np.unique(t["bene_row"].values[mask][years == year])



class StorePopulation(TablePopulation):
    """`TablePopulation` over a store directory, following its current generation: each
    kick-off resolves against the newest snapshot, and the job records that generation
    so its chunks export exactly the rows it resolved."""

    def __init__(self, store_path: str):
        super().__init__(lambda: {})
        self.store_path = store_path
        self._snap = None

    def _snapshot(self) -> tuple[Mapping[str, Table], int | None]:
        from ..store import Store  # late: the server starts without a store until asked

        store = Store(self.store_path)
        if self._snap is None or self._snap.generation != store.current():
            if self._snap is not None:
                self._snap.close()
            self._snap = store.snapshot()
            self._ids = None
        return self._snap.tables, self._snap.generation

    def _patient_rows(self, tables: Mapping[str, Table], ids: Sequence[str]) -> dict[str, int]:
        found = {}
        for i in ids:
            try:
                found[i] = self._snap.bene_index(i)
            except KeyError:
                pass
        return found
