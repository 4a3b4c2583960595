"""Fixed-width records: a CCLF file's bytes → an n × reclen matrix → checked, typed columns.

The layouts (CCLF Information Packet v36) are package data in
`store/layouts/cclf_<id>.csv`; record lengths come from the delivery's CCLF0, so
older versions with shorter records load and fields past the record end are
missing. Every record has exactly that length -- a cut, lengthened or split
record is refused, never read with shifted or missing fields -- with one
tolerance: records of the layout's full length, blank past CCLF0's length.
Records end in LF or, throughout a file, CRLF. `trimmed=True` pads short lines
instead (BCDA's synthetic sets cut trailing blanks) and then cannot tell a
truncated record from a trimmed one.

Fields are column slices of the matrix, converted with numpy, in chunks of rows;
every field is checked against its picture: YYYY-MM-DD dates, signed amounts
(-9(n).99), digits (9(n)); X(n) text must be printable ASCII.
"""

from __future__ import annotations

import csv
import io
import mmap
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal, overload

import numpy as np

from ...columns import NO_DATE, NO_NUM, AnyColumn, Cat, Date, Num, Str
from ...errors import IngestError
from .. import _ops, schema
from .files import Member

__all__ = ["Field", "layout", "Records", "parse_decimal", "parse_dates", "days_from_civil"]


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


@cache
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
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))
    return _ops.concat(parts)


class Records:
    """The records of one CCLF file as an n × reclen uint8 matrix."""

    def __init__(self, fid: str, member: Member, count: int, reclen: int, listed_at: str, trimmed: bool = False):
        self.fid = fid
        self.label = f"CCLF{fid}"
        self.origin = member.origin
        self.fields = {f.name: f for f in layout(fid)}
        self.reclen = reclen
        self._done: dict[tuple[str, str], AnyColumn] = {}
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
        values, bad = _chunked(parse_decimal, raw, scale)
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
        days, bad = _chunked(parse_dates, raw, "iso")
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

    @overload
    def column(self, name: str, kind: Literal["str"]) -> Str: ...
    @overload
    def column(self, name: str, kind: str) -> AnyColumn: ...
    def column(self, name: str, kind: str) -> AnyColumn:
        """A field as a column of a schema kind, checked against the field's picture."""
        key = (name, kind)
        if key not in self._done:
            self._done[key] = self._column(name, kind)
        return self._done[key]

    def _column(self, name: str, kind: str) -> AnyColumn:
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


def _split(data: bytes | mmap.mmap, reclen: int, rec: Records, trimmed: bool) -> tuple[np.ndarray, int]:
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


def parse_decimal(raw: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
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


def parse_dates(raw: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray]:
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
