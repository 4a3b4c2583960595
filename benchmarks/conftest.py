"""Benchmark fixtures: deterministic synthetic data, and a ratio table printed at the end.

Run: `python -m pytest benchmarks -q` (pytest-benchmark). Every figure that
matters is a ratio to a baseline measured in the same run (these machines are
noisy); absolute figures are medians on one core.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fhirhose.bench.workloads import FACTS, RESULTS, carrier_workload, store_workload


@pytest.fixture(scope="session")
def carrier():
    return carrier_workload(int(os.environ.get("FHIRHOSE_BENCH_BENES", "3000")))


@pytest.fixture(scope="session")
def synth_store(tmp_path_factory):
    """A synthetic store opened for export (FHIRHOSE_BENCH_EXPORT_BENES, default 3000),
    generated once per session, or kept in and reused from FHIRHOSE_BENCH_STORE."""
    benes = int(os.environ.get("FHIRHOSE_BENCH_EXPORT_BENES", "3000"))
    keep = os.environ.get("FHIRHOSE_BENCH_STORE")
    path = Path(keep) if keep else tmp_path_factory.mktemp("synth-store") / "store"
    w = store_workload(path, benes, seed=7)
    if w.synth_seconds is not None:  # generated once, as setup: one figure, not a median
        FACTS[f"synth.write into a new store, {benes:,} beneficiaries"] = (
            f"{w.claims:,} claim versions in {w.synth_seconds:.1f} s = {w.claims / w.synth_seconds:,.0f} claims/s")
    return w


def pytest_collect_file(file_path, parent):
    """Collect bench_*.py as test modules, so `python -m pytest benchmarks` runs them.

    Named bench_ (not test_) so the root pytest run never picks them up; a path named
    on the command line is already collected by pytest itself."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_terminal_summary(terminalreporter):
    if not RESULTS and not FACTS:
        return
    from fhirhose.bench.workloads import ratio_table

    terminalreporter.write_sep("=", "fhirhose throughput (medians, one core)")
    for line in ratio_table():
        terminalreporter.write_line(line)
