"""Assembling a synthetic dataset: the population, then the claims of each
chunk of `CHUNK` beneficiaries (`generate` in memory, `chunks` one at a time).
Claims of a chunk come from random streams keyed by (seed, table, chunk), so
`generate` and `writer.write` give the same data for the same seed."""

from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence, cast

import numpy as np

from ..columns import NO_DATE, Cat, Column, Date, Num, Str, Table, Time, date_to_days
from ..errors import InputError
from ..store import schema
from . import carrier, dme, institutional, pde, shared_system
from .kit import (
    date,
    rng_for,
    take,
    to_str,
)
from .orgs import SynthOrg, _org_tables
from .people import Pop, bene_table, population
from .presets import AS_OF, PRESETS
from .providers import Providers

CHUNK = 10_000


@dataclass
class SynthData:
    """Every store table (by name) and the organizations."""

    tables: dict[str, Table]
    orgs: list[SynthOrg]
    # Beneficiary-years of history: "all", "ffs" (not in Medicare Advantage), "partd".
    exposure: dict[str, float] = field(default_factory=dict)

    @property
    def claims(self) -> int:
        """Claim rows (every version) over the four claim tables."""
        return sum(self.tables[t].n for t in schema.CLAIM_TABLES)



# ---- assembly ------------------------------------------------------------------------------------

# The generator of each NCH claim table: header columns, child tables, beneficiary row of each
# claim. The shared-system tables (`shared_system`) are derived from the NCH ones of the chunk.
_FAMILIES = {"parta": institutional.parta, "partb": carrier.carrier, "dme": dme.dme, "pde": pde.pde}


def _chunk(pop: Pop, prov: Providers, chunk: int) -> dict[str, tuple[Table, np.ndarray]]:
    """The claim and child tables of one chunk of beneficiaries, each claim
    table with the beneficiary-row counts (for the bene links)."""
    lo, hi = chunk * CHUNK, min(pop.n, (chunk + 1) * CHUNK)
    rows = np.arange(lo, hi)
    out: dict[str, tuple[Table, np.ndarray]] = {}
    for table in schema.CLAIM_TABLES:  # per claim table; the NCH ones first
        if table in _FAMILIES:
            head, children, vb = _FAMILIES[table](pop, prov, rows, chunk)
        else:  # the shared-system feed: earlier versions of the chunk's NCH claims, and newer ones
            nch_name = shared_system.SOURCE_OF[table]
            nch, counts = out[nch_name]
            head, children, vb = shared_system.shared_system(
                table, pop, rows, chunk, nch, {c: out[c][0] for c in schema.LINKS[nch_name]},
                np.repeat(rows, counts))
        links = {}
        for child, (cols, off) in children.items():  # per child table
            links[child] = off
            out[child] = (schema.complete(child, cols, int(off[-1]), check=False), np.zeros(0, np.int64))  # no counts
        header = schema.complete(table, head, len(vb), links, check=False)
        out[table] = (header, np.bincount(vb - lo, minlength=hi - lo))
    return out


def _concat_columns(cols: Sequence[Column]) -> Column:
    """Columns of one kind (the same table's column in consecutive chunks) as one."""
    first = cols[0]
    if isinstance(first, Str):
        strs = cast(Sequence[Str], cols)
        shifts = np.cumsum(np.array([0] + [int(c.offsets[-1] - c.offsets[0]) for c in strs[:-1]], np.int64))
        tails = [c.offsets[1:] - c.offsets[0] + s for c, s in zip(strs, shifts)]
        offsets = np.concatenate([strs[0].offsets[:1]] + tails)
        return Str(offsets - offsets[0], np.concatenate([c.data[c.offsets[0] : c.offsets[-1]] for c in strs]))
    if isinstance(first, Cat):
        return Cat(np.concatenate([c.codes for c in cast(Sequence[Cat], cols)]), first.labels)
    if isinstance(first, Num):
        return Num(np.concatenate([c.values for c in cast(Sequence[Num], cols)]), first.scale, first.trim)
    if isinstance(first, (Date, Time)):
        return type(first)(np.concatenate([c.values for c in cast(Sequence[Date | Time], cols)]))
    raise TypeError(f"unknown column kind {type(first).__name__}")


def _concat_tables(name: str, parts: Sequence[Table]) -> Table:
    """Tables of consecutive chunks as one; links are shifted to stay absolute."""
    if len(parts) == 1:
        return parts[0]
    links = {}
    for child in schema.LINKS.get(name, ()):
        base = 0
        offs = [np.zeros(1, np.int64)]
        for t in parts:
            off = t.links[child]
            offs.append(off[1:] - off[0] + base)
            base += int(off[-1] - off[0])
        links[child] = np.concatenate(offs)
    cols = {c: _concat_columns([t.columns[c] for t in parts]) for c in parts[0].columns}
    return Table(name, cols, links, sum(t.n for t in parts), check=False)


def _offsets(counts: np.ndarray) -> np.ndarray:
    off = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=off[1:])
    return off


def _bene_mbi(pop: Pop) -> tuple[Table, np.ndarray]:
    """CCLF9: the previous MBI of beneficiaries whose MBI changed."""
    rows = np.nonzero(pop.mbi_change != NO_DATE)[0]
    rng = rng_for(pop.seed, "bene", "mbi_history")
    rollout = date_to_days(dt.date(2018, 4, 1))
    efctv = np.minimum(rollout + rng.integers(0, 630, len(rows)), pop.mbi_change[rows] - 1)
    table = schema.complete("bene_mbi", {
        "crnt_num": to_str(take(pop.mbi, rows)),
        "prvs_num": to_str(take(pop.prev_mbi, rows)),
        "prvs_id_efctv_dt": date(efctv),
        "prvs_id_obslt_dt": date(pop.mbi_change[rows] - 1),
    }, len(rows))
    return table, np.bincount(rows, minlength=pop.n)


class _Progress:
    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total, self.t0, self.claims = enabled, total, time.perf_counter(), 0

    def step(self, done: int, claims: int) -> None:
        self.claims += claims
        if self.enabled:
            rate = self.claims / max(time.perf_counter() - self.t0, 1e-9)
            print(f"synth: {done:,}/{self.total:,} beneficiaries, {self.claims:,} claims, {rate:,.0f} claims/s",
                  file=sys.stderr, flush=True)


def _setup(n: int | None, seed: int, preset: str, as_of: dt.date) -> tuple[Pop, Providers]:
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    p = PRESETS[preset]
    n = p.benes if n is None else int(n)
    if n < 1:
        raise InputError(f"--benes must be at least 1, got {n}")
    return population(n, seed, p, as_of), Providers(seed)


def _chunks(
    pop: Pop, prov: Providers, progress: bool
) -> Iterator[tuple[range, dict[str, Table], dict[str, np.ndarray]]]:
    bar = _Progress(progress, pop.n)
    for c in range(-(-pop.n // CHUNK)):
        res = _chunk(pop, prov, c)
        rows = range(c * CHUNK, min(pop.n, (c + 1) * CHUNK))
        bar.step(rows.stop, sum(res[t][0].n for t in schema.CLAIM_TABLES))
        yield rows, {k: v[0] for k, v in res.items()}, {t: res[t][1] for t in schema.CLAIM_TABLES}


def chunks(
    n: int | None = None, seed: int = 0, *, preset: str = "default", as_of: dt.date = AS_OF, progress: bool = False
) -> Iterator[tuple[range, dict[str, Table]]]:
    """The claim tables of `generate`'s dataset, `CHUNK` beneficiaries at a
    time: (beneficiary rows, claim and child tables linked among themselves;
    `bene_mbi_id` names each claim's beneficiary)."""
    pop, prov = _setup(n, seed, preset, as_of)
    for rows, tables, _ in _chunks(pop, prov, progress):
        yield rows, tables


def generate(
    n: int | None = None,
    seed: int = 0,
    *,
    preset: str = "default",
    as_of: dt.date = AS_OF,
    progress: bool = False,
) -> SynthData:
    """Generate `n` beneficiaries (the preset's size if None) with their claims
    and organizations, in memory. Same arguments, same arrays."""
    pop, prov = _setup(n, seed, preset, as_of)
    parts: dict[str, list[Table]] = {}
    counts: dict[str, list[np.ndarray]] = {t: [] for t in schema.CLAIM_TABLES}
    for _, tables, cnt in _chunks(pop, prov, progress):
        for name, t in tables.items():
            parts.setdefault(name, []).append(t)
        for name, c in cnt.items():
            counts[name].append(c)
    tables = {name: _concat_tables(name, p) for name, p in parts.items()}
    mbi_table, mbi_counts = _bene_mbi(pop)
    tables["bene_mbi"] = mbi_table
    links = {t: _offsets(np.concatenate(counts[t])) for t in schema.CLAIM_TABLES}
    links["bene_mbi"] = _offsets(mbi_counts)
    tables["bene"] = bene_table(pop, links)
    org_tables, orgs = _org_tables(pop)
    tables.update(org_tables)
    for t in tables.values():
        t.validate()
        t.check_links(tables)
    return SynthData({name: tables[name] for name in schema.TABLES}, orgs, _exposure(pop))


def _exposure(pop: Pop) -> dict[str, float]:
    years = pop.years
    return {"all": float(years.sum()), "ffs": float(years[pop.ffs].sum()), "partd": float(years[pop.ptd >= 0].sum())}


def organizations(
    n: int | None = None, seed: int = 0, *, preset: str = "default", as_of: dt.date = AS_OF
) -> tuple[dict[str, Table], list[SynthOrg]]:
    """Only the organizations and their tables (roster, optout, enroll) of the
    dataset `generate` would build with the same arguments: cheap, no claims."""
    pop, _ = _setup(n, seed, preset, as_of)
    return _org_tables(pop)


