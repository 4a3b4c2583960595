"""The Bulk Data Access API as an aiohttp application (mountable as a sub-app).

Routes under each FHIR base: `/api/v2` (today's behaviour) and `/api/v3` (BCDA v3:
shared-system claims, `_typeFilter` with `_tag` System-Type and `outcome`), one app, one
store, one job database (`ServerConfig.base`, `ServerConfig.v3_base`):

| route | answers |
|---|---|
| `GET /metadata` | 200 CapabilityStatement |
| `GET /.well-known/smart-configuration` | 200 |
| `GET /openapi.json` | 200 this table as an OpenAPI 3.1 document (`server.openapi`) |
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

This module is the app factory (routes, middleware, startup/cleanup); the handlers live
by resource in `web_discovery`, `web_auth`, `web_kickoff`, `web_status`, `web_jobs`,
`web_files` and `web_admin`, sharing one `state.ServerState` (`app[API]`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from ..access import AccessConfig, AccessDB
from ..console import mount as mount_console
from ..log import get_logger
from . import web_discovery, web_files, web_jobs, web_kickoff, web_ops, web_status
from .config import ServerConfig
from .console_backend import console_backend
from .population import Population
from .state import API, ServerState
from .web_errors import errors_middleware
from .web_status import RULES_EXT

__all__ = ["create_app", "create_admin_app", "API", "RULES_EXT"]

log = get_logger(__name__)


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
    app = web.Application(middlewares=[web_ops.metrics_middleware, errors_middleware])
    st = ServerState(config, access, population, clock)
    app[API] = st
    web_ops.add_routes(app, st)
    r = app.router
    for flavour, base in st.bases.items():
        # Every flavour gets the whole API under its base; handlers ask `st.flavour(request)`.
        def name(n: str, flavour: str = flavour) -> str:
            return st.route_name(n, flavour)

        routes = [
            r.add_get(f"{base}/metadata", web_discovery.metadata, name=name("metadata")),
            r.add_get(f"{base}/.well-known/smart-configuration", web_discovery.smart_config),
            r.add_get(f"{base}/openapi.json", web_discovery.openapi, name=name("openapi")),
        ]
        for path, kind, route in web_kickoff.KICKOFF_ROUTES:
            handler = web_kickoff.kickoff_handler(kind)
            routes += [r.add_get(base + path, handler, name=name(route)), r.add_post(base + path, handler)]
        routes += [
            r.add_get(f"{base}/jobs", web_jobs.list_jobs, name=name("jobs")),
            r.add_get(f"{base}/jobs/{{job}}", web_status.status, name=name("job")),
            r.add_delete(f"{base}/jobs/{{job}}", web_jobs.delete),
            r.add_get(f"{base}/data/{{job}}/{{file}}", web_files.download, name=name("data")),  # GET answers HEAD
            r.add_get(f"{base}/attribution_status", web_jobs.attribution),
            st.auth.setup(app, base, token_url=lambda request: st.fhir_base(request) + "/auth/token",
                          body_timeout=config.body_timeout, name=name("token")),
        ]
        st.serve_as(flavour, *routes)
    if config.admin_prefix is not None:
        st.mount_admin(app, config.admin_prefix)
    mount_console(app, console_backend(app, st))  # the web console at /console/ (issue 15)
    app.on_startup.append(st.start)
    app.on_cleanup.append(st.stop)
    return app


def create_admin_app(app: web.Application, prefix: str = "/admin") -> web.Application:
    """The admin API of a Bulk Data app as an application of its own (to serve on another
    port, e.g. bound to an internal interface); same database, operator key and audit log."""
    admin = web.Application(middlewares=[errors_middleware])
    app[API].mount_admin(admin, prefix)
    return admin
