"""Vectorized column operations the store and the CCLF reader share.

Everything here works on whole arrays (no per-row Python), so merging a load
into a multi-million-row store costs a few numpy passes per column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast, overload

import numpy as np

from ..columns import AnyColumn, Cat, Date, Num, Str, Time

_BLANK = np.array([32, 0], np.uint8)


def ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of arange(starts[i], stops[i]) for all i, without a Python loop."""
    starts = np.asarray(starts, np.int64)
    counts = np.asarray(stops, np.int64) - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    # Each output position = its run's start + position within the run.
    base = np.repeat(starts - (ends - counts), counts)
    return base + np.arange(total, dtype=np.int64)


def offsets_from_counts(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


@overload
def take(col: Str, idx: np.ndarray) -> Str: ...
@overload
def take(col: AnyColumn, idx: np.ndarray) -> AnyColumn: ...
def take(col: AnyColumn, idx: np.ndarray) -> AnyColumn:
    """Rows `idx` of a column, as a new in-memory column."""
    idx = np.asarray(idx, np.int64)
    if isinstance(col, Str):
        off = col.offsets
        starts, stops = off[idx], off[idx + 1]
        return Str(offsets_from_counts(stops - starts), col.data[ranges(starts, stops)])
    if isinstance(col, Cat):
        return Cat(col.codes[idx], col.labels)
    if isinstance(col, Num):
        return Num(col.values[idx], col.scale, col.trim)
    return type(col)(col.values[idx])


def concat(cols: Sequence[AnyColumn]) -> AnyColumn:
    """Columns of one kind, end to end. Cat labels are united keeping the first
    column's order, so its codes (and a hard-linked file of them) stay valid."""
    first = cols[0]
    if len(cols) == 1:
        return first
    if isinstance(first, Str):
        parts, datas, base = [np.zeros(1, np.int64)], [], 0
        for c in cast(Sequence[Str], cols):  # one kind: the first's (see docstring)
            o = c.offsets
            parts.append(o[1:] - o[0] + base)
            datas.append(c.data[o[0] : o[-1]])
            base += int(o[-1] - o[0])
        return Str(np.concatenate(parts), np.concatenate(datas) if datas else np.zeros(0, np.uint8))
    if isinstance(first, Cat):
        labels = list(first.labels)
        index = {lab: i for i, lab in enumerate(labels)}
        codes = []
        for cat in cast(Sequence[Cat], cols):  # one kind: the first's
            remap = np.empty(len(cat.labels), np.uint16)
            for i, lab in enumerate(cat.labels):
                if lab not in index:
                    index[lab] = len(labels)
                    labels.append(lab)
                remap[i] = index[lab]
            codes.append(remap[cat.codes] if len(cat.codes) else cat.codes)
        return Cat(np.concatenate(codes), labels)
    values = np.concatenate([c.values for c in cast(Sequence[Date | Num | Time], cols)])  # one kind
    if isinstance(first, Num):
        return Num(values, first.scale, first.trim)
    return type(first)(values)


def const_str(value: str, n: int) -> Str:
    """A Str of n copies of one value."""
    b = np.frombuffer(value.encode("utf-8"), np.uint8)
    return Str(np.arange(n + 1, dtype=np.int64) * len(b), np.tile(b, n))


def str_from_matrix(m: np.ndarray) -> Str:
    """Fixed-width text fields (an n × w uint8 matrix, blank or NUL padded) as a Str,
    stripped of leading and trailing blanks."""
    n, w = m.shape
    solid = m > 32  # neither blank nor NUL (callers have rejected other control bytes)
    anyv = solid.any(axis=1)
    if w == 0 or n == 0 or not anyv.any():
        return Str(np.zeros(n + 1, np.int64), np.zeros(0, np.uint8))
    last = np.where(anyv, w - solid[:, ::-1].argmax(axis=1), 0)
    j = np.arange(w)
    if (solid[:, 0] | ~anyv).all():  # left-aligned text, the usual case: only trailing blanks
        return Str(offsets_from_counts(last), m[j < last[:, None]])
    first = np.where(anyv, solid.argmax(axis=1), 0)
    keep = (j >= first[:, None]) & (j < last[:, None])
    return Str(offsets_from_counts(last - first), m[keep])


def fixed(col: Str, width: int | None = None) -> np.ndarray:
    """A Str as a numpy bytes array (dtype S<width>), for sorting and lookups."""
    off = col.offsets
    lens = off[1:] - off[:-1]
    n = len(lens)
    w = int(lens.max()) if width is None and n else (width or 1)
    w = max(w, 1)
    m = np.zeros((n, w), np.uint8)
    if n:
        j = np.arange(w)
        mask = j < np.minimum(lens, w)[:, None]
        m[mask] = col.data[(off[:-1, None] + j)[mask]]
    return m.view(f"S{w}").reshape(n)


def str_from_bytes(values: np.ndarray) -> Str:
    """A numpy bytes array (dtype S<w>) as a Str (NUL padding dropped)."""
    n = len(values)
    w = values.dtype.itemsize
    if n == 0 or w == 0:
        return Str(np.zeros(n + 1, np.int64), np.zeros(0, np.uint8))
    return str_from_matrix(np.ascontiguousarray(values).view(np.uint8).reshape(n, w))


def cat_from_bytes(values: np.ndarray, labels: Sequence[str] = ("",)) -> Cat:
    """A numpy bytes array as a Cat; empty is code 0. Known `labels` keep their codes."""
    uniq, inv = np.unique(values, return_inverse=True)
    labs = list(labels)
    index = {lab: i for i, lab in enumerate(labs)}
    remap = np.empty(len(uniq), np.uint16)
    for i, u in enumerate(uniq.tolist()):
        lab = u.decode("utf-8").strip()
        if lab not in index:
            index[lab] = len(labs)
            labs.append(lab)
        remap[i] = index[lab]
    return Cat(remap[inv.reshape(-1)] if len(values) else np.zeros(0, np.uint16), labs)


def cat_values(col: Cat) -> np.ndarray:
    """A Cat's labels per row as a numpy bytes array."""
    lab = np.array([s.encode("utf-8") for s in col.labels], dtype=object).astype(bytes)
    return lab[col.codes]


def set_cat(labels: Sequence[str], values: np.ndarray) -> Cat:
    """A Cat over fixed `labels` from a bytes array whose values are all labels."""
    lab = np.array([s.encode() for s in labels])
    order = np.argsort(lab)
    pos = np.searchsorted(lab[order], values)
    return Cat(order[pos].astype(np.uint16), labels)


def fnv64(m: np.ndarray, skip_nul: np.ndarray | None = None) -> np.ndarray:
    """FNV-1a 64-bit hash of each row of an n × w uint8 matrix (stable across runs).
    Columns flagged in `skip_nul` do not hash their NUL bytes (padding)."""
    h = np.full(m.shape[0], 0xCBF29CE484222325, np.uint64)
    prime = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        for j in range(m.shape[1]):
            col = m[:, j].astype(np.uint64)
            nxt = (h ^ col) * prime
            h = np.where(col != 0, nxt, h) if skip_nul is not None and skip_nul[j] else nxt
    return h


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def hex64(h: np.ndarray) -> Str:
    """uint64 values as 16 lower-case hex digits each."""
    n = len(h)
    b = h.astype(">u8").view(np.uint8).reshape(n, 8)
    out = np.empty((n, 16), np.uint8)
    out[:, 0::2] = _HEX[b >> 4]
    out[:, 1::2] = _HEX[b & 15]
    return Str(np.arange(n + 1, dtype=np.int64) * 16, out.reshape(-1))


def matrix(p: np.ndarray) -> np.ndarray:
    """An n × w uint8 view of a bytes array (NUL padded) or of integers (big-endian)."""
    p = np.asarray(p)
    if p.dtype.kind in "iub":
        p = p.astype(">i8")
    p = np.ascontiguousarray(p)
    return p.view(np.uint8).reshape(len(p), p.dtype.itemsize)


def rowkey(*parts: np.ndarray) -> np.ndarray:
    """One sortable bytes value per row from several fixed-width parts.

    A trailing 0x01 keeps numpy from stripping NUL padding, so keys compare
    exactly as the concatenated fixed-width parts."""
    n = len(parts[0])
    m = np.concatenate([matrix(p) for p in parts] + [np.ones((n, 1), np.uint8)], axis=1)
    return np.ascontiguousarray(m).view(f"S{m.shape[1]}").reshape(n)
