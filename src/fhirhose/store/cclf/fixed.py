"""CCLF ingest: Claim and Claim Line Feed files, as ACOs receive them, into the store.

Input: plain files or zip archives (zips may hold zips) named like
`P.A1234.ACO.ZC1Y24.D240115.T1234567` (`T.` for test files; BCDA's archives
put a system name first: `T.BCD.A0001.ZC0Y18.D181120.T1000011`), or bare
`ZC0`..`ZCB` names (BCDA's synthetic sets: give `org_id` and `year`). `ZC<n>`
names the file (0–9, A, B), `Y<yy>`/`R<yy>` a performance year or its runout,
`D<yymmdd>` the delivery date. Files of one delivery share ACO, kind, year and
date; each delivery needs its CCLF0, whose record counts and lengths are checked.

Fixed-width records are parsed in bulk: the file becomes an n × reclen byte
matrix (a view of the file when every line has the CCLF0 length) and every
field is a column slice of it, validated and converted with numpy. Record
lengths come from CCLF0, so older versions with shorter records load: fields
past the record end are missing. Every record has exactly that length (a cut or
lengthened record is refused, never read with shifted or missing fields) and
every field parses by its picture; records end in LF or, throughout a file,
CRLF. `trimmed=True` pads short lines instead (BCDA's synthetic sets cut
trailing blanks), and then cannot tell a truncated record from a trimmed one.

Rules beyond the layouts (CCLF Information Packet v36), stated here because a
reader of the data should know them:
- A delivery with any claim file must have every file its CCLF0 lists. A
  delivery with no claim files at all (BCDA ships only CCLF0, 8 and 9) loads
  its beneficiary files; CCLF8 and CCLF9 are required when listed.
- CCLF8 records that do not reach BENE_DOB carry only an MBI (BCDA's synthetic
  rosters): they load into the roster only.
- CCLFA is folded into its CCLF1 header (1:1 by CUR_CLM_UNIQ_ID). CCLFB (Part B
  demonstration codes) is validated, but the schema has no columns for it.
- CCLF5/6 header fields come from a claim's first line; `clm_pmt_amt` and
  `clm_alowd_chrg_amt` are the sums over its lines.
- Every error names the file, line and field; a delivery loads whole or not at all.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import mmap
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ...columns import NO_DATE, NO_NUM, Cat, Column, Date, Num, Str, Table
from ...errors import IngestError
from .. import _ops, schema
from ..layout import SourceFile, SourceInfo

__all__ = ["read_cclf", "ingest_cclf", "read_prefs", "ingest_prefs", "layout", "Field", "PREFS_LAYOUT"]

FILE_IDS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B")
CLAIM_FILES = ("1", "2", "3", "4", "5", "6", "7", "A", "B")

# Claim type codes each claim file may carry (CCLF Information Packet, claim type code domain).
CLAIM_TYPES = {
    "1": ("10", "20", "30", "40", "50", "60", "61"),
    "5": ("71", "72"),
    "6": ("81", "82"),
}
ADJUSTMENT_TYPES = ("0", "1", "2")


@dataclass(frozen=True)
class Field:
    """One fixed-width field: `start`..`end` are 0-based, end exclusive."""

    name: str
    start: int
    end: int
    fmt: str

    @property
    def column(self) -> str:
        return self.name.lower()


@lru_cache(maxsize=None)
def layout(file_id: str) -> tuple[Field, ...]:
    """The v36 layout of CCLF file `file_id` ("1".."9", "A", "B") from the package data."""
    text = resources.files("fhirhose.store").joinpath(f"layouts/cclf_{file_id.lower()}.csv").read_text("utf-8")
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        # Names were transcribed from a PDF: drop the line breaks, blanks and ellipses.
        name = re.sub(r"[\s\u2026.]", "", row["field_label"]).upper()
        start, end = int(row["Start Position"]), int(row["End Position"])
        if end - start + 1 != int(row["Data Length"]):
            raise IngestError(f"layout cclf_{file_id}: {name} spans {start}..{end} but says {row['Data Length']} bytes")
        out.append(Field(name, start - 1, end, re.sub(r"\s", "", row["Format"]).upper()))
    return tuple(out)


# -- files and deliveries -------------------------------------------------------------------

_NAME = re.compile(
    r"^(?P<env>[PT])\.(?:[A-Z]+\.)?(?P<aco>[A-Z][A-Z0-9]{4})\.(?:ACO\.)?ZC(?P<id>[0-9AB])(?P<kind>[YR])(?P<yy>\d\d)"
    r"\.D(?P<date>\d{6})\.T\d+$"
)
_BARE = re.compile(r"^ZC(?P<id>[0-9AB])$")


@dataclass
class Member:
    """One input file: its name, bytes and where it came from (for messages)."""

    name: str
    data: bytes | mmap.mmap
    origin: str


def _members(paths: Iterable[str | os.PathLike]) -> list[Member]:
    out: list[Member] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(_members(sorted(q for q in p.iterdir() if q.is_file())))
        elif not p.exists():
            raise IngestError(f"{p}: no such file")
        else:
            out.extend(_unpack(p.name, _map(p), str(p)))
    return out


def _map(p: Path):
    """A plain file's bytes, memory-mapped: a multi-GB CCLF file is parsed in place
    (the record matrix is a view of the map) instead of being read into memory."""
    with open(p, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _unpack(name: str, data: bytes, origin: str) -> list[Member]:
    if data[:4] != b"PK\x03\x04" and not name.lower().endswith(".zip"):
        return [Member(name, data, origin)]
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            out = []
            for info in z.infolist():
                if info.is_dir():
                    continue
                inner = z.read(info)
                base = info.filename.rsplit("/", 1)[-1]
                out.extend(_unpack(base, inner, f"{origin}:{info.filename}"))
            return out
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error) as e:
        raise IngestError(f"{origin}: corrupt zip archive ({e})") from None


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


def _deliveries(members: Sequence[Member], org_id: str | None, year: int | None, kind: str | None) -> list[Delivery]:
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


def _read_cclf0(m: Member) -> dict[str, tuple[int, int, str]]:
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


# -- records: bytes → n × reclen matrix ---------------------------------------------------------


# Fields are converted in slices of rows: the temporaries of a slice stay in cache and a
# multi-GB file never needs several times its size in memory.
_CHUNK = 1 << 16


def _chunked(fn, raw: np.ndarray, *args):
    n = len(raw)
    if n <= _CHUNK:
        return fn(raw, *args)
    parts = [fn(raw[i : i + _CHUNK], *args) for i in range(0, n, _CHUNK)]
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(p) for p in zip(*parts))
    return _ops.concat(parts)


class Records:
    """The records of one CCLF file as an n × reclen uint8 matrix."""

    def __init__(self, fid: str, member: Member, count: int, reclen: int, listed_at: str, trimmed: bool = False):
        self.fid = fid
        self.label = f"CCLF{fid}"
        self.origin = member.origin
        self.fields = {f.name: f for f in layout(fid)}
        self.reclen = reclen
        self._done: dict[tuple[str, str], Column] = {}
        self._checked: set[str] = set()  # fields validated against their picture
        self.m, self.width = _split(member.data, reclen, self, trimmed)
        self.n = len(self.m)
        if self.n != count:
            raise IngestError(f"{self.where()}: the file has {self.n} records, CCLF0 says {count} ({listed_at})")
        bad = _chunked(lambda m: (((m < 32) | (m > 126)).any(axis=1),), self.m)[0]
        if bad.any():
            row = int(np.argmax(bad))
            col = int(np.argmax((self.m[row] < 32) | (self.m[row] > 126)))
            raise IngestError(
                f"{self.where(row)}: {self.field_at(col)} has byte 0x{int(self.m[row, col]):02x}, not printable ASCII"
            )

    def where(self, row: int | None = None) -> str:
        """`file` or `file: line n` for messages."""
        return self.origin if row is None else f"{self.origin}: line {row + 1}"

    def field_at(self, col: int) -> str:
        for f in self.fields.values():
            if f.start <= col < f.end:
                return f.name
        return f"byte {col + 1}"

    def has(self, name: str) -> bool:
        return self.fields[name].end <= self.reclen

    def raw(self, name: str) -> np.ndarray | None:
        """The field's n × w bytes, or None when records end before it."""
        f = self.fields[name]
        return self.m[:, f.start : f.end] if f.end <= self.reclen else None

    def fail(self, name: str, row: int, what: str) -> IngestError:
        value = bytes(self.m[row, self.fields[name].start : self.fields[name].end]).decode("ascii").strip()
        return IngestError(f"{self.where(row)}: {name} {value!r} {what}")

    # Typed columns (missing when past the record end).

    def text(self, name: str) -> Str:
        raw = self.raw(name)
        return schema.empty_column("str", self.n) if raw is None else _chunked(_ops.str_from_matrix, raw)

    def digits(self, name: str) -> Str:
        raw = self.raw(name)
        if raw is None:
            return schema.empty_column("str", self.n)
        col = _chunked(_ops.str_from_matrix, raw)
        digits = _chunked(lambda m: (((m >= 48) & (m <= 57)).sum(axis=1),), raw)[0]
        bad = digits != np.diff(col.offsets)  # anything but digits between the blanks
        if bad.any():
            raise self.fail(name, int(np.argmax(bad)), "is not a number")
        self._checked.add(name)
        return col

    def integer(self, name: str) -> Num:
        return self._number(name, 0, False, "is not a number")

    def amount(self, name: str, scale: int, trim: bool = False) -> Num:
        return self._number(name, scale, trim, f"is not a signed amount with at most {scale} decimals")

    def _number(self, name: str, scale: int, trim: bool, what: str) -> Num:
        raw = self.raw(name)
        if raw is None:
            return Num(np.full(self.n, NO_NUM, np.int64), scale, trim)
        values, bad = _chunked(_parse_decimal, raw, scale)
        if bad.any():
            raise self.fail(name, int(np.argmax(bad)), what)
        fmt = self.fields[name].fmt
        if fmt.startswith("-9") and scale == _decimals(fmt):  # a 9(n) picture takes no sign: left to digits()
            self._checked.add(name)
        return Num(values, scale, trim)

    def date(self, name: str) -> Date:
        raw = self.raw(name)
        if raw is None:
            return Date(np.full(self.n, NO_DATE, np.int32))
        days, bad = _chunked(_parse_dates, raw, "iso")
        if bad.any():
            raise self.fail(name, int(np.argmax(bad)), "is not a date (YYYY-MM-DD)")
        self._checked.add(name)
        return Date(days)

    def cat(self, name: str, domain: Sequence[str] | None = None, digits: bool = False) -> Cat:
        raw = self.raw(name)
        if raw is None:
            return schema.empty_column("cat", self.n)
        # Codes come from the distinct padded values; only those are stripped and checked.
        n, w = raw.shape
        uniq, inv = np.unique(np.ascontiguousarray(raw).view(f"S{w}").reshape(n), return_inverse=True)
        labels = [u.decode("ascii").strip() for u in uniq.tolist()]
        for i, lab in enumerate(labels):
            bad = (domain is not None and lab and lab not in domain) or (digits and not lab.isdigit() and lab)
            if bad:
                what = f"is not one of {', '.join(domain)}" if domain is not None and lab not in domain else "is not a number"
                raise self.fail(name, int(np.argmax(inv.reshape(-1) == i)), what)
        if digits:
            self._checked.add(name)
        final = [""] + sorted(set(labels) - {""})
        index = {lab: k for k, lab in enumerate(final)}
        remap = np.array([index[lab] for lab in labels], np.uint16)
        return Cat(remap[inv.reshape(-1)], final)

    def column(self, name: str, kind: str) -> Column:
        """A field as a column of a schema kind, checked against the field's picture."""
        key = (name, kind)
        if key not in self._done:
            self._done[key] = self._column(name, kind)
        return self._done[key]

    def _column(self, name: str, kind: str) -> Column:
        fmt = self.fields[name].fmt
        if kind == "date":
            return self.date(name)
        if kind == "money":
            return self.amount(name, 2)
        if kind == "qty":
            return self.amount(name, 4, trim=True)
        if kind == "int":
            return self.integer(name)
        if kind == "cat":
            return self.cat(name, digits=fmt.startswith("9("))
        if kind == "str":
            return self.digits(name) if fmt.startswith("9(") else self.text(name)
        raise IngestError(f"{self.label}: no reader for {name} as {kind}")

    def check_pictures(self) -> None:
        """Validate every field against its picture (dates, signed amounts, digits) unless
        a column read already did, so bad input is caught in fields no table keeps.
        Fields past the widest line (MBI-only rosters) are not there to check."""
        for f in self.fields.values():
            if f.name in self._checked or f.end > min(self.reclen, self.width):
                continue
            if f.fmt.startswith("YYYY"):
                self.date(f.name)
            elif f.fmt.startswith("-9"):
                self.amount(f.name, _decimals(f.fmt))
            elif f.fmt.startswith("9("):
                self.digits(f.name)


def _decimals(fmt: str) -> int:
    """Decimal places of a signed-amount picture (`-9(15).99` → 2)."""
    return len(fmt.split(".")[1]) if "." in fmt else 0


def _lines(a: np.ndarray, rec: Records) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of each record line. Records end in LF or, consistently
    through the file, CRLF (the CR is not part of the record); the last record may
    lack its line end; empty lines at the end of the file are not records."""
    nl = np.flatnonzero(a == 10)
    starts = np.concatenate([[0], nl + 1])
    ends = np.concatenate([nl, [len(a)]])
    keep = len(ends)
    while keep and starts[keep - 1] == ends[keep - 1]:  # the trailing newline(s)
        keep -= 1
    starts, ends = starts[:keep], ends[:keep]
    terminated = ends < len(a)  # lines that end in LF (all but maybe the last)
    cr = terminated & (ends > starts) & (a[np.maximum(ends - 1, 0)] == 13)
    if cr.any() and not cr[terminated].all():
        row = int(np.argmax(terminated & ~cr))
        first = int(np.argmax(cr))
        raise IngestError(f"{rec.where(row)}: ends in LF, but line {first + 1} ends in CRLF (one line end per file)")
    return starts, ends - cr


def _split(data: bytes, reclen: int, rec: Records, trimmed: bool) -> tuple[np.ndarray, int]:
    """Records as an n × reclen matrix; the widest line's length.

    Every record is exactly `reclen` bytes (CCLF0's length), so a cut, lengthened or
    split record is refused, not read with its fields shifted or missing. One
    tolerance: records of the layout's full length when CCLF0 gives less and every
    byte past CCLF0's length is blank (BCDA's archive lists CCLF9 as 54 bytes and
    pads its records to the layout's 55). With `trimmed`, shorter lines are padded
    with blanks instead (senders that cut trailing blanks; a truncated record is
    then undetectable)."""
    a = np.frombuffer(data, np.uint8)
    if len(a) == 0:
        return np.zeros((0, reclen), np.uint8), reclen
    n_fast = len(a) // (reclen + 1)
    nl_at = np.arange(n_fast) * (reclen + 1) + reclen
    if len(a) == n_fast * (reclen + 1) and (a[nl_at] == 10).all() and np.count_nonzero(a == 10) == n_fast:
        return a.reshape(n_fast, reclen + 1)[:, :reclen], reclen  # a view of the file: no copy
    starts, ends = _lines(a, rec)
    lens = ends - starts
    if len(lens) == 0:
        return np.zeros((0, reclen), np.uint8), reclen
    if trimmed:
        width = int(lens.max())
        w = max(width, reclen)
        m = np.full((len(lens), w), 32, np.uint8)
        m[np.arange(w) < lens[:, None]] = a[_ops.ranges(starts, ends)]
    else:
        full = max(f.end for f in rec.fields.values())
        length = int(lens[0]) if full > reclen and lens[0] == full else reclen
        off = lens != length
        if off.any():
            row = int(np.argmax(off))
            hint = " (every line is shorter: trailing blanks cut? see trimmed / --trimmed)" if (lens < length).all() else ""
            raise IngestError(f"{rec.where(row)}: record is {int(lens[row])} bytes, expected {length}{hint}")
        m = a[_ops.ranges(starts, ends)].reshape(len(lens), length)
        width = reclen
    if m.shape[1] > reclen:
        over = (m[:, reclen:] != 32).any(axis=1)
        if over.any():
            row = int(np.argmax(over))
            raise IngestError(f"{rec.where(row)}: record is {int(lens[row])} bytes, expected {reclen}")
        m = m[:, :reclen]
    return m, width


_POW10 = 10 ** np.arange(18, dtype=np.int64)


def _parse_decimal(raw: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Signed decimals (`-123.45`, blank padded) as int64 × 10**scale; blank → NO_NUM.
    Returns (values, bad rows)."""
    fast = _parse_fixed_point(raw, scale)
    return fast if fast is not None else _parse_decimal_any(raw, scale)


def _parse_fixed_point(raw: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The usual layout (right-aligned, exactly `scale` decimals: the CCLF pictures)
    parsed by numpy's C string-to-int cast once the point is cut out; None when any
    value is laid out otherwise (the general parser then also finds the bad rows)."""
    n, w = raw.shape
    if n == 0 or w <= scale or (raw == ord("+")).any():
        return None
    blank = (raw == 32).all(axis=1)
    if scale:
        point = w - 1 - scale
        if not ((raw[:, point] == ord(".")) | blank).all():
            return None
        digits = np.concatenate([raw[:, :point], raw[:, point + 1 :]], axis=1)
    else:
        digits = raw.copy()
    digits[blank, -1] = ord("0")
    try:
        values = digits.view(f"S{digits.shape[1]}").reshape(n).astype(np.int64)
    except (ValueError, OverflowError):
        return None
    return np.where(blank, NO_NUM, values), np.zeros(n, bool)


def _parse_decimal_any(raw: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The general parser: any number of decimals up to `scale`, any alignment."""
    n, w = raw.shape
    dig = (raw >= 48) & (raw <= 57)
    dot, minus, blank = raw == 46, raw == 45, raw == 32
    bad = ~(dig | dot | minus | blank).all(axis=1)
    solid = ~blank
    anyv = solid.any(axis=1)
    first = np.where(anyv, solid.argmax(axis=1), 0)
    last = np.where(anyv, w - solid[:, ::-1].argmax(axis=1), 0)
    j = np.arange(w)
    inside = (j >= first[:, None]) & (j < last[:, None])
    bad |= (blank & inside).any(axis=1)  # blanks between characters
    bad |= (minus & (j != first[:, None])).any(axis=1) | (dot.sum(axis=1) > 1)
    bad |= anyv & ~dig.any(axis=1)
    dot_at = np.where(dot.any(axis=1), dot.argmax(axis=1), w)
    ndec = (dig & (j > dot_at[:, None])).sum(axis=1)
    bad |= ndec > scale
    # Each digit times 10 ** (digits to its right), summed; a nonzero digit at 10**18 or
    # above would overflow int64 (amounts that large are not amounts).
    dv = np.where(dig, raw - np.uint8(48), np.uint8(0))
    right = np.cumsum(dig[:, ::-1], axis=1, dtype=np.int8)[:, ::-1] - dig
    bad |= ((dv > 0) & (right >= 18)).any(axis=1)
    acc = (dv * _POW10[np.minimum(right, 17)]).sum(axis=1)
    mult = 10 ** (scale - np.minimum(ndec, scale)).astype(np.int64)
    bad |= acc > np.iinfo(np.int64).max // mult
    acc = np.where(bad, 0, acc) * mult
    acc = np.where(minus.any(axis=1), -acc, acc)
    return np.where(anyv, acc, NO_NUM), bad & anyv


def days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (vectorized)."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _parse_dates(raw: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Dates as int32 days; all-blank → NO_DATE. fmt "iso" (YYYY-MM-DD) or "ymd" (YYYYMMDD)."""
    blank = (raw == 32).all(axis=1)
    v = raw.astype(np.int64) - 48
    if fmt == "iso":
        digits = [0, 1, 2, 3, 5, 6, 8, 9]
        shape_ok = (raw[:, 4] == 45) & (raw[:, 7] == 45)
    else:
        digits = list(range(8))
        shape_ok = np.ones(len(raw), bool)
    shape_ok &= ((v[:, digits] >= 0) & (v[:, digits] <= 9)).all(axis=1)
    y = v[:, digits[0]] * 1000 + v[:, digits[1]] * 100 + v[:, digits[2]] * 10 + v[:, digits[3]]
    mo = v[:, digits[4]] * 10 + v[:, digits[5]]
    d = v[:, digits[6]] * 10 + v[:, digits[7]]
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    mo_ok = (mo >= 1) & (mo <= 12)
    dim = _DAYS_IN_MONTH[np.where(mo_ok, mo, 1)] + ((mo == 2) & leap)
    ok = shape_ok & mo_ok & (d >= 1) & (d <= dim) & (y >= 1)
    days = np.where(ok, days_from_civil(y, np.where(mo_ok, mo, 1), d), 0)
    return np.where(blank, NO_DATE, days).astype(np.int32), ~ok & ~blank


# -- files → tables --------------------------------------------------------------------------


def _columns(rec: Records, table: str, skip: Iterable[str] = ()) -> dict[str, Column]:
    """Every field of `rec` that is a column of `table`, typed by the schema."""
    kinds = schema.kinds(table)
    skip = set(skip)
    out: dict[str, Column] = {}
    for f in rec.fields.values():
        c = f.column
        if c in kinds and c not in skip:
            out[c] = rec.column(f.name, kinds[c])
    return out


def _claim_codes(rec: Records, cols: dict[str, Column]) -> None:
    """Checked code domains of claim files (adjustment type, claim type)."""
    if "CLM_ADJSMT_TYPE_CD" in rec.fields and rec.has("CLM_ADJSMT_TYPE_CD"):
        raw = rec.raw("CLM_ADJSMT_TYPE_CD")
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


def _child_table(table: str, cols: Mapping[str, Column], parent: np.ndarray, seq: np.ndarray, n_parent: int):
    """Child rows ordered by (parent, sequence) and the parent's link offsets."""
    order = np.lexsort((seq, parent))
    t = schema.complete(table, {c: _ops.take(col, order) for c, col in cols.items()}, len(order))
    return t, _ops.offsets_from_counts(np.bincount(parent, minlength=n_parent))


def _missing(kind: str, n: int) -> Column:
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
        seq = ccols[seq_col].values
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
    lines, links = _child_table(line, lcols, parent, lcols["clm_line_num"].values, len(first))
    hcols = {c: _ops.take(col, first) for c, col in hcols.items()}
    for head_col, line_col in (("clm_pmt_amt", "clm_line_cvrd_pd_amt"), ("clm_alowd_chrg_amt", "clm_line_alowd_chrg_amt")):
        v = lcols[line_col].values
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
    roster = {
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


def _read_delivery(d: Delivery, trimmed: bool = False) -> dict[str, Table]:
    if "0" not in d.files:
        raise IngestError(f"delivery {d.label}: no CCLF0 (record counts) among {sorted('CCLF' + f for f in d.files)}")
    counts = _read_cclf0(d.files["0"])
    for fid in d.files:
        if fid != "0" and fid not in counts:
            raise IngestError(f"CCLF{fid} ({d.files[fid].origin}): not listed in CCLF0 ({d.files['0'].origin})")
    has_claims = any(f in d.files for f in CLAIM_FILES)
    for fid in counts:
        if fid not in d.files and (has_claims or fid in ("8", "9")):
            raise IngestError(
                f"delivery {d.label}: CCLF0 lists CCLF{fid} ({counts[fid][0]} records) but no CCLF{fid} file is present"
            )
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


def _source(kind: str, members: Sequence[Member], tables: Mapping[str, Table], note: str = "") -> SourceInfo:
    files = [SourceFile(m.origin, hashlib.sha256(m.data).hexdigest(), len(m.data)) for m in members]
    return SourceInfo(kind, files, {n: t.n for n, t in tables.items()}, note)


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
    members = _members(paths)
    if not members:
        raise IngestError("no CCLF files given")
    deliveries = _deliveries(members, org_id, year, kind)
    tables = _stack([_read_delivery(d, trimmed) for d in deliveries])
    return tables, _source("cclf", members, tables, "; ".join(d.label for d in deliveries))


def ingest_cclf(store, paths: Iterable[str | os.PathLike], *, now: _dt.datetime | None = None, **kw) -> int:
    """Read CCLF deliveries and load them into `store` as one new generation."""
    tables, source = read_cclf(paths, **kw)
    return store.load(tables, source, now=now)


# -- 1-800-MEDICARE data-sharing preference files ------------------------------------------------

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


def _read_prefs_file(m: Member) -> dict[str, Column] | None:
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
    days, bad = _parse_dates(raw("EFFECTIVE_DT"), "ymd")
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
    members = sorted(_members(paths), key=lambda m: m.name.split(".D", 1)[-1])  # by file date and time
    if not members:
        raise IngestError("no preference files given")
    parts = [_read_prefs_file(m) for m in members]
    cols = {c: _ops.concat([p[c] for p in parts]) for c in parts[0]}
    n = len(cols["bene_mbi_id"])
    tables = {"optout": schema.complete("optout", cols, n)}
    return tables, _source("prefs", members, tables)


def ingest_prefs(store, paths: Iterable[str | os.PathLike], *, now: _dt.datetime | None = None) -> int:
    """Read preference files and load them into `store` as one new generation."""
    tables, source = read_prefs(paths)
    return store.load(tables, source, now=now)
