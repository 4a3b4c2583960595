"""The console's view of this server (`fhirhose.console.ConsoleBackend`): jobs and files
read from the job database (SQLite or PostgreSQL), the runner's queue, attribution."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..access import attribution_status
from ..console.backend import ConsoleBackend, JobView
from .db import ACTIVE, Job, JobDB
from .population import current_tables

if TYPE_CHECKING:
    from aiohttp import web

    from .state import ServerState

__all__ = ["console_backend"]

_JOB_COLS = ", ".join(Job.__dataclass_fields__)


def console_backend(app: web.Application, api: ServerState) -> ConsoleBackend:
    """Over the Bulk Data app `app` and its state `api` (URLs from `app`'s routes: a console
    request's own app is the console sub-app)."""

    def read(fn):
        """`fn(conn)` on the job database (either engine), in the calling thread."""
        return api.db.run(fn)

    def url(request, name: str, **parts: str) -> str:
        return api.origin(request) + str(app.router[name].url_for(**parts))

    def jobs(org_id: str | None, limit: int) -> list[JobView]:
        def q(c):
            where, args = ("WHERE org_id = ? AND status != 'cancelled'", (org_id,)) if org_id else ("", ())
            out = []
            for r in c.execute(f"SELECT {_JOB_COLS} FROM jobs {where} ORDER BY created DESC LIMIT ?",
                               (*args, int(limit))).fetchall():
                job = Job(*r)
                n, b, k = c.execute("SELECT COUNT(*), COALESCE(SUM(stored_length), 0), COALESCE(SUM(count), 0)"
                                    " FROM files WHERE job_id = ? AND kind = 'output'", (job.id,)).fetchone()
                end = job.completed if job.completed is not None else api.clock()
                # int(): PostgreSQL sums integers as numeric (Decimal in Python)
                out.append(JobView(job, int(n), int(b), int(k), max(0.0, end - job.created)))
            return out

        return read(q)

    def file_path(job_id: str, name: str) -> Path | None:
        row = read(lambda c: JobDB.file(c, job_id, name))
        return None if row is None else api.jobs_dir / job_id / row.stored

    def attribution(org_id: str) -> dict:
        return attribution_status(api.access, current_tables(api.population), org_id, api.clock())

    return ConsoleBackend(
        access=api.access,
        clock=api.clock,
        client_ip=api.client_ip,
        fhir_base=lambda request: url(request, "metadata").removesuffix("/metadata"),
        jobs=jobs,
        job=lambda job_id: read(lambda c: JobDB.get_job(c, job_id)),
        files=lambda job_id: read(lambda c: JobDB.files_of(c, job_id)),
        file_path=file_path,
        job_completed=lambda job_id, org_id: read(lambda c: JobDB.completed_in(c, job_id, org_id, "sandbox")),
        has_completed_sandbox_job=lambda org_id: read(lambda c: c.execute(
            "SELECT 1 FROM jobs WHERE org_id = ? AND env = 'sandbox' AND status IN ('done', 'expired') LIMIT 1",
            (org_id,)).fetchone() is not None),
        job_url=lambda request, job_id, name: url(request, "data", job=job_id, file=name),
        active_jobs=lambda: read(lambda c: c.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN {ACTIVE}")
                                 .fetchone()[0]),
        queued_chunks=api.runner.queued_chunks,
        workers=api.config.workers,
        attribution=attribution,
        secure_cookies=(api.config.public_url or "").startswith("https://"),
    )
