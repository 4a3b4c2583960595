"""Table mapping: the records of a delivery's files → the store's delta tables.

- CCLF1 (Part A header) with CCLFA folded in (1:1 by CUR_CLM_UNIQ_ID), and its
  children CCLF2 (revenue lines), CCLF3 (procedures), CCLF4 (diagnoses) linked
  by CUR_CLM_UNIQ_ID.
- CCLF5/6 (one record per claim line) → a header table (the first line's
  fields; `clm_pmt_amt` and `clm_alowd_chrg_amt` summed over the lines) and a
  line table. CCLFB (Part B demonstration codes) is checked; the schema has no
  columns for it.
- CCLF7 → `pde`; CCLF8 → `bene` and the roster (records that end before
  BENE_DOB carry only an MBI, as BCDA's synthetic rosters: roster only);
  CCLF9 → `bene_mbi`.
Every field of every file is checked, whether or not a column keeps it.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import numpy as np

from ...columns import NO_DATE, NO_NUM, AnyColumn, Cat, Date, Num, Table
from ...errors import IngestError
from .. import _ops, schema
from ..layout import SourceInfo
from .delivery import Delivery, group_deliveries, listed_files
from .files import read_members, source_info
from .fixed import Records

__all__ = ["read_cclf", "ingest_cclf", "delivery_tables"]

# Claim type codes each claim file may carry (CCLF Information Packet, claim type code domain).
CLAIM_TYPES = {
    "1": ("10", "20", "30", "40", "50", "60", "61"),
    "5": ("71", "72"),
    "6": ("81", "82"),
}
ADJUSTMENT_TYPES = ("0", "1", "2")


def _columns(rec: Records, table: str, skip: Iterable[str] = ()) -> dict[str, AnyColumn]:
    """Every field of `rec` that is a column of `table`, typed by the schema."""
    kinds = schema.kinds(table)
    skip = set(skip)
    out: dict[str, AnyColumn] = {}
    for f in rec.fields.values():
        c = f.column
        if c in kinds and c not in skip:
            out[c] = rec.column(f.name, kinds[c])
    return out


def _claim_codes(rec: Records, cols: dict[str, AnyColumn]) -> None:
    """Checked code domains of claim files (adjustment type, claim type)."""
    raw = rec.raw("CLM_ADJSMT_TYPE_CD") if "CLM_ADJSMT_TYPE_CD" in rec.fields else None
    if raw is not None:  # None: the records end before the field
        vals = _ops.fixed(_ops.str_from_matrix(raw), 2)
        # Some senders zero-pad ("00"); the code is its number.
        vals = np.where(np.char.str_len(vals) == 2, np.char.lstrip(vals, b"0"), vals)
        vals = np.where((vals == b"") & (raw != 32).any(axis=1), b"0", vals)
        bad = ~np.isin(vals, [b"0", b"1", b"2"])
        if bad.any():
            raise rec.fail("CLM_ADJSMT_TYPE_CD", int(np.argmax(bad)), "is not 0 (original), 1 (cancel) or 2 (adjustment)")
        cols["clm_adjsmt_type_cd"] = _ops.set_cat(("",) + ADJUSTMENT_TYPES, vals)
    if rec.fid in CLAIM_TYPES:
        rec.cat("CLM_TYPE_CD", CLAIM_TYPES[rec.fid])


def _uids(rec: Records) -> np.ndarray:
    uid = _ops.fixed(rec.column("CUR_CLM_UNIQ_ID", "str"), 13)
    if (uid == b"").any():
        raise rec.fail("CUR_CLM_UNIQ_ID", int(np.argmax(uid == b"")), "is blank")
    return uid


def _unique_uids(rec: Records, uid: np.ndarray) -> None:
    _, first, counts = np.unique(uid, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = uid[first[np.argmax(counts > 1)]]
        rows = np.flatnonzero(uid == dup)
        raise rec.fail("CUR_CLM_UNIQ_ID", int(rows[1]), f"repeats line {int(rows[0]) + 1}")


def _parents(rec: Records, uid: np.ndarray, head_uid: np.ndarray, head: str) -> np.ndarray:
    """Header row of each child record (by CUR_CLM_UNIQ_ID)."""
    order = np.argsort(head_uid)
    srt = head_uid[order]
    pos = np.searchsorted(srt, uid).clip(0, max(len(srt) - 1, 0))
    hit = (srt[pos] == uid) if len(srt) else np.zeros(len(uid), bool)
    if not hit.all():
        raise rec.fail("CUR_CLM_UNIQ_ID", int(np.argmax(~hit)), f"has no {head} header")
    return order[pos]


def _child_table(table: str, cols: Mapping[str, AnyColumn], parent: np.ndarray, seq: np.ndarray, n_parent: int):
    """Child rows ordered by (parent, sequence) and the parent's link offsets."""
    order = np.lexsort((seq, parent))
    t = schema.complete(table, {c: _ops.take(col, order) for c, col in cols.items()}, len(order))
    return t, _ops.offsets_from_counts(np.bincount(parent, minlength=n_parent))


def _missing(kind: str, n: int) -> AnyColumn:
    return schema.empty_column(kind, n)


def _part_a(recs: Mapping[str, Records]) -> dict[str, Table]:
    r1 = recs["1"]
    uid = _uids(r1)
    _unique_uids(r1, uid)
    cols = _columns(r1, "parta")
    _claim_codes(r1, cols)
    r1.check_pictures()
    n = r1.n
    if "A" in recs:
        ra = recs["A"]
        auid = _uids(ra)
        _unique_uids(ra, auid)
        at = _parents(ra, auid, uid, "CCLF1")
        acols = _columns(ra, "parta", skip=("cur_clm_uniq_id", "bene_mbi_id", "bene_hic_num", "clm_type_cd"))
        ra.check_pictures()
        idx = np.full(n, ra.n, np.int64)  # the appended missing row for headers without CCLFA
        idx[at] = np.arange(ra.n)
        kinds = schema.kinds("parta")
        for c, col in acols.items():
            cols[c] = _ops.take(_ops.concat([col, _missing(kinds[c], 1)]), idx)
    links: dict[str, np.ndarray] = {}
    out: dict[str, Table] = {}
    for fid, table, seq_col in (("2", "parta_rev", "clm_line_num"), ("3", "parta_px", "clm_val_sqnc_num"),
                                ("4", "parta_dx", "clm_val_sqnc_num")):
        if fid not in recs:
            continue
        rc = recs[fid]
        parent = _parents(rc, _uids(rc), uid, "CCLF1")
        ccols = _columns(rc, table)
        rc.check_pictures()
        seq = cast(Num, ccols[seq_col]).values  # schema kind "int"
        out[table], links[table] = _child_table(table, ccols, parent, seq, n)
    out["parta"] = schema.complete("parta", cols, n, links)
    return out


def _lines_claims(rec: Records, head: str, line: str) -> dict[str, Table]:
    """CCLF5/6: one record per claim line → header table (first line's fields) + line table."""
    uid = _uids(rec)
    _, first = np.unique(uid, return_index=True)
    first = np.sort(first)  # headers in file order
    parent = _parents(rec, uid, uid[first], rec.label)
    hcols = _columns(rec, head)
    _claim_codes(rec, hcols)
    lcols = _columns(rec, line)
    rec.check_pictures()
    lines, links = _child_table(line, lcols, parent, cast(Num, lcols["clm_line_num"]).values, len(first))  # kind "int"
    hcols = {c: _ops.take(col, first) for c, col in hcols.items()}
    for head_col, line_col in (("clm_pmt_amt", "clm_line_cvrd_pd_amt"), ("clm_alowd_chrg_amt", "clm_line_alowd_chrg_amt")):
        v = cast(Num, lcols[line_col]).values  # schema kind "money"
        have = v != NO_NUM
        total = np.bincount(parent[have], minlength=len(first)) > 0
        sums = np.zeros(len(first), np.int64)
        np.add.at(sums, parent[have], v[have])
        hcols[head_col] = Num(np.where(total, sums, NO_NUM), 2)
    return {head: schema.complete(head, hcols, len(first), {line: links}), line: lines}


def _pde(rec: Records) -> dict[str, Table]:
    uid = _uids(rec)
    _unique_uids(rec, uid)
    cols = _columns(rec, "pde")
    _claim_codes(rec, cols)
    rec.check_pictures()
    return {"pde": schema.complete("pde", cols, rec.n)}


# CCLF8 records shorter than this carry no demographics (BCDA's MBI-only rosters).
_DOB_END = 42


def _bene(rec: Records, d: Delivery) -> dict[str, Table]:
    mbi = rec.text("BENE_MBI_ID")
    blank = np.diff(mbi.offsets) == 0
    if blank.any():
        raise rec.fail("BENE_MBI_ID", int(np.argmax(blank)), "is blank")
    n = rec.n
    out = {}
    if rec.width >= _DOB_END:
        cols = _columns(rec, "bene")
        rec.cat("BENE_SEX_CD", ("0", "1", "2"))
        out["bene"] = schema.complete("bene", cols, n)
    rec.check_pictures()
    roster: dict[str, AnyColumn] = {
        "org_id": _ops.const_str(d.aco, n),
        "bene_mbi_id": mbi,
        "roster_kind": Cat(np.ones(n, np.uint16), ("", d.kind)),
        "performance_year": Num(np.full(n, d.year, np.int64), 0),
        "file_date": Date(np.full(n, NO_DATE if d.date is None else (d.date - _dt.date(1970, 1, 1)).days, np.int32)),
    }
    out["roster"] = schema.complete("roster", roster, n)
    return out


def _xref(rec: Records) -> dict[str, Table]:
    rec.cat("HICN_MBI_XREF_IND", ("H", "M"))
    cols = _columns(rec, "bene_mbi")
    rec.check_pictures()
    return {"bene_mbi": schema.complete("bene_mbi", cols, rec.n)}


def _stack(parts: Sequence[Mapping[str, Table]]) -> dict[str, Table]:
    """Tables of several deliveries end to end, links shifted."""
    out: dict[str, Table] = {}
    names = [n for n in schema.TABLES if any(n in p for p in parts)]
    for name in names:
        have = [p[name] for p in parts if name in p]
        cols = {c: _ops.concat([t.columns[c] for t in have]) for c in have[0].columns}
        links = {}
        for child in schema.LINKS.get(name, ()):
            offs, base = [np.zeros(1, np.int64)], 0
            for p in parts:
                if name in p:
                    o = p[name].links[child]
                    offs.append(o[1:] + base)
                base += p[child].n if child in p else 0
            links[child] = np.concatenate(offs)
        out[name] = schema.complete(name, cols, sum(t.n for t in have), links)
    return out


def delivery_tables(d: Delivery, trimmed: bool = False) -> dict[str, Table]:
    """The delta tables of one delivery (every file parsed and checked)."""
    counts = listed_files(d)
    recs = {fid: Records(fid, m, *counts[fid], trimmed=trimmed) for fid, m in d.files.items() if fid != "0"}
    out: dict[str, Table] = {}
    if "1" in recs:
        out.update(_part_a(recs))
    if "5" in recs:
        out.update(_lines_claims(recs["5"], "partb", "partb_line"))
    if "B" in recs:
        recs["B"].check_pictures()
    if "6" in recs:
        out.update(_lines_claims(recs["6"], "dme", "dme_line"))
    if "7" in recs:
        out.update(_pde(recs["7"]))
    if "8" in recs:
        out.update(_bene(recs["8"], d))
    if "9" in recs:
        out.update(_xref(recs["9"]))
    return out


def read_cclf(paths: Iterable[str | os.PathLike], *, org_id: str | None = None, year: int | None = None,
              kind: str | None = None, trimmed: bool = False) -> tuple[dict[str, Table], SourceInfo]:
    """Parse and validate CCLF deliveries into delta tables for `Store.load`.

    `org_id`, `year` and `kind` ("Y"/"R") override what the file names say
    (and are required for bare `ZC<n>` names). Every record must be exactly
    CCLF0's record length; `trimmed=True` accepts lines whose trailing blanks
    were cut (BCDA's synthetic sets), at the price of not detecting a
    truncated record. Raises IngestError naming the file, line and field of
    the first problem; nothing is returned for a delivery with any problem.
    """
    members = read_members(paths)
    if not members:
        raise IngestError("no CCLF files given")
    deliveries = group_deliveries(members, org_id, year, kind)
    tables = _stack([delivery_tables(d, trimmed) for d in deliveries])
    return tables, source_info("cclf", members, tables, "; ".join(d.label for d in deliveries))


def ingest_cclf(store, paths: Iterable[str | os.PathLike], *, now: _dt.datetime | None = None, **kw) -> int:
    """Read CCLF deliveries and load them into `store` as one new generation."""
    tables, source = read_cclf(paths, **kw)
    return store.load(tables, source, now=now)
