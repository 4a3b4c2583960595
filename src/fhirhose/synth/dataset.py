"""Synthetic Medicare claims: realistic, deterministic per seed, vectorized.

`generate(n, seed)` builds every store table (schema-complete, sorted by
beneficiary, links filled) plus the organizations that read them: ACOs with
attribution rosters (BCDA), Part D sponsor contracts with monthly enrollment
(AB2D), and 1-800-MEDICARE data-sharing preferences.

Utilization per beneficiary-year (sources):
- carrier 14, outpatient 2.3, inpatient 0.2, Part D events 16: CMS 2008-2010
  DE-SynPUF record counts per beneficiary-year ("Number of Records" table,
  cms.gov .../SynPUFs/DE_Syn_PUF). DE-SynPUF counts every beneficiary,
  Medicare Advantage enrollees included (they have no FFS claims), so the
  generator gives FFS enrollees RATE/FFS share and Part D enrollees
  RATE/Part D share, which keeps the all-beneficiary rates above.
- SNF 0.06 stays per FFS beneficiary-year, billed monthly (~0.09 claims):
  MedPAC March 2019 report ch. 8, 2.3 million covered stays for 1.6 million
  of ~38 million FFS beneficiaries in 2018.
- hospice: about half of decedents (MedPAC March 2019 ch. 12: 1.5 million
  users in 2017, "more than half of decedents"), median stay 18 days and
  mean ~90 (same chapter), billed monthly.
- home health 0.17 claims per FFS beneficiary-year: MedPAC March 2019
  ch. 9, ~3.4 million users and 6.3 million 60-day episodes in 2017 (one
  claim per episode; 30-day periods since 2020 double the claims per user).
- DME 1.4 claims per FFS beneficiary-year: GAO-11-337R, 10.6 million of
  46.3 million beneficiaries used DMEPOS in 2009 (23 %), at roughly six
  supply/rental claims per user and year.
- deaths ~4.5 % a year (age-dependent hazard); ~8 % of claims carry a later
  adjustment or a cancel + rebill (CCLF Information Packet §5.1.2 versions).

Everything is whole-array numpy: a Python loop runs per table, column,
profile or organization, never per claim or beneficiary. Beneficiary-level
arrays are drawn once (`_synth_people`); claims are drawn per chunk of
`CHUNK` beneficiaries (`_synth_claims`) from random streams keyed by (seed,
table, chunk), so `generate` (in memory) and `write` (streamed into a store,
memory bounded by one chunk) give the same data for the same seed.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import msgspec
import numpy as np

from ..columns import EPOCH, NO_DATE, Cat, Column, Num, Str, Table
from ..errors import InputError
from ..store import _merge, _ops, layout, schema
from ..store.layout import FORMAT_VERSION, LoadEntry, Manifest
from ..store import SourceInfo, Store
from .claims import FFS_RATES, RATES, _parta, _pde, _professional  # noqa: F401 (re-exported)
from .kit import (
    cat, choose, concat, date, digits, integer, month_of, ragged, rng_for, take, to_str, vocab, year_of,
)
from .people import (
    _Aco,
    _bene_table,
    _Contract,
    _days,
    _jan1,
    _Pop,
    _population,
    _Providers,
    _ymd,
    Preset,
)

__all__ = [
    "SynthOrg", "SynthData", "Preset", "PRESETS", "AS_OF", "CHUNK", "RATES", "FFS_RATES",
    "generate", "organizations", "chunks", "write", "write_orgs",
]

AS_OF = dt.date(2025, 6, 30)
CHUNK = 10_000

# ---- public types --------------------------------------------------------------


class SynthOrg(msgspec.Struct, frozen=True, kw_only=True):
    """An organization the synthetic data serves: an ACO (kind "aco") or a
    Part D sponsor contract (kind "pdp")."""

    org_id: str
    kind: str
    name: str
    program: str
    contract_ids: tuple[str, ...]
    attestation_date: dt.date | None = None
    roster_size: int = 0


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


PRESETS: dict[str, Preset] = {
    "default": Preset(
        10_000,
        (
            _Aco("A1001", "Cascadia Shared Savings ACO", "Shared Savings", 0.20),
            _Aco("A1002", "Piñon Valley Health Partners", "Shared Savings", 0.05),
            _Aco("D1001", "Lakeshore REACH ACO", "REACH", 0.08),
            _Aco("K1001", "Riverside Kidney Care Choices", "KCC", 0.01),
        ),
        (
            _Contract("S1001", "Evergreen Rx Part D", 0.45, True),
            _Contract("S1002", "Bahía Prescription Plan", 0.30, True),
            _Contract("S2001", "Northwind PDP", 0.25, False),
        ),
        (
            _Contract("H1001", "Summit Medicare Advantage (MA-PD)", 0.6, True),
            _Contract("H2001", "Coastal Health Advantage", 0.4, False),
        ),
    ),
    # `fhirhose serve --demo`: a small and a large ACO and one Part D sponsor,
    # everyone in FFS (so the ACOs can attribute most of the population).
    "demo": Preset(
        12_000,
        (
            _Aco("A0001", "Demo Small ACO", "Shared Savings", 100),
            _Aco("A0002", "Demo Large ACO", "Shared Savings", 10_000),
        ),
        (_Contract("S0001", "Demo Part D Sponsor", 1.0, True),),
        (_Contract("H0001", "Demo Medicare Advantage", 1.0, False),),
        ma_share=0.0,
    ),
}


# ---- organizations ---------------------------------------------------------------------------


def _assign(pop: _Pop) -> tuple[np.ndarray, np.ndarray]:
    """ACO of each beneficiary (-1 none) in the current performance year and
    the prior one: attributed beneficiaries are FFS and alive on January 1;
    about 85 % of a prior-year roster stays with its ACO."""
    rng = rng_for(pop.seed, "orgs", "assign")
    py = int(year_of(np.array([pop.as_of]))[0])
    acos = pop.preset.acos
    y_org, r_org = np.full(pop.n, -1), np.full(pop.n, -1)
    perm = rng.permutation(pop.n)
    for k, (year, out) in enumerate(((py, y_org), (py - 1, r_org))):
        jan1 = int(_jan1(np.array([year]))[0])
        elig = pop.ffs & (pop.start <= jan1) & (pop.end >= jan1)
        sizes = [int(round(a.size * elig.sum())) if a.size < 1 else int(a.size) for a in acos]
        if k == 0 and sum(sizes) > elig.sum():
            raise InputError(
                f"synth: the ACOs need {sum(sizes)} attributable beneficiaries, "
                f"but {pop.n} beneficiaries give {int(elig.sum())}"
            )
        if k == 1:
            stay = elig & (y_org >= 0) & (rng.random(pop.n) < 0.85)
            out[stay] = y_org[stay]
            sizes = [int(round(s * rng.uniform(0.92, 1.02))) for s in sizes]
        free = perm[elig[perm] & (out[perm] < 0) & (y_org[perm] < 0)]
        at = 0
        for i, size in enumerate(sizes):  # per ACO
            need = max(0, min(size - int((out == i).sum()), len(free) - at))
            out[free[at : at + need]] = i
            at += need
    return y_org, r_org


def _org_tables(pop: _Pop) -> tuple[dict[str, Table], list[SynthOrg]]:
    rng = rng_for(pop.seed, "orgs", "tables")
    py = int(year_of(np.array([pop.as_of]))[0])
    y_org, r_org = _assign(pop)
    acos = pop.preset.acos
    file_dates = {0: _days(dt.date(py, 1, 15)), 1: _days(dt.date(py, 4, 15))}
    parts = []
    for kind, org_of in ((0, y_org), (1, r_org)):
        for i in range(len(acos)):  # per ACO
            rows = np.nonzero(org_of == i)[0]
            parts.append((np.full(len(rows), i), rows, kind))
    org_i = np.concatenate([p[0] for p in parts])
    rrows = np.concatenate([p[1] for p in parts])
    kinds = np.concatenate([np.full(len(p[1]), p[2]) for p in parts])
    fdate = np.where(kinds == 0, file_dates[0], file_dates[1])
    roster = schema.complete("roster", {
        "org_id": to_str(take(vocab([a.org_id for a in acos] or [""]), org_i)),
        "bene_mbi_id": to_str(pop.mbi_at(rrows, fdate)),
        "bene_row": integer(rrows),
        "roster_kind": cat(("Y", "R"), kinds),
        "performance_year": integer(py - kinds),
        "file_date": date(fdate),
    }, len(rrows))

    # Data-sharing preferences: a few percent opt out; some change their mind.
    n = pop.n
    who = np.nonzero(rng.random(n) < 0.05)[0]
    pattern = choose(rng, (60, 25, 15), len(who))  # N; Y; N then Y
    nrec = np.where(pattern == 2, 2, 1)
    _, g, j = ragged(nrec)
    prow = who[g]
    pref = np.where(pattern[g] == 0, 1, np.where(pattern[g] == 1, 0, np.where(j == 0, 1, 0)))
    span = pop.as_of - pop.start[prow]
    eff = pop.start[prow] + (span * (rng.random(len(prow)) * 0.5 + 0.5 * j)).astype(np.int64)
    eff = eff - (eff - pop.as_of) % 7  # weekly preference files
    y, mo, d = _ymd(eff)
    fname = concat("P#EFT.ON.ACO.NGD1800.DPRF.D", digits((y % 100) * 10_000 + mo * 100 + d, 6), ".T0100000")
    optout = schema.complete("optout", {
        "bene_mbi_id": to_str(pop.mbi_at(prow, eff)),
        "bene_row": integer(prow),
        "pref_ind": cat(("Y", "N"), pref),
        "effective_dt": date(eff),
        "source_file": to_str(fname),
    }, len(prow))

    # Part D enrollment: one row per beneficiary, contract and year.
    dbene = np.nonzero(pop.ptd >= 0)[0]
    y0, y1 = year_of(pop.start[dbene]), year_of(pop.end[dbene])
    _, g, j = ragged(y1 - y0 + 1)
    erow, year = dbene[g], y0[g] + j
    m0 = np.where(year == y0[g], month_of(pop.start[erow]) % 12 + 1, 1)
    m1 = np.where(year == y1[g], month_of(pop.end[erow]) % 12 + 1, 12)
    mask = ((1 << m1) - 1) ^ ((1 << (m0 - 1)) - 1)
    contract = np.where(year < pop.switch_year[erow], pop.ptd_prev[erow], pop.ptd[erow])
    enroll = schema.complete("enroll", {
        "bene_row": integer(erow),
        "cntrct_id": to_str(take(vocab(pop.contracts()), contract)),
        "year": integer(year),
        "month_mask": integer(mask),
    }, len(erow))

    attest = _days(dt.date(py - 1, 1, 1)) + rng.integers(0, 300, len(pop.contracts()))
    orgs = [
        SynthOrg(org_id=a.org_id, kind="aco", name=a.name, program=a.program, contract_ids=(a.org_id,),
                 roster_size=int((y_org == i).sum()))
        for i, a in enumerate(acos)
    ]
    for ci, c in enumerate(pop.preset.pdp + pop.preset.ma):
        if c.org:
            members = np.unique(erow[(contract == ci) & (year == py)])
            orgs.append(SynthOrg(org_id=c.contract_id, kind="pdp", name=c.name, program="Part D",
                                 contract_ids=(c.contract_id,),
                                 attestation_date=EPOCH + dt.timedelta(days=int(attest[ci])),
                                 roster_size=len(members)))
    return {"roster": roster, "optout": optout, "enroll": enroll}, orgs


# ---- assembly ------------------------------------------------------------------------------------

def _chunk(pop: _Pop, prov: _Providers, chunk: int) -> dict[str, tuple[Table, np.ndarray]]:
    """The claim tables of one chunk of beneficiaries, each with the
    beneficiary-row counts (for the bene links)."""
    lo, hi = chunk * CHUNK, min(pop.n, (chunk + 1) * CHUNK)
    rows = np.arange(lo, hi)
    out = {}
    for table in schema.CLAIM_TABLES:  # per claim table
        if table == "parta":
            head, children, vb = _parta(pop, prov, rows, chunk)
        elif table == "pde":
            head, children, vb = _pde(pop, prov, rows, chunk)
        else:
            head, children, vb = _professional(pop, prov, rows, chunk, table)
        links = {}
        for child, (cols, off) in children.items():  # per child table
            links[child] = off
            out[child] = (schema.complete(child, cols, int(off[-1]), check=False), None)
        header = schema.complete(table, head, len(vb), links, check=False)
        out[table] = (header, np.bincount(vb - lo, minlength=hi - lo))
    return out


def _concat_columns(cols: Sequence[Column]) -> Column:
    first = cols[0]
    if isinstance(first, Str):
        shifts = np.cumsum([0] + [int(c.offsets[-1] - c.offsets[0]) for c in cols[:-1]])
        tails = [c.offsets[1:] - c.offsets[0] + s for c, s in zip(cols, shifts)]
        offsets = np.concatenate([cols[0].offsets[:1]] + tails)
        return Str(offsets - offsets[0], np.concatenate([c.data[c.offsets[0] : c.offsets[-1]] for c in cols]))
    if isinstance(first, Cat):
        return Cat(np.concatenate([c.codes for c in cols]), first.labels)
    if isinstance(first, Num):
        return Num(np.concatenate([c.values for c in cols]), first.scale, first.trim)
    return type(first)(np.concatenate([c.values for c in cols]))


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


def _bene_mbi(pop: _Pop) -> tuple[Table, np.ndarray]:
    """CCLF9: the previous MBI of beneficiaries whose MBI changed."""
    rows = np.nonzero(pop.mbi_change != NO_DATE)[0]
    rng = rng_for(pop.seed, "bene", "mbi_history")
    rollout = _days(dt.date(2018, 4, 1))
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


def _setup(n: int | None, seed: int, preset: str, as_of: dt.date) -> tuple[_Pop, _Providers]:
    if preset not in PRESETS:
        raise InputError(f"synth: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    p = PRESETS[preset]
    n = p.benes if n is None else int(n)
    if n < 1:
        raise InputError(f"synth: --benes must be at least 1, got {n}")
    return _population(n, seed, p, as_of), _Providers(seed)


def _chunks(
    pop: _Pop, prov: _Providers, progress: bool
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
    tables["bene"] = _bene_table(pop, links)
    org_tables, orgs = _org_tables(pop)
    tables.update(org_tables)
    for t in tables.values():
        t.validate()
        t.check_links(tables)
    return SynthData({name: tables[name] for name in schema.TABLES}, orgs, _exposure(pop))


def _exposure(pop: _Pop) -> dict[str, float]:
    years = pop.years
    return {"all": float(years.sum()), "ffs": float(years[pop.ffs].sum()), "partd": float(years[pop.ptd >= 0].sum())}


def organizations(
    n: int | None = None, seed: int = 0, *, preset: str = "default", as_of: dt.date = AS_OF
) -> tuple[dict[str, Table], list[SynthOrg]]:
    """Only the organizations and their tables (roster, optout, enroll) of the
    dataset `generate` would build with the same arguments: cheap, no claims."""
    pop, _ = _setup(n, seed, preset, as_of)
    return _org_tables(pop)


def write_orgs(path, orgs: Sequence[SynthOrg]) -> None:
    """`orgs.json`: the organizations as a JSON array."""
    with open(path, "wb") as f:
        f.write(msgspec.json.format(msgspec.json.encode(list(orgs)), indent=2))


# ---- writing a store -------------------------------------------------------------------------


class _Spool:
    """Column files appended chunk by chunk (offsets kept absolute), read back
    memory-mapped: a whole store's worth of claims never sits in memory."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True)
        self.meta: dict[tuple[str, str, str], tuple[np.dtype, int]] = {}
        self.labels: dict[tuple[str, str], tuple[str, ...]] = {}
        self.scale: dict[tuple[str, str], tuple[int, bool]] = {}
        self.kind: dict[tuple[str, str], type] = {}
        self.rows: dict[str, int] = {}
        self.base: dict[tuple[str, str, str], int] = {}  # running end of each offsets array

    def _append(self, key: tuple[str, str, str], arr: np.ndarray) -> None:
        dtype, n = self.meta.get(key, (arr.dtype, 0))
        with open(self.root / ".".join(key), "ab") as f:
            np.ascontiguousarray(arr, dtype).tofile(f)
        self.meta[key] = (dtype, n + len(arr))

    def _offsets(self, key: tuple[str, str, str], off: np.ndarray) -> None:
        """Append offsets (n+1, absolute within their part) continuing the previous part's."""
        rel = off - off[0] + self.base.get(key, 0)
        self._append(key, rel if key not in self.meta else rel[1:])
        self.base[key] = int(rel[-1])

    def add(self, t: Table) -> None:
        self.rows[t.name] = self.rows.get(t.name, 0) + t.n
        for cname, col in t.columns.items():
            k = (t.name, cname)
            self.kind.setdefault(k, type(col))
            if isinstance(col, Str):
                self._offsets((t.name, cname, "offsets"), col.offsets)
                self._append((t.name, cname, "data"), col.data[col.offsets[0] : col.offsets[-1]])
            elif isinstance(col, Cat):
                if self.labels.setdefault(k, col.labels) != col.labels:
                    raise AssertionError(f"{t.name}.{cname}: labels differ between chunks")
                self._append((t.name, cname, "codes"), col.codes)
            else:
                if isinstance(col, Num):
                    self.scale[k] = (col.scale, col.trim)
                self._append((t.name, cname, "values"), col.values)
        for child, off in t.links.items():
            self._offsets((t.name, child, "link"), off)

    def _map(self, key: tuple[str, str, str]) -> np.ndarray:
        dtype, n = self.meta[key]
        if n == 0:
            return np.zeros(0, dtype)
        return np.memmap(self.root / ".".join(key), dtype=dtype, mode="r", shape=(n,))

    def table(self, name: str) -> Table:
        cols: dict[str, Column] = {}
        for cname in schema.kinds(name):
            k, kind = (name, cname), self.kind[(name, cname)]
            if kind is Str:
                cols[cname] = Str(self._map(k + ("offsets",)), self._map(k + ("data",)))
            elif kind is Cat:
                cols[cname] = Cat(self._map(k + ("codes",)), self.labels[k])
            elif kind is Num:
                cols[cname] = Num(self._map(k + ("values",)), *self.scale[k])
            else:
                cols[cname] = kind(self._map(k + ("values",)))
        links = {c: self._map((name, c, "link")) for c in schema.LINKS.get(name, ())}
        return Table(name, cols, links, self.rows[name], check=False)


def _commit(store: Store, tables: dict[str, Table], source: SourceInfo, added: dict[str, int],
            next_seq: int, now_ms: int) -> int:
    """Write already-merged tables as the store's next generation and make it
    current: the tail of `Store.load` without its merge (the chunks were
    merged one by one)."""
    with store._lock():
        with store.snapshot() as snap:
            gen = max(store.generations()) + 1
            entry = LoadEntry(gen, now_ms, source, added, {})
            manifest = Manifest(FORMAT_VERSION, gen, time.time_ns() // 1_000_000, {}, {},
                                [*snap.manifest.history, entry], next_seq)
            store._write_generation(store.path, gen, tables, manifest, store._gen_dir(snap.generation), snap.manifest)
        layout.write_atomic(store.path / "CURRENT", f"{gen}\n".encode())
        store._collect()
    return gen


def _slice_rows(t: Table, lo: int, hi: int) -> Table:
    """Rows lo..hi of a table whose links cover all its children, with links rebased."""
    idx = np.arange(lo, hi)
    cols = {c: _ops.take(col, idx) for c, col in t.columns.items()}
    links = {c: off[lo : hi + 1] - off[lo] for c, off in t.links.items()}
    return Table(t.name, cols, links, hi - lo, check=False)


def write(
    path: str | os.PathLike,
    n: int | None = None,
    seed: int = 0,
    *,
    preset: str = "default",
    as_of: dt.date = AS_OF,
    progress: bool = False,
) -> list[SynthOrg]:
    """Generate a dataset into a new store at `path` (and `orgs.json` beside its
    generations). Chunks are merged by the store's own rules (`_merge.merge`)
    and spooled to disk, so memory stays bounded for any `n`; the generation
    is what `Store.load` of the whole dataset would write."""
    pop, prov = _setup(n, seed, preset, as_of)
    root = Path(path)
    store = Store.create(root)
    now_ms = time.time_ns() // 1_000_000
    empty = {name: schema.complete(name, {}, 0) for name in schema.TABLES}
    spool = _Spool(root / f".synth-{os.getpid()}")
    try:
        bene_raw = _bene_table(pop, {t: np.zeros(pop.n + 1, np.int64) for t in schema.CLAIM_TABLES}
                               | {"bene_mbi": _offsets(_bene_mbi(pop)[1])})
        mbi_table, mbi_counts = _bene_mbi(pop)
        mbi_off = _offsets(mbi_counts)
        org_tables, orgs = _org_tables(pop)
        people = _merge.merge(empty, {"bene": bene_raw, "bene_mbi": mbi_table, **org_tables}, now_ms, 1)
        counts: dict[str, list[np.ndarray]] = {t: [] for t in schema.CLAIM_TABLES}
        source_rows = {name: t.n for name, t in people.tables.items() if name not in schema.LINKS.get("bene", ())}
        for rows, tables, _ in _chunks(pop, prov, progress):
            lo, hi = rows.start, rows.stop
            delta = dict(tables)
            delta["bene"] = _slice_rows(bene_raw, lo, hi)
            delta["bene_mbi"] = _slice_rows(mbi_table, int(mbi_off[lo]), int(mbi_off[hi]))
            merged = _merge.merge(empty, delta, now_ms, 1)
            for name in schema.CLAIM_TABLES + tuple(c for t in schema.CLAIM_TABLES for c in schema.LINKS.get(t, ())):
                spool.add(merged.tables[name])
                source_rows[name] = source_rows.get(name, 0) + tables[name].n
            for t in schema.CLAIM_TABLES:
                counts[t].append(np.diff(merged.tables["bene"].links[t]))
        final = {name: spool.table(name) for name in spool.rows}
        bene = people.tables["bene"]
        links = dict(bene.links)
        links.update({t: _offsets(np.concatenate(counts[t])) for t in schema.CLAIM_TABLES})
        final["bene"] = Table("bene", bene.columns, links, bene.n, check=False)
        for name in ("bene_mbi", "roster", "optout", "enroll"):
            final[name] = people.tables[name]
        for t in final.values():
            t.validate()
            t.check_links(final)
        added = {name: t.n for name, t in final.items()}
        source = SourceInfo("synth", rows=source_rows, note=f"seed={seed} preset={preset} benes={pop.n}")
        _commit(store, final, source, added, people.next_bene_seq, now_ms)
    finally:
        shutil.rmtree(spool.root, ignore_errors=True)
    write_orgs(root / "orgs.json", orgs)
    return orgs
