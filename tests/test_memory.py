"""Memory held by an export: batch sizes, memory-mapped store pages, what a worker imports."""

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pytest

from fhirhose.export.exporter import Exporter, ExportSpec
from fhirhose.store import schema

SMAPS = "/proc/self/smaps"
needs_smaps = pytest.mark.skipif(not os.path.exists(SMAPS), reason="reads Linux /proc/self/smaps")
# claim tables by the table whose source reads them (a source's writer reads its table and its children)
CLAIM_FAMILY = {t: parent for parent in schema.CLAIM_TABLES for t in (parent, *schema.LINKS.get(parent, ()))}


def resident_tables(store_dir) -> set[str]:
    """Tables of the store at `store_dir` with memory-mapped pages resident in this process."""
    where = str(Path(store_dir).resolve()) + "/generations/"
    found, current = set(), None
    with open(SMAPS) as f:
        for line in f:
            head, _, rest = line.partition(" ")
            if not head.endswith(":"):  # a mapping: address perms offset device inode [path]
                path = rest.split(maxsplit=4)[-1].strip() if rest.count(" ") >= 4 else ""
                current = Path(path).name.split(".")[0] if path.startswith(where) else None
            elif head == "Rss:" and current is not None and int(rest.split()[0]) > 0:
                found.add(current)
    return found


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory):
    from fhirhose import synth

    path = tmp_path_factory.mktemp("synth") / "store"
    synth.write(path, 30, seed=5)
    return path


def _probed_export(store, sources, spec, out_dir, benes=None):
    """Export through `sources` and return, per batch (the exporter asks `cancelled` before
    each), the store tables then resident."""
    from fhirhose.store import Store

    seen = []

    def probe():
        seen.append(resident_tables(store))
        return False

    with Store.open(store) as snap:
        ex = Exporter(snap.tables, sources)
        rows = np.arange(snap.tables["bene"].n) if benes is None else benes
        out_dir.mkdir()
        ex.export_chunk(rows, spec, out_dir, cancelled=probe)
    return seen


@needs_smaps
def test_store_pages_released_after_each_source(tmp_path, synth_store):
    """While one claim source is written, no other claim source's store pages stay resident."""
    from fhirhose.fhir.registry import SOURCES

    # Every System-Type, so the shared-system sources are written too.
    spec = ExportSpec(types=("ExplanationOfBenefit",), compression="identity", batch_rows=64,
                      system_types=("SharedSystem", "NationalClaimsHistory", "DDPS"))
    seen = _probed_export(synth_store, SOURCES, spec, tmp_path / "out")
    families = [{CLAIM_FAMILY[t] for t in tables if t in CLAIM_FAMILY} for tables in seen]
    assert set().union(*families) == set(schema.CLAIM_TABLES)  # the probe sees what the writers read
    assert max(len(f) for f in families) == 1


@pytest.mark.slow
@needs_smaps
def test_store_pages_released_within_a_source(tmp_path, synth_store):
    """Every `release_bytes` of NDJSON the writer's pages go, so a long source holds only recent rows.
    Claim line tables are read by the writer alone: with release after every batch, a probe
    between batches never finds them resident; with the default it does."""
    from fhirhose.fhir.registry import EOB_TYPES

    sources = [EOB_TYPES["CARRIER"], EOB_TYPES["INPATIENT"]]
    lines = {"partb_line", "parta_rev", "parta_px", "parta_dx"}
    # One thread: with two, a probe between submissions races the other thread's render.
    spec = ExportSpec(types=("ExplanationOfBenefit",), compression="identity", batch_rows=2, batch_bytes=1, threads=1)
    benes = np.arange(8)
    kept = _probed_export(synth_store, sources, spec, tmp_path / "kept", benes)
    assert any(tables & lines for tables in kept)
    spec = msgspec.structs.replace(spec, release_bytes=1)
    released = _probed_export(synth_store, sources, spec, tmp_path / "released", benes)
    assert len(released) == len(kept)
    assert not any(tables & lines for tables in released)


def test_batches_aim_at_batch_bytes(tmp_path, core, synth_store):
    """A source's first batch measures its bytes per row; later ones hold about `batch_bytes`
    of NDJSON (here each write is its own file), never more than `batch_rows` resources."""
    from fhirhose.fhir.registry import EOB_TYPES
    from fhirhose.store import Store

    def batches(spec, out):
        out.mkdir()
        with Store.open(synth_store) as snap:
            ex = Exporter(snap.tables, [EOB_TYPES["CARRIER"]], core=core)
            return ex.export_chunk(np.arange(snap.tables["bene"].n), spec, out)

    eob = ("ExplanationOfBenefit",)
    target = 100_000
    files = batches(ExportSpec(types=eob, batch_bytes=target, max_file_bytes=1, compression="identity"), tmp_path / "a")
    assert files[0].count == 16
    later = files[1:-1]  # the last batch holds what is left
    assert len(later) >= 5
    assert 0.8 * target <= sum(f.length for f in later) / len(later) <= 1.2 * target
    assert max(f.count for f in later) < 16  # carrier EOBs are ~25 KB: a few per batch
    whole = ExportSpec(types=eob, batch_bytes=1 << 30, batch_rows=100, max_file_bytes=1, compression="identity")
    counts = [f.count for f in batches(whole, tmp_path / "b")]
    assert counts[0] == 16 and set(counts[1:-1]) == {100} and 0 < counts[-1] <= 100
    assert sum(counts) == sum(f.count for f in files)


def _env() -> dict[str, str]:
    """This environment with this checkout's sources first on the path (for subprocesses)."""
    src = str(Path(__file__).resolve().parent.parent / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _run(code: str, *args: str) -> str:
    """stdout of `python -c code args` (a fresh process: its own allocator and imports)."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env(),
                          check=True).stdout


def test_worker_imports_leave_the_web_app_out():
    """A spawn export worker imports `fhirhose.server.worker`, the exporter and `Scope`; the
    aiohttp app and the token service's cryptography bindings would cost each worker memory
    it never uses. The packages' names still resolve on first use."""
    code = (
        "import sys, fhirhose.server.worker, fhirhose.export.exporter\n"
        "from fhirhose.access import Scope\n"
        "print(sorted(m for m in ('aiohttp', 'cryptography', 'fhirhose.server.app') if m in sys.modules))\n"
        "from fhirhose.server import ServerConfig, create_app\n"
        "from fhirhose.access import TokenService\n"
        "print(create_app.__module__, ServerConfig.__module__, TokenService.__module__)\n"
        "import fhirhose.access\n"
        "print('plan_scope' in dir(fhirhose.access), hasattr(fhirhose.access, 'nothing'))\n"
    )
    assert _run(code).splitlines() == [
        "[]", "fhirhose.server.app fhirhose.server.config fhirhose.access.tokens", "True False"]


needs_glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc malloc")

_MALLOC_PRELUDE = """
import sys
from fhirhose._memory import limit_malloc_retention, release_free_memory
def anon_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) >> 10
"""

_RETAINED = _MALLOC_PRELUDE + """
if sys.argv[1] == "limit":
    assert limit_malloc_retention()
big = bytearray(16 << 20)  # freeing it lifts glibc's dynamic mmap threshold to 16 MiB
del big
base = anon_mb()
blocks = [bytearray(4 << 20) for _ in range(10)]
last = blocks[-1]  # a live block above the freed ones
del blocks
print(anon_mb() - base)
"""


@needs_glibc
def test_limit_malloc_retention_returns_freed_blocks():
    """Nine freed 4 MiB blocks under a live one: the heap keeps them resident, unless the
    thresholds are fixed and each large block has its own mapping."""
    assert int(_run(_RETAINED, "default")) >= 30
    assert int(_run(_RETAINED, "limit")) <= 8


_FRAGMENTED = _MALLOC_PRELUDE + """
blocks = [bytearray(2000) for _ in range(60_000)]  # ~120 MB of small heap blocks
live = blocks[::100]  # one live block every ~200 KB: free() cannot shrink the heap
del blocks
before = anon_mb()
if sys.argv[1] == "release":
    release_free_memory()
print(before - anon_mb())
"""


@needs_glibc
def test_release_free_memory_returns_pages_between_live_blocks():
    """free() gives back only the top of the heap; malloc_trim also the free pages between."""
    assert int(_run(_FRAGMENTED, "keep")) <= 5
    assert int(_run(_FRAGMENTED, "release")) >= 80
