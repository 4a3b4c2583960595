"""Who is in an export: the CMS access rules (`fhirhose.access.plan_scope`) over the
store's roster, enrollment and opt-out tables.

A `Population` supplies the tables to plan against and the store generation they
come from, so a job's chunks export exactly the rows its kick-off resolved.
`plan` maps a kick-off onto `plan_scope`:

| kick-off | plan_scope group |
|---|---|
| `Group/{id}/$export` | `id` (`all`, `runout`, or a sponsor's contract id) |
| `Patient/$export` | None: the organization's whole population, no new-beneficiary rule |
| `/$export` | refused (403): no organization kind has system-level access |

A POST `patient` list narrows the scope to those patients; ids outside it are
reported as unknown whether or not they exist elsewhere.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from ..access import AccessDB, Principal, Scope, plan_scope
from ..columns import Table
from ..errors import AuthError

if TYPE_CHECKING:
    from ..store import Snapshot

__all__ = ["Population", "TablePopulation", "StorePopulation", "Planned", "plan", "current_tables"]

# Kick-off endpoints each population rule serves (named in the 403 of `/$export`).
_ENDPOINTS = {
    "aco_roster": "Group/all/$export, Group/runout/$export or Patient/$export",
    "enrollment": "Patient/$export, Group/all/$export, Group/runout/$export or Group/<contract>/$export",
    "provider_roster": "Group/all/$export or Patient/$export",
}


class Population(Protocol):
    """The tables export scopes are planned against (sync; run in a thread)."""

    def snapshot(self) -> tuple[Mapping[str, Table], int | None]:
        """The tables and their store generation (None: not a store)."""
        ...

    def patient_rows(self, ids: Sequence[str]) -> dict[str, int]:
        """bene rows of the Patient ids that exist (in the tables `snapshot` gave last)."""
        ...


class TablePopulation:
    """A `Population` over fixed tables; `tables()` is called once, on first use."""

    def __init__(self, tables: Callable[[], Mapping[str, Table]]):
        self._load = tables
        self._tables: Mapping[str, Table] | None = None
        self._ids: dict[str, int] | None = None

    def snapshot(self) -> tuple[Mapping[str, Table], int | None]:
        if self._tables is None:
            self._tables = self._load()
        return self._tables, None

    def patient_rows(self, ids: Sequence[str]) -> dict[str, int]:
        if self._ids is None:
            self._ids = {v: i for i, v in enumerate(self.snapshot()[0]["bene"]["bene_id"].to_list())}
        return {i: self._ids[i] for i in ids if i in self._ids}


class StorePopulation:
    """A `Population` over a store directory that follows its current generation."""

    def __init__(self, store_path: str):
        self.store_path = store_path
        self._snap: Snapshot | None = None

    def snapshot(self) -> tuple[Mapping[str, Table], int | None]:
        from ..store import Store  # late: the server starts without a store until asked

        store = Store(self.store_path)
        if self._snap is None or self._snap.generation != store.current():
            if self._snap is not None:
                self._snap.close()
            self._snap = store.snapshot()
        return self._snap.tables, self._snap.generation

    def patient_rows(self, ids: Sequence[str]) -> dict[str, int]:
        found = {}
        assert self._snap is not None, "snapshot() comes first (it is what the kick-off plans on)"
        for i in ids:
            try:
                found[i] = self._snap.bene_index(i)
            except KeyError:
                pass
        return found


class Planned(NamedTuple):
    """A kick-off's scope, the store generation it indexes and the unknown patient ids."""

    scope: Scope
    generation: int | None
    unknown: list[str]


_LOCK = threading.RLock()


def current_tables(population: Population) -> Mapping[str, Table]:
    """The population's current tables (refreshing its snapshot safely)."""
    with _LOCK:
        return population.snapshot()[0]


def plan(db: AccessDB, population: Population, principal: Principal, kind: str, group: str | None,
         since: str | None, types: Sequence[str], patients: Sequence[str], now: float) -> Planned:
    """The scope of one kick-off (see the module doc); raises AuthError / RequestError."""
    if kind == "system":
        rules = db.config.rules(principal.org_kind)
        raise AuthError(
            f"organization {principal.org_id} ({rules.title}) has no system-level export; "
            f"use {_ENDPOINTS[rules.population]}",
            status=403,
        )
    since_dt = None if since is None else _dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
    with _LOCK:  # one snapshot refresh at a time; planning reads it
        tables, generation = population.snapshot()
        scope = plan_scope(db, tables, principal, group if kind == "group" else None, since_dt, now, types=types)
        unknown: list[str] = []
        if patients:
            found = population.patient_rows(patients)
            rows = np.array([found.get(p, -1) for p in patients], np.int64)
            member = np.isin(rows, scope.bene_rows)
            unknown = [p for p, ok in zip(patients, member.tolist(), strict=True) if not ok]
            scope = scope.for_benes(rows[member])
    return Planned(scope, generation, unknown)
