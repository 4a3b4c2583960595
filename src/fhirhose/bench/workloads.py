"""Shared benchmark workloads and the ratio table (used by pytest-benchmark suites,
the CI guard and `fhirhose bench`)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from fhirhose import _core_py
from fhirhose._backend import core as _best
from fhirhose.export.compress import new_encoder

# name → (records, bytes, median seconds)
RESULTS: dict[str, tuple[int, int, float]] = {}


@dataclass
class Workload:
    name: str
    template: object
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
    from fhirhose.fhir.eob_professional import EOB_CARRIER
    from fhirhose.store import synth

    data = synth.generate(benes, seed=seed)
    tables = data.tables
    rows = np.arange(tables["partb"].n, dtype=np.int64)
    w = Workload("carrier", EOB_CARRIER, tables, rows)
    w.plan = EOB_CARRIER.bind(tables)
    w.sample = w.render()
    return w


def record(name: str, records: int, nbytes: int, seconds: float) -> None:
    RESULTS[name] = (records, nbytes, seconds)


def median_time(fn, repeat: int = 7, min_time: float = 0.05) -> float:
    """Median seconds per call; each sample loops until `min_time` has passed."""
    samples = []
    for _ in range(repeat):
        n = 0
        t0 = time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        samples.append(dt / n)
    return statistics.median(samples)


class _CompressSink:
    """Compression only (no hash, no file): isolates serialization vs compression cost."""

    def __init__(self, compression: str):
        self.enc = new_encoder(compression)
        self.total = 0

    def write(self, data, count: int) -> None:
        with memoryview(data) as v:
            self.total += len(self.enc.compress(v))


def pipeline(workload: Workload, compression: str, mod=_best, batch: int = 2048, overlap: bool = False) -> int:
    """Writer → encoder through the exporter's Pipeline: inline on one core, or
    overlapped (sink on a second thread) as the exporter runs by default."""
    from ..export.exporter import Pipeline

    w = workload.writer(mod)
    sink = _CompressSink(compression)
    rows = workload.rows
    with Pipeline(mod, overlap) as pipe:
        for i in range(0, len(rows), batch):
            out = pipe.buffer()
            w.write(rows[i : i + batch], out)
            pipe.submit(sink, out, i)
        pipe.drain()
    return sink.total + len(sink.enc.flush())


def compress_alone(data: bytes, compression: str, batch_bytes: int = 1 << 22) -> int:
    enc = new_encoder(compression)
    total = 0
    view = memoryview(data)
    for i in range(0, len(view), batch_bytes):
        total += len(enc.compress(view[i : i + batch_bytes]))
    return total + len(enc.flush())


def measure_all(workload: Workload, twin_rows: int = 400, baseline_rows: int = 1500) -> dict[str, float]:
    """Every figure of the table in one run; returns the ratios (used by the CI guard)."""
    from .baseline import DictBuilder

    n = len(workload.rows)
    size = len(workload.sample)
    record("compiled writer", n, size, median_time(lambda: workload.write_batches()))
    sub = workload.rows[:twin_rows]
    sub_bytes = len(workload.render(_core_py, sub))
    record("pure-Python twin", len(sub), sub_bytes, median_time(lambda: workload.write_batches(_core_py, sub), repeat=3))
    base = DictBuilder(workload.template, workload.tables)
    brows = workload.rows[:baseline_rows].tolist()
    bbytes = len(base.dumps(brows))
    record("dict + orjson baseline", len(brows), bbytes, median_time(lambda: base.dumps(brows), repeat=3))
    for comp in ("gzip", "zstd"):
        record(f"{comp} alone (same bytes)", n, size, median_time(lambda: compress_alone(workload.sample, comp), repeat=5))
        record(f"{comp} pipeline, one core", n, size, median_time(lambda: pipeline(workload, comp), repeat=5))
        record(
            f"{comp} pipeline, overlapped",
            n,
            size,
            median_time(lambda: pipeline(workload, comp, overlap=True), repeat=5),
        )
    return ratios()


def rate(name: str) -> float:
    recs, _, sec = RESULTS[name]
    return recs / sec


def ratios() -> dict[str, float]:
    out = {
        "compiled/twin": rate("compiled writer") / rate("pure-Python twin"),
        "compiled/orjson": rate("compiled writer") / rate("dict + orjson baseline"),
    }
    for comp in ("gzip", "zstd"):
        alone = RESULTS[f"{comp} alone (same bytes)"][2]
        out[f"{comp} pipeline/{comp} alone, one core"] = alone / RESULTS[f"{comp} pipeline, one core"][2]
        out[f"{comp} pipeline/{comp} alone, overlapped"] = alone / RESULTS[f"{comp} pipeline, overlapped"][2]
    return out


def ratio_table() -> list[str]:
    lines = ["| what | resources/s | MB/s (NDJSON in) | bytes/resource |", "|---|---:|---:|---:|"]
    for name, (recs, nbytes, sec) in RESULTS.items():
        lines.append(f"| {name} | {recs / sec:,.0f} | {nbytes / sec / 1e6:,.0f} | {nbytes / max(recs, 1):,.0f} |")
    if {"compiled writer", "pure-Python twin", "dict + orjson baseline"} <= RESULTS.keys():
        lines.append("")
        lines.append("| ratio (same run) | value |")
        lines.append("|---|---:|")
        for k, v in ratios().items():
            lines.append(f"| {k} | {v:.2f}x |")
    return lines
