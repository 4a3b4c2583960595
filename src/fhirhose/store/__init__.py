"""Columnar store: layout, open/slice, ingest (CCLF, preference files, synthetic data).

`Store`, `Snapshot` and `SourceInfo` are the store's public API (see `store.store`).
"""

from .layout import SourceFile, SourceInfo
from .store import Snapshot, Store

__all__ = ["Store", "Snapshot", "SourceInfo", "SourceFile"]
