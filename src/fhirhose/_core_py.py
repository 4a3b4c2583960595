"""Pure-Python twin of the compiled core (ext/_core.pyx).

Same names, same bytes, same errors. It is the readable specification of the
interpreter: tests run both and hypothesis asserts they agree byte for byte.
It is slow on purpose of clarity; the package falls back to it only when the
extension is not built (FHIRHOSE_PURE=1).
"""

from __future__ import annotations

import numpy as np

from .columns import NO_DATE, NO_NUM, Cat, Num, Str
from .errors import TemplateError
from .template.plan import (
    MAX_COUNTERS,
    MAX_DEPTH,
    OP_CAT,
    OP_CLOSE,
    OP_CONST,
    OP_DATE,
    OP_EACH,
    OP_END,
    OP_IFCAT,
    OP_IFHAS,
    OP_IFMISSING,
    OP_MAP,
    OP_NEXT,
    OP_NUM,
    OP_OPEN,
    OP_RAW,
    OP_SEQ,
    OP_SEQ_STRONG,
    OP_STR,
    OP_TICK,
    OP_TIME,
    Plan,
)

__all__ = ["OutBuffer", "Writer", "format_date", "format_time", "format_num", "escape_utf8", "count_newlines"]

_ESCAPES = {0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f", 0x0D: b"\\r", 0x22: b'\\"', 0x5C: b"\\\\"}


def escape_utf8(raw: bytes) -> bytes:
    """JSON string content for UTF-8 bytes: escape '"', '\\' and controls; keep the rest."""
    out = bytearray()
    for b in raw:
        if b < 0x20 or b == 0x22 or b == 0x5C:
            out += _ESCAPES.get(b) or b"\\u%04x" % b
        else:
            out.append(b)
    return bytes(out)


def count_newlines(data) -> int:
    """Number of b"\\n" bytes in `data` (any contiguous buffer)."""
    return bytes(data).count(b"\n") if not isinstance(data, bytes) else data.count(b"\n")


def _civil(days: int) -> tuple[int, int, int]:
    # Days since 1970-01-01 → (year, month, day), proleptic Gregorian
    # (H. Hinnant's civil_from_days; exact for every int32).
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def format_date(days: int) -> bytes:
    """YYYY-MM-DD for days since the epoch."""
    y, m, d = _civil(days)
    return b"%04d-%02d-%02d" % (y, m, d)


def format_time(ms: int) -> bytes:
    """FHIR instant, UTC, millisecond precision: YYYY-MM-DDThh:mm:ss.sss+00:00."""
    days, rem = divmod(ms, 86_400_000)
    secs, milli = divmod(rem, 1000)
    h, rest = divmod(secs, 3600)
    mi, s = divmod(rest, 60)
    return format_date(days) + b"T%02d:%02d:%02d.%03d+00:00" % (h, mi, s, milli)


def format_num(v: int, scale: int, trim: bool = False) -> bytes:
    """An exact decimal from a scaled int64: (12345, 2) → b'123.45';
    with `trim`, trailing fractional zeros go: (12500, 3, True) → b'12.5'."""
    sign = b"-" if v < 0 else b""
    mag = -v if v < 0 else v
    if scale == 0:
        return sign + b"%d" % mag
    whole, frac = divmod(mag, 10**scale)
    text = b"%d.%0*d" % (whole, scale, frac)
    if trim:
        text = text.rstrip(b"0").rstrip(b".")
    return sign + text


class OutBuffer(bytearray):
    """Growable output buffer, reused across batches (a bytearray: buffer protocol on 3.11)."""

    def __init__(self, capacity: int = 1 << 20):
        super().__init__()

    def getvalue(self) -> bytes:
        """A copy of the bytes written so far."""
        return bytes(self)

    def view(self) -> memoryview:
        """A zero-copy view of the bytes written so far (release it before `clear`)."""
        return memoryview(self)


class Writer:
    """Runs a bound `Plan`: `write(rows, out)` appends one NDJSON line per root row."""

    def __init__(self, plan: Plan):
        if len(plan.ops) % 4:
            raise TemplateError(f"{plan.name}: op array length {len(plan.ops)} is not a multiple of 4")
        self.plan = plan
        self._ops = plan.ops.tolist()
        self._frags = [bytes(f) for f in plan.frags]
        self._maps = plan.maps.tolist()
        self._sets = plan.sets.tolist()
        # Column accessors: plain lists/arrays, read per row.
        self._cols = []
        for ref in plan.columns:
            c = ref.column  # ref.kind is the code of c.kind (the binder's KIND_CODES)
            if isinstance(c, Str):
                self._cols.append((ref.kind, ref.slot, c.offsets, c.data, 0, ref.label_base))
            elif isinstance(c, Cat):
                self._cols.append((ref.kind, ref.slot, c.codes, None, 0, ref.label_base))
            elif isinstance(c, Num):
                self._cols.append((ref.kind, ref.slot, c.values, c.trim, c.scale, -1))
            else:
                self._cols.append((ref.kind, ref.slot, c.values, None, 0, -1))
        self._nlabels = [len(ref.column.labels) if isinstance(ref.column, Cat) else 0 for ref in plan.columns]
        self._links = [(lk.parent_slot, lk.child_slot, lk.offsets) for lk in plan.links]
        self.nslots = len(plan.tables)

    @property
    def name(self) -> str:
        """The bound template's name."""
        return self.plan.name

    def write(self, rows, out: OutBuffer) -> int:
        """Append the resources of root `rows` (int64 row numbers) to `out`; returns the count."""
        rows = np.asarray(rows, dtype=np.int64)
        n_root = self.plan.root.n
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= n_root):
            raise IndexError(f"{self.plan.name}: row numbers must be within 0..{n_root - 1}")
        buf = out
        for r in rows.tolist():
            self._one(r, buf)
        return len(rows)

    def write_range(self, start: int, stop: int, out: OutBuffer) -> int:
        """Append root rows start..stop-1."""
        return self.write(np.arange(start, stop, dtype=np.int64), out)

    def _code(self, a: int, r: int) -> int:
        """Cat column `a`'s code at row `r`, checked against its labels (tables of a store are
        trusted, not re-checked when opened: a damaged one must not index past them)."""
        code = int(self._cols[a][2][r])
        if code >= self._nlabels[a]:
            raise TemplateError(f"{self.plan.name}: a Cat code past its column's labels (a damaged table?)")
        return code

    def _value_missing(self, cid: int, row: list[int]) -> bool:
        kind, slot, a, b, scale, base = self._cols[cid]
        r = row[slot]
        if kind == 1:
            return a[r] == a[r + 1]
        if kind == 2:
            return a[r] == 0
        if kind == 3:
            return a[r] == NO_DATE
        return a[r] == NO_NUM

    def _one(self, root_row: int, buf: bytearray) -> None:
        ops, frags = self._ops, self._frags
        row = [0] * self.nslots
        end = [0] * self.nslots
        row[0] = root_row
        counters = [0] * MAX_COUNTERS
        strong = 0
        stack: list[tuple[int, int, list[int] | None]] = []

        def sep() -> None:
            if buf and buf[-1] not in b"{[":
                buf.append(0x2C)

        pc = 0
        while True:
            op, a, b, c = ops[pc], ops[pc + 1], ops[pc + 2], ops[pc + 3]
            pc += 4
            if op == OP_RAW:
                buf += frags[a]
            elif op == OP_CONST:
                sep()
                buf += frags[a]
                strong += b
            elif OP_STR <= op <= OP_TIME:
                if self._value_missing(a, row):
                    continue
                kind, slot, arr, data, scale, base = self._cols[a]
                r = row[slot]
                if op == OP_STR:
                    text = escape_utf8(bytes(data[arr[r] : arr[r + 1]]))
                elif op == OP_CAT:
                    text = frags[base + self._code(a, r)]
                elif op == OP_DATE:
                    text = format_date(int(arr[r]))
                elif op == OP_NUM:
                    text = format_num(int(arr[r]), scale, data)
                else:
                    text = format_time(int(arr[r]))
                sep()
                buf += frags[b]
                buf += text
                buf += frags[c]
                strong += 1
            elif op == OP_MAP:
                fid = self._maps[b + self._code(a, row[self._cols[a][1]])]
                if fid >= 0:
                    sep()
                    buf += frags[fid]
                    strong += 1
            elif op == OP_OPEN:
                if len(stack) >= MAX_DEPTH:
                    raise TemplateError(f"{self.plan.name}: nesting deeper than {MAX_DEPTH}")
                stack.append((len(buf), strong, counters[:] if b else None))
                sep()
                buf += frags[a]
                strong += c  # constants merged into the opening count as values
            elif op == OP_CLOSE:
                pos, before, saved = stack.pop()
                if strong == before:
                    del buf[pos:]
                    if saved is not None:
                        counters[:] = saved
                else:
                    buf += frags[a]
            elif op == OP_IFCAT:
                if not self._sets[b + self._code(a, row[self._cols[a][1]])]:
                    pc = c * 4
            elif op == OP_IFHAS:
                if self._value_missing(a, row):
                    pc = b * 4
            elif op == OP_IFMISSING:
                if not self._value_missing(a, row):
                    pc = b * 4
            elif op == OP_EACH:
                pslot, cslot, offsets = self._links[a]
                lo, hi = int(offsets[row[pslot]]), int(offsets[row[pslot] + 1])
                if lo >= hi:
                    pc = b * 4
                else:
                    row[cslot], end[cslot] = lo, hi
            elif op == OP_NEXT:
                cslot = self._links[a][1]
                row[cslot] += 1
                if row[cslot] < end[cslot]:
                    pc = b * 4
            elif op == OP_SEQ or op == OP_SEQ_STRONG:
                counters[a] += 1
                sep()
                buf += frags[b]
                buf += b"%d" % counters[a]
                buf += frags[c]
                if op == OP_SEQ_STRONG:
                    strong += 1
            elif op == OP_TICK:
                counters[a] += 1
            elif op == OP_END:
                return
            else:
                raise TemplateError(f"{self.plan.name}: bad op {op} at {pc // 4 - 1}")
