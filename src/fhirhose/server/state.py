"""`ServerState`: what every handler module shares (configuration, job DB, runner,
access database and authenticator, population, clock), its lifecycle (start, stop,
expiry sweep), and the helpers handlers have in common (URLs, audit, job ownership).

The app factory (`app.py`) keeps one instance under `app[API]`; handlers reach it
through `request.app[API]`.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import ssl
import time
from collections.abc import Callable

from aiohttp import web

from ..access import AccessConfig, AccessDB, Principal, TokenService
from ..errors import AuthError, RequestError, StoreError
from ..log import JOB_ID, get_logger
from ..sql import open_database
from .auth import client_address, operator_key
from .config import ServerConfig
from .db import Job, JobDB, PollTaken
from .jwks import JwksFetcher
from .population import Population, StorePopulation
from .runner import JobRunner, RunnerSettings
from .web_admin import add_routes
from .web_auth import AccessAuthenticator
from .web_errors import JSON_ERROR_PREFIXES

__all__ = ["ServerState", "API"]

log = get_logger(__name__)

# Audit entries kept in memory while the audit log cannot be written; beyond, they go to the log.
MAX_PENDING_AUDIT = 100_000


class ServerState:
    """Handlers' shared state (DB, runner, auth, population, poll pacing, open downloads)."""

    def __init__(self, config: ServerConfig, access: AccessDB | AccessConfig | None,
                 population: Population | None, clock: Callable[[], float] = time.time):
        self.config = config
        self.clock = clock
        self.started = clock()  # the CapabilityStatement's date
        self.base = config.base.rstrip("/")
        # API flavour → FHIR base: v2 (today's behaviour) and, beside it, BCDA v3.
        self.bases = {"v2": self.base}
        if config.v3_base is not None:
            self.bases["v3"] = config.v3_base.rstrip("/")
        self._flavours: dict[object, str] = {}  # route resource → the flavour it serves
        self.jobs_dir = config.data / "jobs"
        config.data.mkdir(parents=True, exist_ok=True)
        config.access_db.parent.mkdir(parents=True, exist_ok=True)
        # One database for both with --database (PostgreSQL: every node's shared state);
        # else the embedded default, two SQLite files in DATA.
        self.sql = open_database(config.database_url or config.data / "jobs.sqlite")
        self.db = JobDB(self.sql)
        if isinstance(access, AccessDB):
            self.access = access
        else:
            self.access = AccessDB(self.sql if config.database_url else config.access_db, access)
        self.tokens = TokenService(self.access)
        self.client_ip = client_address(config.trusted_proxies)
        self.auth = AccessAuthenticator(self.access, self.tokens, client_ip=self.client_ip, clock=clock)
        self.population = population or StorePopulation(str(config.store))
        self.runner = JobRunner(
            self.db,
            RunnerSettings(
                store_path=str(config.store), jobs_dir=str(self.jobs_dir), workers=config.workers,
                compression=config.compression, level=config.level, exporter=config.exporter,
                ttl=config.file_ttl, ndjson_sha256=config.ndjson_sha256, lease=config.lease,
                sole_node=self.sql.engine == "sqlite", warm=config.warm_workers,
            ),
            clock,
        )
        self.downloads: dict[str, int] = {}  # job id -> downloads in flight (expiry waits for them)
        # job id -> (time of its last in-progress status answer, the Retry-After it told), sole node
        self._last_poll: dict[str, tuple[float, float]] = {}
        # Audit entries not yet stored (see `audit`): (principal, action, ip, time, detail).
        self.pending_audit: collections.deque[tuple[Principal, str, str | None, float, dict]] = collections.deque()
        self._audit_lock = asyncio.Lock()
        self._janitor: asyncio.Task | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, app: web.Application) -> None:
        """Startup: JWKS fetcher on this loop, resume jobs, first expiry sweep, then the janitor."""
        self.config.data.mkdir(parents=True, exist_ok=True)
        self.started = self.clock()
        await asyncio.to_thread(self.db.migrate)
        ctx = ssl.create_default_context(cafile=self.config.jwks_ca_file) if self.config.jwks_ca_file else None
        self.tokens.jwks_fetcher = JwksFetcher(asyncio.get_running_loop(), ttl=self.config.jwks_ttl,
                                               allow_http=self.config.jwks_allow_http, ssl=ctx)
        await self.runner.start()
        await self.expire()
        self._janitor = asyncio.create_task(self._janitor_loop())

    async def stop(self, app: web.Application) -> None:
        """Cleanup: stop the janitor and the worker pool, close the job DB."""
        if self._janitor is not None:
            self._janitor.cancel()
            await asyncio.gather(self._janitor, return_exceptions=True)
        await self.runner.stop()
        if await self.flush_audit():  # last resort: the log keeps what the database could not
            for entry in self.pending_audit:
                self._log_unstored(entry)
            self.pending_audit.clear()
        await self.db.close()
        if self.sql.engine == "postgresql":  # (SQLite: JobDB.close closed its thread's connection)
            await asyncio.to_thread(self.sql.close)
        self.tokens.jwks_fetcher = None

    async def _janitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.janitor_interval)
            try:
                await self.flush_audit()
                await self.expire()
            except Exception:  # keep sweeping; the next pass retries
                log.exception("expiry sweep failed")

    async def expire(self) -> list[str]:
        """Mark jobs past their expiry as expired and delete their files (not while downloading)."""
        gone = []
        for job_id in await self.db.call(JobDB.expired, self.clock()):
            if self.downloads.get(job_id):
                continue  # IG: do not delete files a client is downloading
            await self.db.call(JobDB.set_status, job_id, "expired")
            self._last_poll.pop(job_id, None)
            await self.runner.cancel(job_id)
            gone.append(job_id)
        return gone

    # --- admin API and audit ----------------------------------------------------------------

    def mount_admin(self, app: web.Application, prefix: str) -> None:
        """The access library's admin API on `app` under `prefix` (operator key: `config.operator_key`)."""
        app.setdefault(JSON_ERROR_PREFIXES, []).append(prefix.rstrip("/"))
        add_routes(app, self.access, service=self.tokens, token_path=None, admin_prefix=prefix,
                   operator_key=operator_key(self.config.operator_key), job_completed=self.sandbox_job_completed,
                   client_ip=self.client_ip)

    def sandbox_job_completed(self, job_id: str, org_id: str) -> bool:
        """Whether `job_id` is a completed sandbox export of `org_id` (production onboarding).

        Called from the admin API's worker threads (each has its own connection)."""
        return self.db.run(JobDB.completed_in, job_id, org_id, "sandbox")

    async def audit(self, who: Principal, action: str, request: web.Request, /, **detail) -> None:
        """One audit entry for a request made with a verified token (off the loop).

        An entry that cannot be written now (a full disk, a locked database) is kept in
        memory, retried before the next entry and by the janitor, and written to the
        log at ERROR if the server stops before it could be stored: the action it
        records has already happened (a file served), so it must not fail with it."""
        entry = (who, action, self.client_ip(request), self.clock(), {"path": request.path, **detail})
        if len(self.pending_audit) >= MAX_PENDING_AUDIT:  # memory is finite too: the log keeps it
            self._log_unstored(entry)
        else:
            self.pending_audit.append(entry)
        await self.flush_audit()

    async def flush_audit(self) -> int:
        """Write the buffered audit entries in order; returns how many are still pending."""
        async with self._audit_lock:  # one writer, so no entry is written twice
            while self.pending_audit:
                who, action, ip, at, detail = self.pending_audit[0]
                try:
                    await asyncio.to_thread(self.tokens.audit_request, who, action, ip, at, **detail)
                except (OSError, sqlite3.Error, StoreError) as e:  # StoreError: PostgreSQL unreachable
                    log.warning("audit log not writable (%s): %d entries kept in memory, retried later",
                                e, len(self.pending_audit))
                    break
                self.pending_audit.popleft()
            return len(self.pending_audit)

    @staticmethod
    def _log_unstored(entry: tuple[Principal, str, str | None, float, dict]) -> None:
        who, action, ip, at, detail = entry
        log.error("audit entry not stored: %s %s by %s (org %s) from %s at %.3f %s", action,
                  detail.get("outcome", "ok"), who.client_id, who.org_id, ip, at, detail)

    # --- flavours ---------------------------------------------------------------------------

    def serve_as(self, flavour: str, *routes: web.AbstractRoute) -> None:
        """Mark `routes` as serving `flavour` (what `flavour(request)` answers for them)."""
        for route in routes:
            self._flavours[route.resource] = flavour

    def flavour(self, request: web.Request) -> str:
        """The API flavour of the request's route ("v2" or "v3")."""
        return self._flavours.get(request.match_info.route.resource, "v2")

    @staticmethod
    def route_name(name: str, flavour: str) -> str:
        """Route names per flavour: v2 keeps the plain names, others get a suffix."""
        return name if flavour == "v2" else f"{name}-{flavour}"

    # --- URLs -------------------------------------------------------------------------------

    def origin(self, request: web.Request) -> str:
        """Scheme and host clients reach us at (`config.public_url` behind a proxy)."""
        return (self.config.public_url or f"{request.scheme}://{request.host}").rstrip("/")

    def url(self, request: web.Request, name: str, **parts: str) -> str:
        """Absolute URL of the named route of the request's flavour (works when the app is
        mounted as a sub-app)."""
        name = self.route_name(name, self.flavour(request))
        return self.origin(request) + str(request.app.router[name].url_for(**parts))

    def fhir_base(self, request: web.Request) -> str:
        """Absolute FHIR base URL (where `/metadata` is)."""
        return self.url(request, "metadata").removesuffix("/metadata")

    # --- jobs -------------------------------------------------------------------------------

    async def owned_job(self, request: web.Request, who: Principal, action: str) -> Job:
        """The job of the URL if it belongs to the caller's organization (404 / 403 otherwise;
        a 403 is audited: someone holds another organization's job URL)."""
        job_id = request.match_info["job"]
        JOB_ID.set(job_id[:64])  # the rest of this request's log lines name the job
        job = await self.db.call(JobDB.get_job, job_id)
        if job is None or job.status == "cancelled":
            raise RequestError(f"job {job_id[:64]} does not exist (or was deleted)", status=404, param="job")
        if job.org_id != who.org_id:
            await self.audit(who, action, request, outcome="denied", job=job_id, reason="job of another organization")
            raise AuthError(f"job {job_id} belongs to another organization", status=403)
        return job

    async def take_poll(self, job_id: str, now: float, told: float) -> PollTaken:
        """Record a status poll answered with Retry-After `told`, unless the previous one asked
        the client to wait longer (10% slack): then it is refused (`JobDB.take_poll`). Shared
        nodes keep it in the job row, so polling two API nodes in turn is paced as one; a sole
        SQLite node keeps it in memory (no fsync per poll)."""
        if self.sql.engine != "sqlite":
            return await self.db.call(JobDB.take_poll, job_id, now, told)
        last = self._last_poll.get(job_id)
        if last is not None and last[0] <= now and now - last[0] < 0.9 * last[1]:
            return PollTaken(True, *last)
        self._last_poll[job_id] = (now, told)
        return PollTaken(False, *(last or (None, None)))

    def expired(self, job: Job) -> bool:
        """Whether the job's files are gone (or due to go)."""
        return job.status == "expired" or (job.expires is not None and job.expires <= self.clock())


API = web.AppKey("fhirhose_api", ServerState)
