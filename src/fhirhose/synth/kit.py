"""Vectorized building blocks for the synthetic generator.

Strings are built as `Txt`: a uint8 matrix (one left-aligned row per value)
plus the byte length of each row. Every operation (sampling a vocabulary by
index, formatting digits, concatenating parts row-wise, blanking rows) is a
few whole-array numpy operations, and `to_str` packs the valid bytes into
the store's offsets + bytes layout with one boolean mask: row-major order of
the mask is exactly the output order, so a row-wise concatenation of parts is
just their matrices side by side.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..columns import NO_DATE, Cat, Date, Num, Str

DAY_MS = 86_400_000
_MONEY = 2
_QTY = 4


class Txt(NamedTuple):
    """Strings as a left-aligned byte matrix (n, width) and lengths (n,)."""

    mat: np.ndarray
    lens: np.ndarray

    def __len__(self) -> int:
        return len(self.lens)


def rng_for(seed: int, *key: str | int) -> np.random.Generator:
    """An independent, reproducible stream per (seed, key): adding a column or
    a table never shifts the random numbers another one draws."""
    spawn = tuple(zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in key)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=spawn)))


def vocab(words: Sequence[str]) -> Txt:
    """A vocabulary to sample by index (`take`)."""
    enc = [w.encode("utf-8") for w in words]
    width = max((len(b) for b in enc), default=0) or 1
    mat = np.zeros((len(enc), width), np.uint8)
    for i, b in enumerate(enc):  # once per vocabulary entry, at import time
        mat[i, : len(b)] = np.frombuffer(b, np.uint8)
    return Txt(mat, np.array([len(b) for b in enc], np.int64))


def take(t: Txt, idx: np.ndarray) -> Txt:
    return Txt(t.mat[idx], t.lens[idx])


def const(s: str, n: int) -> Txt:
    b = np.frombuffer(s.encode("utf-8"), np.uint8)
    return Txt(np.broadcast_to(b, (n, len(b))), np.full(n, len(b), np.int64))


_DIGITS4 = np.array([[ord(c) for c in f"{i:04d}"] for i in range(10_000)], np.uint8)


def digits(values: np.ndarray, width: int) -> Txt:
    """Non-negative integers as zero-padded decimal strings of `width` (at most 18),
    four digits per table lookup."""
    v = np.asarray(values, np.int64)
    groups = -(-width // 4)
    blocks = [_DIGITS4[(v // 10 ** (4 * g)) % 10_000] for g in range(groups - 1, -1, -1)]
    mat = np.concatenate(blocks, axis=1)[:, groups * 4 - width :] if groups > 1 else blocks[0][:, 4 - width :]
    return Txt(mat, np.full(len(v), width, np.int64))


def number(values: np.ndarray, width: int = 19) -> Txt:
    """Non-negative integers in plain decimal (no padding)."""
    v = np.asarray(values, np.int64)
    padded = digits(v, width).mat
    nd = 1 + np.searchsorted(10 ** np.arange(1, width, dtype=np.int64), v, side="right")
    cols = np.arange(width)[None, :] + (width - nd)[:, None]
    mat = np.take_along_axis(padded, np.minimum(cols, width - 1), axis=1)
    return Txt(mat, nd)


def concat(*parts: Txt | str) -> Txt:
    """Row-wise concatenation; a `str` part is a constant on every row."""
    n = next(len(p) for p in parts if isinstance(p, Txt))
    ts = [const(p, n) if isinstance(p, str) else p for p in parts]
    mat = np.concatenate([np.asarray(t.mat) for t in ts], axis=1)
    if all(len(t) == 0 or int(t.lens.min()) == t.mat.shape[1] for t in ts):  # fixed widths: side by side
        return Txt(mat, np.full(n, mat.shape[1], np.int64))
    valid = np.concatenate([np.arange(t.mat.shape[1])[None, :] < t.lens[:, None] for t in ts], axis=1)
    lens = np.sum([t.lens for t in ts], axis=0)
    width = max(int(lens.max()) if n else 0, 1)
    # Left-align: each valid byte moves to the count of valid bytes before it.
    dest = np.cumsum(valid, axis=1) - 1
    rows = np.nonzero(valid)[0]
    out = np.zeros((n, width), np.uint8)
    out[rows, dest[valid]] = mat[valid]
    return Txt(out, lens)


def blank(t: Txt, mask: np.ndarray) -> Txt:
    """Rows where `mask` is true become empty (missing)."""
    return Txt(t.mat, np.where(mask, 0, t.lens))


def to_str(t: Txt) -> Str:
    lens = np.asarray(t.lens, np.int64)
    offsets = np.zeros(len(lens) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    w = t.mat.shape[1]
    if len(lens) and int(lens.min()) == w:
        data = np.ascontiguousarray(t.mat).reshape(-1)
    else:
        data = np.asarray(t.mat)[np.arange(w)[None, :] < lens[:, None]]
    return Str(offsets, data)


# ---- sampling ---------------------------------------------------------------


def choose(rng: np.random.Generator, weights: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """n indices drawn with the given (unnormalized) weights."""
    cw = np.cumsum(np.asarray(weights, np.float64))
    return np.minimum(np.searchsorted(cw, rng.random(n) * cw[-1], side="right"), len(cw) - 1)


class Pools:
    """Per-profile pools of indices (padded 2-D), sampled by profile id; an
    entry repeated k times is k times as likely."""

    def __init__(self, pools: Sequence[Sequence[int]]):
        width = max(max(len(p) for p in pools), 1)
        self.table = np.zeros((len(pools), width), np.int64)
        self.size = np.array([len(p) for p in pools], np.int64)
        for i, p in enumerate(pools):  # once per profile, at import time
            self.table[i, : len(p)] = p

    def draw(self, rng: np.random.Generator | np.ndarray, profile: np.ndarray) -> np.ndarray:
        """One entry per row of its profile's pool; `rng` may be given uniforms."""
        u = rng.random(len(profile)) if isinstance(rng, np.random.Generator) else rng
        pick = (u * self.size[profile]).astype(np.int64)
        return self.table[profile, pick]


def hashed_uniform(first: np.ndarray, *keys: np.ndarray | int) -> np.ndarray:
    """Uniforms in [0, 1) that are a fixed function of integer keys: the same
    stay gets the same facility and diagnosis on each of its monthly claims."""
    h = np.full(len(first), 0x9E3779B97F4A7C15, np.uint64)
    for k in (first, *keys):
        h = (h ^ np.asarray(k).astype(np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For groups of `counts`: (offsets n+1, group of each element, index within group)."""
    counts = np.asarray(counts, np.int64)
    off = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=off[1:])
    group = np.repeat(np.arange(len(counts)), counts)
    within = np.arange(off[-1]) - off[:-1][group]
    return off, group, within


def ragged_take(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ranges starts[i] .. starts[i]+counts[i]."""
    _, group, within = ragged(counts)
    return np.asarray(starts, np.int64)[group] + within


# ---- identifiers ------------------------------------------------------------

_NPI_PREFIX_SUM = 24  # Luhn contribution of the card-issuer prefix 80840 (CMS NPI rule)


def npi(base9: np.ndarray) -> np.ndarray:
    """10-digit NPIs from 9-digit bases: Luhn check digit over '80840' + base."""
    d = digits(base9, 9).mat.astype(np.int64) - 48
    # Positions counted from the right of the 15-digit number without its
    # check digit: the base's last digit is doubled, then every other one.
    dbl = d[:, ::-2] * 2
    s = (dbl // 10 + dbl % 10).sum(axis=1) + d[:, -2::-2].sum(axis=1) + _NPI_PREFIX_SUM
    check = (10 - s % 10) % 10
    return np.asarray(base9, np.int64) * 10 + check


# MBI character rules (CMS "Understanding the Medicare Beneficiary Identifier
# Format"): position 1 digit 1-9; 2, 5, 8, 9 letters without S L O I B Z;
# 3 and 6 letters-or-digits; 4, 7, 10, 11 digits 0-9.
_ALPHA = np.frombuffer(b"ACDEFGHJKMNPQRTUVWXY", np.uint8)
_ALNUM = np.frombuffer(b"0123456789ACDEFGHJKMNPQRTUVWXY", np.uint8)
_DIGIT = np.frombuffer(b"0123456789", np.uint8)
_NZDIGIT = np.frombuffer(b"123456789", np.uint8)
_MBI_ALPHABETS = (_NZDIGIT, _ALPHA, _ALNUM, _DIGIT, _ALPHA, _ALNUM, _DIGIT, _ALPHA, _ALPHA, _DIGIT, _DIGIT)
MBI_SPACE = 1
for _a in _MBI_ALPHABETS:
    MBI_SPACE *= len(_a)


def _mulmod(k: np.ndarray, a: int, m: int) -> np.ndarray:
    """(k * a) % m in uint64 without overflow, for k < m < 2**44 and a < m."""
    hi, lo = divmod(a, 1 << 20)
    um = np.uint64(m)
    x = (k * np.uint64(hi)) % um
    x = (x * np.uint64(1 << 20)) % um
    return (x + (k * np.uint64(lo)) % um) % um


# Multiplier near space/golden ratio, made coprime to 30 (the space factors
# into 2, 3 and 5 only), so the affine map is a bijection that scatters
# consecutive keys across the whole space.
_MBI_MULT = int(MBI_SPACE * 0.6180339887) | 1
while _MBI_MULT % 3 == 0 or _MBI_MULT % 5 == 0:
    _MBI_MULT += 2


def mbi(keys: np.ndarray, seed: int) -> Txt:
    """MBIs as a bijection of distinct non-negative keys (affine map modulo
    the size of the MBI space, then mixed-radix digits in the MBI alphabets):
    distinct keys never collide."""
    space = np.uint64(MBI_SPACE)
    shift = np.uint64((seed * 1_000_003 + 12_345) % MBI_SPACE)
    k = np.asarray(keys, np.uint64) % space
    v = (_mulmod(k, _MBI_MULT, MBI_SPACE) + shift) % space
    cols = []
    for alphabet in reversed(_MBI_ALPHABETS):
        base = np.uint64(len(alphabet))
        cols.append(alphabet[(v % base).astype(np.int64)])
        v = v // base
    mat = np.stack(cols[::-1], axis=1)
    return Txt(mat, np.full(len(mat), 11, np.int64))


# ---- columns ----------------------------------------------------------------


def cat(labels: Sequence[str], idx: np.ndarray, missing: np.ndarray | None = None) -> Cat:
    """A Cat column over `labels` (domain without the missing label) from
    0-based indices; `missing` rows get the missing code."""
    codes = np.asarray(idx, np.int64) + 1
    if missing is not None:
        codes = np.where(missing, 0, codes)
    return Cat(codes.astype(np.uint16), ("",) + tuple(labels))


def money(cents: np.ndarray) -> Num:
    return Num(np.asarray(cents, np.int64), _MONEY)


def qty(values: np.ndarray) -> Num:
    """Quantities given as float or int units → scale 4, trimmed."""
    return Num(np.rint(np.asarray(values, np.float64) * 10**_QTY).astype(np.int64), _QTY, trim=True)


def integer(values: np.ndarray) -> Num:
    return Num(np.asarray(values, np.int64), 0)


def date(days: np.ndarray, missing: np.ndarray | None = None) -> Date:
    d = np.asarray(days, np.int32)
    if missing is not None:
        d = np.where(missing, np.int32(NO_DATE), d)
    return Date(d)


def year_of(days: np.ndarray) -> np.ndarray:
    return np.asarray(days, np.int64).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def month_of(days: np.ndarray) -> np.ndarray:
    """0-based month index since 1970-01 (year*12 + month - 1 - 1970*12)."""
    return np.asarray(days, np.int64).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def month_start(months: np.ndarray) -> np.ndarray:
    return np.asarray(months, np.int64).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def jan1_of(years: np.ndarray) -> np.ndarray:
    """Day number of January 1 of each year."""
    return (np.asarray(years, np.int64) - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)


def ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month (1-12) and day of month of day numbers."""
    d = np.asarray(days, np.int64).astype("datetime64[D]")
    y = d.astype("datetime64[Y]").astype(np.int64) + 1970
    m = d.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (d - d.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    return y, m, day
