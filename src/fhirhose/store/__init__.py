"""Columnar store: layout, open/slice, ingest (CCLF, preference files, synthetic data).

`Store`, `Snapshot` and `SourceInfo` are the store's public API (see `store.store`);
`fixed` turns a string column into a numpy bytes array for lookups outside the store.
"""

from ._ops import fixed
from .layout import SourceFile, SourceInfo
from .store import Snapshot, Store

__all__ = ["Store", "Snapshot", "SourceInfo", "SourceFile", "fixed"]
