"""The job runner: chunks of jobs on a process pool, fair across organizations, restart-safe.

A job's beneficiaries are split into chunks at kick-off. At most `workers` chunks are in
flight; each time a slot frees, the next chunk is taken round-robin over organizations
and, within an organization, round-robin over its active jobs — so a 10,000-beneficiary
export interleaves with a 100-beneficiary one instead of starving it.

Chunks run `worker.run_chunk` in a spawn-context `ProcessPoolExecutor`: serialization and
compression never touch the event loop. A chunk's files enter the job DB in the same
transaction that marks the chunk done. After a crash, `start()` puts chunks that were
running back to pending and deletes every file in an active job's directory that the DB
does not list (temporary chunk directories and files renamed but not yet registered),
so a redone chunk starts from scratch and nothing is listed twice.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as _dt
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import msgspec

from .._memory import limit_malloc_retention, release_free_memory
from ..access import Scope
from ..log import get_logger
from .db import FileRow, Job, JobDB
from .params import ExportParams
from .worker import ChunkTask, init_worker, run_chunk

__all__ = ["JobRunner", "RunnerSettings", "iso_instant", "plan_chunks"]

log = get_logger(__name__)


class RunnerSettings(msgspec.Struct, frozen=True):
    store_path: str
    jobs_dir: str
    workers: int = 2
    compression: str = "gzip"
    level: int = 1
    exporter: str = "fhirhose.server.worker:store_exporter"
    max_attempts: int = 2
    ttl: float = 24 * 3600.0
    ndjson_sha256: bool = False  # BCDA's checksum of the uncompressed NDJSON (costly; off by default)
    # Start the worker processes with the server, each opening the store and binding its
    # writers (`worker.warm_up`), so the first export does not wait ~0.5 s for them.
    warm: bool = False


def plan_chunks(n: int, size: int, workers: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges over `n` beneficiaries: about `size` each, their number a multiple of
    `workers` and their sizes equal (±1), so the last round keeps every worker busy instead of
    one chunk running alone while the other cores idle. One worker: chunks of `size`, the
    last one the rest."""
    if n <= 0:
        return []
    size = max(1, size)
    if workers <= 1:
        return [(lo, min(lo + size, n)) for lo in range(0, n, size)]
    k = -(-n // size)
    k = min(n, -(-k // workers) * workers)
    base, extra = divmod(n, k)
    out, lo = [], 0
    for i in range(k):
        hi = lo + base + (1 if i < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def iso_instant(t: float) -> str:
    """Epoch seconds as a FHIR instant in UTC with millisecond precision."""
    return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Active:
    """Scheduling state of one active job."""

    __slots__ = ("job", "params", "benes", "scope", "pending", "inflight", "cancelled")

    def __init__(self, job: Job, params: ExportParams, benes, scope: Scope, pending):
        self.job = job
        self.params = params
        self.benes = benes
        self.scope = scope
        self.pending = collections.deque(pending)
        self.inflight = 0
        self.cancelled = False


class JobRunner:
    """Owns the process pool and the in-memory schedule; the DB is the source of truth."""

    def __init__(self, db: JobDB, settings: RunnerSettings, clock: Callable[[], float]):
        self.db = db
        self.settings = settings
        self.clock = clock
        self.jobs_dir = Path(settings.jobs_dir)
        self._pool: ProcessPoolExecutor | None = None
        self._orgs: collections.OrderedDict[str, collections.deque[str]] = collections.OrderedDict()
        self._active: dict[str, _Active] = {}
        self._free = settings.workers
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._dispatcher: asyncio.Task | None = None

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume queued and running jobs left by a previous process."""
        limit_malloc_retention()  # a server lives long: give freed kick-off and download buffers back
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        redone = await self.db.call(JobDB.reset_running)
        jobs = await self.db.call(JobDB.active_jobs)
        for job in jobs:
            known = {f.stored for f in await self.db.call(JobDB.files_of, job.id)}
            await asyncio.to_thread(_remove_unlisted, self.job_dir(job.id), known)
            await self._schedule(job)
        if jobs:
            log.info("resumed %d job(s); %d chunk(s) redone from scratch", len(jobs), redone)
        self._dispatcher = asyncio.create_task(self._dispatch())
        if self.settings.warm:
            pool = self._pool_now()
            for _ in range(self.settings.workers):
                pool.submit(int)  # each submit while none is idle spawns a process; it warms up on start

    async def stop(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            # Chunks still running are not recorded and the next start redoes them (no loss,
            # no duplicates), so their processes are stopped rather than waited for: a long
            # chunk would otherwise hold up the server's exit. (`_processes` is private;
            # Python 3.14 names this `terminate_workers`.)
            pool, self._pool = self._pool, None
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.terminate()

    # --- API used by the routes ------------------------------------------------------------

    async def submit(self, job: Job) -> None:
        """Schedule a job already written to the DB."""
        await self._schedule(job)
        release_free_memory()  # what planning the kick-off freed

    async def cancel(self, job_id: str) -> None:
        """Forget a cancelled/expired job; its directory goes once no chunk of it is in flight."""
        a = self._active.pop(job_id, None)
        if a is not None:
            a.cancelled = True
            self._unlist(a.job)
            if a.inflight:
                return  # the last chunk task to end removes the directory
        await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)

    def queued_chunks(self) -> int:
        return sum(len(a.pending) for a in self._active.values())

    # --- scheduling ------------------------------------------------------------------------

    async def _schedule(self, job: Job) -> None:
        pending = await self.db.call(JobDB.pending_chunks, job.id)
        if not pending and job.chunks_done >= job.chunks_total:
            await self.db.call(JobDB.complete, job.id, self.clock(), self.settings.ttl)
            return
        raw = await self.db.call(JobDB.scope, job.id)
        if raw is None:
            await self.db.call(JobDB.fail, job.id, "planned without an access scope (older version); "
                               "kick off the export again", self.clock(), self.settings.ttl)
            return
        benes = await self.db.call(JobDB.benes, job.id)
        params = msgspec.json.decode(job.params, type=ExportParams)
        # The scope planned at kick-off, not re-planned: a resumed job exports what was granted then.
        self._active[job.id] = _Active(job, params, benes, Scope.from_bytes(raw), pending)
        # Newcomers go to the front: they have had no turn yet, the others have.
        if job.org_id not in self._orgs:
            self._orgs[job.org_id] = collections.deque()
            self._orgs.move_to_end(job.org_id, last=False)
        self._orgs[job.org_id].appendleft(job.id)
        self._wake.set()

    def _unlist(self, job: Job) -> None:
        jobs = self._orgs.get(job.org_id)
        if jobs is not None and job.id in jobs:
            jobs.remove(job.id)
            if not jobs:
                del self._orgs[job.org_id]

    def _pick(self) -> tuple[_Active, tuple[int, int, int]] | None:
        """Next chunk: round-robin over organizations, then over that organization's jobs."""
        for _ in range(len(self._orgs)):
            org, jobs = next(iter(self._orgs.items()))
            self._orgs.move_to_end(org)
            for _ in range(len(jobs)):
                a = self._active[jobs[0]]
                jobs.rotate(-1)
                if a.pending:
                    return a, a.pending.popleft()
        return None

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._free > 0 and (picked := self._pick()) is not None:
                a, chunk = picked
                self._free -= 1
                a.inflight += 1
                await self.db.call(JobDB.start_chunk, a.job.id, chunk[0])
                t = asyncio.create_task(self._run(a, chunk))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)

    def _pool_now(self) -> ProcessPoolExecutor:
        if self._pool is None:
            s = self.settings
            self._pool = ProcessPoolExecutor(
                max_workers=s.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker, initargs=(os.getpid(), 1.0, (s.store_path, s.exporter) if s.warm else None),
            )
        return self._pool

    def _task(self, a: _Active, seq: int, lo: int, hi: int) -> ChunkTask:
        s, p, job = self.settings, a.params, a.job
        tx = iso_instant(job.transaction_time)
        return ChunkTask(
            job_id=job.id,
            seq=seq,
            store_path=s.store_path,
            job_dir=str(self.job_dir(job.id)),
            benes=a.benes[lo:hi].tobytes(),
            types=[t for t in p.types if t in a.scope.types],
            since=p.since,
            until=p.until,
            transaction_time=tx,
            generation=job.generation,
            type_filters=p.type_filters,
            elements=p.elements,
            compression=s.compression,
            level=s.level,
            exporter=s.exporter,
            scope=a.scope.for_benes(a.benes[lo:hi]).to_bytes(),
            ndjson_sha256=s.ndjson_sha256,
            organize_by=p.organize_by,
            overlap=s.workers < (os.cpu_count() or 1),  # a core to spare per worker for its compressor
        )

    async def _run(self, a: _Active, chunk: tuple[int, int, int]) -> None:
        seq, lo, hi = chunk
        job_id = a.job.id
        loop = asyncio.get_running_loop()
        try:
            try:
                placed = await loop.run_in_executor(self._pool_now(), run_chunk, self._task(a, seq, lo, hi))
            except BrokenProcessPool:
                log.warning("job %s chunk %d: worker pool broke; chunk requeued", job_id, seq)
                self._pool = None
                await self._requeue(a, chunk)
                return
            except Exception as e:  # the exporter failed on this chunk
                log.exception("job %s chunk %d failed", job_id, seq)
                attempts = await self.db.call(JobDB.retry_chunk, job_id, seq)
                if attempts < self.settings.max_attempts:
                    await self._requeue(a, chunk)
                else:
                    await self._fail(a, f"chunk {seq} failed after {attempts} attempts: {e}")
                return
            rows = [FileRow(job_id=job_id, created=self.clock(), **f) for f in placed]
            job = await self.db.call(JobDB.finish_chunk, job_id, seq, rows, self.clock(), self.settings.ttl)
            if job is None:  # cancelled while the chunk ran
                await asyncio.to_thread(_unlink_all, self.job_dir(job_id), [f["stored"] for f in placed])
            elif not job.active:
                log.info("job %s %s (%d chunks)", job_id, job.status, job.chunks_total)
                self._active.pop(job_id, None)
                self._unlist(job)
        finally:
            a.inflight -= 1
            self._free += 1
            release_free_memory()  # status polls, downloads and DB rows of the chunk freed small blocks
            if a.cancelled and a.inflight == 0:
                await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)
            self._wake.set()

    async def _requeue(self, a: _Active, chunk: tuple[int, int, int]) -> None:
        if not a.cancelled:
            await self.db.call(JobDB.retry_chunk, a.job.id, chunk[0])
            a.pending.appendleft(chunk)

    async def _fail(self, a: _Active, error: str) -> None:
        await self.db.call(JobDB.fail, a.job.id, error, self.clock(), self.settings.ttl)
        self._active.pop(a.job.id, None)
        self._unlist(a.job)
        a.pending.clear()
        a.cancelled = True  # its files go once the last in-flight chunk ends


def _remove_unlisted(job_dir: Path, known: set[str]) -> None:
    if not job_dir.is_dir():
        job_dir.mkdir(parents=True)
        return
    for p in job_dir.iterdir():
        if p.name in known:
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _unlink_all(job_dir: Path, names: list[str]) -> None:
    for n in names:
        (job_dir / n).unlink(missing_ok=True)
