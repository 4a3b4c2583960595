"""The job runner: claims chunks from the job database's queue and runs them on a process pool.

Any number of runners (API nodes with `--workers N`, `fhirhose worker` nodes) share one
queue. Each claims a chunk under a lease (`JobDB.claim`: fair across organizations, then
across an organization's jobs), renews the leases of its chunks every third of the lease,
and commits a chunk exactly once: the worker process writes and renames the files, this
runner fsyncs them (on a thread, while the worker runs its next chunk), then
`JobDB.finish_chunk` lists them, only while this runner still holds the lease. A node
that dies stops renewing; its chunks are claimed again by another node once their leases
run out, and the redo writes the same file names, so nothing is listed twice or lost.

Chunks run `worker.run_chunk` in a spawn-context `ProcessPoolExecutor`: serialization and
compression never touch the event loop. Idle runners wake on a local kick-off, on
PostgreSQL NOTIFY from another node's kick-off, or after a short poll.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import multiprocessing
import os
import secrets
import shutil
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from .._memory import limit_malloc_retention, release_free_memory
from ..access import Scope
from ..log import JOB_ID, get_logger
from .db import Claim, FileRow, Job, JobDB
from .params import ExportParams
from .worker import ChunkTask, init_worker, run_chunk, sync_chunk

__all__ = ["JobRunner", "RunnerSettings", "RunnerStats", "iso_instant", "plan_chunks", "WAKE_CHANNEL"]

WAKE_CHANNEL = "fhirhose_chunks"  # PostgreSQL NOTIFY channel: a kick-off queued chunks

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
    lease: float = 30.0  # seconds a claim holds without renewal (renewed every lease / 3)
    poll: float = 1.0  # seconds an idle runner waits before looking at the queue again
    # The only node on this database (SQLite): at start, chunks left running by a previous
    # process are redone at once and unlisted files in active jobs' folders are removed.
    sole_node: bool = True
    # Start the worker processes with the server, each importing what a chunk needs
    # (`worker.warm_up`), so the first export does not wait ~0.4 s for them.
    warm: bool = False


_RAMP = 4  # the first round's chunks are this many times smaller,
_RAMP_MIN = 25  # when that leaves them at least this many beneficiaries (smaller only adds files)


def plan_chunks(n: int, size: int, workers: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges over `n` beneficiaries: about `size` each, their number a multiple of
    `workers` and their sizes equal (±1), so the last round keeps every worker busy instead of
    one chunk running alone while the other cores idle. One worker: chunks of `size`, the
    last one the rest.

    An export of two rounds or more starts with a round of quarter-size chunks: its first
    files are listed sooner, so the client's downloads (and, writing NDJSON, its disk)
    start working while the rest is exported. Chunks are claimed in order."""
    if n <= 0:
        return []
    size = max(1, size)
    first = size // _RAMP
    if n > size * max(1, workers) and first >= _RAMP_MIN:
        head = [(lo, lo + first) for lo in range(0, first * max(1, workers), first)]
        rest = head[-1][1]
        return head + [(lo + rest, hi + rest) for lo, hi in _even_chunks(n - rest, size, workers)]
    return _even_chunks(n, size, workers)


def _even_chunks(n: int, size: int, workers: int) -> list[tuple[int, int]]:
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


@dataclass
class RunnerStats:
    """Counters /metrics reports (this node's share)."""

    claimed: int = 0
    redone: int = 0  # claims of a chunk already attempted before (a retry or a dead node's chunk)
    done: int = 0
    lost: int = 0  # chunks whose lease ran out before they were committed
    failed: int = 0
    resources: dict[str, int] = field(default_factory=dict)  # resource type -> resources written
    bytes_written: int = 0  # stored (compressed) bytes


class _JobInfo:
    """What every chunk of one job needs, read once per job per node."""

    __slots__ = ("job", "params", "benes", "scope")

    def __init__(self, job: Job, params: ExportParams, benes, scope: Scope):
        self.job, self.params, self.benes, self.scope = job, params, benes, scope


class JobRunner:
    """Claims chunks while it has free worker processes; the DB is the source of truth."""

    def __init__(self, db: JobDB, settings: RunnerSettings, clock: Callable[[], float]):
        self.db = db
        self.settings = settings
        self.clock = clock
        self.jobs_dir = Path(settings.jobs_dir)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.stats = RunnerStats()
        self._pool: ProcessPoolExecutor | None = None
        self._info: OrderedDict[str, _JobInfo] = OrderedDict()
        self._inflight: dict[tuple[str, int], asyncio.Task] = {}
        self._free = settings.workers
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._loops: list[asyncio.Task] = []

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start claiming (nothing to do with `workers=0`: an API node only)."""
        limit_malloc_retention()  # a server lives long: give freed kick-off and download buffers back
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.workers <= 0:
            return
        if self.settings.sole_node:
            redone = await self.db.call(JobDB.reset_running)
            jobs = await self.db.call(JobDB.active_jobs)
            for job in jobs:
                known = {f.stored for f in await self.db.call(JobDB.files_of, job.id)}
                await asyncio.to_thread(_remove_unlisted, self.job_dir(job.id), known)
            if jobs:
                log.info("resuming %d job(s); %d chunk(s) redone from scratch", len(jobs), redone)
        if self.db.engine == "postgresql":
            loop = asyncio.get_running_loop()

            def wake() -> None:
                loop.call_soon_threadsafe(self._wake.set)

            await asyncio.to_thread(self.db.sql.listen, WAKE_CHANNEL, wake)
        self._loops = [asyncio.create_task(self._dispatch()), asyncio.create_task(self._renew())]
        if self.settings.warm:
            pool = self._pool_now()
            for _ in range(self.settings.workers):
                pool.submit(int)  # each submit while none is idle spawns a process; it warms up on start

    async def stop(self) -> None:
        for t in self._loops:
            t.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            # Chunks still running are not recorded; their leases run out (or the next start
            # of a sole node resets them) and they are redone: no loss, no duplicates. So their
            # processes are stopped rather than waited for. (`_processes` is private; Python
            # 3.14 names this `terminate_workers`.)
            pool, self._pool = self._pool, None
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.terminate()

    # --- API used by the routes ------------------------------------------------------------

    async def submit(self, job: Job) -> None:
        """A job was written to the DB: wake this node's runner and, on PostgreSQL, every other."""
        self._wake.set()
        if self.db.engine == "postgresql":
            await self.db.call(_notify)
        release_free_memory()  # what planning the kick-off freed

    async def cancel(self, job_id: str) -> None:
        """Forget a cancelled/expired job; its directory goes unless a chunk of it runs here
        (then the chunk's end removes it: its commit finds the job inactive)."""
        self._info.pop(job_id, None)
        if any(j == job_id for j, _ in self._inflight):
            return
        await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)

    def queued_chunks(self) -> int:
        """Chunks running on this node."""
        return len(self._inflight)

    # --- claiming --------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            while self._free > 0:
                try:
                    claim = await self.db.call(JobDB.claim, self.owner, time.time(), self.settings.lease)
                except Exception:  # the database is away for a moment: try again after the poll
                    log.exception("claiming a chunk failed")
                    break
                if claim is None:
                    break
                self._free -= 1
                self.stats.claimed += 1
                if claim.attempts > 1:
                    self.stats.redone += 1
                t = asyncio.create_task(self._run(claim))
                self._inflight[(claim.job_id, claim.seq)] = t
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _renew(self) -> None:
        """Keep this node's leases alive; a chunk whose lease was lost is left to its new owner."""
        while True:
            await asyncio.sleep(self.settings.lease / 3)
            held = list(self._inflight)
            if not held:
                continue
            try:
                lost = await self.db.call(JobDB.renew, held, self.owner, time.time() + self.settings.lease)
            except Exception:
                log.exception("renewing leases failed")
                continue
            for job_id, seq in lost:
                log.warning("job %s chunk %d: lease lost (redone elsewhere or job ended)", job_id, seq)

    async def _job_info(self, job_id: str) -> _JobInfo | None:
        info = self._info.get(job_id)
        if info is not None:
            self._info.move_to_end(job_id)
            return info
        job = await self.db.call(JobDB.get_job, job_id)
        if job is None or not job.active:
            return None
        raw = await self.db.call(JobDB.scope, job_id)
        if raw is None:
            await self.db.call(JobDB.fail, job_id, "planned without an access scope (older version); "
                               "kick off the export again", self.clock(), self.settings.ttl)
            return None
        benes = await self.db.call(JobDB.benes, job_id)
        params = msgspec.json.decode(job.params, type=ExportParams)
        # The scope planned at kick-off, not re-planned: a resumed job exports what was granted then.
        info = self._info[job_id] = _JobInfo(job, params, benes, Scope.from_bytes(raw))
        while len(self._info) > 32:
            self._info.popitem(last=False)
        return info

    def _pool_now(self) -> ProcessPoolExecutor:
        if self._pool is None:
            s = self.settings
            self._pool = ProcessPoolExecutor(
                max_workers=s.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker, initargs=(os.getpid(), 1.0, s.exporter if s.warm else None),
            )
        return self._pool

    def _task(self, a: _JobInfo, seq: int, lo: int, hi: int) -> ChunkTask:
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
            threads=max(1, (os.cpu_count() or 1) // max(1, s.workers)),  # the cores per worker
        )

    async def _run(self, claim: Claim) -> None:
        job_id, seq = claim.job_id, claim.seq
        JOB_ID.set(job_id)  # this task's log lines name the job
        loop = asyncio.get_running_loop()
        freed = False

        def free() -> None:  # the worker process is done with this chunk: it may take the next
            nonlocal freed
            if not freed:
                freed = True
                self._free += 1
                self._wake.set()

        try:
            info = await self._job_info(job_id)
            if info is None:
                return
            try:
                try:
                    placed = await loop.run_in_executor(self._pool_now(), run_chunk,
                                                        self._task(info, seq, claim.lo, claim.hi))
                finally:
                    free()  # its next chunk runs while this one is fsynced and listed (disk, database)
                await asyncio.to_thread(sync_chunk, self.job_dir(job_id), placed)  # durable before listed
            except BrokenProcessPool:
                log.warning("job %s chunk %d: worker pool broke; chunk requeued", job_id, seq)
                self._pool = None
                await self.db.call(JobDB.retry_chunk, job_id, seq, self.owner)
                return
            except Exception as e:  # the exporter failed on this chunk
                log.exception("job %s chunk %d failed", job_id, seq)
                attempts = await self.db.call(JobDB.retry_chunk, job_id, seq, self.owner)
                if attempts >= self.settings.max_attempts:
                    self.stats.failed += 1
                    if await self.db.call(JobDB.fail, job_id, f"chunk {seq} failed after {attempts} attempts: {e}",
                                          self.clock(), self.settings.ttl):
                        await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)
                return
            rows = [FileRow(job_id=job_id, created=self.clock(), **f) for f in placed]
            outcome, job = await self.db.call(JobDB.finish_chunk, job_id, seq, self.owner, rows, self.clock(),
                                              self.settings.ttl)
            if outcome == "inactive":  # cancelled, expired or failed while the chunk ran
                await asyncio.to_thread(_unlink_all, self.job_dir(job_id), [f["stored"] for f in placed])
                self._info.pop(job_id, None)
                if not any(j == job_id and s != seq for j, s in self._inflight):
                    await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)
            elif outcome == "lost":
                self.stats.lost += 1
                log.warning("job %s chunk %d: lease ran out before the commit; the redo lists it", job_id, seq)
            else:
                self.stats.done += 1
                for r in rows:
                    if r.kind == "output":
                        self.stats.resources[r.type] = self.stats.resources.get(r.type, 0) + r.count
                    self.stats.bytes_written += r.stored_length
                if job is not None and not job.active:
                    log.info("job %s %s (%d chunks)", job_id, job.status, job.chunks_total)
                    self._info.pop(job_id, None)
        finally:
            self._inflight.pop((job_id, seq), None)
            free()
            release_free_memory()  # status polls, downloads and DB rows of the chunk freed small blocks


def _notify(c) -> None:
    c.execute(f"NOTIFY {WAKE_CHANNEL}")


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
