"""The store feeds the core: a synthetic store's export against the core alone on the same rows.

    python -m pytest benchmarks/bench_export.py -q
    FHIRHOSE_BENCH_EXPORT_BENES=20000 python -m pytest benchmarks/bench_export.py -q   (issue 3's size)

Env: FHIRHOSE_BENCH_EXPORT_BENES (default 3000), FHIRHOSE_BENCH_EXPORT_ROUNDS (default 3),
FHIRHOSE_BENCH_STORE (a directory to keep the generated store in and reuse across runs).

Every pass covers the same rows (every resource of every beneficiary, one process):
the core alone (bound writers into a reused buffer, nothing else), then the sink's
costs added one at a time (sha256, gzip, both), then `Exporter.export_chunk` itself
(row selection + all of the above + files), inline on one core and on the exporter's
two threads. The terminal summary prints each pass's wall and CPU
time against the core alone's, and the one-core export's time split by difference
(in CPU seconds, which waiting for a core on a shared machine does not inflate). The store is conftest's
`synth_store` (its generation rate is reported too); bench_store.py measures its
size and open + slice cost.
"""

from __future__ import annotations

import os

import pytest

from fhirhose.bench import workloads as W

ROUNDS = int(os.environ.get("FHIRHOSE_BENCH_EXPORT_ROUNDS", "3"))


def _run(benchmark, store: W.StoreWorkload, name: str, fn, *args) -> None:
    nbytes = benchmark.pedantic(W.cpu_timed(name, fn), args=args, rounds=ROUNDS, iterations=1)
    if isinstance(nbytes, int):
        assert nbytes == store.ndjson_bytes  # every pass writes the very same NDJSON
    W.record(name, store.resources, store.ndjson_bytes, benchmark.stats.stats.median)


def test_row_selection(benchmark, synth_store):
    _run(benchmark, synth_store, W.EXPORT_SELECT, synth_store.select)


def test_core_alone(benchmark, synth_store):
    _run(benchmark, synth_store, W.EXPORT_CORE, synth_store.core_pass)


def test_core_sha256(benchmark, synth_store):
    _run(benchmark, synth_store, W.EXPORT_SHA, synth_store.core_pass, lambda: W.MemorySink(sha=True))


def test_core_gzip(benchmark, synth_store):
    _run(benchmark, synth_store, W.EXPORT_GZIP, synth_store.core_pass, lambda: W.MemorySink("gzip"))


def test_core_sha256_gzip(benchmark, synth_store):
    _run(benchmark, synth_store, W.EXPORT_SINK, synth_store.core_pass, lambda: W.MemorySink("gzip", sha=True))


@pytest.mark.parametrize("threads", [1, 2], ids=["one core", "two threads"])
def test_export_chunk(benchmark, synth_store, tmp_path, threads):
    name = W.EXPORT_TWO if threads > 1 else W.EXPORT_ONE
    _run(benchmark, synth_store, name, synth_store.export, tmp_path / "out", threads)
