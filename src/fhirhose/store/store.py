"""The claims store: generations of memory-mapped columns, sorted by beneficiary.

API (stable; `fhirhose.synth` and the exporters build on it)::

    store = Store.create(path, keep=3)        # new, empty store (generation 0)
    store = Store(path, keep=3)               # an existing store
    gen = store.load(tables, SourceInfo("synth", note="seed=1"))   # -> new generation number
    gen = store.commit(merged_tables, source, next_bene_seq=n)     # tables already merged (in chunks)
    snap = Store.open(path)                   # or store.snapshot(): the CURRENT generation
    snap.tables["partb"]                      # fhirhose.Table over memory-mapped arrays
    snap.generation, snap.manifest            # int, layout.Manifest
    snap.bene_index("1A69B98CD30")            # bene row of an MBI (current or historic) or bene_id
    lo, hi = snap.claim_rows("partb", 0, 100) # claim rows of beneficiaries 0..99
    snap.close()                              # (or `with Store.open(path) as snap:`)
    store.verify()                            # checksums of every file of a generation

`tables` maps schema table names (`fhirhose.store.schema.TABLES`) to Tables
holding any subset of the schema's columns (missing ones are missing values).
A load is a *delta*: beneficiaries are matched by MBI (through CCLF9
cross-references) and replaced, claim versions (by `cur_clm_uniq_id`) and
their child rows are added, rosters replace the same ACO/kind/year, preferences
keep the latest per MBI. Claims name their beneficiary by `bene_mbi_id`, or,
when that is empty, by the delta's `bene.links[<claim table>]`; a delta's
`enroll.bene_row` numbers rows of the delta's bene table. The store fills
the derived claim columns (`clm_id`, `bene_id`, `last_updated`, `final_action`,
`clm_grp_id`, `sud_ind`) and the `bene_row` of organisation tables; see
`_merge` for the rules.

Every load writes a whole new generation beside the old one and then swaps
`CURRENT`; an exception anywhere leaves the store as it was. A snapshot keeps
the generation it opened for as long as it lives (a lease file protects it
from garbage collection). The last `keep` generations are kept; older ones
are deleted after a load (or `collect()`) once no live process holds a lease
on them. On-disk
layout: see `fhirhose.store.layout`.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import secrets
import shutil
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ..columns import Table
from ..errors import BatchError, StoreError
from . import _merge, _ops, layout
from .layout import FORMAT_VERSION, LoadEntry, Manifest, SourceInfo

__all__ = ["Store", "Snapshot", "SourceInfo"]

_GEN = "generations"
_READERS = "readers"
_CURRENT = "CURRENT"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _time_ms(now: _dt.datetime | None) -> int:
    if now is None:
        return _now_ms()
    if now.tzinfo is None:
        raise StoreError("load: `now` must be timezone-aware")
    return int(now.timestamp() * 1000)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Snapshot:
    """One generation of a store, opened read-only and memory-mapped.

    `tables` maps table names to `fhirhose.Table`s whose arrays are views of
    the mapped files (each table is mapped on first access): slicing rows never
    copies. The snapshot holds a lease on its generation
    until `close()` (or garbage collection), so a later load cannot delete it.
    """

    def __init__(self, root: Path, generation: int, manifest: Manifest, tables: layout.Tables, lease: Path):
        self.path = root
        self.generation = generation
        self.manifest = manifest
        self.tables: Mapping[str, Table] = tables
        self._ids: tuple[np.ndarray, np.ndarray] | None = None
        self._finalizer = weakref.finalize(self, _unlink, lease)

    def mmap(self, file: str) -> np.ndarray:
        """The memory map of one column file of an opened table (e.g. "partb.clm_pmt_amt.values.npy")."""
        return self.tables.maps[file]

    def claim_rows(self, table: str, bene_lo: int, bene_hi: int) -> tuple[int, int]:
        """Rows start..stop of `table` belonging to beneficiary rows bene_lo..bene_hi-1."""
        off = self.tables["bene"].links[table]
        return int(off[bene_lo]), int(off[bene_hi])

    def bene_index(self, key: str) -> int:
        """The bene row of a bene_id or of any MBI the beneficiary had (KeyError if none)."""
        if self._ids is None:
            bene, xref = self.tables["bene"], self.tables["bene_mbi"]
            ids = [_ops.fixed(bene.columns["bene_id"]), _ops.fixed(bene.columns["bene_mbi_id"])]
            rows = [np.arange(bene.n), np.arange(bene.n)]
            # Historic MBIs: rows of bene_mbi linked from a bene row.
            owner = np.repeat(np.arange(bene.n), np.diff(bene.links["bene_mbi"]))
            ids.append(_ops.fixed(xref.columns["prvs_num"])[: len(owner)])
            rows.append(owner)
            width = max(a.dtype.itemsize for a in ids)
            allk = np.concatenate([a.astype(f"S{width}") for a in ids])
            allr = np.concatenate(rows)
            order = np.argsort(allk, kind="stable")
            self._ids = (allk[order], allr[order])
        keys, rows = self._ids
        k = key.encode()
        i = int(np.searchsorted(keys, k))
        if i < len(keys) and keys[i] == k:
            return int(rows[i])
        raise KeyError(f"no beneficiary {key!r} in generation {self.generation}")

    def close(self) -> None:
        """Release the lease (the arrays stay valid while referenced)."""
        self._finalizer()

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Snapshot({str(self.path)!r}, generation={self.generation}, rows={self.manifest.rows()})"


def _unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


class Store:
    """A store directory: load deltas into new generations, open snapshots."""

    def __init__(self, path: str | os.PathLike, *, keep: int = 3):
        self.path = Path(path)
        if keep < 1:
            raise StoreError(f"keep must be at least 1 generation, got {keep}")
        self.keep = keep
        if not (self.path / _CURRENT).is_file():
            raise StoreError(f"{self.path}: not a store (no {_CURRENT} file); create one with "
                             f"`fhirhose ingest cclf --create --store {self.path} FILES` or `fhirhose synth --out {self.path}`")

    # -- creating and opening ------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, *, keep: int = 3) -> "Store":
        """Create an empty store (generation 0) at `path`, which must not be a store yet."""
        root = Path(path)
        if (root / _CURRENT).exists():
            raise StoreError(f"{root}: already a store")
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root}: exists and is not a folder")
        if root.exists() and any(root.iterdir()):
            raise StoreError(f"{root}: exists and is not empty")
        (root / _GEN).mkdir(parents=True, exist_ok=True)
        (root / _READERS).mkdir(exist_ok=True)
        (root / "LOCK").touch()
        # Generation 0 lists no tables: every schema table opens empty.
        manifest = Manifest(FORMAT_VERSION, 0, _now_ms(), {}, {}, [])
        cls._write_generation(root, 0, {}, manifest, None, None)
        layout.write_atomic(root / _CURRENT, b"0\n")
        return cls(root, keep=keep)

    @classmethod
    def open(cls, path: str | os.PathLike) -> Snapshot:
        """A snapshot of the store's current generation."""
        return cls(path).snapshot()

    def current(self) -> int:
        """The active generation number (as named by CURRENT)."""
        raw = (self.path / _CURRENT).read_text().strip()
        if not raw.isdigit():
            raise StoreError(f"{self.path / _CURRENT}: {raw!r} is not a generation number")
        return int(raw)

    def generations(self) -> list[int]:
        """Complete generations on disk, oldest first."""
        return [g for g, _ in layout.generation_dirs(self.path)]

    def _gen_dir(self, gen: int) -> Path:
        return self.path / _GEN / str(gen)

    def snapshot(self, generation: int | None = None) -> Snapshot:
        """Open a generation (default: the current one) with a lease on it."""
        for _ in range(5):
            gen = self.current() if generation is None else generation
            lease = self.path / _READERS / f"g{gen}.p{os.getpid()}.{secrets.token_hex(4)}"
            lease.parent.mkdir(exist_ok=True)
            lease.touch()
            gdir = self._gen_dir(gen)
            if not gdir.is_dir():  # collected between reading CURRENT and taking the lease
                _unlink(lease)
                if generation is not None:
                    raise StoreError(f"{self.path}: no generation {gen}")
                continue
            try:
                manifest = layout.read_manifest(gdir)
            except BaseException:
                _unlink(lease)
                raise
            return Snapshot(self.path, gen, manifest, layout.Tables(gdir, manifest), lease)
        raise StoreError(f"{self.path}: generations change faster than they can be opened")

    def verify(self, generation: int | None = None) -> None:
        """Check every file of a generation against its manifest's SHA-256 (StoreError if not)."""
        gen = self.current() if generation is None else generation
        gdir = self._gen_dir(gen)
        manifest = layout.read_manifest(gdir)
        bad = layout.verify_files(gdir, manifest)
        if bad:
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise StoreError(f"{gdir}: {len(bad)} file(s) differ from the manifest: {', '.join(bad[:5])}{more}")
        tables = layout.Tables(gdir, manifest)
        for t in tables.values():
            try:
                t.validate()
                t.check_links(tables)
            except BatchError as e:
                raise StoreError(f"{gdir}: {e}") from None

    # -- loading --------------------------------------------------------------------------

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.path / "LOCK", "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def load(self, tables: Mapping[str, Table], source: SourceInfo | str, *,
             now: _dt.datetime | None = None) -> int:
        """Merge `tables` (a delta) into a new generation and make it current.

        `source` describes the input (a `SourceInfo`, or just its kind). `now`
        is the load time: the `last_updated` of every new row that has none.
        Returns the new generation number. On any error nothing changes.
        """
        source = SourceInfo(source) if isinstance(source, str) else source
        now_ms = _time_ms(now)
        if not source.rows:
            source.rows = {name: t.n for name, t in tables.items()}
        with self._lock():
            with self.snapshot() as snap:
                merged = _merge.merge(snap.tables, tables, now_ms, snap.manifest.next_bene_seq)
                return self._commit(snap, merged.tables, source, merged.added, merged.skipped,
                                    merged.next_bene_seq, now_ms, merged.updated)

    def commit(self, tables: Mapping[str, Table], source: SourceInfo | str, *, next_bene_seq: int,
               added: Mapping[str, int] | None = None, now: _dt.datetime | None = None) -> int:
        """Write complete tables, already merged by the store's rules (a producer that
        merges its data in chunks with `_merge.merge` and assembles them), as the next
        generation, replacing the current one. `added` defaults to the row counts;
        `next_bene_seq` is the merge's counter of assigned bene_ids."""
        source = SourceInfo(source) if isinstance(source, str) else source
        now_ms = _time_ms(now)
        for t in tables.values():
            t.check_links(tables)
        with self._lock():
            with self.snapshot() as snap:
                added = dict(added) if added is not None else {name: t.n for name, t in tables.items()}
                return self._commit(snap, tables, source, added, {}, next_bene_seq, now_ms)

    def _commit(self, snap: Snapshot, tables: Mapping[str, Table], source: SourceInfo, added: dict[str, int],
                skipped: dict[str, int], next_bene_seq: int, now_ms: int,
                updated: dict[str, int] | None = None) -> int:
        """Write the next generation beside `snap`'s, swap CURRENT, collect. Holds the lock."""
        gen = max(self.generations()) + 1
        entry = LoadEntry(gen, now_ms, source, added, skipped, dict(updated or {}))
        manifest = Manifest(FORMAT_VERSION, gen, _now_ms(), {}, {}, [*snap.manifest.history, entry], next_bene_seq)
        self._write_generation(self.path, gen, tables, manifest, self._gen_dir(snap.generation), snap.manifest)
        try:
            layout.write_atomic(self.path / _CURRENT, f"{gen}\n".encode())
        except BaseException:
            if self.current() != gen:
                shutil.rmtree(self._gen_dir(gen), ignore_errors=True)
            raise
        snap.close()  # its lease must not keep the previous generation from collection
        self._collect()
        return gen

    @staticmethod
    def _write_generation(root: Path, gen: int, tables: Mapping[str, Table], manifest: Manifest,
                          prev_dir: Path | None, prev: Manifest | None) -> None:
        """Write generation `gen` completely under a temporary name, then rename it."""
        final = root / _GEN / str(gen)
        tmp = root / _GEN / f".tmp-{gen}-{os.getpid()}"
        if final.exists():
            raise StoreError(f"{final}: generation exists already")
        tmp.mkdir()
        try:
            w = layout.GenerationWriter(tmp, prev_dir, prev)
            manifest.tables = {name: w.table(t) for name, t in tables.items()}
            manifest.files = w.files
            w.finish(manifest)
            os.rename(tmp, final)
            layout.fsync_dir(final.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # -- garbage collection ---------------------------------------------------------------

    def _leases(self) -> dict[int, int]:
        """Live leases per generation; leases of dead processes are removed."""
        live: dict[int, int] = {}
        rdir = self.path / _READERS
        if not rdir.is_dir():
            return live
        for p in rdir.iterdir():
            parts = p.name.split(".")
            try:
                gen, pid = int(parts[0][1:]), int(parts[1][1:])
            except (IndexError, ValueError):
                continue
            if _pid_alive(pid):
                live[gen] = live.get(gen, 0) + 1
            else:
                _unlink(p)
        return live

    def _collect(self) -> list[int]:
        current = self.current()
        gens = [g for g in self.generations() if g != current]
        old = gens[: max(len(gens) - (self.keep - 1), 0)]
        leases = self._leases()
        removed = []
        for g in old:
            if leases.get(g):
                continue
            gdir = self._gen_dir(g)
            trash = gdir.with_name(f".del-{g}-{os.getpid()}")
            os.rename(gdir, trash)  # atomic: readers see the generation whole or not at all
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(g)
        # Leftovers of writers that died: half-written or half-deleted generations.
        for stale in [*(self.path / _GEN).glob(".tmp-*"), *(self.path / _GEN).glob(".del-*")]:
            pid = stale.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        return removed

    def collect(self) -> list[int]:
        """Delete generations older than the last `keep` that no reader holds; returns them."""
        with self._lock():
            return self._collect()
