"""Access control and CMS data-sharing rules (BCDA, AB2D, DPC styles) as a library.

The server calls, per request:

- token endpoint: `TokenService(db).issue(TokenRequest.parse(body, content_type, authorization), ip,
  token_url=...)`; public keys registered by URL come through `jwks.JwksFetcher`
- every API and file request: `TokenService(db).verify_access_token(token, ip, types=...)` → `Principal`
  (`http.AccessAuthenticator` does both for an aiohttp app)
- job planning: `plan_scope(db, tables, principal, group, since)` → `Scope`; export with
  `ScopedExporter(tables, scope, sources)`, or `scope.export_chunk(exporter, ...)` with a
  shared plain Exporter; `scope.to_bytes()` / `Scope.from_bytes` persist it (jobs, chunk
  tasks); `scope.rules` for the manifest
- `GET /attribution_status`: `attribution_status(db, tables, principal.org_id)`

Administration (`db.orgs`, `db.credentials`) takes an `Actor`; `fhirhose admin` drives it.
"""

from .config import ALL_TYPES, KINDS, AccessConfig, KindRules
from .credentials import Credential, Credentials
from .db import AccessDB, Actor, AuditEntry
from .orgs import ATTESTOR, DATA_OPS, READ_ONLY, Org, Orgs, PermissionDenied, User
from .rules import EnrollmentFilter, Scope, ScopedExporter, attribution_status, plan_scope
from .tokens import ASSERTION_TYPE, Principal, TokenError, TokenRequest, TokenResponse, TokenService

__all__ = [
    "AccessConfig",
    "KindRules",
    "KINDS",
    "ALL_TYPES",
    "AccessDB",
    "Actor",
    "AuditEntry",
    "Org",
    "User",
    "Orgs",
    "ATTESTOR",
    "DATA_OPS",
    "READ_ONLY",
    "PermissionDenied",
    "Credential",
    "Credentials",
    "ASSERTION_TYPE",
    "TokenError",
    "TokenRequest",
    "TokenResponse",
    "TokenService",
    "Principal",
    "Scope",
    "EnrollmentFilter",
    "ScopedExporter",
    "plan_scope",
    "attribution_status",
]
