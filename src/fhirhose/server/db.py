"""The job database: SQLite in WAL mode, used from one dedicated thread.

One connection, one thread: every call goes through a single-thread executor, so the
event loop never blocks on disk and SQLite never sees two threads. Each public method
is one transaction; the invariants that make restarts safe live here:

- a file row exists only for a file that is complete on disk (the runner inserts file
  rows in the same transaction that marks their chunk done);
- on open, chunks left `running` by a dead process go back to `pending`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["JobDB", "Job", "FileRow", "ACTIVE", "FINAL"]

ACTIVE = ("queued", "running")
FINAL = ("done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    kind TEXT NOT NULL,            -- system | patient | group
    group_id TEXT,
    scope_key TEXT NOT NULL,       -- same client + same scope_key while active → 429
    request_url TEXT NOT NULL,
    params TEXT NOT NULL,          -- ExportParams JSON
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
);
CREATE INDEX IF NOT EXISTS jobs_client ON jobs(client_id, status);
CREATE INDEX IF NOT EXISTS jobs_org ON jobs(org_id);
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    lo INTEGER NOT NULL,           -- [lo, hi) into the job's beneficiary rows
    hi INTEGER NOT NULL,
    status TEXT NOT NULL,          -- pending | running | done
    attempts INTEGER NOT NULL DEFAULT 0,
    done_seq INTEGER,              -- completion order: partial-manifest page number
    PRIMARY KEY (job_id, seq)
);
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
);
"""


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


class JobDB:
    """Async facade over one SQLite connection living in its own thread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fhirhose-db")
        self._conn: sqlite3.Connection | None = None

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(conn, *args)` in the DB thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run, fn, args)

    def _run(self, fn, args):
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # a committed chunk survives power loss
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
            _migrate(self._conn)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

    async def close(self) -> None:
        def _close():
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, _close)
        self._pool.shutdown(wait=True)

    # --- statements (run in the DB thread; `c` is the connection) ---------------------------

    @staticmethod
    def insert_job(c: sqlite3.Connection, job: Job, benes: np.ndarray, chunks: list[tuple[int, int]],
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
    def get_job(c: sqlite3.Connection, job_id: str) -> Job | None:
        row = c.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job(*row) if row else None

    @staticmethod
    def jobs_of(c: sqlite3.Connection, org_id: str) -> list[Job]:
        rows = c.execute(
            f"SELECT {_JOB_COLS} FROM jobs WHERE org_id = ? AND status != 'cancelled' ORDER BY created",
            (org_id,),
        ).fetchall()
        return [Job(*r) for r in rows]

    @staticmethod
    def insert_unless_active(c: sqlite3.Connection, job: Job, benes: np.ndarray, chunks: list[tuple[int, int]],
                             files: list[FileRow], scope: bytes) -> Job | None:
        """Insert the job unless the same client has an active job of the same scope (returned then)."""
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
    def active_jobs(c: sqlite3.Connection) -> list[Job]:
        rows = c.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE status IN {ACTIVE} ORDER BY created").fetchall()
        return [Job(*r) for r in rows]

    @staticmethod
    def benes(c: sqlite3.Connection, job_id: str) -> np.ndarray:
        (blob,) = c.execute("SELECT benes FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return np.frombuffer(blob, np.int64)

    @staticmethod
    def scope(c: sqlite3.Connection, job_id: str) -> bytes | None:
        """The planned scope a job was created with (None: planned before scopes were kept)."""
        (blob,) = c.execute("SELECT scope FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if blob is None else bytes(blob)

    @staticmethod
    def completed_in(c: sqlite3.Connection, job_id: str, org_id: str, env: str) -> bool:
        """Whether `job_id` is a completed export of `org_id` made with an `env` credential."""
        row = c.execute("SELECT status, env FROM jobs WHERE id = ? AND org_id = ?", (job_id, org_id)).fetchone()
        return row is not None and row[0] in ("done", "expired") and row[1] == env

    @staticmethod
    def reset_running(c: sqlite3.Connection) -> int:
        """After a restart: chunks a dead process was running are redone from scratch."""
        return c.execute("UPDATE chunks SET status = 'pending' WHERE status = 'running'").rowcount

    @staticmethod
    def pending_chunks(c: sqlite3.Connection, job_id: str) -> list[tuple[int, int, int]]:
        return c.execute(
            "SELECT seq, lo, hi FROM chunks WHERE job_id = ? AND status = 'pending' ORDER BY seq", (job_id,)
        ).fetchall()

    @staticmethod
    def start_chunk(c: sqlite3.Connection, job_id: str, seq: int) -> None:
        c.execute(
            "UPDATE chunks SET status = 'running', attempts = attempts + 1 WHERE job_id = ? AND seq = ?", (job_id, seq)
        )
        c.execute("UPDATE jobs SET status = 'running' WHERE id = ? AND status = 'queued'", (job_id,))

    @staticmethod
    def retry_chunk(c: sqlite3.Connection, job_id: str, seq: int) -> int:
        c.execute("UPDATE chunks SET status = 'pending' WHERE job_id = ? AND seq = ?", (job_id, seq))
        (attempts,) = c.execute("SELECT attempts FROM chunks WHERE job_id = ? AND seq = ?", (job_id, seq)).fetchone()
        return attempts

    @staticmethod
    def finish_chunk(c: sqlite3.Connection, job_id: str, seq: int, files: list[FileRow], now: float,
                     ttl: float) -> Job | None:
        """Register a chunk's files and mark it done, atomically; completes the job on its last chunk.

        Returns the job as it stands afterwards, or None when the job is no longer active
        (cancelled meanwhile): the caller then deletes the chunk's files.
        """
        job = JobDB.get_job(c, job_id)
        if job is None or not job.active:
            return None
        _insert_files(c, files)
        c.execute(
            "UPDATE chunks SET status = 'done', done_seq = "
            "(SELECT COALESCE(MAX(done_seq), 0) + 1 FROM chunks WHERE job_id = ?1) WHERE job_id = ?1 AND seq = ?2",
            (job_id, seq),
        )
        c.execute("UPDATE jobs SET chunks_done = chunks_done + 1 WHERE id = ?", (job_id,))
        left = c.execute(
            "SELECT count(*) FROM chunks WHERE job_id = ? AND status != 'done'", (job_id,)
        ).fetchone()[0]
        if left == 0:
            JobDB.complete(c, job_id, now, ttl)
        return JobDB.get_job(c, job_id)

    @staticmethod
    def complete(c: sqlite3.Connection, job_id: str, now: float, ttl: float) -> None:
        c.execute(
            "UPDATE jobs SET status = 'done', completed = ?, expires = ? WHERE id = ? AND status IN ('queued', 'running')",
            (now, now + ttl, job_id),
        )

    @staticmethod
    def fail(c: sqlite3.Connection, job_id: str, error: str, now: float, ttl: float) -> None:
        c.execute(
            "UPDATE jobs SET status = 'failed', error = ?, completed = ?, expires = ? WHERE id = ?",
            (error, now, now + ttl, job_id),
        )
        c.execute("DELETE FROM files WHERE job_id = ?", (job_id,))

    @staticmethod
    def set_status(c: sqlite3.Connection, job_id: str, status: str) -> None:
        """cancelled / expired: the row stays (so polls answer 404 / 410), its files go."""
        c.execute("UPDATE jobs SET status = ? WHERE id = ?", (status, job_id))
        c.execute("DELETE FROM files WHERE job_id = ?", (job_id,))
        c.execute("DELETE FROM chunks WHERE job_id = ?", (job_id,))

    @staticmethod
    def files_of(c: sqlite3.Connection, job_id: str) -> list[FileRow]:
        rows = c.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE job_id = ? ORDER BY kind, type, chunk, name", (job_id,)
        ).fetchall()
        return [FileRow(*r) for r in rows]

    @staticmethod
    def page(c: sqlite3.Connection, job_id: str, page: int) -> tuple[list[FileRow], bool] | None:
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
    def file(c: sqlite3.Connection, job_id: str, name: str) -> FileRow | None:
        row = c.execute(f"SELECT {_FILE_COLS} FROM files WHERE job_id = ? AND name = ?", (job_id, name)).fetchone()
        return FileRow(*row) if row else None

    @staticmethod
    def expired(c: sqlite3.Connection, now: float) -> list[str]:
        return [
            r[0]
            for r in c.execute(
                "SELECT id FROM jobs WHERE status IN ('done', 'failed') AND expires IS NOT NULL AND expires <= ?",
                (now,),
            )
        ]


def _migrate(c: sqlite3.Connection) -> None:
    """Add the columns a job DB written by an older version lacks (its jobs keep
    env 'sandbox' and no scope; the runner fails active ones instead of exporting
    them unscoped)."""
    have = {r[1] for r in c.execute("PRAGMA table_info(jobs)")}
    for name, decl in (("env", "TEXT NOT NULL DEFAULT 'sandbox'"), ("rules", "TEXT NOT NULL DEFAULT '[]'"),
                       ("scope", "BLOB")):
        if name not in have:
            c.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
    if "digest" not in {r[1] for r in c.execute("PRAGMA table_info(files)")}:
        c.execute("ALTER TABLE files ADD COLUMN digest TEXT NOT NULL DEFAULT ''")


def _insert_files(c: sqlite3.Connection, files: list[FileRow]) -> None:
    c.executemany(
        f"INSERT INTO files ({_FILE_COLS}) VALUES ({', '.join('?' * len(FileRow.__dataclass_fields__))})",
        [tuple(f.__dict__.values()) for f in files],
    )
