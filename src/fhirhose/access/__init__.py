"""Access control and CMS data-sharing rules (BCDA, AB2D, DPC styles) as a library.

The server calls, per request:

- token endpoint: `TokenService(db).issue(TokenRequest.parse(body, content_type, authorization), ip,
  token_url=...)`; keys registered by URL come through the `jwks_fetcher` the server sets
- every API and file request: `TokenService(db).verify_access_token(token, ip, types=...)` → `Principal`
  (`fhirhose.server.web_auth.AccessAuthenticator` does both for an aiohttp app)
- job planning: `plan_scope(db, tables, principal, group, since)` → `Scope`; export with
  `ScopedExporter(tables, scope, sources)`, or `scope.export_chunk(exporter, ...)` with a
  shared plain Exporter; `scope.to_bytes()` / `Scope.from_bytes` persist it (jobs, chunk
  tasks); `scope.rules` for the manifest
- `GET /attribution_status`: `attribution_status(db, tables, principal.org_id)`

Administration (`db.orgs`, `db.credentials`) takes an `Actor`; `fhirhose admin` drives it.
Names are imported on first use (`fhirhose._lazy`): an export worker needs `Scope`, not the
token service and its cryptography bindings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .actors import ATTESTOR, DATA_OPS, READ_ONLY, Actor, PermissionDenied
    from .config import ALL_TYPES, KINDS, AccessConfig, KindRules
    from .credentials import Credential, Credentials
    from .db import AccessDB, AuditEntry
    from .orgs import Org, Orgs, User
    from .rules import EnrollmentFilter, Scope, ScopedExporter, attribution_status, plan_scope
    from .tokens import ASSERTION_TYPE, Principal, TokenError, TokenRequest, TokenResponse, TokenService

_HOMES = {
    "AccessConfig": ".config",
    "KindRules": ".config",
    "KINDS": ".config",
    "ALL_TYPES": ".config",
    "AccessDB": ".db",
    "Actor": ".actors",
    "AuditEntry": ".db",
    "Org": ".orgs",
    "User": ".orgs",
    "Orgs": ".orgs",
    "ATTESTOR": ".actors",
    "DATA_OPS": ".actors",
    "READ_ONLY": ".actors",
    "PermissionDenied": ".actors",
    "Credential": ".credentials",
    "Credentials": ".credentials",
    "ASSERTION_TYPE": ".tokens",
    "TokenError": ".tokens",
    "TokenRequest": ".tokens",
    "TokenResponse": ".tokens",
    "TokenService": ".tokens",
    "Principal": ".tokens",
    "Scope": ".rules",
    "EnrollmentFilter": ".rules",
    "ScopedExporter": ".rules",
    "plan_scope": ".rules",
    "attribution_status": ".rules",
}

__all__ = list(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
