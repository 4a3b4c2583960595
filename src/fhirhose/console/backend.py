"""What the console reads from the Bulk Data server it is mounted on: the access
database, the job database (read-only), the runner's queue and the files on disk.

All of it sits behind this one class, so a change in the server's insides touches
this file only. Methods are synchronous (SQLite, the disk): callers run them in a
thread.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..access import AccessDB, attribution_status
from ..server.db import ACTIVE, FileRow, Job, JobDB

if TYPE_CHECKING:
    from aiohttp import web

    from ..server.app import BulkApi

__all__ = ["ConsoleBackend", "JobView"]

_JOB_COLS = ", ".join(Job.__dataclass_fields__)
_FILE_COLS = ", ".join(FileRow.__dataclass_fields__)


@dataclass(frozen=True)
class JobView:
    """One export job as the console shows it."""

    job: Job
    files: int
    bytes: int  # stored (compressed) bytes written so far
    resources: int
    seconds: float  # running time so far, or until completion

    @property
    def percent(self) -> int:
        return 100 * self.job.chunks_done // max(self.job.chunks_total, 1)

    @property
    def rate(self) -> float:
        """Stored bytes per second."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


class ConsoleBackend:
    """The server's state, read for the console."""

    def __init__(self, access: AccessDB, jobs_db: Path, jobs_dir: Path, *, clock: Callable[[], float],
                 client_ip: Callable[["web.Request"], str | None], fhir_base: Callable[["web.Request"], str],
                 queued_chunks: Callable[[], int] = lambda: 0, workers: int = 0,
                 job_url: Callable[["web.Request", str, str], str] | None = None,
                 tables_of: Callable[[], dict] | None = None):
        self.access = access
        self.jobs_db = jobs_db
        self.jobs_dir = jobs_dir
        self.clock = clock
        self.client_ip = client_ip
        self.fhir_base = fhir_base
        self.queued_chunks = queued_chunks
        self.workers = workers
        self.job_url = job_url
        self.tables_of = tables_of

    @classmethod
    def from_api(cls, app: "web.Application", api: "BulkApi") -> "ConsoleBackend":
        """Over the Bulk Data app `app` and its state `api` (URLs come from `app`'s routes:
        a console request's own app is the console sub-app)."""
        from ..server.population import current_tables

        def url(request, name: str, **parts: str) -> str:
            return api.origin(request) + str(app.router[name].url_for(**parts))

        return cls(
            api.access, api.config.data / "jobs.sqlite", api.jobs_dir, clock=api.clock, client_ip=api.client_ip,
            fhir_base=lambda request: url(request, "metadata").removesuffix("/metadata"),
            queued_chunks=api.runner.queued_chunks, workers=api.config.workers,
            job_url=lambda request, job, name: url(request, "data", job=job, file=name),
            tables_of=lambda: current_tables(api.population),
        )

    def _conn(self) -> sqlite3.Connection | None:
        if not self.jobs_db.exists():
            return None
        return sqlite3.connect(f"{self.jobs_db.resolve().as_uri()}?mode=ro", uri=True)

    def _read(self, fn, default):
        conn = self._conn()
        if conn is None:
            return default
        try:
            return fn(conn)
        except sqlite3.OperationalError:  # tables not created yet
            return default
        finally:
            conn.close()

    # -- jobs ---------------------------------------------------------------------------
    def jobs(self, org_id: str | None = None, limit: int = 200) -> list[JobView]:
        """Newest first; `org_id` None: every organization's (the operator)."""

        def read(c):
            where, args = ("WHERE org_id = ? AND status != 'cancelled'", (org_id,)) if org_id else ("", ())
            rows = c.execute(f"SELECT {_JOB_COLS} FROM jobs {where} ORDER BY created DESC LIMIT ?",
                             (*args, int(limit))).fetchall()
            out = []
            for r in rows:
                job = Job(*r)
                n, b, k = c.execute("SELECT COUNT(*), COALESCE(SUM(stored_length), 0), COALESCE(SUM(count), 0)"
                                    " FROM files WHERE job_id = ? AND kind = 'output'", (job.id,)).fetchone()
                end = job.completed if job.completed is not None else self.clock()
                out.append(JobView(job, n, b, k, max(0.0, end - job.created)))
            return out

        return self._read(read, [])

    def job(self, job_id: str) -> Job | None:
        return self._read(lambda c: JobDB.get_job(c, job_id), None)

    def files(self, job_id: str) -> list[FileRow]:
        return self._read(lambda c: JobDB.files_of(c, job_id), [])

    def file(self, job_id: str, name: str) -> FileRow | None:
        return self._read(lambda c: JobDB.file(c, job_id, name), None)

    def file_path(self, row: FileRow) -> Path:
        return self.jobs_dir / row.job_id / row.stored

    def job_completed(self, job_id: str, org_id: str) -> bool:
        """A completed sandbox export of `org_id` (production onboarding)."""
        return self._read(lambda c: JobDB.completed_in(c, job_id, org_id, "sandbox"), False)

    def has_completed_sandbox_job(self, org_id: str) -> bool:
        return self._read(lambda c: c.execute(
            "SELECT 1 FROM jobs WHERE org_id = ? AND env = 'sandbox' AND status IN ('done', 'expired') LIMIT 1",
            (org_id,)).fetchone() is not None, False)

    def active_jobs(self) -> int:
        return self._read(lambda c: c.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN {ACTIVE}").fetchone()[0], 0)

    # -- attribution ----------------------------------------------------------------------
    def attribution(self, org_id: str) -> dict | None:
        """BCDA's attribution status (roster and runout load dates); None without a population."""
        if self.tables_of is None:
            return None
        return attribution_status(self.access, self.tables_of(), org_id, self.clock())
