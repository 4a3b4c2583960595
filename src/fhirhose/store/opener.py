"""Store snapshots shared within a process, and a picklable opener for worker pools.

A worker process opens a store generation once, by path, and keeps it (with its
lease, so the generation cannot be collected under it) until it lets it go
(`forget_snapshot`): every chunk it runs meanwhile reuses the same memory maps. The
server's chunk worker and `fhirhose export --workers N` both go through `shared_snapshot`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

from ..columns import Table
from .store import Snapshot, Store

__all__ = ["shared_snapshot", "forget_snapshot", "SnapshotOpener"]

_OPEN: dict[tuple[str, int | None], Snapshot] = {}


def shared_snapshot(path: str | os.PathLike, generation: int | None = None) -> Snapshot:
    """This process' snapshot of `generation` of the store at `path` (None: the generation
    current when it is first opened here), opened on first use and kept."""
    key = (str(path), generation)
    snap = _OPEN.get(key)
    if snap is None:
        snap = _OPEN[key] = Store(path).snapshot(generation)
    return snap


def forget_snapshot(path: str | os.PathLike, generation: int | None) -> None:
    """Close this process' snapshot of `generation` (if open): its lease goes, so a later
    load may collect the generation; a later `shared_snapshot` of it opens it again."""
    snap = _OPEN.pop((str(path), generation), None)
    if snap is not None:
        snap.close()


class SnapshotOpener(NamedTuple):
    """`opener` for `fhirhose.export.exporter.export_store`: plain data, so it pickles to
    pool processes, which call it to get the tables of one store generation."""

    path: str
    generation: int

    def __call__(self) -> Mapping[str, Table]:
        return shared_snapshot(self.path, self.generation).tables

    @property
    def key(self) -> tuple[str, int]:
        """The snapshot's identity, for per-process caches of exporters."""
        return (self.path, self.generation)
