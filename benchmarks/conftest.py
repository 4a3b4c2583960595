"""Benchmark fixtures: deterministic synthetic data, and a ratio table printed at the end.

Run: `python -m pytest benchmarks -q` (pytest-benchmark). Every figure that
matters is a ratio to a baseline measured in the same run (these machines are
noisy); absolute figures are medians on one core.
"""

from __future__ import annotations

import os

import pytest

from fhirhose.bench.workloads import RESULTS, carrier_workload


@pytest.fixture(scope="session")
def carrier():
    return carrier_workload(int(os.environ.get("FHIRHOSE_BENCH_BENES", "3000")))


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    from fhirhose.bench.workloads import ratio_table

    terminalreporter.write_sep("=", "fhirhose throughput (medians, one core)")
    for line in ratio_table():
        terminalreporter.write_line(line)
