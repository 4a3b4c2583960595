"""Deliveries: which files belong together, and what their CCLF0 says.

Files of one delivery share ACO, kind (Y performance year, R runout), year and
date, all read from the standard names (`P.A1234.ACO.ZC1Y24.D240115.T1234567`,
BCDA's `T.BCD.A0001.ZC0Y18.D181120.T1000011`) or given for bare `ZC<n>` names.
Each delivery needs its CCLF0, which lists every file with its record count and
record length; a delivery with any claim file must have every file CCLF0 lists.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ...errors import IngestError
from .files import Member

__all__ = ["FILE_IDS", "CLAIM_FILES", "Delivery", "group_deliveries", "read_cclf0", "listed_files"]

FILE_IDS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B")
CLAIM_FILES = ("1", "2", "3", "4", "5", "6", "7", "A", "B")

_NAME = re.compile(
    r"^(?P<env>[PT])\.(?:[A-Z]+\.)?(?P<aco>[A-Z][A-Z0-9]{4})\.(?:ACO\.)?ZC(?P<id>[0-9AB])(?P<kind>[YR])(?P<yy>\d\d)"
    r"\.D(?P<date>\d{6})\.T\d+$"
)
_BARE = re.compile(r"^ZC(?P<id>[0-9AB])$")


@dataclass
class Delivery:
    """The files of one CCLF delivery (one ACO, kind, year and date)."""

    aco: str
    kind: str  # Y performance year, R runout
    year: int
    date: _dt.date | None
    files: dict[str, Member] = field(default_factory=dict)

    @property
    def label(self) -> str:
        d = self.date.isoformat() if self.date else "undated"
        return f"{self.aco} {self.kind}{self.year} {d}"


def group_deliveries(members: Sequence[Member], org_id: str | None, year: int | None, kind: str | None) -> list[Delivery]:
    groups: dict[tuple, Delivery] = {}
    for m in members:
        hit = _NAME.match(m.name)
        if hit:
            aco = org_id or hit["aco"]
            k = kind or hit["kind"]
            yr = year or 2000 + int(hit["yy"])
            try:
                date = _dt.datetime.strptime(hit["date"], "%y%m%d").date()
            except ValueError:
                raise IngestError(f"{m.origin}: D{hit['date']} in the file name is not a date") from None
            fid = hit["id"]
        else:
            bare = _BARE.match(m.name)
            if not bare:
                raise IngestError(f"{m.origin}: not a CCLF file name (expected like P.A1234.ACO.ZC1Y24.D240115.T1234567)")
            if not org_id or not year:
                raise IngestError(f"{m.origin}: the name carries no ACO id and year; give org_id and year")
            aco, k, yr, date, fid = org_id, kind or "Y", year, None, bare["id"]
        key = (aco, k, yr, date)
        d = groups.setdefault(key, Delivery(aco, k, yr, date))
        if fid in d.files:
            raise IngestError(f"{m.origin}: second CCLF{fid} in delivery {d.label} (first: {d.files[fid].origin})")
        d.files[fid] = m
    return sorted(groups.values(), key=lambda d: (d.date or _dt.date.min, d.aco, d.year, d.kind))


def read_cclf0(m: Member) -> dict[str, tuple[int, int, str]]:
    """CCLF0: file id → (record count, record length, `file: line n` that says so)."""
    out: dict[str, tuple[int, int, str]] = {}
    lines = bytes(m.data).decode("ascii", "replace").splitlines()
    for i, line in enumerate(lines, 1):
        if i == 1 and line.startswith("File Number"):
            continue
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 4 or not re.fullmatch(r"CCLF[0-9AB]", parts[0]):
            raise IngestError(f"{m.origin}: line {i}: expected 'CCLFn | description | count | length', got {line!r}")
        for what, v in (("Total Records Count", parts[2]), ("Record Length", parts[3])):
            if not v.isdigit():
                raise IngestError(f"{m.origin}: line {i}: {what} {v!r} is not a number")
        fid = parts[0][4:]
        if fid in out:
            raise IngestError(f"{m.origin}: line {i}: {parts[0]} is listed twice")
        out[fid] = (int(parts[2]), int(parts[3]), f"{m.origin}: line {i}")
    if not out:
        raise IngestError(f"{m.origin}: CCLF0 lists no files")
    return out


def listed_files(d: Delivery) -> dict[str, tuple[int, int, str]]:
    """The CCLF0 of `d`, checked against the files present: file id → (count, length, where listed)."""
    if "0" not in d.files:
        raise IngestError(f"delivery {d.label}: no CCLF0 (record counts) among {sorted('CCLF' + f for f in d.files)}")
    counts = read_cclf0(d.files["0"])
    for fid in d.files:
        if fid != "0" and fid not in counts:
            raise IngestError(f"CCLF{fid} ({d.files[fid].origin}): not listed in CCLF0 ({d.files['0'].origin})")
    has_claims = any(f in d.files for f in CLAIM_FILES)
    for fid in counts:
        if fid not in d.files and (has_claims or fid in ("8", "9")):
            raise IngestError(
                f"delivery {d.label}: CCLF0 lists CCLF{fid} ({counts[fid][0]} records) but no CCLF{fid} file is present"
            )
    return counts
