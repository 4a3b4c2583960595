"""Read-side view of claim versions: which stored versions stopped being current.

The merge (`_merge.py`) keeps every version of a claim. Within a beneficiary's
claims, the versions of one claim (one `clm_grp_id`: the CCLF natural key) are
adjacent and in version order (effective date, IDR load date, id), and each
version's `last_updated` is the time of the load that brought it. So the version
that was current at an instant T is the last of its group loaded before T, and a
version was superseded between two instants when it was current at the first and
another one (a replacement, or a cancel, `clm_adjsmt_type_cd` 1) is current at the
second. That is what an incremental (`_since`) export lists as deleted.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from ..columns import Str, Table, Time
from ..errors import StoreError
from . import _ops

__all__ = ["superseded_between"]


def superseded_between(claims: Table, rows: np.ndarray, since_ms: int, until_ms: int | None, stop: int) -> np.ndarray:
    """For claim rows `rows` (sorted) of `claims`, whether each was the current version
    of its claim before `since_ms` and another version is current before `until_ms`
    (None: now). `stop` is an exclusive row bound past the last version that could
    follow `rows` (the end of the last beneficiary's claims)."""
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return np.zeros(0, bool)
    lo = int(rows[0])
    if stop <= lo or int(rows[-1]) >= stop:
        raise StoreError(f"{claims.name}: row bound {stop} does not follow rows {lo}..{int(rows[-1])}")
    groups, loads = claims["clm_grp_id"], claims["last_updated"]
    if not isinstance(groups, Str) or not isinstance(loads, Time):
        raise StoreError(f"{claims.name}: clm_grp_id / last_updated are not the store's claim columns")
    span = np.arange(lo, stop, dtype=np.int64)
    grp = _ops.fixed(cast(Str, _ops.take(groups, span)))
    lu = loads.values[lo:stop]
    first = np.ones(len(span), bool)
    first[1:] = grp[1:] != grp[:-1]
    starts = np.flatnonzero(first)
    run = np.cumsum(first) - 1
    pos = np.arange(len(span), dtype=np.int64)
    # The current version as of an instant: the last position of the run loaded before it (-1: none).
    at_since = np.maximum.reduceat(np.where(lu < since_ms, pos, -1), starts)
    loaded = np.ones(len(span), bool) if until_ms is None else lu < until_ms
    at_until = np.maximum.reduceat(np.where(loaded, pos, -1), starts)
    rel = rows - lo
    r = run[rel]
    return (at_since[r] == rel) & (at_until[r] != rel)
