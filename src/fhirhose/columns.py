"""Columnar batch model: the only input the writers accept.

A `Table` is a set of numpy columns of one length plus *links* to child tables
(claim lines, diagnoses, ...) given as parent offsets. The layout is Arrow-like
so the compiled writer can read it with raw pointers and no Python objects:

- `Str`   UTF-8 strings as int64 offsets (n+1) into a uint8 byte array;
          empty means missing.
- `Date`  int32 days since 1970-01-01; `NO_DATE` means missing.
- `Num`   int64 scaled integers (money: scale 2, cents); `NO_NUM` means missing.
- `Time`  int64 milliseconds since the Unix epoch, UTC; `NO_NUM` means missing.
- `Cat`   uint16 codes into a tuple of labels whose label 0 is "" (missing).

A table is validated once, on construction; the hot loop then trusts it.
Offsets are absolute, so a view over rows i..j of a memory-mapped column never
needs rebasing: writers take the table whole plus the row numbers to write.
"""

from __future__ import annotations

import datetime as _dt
import mmap
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeAlias

import numpy as np

from .errors import BatchError

__all__ = [
    "NO_DATE",
    "NO_NUM",
    "Str",
    "Date",
    "Num",
    "Time",
    "Cat",
    "Table",
    "Column",
    "AnyColumn",
    "EPOCH",
    "date_to_days",
    "days_to_date",
    "release_pages",
]

NO_DATE = int(np.iinfo(np.int32).min)
NO_NUM = int(np.iinfo(np.int64).min)
EPOCH = _dt.date(1970, 1, 1)
_MIN_DAYS = (_dt.date(1, 1, 1) - EPOCH).days
_MAX_DAYS = (_dt.date(9999, 12, 31) - EPOCH).days
_MAX_TIME_MS = (_MAX_DAYS + 1) * 86_400_000 - 1


def date_to_days(d: _dt.date | str | None) -> int:
    """A date (or ISO string) as days since 1970-01-01; None → NO_DATE."""
    if d is None or d == "":
        return NO_DATE
    if isinstance(d, str):
        d = _dt.date.fromisoformat(d)
    return (d - EPOCH).days


def days_to_date(days: int) -> _dt.date | None:
    """Days since 1970-01-01 as a date; NO_DATE → None (inverse of `date_to_days`)."""
    return None if days == NO_DATE else EPOCH + _dt.timedelta(days=int(days))


def _arrays(table: Table):
    for col in table.columns.values():
        for attr in ("offsets", "data", "codes", "values"):
            a = getattr(col, attr, None)
            if a is not None:
                yield a
    yield from table.links.values()


def release_pages(tables) -> int:
    """Drop this process's resident pages of memory-mapped columns (madvise DONTNEED).

    The pages stay in the OS page cache, so touching them again is a minor fault;
    a long export then holds only its current chunk's pages, not the whole store
    it has walked. Arrays that are not memory-mapped are left alone. Returns the
    number of mappings released.
    """
    seen: set[int] = set()
    for table in tables:
        for a in _arrays(table):
            m = None
            while a is not None and m is None:  # views keep their memmap as a base
                m = getattr(a, "_mmap", None)  # numpy.memmap keeps its mmap here
                a = getattr(a, "base", None)
            if m is None or id(m) in seen:
                continue
            seen.add(id(m))
            try:
                m.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):  # closed or not madvisable: nothing to release
                pass
    return len(seen)


class Column:
    """Base of the five column kinds; `kind` names it for the template binder."""

    kind = ""
    __slots__ = ()

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check(self, where: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def _as(arr, dtype, where: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype != dtype:
        if a.size and not np.can_cast(a.dtype, dtype, casting="same_kind"):
            raise BatchError(f"{where}: dtype {a.dtype} cannot hold {np.dtype(dtype)}")
        a = a.astype(dtype)
    if a.ndim != 1:
        raise BatchError(f"{where}: expected a 1-d array, got shape {a.shape}")
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a


class Str(Column):
    """UTF-8 strings: `offsets` (int64, n+1, absolute) into `data` (uint8)."""

    kind = "str"
    __slots__ = ("offsets", "data")

    def __init__(self, offsets, data):
        self.offsets = _as(offsets, np.int64, "Str.offsets")
        self.data = _as(data, np.uint8, "Str.data")

    def __len__(self) -> int:
        return max(len(self.offsets) - 1, 0)

    @classmethod
    def from_list(cls, values: Iterable[str | None]) -> Str:
        """A column of `values` encoded as UTF-8; None is stored as the empty string."""
        encoded = [(v or "").encode("utf-8") for v in values]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return cls(offsets, data)

    def get(self, i: int) -> str:
        """Row `i` decoded from UTF-8."""
        return bytes(self.data[self.offsets[i] : self.offsets[i + 1]]).decode("utf-8")

    def to_list(self) -> list[str]:
        """Every row decoded (empty string where missing)."""
        return [self.get(i) for i in range(len(self))]

    def _check(self, where: str) -> None:
        o = self.offsets
        if len(o) == 0:
            raise BatchError(f"{where}: Str offsets must have n+1 entries")
        if len(o) > 1:
            if o[0] < 0 or o[-1] > len(self.data):
                raise BatchError(
                    f"{where}: Str offsets run from {o[0]} to {o[-1]}, outside data of {len(self.data)} bytes"
                )
            if np.any(o[1:] < o[:-1]):
                bad = int(np.argmax(o[1:] < o[:-1]))
                raise BatchError(f"{where}: Str offsets decrease at row {bad}")
        try:
            self.data[o[0] : o[-1]].tobytes().decode("utf-8") if len(o) > 1 else None
        except UnicodeDecodeError as e:
            raise BatchError(f"{where}: invalid UTF-8 at byte {int(o[0]) + e.start}") from None


class Date(Column):
    """int32 days since 1970-01-01; NO_DATE is missing."""

    kind = "date"
    __slots__ = ("values",)

    def __init__(self, values):
        self.values = _as(values, np.int32, "Date.values")

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def from_list(cls, values: Iterable[_dt.date | str | None]) -> Date:
        """A column of dates or ISO date strings; None or "" → NO_DATE."""
        return cls(np.array([date_to_days(v) for v in values], dtype=np.int32))

    def to_list(self) -> list[_dt.date | None]:
        """Every row as a date, None where missing."""
        return [days_to_date(v) for v in self.values.tolist()]

    def _check(self, where: str) -> None:
        v = self.values
        bad = (v != NO_DATE) & ((v < _MIN_DAYS) | (v > _MAX_DAYS))
        if bad.any():
            i = int(np.argmax(bad))
            raise BatchError(f"{where}: row {i}: {int(v[i])} days is outside years 1..9999")


class Num(Column):
    """Exact decimals as int64 scaled by 10**scale (money: scale 2); NO_NUM is missing.

    `trim` writes without trailing fractional zeros (quantities: 1, 2.5), else
    exactly `scale` decimals (money: 12.50).
    """

    kind = "num"
    __slots__ = ("values", "scale", "trim")

    def __init__(self, values, scale: int = 0, trim: bool = False):
        self.values = _as(values, np.int64, "Num.values")
        self.scale = int(scale)
        self.trim = bool(trim)

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def from_list(
        cls, values: Iterable[Decimal | int | str | None], scale: int = 0, trim: bool = False
    ) -> Num:
        """A column of decimals scaled by 10**`scale`; None or "" → NO_NUM.

        Raises BatchError naming the value if it has more than `scale` decimals."""
        out = []
        q = Decimal(1).scaleb(-scale)
        for v in values:
            if v is None or v == "":
                out.append(NO_NUM)
                continue
            d = Decimal(str(v)) if not isinstance(v, Decimal) else v
            scaled = d.scaleb(scale)
            if scaled != scaled.to_integral_value():
                raise BatchError(f"Num.from_list: {v} has more than {scale} decimals ({q})")
            out.append(int(scaled))
        return cls(np.array(out, dtype=np.int64), scale, trim)

    def to_list(self) -> list[Decimal | None]:
        """Every row as an exact Decimal, None where missing."""
        return [None if v == NO_NUM else Decimal(v).scaleb(-self.scale) for v in self.values.tolist()]

    def _check(self, where: str) -> None:
        if not 0 <= self.scale <= 18:
            raise BatchError(f"{where}: Num scale {self.scale} is outside 0..18")


class Time(Column):
    """Instants as int64 milliseconds since the epoch (UTC); NO_NUM is missing."""

    kind = "time"
    __slots__ = ("values",)

    def __init__(self, values):
        self.values = _as(values, np.int64, "Time.values")

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def from_list(cls, values: Iterable[_dt.datetime | None]) -> Time:
        """A column of timezone-aware datetimes as epoch milliseconds; None → NO_NUM.

        Raises BatchError for a naive datetime."""
        out = []
        for v in values:
            if v is None:
                out.append(NO_NUM)
            else:
                if v.tzinfo is None:
                    raise BatchError("Time.from_list: naive datetime; give a timezone")
                out.append(int(v.timestamp() * 1000))
        return cls(np.array(out, dtype=np.int64))

    def _check(self, where: str) -> None:
        v = self.values
        bad = (v != NO_NUM) & ((v < _MIN_DAYS * 86_400_000) | (v > _MAX_TIME_MS))
        if bad.any():
            i = int(np.argmax(bad))
            raise BatchError(f"{where}: row {i}: {int(v[i])} ms is outside years 1..9999")


class Cat(Column):
    """Small-domain codes: uint16 `codes` into `labels`; labels[0] is "" (missing)."""

    kind = "cat"
    __slots__ = ("codes", "labels")

    def __init__(self, codes, labels: Sequence[str]):
        self.codes = _as(codes, np.uint16, "Cat.codes")
        self.labels = tuple(labels)

    def __len__(self) -> int:
        return len(self.codes)

    @classmethod
    def from_list(cls, values: Iterable[str | None], labels: Sequence[str] | None = None) -> Cat:
        """A column of labels coded against `labels` (default: "" then the sorted distinct values);
        None → "" (code 0). Raises BatchError for a value not among `labels`."""
        texts = ["" if v is None else v for v in values]
        if labels is None:
            labels = [""] + sorted(set(texts) - {""})
        index = {lab: i for i, lab in enumerate(labels)}
        try:
            codes = [index[v] for v in texts]
        except KeyError as e:
            raise BatchError(f"Cat.from_list: {e.args[0]!r} is not one of the labels") from None
        return cls(np.array(codes, dtype=np.uint16), labels)

    def label(self, i: int) -> str:
        """The label of row `i`."""
        return self.labels[int(self.codes[i])]

    def to_list(self) -> list[str]:
        """Every row's label ("" where missing)."""
        return [self.labels[c] for c in self.codes.tolist()]

    def _check(self, where: str) -> None:
        if not self.labels or self.labels[0] != "":
            raise BatchError(f"{where}: Cat labels must start with '' (the missing label)")
        if len(self.labels) > 65535:
            raise BatchError(f"{where}: Cat has {len(self.labels)} labels, more than 65535")
        if len(self.codes) and int(self.codes.max()) >= len(self.labels):
            i = int(np.argmax(self.codes >= len(self.labels)))
            raise BatchError(
                f"{where}: row {i}: code {int(self.codes[i])} is not below {len(self.labels)} labels"
            )


# The five kinds a column can be: annotations that take "any column" use this union, so an
# isinstance() test narrows it (the base class Column has none of the kinds' arrays).
AnyColumn: TypeAlias = Str | Cat | Date | Num | Time


class Table:
    """Equal-length named columns plus links to child tables.

    `links` maps a child table's name to int64 offsets (n+1): the child rows
    of row i are offsets[i]..offsets[i+1]. Validated here, once.
    """

    __slots__ = ("name", "n", "columns", "links", "__weakref__")

    def __init__(
        self,
        name: str,
        columns: Mapping[str, AnyColumn],
        links: Mapping[str, np.ndarray] | None = None,
        n: int | None = None,
        *,
        check: bool = True,
    ):
        self.name = name
        self.columns: dict[str, AnyColumn] = dict(columns)
        self.links = {k: _as(v, np.int64, f"{name}.links[{k}]") for k, v in (links or {}).items()}
        if n is None:
            if self.columns:
                n = len(next(iter(self.columns.values())))
            elif self.links:
                n = len(next(iter(self.links.values()))) - 1
            else:
                n = 0
        self.n = int(n)
        if check:
            self.validate()

    def validate(self) -> None:
        """Check every column's length and values and the link offsets; raises BatchError naming
        `table.column` (or `table.links[child]`) and the fault."""
        for cname, col in self.columns.items():
            where = f"{self.name}.{cname}"
            if not isinstance(col, Column):
                raise BatchError(f"{where}: {type(col).__name__} is not a column")
            if len(col) != self.n:
                raise BatchError(f"{where}: {len(col)} rows, table has {self.n}")
            col._check(where)
        for child, off in self.links.items():
            where = f"{self.name}.links[{child}]"
            if len(off) != self.n + 1:
                raise BatchError(f"{where}: {len(off)} offsets, expected {self.n + 1}")
            if len(off) > 1 and (off[0] < 0 or np.any(off[1:] < off[:-1])):
                raise BatchError(f"{where}: offsets must be non-negative and non-decreasing")

    def check_links(self, tables: Mapping[str, Table]) -> None:
        """Check that every link points inside its child table."""
        for child, off in self.links.items():
            if child not in tables:
                raise BatchError(f"{self.name}: link to unknown table {child!r}")
            if len(off) and off[-1] > tables[child].n:
                raise BatchError(
                    f"{self.name}.links[{child}]: offset {int(off[-1])} is past {tables[child].n} rows"
                )

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, name: str) -> Any:
        # Any, not Column: a column's kind comes from the table's schema at run time (and is
        # checked by validate() and the template binder), so callers use Str/Num/... members.
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(f"{self.name} has no column {name!r}") from None

    def __repr__(self) -> str:
        return f"Table({self.name!r}, n={self.n}, columns={len(self.columns)}, links={list(self.links)})"
