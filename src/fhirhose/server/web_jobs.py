"""An organization's jobs: `DELETE {base}/jobs/{job}` (cancel), `GET {base}/jobs` (list)
and BCDA's `GET {base}/attribution_status` (roster load dates)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..access import attribution_status
from ..log import get_logger
from . import models as m
from .db import JobDB
from .population import current_tables
from .runner import iso_instant
from .state import API
from .web_response import FHIR_JSON

__all__ = ["delete", "list_jobs", "attribution"]

log = get_logger(__name__)


async def delete(request: web.Request) -> web.Response:
    """Cancel a job of the caller's organization: 202, then 404 everywhere; files go."""
    st = request.app[API]
    who = await st.auth.authenticate(request)
    job = await st.owned_job(request, who, "export.cancel")
    await st.db.call(JobDB.set_status, job.id, "cancelled")
    await st.runner.cancel(job.id)
    await st.audit(who, "export.cancel", request, job=job.id)
    log.info("job %s deleted by %s", job.id, who.client_id)
    body = m.encode(m.outcome(f"job {job.id} deleted", code="informational", severity="information"))
    return web.Response(status=202, body=body, content_type=FHIR_JSON)


async def list_jobs(request: web.Request) -> web.Response:
    """The caller's organization's jobs, newest first."""
    st = request.app[API]
    who = await st.auth.authenticate(request)
    jobs = await st.db.call(JobDB.jobs_of, who.org_id)
    out = [
        m.JobSummary(
            id=j.id, url=st.url(request, "job", job=j.id),
            status="expired" if st.expired(j) else j.status, request=j.request_url,
            createdTime=iso_instant(j.created), progress=f"{j.chunks_done}/{j.chunks_total} chunks",
            expires=iso_instant(j.expires) if j.expires else None,
        )
        for j in jobs
    ]
    return web.Response(body=m.encode(m.JobList(out)), content_type="application/json")


async def attribution(request: web.Request) -> web.Response:
    """BCDA's `GET /attribution_status`: load dates of the roster and the runout roster."""
    st = request.app[API]
    who = await st.auth.authenticate(request)

    def status():
        return attribution_status(st.access, current_tables(st.population), who.org_id, st.clock())

    return web.json_response(await asyncio.to_thread(status))
