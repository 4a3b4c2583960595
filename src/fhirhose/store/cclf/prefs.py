"""1-800-MEDICARE data-sharing preference files (opt-out) → the `optout` table.

Files are named `(P|T)#EFT.ON.ACO.NGD1800.DPRF.Dyymmdd.Thhmmsst`: a header
record, body records, and a trailer with the body record count. Records without
a source code carry no preference; the latest preference per MBI wins in the
store, so files are read in order of their date and time.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Iterable

import numpy as np

from ...columns import NO_DATE, AnyColumn, Date, Table
from ...errors import IngestError
from .. import _ops, schema
from ..layout import SourceInfo
from .files import Member, read_members, source_info
from .fixed import parse_dates

__all__ = ["PREFS_LAYOUT", "read_prefs", "ingest_prefs"]

# Beneficiary data-sharing preference file (1-800-MEDICARE → ACOs), named
# (P|T)#EFT.ON.ACO.NGD1800.DPRF.Dyymmdd.Thhmmsst. Positions (0-based, end
# exclusive) as CMS's BCDA importer reads them: a header record
# "HDR_BENEDATASHR<yyyymmdd>", body records, a trailer
# "TRL_BENEDATASHR<yyyymmdd>" with the body record count at 23..33.
PREFS_LAYOUT = {
    "BENE_MBI_ID": (0, 11),
    "EFFECTIVE_DT": (354, 362),  # YYYYMMDD
    "SOURCE_CD": (362, 367),  # "1-800" / "1800"; blank: no preference recorded
    "PREF_IND": (368, 369),  # Y share, N do not share, blank none
    "ACO_ID": (384, 389),
}
_PREFS_LEN = 389
_HDR, _TRL = b"HDR_BENEDATASHR", b"TRL_BENEDATASHR"
_PREFS_NAME = re.compile(r"^[PT]#EFT\.ON\.ACO\.NGD1800\.DPRF\.D\d{6}\.T\d{7}$")


def _read_prefs_file(m: Member) -> dict[str, AnyColumn]:
    where = f"preference file {m.origin}"
    if not _PREFS_NAME.match(m.name):
        raise IngestError(f"{where}: not a preference file name (expected like P#EFT.ON.ACO.NGD1800.DPRF.D240115.T1234567)")
    lines = bytes(m.data).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [ln.rstrip(b"\r") for ln in lines]
    if not lines or not lines[0].startswith(_HDR):
        raise IngestError(f"{where} line 1: no header record ({_HDR.decode()}<date>)")
    if len(lines) < 2 or not lines[-1].startswith(_TRL):
        raise IngestError(f"{where} line {len(lines)}: no trailer record ({_TRL.decode()}<date><count>)")
    body = lines[1:-1]
    count = lines[-1][23:33].strip()
    if not count.isdigit() or int(count) != len(body):
        raise IngestError(f"{where} line {len(lines)}: trailer count {count.decode('ascii', 'replace')!r}, the file has {len(body)} records")
    for i, ln in enumerate(body):
        if len(ln) < _PREFS_LEN:
            raise IngestError(f"{where} line {i + 2}: record is {len(ln)} bytes, at least {_PREFS_LEN} expected")
    w = max((len(ln) for ln in body), default=_PREFS_LEN)
    mat = np.frombuffer(b"".join(ln.ljust(w) for ln in body), np.uint8).reshape(len(body), w)

    def fail(name: str, row: int, what: str) -> IngestError:
        a, b = PREFS_LAYOUT[name]
        value = bytes(mat[row, a:b]).decode("ascii", "replace").strip()
        return IngestError(f"{where} line {row + 2}: {name} {value!r} {what}")

    def raw(name: str) -> np.ndarray:
        a, b = PREFS_LAYOUT[name]
        return mat[:, a:b]

    src = _ops.fixed(_ops.str_from_matrix(raw("SOURCE_CD")), 5)
    bad = (src != b"") & ~np.isin(src, [b"1-800", b"1800"])
    if bad.any():
        raise fail("SOURCE_CD", int(np.argmax(bad)), "is not a 1-800-MEDICARE source code (1-800)")
    keep = src != b""  # a record without a source carries no preference
    pref = _ops.fixed(_ops.str_from_matrix(raw("PREF_IND")), 1)
    bad = keep & ~np.isin(pref, [b"Y", b"N"])
    if bad.any():
        raise fail("PREF_IND", int(np.argmax(bad)), "is not Y or N")
    days, bad = parse_dates(raw("EFFECTIVE_DT"), "ymd")
    bad |= keep & (days == NO_DATE)
    if bad.any():
        raise fail("EFFECTIVE_DT", int(np.argmax(bad)), "is not a date (YYYYMMDD)")
    mbi = _ops.str_from_matrix(raw("BENE_MBI_ID"))
    blank = keep & (np.diff(mbi.offsets) == 0)
    if blank.any():
        raise fail("BENE_MBI_ID", int(np.argmax(blank)), "is blank")
    rows = np.flatnonzero(keep)
    return {
        "bene_mbi_id": _ops.take(mbi, rows),
        "pref_ind": _ops.set_cat(("", "N", "Y"), pref[rows]),
        "effective_dt": Date(days[rows]),
        "source_file": _ops.const_str(m.name, len(rows)),
    }


def read_prefs(paths: Iterable[str | os.PathLike]) -> tuple[dict[str, Table], SourceInfo]:
    """Parse 1-800-MEDICARE preference files into an `optout` delta (latest per MBI wins in the store)."""
    members = sorted(read_members(paths), key=lambda m: m.name.split(".D", 1)[-1])  # by file date and time
    if not members:
        raise IngestError("no preference files given")
    parts = [_read_prefs_file(m) for m in members]
    cols = {c: _ops.concat([p[c] for p in parts]) for c in parts[0]}
    n = len(cols["bene_mbi_id"])
    tables = {"optout": schema.complete("optout", cols, n)}
    return tables, source_info("prefs", members, tables)


def ingest_prefs(store, paths: Iterable[str | os.PathLike], *, now: _dt.datetime | None = None) -> int:
    """Read preference files and load them into `store` as one new generation."""
    tables, source = read_prefs(paths)
    return store.load(tables, source, now=now)
