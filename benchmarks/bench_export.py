"""The store feeds the core: a synthetic store's export against the core alone on the same rows.

    python -m pytest benchmarks/bench_export.py -q
    FHIRHOSE_BENCH_EXPORT_BENES=20000 python -m pytest benchmarks/bench_export.py -q   (issue 3's size)

Env: FHIRHOSE_BENCH_EXPORT_BENES (default 3000), FHIRHOSE_BENCH_EXPORT_ROUNDS (default 3),
FHIRHOSE_BENCH_STORE (a directory to keep the generated store in and reuse across runs).

Every pass covers the same rows (every resource of every beneficiary, one process):
the core alone (bound writers into a reused buffer, nothing else), then the sink's
costs added one at a time (sha256, gzip, both), then `Exporter.export_chunk` itself
(row selection + all of the above + files), inline on one core and with the sink
overlapped on a second thread. The terminal summary prints the ratios to the core
alone and the one-core export's time split by difference. Also: synth rate into a
store (claims/s), store bytes on disk per beneficiary, open + slice latency.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fhirhose.bench import workloads as W

BENES = int(os.environ.get("FHIRHOSE_BENCH_EXPORT_BENES", "3000"))
ROUNDS = int(os.environ.get("FHIRHOSE_BENCH_EXPORT_ROUNDS", "3"))
SEED = 7


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> W.StoreWorkload:
    keep = os.environ.get("FHIRHOSE_BENCH_STORE")
    path = Path(keep) if keep else tmp_path_factory.mktemp("bench-export") / "store"
    w = W.store_workload(path, BENES, SEED)
    if w.synth_seconds is not None:  # one run: generating is the store's setup, not repeated
        W.FACTS[f"synth.write into a new store, {BENES:,} beneficiaries"] = (
            f"{w.claims:,} claim versions in {w.synth_seconds:.1f} s = {w.claims / w.synth_seconds:,.0f} claims/s")
    return w


def _run(benchmark, store: W.StoreWorkload, name: str, fn, *args) -> None:
    nbytes = benchmark.pedantic(fn, args=args, rounds=ROUNDS, iterations=1)
    if isinstance(nbytes, int):
        assert nbytes == store.ndjson_bytes  # every pass writes the very same NDJSON
    W.record(name, store.resources, store.ndjson_bytes, benchmark.stats.stats.median)


def test_row_selection(benchmark, store):
    _run(benchmark, store, W.EXPORT_SELECT, store.select)


def test_core_alone(benchmark, store):
    _run(benchmark, store, W.EXPORT_CORE, store.core_pass)


def test_core_sha256(benchmark, store):
    _run(benchmark, store, W.EXPORT_SHA, store.core_pass, lambda: W.MemorySink(sha=True))


def test_core_gzip(benchmark, store):
    _run(benchmark, store, W.EXPORT_GZIP, store.core_pass, lambda: W.MemorySink("gzip"))


def test_core_sha256_gzip(benchmark, store):
    _run(benchmark, store, W.EXPORT_SINK, store.core_pass, lambda: W.MemorySink("gzip", sha=True))


@pytest.mark.parametrize("overlap", [False, True], ids=["one core", "overlapped"])
def test_export_chunk(benchmark, store, tmp_path, overlap):
    name = W.EXPORT_OVERLAP if overlap else W.EXPORT_ONE
    _run(benchmark, store, name, store.export, tmp_path / "out", overlap)


def test_open_and_slice(benchmark, store):
    benchmark(W.open_and_slice, store.path)
    W.FACTS["open + slice (100 beneficiaries' carrier claims)"] = f"{benchmark.stats.stats.median * 1e3:.2f} ms"


def test_store_size_per_beneficiary(store):
    gen = store.path / "generations" / str(store.snapshot.generation)
    nbytes, files = W.disk_bytes(gen)
    claims = store.claims
    W.FACTS[f"store on disk, {BENES:,} beneficiaries, {claims:,} claim versions"] = (
        f"{nbytes / 1e6:,.1f} MB in {files} files = {nbytes / BENES / 1e3:.1f} KB/beneficiary, "
        f"{nbytes / claims:,.0f} B/claim"
    )
    assert nbytes > 0 and files > 0
