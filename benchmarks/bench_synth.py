"""Synthetic generator throughput: claims (every version, all four claim tables) per second.

    python -m pytest benchmarks/bench_synth.py -q     (FHIRHOSE_BENCH_SYNTH_BENES=10000 by default)

`generate` covers everything (population, claims, organizations, validation);
`chunks` only the claims. One chunk of beneficiaries, so no concatenation.
Timed in process CPU seconds: the generator is single-threaded numpy, and on
a shared machine CPU time is what one core would take; wall time is not.
"""

import os
import time

import pytest

from fhirhose import synth
from fhirhose.bench.workloads import record
from fhirhose.store import schema

BENES = int(os.environ.get("FHIRHOSE_BENCH_SYNTH_BENES", str(synth.CHUNK)))


def _report(benchmark, name, claims):
    median = benchmark.stats.stats.median
    record(name, claims, 0, median)
    print(f"\n{name}: {claims:,} claims in {median:.2f} CPU s (median) = {claims / median:,.0f} claims/s")


@pytest.mark.benchmark(timer=time.process_time)
def test_generate(benchmark):
    data = benchmark.pedantic(synth.generate, args=(BENES, 1), rounds=3, iterations=1)
    _report(benchmark, "synth generate (claims)", data.claims)


@pytest.mark.benchmark(timer=time.process_time)
def test_claims_only(benchmark):
    def run():
        return sum(t[name].n for _, t in synth.chunks(BENES, 1) for name in schema.CLAIM_TABLES)

    claims = benchmark.pedantic(run, rounds=3, iterations=1)
    _report(benchmark, "synth chunks (claims)", claims)
