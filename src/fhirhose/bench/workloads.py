"""Shared benchmark workloads and the ratio table (used by pytest-benchmark suites,
the CI guard and `fhirhose bench`)."""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fhirhose import _core_py
from fhirhose._backend import core as _best
from fhirhose.export.compress import PIECED, Piece, PieceFrame, encode_piece, new_encoder

if TYPE_CHECKING:  # annotations only (the functions below import these where they run)
    from fhirhose.export.exporter import Exporter, ExportSpec
    from fhirhose.store import Snapshot
    from fhirhose.template import Template

# name → (records, bytes, median seconds)
RESULTS: dict[str, tuple[int, int, float]] = {}


@dataclass
class Workload:
    name: str
    template: Template
    tables: dict
    rows: np.ndarray
    plan: object = None
    writers: dict = field(default_factory=dict)
    sample: bytes = b""

    def writer(self, mod):
        if mod.__name__ not in self.writers:
            self.writers[mod.__name__] = mod.Writer(self.plan)
        return self.writers[mod.__name__]

    def render(self, mod=_best, rows=None) -> bytes:
        """All resources as one bytes object (for sizes and compression inputs)."""
        out = mod.OutBuffer(1 << 24)
        self.writer(mod).write(self.rows if rows is None else rows, out)
        return out.getvalue()

    def write_batches(self, mod=_best, rows=None, batch: int = 2048) -> int:
        """Write through one reused buffer, batch by batch (what the exporter does); bytes written."""
        w = self.writer(mod)
        out = mod.OutBuffer(1 << 22)
        rows = self.rows if rows is None else rows
        total = 0
        for i in range(0, len(rows), batch):
            w.write(rows[i : i + batch], out)
            total += len(out)
            out.clear()
        return total


def carrier_workload(benes: int = 3000, seed: int = 7) -> Workload:
    """Carrier EOBs of a deterministic synthetic population."""
    from fhirhose import synth
    from fhirhose.fhir.eob_professional import EOB_CARRIER

    data = synth.generate(benes, seed=seed)
    tables = data.tables
    rows = np.arange(tables["partb"].n, dtype=np.int64)
    w = Workload("carrier", EOB_CARRIER, tables, rows)
    w.plan = EOB_CARRIER.bind(tables)
    w.sample = w.render()
    return w


def record(name: str, records: int, nbytes: int, seconds: float) -> None:
    RESULTS[name] = (records, nbytes, seconds)


def median_time(fn, repeat: int = 7, min_time: float = 0.05, clock=time.perf_counter) -> float:
    """Median seconds per call; each sample loops until `min_time` has passed. One-thread
    figures pass `clock=time.process_time` (CPU seconds: a shared machine's other load
    stretches wall time, not CPU time, so in-run ratios of them stay steady)."""
    samples = []
    for _ in range(repeat):
        n = 0
        t0 = clock()
        while True:
            fn()
            n += 1
            dt = clock() - t0
            if dt >= min_time:
                break
        samples.append(dt / n)
    return statistics.median(samples)


class MemorySink:
    """The exporter's sink minus the file: compression as the export does it (gzip in pieces,
    zstd streamed), the digest of its output (the default integrity: `digest`), and sha256 of
    the NDJSON (BCDA's optional checksum: `sha`), so a benchmark can add the sink's costs one
    at a time. `total` counts what a file would store (gzip header and trailer included)."""

    def __init__(self, compression: str | None = None, sha: bool = False, digest: bool = False):
        self.compression = compression
        self.pieced = compression in PIECED
        self.needs_ndjson = sha and self.pieced
        self.enc = new_encoder(compression) if compression and not self.pieced else None
        self.sha = hashlib.sha256() if sha else None
        self.digest = hashlib.sha256() if digest else None
        self.frame = PieceFrame(compression) if compression and self.pieced else None
        self.length = 0
        self.total = 0  # bytes out of the compressor
        if self.frame is not None:
            self._out(self.frame.head())

    def write(self, data, count: int) -> None:
        if self.pieced:
            self.put(self.encode(data, count), data)
            return
        with memoryview(data) as v:
            self.length += v.nbytes
            if self.sha is not None:
                self.sha.update(v)
            if self.enc is not None:
                self._out(self.enc.compress(v))

    def encode(self, data, count: int) -> Piece:
        return encode_piece(self.compression or "identity", None, data, count)

    def put(self, piece: Piece, ndjson=None) -> None:
        if self.sha is not None:
            self.sha.update(ndjson)
        self.frame.add(piece)  # type: ignore[union-attr]
        self.length += piece.length
        self._out(piece.data)

    def _out(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.digest is not None:
            self.digest.update(chunk)

    def close(self) -> int:
        if self.enc is not None:
            self._out(self.enc.flush())
        elif self.frame is not None:
            self._out(self.frame.tail())
        return self.length


def pipeline(workload: Workload, compression: str, mod=_best, batch: int = 2048, threads: int = 1,
             sha: bool = False) -> int:
    """Writer → encoder → digest of the output (the default integrity) through the exporter's
    Pipeline: inline on one thread, or on two as the exporter runs by default; `sha` adds
    BCDA's optional sha256 of the NDJSON."""
    from ..export.exporter import Pipeline

    w = workload.writer(mod)
    sink = MemorySink(compression, sha=sha, digest=True)
    rows = workload.rows
    with Pipeline(mod, threads) as pipe:
        for i in range(0, len(rows), batch):
            pipe.submit(w, rows[i : i + batch], sink)
        pipe.drain()
    sink.close()
    return sink.total


def compress_alone(data: bytes, compression: str, batch_bytes: int = 1 << 22) -> int:
    enc = new_encoder(compression)
    total = 0
    view = memoryview(data)
    for i in range(0, len(view), batch_bytes):
        total += len(enc.compress(view[i : i + batch_bytes]))
    return total + len(enc.flush())


# -- store → export (benchmarks/bench_export.py) ------------------------------------------


@dataclass
class StoreWorkload:
    """A synthetic store opened for export benchmarks: its exporter, every beneficiary,
    and the rows each source writes (selected once, so passes over them time the core)."""

    path: Path
    snapshot: Snapshot
    exporter: Exporter
    benes: np.ndarray
    spec: ExportSpec  # of the measured export (gzip)
    selected: list = field(default_factory=list)  # [(Source, rows)] in the exporter's order
    resources: int = 0
    ndjson_bytes: int = 0
    synth_seconds: float | None = None  # None: the store was reused, not generated here

    @property
    def claims(self) -> int:
        from fhirhose.store import schema

        return sum(self.snapshot.tables[t].n for t in schema.CLAIM_TABLES)

    def select(self) -> list:
        """Row selection for every source over all beneficiaries (what each chunk starts with)."""
        return [(src, self.exporter.rows_for(src, self.benes, self.spec)) for src in self.exporter.sources]

    def core_pass(self, sink=lambda: MemorySink(), threads: int = 1) -> int:
        """Bound writers over the selected rows through the exporter's Pipeline, one
        `sink()` per resource type (as the exporter opens files); NDJSON bytes written."""
        from fhirhose.export.exporter import Pipeline

        ex, total = self.exporter, 0
        with Pipeline(ex.core, threads) as pipe:
            for rtype in self.spec.types:
                out_sink = sink()
                for src, rows in self.selected:
                    if src.rtype == rtype:
                        ex.write_rows(src, rows, self.spec, pipe, out_sink)  # the export's batches, so its bytes
                pipe.drain()
                total += out_sink.close()
        return total

    def export(self, out_dir: Path, threads: int = 1) -> int:
        """`Exporter.export_chunk` over every beneficiary into `out_dir` (emptied afterwards);
        NDJSON bytes written."""
        import msgspec

        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            files = self.exporter.export_chunk(self.benes, msgspec.structs.replace(self.spec, threads=threads), out_dir)
            return sum(f.length for f in files)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)


def store_workload(path: Path, benes: int, seed: int = 7, compression: str = "gzip") -> StoreWorkload:
    """Open the synthetic store at `path`, generating it first (timed) when it is not a store yet."""
    from fhirhose import synth
    from fhirhose.export.exporter import Exporter, ExportSpec
    from fhirhose.fhir.registry import SOURCES
    from fhirhose.store import Store

    took = None
    if not (path / "CURRENT").exists():
        t0 = time.perf_counter()
        synth.write(path, benes, seed)
        took = time.perf_counter() - t0
    snap = Store.open(path)
    if snap.tables["bene"].n != benes:
        raise ValueError(f"{path} holds {snap.tables['bene'].n} beneficiaries, not {benes}")
    spec = ExportSpec(compression=compression)
    w = StoreWorkload(path, snap, Exporter(snap.tables, SOURCES), np.arange(benes, dtype=np.int64), spec, synth_seconds=took)
    w.selected = w.select()
    w.resources = sum(len(rows) for _, rows in w.selected)
    w.ndjson_bytes = w.core_pass()
    return w


def disk_bytes(directory: Path) -> tuple[int, int]:
    """(allocated bytes, files) under `directory`, each hard-linked file counted once."""
    seen: set[int] = set()
    total = 0
    for root, _, names in os.walk(directory):
        for name in names:
            st = os.stat(os.path.join(root, name))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_blocks * 512
    return total, len(seen)


def open_and_slice(path: Path, table: str = "partb", lo: int = 100, hi: int = 200) -> float:
    """Open the current generation, take beneficiaries lo..hi of `table` and sum one
    money column over the slice (touching the mapped pages); returns the sum."""
    from fhirhose.store import Store

    with Store.open(path) as snap:
        start, stop = snap.claim_rows(table, lo, hi)
        return float(snap.tables[table]["clm_pmt_amt"].values[start:stop].sum())


def measure_all(workload: Workload, twin_rows: int = 400, baseline_rows: int = 1500) -> dict[str, float]:
    """Every figure of the table in one run; returns the ratios (used by the CI guard)."""
    from .baseline import DictBuilder
    from .carrier_baseline import CarrierBuilder

    n = len(workload.rows)
    size = len(workload.sample)
    cpu = time.process_time  # one-thread rows: CPU seconds (see median_time)
    record("compiled writer", n, size, median_time(lambda: workload.write_batches(), clock=cpu))
    sub = workload.rows[:twin_rows]
    sub_bytes = len(workload.render(_core_py, sub))
    record("pure-Python twin", len(sub), sub_bytes,
           median_time(lambda: workload.write_batches(_core_py, sub), repeat=3, clock=cpu))
    brows = workload.rows[:baseline_rows].tolist()
    honest = CarrierBuilder(workload.tables)
    record(HONEST, len(brows), len(honest.dumps(brows)), median_time(lambda: honest.dumps(brows), repeat=3, clock=cpu))
    base = DictBuilder(workload.template, workload.tables)
    bbytes = len(base.dumps(brows))
    record("dict + orjson baseline", len(brows), bbytes, median_time(lambda: base.dumps(brows), repeat=3, clock=cpu))
    for comp in ("gzip", "zstd"):
        record(f"{comp} alone (same bytes)", n, size,
               median_time(lambda comp=comp: compress_alone(workload.sample, comp), repeat=5, clock=cpu))
        record(f"{comp} pipeline, one core", n, size,
               median_time(lambda comp=comp: pipeline(workload, comp), repeat=5, clock=cpu))
        record(f"{comp} alone (same bytes), wall", n, size,
               median_time(lambda comp=comp: compress_alone(workload.sample, comp), repeat=5))
        record(
            f"{comp} pipeline, two threads",
            n,
            size,
            median_time(lambda comp=comp: pipeline(workload, comp, threads=2), repeat=5),
        )
    record(SHA_ROW, n, size, median_time(lambda: pipeline(workload, "gzip", sha=True), repeat=5, clock=cpu))
    return ratios()


SHA_ROW = "gzip pipeline + NDJSON sha256 (optional BCDA checksum), one core"
HONEST = "hand-written dict + orjson (honest baseline)"


def rate(name: str) -> float:
    recs, _, sec = RESULTS[name]
    return recs / sec


# Export passes (bench_export.py): the same rows, one stage added at a time.
EXPORT_SELECT = "store → row selection"
EXPORT_CORE = "store → core alone"
EXPORT_GZIP = "store → core + gzip"
EXPORT_SHA = "store → core + sha256"
EXPORT_SINK = "store → core + sha256 + gzip"
EXPORT_ONE = "store → export_chunk gzip, one core"
EXPORT_TWO = "store → export_chunk gzip, two threads"
EXPORT_PASSES = (EXPORT_SELECT, EXPORT_CORE, EXPORT_GZIP, EXPORT_SHA, EXPORT_SINK, EXPORT_ONE, EXPORT_TWO)

# name → median CPU seconds of this process (all its threads). A shared machine
# stretches wall time by the time spent waiting for a core; CPU time it does not.
CPU: dict[str, float] = {}

# Figures that are not throughputs (sizes, latencies): name → text.
FACTS: dict[str, str] = {}


def cpu_timed(name: str, fn: Callable) -> Callable:
    """`fn`, recording the median CPU seconds of its calls as CPU[name]."""
    samples: list[float] = []

    def run(*args):
        c0 = time.process_time()
        try:
            return fn(*args)
        finally:
            samples.append(time.process_time() - c0)
            CPU[name] = statistics.median(samples)

    return run


def ratios() -> dict[str, float]:
    """Ratios of the figures measured in this run (a ratio needs both of its figures)."""
    out = {}
    if {"compiled writer", "pure-Python twin", "dict + orjson baseline"} <= RESULTS.keys():
        out["compiled/twin"] = rate("compiled writer") / rate("pure-Python twin")
        out["compiled/orjson"] = rate("compiled writer") / rate("dict + orjson baseline")
    if {"compiled writer", HONEST} <= RESULTS.keys():
        out["compiled/hand-written orjson"] = rate("compiled writer") / rate(HONEST)
    for comp in ("gzip", "zstd"):
        for label in ("one core", "two threads"):
            # CPU time against CPU time, wall against wall
            alone = f"{comp} alone (same bytes)" + (", wall" if label == "two threads" else "")
            piped = f"{comp} pipeline, {label}"
            if {alone, piped} <= RESULTS.keys():
                out[f"{comp} pipeline/{comp} alone, {label}"] = RESULTS[alone][2] / RESULTS[piped][2]
    if {SHA_ROW, "gzip alone (same bytes)"} <= RESULTS.keys():
        out["gzip pipeline + NDJSON sha256/gzip alone, one core"] = (
            RESULTS["gzip alone (same bytes)"][2] / RESULTS[SHA_ROW][2])
    return out


def export_table() -> list[str]:
    """The export passes side by side: wall and CPU seconds, and the core alone's speed
    relative to each (1.00x = as fast as the core alone)."""
    got = [n for n in EXPORT_PASSES if n in RESULTS]
    if EXPORT_CORE not in got:
        return []
    core_wall, core_cpu = RESULTS[EXPORT_CORE][2], CPU.get(EXPORT_CORE)
    lines = ["| export pass (same rows) | wall s | CPU s | speed vs core alone (wall) | (CPU) |",
             "|---|---:|---:|---:|---:|"]
    for n in got:
        wall, cpu = RESULTS[n][2], CPU.get(n)
        cpu_txt = "" if cpu is None else f"{cpu:.2f}"
        if n == EXPORT_SELECT:  # a part of the export, not a pass through the core
            wall_ratio = cpu_ratio = "—"
        else:
            wall_ratio = f"{core_wall / wall:.2f}x"
            cpu_ratio = "" if cpu is None or core_cpu is None else f"{core_cpu / cpu:.2f}x"
        lines.append(f"| {n.removeprefix('store → ')} | {wall:.2f} | {cpu_txt} | {wall_ratio} | {cpu_ratio} |")
    return lines


def export_breakdown() -> list[tuple[str, float]]:
    """Where the one-core export's time goes (seconds), by difference between passes, each
    adding one stage: selection, core, + gzip, + sha256, + files. CPU seconds when all
    passes have them, else wall; then the export's wall time beyond its CPU time."""
    need = (EXPORT_SELECT, EXPORT_CORE, EXPORT_GZIP, EXPORT_SINK, EXPORT_ONE)
    if not set(need) <= RESULTS.keys():
        return []
    use_cpu = set(need) <= CPU.keys()
    t = {k: CPU[k] if use_cpu else RESULTS[k][2] for k in need}
    parts = [
        ("row selection", t[EXPORT_SELECT]),
        ("core (writers)", t[EXPORT_CORE]),
        ("gzip", t[EXPORT_GZIP] - t[EXPORT_CORE]),
        ("sha256", t[EXPORT_SINK] - t[EXPORT_GZIP]),
        ("files (write, rename) and the rest", t[EXPORT_ONE] - t[EXPORT_SINK] - t[EXPORT_SELECT]),
        (f"export_chunk, one core ({'CPU' if use_cpu else 'wall'})", t[EXPORT_ONE]),
    ]
    if use_cpu:
        parts.append(("+ waiting (wall − CPU: fsync, and a core on a shared machine)",
                      RESULTS[EXPORT_ONE][2] - CPU[EXPORT_ONE]))
    return parts


def ratio_table() -> list[str]:
    lines = ["| what | resources/s | MB/s (NDJSON in) | bytes/resource |", "|---|---:|---:|---:|"]
    for name, (recs, nbytes, sec) in RESULTS.items():
        lines.append(f"| {name} | {recs / sec:,.0f} | {nbytes / sec / 1e6:,.0f} | {nbytes / max(recs, 1):,.0f} |")
    got = ratios()
    if got:
        lines += ["", "| ratio (same run) | value |", "|---|---:|"]
        lines += [f"| {k} | {v:.2f}x |" for k, v in got.items()]
    table = export_table()
    if table:
        lines += ["", *table]
    parts = export_breakdown()
    if parts:
        total = parts[5][1]
        lines += ["", "| export_chunk time, one core, by difference | s | share |", "|---|---:|---:|"]
        lines += [f"| {k} | {v:.2f} | {v / total:.0%} |" for k, v in parts]
    if FACTS:
        lines += ["", "| store | figure |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in FACTS.items()]
    return lines
