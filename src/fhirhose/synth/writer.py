"""`write`: a synthetic dataset streamed into a new store, chunk by chunk,
with memory bounded by one chunk."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np

from ..columns import AnyColumn, Cat, Date, Num, Str, Table, Time
from ..store import SourceInfo, Store, merge, schema
from .dataset import _bene_mbi, _chunks, _offsets, _setup
from .orgs import SynthOrg, _org_tables, write_orgs
from .people import bene_table
from .presets import AS_OF

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
            elif isinstance(col, (Num, Date, Time)):
                if isinstance(col, Num):
                    self.scale[k] = (col.scale, col.trim)
                self._append((t.name, cname, "values"), col.values)
            else:
                raise TypeError(f"{t.name}.{cname}: unknown column kind {type(col).__name__}")
        for child, off in t.links.items():
            self._offsets((t.name, child, "link"), off)

    def _map(self, key: tuple[str, str, str]) -> np.ndarray:
        dtype, n = self.meta[key]
        if n == 0:
            return np.zeros(0, dtype)
        return np.memmap(self.root / ".".join(key), dtype=dtype, mode="r", shape=(n,))

    def table(self, name: str) -> Table:
        cols: dict[str, AnyColumn] = {}
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


def _slice_column(col: AnyColumn, lo: int, hi: int) -> AnyColumn:
    if isinstance(col, Str):
        off = col.offsets[lo : hi + 1]
        return Str(off - off[0], col.data[off[0] : off[-1]])
    if isinstance(col, Cat):
        return Cat(col.codes[lo:hi], col.labels)
    if isinstance(col, Num):
        return Num(col.values[lo:hi], col.scale, col.trim)
    if isinstance(col, (Date, Time)):
        return type(col)(col.values[lo:hi])
    raise TypeError(f"unknown column kind {type(col).__name__}")


def _slice_rows(t: Table, lo: int, hi: int) -> Table:
    """Rows lo..hi of a table whose links cover all its children, with links rebased."""
    cols = {c: _slice_column(col, lo, hi) for c, col in t.columns.items()}
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
    generations). Chunks are merged by the store's own rules (`store.merge`)
    and spooled to disk, so memory stays bounded for any `n`; the generation
    is what `Store.load` of the whole dataset would write."""
    pop, prov = _setup(n, seed, preset, as_of)
    root = Path(path)
    store = Store.create(root)
    now = dt.datetime.now(dt.UTC)
    now_ms = int(now.timestamp() * 1000)  # as Store.commit reads `now`
    empty = {name: schema.complete(name, {}, 0) for name in schema.TABLES}
    spool = _Spool(root / f".synth-{os.getpid()}")
    try:
        bene_raw = bene_table(pop, {t: np.zeros(pop.n + 1, np.int64) for t in schema.CLAIM_TABLES}
                               | {"bene_mbi": _offsets(_bene_mbi(pop)[1])})
        mbi_table, mbi_counts = _bene_mbi(pop)
        mbi_off = _offsets(mbi_counts)
        org_tables, orgs = _org_tables(pop)
        people = merge(empty, {"bene": bene_raw, "bene_mbi": mbi_table, **org_tables}, now_ms, 1)
        counts: dict[str, list[np.ndarray]] = {t: [] for t in schema.CLAIM_TABLES}
        source_rows = {name: t.n for name, t in people.tables.items() if name not in schema.LINKS.get("bene", ())}
        for rows, tables, _ in _chunks(pop, prov, progress):
            lo, hi = rows.start, rows.stop
            delta = dict(tables)
            delta["bene"] = _slice_rows(bene_raw, lo, hi)
            delta["bene_mbi"] = _slice_rows(mbi_table, int(mbi_off[lo]), int(mbi_off[hi]))
            merged = merge(empty, delta, now_ms, 1)
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
        for table in final.values():
            table.validate()
        source = SourceInfo("synth", rows=source_rows, note=f"seed={seed} preset={preset} benes={pop.n}")
        store.commit(final, source, next_bene_seq=people.next_bene_seq, now=now)  # checks the links
    finally:
        shutil.rmtree(spool.root, ignore_errors=True)
    write_orgs(root / "orgs.json", orgs)
    return orgs

