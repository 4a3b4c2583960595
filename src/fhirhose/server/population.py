"""Who is in an export: an organization's groups resolved to store beneficiary rows.

Groups (the `Group/{id}/$export` ids), selected by `fhirhose.store.rosters`:

- ACO (`kind` aco): `all` — the attribution roster (`roster_kind` Y) of the latest
  performance year; `runout` — the runout roster (`roster_kind` R) of the year before.
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

from ..columns import Table
from ..store import rosters
from .auth import ClientIdentity

__all__ = ["Members", "Population", "TablePopulation", "StorePopulation"]

GROUPS = rosters.GROUPS


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
            else:
                rows = rosters.org_benes(tables, who.org_id, group_id, who.kind)
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
