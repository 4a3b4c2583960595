"""Compiled writer vs twin vs dict+orjson, and the gzip/zstd pipelines vs compression alone.

    python -m pytest benchmarks/bench_core.py -q     (FHIRHOSE_BENCH_BENES=3000 by default)
"""

import pytest

from fhirhose import _core_py
from fhirhose.bench.workloads import compress_alone, pipeline, record


def _keep(benchmark, name, records, nbytes):
    record(name, records, nbytes, benchmark.stats.stats.median)


def test_compiled_writer(benchmark, carrier):
    benchmark(carrier.write_batches)
    _keep(benchmark, "compiled writer", len(carrier.rows), len(carrier.sample))


def test_pure_python_twin(benchmark, carrier):
    rows = carrier.rows[:400]
    nbytes = len(carrier.render(_core_py, rows))
    benchmark.pedantic(carrier.write_batches, args=(_core_py, rows), rounds=3, iterations=1)
    _keep(benchmark, "pure-Python twin", len(rows), nbytes)


def test_dict_orjson_baseline(benchmark, carrier):
    from fhirhose.bench.baseline import DictBuilder

    base = DictBuilder(carrier.template, carrier.tables)
    rows = carrier.rows[:1500].tolist()
    nbytes = len(base.dumps(rows))
    benchmark.pedantic(base.dumps, args=(rows,), rounds=3, iterations=1)
    _keep(benchmark, "dict + orjson baseline", len(rows), nbytes)


@pytest.mark.parametrize("threads", [1, 2], ids=["one core", "two threads"])
@pytest.mark.parametrize("comp", ["gzip", "zstd"])
def test_pipeline(benchmark, carrier, comp, threads):
    benchmark(pipeline, carrier, comp, threads=threads)
    label = "two threads" if threads > 1 else "one core"
    _keep(benchmark, f"{comp} pipeline, {label}", len(carrier.rows), len(carrier.sample))


@pytest.mark.parametrize("comp", ["gzip", "zstd"])
def test_compression_alone(benchmark, carrier, comp):
    benchmark(compress_alone, carrier.sample, comp)
    _keep(benchmark, f"{comp} alone (same bytes)", len(carrier.rows), len(carrier.sample))
