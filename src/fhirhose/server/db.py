"""The job database and chunk queue, on SQLite (one machine) or PostgreSQL (many nodes).

Each public statement runs as one transaction (`JobDB.call`, off the event loop); the
invariants that make restarts and dead nodes safe live here:

- a file row exists only for a file that is complete on disk (a worker inserts file rows in
  the same transaction that marks their chunk done, and only while it still holds the
  chunk's lease: a redo never lists a file twice);
- a chunk is claimed under a lease (`owner`, `lease_until`) that its worker renews; a chunk
  whose lease ran out (its node died) is claimed again by any node (`FOR UPDATE SKIP
  LOCKED` on PostgreSQL, so nodes never wait on each other's claims);
- claims are fair across organizations: fewest chunks in flight first, then the one
  served longest ago, then likewise across that organization's jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..sql import Connection, Database, Migration, migrate

__all__ = ["JobDB", "Job", "FileRow", "ACTIVE", "FINAL", "MIGRATIONS", "Claim"]

ACTIVE = ("queued", "running")
FINAL = ("done", "failed")


def _legacy_columns(db: Database, c: Connection) -> None:
    """A SQLite job DB written before migrations lacks these columns (its jobs keep env
    'sandbox' and no scope; the runner fails active ones instead of exporting them unscoped;
    its files have no stored digest: '')."""
    if db.engine != "sqlite":
        return
    have = {r[1] for r in c.execute("PRAGMA table_info(jobs)")}
    for name, decl in (("env", "TEXT NOT NULL DEFAULT 'sandbox'"), ("rules", "TEXT NOT NULL DEFAULT '[]'"),
                       ("scope", "BLOB")):
        if name not in have:
            c.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
    if "digest" not in {r[1] for r in c.execute("PRAGMA table_info(files)")}:
        c.execute("ALTER TABLE files ADD COLUMN digest TEXT NOT NULL DEFAULT ''")


MIGRATIONS = [
    Migration(1, "jobs, chunks, files", ("""
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    kind TEXT NOT NULL,            -- system | patient | group
    group_id TEXT,
    scope_key TEXT NOT NULL,       -- same client + same scope_key while active: 429
    request_url TEXT NOT NULL,
    params BLOB NOT NULL,          -- ExportParams JSON (bytes)
    status TEXT NOT NULL,          -- queued | running | done | failed | cancelled | expired
    error TEXT,
    chunks_total INTEGER NOT NULL,
    chunks_done INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    transaction_time REAL NOT NULL,
    completed REAL,
    expires REAL,
    generation INTEGER,            -- store generation the rows index (NULL: not a store)
    env TEXT NOT NULL DEFAULT 'sandbox',  -- credential environment that asked (sandbox | production)
    rules TEXT NOT NULL DEFAULT '[]',     -- JSON list: the access rules applied (manifest extension)
    benes BLOB NOT NULL,           -- int64 store rows of the job's beneficiaries
    scope BLOB                     -- fhirhose.access.Scope.to_bytes() of the planned scope
)""",
        "CREATE INDEX IF NOT EXISTS jobs_client ON jobs(client_id, status)",
        "CREATE INDEX IF NOT EXISTS jobs_org ON jobs(org_id)",
        """
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    lo INTEGER NOT NULL,           -- [lo, hi) into the job's beneficiary rows
    hi INTEGER NOT NULL,
    status TEXT NOT NULL,          -- pending | running | done
    attempts INTEGER NOT NULL DEFAULT 0,
    done_seq INTEGER,              -- completion order: partial-manifest page number
    PRIMARY KEY (job_id, seq)
)""",
        """
CREATE TABLE IF NOT EXISTS files (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,            -- the name in the download URL
    stored TEXT NOT NULL,          -- file name on disk inside the job directory
    chunk INTEGER NOT NULL,        -- -1: written at kick-off (lenient warnings)
    kind TEXT NOT NULL,            -- output | error | deleted
    type TEXT NOT NULL,
    count INTEGER NOT NULL,
    sha256 TEXT NOT NULL,          -- of the NDJSON bytes ('' unless the server computes BCDA's checksum)
    length INTEGER NOT NULL,       -- NDJSON bytes
    stored_length INTEGER NOT NULL,
    compression TEXT NOT NULL,     -- gzip | zstd | identity
    created REAL NOT NULL,
    digest TEXT NOT NULL DEFAULT '',  -- sha256 hex of the stored bytes ('' in DBs of older versions)
    PRIMARY KEY (job_id, name)
)"""), _legacy_columns),
    Migration(2, "chunk leases, fair claims, shared poll pacing", (
        "ALTER TABLE chunks ADD COLUMN owner TEXT",            # node:pid:nonce of the claiming worker
        "ALTER TABLE chunks ADD COLUMN lease_until REAL",      # wall clock; past it, any node may redo the chunk
        "ALTER TABLE jobs ADD COLUMN last_claim REAL",         # fairness: when a chunk of it was last claimed
        "ALTER TABLE jobs ADD COLUMN last_poll REAL",          # status-poll pacing, shared by every API node:
        "ALTER TABLE jobs ADD COLUMN poll_told REAL",          # the last poll's time and the Retry-After it was told
        "CREATE INDEX IF NOT EXISTS chunks_status ON chunks(status, job_id)",
        "CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status)",
    )),
]


class PollTaken(NamedTuple):
    """A status poll as pacing saw it: `refused` when it came sooner than the poll before
    was told to wait; `last`, `told`: that poll's time and Retry-After (None: the first)."""

    refused: bool
    last: float | None
    told: float | None


@dataclass(frozen=True)
class Job:
    id: str
    client_id: str
    org_id: str
    kind: str
    group_id: str | None
    scope_key: str
    request_url: str
    params: bytes
    status: str
    error: str | None
    chunks_total: int
    chunks_done: int
    created: float
    transaction_time: float
    completed: float | None
    expires: float | None
    generation: int | None
    env: str = "sandbox"
    rules: str = "[]"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclass(frozen=True)
class FileRow:
    job_id: str
    name: str
    stored: str
    chunk: int
    kind: str
    type: str
    count: int
    sha256: str
    length: int
    stored_length: int
    compression: str
    created: float
    digest: str = ""


_JOB_COLS = ", ".join(Job.__dataclass_fields__)
_FILE_COLS = ", ".join(FileRow.__dataclass_fields__)


@dataclass(frozen=True)
class Claim:
    """A chunk a worker holds under a lease."""

    job_id: str
    seq: int
    lo: int
    hi: int
    attempts: int
    owner: str


_CLAIM = """
WITH live AS (
  SELECT j.id, j.org_id, j.created, COALESCE(j.last_claim, 0) AS lc,
         (SELECT count(*) FROM chunks r
           WHERE r.job_id = j.id AND r.status = 'running' AND r.lease_until >= ?1) AS run
    FROM jobs j WHERE j.status IN ('queued', 'running')),
org AS (SELECT org_id, SUM(run) AS orun, MAX(lc) AS olc FROM live GROUP BY org_id)
SELECT c.job_id, c.seq, c.lo, c.hi FROM chunks c
  JOIN live l ON l.id = c.job_id
  JOIN org o ON o.org_id = l.org_id
 WHERE c.status = 'pending' OR (c.status = 'running' AND COALESCE(c.lease_until, 0) < ?1)
 ORDER BY o.orun, o.olc, l.run, l.lc, l.created, c.seq
 LIMIT 1"""


class JobDB:
    """Async facade: statements run in worker threads, one transaction each.

    SQLite: one thread (its writers serialize anyway); PostgreSQL: a few, so slow
    statements of one request do not queue the others."""

    def __init__(self, database: Database):
        self.sql = database
        threads = 1 if database.engine == "sqlite" else 8
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fhirhose-db")
        self._migrated = False

    @property
    def engine(self) -> str:
        return self.sql.engine

    def migrate(self) -> list[int]:
        """Apply missing schema migrations (also done on first use)."""
        self._migrated = True
        return migrate(self.sql, "jobs", MIGRATIONS)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(conn, *args)` in one transaction in a DB thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.run, fn, *args)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(conn, *args)` in one transaction, in the calling thread."""
        if not self._migrated:
            self.migrate()
        return self.sql.run(fn, *args)

    async def close(self) -> None:
        """Close the DB threads' connections and stop the threads (SQLite connections are per
        thread, so each is closed where it lives; a PostgreSQL pool closes as a whole)."""
        loop = asyncio.get_running_loop()
        if self.sql.engine == "sqlite":
            await loop.run_in_executor(self._pool, self.sql.close)
        await loop.run_in_executor(None, self._pool.shutdown, True)

    # --- statements (run in the DB thread; `c` is the connection) ---------------------------

    @staticmethod
    def insert_job(c: Connection, job: Job, benes: np.ndarray, chunks: list[tuple[int, int]],
                   files: list[FileRow], scope: bytes) -> None:
        c.execute(
            f"INSERT INTO jobs ({_JOB_COLS}, benes, scope) VALUES ({', '.join('?' * (len(Job.__dataclass_fields__) + 2))})",
            (*job.__dict__.values(), np.ascontiguousarray(benes, np.int64).tobytes(), scope),
        )
        c.executemany(
            "INSERT INTO chunks (job_id, seq, lo, hi, status) VALUES (?, ?, ?, ?, 'pending')",
            [(job.id, i, lo, hi) for i, (lo, hi) in enumerate(chunks)],
        )
        _insert_files(c, files)

    @staticmethod
    def get_job(c: Connection, job_id: str) -> Job | None:
        row = c.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job(*row) if row else None

    @staticmethod
    def jobs_of(c: Connection, org_id: str) -> list[Job]:
        rows = c.execute(
            f"SELECT {_JOB_COLS} FROM jobs WHERE org_id = ? AND status != 'cancelled' ORDER BY created",
            (org_id,),
        ).fetchall()
        return [Job(*r) for r in rows]

    @staticmethod
    def insert_unless_active(c: Connection, job: Job, benes: np.ndarray, chunks: list[tuple[int, int]],
                             files: list[FileRow], scope: bytes) -> Job | None:
        """Insert the job unless the same client has an active job of the same scope (returned then)."""
        c.lock(f"kickoff:{job.client_id}")  # two API nodes, one client: one of the two kick-offs wins
        row = c.execute(
            f"SELECT {_JOB_COLS} FROM jobs WHERE client_id = ? AND scope_key = ? AND status IN {ACTIVE} "
            "ORDER BY created LIMIT 1",
            (job.client_id, job.scope_key),
        ).fetchone()
        if row:
            return Job(*row)
        JobDB.insert_job(c, job, benes, chunks, files, scope)
        return None

    @staticmethod
    def active_jobs(c: Connection) -> list[Job]:
        rows = c.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE status IN {ACTIVE} ORDER BY created").fetchall()
        return [Job(*r) for r in rows]

    @staticmethod
    def benes(c: Connection, job_id: str) -> np.ndarray:
        (blob,) = c.execute("SELECT benes FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return np.frombuffer(blob, np.int64)

    @staticmethod
    def scope(c: Connection, job_id: str) -> bytes | None:
        """The planned scope a job was created with (None: planned before scopes were kept)."""
        (blob,) = c.execute("SELECT scope FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if blob is None else bytes(blob)

    @staticmethod
    def completed_in(c: Connection, job_id: str, org_id: str, env: str) -> bool:
        """Whether `job_id` is a completed export of `org_id` made with an `env` credential."""
        row = c.execute("SELECT status, env FROM jobs WHERE id = ? AND org_id = ?", (job_id, org_id)).fetchone()
        return row is not None and row[0] in ("done", "expired") and row[1] == env

    @staticmethod
    def reset_running(c: Connection) -> int:
        """After a restart of the only node (SQLite): chunks a dead process was running are
        redone from scratch at once, without waiting for their leases to run out."""
        return c.execute(
            "UPDATE chunks SET status = 'pending', owner = NULL, lease_until = NULL WHERE status = 'running'"
        ).rowcount

    @staticmethod
    def claim(c: Connection, owner: str, now: float, lease: float) -> Claim | None:
        """The next chunk for `owner`, fairly chosen among pending chunks and chunks whose lease
        ran out, held until `now + lease` (None: nothing to do)."""
        row = c.execute(_CLAIM + c.dialect.skip_locked.format(alias="c"), (now,)).fetchone()
        if row is None:
            return None
        job_id, seq, lo, hi = row
        (attempts,) = c.execute(
            "UPDATE chunks SET status = 'running', attempts = attempts + 1, owner = ?, lease_until = ? "
            "WHERE job_id = ? AND seq = ? RETURNING attempts",
            (owner, now + lease, job_id, seq),
        ).fetchone()
        c.execute(
            "UPDATE jobs SET status = CASE WHEN status = 'queued' THEN 'running' ELSE status END, last_claim = ? "
            "WHERE id = ?",
            (now, job_id),
        )
        return Claim(job_id, seq, lo, hi, attempts, owner)

    @staticmethod
    def renew(c: Connection, claims: list[tuple[str, int]], owner: str, until: float) -> list[tuple[str, int]]:
        """Extend `owner`'s leases; returns the claims it no longer holds (redone elsewhere, or gone)."""
        lost = []
        for job_id, seq in claims:
            n = c.execute(
                "UPDATE chunks SET lease_until = ? WHERE job_id = ? AND seq = ? AND owner = ? AND status = 'running'",
                (until, job_id, seq, owner),
            ).rowcount
            if n != 1:
                lost.append((job_id, seq))
        return lost

    @staticmethod
    def queue_stats(c: Connection, now: float) -> dict[str, float]:
        """Queue depth (pending chunks of active jobs), chunks in flight, and the age of the oldest waiting job."""
        pending, oldest = c.execute(
            "SELECT count(*), MIN(j.created) FROM chunks c JOIN jobs j ON j.id = c.job_id "
            "WHERE j.status IN ('queued', 'running') AND c.status = 'pending'"
        ).fetchone()
        (running,) = c.execute("SELECT count(*) FROM chunks WHERE status = 'running'").fetchone()
        return {"pending": pending, "running": running, "oldest_age": max(0.0, now - oldest) if oldest else 0.0}

    @staticmethod
    def jobs_by_status(c: Connection) -> dict[str, int]:
        return dict(c.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())

    @staticmethod
    def take_poll(c: Connection, job_id: str, now: float, told: float) -> PollTaken:
        """Record a status poll answered with Retry-After `told`, unless the last one (on any
        node) asked the client to wait longer than this (10% slack for clocks and travel): then
        it is refused. Either way says when the poll before was and what it was told."""
        before = c.execute("SELECT last_poll, poll_told FROM jobs WHERE id = ?", (job_id,)).fetchone()
        n = c.execute(
            "UPDATE jobs SET last_poll = ?, poll_told = ? WHERE id = ? AND "
            "(last_poll IS NULL OR last_poll > ? OR ? - last_poll >= 0.9 * poll_told)",
            (now, told, job_id, now, now),
        ).rowcount
        if n:
            return PollTaken(False, *(before or (None, None)))
        row = c.execute("SELECT last_poll, poll_told FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return PollTaken(True, *(row or (None, None)))

    @staticmethod
    def files_since(c: Connection, job_id: str, since: float) -> bool:
        """Whether a file of the job was listed after `since` (news for a partial-manifest poll)."""
        return c.execute("SELECT 1 FROM files WHERE job_id = ? AND created > ? LIMIT 1",
                         (job_id, since)).fetchone() is not None

    @staticmethod
    def pending_chunks(c: Connection, job_id: str) -> list[tuple[int, int, int]]:
        return c.execute(
            "SELECT seq, lo, hi FROM chunks WHERE job_id = ? AND status = 'pending' ORDER BY seq", (job_id,)
        ).fetchall()

    @staticmethod
    def retry_chunk(c: Connection, job_id: str, seq: int, owner: str) -> int:
        """Give a failed chunk back to the queue; its attempts so far (0: no longer ours or gone)."""
        row = c.execute(
            "UPDATE chunks SET status = 'pending', owner = NULL, lease_until = NULL "
            "WHERE job_id = ? AND seq = ? AND owner = ? AND status = 'running' RETURNING attempts",
            (job_id, seq, owner),
        ).fetchone()
        return row[0] if row else 0

    @staticmethod
    def finish_chunk(c: Connection, job_id: str, seq: int, owner: str, files: list[FileRow], now: float,
                     ttl: float) -> tuple[str, Job | None]:
        """Register a chunk's files and mark it done, atomically; completes the job on its last chunk.

        Returns ("done", the job as it stands afterwards); ("inactive", None) when the job was
        cancelled or failed meanwhile (the caller deletes the chunk's files); ("lost", None)
        when `owner` no longer holds the chunk: its lease ran out and another node redoes or
        did it, under the same file names, so the caller leaves the files alone.
        """
        # Lock order everywhere: chunk row, then job row (claims take them in that order too).
        held = c.execute(
            "SELECT 1 FROM chunks WHERE job_id = ? AND seq = ? AND owner = ? AND status = 'running'"
            + c.dialect.for_update,
            (job_id, seq, owner),
        ).fetchone()
        row = c.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE id = ?" + c.dialect.for_update, (job_id,)).fetchone()
        if row is None or not Job(*row).active:
            return "inactive", None
        if held is None:
            return "lost", None
        _insert_files(c, files)
        c.execute(
            "UPDATE chunks SET status = 'done', lease_until = NULL, done_seq = "
            "(SELECT COALESCE(MAX(done_seq), 0) + 1 FROM chunks WHERE job_id = ?1) WHERE job_id = ?1 AND seq = ?2",
            (job_id, seq),
        )
        c.execute("UPDATE jobs SET chunks_done = chunks_done + 1 WHERE id = ?", (job_id,))
        left = c.execute(
            "SELECT count(*) FROM chunks WHERE job_id = ? AND status != 'done'", (job_id,)
        ).fetchone()[0]
        if left == 0:
            JobDB.complete(c, job_id, now, ttl)
        return "done", JobDB.get_job(c, job_id)

    @staticmethod
    def complete(c: Connection, job_id: str, now: float, ttl: float) -> None:
        c.execute(
            "UPDATE jobs SET status = 'done', completed = ?, expires = ? WHERE id = ? AND status IN ('queued', 'running')",
            (now, now + ttl, job_id),
        )

    @staticmethod
    def fail(c: Connection, job_id: str, error: str, now: float, ttl: float) -> bool:
        """Fail an active job (False: it had already ended, e.g. cancelled on another node)."""
        n = c.execute(
            "UPDATE jobs SET status = 'failed', error = ?, completed = ?, expires = ? "
            f"WHERE id = ? AND status IN {ACTIVE}",
            (error, now, now + ttl, job_id),
        ).rowcount
        if n:
            c.execute("DELETE FROM files WHERE job_id = ?", (job_id,))
        return bool(n)

    @staticmethod
    def set_status(c: Connection, job_id: str, status: str) -> None:
        """cancelled / expired: the row stays (so polls answer 404 / 410), its files go."""
        c.execute("DELETE FROM chunks WHERE job_id = ?", (job_id,))  # chunk rows first: the claims' lock order
        c.execute("UPDATE jobs SET status = ? WHERE id = ?", (status, job_id))
        c.execute("DELETE FROM files WHERE job_id = ?", (job_id,))

    @staticmethod
    def files_of(c: Connection, job_id: str) -> list[FileRow]:
        rows = c.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE job_id = ? ORDER BY kind, type, chunk, name", (job_id,)
        ).fetchall()
        return [FileRow(*r) for r in rows]

    @staticmethod
    def page(c: Connection, job_id: str, page: int) -> tuple[list[FileRow], bool] | None:
        """Files of partial-manifest page `page` (1-based: the page-th completed chunk; page 1 also
        holds kick-off files) and whether a next page exists; None when the page does not exist yet."""
        done = c.execute("SELECT count(*) FROM chunks WHERE job_id = ? AND status = 'done'", (job_id,)).fetchone()[0]
        has_kickoff = c.execute("SELECT 1 FROM files WHERE job_id = ? AND chunk = -1", (job_id,)).fetchone()
        if page > max(done, 1 if has_kickoff else 0) or page < 1:
            return None
        rows = c.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE job_id = ?1 AND (chunk IN "
            "(SELECT seq FROM chunks WHERE job_id = ?1 AND done_seq = ?2) OR (?2 = 1 AND chunk = -1)) "
            "ORDER BY kind, type, chunk, name",
            (job_id, page),
        ).fetchall()
        return [FileRow(*r) for r in rows], page < done

    @staticmethod
    def file(c: Connection, job_id: str, name: str) -> FileRow | None:
        row = c.execute(f"SELECT {_FILE_COLS} FROM files WHERE job_id = ? AND name = ?", (job_id, name)).fetchone()
        return FileRow(*row) if row else None

    @staticmethod
    def expired(c: Connection, now: float) -> list[str]:
        return [
            r[0]
            for r in c.execute(
                "SELECT id FROM jobs WHERE status IN ('done', 'failed') AND expires IS NOT NULL AND expires <= ?",
                (now,),
            )
        ]


def _insert_files(c: Connection, files: list[FileRow]) -> None:
    c.executemany(
        f"INSERT INTO files ({_FILE_COLS}) VALUES ({', '.join('?' * len(FileRow.__dataclass_fields__))})",
        [tuple(f.__dict__.values()) for f in files],
    )
