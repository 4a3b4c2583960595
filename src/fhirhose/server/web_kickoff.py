"""Kick-off: `GET|POST {base}/$export`, `/Patient/$export`, `/Group/{group}/$export`.

202 + Content-Location; 400 bad parameter or header; 401; 403 type or level not allowed,
no attestor; 404 unknown group, missing or stale roster; 429 the same export is already
running. The job is planned with the CMS rules (`population.plan`) and keeps the planned
scope, so a restart exports exactly what was granted. Parameters: `params.KICKOFF_PARAMS`;
Prefer values: `params.PREFERENCES` (those honoured are echoed in Preference-Applied).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import secrets
import shutil
from pathlib import Path

import msgspec
import numpy as np
from aiohttp import web

from ..access import Principal
from ..errors import AuthError, RequestError
from ..export.compress import SUFFIX as STORED_SUFFIX
from ..export.files import write_ndjson
from ..log import JOB_ID, get_logger
from . import models as m
from .db import FileRow, Job, JobDB
from .params import PREFERENCES, ExportParams, parse_body, parse_query
from .population import Planned, plan
from .runner import plan_chunks
from .state import API, ServerState
from .web_errors import read_body
from .web_response import FHIR_JSON

__all__ = ["KICKOFF_ROUTES", "kickoff_handler"]

log = get_logger(__name__)

# A POST Parameters body: a long patient list fits many times over.
KICKOFF_MAX_BODY = 1 << 20

# (path under the FHIR base, export level, route name)
KICKOFF_ROUTES = (
    ("/$export", "system", "export"),
    ("/Patient/$export", "patient", "patient_export"),
    ("/Group/{group}/$export", "group", "group_export"),
)


def kickoff_handler(kind: str):
    """The GET/POST handler of one export level (system / patient / group)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await kickoff(request, kind)

    return handler


async def kickoff(request: web.Request, kind: str) -> web.StreamResponse:
    """Validate headers and parameters, authorize, plan, and queue the job."""
    st = request.app[API]
    who = await st.auth.authenticate(request)
    accept = request.headers.get("Accept", FHIR_JSON)
    if not any(a.split(";")[0].strip() in (FHIR_JSON, "application/json", "*/*") for a in accept.split(",")):
        raise RequestError(f"Accept {accept!r}: only application/fhir+json is supported", param="Accept")
    prefer = _prefer(request)
    if "respond-async" not in prefer:
        raise RequestError("the Prefer: respond-async header is required", param="Prefer")
    lenient = "handling=lenient" in prefer
    separate = "separate-export-status" in prefer
    now = st.clock()
    now_dt = _dt.datetime.fromtimestamp(now, _dt.UTC)
    if request.method == "POST":
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype not in (FHIR_JSON, "application/json"):
            raise RequestError("a POST kick-off needs a Parameters body as application/fhir+json",
                               param="Content-Type")
        body = await read_body(request, KICKOFF_MAX_BODY, st.config.body_timeout)
        params = parse_body(body, now_dt, kind=kind, lenient=lenient, flavour=st.flavour(request))
        if request.query:
            raise RequestError("a POST kick-off takes its parameters in the body, not the URL",
                               param=next(iter(request.query)))
    else:
        params = parse_query(request.query.items(), now_dt, kind=kind, lenient=lenient, flavour=st.flavour(request))
    group = request.match_info.get("group", "all")
    try:
        params = _authorize_types(who, params)
        planned: Planned = await asyncio.to_thread(
            plan, st.access, st.population, who, kind, group, params.since, params.types, params.patients, now)
    except (AuthError, RequestError) as e:
        await st.audit(who, "export.kickoff", request, outcome="denied", level=kind, group=group,
                       status=e.status, reason=str(e))
        raise
    if planned.unknown:
        msg = f"patient {', '.join('Patient/' + p for p in planned.unknown)}: not in Group/{group}"
        if not lenient:
            raise RequestError(msg, param="patient")
        params = msgspec.structs.replace(params, warnings=[*params.warnings, ["patient", msg]])
    params = msgspec.structs.replace(params, types=[t for t in params.types if t in planned.scope.types],
                                     separate_status=separate)
    return await _create(st, request, who, kind, group, params, planned, now)


def _authorize_types(who: Principal, params: ExportParams) -> ExportParams:
    """Types named in `_type` must all be granted (403); without `_type`, the granted subset."""
    allowed = [t for t in params.types if who.allows(t)]
    if params.explicit_types and len(allowed) < len(params.types):
        denied = [t for t in params.types if t not in allowed]
        raise AuthError(f"the token's scopes do not allow exporting {', '.join(denied)} "
                        f"(granted: {', '.join(who.types) or 'none'})", status=403)
    if not allowed:
        raise AuthError("the token's scopes allow no exported resource type", status=403)
    return msgspec.structs.replace(params, types=allowed)


async def _create(st: ServerState, request: web.Request, who: Principal, kind: str, group: str,
                  params: ExportParams, planned: Planned, now: float) -> web.Response:
    job_id = secrets.token_hex(16)
    JOB_ID.set(job_id)  # the rest of this request's log lines name the job
    scope = planned.scope
    benes = scope.bene_rows
    chunks = plan_chunks(len(benes), st.config.chunk_size, st.config.workers)
    if len(scope.removed):
        # One more chunk over the beneficiaries who left since `_since`: outside the scope,
        # it writes only their deleted file (Bulk Data v3 `deleted`).
        chunks.append((len(benes), len(benes) + len(scope.removed)))
        benes = np.concatenate([benes, scope.removed])
    scope_key = f"{kind}:{group}:{','.join(sorted(params.types))}"
    request_url = st.origin(request) + request.rel_url.path_qs
    job = Job(
        id=job_id, client_id=who.client_id, org_id=who.org_id, kind=kind, group_id=group,
        scope_key=scope_key, request_url=request_url, params=msgspec.json.encode(params),
        status="queued", error=None, chunks_total=len(chunks), chunks_done=0, created=now,
        transaction_time=now, completed=None, expires=None, generation=planned.generation,
        env=who.env, rules=json.dumps(list(scope.rules)),
    )
    job_dir = st.jobs_dir / job_id
    try:
        files = await asyncio.to_thread(_kickoff_files, st, job_dir, params, now)
        running = await st.db.call(JobDB.insert_unless_active, job, benes, chunks, files, scope.to_bytes())
    except BaseException:  # a full disk, a cancelled request: no job folder without its row
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, job_dir, True))
        raise
    if running is not None:
        await asyncio.to_thread(shutil.rmtree, job_dir, True)
        where = st.url(request, "job", job=running.id)
        body = m.encode(m.outcome(f"an export of the same scope is already running: {where}",
                                  code="throttled"))
        return web.Response(status=429, body=body, content_type=FHIR_JSON,
                            headers={"Retry-After": str(st.config.retry_after), "Content-Location": where})
    await st.runner.submit(job)
    await st.audit(who, "export.kickoff", request, job=job_id, level=kind, group=group, types=params.types,
                   beneficiaries=int(len(scope.bene_rows)), since=params.since, url=request_url)
    where = st.url(request, "job", job=job_id)
    log.info("job %s queued for %s (%s %s, %d beneficiaries, %d chunks)",
             job_id, who.client_id, kind, group, len(scope.bene_rows), len(chunks))
    body = m.encode(m.outcome(f"export accepted; poll {where}", code="informational", severity="information"))
    applied = [p for p in PREFERENCES if p in _prefer(request)]
    return web.Response(status=202, body=body, content_type=FHIR_JSON,
                        headers={"Content-Location": where, "Preference-Applied": ", ".join(applied)})


def _prefer(request: web.Request) -> set[str]:
    """The Prefer header's preferences (RFC 7240; repeated headers or comma-separated)."""
    return {p.strip() for h in request.headers.getall("Prefer", []) for p in h.split(",")}


def _kickoff_files(st: ServerState, job_dir: Path, params: ExportParams, now: float) -> list[FileRow]:
    """The error file for parameters dropped under handling=lenient (written before the job exists)."""
    job_dir.mkdir(parents=True, exist_ok=True)
    if not params.warnings:
        return []
    comp = st.config.compression
    name = "OperationOutcome-kickoff.ndjson"
    stored = name + STORED_SUFFIX[comp]
    lines = [m.encode(m.outcome(msg, code="not-supported", severity="warning", expression=p))
             for p, msg in params.warnings]
    info = write_ndjson(job_dir / stored, lines, comp, st.config.level, ndjson_sha256=st.config.ndjson_sha256)
    return [FileRow(job_id=job_dir.name, name=name, stored=stored, chunk=-1, kind="error",
                    type="OperationOutcome", count=info.count, sha256=info.sha256 or "", length=info.length,
                    stored_length=info.stored, compression=comp, created=now, digest=info.digest)]
