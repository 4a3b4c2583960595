"""What runs in a worker process: one chunk of one job.

The parent sends a `ChunkTask` (plain data: the store is opened here, by path, once per
process). The exporter writes its rolled-over compressed files into a private temporary
directory; only when it has returned are they renamed into the job directory under
deterministic names. The parent then fsyncs them and the directory (`sync_chunk`, on a
thread of its own, while this worker already runs its next chunk: an fsync waits for the
disk) and only then registers them in the job DB, so a file that is listed is always
complete. A file renamed but never listed is not served; a chunk redone after a crash
overwrites the same names instead of adding duplicates.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import msgspec
import numpy as np

from .._memory import limit_malloc_retention, release_free_memory
from ..columns import date_to_days
from ..errors import ExportError
from ..export.compress import SUFFIX
from ..export.files import file_name
from ..store.layout import fsync_dir, fsync_path
from .params import TypeFilter

if TYPE_CHECKING:
    from ..fhir.source import Source

__all__ = ["init_worker", "ChunkTask", "ChunkFile", "ChunkExporter", "run_chunk", "load_exporter", "fsync_dir",
           "export_scoped", "export_from_store", "store_exporter", "claim_filters", "warm_up", "sync_chunk"]


def init_worker(parent: int, every: float = 1.0, warm: str | None = None) -> None:
    """Pool initializer: bounded malloc retention, and exit when the server `parent` is gone;
    with `warm` (the chunk exporter's "module:function"), `warm_up` before the first chunk.

    A server killed outright (SIGKILL, the OOM killer) cannot stop its pool, and a worker
    never sees the call queue close (every worker holds its write end too): it would wait
    forever, or finish a chunk nobody records (the next start redoes it). Checked once a
    second on a daemon thread."""
    limit_malloc_retention()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="fhirhose-parent-watch", daemon=True).start()
    if warm is not None:
        warm_up(warm)


def warm_up(exporter: str) -> None:
    """Import what a worker's first chunk would otherwise import (~0.3 CPU s: numpy, the
    compiled core, the templates of every resource). The store is not opened here: a
    snapshot holds a lease file in the store until closed, and a worker stopped with the
    server never closes it. Never raises: an initializer that fails breaks the pool, and
    the first chunk reports what failed here."""
    try:
        if load_exporter(exporter) is store_exporter:
            from ..access import Scope  # noqa: F401 - imported for its cost
            from ..export import exporter as _exporter_module  # noqa: F401
            from ..fhir import registry  # noqa: F401
    except Exception as e:  # noqa: BLE001 - only a head start; the first chunk will say what is wrong
        logging.getLogger(__name__).warning("export worker warm-up: %s: %s", type(e).__name__, e)


class ChunkTask(msgspec.Struct, frozen=True):
    """Everything a worker needs for one chunk; picklable, no open handles."""

    job_id: str
    seq: int
    store_path: str
    job_dir: str
    benes: bytes  # int64 store rows of this chunk's beneficiaries
    types: list[str]
    since: str | None
    until: str | None  # the client's _until (exclusive)
    transaction_time: str  # resources changed after it are left out
    generation: int | None  # store generation the rows index
    type_filters: list[TypeFilter]
    elements: list[str]
    compression: str  # gzip | zstd
    level: int
    exporter: str  # "module:function" of a ChunkExporter
    # fhirhose.access.Scope.to_bytes() of the job's scope narrowed to this chunk: the
    # access rules (opt-outs, lookback, runout cut-off, enrolled months, since exemptions)
    scope: bytes
    ndjson_sha256: bool = False  # also BCDA's checksum of the uncompressed NDJSON (costly; off by default)
    organize_by: str | None = None  # organizeOutputBy (Bulk Data v3): files of blocks per Patient
    # Threads that render and compress this chunk (ExportSpec.threads): the cores not
    # taken by the other workers (with a worker per core, 1: threads would only hand off).
    threads: int = 2

    @property
    def rows(self) -> np.ndarray:
        return np.frombuffer(self.benes, np.int64)


class ChunkFile(msgspec.Struct, frozen=True):
    """One finished file an exporter wrote into its output directory."""

    name: str  # file name inside the exporter's output directory
    type: str  # resource type (OperationOutcome for error files)
    count: int  # resources (lines)
    length: int  # NDJSON bytes
    compression: str  # gzip | zstd | identity
    kind: str = "output"  # output | error | deleted
    digest: str = ""  # sha256 hex of the file as written ("": run_chunk computes it)
    sha256: str = ""  # sha256 hex of the NDJSON, when the task asked for it


class ChunkExporter(Protocol):
    """Writes the NDJSON files for `task.rows` into `out_dir` and describes them."""

    def __call__(self, task: ChunkTask, out_dir: Path) -> list[ChunkFile]: ...


def load_exporter(spec: str) -> Callable[[ChunkTask, Path], list[ChunkFile]]:
    """Import "package.module:function"."""
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ExportError(f"chunk exporter {spec!r} cannot be loaded: {e}") from None


def run_chunk(task: ChunkTask) -> list[dict]:
    """Run one chunk in this process; returns the placed files as dicts for the job DB, which
    lists them only after `sync_chunk` (the files are not fsynced here)."""
    job_dir = Path(task.job_dir)
    # Private to this attempt: a node whose lease ran out may still be writing the same chunk
    # while another redoes it. The final names are shared, and os.replace makes each atomic.
    tmp = job_dir / f".chunk-{task.seq:05d}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    files = load_exporter(task.exporter)(task, tmp)
    placed = []
    per_type: dict[tuple[str, str], int] = {}
    for f in files:
        k = per_type[(f.kind, f.type)] = per_type.get((f.kind, f.type), 0) + 1
        name = file_name(f.type, task.seq, k)  # the offline export's names, less the coding suffix
        stored = name + SUFFIX[f.compression]
        src = tmp / f.name
        digest = f.digest
        if not digest:  # a ChunkExporter that does not digest what it writes
            with open(src, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
        stored_length = src.stat().st_size
        os.replace(src, job_dir / stored)
        placed.append(dict(msgspec.structs.asdict(f), name=name, stored=stored, stored_length=stored_length,
                           chunk=task.seq, digest=digest))
    shutil.rmtree(tmp, ignore_errors=True)
    # Give the chunk's freed heap back: the compressor's per-file state and output blocks
    # (below the mmap threshold) otherwise stay resident between live blocks, ~2 MB more per
    # chunk when compression runs on this thread (100,000 beneficiaries: +90 MB per worker).
    release_free_memory()
    return placed


def sync_chunk(job_dir: str | os.PathLike, placed: list[dict]) -> None:
    """fsync a chunk's placed files, then the job directory: before they are listed."""
    for f in placed:
        fsync_path(Path(job_dir) / f["stored"])
    fsync_dir(Path(job_dir))


# This process' exporters, by (store, generation, sources), least recently used first. A
# job's chunks all read the generation it was planned on; a worker keeps the exporters of
# the last `_GENERATIONS` it ran and lets older ones go with their snapshots' leases, so
# the store can collect generations of past loads while the server runs (kept open for
# the process' life, every generation a worker ever exported stayed on disk).
_EXPORTERS: OrderedDict[tuple, object] = OrderedDict()
_GENERATIONS = 2


def _ms(instant: str) -> int:
    return int(_dt.datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp() * 1000)


def claim_filters(filters: list[TypeFilter]):
    """`_typeFilter`s as the exporter's ClaimFilters (OR-ed): each service-date bound becomes an
    inclusive day bound, each accepted final-action code and outcome its own filter; a filter
    without a System-Type `_tag` accepts NationalClaimsHistory and DDPS claims (BCDA v3)."""
    from ..export.exporter import DEFAULT_SYSTEM_TYPES, ClaimFilter

    out = []
    for tf in filters:
        ge = le = None
        for b in tf.service_date:
            d = date_to_days(b.date)  # validated in params
            lo, hi = {"ge": (d, None), "gt": (d + 1, None), "le": (None, d), "lt": (None, d - 1),
                      "eq": (d, d)}[b.op]
            ge = lo if lo is not None and (ge is None or lo > ge) else ge
            le = hi if hi is not None and (le is None or hi < le) else le
        systems = tuple(tf.system_type) or DEFAULT_SYSTEM_TYPES
        outcomes: list[str | None] = list(tf.outcome) or [None]
        for code in tf.final_action or (None,):
            fa = None if code is None else ("F" if code == "FinalAction" else "N")
            for outcome in outcomes:
                out.append(ClaimFilter(service_ge=ge, service_le=le, final_action=fa, system_types=systems,
                                       outcome=outcome))
    return tuple(out)


def export_scoped(task: ChunkTask, out_dir: Path, exporter) -> list[ChunkFile]:
    """One chunk through `exporter` (a `fhirhose.export.Exporter`) within the job's access
    scope (`task.scope`; a task without one is refused).

    `_until` is exclusive; the transaction time is inclusive (IG: resources changed up to
    and including it are in), so the cut-off is the earlier of `_until` and tx + 1 ms.
    """
    from ..access import Scope
    from ..export.exporter import ExportSpec

    if not task.scope:
        raise ExportError(f"job {task.job_id} chunk {task.seq}: no access scope; refusing to export unscoped")
    until = _ms(task.transaction_time) + 1
    if task.until:
        until = min(until, _ms(task.until))
    spec = ExportSpec(
        types=tuple(task.types), since_ms=_ms(task.since) if task.since else None, until_ms=until,
        claim_filters=claim_filters(task.type_filters), compression=task.compression, level=task.level,
        elements=tuple(task.elements), ndjson_sha256=task.ndjson_sha256, threads=task.threads,
        fsync=False,  # the runner fsyncs the chunk's files (sync_chunk) before it lists them
    )
    scope = Scope.from_bytes(task.scope)
    if task.organize_by:
        infos = _organized(task, out_dir, exporter, scope, spec)
    else:
        infos = scope.export_chunk(exporter, task.rows, spec, out_dir, chunk=task.seq)
    files = [_chunk_file(i) for i in infos]
    if task.since:
        files += _deleted(task, out_dir, exporter, scope, spec)
    return files


def _chunk_file(info, kind: str = "output") -> ChunkFile:
    return ChunkFile(name=info.name, type=info.type, count=info.count, length=info.length,
                     compression=info.compression, kind=kind, digest=info.digest, sha256=info.sha256 or "")


def _organized(task: ChunkTask, out_dir: Path, exporter, scope, spec):
    """The chunk's files of Patient blocks (`organizeOutputBy`), within the scope."""
    from ..export.organized import export_organized

    rows = task.rows[np.isin(task.rows, scope.bene_rows)]
    return export_organized(exporter, rows, scope.narrow(spec), out_dir, chunk=task.seq,
                            since_exempt=scope.since_exempt, claim_rule=scope.enrollment)


def _deleted(task: ChunkTask, out_dir: Path, exporter, scope, spec) -> list[ChunkFile]:
    """The chunk's deleted file (resources removed since `_since`), within the scope."""
    from ..export.deleted import export_deleted

    rows = task.rows[np.isin(task.rows, scope.bene_rows)]
    spec = scope.narrow(spec)  # its since: the client's, or later where a rule raised it
    infos = export_deleted(exporter, rows, scope.removed, spec, spec.since_ms, spec.until_ms, out_dir,
                           chunk=task.seq, since_exempt=scope.since_exempt, claim_rule=scope.enrollment)
    return [_chunk_file(i, "deleted") for i in infos]


def export_from_store(task: ChunkTask, out_dir: Path, sources: Sequence[Source]) -> list[ChunkFile]:
    """`export_scoped` with an Exporter over the job's store generation (opened once per process)."""
    return export_scoped(task, out_dir, _exporter(task.store_path, task.generation, sources))


def _exporter(store_path: str, generation: int | None, sources: Sequence[Source]):
    """This process' Exporter over one store generation (opened once per process)."""
    from ..export.exporter import Exporter
    from ..store.opener import forget_snapshot, shared_snapshot

    key = (store_path, generation, id(sources))
    ex = _EXPORTERS.get(key)
    if ex is not None:
        _EXPORTERS.move_to_end(key)
        return ex
    ex = _EXPORTERS[key] = Exporter(shared_snapshot(store_path, generation).tables, sources)
    while len(_EXPORTERS) > _GENERATIONS:
        (path, gen, _), _old = _EXPORTERS.popitem(last=False)
        if not any(k[:2] == (path, gen) for k in _EXPORTERS):  # (another template set may share it)
            forget_snapshot(path, gen)
    return ex


def store_exporter(task: ChunkTask, out_dir: Path) -> list[ChunkFile]:
    """The production `ChunkExporter`: the store's resources through the template registry."""
    from ..fhir.registry import SOURCES

    return export_from_store(task, out_dir, SOURCES)
