"""Columnar store: layout, open/slice, ingest (CCLF, preference files).

`Store`, `Snapshot` and `SourceInfo` are the store's public API (see `store.store`);
`merge` applies the store's merge rules to a delta, for producers that merge in
chunks and `Store.commit` the result (`fhirhose.synth.write`); `fixed` turns a string
column into a numpy bytes array for lookups outside the store.
"""

from ._merge import merge
from ._ops import fixed
from .layout import SourceFile, SourceInfo
from .store import Snapshot, Store

__all__ = ["Store", "Snapshot", "SourceInfo", "SourceFile", "merge", "fixed"]
