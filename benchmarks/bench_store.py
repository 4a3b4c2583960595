"""Store and CCLF ingest: parse rate (MB/s of CCLF input), ingest into a store,
open + slice cost, and disk bytes per beneficiary (of the CCLF store and of the
synthetic store `bench_export.py` exports, see conftest `synth_store`).

    python -m pytest benchmarks/bench_store.py -q     (FHIRHOSE_BENCH_CCLF_BENES=2500 by default)

The CCLF5 is generated deterministically from the packaged layouts: every
beneficiary has claims of two lines, each line a full 388-byte v36 record.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from fhirhose.bench.workloads import FACTS, disk_bytes, open_and_slice, record
from fhirhose.store import Store, schema
from fhirhose.store.cclf import read_cclf
from tests.support.cclf_writer import cclf0, file_name, reclen
from tests.support.cclf_writer import record as cclf_record
from tests.test_cclf import bene, carrier

BENES = int(os.environ.get("FHIRHOSE_BENCH_CCLF_BENES", "2500"))
CLAIMS_PER_BENE = 5


def _patch(m: np.ndarray, fid: str, name: str, values: list[str]) -> None:
    from fhirhose.store.cclf import layout

    f = next(x for x in layout(fid) if x.name == name)
    width = f.end - f.start
    m[:, f.start : f.end] = np.frombuffer("".join(v.rjust(width)[:width] for v in values).encode(), np.uint8).reshape(-1, width)


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> tuple[Path, int, int]:
    """A CCLF0/5/8 delivery; returns (directory, CCLF5 lines, input bytes)."""
    d = tmp_path_factory.mktemp("cclf")
    mbis = [f"{i:04d}AA0AA{i % 100:02d}"[:11].rjust(11, "1") for i in range(BENES)]
    n_claims = BENES * CLAIMS_PER_BENE
    lines = n_claims * 2
    base5 = np.frombuffer(cclf_record("5", carrier("1", "1", mbis[0], "0", "2024-01-10", "50.00")), np.uint8)
    m5 = np.tile(np.append(base5, np.uint8(10)), (lines, 1))
    claim = np.repeat(np.arange(n_claims), 2)
    _patch(m5, "5", "CUR_CLM_UNIQ_ID", [str(1_000_000 + c) for c in claim])
    _patch(m5, "5", "CLM_LINE_NUM", [str(1 + (i & 1)) for i in range(lines)])
    _patch(m5, "5", "BENE_MBI_ID", [mbis[c // CLAIMS_PER_BENE] for c in claim])
    _patch(m5, "5", "CLM_CNTL_NUM", [f"CTL{c // 2}" for c in claim])  # pairs of versions
    _patch(m5, "5", "CLM_ADJSMT_TYPE_CD", [str((c & 1) * 2) for c in claim])
    _patch(m5, "5", "CLM_LINE_CVRD_PD_AMT", [f"{(c * 37) % 50000 / 100:.2f}" for c in claim])
    (d / file_name("5")).write_bytes(m5.tobytes())
    (d / file_name("8")).write_bytes(b"".join(cclf_record("8", bene(m, "Pat")) + b"\n" for m in mbis))
    (d / file_name("0")).write_bytes(cclf0({"5": (lines, reclen("5")), "8": (BENES, reclen("8"))}))
    size = sum(p.stat().st_size for p in d.iterdir())
    return d, lines, size


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, delivery):
    root = tmp_path_factory.mktemp("store") / "s"
    store = Store.create(root)
    store.load(*read_cclf([delivery[0]]))
    return store


def test_cclf_parse(benchmark, delivery, capsys):
    d, lines, size = delivery
    benchmark.pedantic(read_cclf, args=([d],), rounds=3, iterations=1)
    sec = benchmark.stats.stats.median
    record("CCLF parse (records = CCLF5+8 lines)", lines + BENES, size, sec)
    with capsys.disabled():
        print(f"\nCCLF parse: {size / 1e6:.1f} MB in {sec:.3f} s = {size / sec / 1e6:.0f} MB/s")


def test_cclf_ingest_into_store(benchmark, delivery, tmp_path, capsys):
    d, lines, size = delivery
    counter = iter(range(100))

    def fresh():
        return (Store.create(tmp_path / f"s{next(counter)}"),), {}

    benchmark.pedantic(lambda s: s.load(*read_cclf([d])), setup=fresh, rounds=2, iterations=1)
    sec = benchmark.stats.stats.median
    record("CCLF ingest into a new store", lines + BENES, size, sec)
    with capsys.disabled():
        print(f"\nCCLF parse + merge + write: {size / sec / 1e6:.0f} MB/s of CCLF input")


def _store(request, kind: str) -> Path:
    """The store a size/latency test measures: the CCLF-ingested one or the synthetic one."""
    return request.getfixturevalue("loaded").path if kind == "cclf" else request.getfixturevalue("synth_store").path


@pytest.mark.parametrize("kind", ["cclf", "synthetic"])
def test_open_and_slice(benchmark, request, kind, capsys):
    path = _store(request, kind)
    benchmark(open_and_slice, path)
    ms = benchmark.stats.stats.median * 1e3
    FACTS[f"open + slice of 100 beneficiaries' carrier claims, {kind} store"] = f"{ms:.2f} ms"
    with capsys.disabled():
        print(f"\nopen + slice ({kind} store): {ms:.1f} ms")


@pytest.mark.parametrize("kind", ["cclf", "synthetic"])
def test_store_bytes_per_beneficiary(request, kind, capsys):
    path = _store(request, kind)
    store = Store(path)
    with store.snapshot() as snap:
        gdir = path / "generations" / str(snap.generation)
        n = snap.tables["bene"].n
        claims = sum(snap.tables[t].n for t in schema.CLAIM_TABLES)
    total, files = disk_bytes(gdir)
    if kind == "cclf":
        assert n == BENES and claims == BENES * CLAIMS_PER_BENE
    t0 = time.perf_counter()
    store.verify()
    verify_s = time.perf_counter() - t0
    FACTS[f"store on disk, {kind}: {n:,} beneficiaries, {claims:,} claim versions"] = (
        f"{total / 1e6:,.1f} MB in {files} files = {total / n / 1e3:.1f} KB/beneficiary, "
        f"{total / claims:,.0f} B/claim; verify {verify_s:.2f} s")
    with capsys.disabled():
        print(f"\nstore on disk ({kind}): {total / 1e6:.1f} MB for {n} beneficiaries / {claims} claims "
              f"= {total / n / 1e3:.1f} KB per beneficiary ({files} files); verify {verify_s:.2f} s")


def test_weekly_incremental_load(benchmark, loaded, tmp_path, capsys):
    """A week's small delivery (new versions of 200 claims) into the loaded store:
    the cost of a load is a new generation, so it grows with the store, not the delivery."""
    week = {"5": [carrier(str(9_000_000 + i), "1", f"{i:04d}AA0AA{i % 100:02d}"[:11].rjust(11, "1"), "2",
                          "2024-02-01", "10.00", cntl=f"CTL{i * CLAIMS_PER_BENE // 2}") for i in range(200)]}
    from tests.support.cclf_writer import write_delivery

    paths = write_delivery(tmp_path / "w", week, date="240122")
    tables, source = read_cclf(paths)
    benchmark.pedantic(lambda: loaded.load(tables, source), rounds=2, iterations=1)
    with capsys.disabled():
        print(f"\nweekly load of 200 claim versions into {BENES} beneficiaries: {benchmark.stats.stats.median:.2f} s")
