"""The Bulk Data Access API as an aiohttp application (mountable as a sub-app).

Routes under the FHIR base (default `/api/v2`):

| route | answers |
|---|---|
| `GET /metadata` | 200 CapabilityStatement |
| `GET /.well-known/smart-configuration` | 200 |
| `POST /auth/token` | 200 token; 400 invalid_request / unsupported_grant_type / invalid_scope; 401 invalid_client; 429 rate limit |
| `GET|POST /$export`, `/Patient/$export`, `/Group/{id}/$export` | 202 + Content-Location; 400 bad parameter or header; 401; 403 type/level not allowed, no attestor; 404 unknown group, missing or stale roster; 429 same export already running |
| `GET /jobs/{id}` | 202 + X-Progress + Retry-After (body: partial manifest when asked); 200 manifest + Expires; 429 polled too fast; 500 failed; 404 unknown/cancelled; 410 expired; 403 not yours |
| `DELETE /jobs/{id}` | 202; 404 |
| `GET /jobs` | 200 the organization's jobs |
| `GET /attribution_status` | 200 roster and runout load dates |
| `GET|HEAD /data/{job}/{file}` | 200 / 206 / 304 / 416; 404; 410 expired; 403 |
| `/admin/...` (outside the FHIR base) | the access library's admin API (operator key or a user's admin key) |

Authentication is the access library's (`fhirhose.access`, database `DATA/access.sqlite`):
client secrets (HTTP Basic) or SMART Backend Services assertions at the token endpoint;
every other request's bearer token is re-verified against the database (signature,
expiry, scope, IP allowlist, credential and organization active). Kick-offs are planned
with `plan_scope` (CMS rules per organization kind); the job keeps the planned scope, so
a restart exports exactly what was granted, and its manifest lists the rules applied
(`extension["urn:fhirhose:access-rules"]`). Kick-offs, cancels and downloads are audited.

Errors are OperationOutcome JSON (`application/fhir+json`).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import math
import secrets
import shutil
import sqlite3
import ssl
import time
from email.utils import formatdate
from pathlib import Path
from typing import Callable

import msgspec
from aiohttp import web

from .. import __version__
from ..access import AccessConfig, AccessDB, Principal, TokenService, attribution_status
from ..access.http import AccessAuthenticator, add_routes
from ..access.jwks import JwksFetcher
from ..console import mount as mount_console
from ..errors import AuthError, FhirhoseError, RequestError
from . import models as m
from .auth import client_address, operator_key
from .config import ServerConfig
from .console_backend import console_backend
from .db import FileRow, Job, JobDB
from .files import serve_file
from .params import ExportParams, parse_body, parse_query
from .population import Planned, Population, StorePopulation, current_tables, plan
from .runner import JobRunner, RunnerSettings, iso_instant
from .worker import STORED_SUFFIX, write_ndjson

__all__ = ["create_app", "create_admin_app", "API", "RULES_EXT"]

log = logging.getLogger("fhirhose.access")

FHIR_JSON = "application/fhir+json"
API = web.AppKey("fhirhose_api", "BulkApi")
# Manifest extension listing the access rules a job was planned with.
RULES_EXT = "urn:fhirhose:access-rules"


def create_app(
    config: ServerConfig,
    *,
    access: AccessDB | AccessConfig | None = None,
    population: Population | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The Bulk Data application. Jobs resume when it starts; the pool stops when it cleans up.

    `access` is the access database (or the configuration to open `config.access_db`
    with); `population` defaults to the store's roster/enrollment/opt-out tables;
    `clock` (epoch seconds) is injectable so token, job and file expiry and poll pacing
    can be exercised without waiting. The admin API is mounted under
    `config.admin_prefix` unless that is None (see `create_admin_app`).
    """
    app = web.Application(middlewares=[_errors])
    api = BulkApi(config, access, population, clock)
    app[API] = api
    base = config.base.rstrip("/")
    r = app.router
    r.add_get(f"{base}/metadata", api.metadata, name="metadata")
    r.add_get(f"{base}/.well-known/smart-configuration", api.smart_configuration)
    for path, kind, name in (
        (f"{base}/$export", "system", "export"),
        (f"{base}/Patient/$export", "patient", "patient_export"),
        (f"{base}/Group/{{group}}/$export", "group", "group_export"),
    ):
        handler = api.kickoff_handler(kind)
        r.add_get(path, handler, name=name)
        r.add_post(path, handler)
    r.add_get(f"{base}/jobs", api.list_jobs, name="jobs")
    r.add_get(f"{base}/jobs/{{job}}", api.status, name="job")
    r.add_delete(f"{base}/jobs/{{job}}", api.delete)
    r.add_get(f"{base}/data/{{job}}/{{file}}", api.download, name="data")  # GET also answers HEAD
    r.add_get(f"{base}/attribution_status", api.attribution)
    api.auth.setup(app, base, token_url=lambda request: api.fhir_base(request) + "/auth/token")
    if config.admin_prefix is not None:
        api.mount_admin(app, config.admin_prefix)
    mount_console(app, console_backend(app, api))  # the web console at /console/ (issue 15)
    app.on_startup.append(api.start)
    app.on_cleanup.append(api.stop)
    return app


def create_admin_app(app: web.Application, prefix: str = "/admin") -> web.Application:
    """The admin API of a Bulk Data app as an application of its own (to serve on another
    port, e.g. bound to an internal interface); same database, operator key and audit log."""
    admin = web.Application()
    app[API].mount_admin(admin, prefix)
    return admin


@web.middleware
async def _errors(request: web.Request, handler):
    """Every error as an OperationOutcome."""
    try:
        return await handler(request)
    except RequestError as e:
        code = {404: "not-found", 429: "throttled"}.get(e.status, "invalid")
        return _outcome(e.status, str(e), code=code, expression=e.param)
    except AuthError as e:
        headers = {}
        if e.status == 401:
            headers["WWW-Authenticate"] = f'Bearer realm="fhirhose", error="{e.oauth_error or "invalid_token"}"'
        return _outcome(e.status, str(e), code="login" if e.status == 401 else "forbidden", headers=headers)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _outcome(e.status, e.reason, code="not-found" if e.status == 404 else "invalid",
                        headers={k: v for k, v in e.headers.items() if k.lower() == "allow"})
    except FhirhoseError as e:
        log.exception("%s %s failed", request.method, request.path)
        return _outcome(500, str(e), code="exception")


def _outcome(status: int, text: str, *, code: str, expression: str | None = None,
             severity: str = "error", headers: dict | None = None) -> web.Response:
    body = m.encode(m.outcome(text, code=code, expression=expression, severity=severity))
    return web.Response(status=status, body=body, content_type=FHIR_JSON, headers=headers)


def _http_date(t: float) -> str:
    return formatdate(t, usegmt=True)


class BulkApi:
    """Handlers and the state they share (DB, runner, auth, population, poll pacing)."""

    def __init__(self, config: ServerConfig, access: AccessDB | AccessConfig | None,
                 population: Population | None, clock: Callable[[], float]):
        self.config = config
        self.clock = clock
        self.base = config.base.rstrip("/")
        self.jobs_dir = config.data / "jobs"
        config.data.mkdir(parents=True, exist_ok=True)
        config.access_db.parent.mkdir(parents=True, exist_ok=True)
        self.db = JobDB(config.data / "jobs.sqlite")
        self.access = access if isinstance(access, AccessDB) else AccessDB(config.access_db, access)
        self.tokens = TokenService(self.access)
        self.client_ip = client_address(config.trusted_proxies)
        self.auth = AccessAuthenticator(self.access, self.tokens, client_ip=self.client_ip, clock=clock)
        self.population = population or StorePopulation(str(config.store))
        self.runner = JobRunner(
            self.db,
            RunnerSettings(
                store_path=str(config.store), jobs_dir=str(self.jobs_dir), workers=config.workers,
                compression=config.compression, level=config.level, exporter=config.exporter,
                ttl=config.file_ttl,
            ),
            clock,
        )
        self._last_poll: dict[str, float] = {}
        self._downloads: dict[str, int] = {}
        self._janitor: asyncio.Task | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, app: web.Application) -> None:
        self.config.data.mkdir(parents=True, exist_ok=True)
        ctx = ssl.create_default_context(cafile=self.config.jwks_ca_file) if self.config.jwks_ca_file else None
        self.tokens.jwks_fetcher = JwksFetcher(asyncio.get_running_loop(), ttl=self.config.jwks_ttl,
                                               allow_http=self.config.jwks_allow_http, ssl=ctx)
        await self.runner.start()
        await self.expire()
        self._janitor = asyncio.create_task(self._janitor_loop())

    async def stop(self, app: web.Application) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            await asyncio.gather(self._janitor, return_exceptions=True)
        await self.runner.stop()
        await self.db.close()
        self.tokens.jwks_fetcher = None

    # --- admin API and audit ----------------------------------------------------------------

    def mount_admin(self, app: web.Application, prefix: str) -> None:
        """The access library's admin API on `app` under `prefix` (operator key: `config.operator_key`)."""
        add_routes(app, self.access, service=self.tokens, token_path=None, admin_prefix=prefix,
                   operator_key=operator_key(self.config.operator_key), job_completed=self.sandbox_job_completed,
                   client_ip=self.client_ip)

    def sandbox_job_completed(self, job_id: str, org_id: str) -> bool:
        """Whether `job_id` is a completed sandbox export of `org_id` (production onboarding).

        Called from the admin API's worker threads: its own short-lived connection."""
        conn = sqlite3.connect(f"{(self.config.data / 'jobs.sqlite').resolve().as_uri()}?mode=ro", uri=True)
        try:
            return JobDB.completed_in(conn, job_id, org_id, "sandbox")
        except sqlite3.OperationalError:  # no job DB yet
            return False
        finally:
            conn.close()

    async def audit(self, who: Principal, action: str, request: web.Request, /, **detail) -> None:
        """One audit entry for a request made with a verified token (off the loop)."""
        await asyncio.to_thread(self.tokens.audit_request, who, action, self.client_ip(request), self.clock(),
                                path=request.path, **detail)

    async def _janitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.janitor_interval)
            try:
                await self.expire()
            except Exception:  # keep sweeping; the next pass retries
                log.exception("expiry sweep failed")

    async def expire(self) -> list[str]:
        """Mark jobs past their expiry as expired and delete their files (not while downloading)."""
        gone = []
        for job_id in await self.db.call(JobDB.expired, self.clock()):
            if self._downloads.get(job_id):
                continue  # IG: do not delete files a client is downloading
            await self.db.call(JobDB.set_status, job_id, "expired")
            await self.runner.cancel(job_id)
            gone.append(job_id)
        return gone

    # --- URLs -------------------------------------------------------------------------------

    def origin(self, request: web.Request) -> str:
        return (self.config.public_url or f"{request.scheme}://{request.host}").rstrip("/")

    def url(self, request: web.Request, name: str, **parts: str) -> str:
        return self.origin(request) + str(request.app.router[name].url_for(**parts))

    def fhir_base(self, request: web.Request) -> str:
        return self.url(request, "metadata").removesuffix("/metadata")

    # --- discovery --------------------------------------------------------------------------

    async def metadata(self, request: web.Request) -> web.Response:
        return web.Response(body=m.encode(_capability_statement(self.fhir_base(request))), content_type=FHIR_JSON)

    async def smart_configuration(self, request: web.Request) -> web.Response:
        doc = self.auth.smart_configuration(self.fhir_base(request))
        return web.Response(body=m.encode(doc), content_type="application/json")

    # --- kick-off ---------------------------------------------------------------------------

    def kickoff_handler(self, kind: str):
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self.kickoff(request, kind)

        return handler

    async def kickoff(self, request: web.Request, kind: str) -> web.StreamResponse:
        who = await self.auth.authenticate(request)
        accept = request.headers.get("Accept", FHIR_JSON)
        if not any(a.split(";")[0].strip() in (FHIR_JSON, "application/json", "*/*") for a in accept.split(",")):
            raise RequestError(f"Accept {accept!r}: only application/fhir+json is supported", param="Accept")
        prefer = {p.strip() for p in request.headers.get("Prefer", "").split(",")}
        if "respond-async" not in prefer:
            raise RequestError("the Prefer: respond-async header is required", param="Prefer")
        lenient = "handling=lenient" in prefer
        now = self.clock()
        now_dt = _dt.datetime.fromtimestamp(now, _dt.timezone.utc)
        if request.method == "POST":
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
            if ctype not in (FHIR_JSON, "application/json"):
                raise RequestError("a POST kick-off needs a Parameters body as application/fhir+json",
                                   param="Content-Type")
            params = parse_body(await request.read(), now_dt, kind=kind, lenient=lenient)
            if request.query:
                raise RequestError("a POST kick-off takes its parameters in the body, not the URL",
                                   param=next(iter(request.query)))
        else:
            params = parse_query(request.query.items(), now_dt, kind=kind, lenient=lenient)
        group = request.match_info.get("group", "all")
        try:
            params = self._authorize_types(who, params)
            planned: Planned = await asyncio.to_thread(
                plan, self.access, self.population, who, kind, group, params.since, params.types, params.patients, now)
        except (AuthError, RequestError) as e:
            await self.audit(who, "export.kickoff", request, outcome="denied", level=kind, group=group,
                             status=e.status, reason=str(e))
            raise
        if planned.unknown:
            msg = f"patient {', '.join('Patient/' + p for p in planned.unknown)}: not in Group/{group}"
            if not lenient:
                raise RequestError(msg, param="patient")
            params = msgspec.structs.replace(params, warnings=[*params.warnings, ["patient", msg]])
        params = msgspec.structs.replace(params, types=[t for t in params.types if t in planned.scope.types])
        return await self._create(request, who, kind, group, params, planned, now)

    def _authorize_types(self, who: Principal, params: ExportParams) -> ExportParams:
        """Types named in `_type` must all be granted (403); without `_type`, the granted subset."""
        allowed = [t for t in params.types if who.allows(t)]
        if params.explicit_types and len(allowed) < len(params.types):
            denied = [t for t in params.types if t not in allowed]
            raise AuthError(f"the token's scopes do not allow exporting {', '.join(denied)} "
                            f"(granted: {', '.join(who.types) or 'none'})", status=403)
        if not allowed:
            raise AuthError("the token's scopes allow no exported resource type", status=403)
        return msgspec.structs.replace(params, types=allowed)

    async def _create(self, request: web.Request, who: Principal, kind: str, group: str,
                      params: ExportParams, planned: Planned, now: float) -> web.Response:
        job_id = secrets.token_hex(16)
        scope = planned.scope
        benes = scope.bene_rows
        size = max(1, self.config.chunk_size)
        chunks = [(lo, min(lo + size, len(benes))) for lo in range(0, len(benes), size)]
        scope_key = f"{kind}:{group}:{','.join(sorted(params.types))}"
        request_url = self.origin(request) + request.rel_url.path_qs
        job = Job(
            id=job_id, client_id=who.client_id, org_id=who.org_id, kind=kind, group_id=group,
            scope_key=scope_key, request_url=request_url, params=msgspec.json.encode(params),
            status="queued", error=None, chunks_total=len(chunks), chunks_done=0, created=now,
            transaction_time=now, completed=None, expires=None, generation=planned.generation,
            env=who.env, rules=json.dumps(list(scope.rules)),
        )
        job_dir = self.jobs_dir / job_id
        files = await asyncio.to_thread(self._kickoff_files, job_dir, params, now)
        running = await self.db.call(JobDB.insert_unless_active, job, benes, chunks, files, scope.to_bytes())
        if running is not None:
            await asyncio.to_thread(shutil.rmtree, job_dir, True)
            where = self.url(request, "job", job=running.id)
            body = m.encode(m.outcome(f"an export of the same scope is already running: {where}",
                                      code="throttled"))
            return web.Response(status=429, body=body, content_type=FHIR_JSON,
                                headers={"Retry-After": str(self.config.retry_after), "Content-Location": where})
        await self.runner.submit(job)
        await self.audit(who, "export.kickoff", request, job=job_id, level=kind, group=group, types=params.types,
                         beneficiaries=int(len(benes)), since=params.since, url=request_url)
        where = self.url(request, "job", job=job_id)
        log.info("job %s queued for %s (%s %s, %d beneficiaries, %d chunks)",
                 job_id, who.client_id, kind, group, len(benes), len(chunks))
        body = m.encode(m.outcome(f"export accepted; poll {where}", code="informational", severity="information"))
        return web.Response(status=202, body=body, content_type=FHIR_JSON, headers={"Content-Location": where})

    def _kickoff_files(self, job_dir: Path, params: ExportParams, now: float) -> list[FileRow]:
        """The error file for parameters dropped under handling=lenient (written before the job exists)."""
        job_dir.mkdir(parents=True, exist_ok=True)
        if not params.warnings:
            return []
        comp = self.config.compression
        name = "OperationOutcome-kickoff.ndjson"
        stored = name + STORED_SUFFIX[comp]
        lines = [m.encode(m.outcome(msg, code="not-supported", severity="warning", expression=p))
                 for p, msg in params.warnings]
        count, sha, length = write_ndjson(job_dir / stored, lines, comp, self.config.level)
        return [FileRow(job_id=job_dir.name, name=name, stored=stored, chunk=-1, kind="error",
                        type="OperationOutcome", count=count, sha256=sha, length=length,
                        stored_length=(job_dir / stored).stat().st_size, compression=comp, created=now)]

    # --- status / manifest ------------------------------------------------------------------

    async def _owned_job(self, request: web.Request, who: Principal, action: str) -> Job:
        """The job of the URL if it belongs to the caller's organization (404 / 403 otherwise;
        a 403 is audited: someone holds another organization's job URL)."""
        job_id = request.match_info["job"]
        job = await self.db.call(JobDB.get_job, job_id)
        if job is None or job.status == "cancelled":
            raise RequestError(f"job {job_id[:64]} does not exist (or was deleted)", status=404, param="job")
        if job.org_id != who.org_id:
            await self.audit(who, action, request, outcome="denied", job=job_id, reason="job of another organization")
            raise AuthError(f"job {job_id} belongs to another organization", status=403)
        return job

    def _expired(self, job: Job) -> bool:
        return job.status == "expired" or (job.expires is not None and job.expires <= self.clock())

    async def status(self, request: web.Request) -> web.Response:
        who = await self.auth.authenticate(request)
        job = await self._owned_job(request, who, "export.status")
        if self._expired(job):
            raise RequestError(f"job {job.id} expired at {iso_instant(job.expires or 0)}; its files are gone",
                               status=410, param="job")
        if job.status == "failed":
            return _outcome(500, f"export failed: {job.error}", code="exception")
        params = msgspec.json.decode(job.params, type=ExportParams)
        page = request.query.get("page")
        if page is not None:
            return await self._page(request, job, params, page)
        if job.active:
            return await self._in_progress(request, job, params)
        if params.allow_partial:
            return await self._page(request, job, params, "1")
        files = await self.db.call(JobDB.files_of, job.id)
        return self._manifest_response(request, job, files, status=200)

    async def _in_progress(self, request: web.Request, job: Job, params: ExportParams) -> web.Response:
        now, pace = self.clock(), self.config.retry_after
        last = self._last_poll.get(job.id)
        if last is not None and now - last < pace * 0.9:
            wait = max(1, math.ceil(pace - (now - last)))
            return _outcome(429, f"polled too often: wait {wait} s between status requests", code="throttled",
                            headers={"Retry-After": str(wait)})
        self._last_poll[job.id] = now
        pct = 100 * job.chunks_done // max(job.chunks_total, 1)
        headers = {"X-Progress": f"{pct}% complete ({job.chunks_done}/{job.chunks_total} chunks)",
                   "Retry-After": str(pace)}
        if params.allow_partial:
            got = await self.db.call(JobDB.page, job.id, 1)
            if got is not None:
                return self._manifest_response(request, job, got[0], status=202, headers=headers,
                                               next_page=2 if got[1] else None)
        return web.Response(status=202, headers=headers)

    async def _page(self, request: web.Request, job: Job, params: ExportParams, page: str) -> web.Response:
        if not params.allow_partial or not page.isdigit():
            raise RequestError(f"page {page!r}: manifest pages exist only with allowPartialManifests=true",
                               param="page")
        got = await self.db.call(JobDB.page, job.id, int(page))
        if got is None:
            raise RequestError(f"manifest page {page} of job {job.id} is not available (yet)", status=404,
                               param="page")
        files, more = got
        return self._manifest_response(request, job, files, status=200 if not job.active else 202,
                                       next_page=int(page) + 1 if more else None)

    def _manifest_response(self, request: web.Request, job: Job, files: list[FileRow], *, status: int,
                           headers: dict | None = None, next_page: int | None = None) -> web.Response:
        def item(f: FileRow) -> m.ManifestItem:
            return m.ManifestItem(
                type=f.type, url=self.url(request, "data", job=job.id, file=f.name), count=f.count,
                extension={m.EXT_SHA256: f"sha256:{f.sha256}", m.EXT_LENGTH: f.length},
            )

        link = None
        if next_page is not None:
            link = [m.ManifestLink("next", f"{self.url(request, 'job', job=job.id)}?page={next_page}")]
        manifest = m.Manifest(
            transactionTime=iso_instant(job.transaction_time), request=job.request_url, requiresAccessToken=True,
            output=[item(f) for f in files if f.kind == "output"],
            error=[item(f) for f in files if f.kind == "error"],
            deleted=[item(f) for f in files if f.kind == "deleted"],
            link=link,
            extension={RULES_EXT: json.loads(job.rules)},
        )
        h = dict(headers or {})
        if job.expires is not None:
            h["Expires"] = _http_date(job.expires)
        return web.Response(status=status, body=m.encode(manifest), content_type="application/json", headers=h)

    async def delete(self, request: web.Request) -> web.Response:
        who = await self.auth.authenticate(request)
        job = await self._owned_job(request, who, "export.cancel")
        await self.db.call(JobDB.set_status, job.id, "cancelled")
        await self.runner.cancel(job.id)
        await self.audit(who, "export.cancel", request, job=job.id)
        self._last_poll.pop(job.id, None)
        log.info("job %s deleted by %s", job.id, who.client_id)
        body = m.encode(m.outcome(f"job {job.id} deleted", code="informational", severity="information"))
        return web.Response(status=202, body=body, content_type=FHIR_JSON)

    async def list_jobs(self, request: web.Request) -> web.Response:
        who = await self.auth.authenticate(request)
        jobs = await self.db.call(JobDB.jobs_of, who.org_id)
        out = [
            m.JobSummary(
                id=j.id, url=self.url(request, "job", job=j.id),
                status="expired" if self._expired(j) else j.status, request=j.request_url,
                createdTime=iso_instant(j.created), progress=f"{j.chunks_done}/{j.chunks_total} chunks",
                expires=iso_instant(j.expires) if j.expires else None,
            )
            for j in jobs
        ]
        return web.Response(body=m.encode(m.JobList(out)), content_type="application/json")

    async def attribution(self, request: web.Request) -> web.Response:
        """BCDA's `GET /attribution_status`: load dates of the roster and the runout roster."""
        who = await self.auth.authenticate(request)

        def status():
            return attribution_status(self.access, current_tables(self.population), who.org_id, self.clock())

        return web.json_response(await asyncio.to_thread(status))

    # --- downloads --------------------------------------------------------------------------

    async def download(self, request: web.Request) -> web.StreamResponse:
        who = await self.auth.authenticate(request)
        job = await self._owned_job(request, who, "export.download")
        if self._expired(job):
            raise RequestError(f"the files of job {job.id} expired", status=410, param="file")
        name = request.match_info["file"]
        # The URL name is only a key: the path on disk comes from the DB row.
        row = await self.db.call(JobDB.file, job.id, name)
        if row is None:
            raise RequestError(f"job {job.id} has no file {name[:80]!r}", status=404, param="file")
        await self.audit(who, "export.download", request, job=job.id, file=name, type=row.type, count=row.count,
                         method=request.method, range=request.headers.get("Range"))
        self._downloads[job.id] = self._downloads.get(job.id, 0) + 1
        try:
            headers = {"Expires": _http_date(job.expires)} if job.expires else {}
            return await serve_file(request, row, self.jobs_dir / job.id / row.stored, headers)
        finally:
            self._downloads[job.id] -= 1
            if not self._downloads[job.id]:
                del self._downloads[job.id]


def _capability_statement(base_url: str) -> m.CapabilityStatement:
    bulk = "http://hl7.org/fhir/uv/bulkdata"
    export_ops = [
        m.CapOperation("export", f"{bulk}/OperationDefinition/export"),
        m.CapOperation("patient-export", f"{bulk}/OperationDefinition/patient-export"),
        m.CapOperation("group-export", f"{bulk}/OperationDefinition/group-export"),
    ]
    eob_params = [
        {"name": "service-date", "type": "date"},
        {"name": "_tag", "type": "token"},
    ]
    return m.CapabilityStatement(
        status="active",
        date="2025-01-01",
        kind="instance",
        fhirVersion="4.0.1",
        format=["application/fhir+json"],
        instantiates=[f"{bulk}/CapabilityStatement/bulk-data"],
        software=m.CapSoftware("fhirhose", __version__),
        implementation=m.CapImplementation("fhirhose Bulk Data Access server", base_url),
        rest=[
            m.CapRest(
                mode="server",
                resource=[
                    m.CapResource("Patient", operation=[export_ops[1]]),
                    m.CapResource("Group", operation=[export_ops[2]]),
                    m.CapResource("Coverage"),
                    m.CapResource("ExplanationOfBenefit", searchParam=eob_params),
                ],
                operation=export_ops,
                security=m.CapSecurity(
                    service=[m.CodeableConcept(coding=[m.Coding(
                        system="http://terminology.hl7.org/CodeSystem/restful-security-service", code="SMART-on-FHIR")])],
                    extension=[{
                        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                        "extension": [{"url": "token", "valueUri": f"{base_url}/auth/token"}],
                    }],
                ),
            )
        ],
    )
