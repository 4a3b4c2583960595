"""Shared-system claims (BCDA v3 partially adjudicated claims): the daily feed of
FISS (Part A, institutional: table `fiss`) and MCS (Part B, professional: `mcs`).

A Medicare claim is first processed by a shared system; 2-4 days after submission
it shows up there, its status changes while it is processed, and once paid it is
loaded into the National Claims History (up to ~14 days after adjudication), where
it appears again under the same claim control number. So the feed is built from
the chunk's NCH claims (`parta`, `partb`), not drawn on its own:

- finalized: about `FINALIZED_P` of the final, non-cancelled NCH claims serviced in
  the last `HISTORY_YEARS` years have their shared-system version: the same claim
  (control number, lines, amounts) with outcome `complete`, status `P` (processed)
  dated 1-14 days before its NCH load, last updated then (earlier than the NCH version).
  `NEW_CNTL_P` of them were given a new control number along the way: the previous
  one is kept in `clm_prev_cntl_num` (FHIR `related`).
- in process: `IN_PROCESS_P` of those claims (beneficiaries alive at the as-of date)
  get a recent sibling not yet in NCH: the claim's content moved to a service period
  ending 2-25 days before the as-of date, a fresh control number, outcome `partial`,
  a status of the shared systems' processing locations (suspense, returned to provider,
  approved awaiting payment) and no payment yet.

DME claims go through another shared system (VMS) that BCDA does not carry.
Rows come out sorted by beneficiary, one version per claim (the feed is
deduplicated within its system), final action F.
"""

from __future__ import annotations

import numpy as np

from ..columns import NO_DATE, NO_NUM, Column, Date, Num, Table, Time
from ..store import schema
from ..store._ops import concat as concat_columns
from ..store._ops import take as take_column
from .claims import _icn
from .kit import DAY_MS, blank, cat, date, digits, ragged, ragged_take, rng_for, to_str
from .people import Pop

__all__ = ["FINALIZED_P", "IN_PROCESS_P", "NEW_CNTL_P", "HISTORY_YEARS", "SOURCE_OF", "shared_system"]

FINALIZED_P = 0.6
IN_PROCESS_P = 0.03
NEW_CNTL_P = 0.08
HISTORY_YEARS = 3
# Shared-system table → the NCH table its claims finalize into.
SOURCE_OF = {"fiss": "parta", "mcs": "partb"}
# Status codes while in process: S suspense, R returned to provider, A approved, awaiting payment.
_IN_PROCESS_STATUS = ("S", "R", "A")
_STATUS_LABELS = ("P",) + _IN_PROCESS_STATUS
_TABLE_CODE = {"fiss": 6, "mcs": 7}


def _shift_dates(cols: dict[str, Column], shift: np.ndarray) -> None:
    """Move every date column by `shift` days per row (missing dates stay missing)."""
    for name, col in cols.items():
        if isinstance(col, Date):
            v = col.values.astype(np.int64)
            cols[name] = Date(np.where(v == NO_DATE, NO_DATE, v + shift).astype(np.int32))


def shared_system(
    table: str, pop: Pop, rows: np.ndarray, chunk: int, nch: Table, nch_children: dict[str, Table],
    nch_bene: np.ndarray,
) -> tuple[dict[str, Column], dict[str, tuple[dict[str, Column], np.ndarray]], np.ndarray]:
    """The `table` ("fiss" or "mcs") claims of one chunk, from the chunk's NCH claims
    `nch` (its child tables `nch_children`, the bene row of each claim `nch_bene`):
    header columns, child columns with offsets, and the bene row of each claim."""
    rng = rng_for(pop.seed, table, chunk)
    as_of = pop.as_of
    frm = nch["clm_from_dt"].values.astype(np.int64)
    thru = nch["clm_thru_dt"].values.astype(np.int64)
    thru = np.where(thru == NO_DATE, frm, thru)
    final = np.asarray(nch["final_action"].labels)[nch["final_action"].codes] == "F"
    cancel = np.asarray(nch["clm_adjsmt_type_cd"].labels)[nch["clm_adjsmt_type_cd"].codes] == "1"
    recent = (frm != NO_DATE) & (thru >= as_of - int(HISTORY_YEARS * 365.25))
    eligible = np.flatnonzero(final & ~cancel & recent)

    done = eligible[rng.random(len(eligible)) < FINALIZED_P]
    alive = pop.death[nch_bene[eligible]] == NO_DATE
    pending = eligible[(rng.random(len(eligible)) < IN_PROCESS_P) & alive]

    src = np.concatenate([done, pending])
    is_pending = np.r_[np.zeros(len(done), bool), np.ones(len(pending), bool)]
    order = np.lexsort((src, nch_bene[src]))
    src, is_pending = src[order], is_pending[order]
    n = len(src)
    vb = nch_bene[src]

    head: dict[str, Column] = {name: take_column(col, src) for name, col in nch.columns.items()}
    # In-process claims: the same care, moved to end 2-25 days before the as-of date.
    shift = np.where(is_pending, (as_of - rng.integers(2, 26, n)) - thru[src], 0)
    _shift_dates(head, shift)
    new_thru = thru[src] + shift
    nch_load = nch["clm_idr_ld_dt"].values.astype(np.int64)[src]
    nch_load = np.where(nch_load == NO_DATE, new_thru + 14, nch_load)
    # Adjudicated in the shared system 1-14 days before the NCH load (NCH loads come at
    # least 2 days after the service ends), received in between: thru < receipt <= status < load.
    done_dt = np.clip(nch_load - rng.integers(1, 15, n), new_thru + 1, nch_load - 1)
    rcpt = new_thru + rng.integers(1, 6, n)
    rcpt = np.where(is_pending, rcpt, np.minimum(rcpt, done_dt))
    status_dt = np.where(is_pending, np.minimum(rcpt + rng.integers(0, 5, n), as_of), done_dt)
    status = np.where(is_pending, 1 + rng.integers(0, len(_IN_PROCESS_STATUS), n), 0)

    code = _TABLE_CODE[table]
    uniq = to_str(digits(code * 10**12 + chunk * 10**8 + np.arange(n), 13))
    # In-process claims are not in NCH yet: a control number of their own (receipt day + sequence).
    fresh = to_str(_icn(rcpt, code * 10**9 + chunk * 10**6 + np.arange(n)))
    both = concat_columns([head["clm_cntl_num"], fresh])
    cntl = take_column(both, np.where(is_pending, n + np.arange(n), np.arange(n)))
    prev = _icn(rcpt - rng.integers(1, 4, n), code * 10**9 + 5 * 10**8 + chunk * 10**6 + np.arange(n))
    prev_col = to_str(blank(prev, rng.random(n) >= NEW_CNTL_P))
    head.update(
        clm_id=uniq,
        cur_clm_uniq_id=uniq,
        clm_grp_id=to_str(digits((code + 5) * 10**12 + chunk * 10**8 + np.arange(n), 13)),
        clm_cntl_num=cntl,
        clm_prev_cntl_num=prev_col,
        final_action=cat(("F",), np.zeros(n, np.int64)),
        outcome=cat(("complete", "partial"), is_pending.astype(np.int64)),
        ss_clm_stus_cd=cat(_STATUS_LABELS, status),
        ss_clm_stus_dt=date(status_dt),
        ss_clm_rcpt_dt=date(rcpt),
        clm_efctv_dt=date(status_dt),  # this version's: the feed orders a claim's versions by it
        clm_idr_ld_dt=date(status_dt),
        last_updated=Time(status_dt * DAY_MS + rng.integers(1 * 3_600_000, 6 * 3_600_000, n)),
    )
    if is_pending.any():
        pmt = head["clm_pmt_amt"]
        assert isinstance(pmt, Num)
        head["clm_pmt_amt"] = Num(np.where(is_pending & (pmt.values != NO_NUM), 0, pmt.values), pmt.scale, pmt.trim)

    children: dict[str, tuple[dict[str, Column], np.ndarray]] = {}
    for nch_child, child in zip(schema.LINKS[SOURCE_OF[table]], schema.LINKS[table]):
        off = nch.links[nch_child]
        counts = off[src + 1] - off[src]
        crow = ragged_take(off[src], counts)
        new_off, parent, _ = ragged(counts)
        cols = {name: take_column(col, crow) for name, col in nch_children[nch_child].columns.items()}
        _shift_dates(cols, shift[parent])
        children[child] = (cols, new_off)
    return head, children, vb

