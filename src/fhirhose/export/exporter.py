"""The exporter: beneficiaries → rows per resource source → NDJSON files.

A plain library object (the server reuses it): it holds a store's tables and
bound writers; `export_chunk` writes the files of one chunk of beneficiaries;
`export` runs all chunks (in this process or a process pool) and writes
`manifest.json`. Row selection is vectorized numpy over whole columns; the
writer then sees only row numbers, never Python objects per record.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np

from .._backend import core as _default_core
from .._memory import limit_malloc_retention
from ..columns import NO_DATE, NO_NUM, Table, release_pages
from ..errors import ExportError, InputError
from ..fhir.elements import elements_for, subset
from ..fhir.registry import RESOURCE_TYPES
from ..fhir.source import Source
from ..log import get_logger
from ..template import Template
from .compress import Piece
from .files import FileInfo, RollingWriter
from .manifest import Manifest, output_item

__all__ = [
    "Pipeline",
    "Tally",
    "Source",
    "ClaimFilter",
    "ClaimRule",
    "DEFAULT_SYSTEM_TYPES",
    "ExportSpec",
    "Exporter",
    "ExportResult",
    "RESOURCE_TYPES",
    "claim_rows",
    "export_store",
]

log = get_logger(__name__)

_FIRST_BATCH = 16  # rows of a source's first batch, which measures its bytes per row


# Claims exported when no `_typeFilter` names a System-Type (BCDA v3): NCH and Part D, not
# the shared-system feed.
DEFAULT_SYSTEM_TYPES = ("NationalClaimsHistory", "DDPS")


class ClaimFilter(msgspec.Struct, frozen=True):
    """One `_typeFilter` on ExplanationOfBenefit; several are OR-ed.

    service_ge/le are days since the epoch (inclusive); final_action "F"/"N";
    system_types the System-Types it accepts (`_tag`; default NCH and DDPS); outcome
    "complete" or "partial".
    """

    service_ge: int | None = None
    service_le: int | None = None
    final_action: str | None = None
    system_types: tuple[str, ...] = DEFAULT_SYSTEM_TYPES
    outcome: str | None = None


class ClaimRule(Protocol):
    """A per-claim test beyond the spec (e.g. a Part D sponsor's enrolled months).

    `allows` gets, for candidate claim rows, the owning bene row and the service
    from/thru days (thru falls back to from) and returns a boolean mask. Claims of
    a source without service dates cannot be tested and are withheld."""

    def allows(self, owners: np.ndarray, from_days: np.ndarray, thru_days: np.ndarray) -> np.ndarray: ...


class ExportSpec(msgspec.Struct, frozen=True):
    """What to export, independent of who asked (the access rules fill it in)."""

    types: tuple[str, ...] = RESOURCE_TYPES
    since_ms: int | None = None  # `_since`: last_updated >= since
    until_ms: int | None = None  # `_until`: last_updated < until
    claim_filters: tuple[ClaimFilter, ...] = ()
    # System-Types exported without claim filters (with them, each filter's own), and the
    # ones allowed at all (access rules: a model entity without shared-system data).
    system_types: tuple[str, ...] = DEFAULT_SYSTEM_TYPES
    allowed_system_types: tuple[str, ...] | None = None
    claims_from: int | None = None  # days: lookback / attestation start (service from >=)
    claims_through: int | None = None  # days: runout cut-off (service from <=)
    exclude_sud: bool = True  # 42 CFR Part 2 claims never leave
    compression: str = "gzip"
    level: int | None = None
    max_file_bytes: int = 256 << 20
    batch_rows: int = 256  # at most this many resources per write
    batch_bytes: int = 2 << 20  # aim for about this much NDJSON per write: small buffers, warm caches
    release_bytes: int = 32 << 20  # release the store's mapped pages after this much NDJSON of a source
    # Threads that render and compress batches (Pipeline); 1 runs them inline. Two use both
    # cores of one export; a server with a worker process per core gives each one.
    threads: int = 2
    # Keep written files in the page cache (a server serves them next); False streams them
    # past it (streamed.StreamedFile), as the offline export does: nobody reads them back soon.
    cached: bool = True
    # fsync each file before it is renamed into place. False leaves it to the caller, who must
    # fsync before listing the files: the server's runner does, while the worker goes on.
    fsync: bool = True
    # Also SHA-256 the uncompressed NDJSON (BCDA's checksum extension). Off by default: it costs
    # more CPU than writer and gzip together; the stored digest + codec check cover the bytes.
    ndjson_sha256: bool = False
    elements: tuple[str, ...] = ()  # `_elements`: "[Type.]element" names; () = whole resources

    def check(self) -> None:
        bad = [t for t in self.types if t not in RESOURCE_TYPES]
        if bad:
            raise InputError(f"_type: {', '.join(bad)} not supported; supported: {', '.join(RESOURCE_TYPES)}")


class ExportResult(msgspec.Struct):
    files: list[FileInfo]
    manifest_path: str | None = None


class Tally:
    """Rows and NDJSON bytes a source has stored so far (its bytes per row sizes the next batch)."""

    __slots__ = ("rows", "bytes")

    def __init__(self) -> None:
        self.rows = 0
        self.bytes = 0


class _Batch:
    __slots__ = ("seq", "writer", "rows", "sink", "tally", "buf", "piece", "size", "error", "stored")

    def __init__(self, seq: int, writer, rows: np.ndarray, sink, tally: Tally):
        self.seq, self.writer, self.rows, self.sink, self.tally = seq, writer, rows, sink, tally
        self.buf = None  # the OutBuffer rendered into, while it is needed
        self.piece: Piece | None = None
        self.error: BaseException | None = None
        self.size = 0
        self.stored = threading.Event()


class Pipeline:
    """Render and compress batches on `threads` threads; store them in submission order.

    Each batch is one job: render its rows into a buffer, then, for a sink whose codec
    compresses in pieces (`sink.pieced`: gzip, identity), `sink.encode` it there too. So
    both cores render and compress, whichever work there is: a source that renders slowly
    (Patient) and one that compresses slowly (EOB) cost the sum of their work over two
    cores, not the slower stage of each. Whichever thread finishes the oldest pending batch
    stores it (`sink.put`: digest, file write), in order, under one lock; the other thread
    keeps rendering. A streaming sink (zstd, or any sink with only `write`) gets
    `sink.write(buffer)` at that point instead: its compression stays in line order.
    `threads=1` runs every batch inline on the caller's thread.

    At most `depth` batches are in flight; the caller's `submit` waits for room.
    """

    def __init__(self, core, threads: int = 2, capacity: int = 1 << 22, depth: int | None = None):
        self._core = core
        self._capacity = capacity
        threads = max(1, threads)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="fhirhose-export") if threads > 1 else None
        self._slots = threading.Semaphore(depth or 3 * threads)
        self._free: list = []  # OutBuffers not in use (made on demand: at most one per batch in flight)
        self._ready: dict[int, _Batch] = {}  # rendered (and encoded), waiting for older batches
        self._store_lock = threading.Lock()
        self._stored = threading.Condition()
        self._seq = 0  # next batch submitted
        self._handed = 0  # batches handed to a thread (or run): what `drain` waits for
        self._next = 0  # next batch stored
        self._error: BaseException | None = None

    def submit(self, writer, rows: np.ndarray, sink, tally: Tally | None = None) -> threading.Event:
        """Queue `writer.write(rows)` for `sink`; returns an event set once the batch is stored
        (and counted in `tally`). Raises the first error of an earlier batch."""
        self._raise_failed()
        self._slots.acquire()
        job = _Batch(self._seq, writer, rows, sink, tally or Tally())
        self._seq += 1
        if self._pool is None:
            self._run(job)
            self._handed = self._seq
            self._raise_failed()
        else:
            self._pool.submit(self._run, job)
            # Counted only once handed over: an interrupt (Ctrl-C lands on this thread) before
            # that must not leave `drain` waiting for a batch no thread has.
            self._handed = self._seq
        return job.stored

    def _raise_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self, job: _Batch) -> None:
        try:
            buf = job.buf = self._free.pop() if self._free else self._core.OutBuffer(self._capacity)
            buf.clear()
            job.writer.write(job.rows, buf)
            job.size = len(buf)
            if getattr(job.sink, "pieced", False):
                job.piece = job.sink.encode(buf, len(job.rows))
                if not job.sink.needs_ndjson:
                    self._free.append(buf)
                    job.buf = None
        except BaseException as e:
            job.error = e
        self._ready[job.seq] = job
        self._store_ready()

    def _store_ready(self) -> None:
        # Lock-free hand-off: a thread that cannot take the lock leaves its batch to the
        # holder, which looks again after releasing it (so no batch is left behind).
        while self._next in self._ready and self._store_lock.acquire(blocking=False):
            try:
                while (job := self._ready.pop(self._next, None)) is not None:
                    self._store(job)
                    self._next += 1
                    self._slots.release()
                    with self._stored:
                        self._stored.notify_all()
            finally:
                self._store_lock.release()

    def _store(self, job: _Batch) -> None:
        try:
            if self._error is None:
                if job.error is not None:
                    raise job.error
                if job.piece is not None:
                    job.sink.put(job.piece, job.buf)
                else:
                    job.sink.write(job.buf, len(job.rows))
                job.tally.rows += len(job.rows)
                job.tally.bytes += job.size
        except BaseException as e:
            self._error = e
        finally:
            if job.buf is not None:
                self._free.append(job.buf)
                job.buf = None
            job.stored.set()

    def drain(self, raise_errors: bool = True) -> None:
        """Wait until every submitted batch is stored (or dropped after an error)."""
        with self._stored:
            self._stored.wait_for(lambda: self._next >= self._handed)
        if raise_errors:
            self._raise_failed()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.drain(raise_errors=False)
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def claim_rows(bene: Table, table: str, bene_rows: np.ndarray) -> np.ndarray:
    """All rows of claim table `table` for the given bene rows (vectorized range expansion)."""
    off = bene.links[table]
    starts = off[bene_rows]
    lens = off[bene_rows + 1] - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    # Row k of the output = starts[i] + (k - first output index of bene i).
    firsts = np.cumsum(lens) - lens
    return np.repeat(starts - firsts, lens) + np.arange(total, dtype=np.int64)


def _wanted_system(system_type: str, spec: ExportSpec) -> bool:
    """Whether claims of this System-Type can be in the export at all (skips whole sources)."""
    if spec.allowed_system_types is not None and system_type not in spec.allowed_system_types:
        return False
    if spec.claim_filters:
        return any(system_type in f.system_types for f in spec.claim_filters)
    return system_type in spec.system_types


def _outcomes(source: Source, table: Table, rows: np.ndarray) -> np.ndarray:
    """Each claim's adjudication outcome ("complete" unless the source has an outcome column)."""
    if source.outcome is None:
        return np.full(len(rows), "complete", dtype=object)
    col = table[source.outcome]
    return np.asarray(col.labels, dtype=object)[col.codes[rows]]


def _in_window(values: np.ndarray, lo: int | None, hi: int | None) -> np.ndarray:
    keep = values != NO_NUM
    if lo is not None:
        keep &= values >= lo
    if hi is not None:
        keep &= values < hi
    return keep


class Exporter:
    """Writes NDJSON for beneficiaries of one store snapshot.

    `tables` is the store's tables (memory-mapped); `sources` what to write
    (`fhir.registry.SOURCES` is every resource fhirhose emits); `core` is the backend module.
    """

    def __init__(self, tables: Mapping[str, Table], sources: Sequence[Source], core=None):
        self.tables = tables
        self.sources = list(sources)
        self.core = core or _default_core
        self._writers: dict[tuple, object] = {}
        self._bound: dict[int, Table] = {}  # tables the bound plans read, by identity
        self._plan_tables: dict[int, list[Table]] = {}  # id(writer) → the tables its plan reads

    def writer(self, template: Template, rtype: str = "", elements: tuple[str, ...] = ()):
        """The bound writer of `template` (cut to `_elements` when they apply to `rtype`)."""
        names = elements_for(rtype, elements) if elements else None
        key = (id(template), names)
        w = self._writers.get(key)
        if w is None:
            if names is not None:
                template = subset(template, rtype, names)
            plan = template.bind(self.tables)
            self._bound.update((id(t), t) for t in plan.tables)
            w = self._writers[key] = self.core.Writer(plan)
            self._plan_tables[id(w)] = plan.tables
            release_pages(plan.tables)  # binding read column ends, not the rows a chunk needs
        return w

    def release_pages(self) -> int:
        """Release the memory-mapped pages of the tables this exporter has bound."""
        return release_pages(self._bound.values())

    # -- selection ----------------------------------------------------------
    def rows_for(
        self,
        source: Source,
        bene_rows: np.ndarray,
        spec: ExportSpec,
        since_exempt=None,
        claim_rule: ClaimRule | None = None,
    ) -> np.ndarray:
        """Root rows of `source` to write for these beneficiaries under `spec`
        (claims also through `claim_rule` when given)."""
        table = self.tables[source.table]
        is_claim = source.table != "bene"
        if is_claim and source.system_type is not None and not _wanted_system(source.system_type, spec):
            return np.zeros(0, np.int64)
        rows = claim_rows(self.tables["bene"], source.table, bene_rows) if is_claim else bene_rows
        if source.select is not None and len(rows):
            rows = source.select(table, rows)
        if not len(rows):
            return rows
        keep = np.ones(len(rows), bool)
        if spec.since_ms is not None or spec.until_ms is not None:
            lu = table["last_updated"].values[rows]
            window = _in_window(lu, spec.since_ms, spec.until_ms)
            if since_exempt is not None and len(since_exempt):
                # Beneficiaries new to a roster get their full history (BCDA rule).
                owner = rows if not is_claim else self._owner(source.table, rows)
                window |= np.isin(owner, since_exempt) & _in_window(lu, None, spec.until_ms)
            keep &= window
        if is_claim:
            keep &= self._claim_mask(source, table, rows, spec)
            if claim_rule is not None:
                keep &= self._ruled(source, table, rows, claim_rule)
        return rows[keep]

    def _ruled(self, source: Source, table: Table, rows: np.ndarray, claim_rule: ClaimRule) -> np.ndarray:
        if source.service_dates is None:
            return np.zeros(len(rows), bool)  # no service date, no way to test: withhold
        frm = table[source.service_dates[0]].values[rows].astype(np.int64)
        thru = table[source.service_dates[1]].values[rows].astype(np.int64)
        thru = np.where(thru == NO_DATE, frm, thru)
        return np.asarray(claim_rule.allows(self._owner(source.table, rows), frm, thru), bool)

    def _owner(self, table: str, rows: np.ndarray) -> np.ndarray:
        """Bene row owning each claim row (claims are sorted by beneficiary)."""
        off = self.tables["bene"].links[table]
        return np.searchsorted(off, rows, side="right") - 1

    def _claim_mask(self, source: Source, table: Table, rows: np.ndarray, spec: ExportSpec) -> np.ndarray:
        keep = np.ones(len(rows), bool)
        if spec.exclude_sud:
            sud = table["sud_ind"]
            yes = [i for i, lab in enumerate(sud.labels) if lab == "Y"]
            if yes:
                keep &= ~np.isin(sud.codes[rows], yes)
        frm = thru = None
        if source.service_dates:
            frm = table[source.service_dates[0]].values[rows].astype(np.int64)
            thru = table[source.service_dates[1]].values[rows].astype(np.int64)
            thru = np.where(thru == NO_DATE, frm, thru)
        if frm is not None and thru is not None:  # set together
            if spec.claims_from is not None:
                keep &= (frm != NO_DATE) & (thru >= spec.claims_from)
            if spec.claims_through is not None:
                keep &= (frm != NO_DATE) & (frm <= spec.claims_through)
        if spec.claim_filters:
            anyf = np.zeros(len(rows), bool)
            fa = table["final_action"]
            outcome = _outcomes(source, table, rows) if any(f.outcome for f in spec.claim_filters) else None
            for f in spec.claim_filters:
                if source.system_type is not None and source.system_type not in f.system_types:
                    continue
                m = np.ones(len(rows), bool)
                if f.outcome is not None and outcome is not None:
                    m &= outcome == f.outcome
                if frm is not None and thru is not None and f.service_ge is not None:
                    m &= (frm != NO_DATE) & (thru >= f.service_ge)
                if frm is not None and f.service_le is not None:
                    m &= (frm != NO_DATE) & (frm <= f.service_le)
                if f.final_action is not None:
                    code = fa.labels.index(f.final_action) if f.final_action in fa.labels else -1
                    m &= fa.codes[rows] == code
                anyf |= m
            keep &= anyf
        return keep

    # -- writing ------------------------------------------------------------
    def export_chunk(
        self,
        bene_rows: np.ndarray,
        spec: ExportSpec,
        out_dir: str | os.PathLike,
        *,
        chunk: int = 0,
        since_exempt: np.ndarray | None = None,
        claim_rule: ClaimRule | None = None,
        cancelled: Callable[[], bool] | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> list[FileInfo]:
        """Write the files of one chunk of beneficiaries (named `file_name(type, chunk, part)`);
        returns them in type order.

        `since_exempt` beneficiaries get their full history despite `spec.since_ms`;
        `claim_rule` narrows claims further. On any error (or cancellation) no file of
        the chunk is left behind. `progress(fraction)` hears how much of the chunk
        is written (each source an equal share, moving batch by batch within it).
        """
        spec.check()
        bene_rows = np.asarray(bene_rows, dtype=np.int64)
        files: list[FileInfo] = []
        sources = [s for s in self.sources if s.rtype in spec.types]
        step = 1 / max(1, len(sources))
        done = 0.0
        # Batches aim at batch_bytes, so a buffer rarely has to grow past this.
        rolls: list[RollingWriter] = []
        with Pipeline(self.core, spec.threads, capacity=2 * spec.batch_bytes) as pipe:
            try:
                for rtype in spec.types:
                    roll = RollingWriter(
                        Path(out_dir), rtype, spec.compression, max_bytes=spec.max_file_bytes, chunk=chunk,
                        level=spec.level, ndjson_sha256=spec.ndjson_sha256, cached=spec.cached,
                        fsync=spec.fsync,
                    )
                    rolls.append(roll)
                    for source in self.sources:
                        if source.rtype != rtype:
                            continue
                        rows = self.rows_for(source, bene_rows, spec, since_exempt, claim_rule)
                        if len(rows):
                            advance = None if progress is None else (
                                lambda part, base=done: progress(base + step * part))
                            self.write_rows(source, rows, spec, pipe, roll, cancelled, advance)
                            # Its batches rendered before its pages go (else they fault back in). The
                            # next source's first batch waits for them anyway: no extra stall.
                            pipe.drain()
                        done += step
                        if progress is not None:
                            progress(min(done, 1.0))
                        self.release_pages()  # rows_for read the source's table, the next source reads others
                    # Every batch of the type is stored (drained after each source). Its last file
                    # is fsynced while the next type renders: an fsync waits for the disk, which a
                    # client writing its NDJSON to the same disk keeps busy.
                    roll.finish()
                for roll in rolls:  # the chunk is done when every file is durable
                    files.extend(roll.close())
            except BaseException:
                pipe.drain(raise_errors=False)
                for roll in rolls:  # no file of a failed chunk is left behind
                    roll.abort()
                    for f in roll.done:
                        (Path(out_dir) / f.name).unlink(missing_ok=True)
                raise
        return files

    def write_rows(self, source: Source, rows: np.ndarray, spec: ExportSpec, pipe: Pipeline, sink,
                   cancelled: Callable[[], bool] | None = None,
                   progress: Callable[[float], None] | None = None) -> None:
        """Render `rows` of one source into `sink` through `pipe` (a RollingWriter, or any
        sink with `write(buf, count)`: see Pipeline).

        Batch sizes follow the source's NDJSON bytes per row (a first batch of
        `_FIRST_BATCH` rows measures it): a batch is about `spec.batch_bytes`, whether
        the source's resources are small Coverages or long inpatient claims, and the
        pipeline's buffers stay that small. Every `spec.release_bytes` of NDJSON the
        writer's store pages are released: the kernel maps whole folios of the files
        around each page the writer reads, and the rows already written never come back.
        """
        w = self.writer(source.template, source.rtype, spec.elements)
        tables = self._plan_tables[id(w)]
        tally = Tally()
        n = min(_FIRST_BATCH, spec.batch_rows)
        i = released = 0
        while i < len(rows):
            if cancelled is not None and cancelled():
                raise ExportError("export cancelled")
            batch = rows[i : i + n]
            stored = pipe.submit(w, batch, sink, tally)
            i += len(batch)
            if i == len(batch):
                # The first batch measures the source's bytes per row; the rest are sized from
                # it alone, so batch bounds (and so the gzip pieces, the stored bytes and their
                # digest) are the same in every run, however the threads were timed.
                stored.wait()
                n = max(1, min(spec.batch_rows, spec.batch_bytes * tally.rows // max(tally.bytes, 1)))
            if tally.bytes - released >= spec.release_bytes:
                release_pages(tables)
                released = tally.bytes
            if progress is not None:
                progress(i / len(rows))

    def export(
        self,
        bene_rows: np.ndarray,
        spec: ExportSpec,
        out_dir: str | os.PathLike,
        *,
        chunk_benes: int = 5000,
        request: str = "fhirhose export",
        progress: Callable[[float, int], None] | None = None,
    ) -> ExportResult:
        """Export in this process, chunk by chunk, then write `manifest.json`; `progress(done,
        chunks)` counts chunks done, in fractions while one is written."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        started = dt.datetime.now(dt.UTC)
        chunks = chunk_rows(bene_rows, chunk_benes)
        files: list[FileInfo] = []
        for i, rows in enumerate(chunks):
            within = None if progress is None else (lambda part, i=i: progress(i + part, len(chunks)))
            files.extend(self.export_chunk(rows, spec, out_dir, chunk=i, progress=within))
            if progress:
                progress(i + 1, len(chunks))
        return ExportResult(files, str(write_manifest(out_dir, files, started, request)))


def chunk_rows(bene_rows: np.ndarray, chunk_benes: int) -> list[np.ndarray]:
    bene_rows = np.asarray(bene_rows, dtype=np.int64)
    if chunk_benes <= 0:
        raise InputError(f"chunk size {chunk_benes} must be positive")
    return [bene_rows[i : i + chunk_benes] for i in range(0, len(bene_rows), chunk_benes)] or [bene_rows]


def order_files(files: Iterable[FileInfo], types: Sequence[str]) -> list[FileInfo]:
    """Manifest order: by resource type as requested, then by name (chunk, part)."""
    rank = {t: i for i, t in enumerate(types)}
    return sorted(files, key=lambda f: (rank.get(f.type, len(rank)), f.name))


def write_manifest(out_dir: Path, files: list[FileInfo], started: dt.datetime, request: str) -> Path:
    """`manifest.json` in the Bulk Data shape, urls relative to `out_dir`; written atomically."""
    manifest = Manifest(
        transactionTime=started.isoformat(timespec="milliseconds"),
        request=request,
        requiresAccessToken=False,
        output=[output_item(f, f.name) for f in order_files(files, RESOURCE_TYPES)],
        error=[],
    )
    path = out_dir / "manifest.json"
    tmp = out_dir / "manifest.json.part"
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(manifest), indent=2))
    os.replace(tmp, path)
    return path


# -- process pool -------------------------------------------------------------

_WORKER_EXPORTERS: dict[tuple, Exporter] = {}


def _worker_chunk(opener: Callable[[], Mapping[str, Table]], key: tuple, sources: Callable[[], Sequence[Source]],
                  bene_rows, spec, out_dir, chunk, since_exempt):
    # Runs in a pool process: open the store once per process, reuse bound writers.
    ex = _WORKER_EXPORTERS.get(key)
    if ex is None:
        ex = _WORKER_EXPORTERS[key] = Exporter(opener(), sources())
    return ex.export_chunk(bene_rows, spec, out_dir, chunk=chunk, since_exempt=since_exempt)


def export_store(
    opener: Callable[[], Mapping[str, Table]],
    key: tuple,
    sources: Callable[[], Sequence[Source]],
    bene_rows: np.ndarray,
    spec: ExportSpec,
    out_dir: str | os.PathLike,
    *,
    workers: int = os.cpu_count() or 1,
    chunk_benes: int = 5000,
    request: str = "fhirhose export",
    progress: Callable[[float, int], None] | None = None,
) -> ExportResult:
    """Export with a process pool; `opener()` (picklable) returns the tables in each worker,
    `key` identifies the snapshot (store path, generation) for per-process caching;
    `sources()` (picklable, like `opener`; e.g. `fhir.registry.registry_sources`) returns
    what each worker writes: sources hold closures, so they are built in the worker."""
    if workers <= 1:
        return Exporter(opener(), sources()).export(
            bene_rows, spec, out_dir, chunk_benes=chunk_benes, request=request, progress=progress
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    chunks = chunk_rows(bene_rows, chunk_benes)
    files: list[FileInfo] = []
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=limit_malloc_retention) as pool:
        futs = [
            pool.submit(_worker_chunk, opener, key, sources, rows, spec, str(out_dir), i, None)
            for i, rows in enumerate(chunks)
        ]
        for done, fut in enumerate(futs, 1):
            files.extend(fut.result())
            if progress:
                progress(done, len(chunks))
    return ExportResult(files, str(write_manifest(out_dir, files, started, request)))
