"""Who belongs to an organization: the store's rosters and enrollment as beneficiary rows.

The one place the selection rules live; the server's population, the CMS access
rules and `fhirhose export --org` all call these.

- ACO (BCDA): `Group/all` is the latest attribution roster (CCLF8, `roster_kind`
  Y) of the latest performance year on file; `Group/runout` the latest runout
  roster (`roster_kind` R), which CMS delivers for the year before the current
  one. "Latest" is by performance year, then `file_date`: a roster file replaces
  the one before it.
- Part D sponsor (AB2D, organization = contract id): `all` is everyone enrolled in
  the contract in any month of the latest enrollment year; `runout` the year before.

Everything is vectorized over the organization tables; no Python loop per row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from ..columns import NO_DATE, NO_NUM, Cat, Str, Table
from . import _ops

__all__ = [
    "GROUPS",
    "Roster",
    "str_eq",
    "cat_eq",
    "bene_rows",
    "unique_rows",
    "roster_entries",
    "latest_file",
    "aco_roster",
    "roster_benes",
    "enrolled",
    "org_kind",
    "org_benes",
]

GROUPS = ("all", "runout")


class Roster(NamedTuple):
    """One roster file of one organization: its rows in the `roster` table and its date."""

    rows: np.ndarray  # roster table rows
    file_date: int  # days since the epoch
    year: int  # performance year


def str_eq(col: Str, value: str) -> np.ndarray:
    """Rows of a Str column equal to `value` (vectorized over rows, looped over bytes)."""
    want = value.encode()
    off = col.offsets
    starts = off[:-1]
    mask = (off[1:] - starts) == len(want)
    idx = np.flatnonzero(mask)
    for k, b in enumerate(want):
        if not len(idx):
            break
        keep = col.data[starts[idx] + k] == b
        mask[idx[~keep]] = False
        idx = idx[keep]
    return mask


def cat_eq(col: Cat, label: str) -> np.ndarray:
    """Rows of a Cat column whose label is `label`."""
    codes = [i for i, lab in enumerate(col.labels) if lab == label]
    return np.isin(col.codes, codes) if codes else np.zeros(len(col), bool)


def bene_rows(tables: Mapping[str, Table], table: Table, rows: np.ndarray) -> np.ndarray:
    """bene row of each given row of an organization table (`bene_row`, else by MBI,
    current or historic); -1 if unknown."""
    n = tables["bene"].n
    got = table["bene_row"].values[rows].astype(np.int64)
    bad = (got == NO_NUM) | (got < 0) | (got >= n)
    if bad.any() and "bene_mbi_id" in table.columns:
        keys, owners = _mbi_index(tables)
        want = _ops.fixed(_ops.take(table["bene_mbi_id"], rows[bad]))
        if len(keys):
            pos = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
            found = (keys[pos] == want) & (want != b"")
            got[np.flatnonzero(bad)] = np.where(found, owners[pos], -1)
        bad = got < 0
    got[bad] = -1
    return got


_MBI_INDEXES: dict[int, tuple[Table, np.ndarray, np.ndarray]] = {}


def _mbi_index(tables: Mapping[str, Table]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted MBIs, bene row of each): current MBIs, then historic ones (CCLF9) where the
    bene table links them. Built once per bene table (a few are kept, not one per request)."""
    bene = tables["bene"]
    hit = _MBI_INDEXES.get(id(bene))
    if hit is not None and hit[0] is bene:
        return hit[1], hit[2]
    keys, owners = [_ops.fixed(bene["bene_mbi_id"])], [np.arange(bene.n, dtype=np.int64)]
    xref = tables.get("bene_mbi")
    if xref is not None and "bene_mbi" in bene.links and xref.n:
        owner = np.repeat(np.arange(bene.n, dtype=np.int64), np.diff(bene.links["bene_mbi"]))
        keys.append(_ops.fixed(xref["prvs_num"])[: len(owner)])
        owners.append(owner)
    width = max(k.dtype.itemsize for k in keys)
    allk = np.concatenate([k.astype(f"S{width}") for k in keys])
    # Stable: a current MBI wins over the same string as someone's historic MBI.
    order = np.argsort(allk, kind="stable")
    index = (allk[order], np.concatenate(owners)[order])
    if len(_MBI_INDEXES) >= 4:
        _MBI_INDEXES.clear()
    _MBI_INDEXES[id(bene)] = (bene, *index)
    return index


def unique_rows(rows: np.ndarray) -> np.ndarray:
    """Sorted distinct bene rows, the unknown (-1) dropped."""
    return np.unique(rows[rows >= 0]).astype(np.int64)


def roster_entries(tables: Mapping[str, Table], org_id: str, kind: str | None = None,
                   year: int | None = None, *, dated: bool = True) -> np.ndarray:
    """Rows of the `roster` table of `org_id` (of one kind Y/R and performance year when
    given); only rows with a file date unless `dated` is False."""
    t = tables["roster"]
    mask = str_eq(t["org_id"], org_id)
    if kind is not None:
        mask &= cat_eq(t["roster_kind"], kind)
    if year is not None:
        mask &= t["performance_year"].values == year
    if dated:
        mask &= t["file_date"].values != NO_DATE
    return np.flatnonzero(mask)


def latest_file(tables: Mapping[str, Table], rows: np.ndarray, before: int | None = None) -> Roster | None:
    """The roster rows of the newest file (by file_date), optionally loaded before day `before`.
    Undated rows (NO_DATE) count as one file older than any dated one."""
    t = tables["roster"]
    dates = t["file_date"].values[rows].astype(np.int64)
    if before is not None:
        rows, dates = rows[dates < before], dates[dates < before]
    if not len(rows):
        return None
    latest = int(dates.max())
    rows = rows[dates == latest]
    return Roster(rows, latest, int(t["performance_year"].values[rows].max()))


def aco_roster(tables: Mapping[str, Table], org_id: str, group: str = "all") -> Roster | None:
    """The roster an ACO's group exports (see module doc); None when none is on file.
    Rows without a file date count (test and hand-made stores have none)."""
    if group not in GROUPS:
        raise ValueError(f"group {group!r} is not one of {', '.join(GROUPS)}")
    rows = roster_entries(tables, org_id, "Y" if group == "all" else "R", dated=False)
    if not len(rows):
        return None
    years = tables["roster"]["performance_year"].values[rows]
    return latest_file(tables, rows[years == years.max()])


def roster_benes(tables: Mapping[str, Table], roster: Roster) -> np.ndarray:
    """Sorted bene rows of a roster (roster MBIs the store does not know are dropped)."""
    return unique_rows(bene_rows(tables, tables["roster"], roster.rows))


def enrolled(tables: Mapping[str, Table], contract: str, group: str = "all") -> np.ndarray:
    """Sorted bene rows enrolled in `contract` in any month of the latest enrollment year
    (`all`) or of the year before (`runout`)."""
    if group not in GROUPS:
        raise ValueError(f"group {group!r} is not one of {', '.join(GROUPS)}")
    t = tables["enroll"]
    rows = np.flatnonzero(str_eq(t["cntrct_id"], contract) & (t["month_mask"].values > 0))
    if not len(rows):
        return np.zeros(0, np.int64)
    years = t["year"].values[rows]
    year = years.max() - (group == "runout")
    return unique_rows(bene_rows(tables, t, rows[years == year]))


def org_kind(tables: Mapping[str, Table], org_id: str) -> str | None:
    """"aco" if the store holds rosters of `org_id`, "pdp" if it is an enrollment
    contract, else None."""
    if len(roster_entries(tables, org_id, dated=False)):
        return "aco"
    if str_eq(tables["enroll"]["cntrct_id"], org_id).any():
        return "pdp"
    return None


def org_benes(tables: Mapping[str, Table], org_id: str, group: str = "all", kind: str = "aco") -> np.ndarray:
    """Sorted bene rows of an organization's group: an ACO's roster (kind "aco") or a
    contract's enrollees (any other kind: Part D sponsors); empty when none is on file."""
    if kind != "aco":
        return enrolled(tables, org_id, group)
    roster = aco_roster(tables, org_id, group)
    return np.zeros(0, np.int64) if roster is None else roster_benes(tables, roster)
