"""Status and manifest: `GET {base}/jobs/{job}`.

202 + X-Progress + Retry-After while running (Retry-After follows the job: `poll_wait`, 0
for a partial-manifest client while news is near; with the first manifest page when the
client asked for partial manifests; a poll is held, within `HOLD`, until there is news for
it: the job's end, or with partial manifests new files); 200 manifest + Expires when done; `?page=N` for manifest pages; 429 polled too
fast; 500 failed; 404 unknown or cancelled; 410 expired; 403 another organization's job.
A job kicked off with `Prefer: separate-export-status` answers 200 where the job is running,
done or failed, with the job's own status in `X-Export-Status` (Bulk Data v3); the manifest
then names `outputOrganizedBy` when asked.
"""

from __future__ import annotations

import asyncio
import json
import math
from http import HTTPStatus

import msgspec
from aiohttp import web

from ..errors import RequestError
from ..export.manifest import integrity_extension
from . import models as m
from .db import FileRow, Job, JobDB
from .params import ExportParams
from .runner import iso_instant
from .state import API, ServerState
from .web_response import http_date, outcome_response

__all__ = ["status", "RULES_EXT", "poll_wait"]

# Manifest extension listing the access rules a job was planned with.
RULES_EXT = "urn:fhirhose:access-rules"


# What a status response reports about the job itself (not about the status request:
# 429 polled too fast, 4xx bad page, stay as they are under separate-export-status).
_JOB_STATUSES = (200, 202, 500)


async def status(request: web.Request) -> web.Response:
    """The job's progress, or its manifest (with `Prefer: separate-export-status` at
    kick-off, the job's status goes in X-Export-Status and the response is 200)."""
    st = request.app[API]
    who = await st.auth.authenticate(request)
    job = await st.owned_job(request, who, "export.status")
    if st.expired(job):
        raise RequestError(f"job {job.id} expired at {iso_instant(job.expires or 0)}; its files are gone",
                           status=410, param="job")
    params = msgspec.json.decode(job.params, type=ExportParams)
    response = await _job_status(st, request, job, params)
    if params.separate_status and response.status in _JOB_STATUSES:
        response.headers["X-Export-Status"] = f"{response.status} {HTTPStatus(response.status).phrase}"
        response.set_status(200)
    return response


async def _job_status(st: ServerState, request: web.Request, job: Job, params: ExportParams) -> web.Response:
    if job.status == "failed":
        return outcome_response(500, f"export failed: {job.error}", code="exception")
    page = request.query.get("page")
    if page is not None:
        return await _page(st, request, job, params, page)
    if job.active:
        return await _in_progress(st, request, job, params)
    if params.allow_partial:
        return await _page(st, request, job, params, "1")
    files = await st.db.call(JobDB.files_of, job.id)
    return _manifest_response(st, request, job, params, files, status=200)


def time_left(elapsed: float, done: int, total: int) -> float:
    """Seconds a job has left, extrapolated from the chunks done so far (with none done yet,
    assume it runs as long again as it has run)."""
    return elapsed * (total - done) / done if done else elapsed


def poll_wait(elapsed: float, done: int, total: int, cap: int) -> int:
    """Seconds until the next status poll is worth it (1..cap), from the job's measured pace.

    The client is told half the `time_left`, so a job about to finish
    is polled about every second and a long one every `cap` seconds (with partial manifests a
    client learns of new files at least that often). `cap` 0 turns pacing off (tests)."""
    return min(cap, max(1, math.ceil(time_left(elapsed, done, total) / 2)))


# A poll is answered when there is news for it, held up to HOLD seconds while news is near:
# Retry-After counts whole seconds, so a client sent away learns of the end (or of a partial
# manifest's next files) up to a second late — a third of a 10,000-beneficiary export, which
# a client with partial manifests would rather spend downloading. Only polls of a job whose
# end (or, with partial manifests, next chunk) is expected within HOLD are held, so few are.
HOLD = 2.0
_HOLD_STEP = 0.05


def news_soon(elapsed: float, done: int, total: int, *, partial: bool) -> bool:
    """Whether a poll now would be news within HOLD: the job's end, or with partial manifests
    the next chunk's files (the first, or one of a job whose chunks end every HOLD or sooner)."""
    if done and time_left(elapsed, done, total) <= HOLD:
        return True
    return partial and (not done or elapsed / done <= HOLD)


async def _hold_for_news(st: ServerState, job: Job, *, partial: bool, near: bool,
                         since: float | None) -> Job | None:
    """The job as it is now; or, when news is `near` (`news_soon`), as it is when the news
    comes (or HOLD has passed). News: the job ended; with partial manifests also a chunk's
    files listed — and files listed since the client's previous poll (`since`) are news already.
    Read from the DB, so a chunk or job finished by another node counts too. None when the job
    was deleted meanwhile."""
    if st.config.retry_after <= 0 or not near:
        return job
    done = job.chunks_done
    if partial and done and (since is None or await st.db.call(JobDB.files_since, job.id, since)):
        return job  # files the client has not been told of
    latest: Job | None = job
    for _ in range(round(HOLD / _HOLD_STEP)):
        await asyncio.sleep(_HOLD_STEP)
        latest = await st.db.call(JobDB.get_job, job.id)
        if latest is None or not latest.active or (partial and latest.chunks_done > done):
            break
    return latest


async def _in_progress(st: ServerState, request: web.Request, job: Job, params: ExportParams) -> web.Response:
    now = st.clock()
    elapsed, partial = now - job.created, params.allow_partial
    pace = poll_wait(elapsed, job.chunks_done, job.chunks_total, st.config.retry_after)
    near = news_soon(elapsed, job.chunks_done, job.chunks_total, partial=partial)
    if partial and pace and near:
        # Its next poll is held until there is news, so the client may come back at once: a
        # client downloading while the export runs learns of each chunk's files as they come.
        pace = 0
    poll = await st.take_poll(job.id, now, pace)
    if poll.refused:
        wait = max(1, math.ceil((poll.told or 0) - (now - (poll.last or now))))
        return outcome_response(429, f"polled too often: wait {wait} s between status requests", code="throttled",
                                headers={"Retry-After": str(wait)})
    latest = await _hold_for_news(st, job, partial=partial, near=near, since=poll.last)
    if latest is None or latest.status == "cancelled":
        raise RequestError("the job was deleted while its status was asked for", status=404, param="job")
    if not latest.active:
        return await _job_status(st, request, latest, params)
    job = latest
    pct = 100 * job.chunks_done // max(job.chunks_total, 1)
    headers = {"X-Progress": f"{pct}% complete ({job.chunks_done}/{job.chunks_total} chunks)",
               "Retry-After": str(pace)}
    if params.allow_partial:
        got = await st.db.call(JobDB.page, job.id, 1)
        if got is not None:
            return _manifest_response(st, request, job, params, got[0], status=202, headers=headers,
                                      next_page=2 if got[1] else None)
    return web.Response(status=202, headers=headers)


async def _page(st: ServerState, request: web.Request, job: Job, params: ExportParams, page: str) -> web.Response:
    if not params.allow_partial:
        raise RequestError(f"page {page[:20]!r}: manifest pages exist only with allowPartialManifests=true",
                           param="page")
    # ASCII digits only: str.isdigit also accepts '²', which int() refuses.
    if not (page.isascii() and page.isdigit() and len(page) <= 9):
        raise RequestError(f"page {page[:20]!r} is not a page number (1, 2, ...)", param="page")
    got = await st.db.call(JobDB.page, job.id, int(page))
    if got is None:
        raise RequestError(f"manifest page {page} of job {job.id} is not available (yet)", status=404,
                           param="page")
    files, more = got
    return _manifest_response(st, request, job, params, files, status=200 if not job.active else 202,
                              next_page=int(page) + 1 if more else None)


def _manifest_response(st: ServerState, request: web.Request, job: Job, params: ExportParams, files: list[FileRow],
                       *, status: int, headers: dict | None = None, next_page: int | None = None) -> web.Response:
    def item(f: FileRow) -> m.ManifestItem:
        ext = None
        if f.digest:  # rows of older versions have only the NDJSON checksum
            ext = integrity_extension(compression=f.compression, digest=f.digest, stored=f.stored_length,
                                      length=f.length, sha256=f.sha256 or None)
        elif f.sha256:
            ext = {m.EXT_SHA256: f"sha256:{f.sha256}", m.EXT_LENGTH: f.length}
        # Organized output files hold blocks of several types: no `type` (Bulk Data v3).
        untyped = params.organize_by is not None and f.kind == "output"
        return m.ManifestItem(type=None if untyped else f.type, url=st.url(request, "data", job=job.id, file=f.name),
                              count=f.count, extension=ext)

    link = None
    if next_page is not None:
        link = [m.ManifestLink("next", f"{st.url(request, 'job', job=job.id)}?page={next_page}")]
    manifest = m.Manifest(
        transactionTime=iso_instant(job.transaction_time), request=job.request_url, requiresAccessToken=True,
        output=[item(f) for f in files if f.kind == "output"],
        error=[item(f) for f in files if f.kind == "error"],
        outputOrganizedBy=params.organize_by,
        deleted=[item(f) for f in files if f.kind == "deleted"],
        link=link,
        extension={RULES_EXT: json.loads(job.rules)},
    )
    h = dict(headers or {})
    if job.expires is not None:
        h["Expires"] = http_date(job.expires)
    return web.Response(status=status, body=m.encode(manifest), content_type="application/json", headers=h)
