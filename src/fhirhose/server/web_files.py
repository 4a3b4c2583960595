"""Downloads: `GET|HEAD {base}/data/{job}/{file}` (200 / 206 / 304 / 416; 404; 410 expired;
403 another organization's). Audited; expiry waits for downloads in flight."""

from __future__ import annotations

from aiohttp import web

from ..errors import RequestError
from .db import JobDB
from .files import serve_file
from .state import API
from .web_response import http_date

__all__ = ["download"]


async def download(request: web.Request) -> web.StreamResponse:
    """One output or error file of a job of the caller's organization."""
    st = request.app[API]
    who = await st.auth.authenticate(request)
    job = await st.owned_job(request, who, "export.download")
    if st.expired(job):
        raise RequestError(f"the files of job {job.id} expired", status=410, param="file")
    name = request.match_info["file"]
    # The URL name is only a key: the path on disk comes from the DB row.
    row = await st.db.call(JobDB.file, job.id, name)
    if row is None:
        raise RequestError(f"job {job.id} has no file {name[:80]!r}", status=404, param="file")
    await st.audit(who, "export.download", request, job=job.id, file=name, type=row.type, count=row.count,
                   method=request.method, range=request.headers.get("Range"))
    st.downloads[job.id] = st.downloads.get(job.id, 0) + 1
    try:
        headers = {"Expires": http_date(job.expires)} if job.expires else {}
        return await serve_file(request, row, st.jobs_dir / job.id / row.stored, headers,
                                stall_timeout=st.config.send_timeout)
    finally:
        st.downloads[job.id] -= 1
        if not st.downloads[job.id]:
            del st.downloads[job.id]
