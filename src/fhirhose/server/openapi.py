"""The HTTP API as an OpenAPI 3.1 document, served at `GET {base}/openapi.json` (no token).

Built from the same sources the server runs on: the kick-off routes and the one table of
kick-off parameters (`params.KICKOFF_PARAMS`), and the msgspec Structs every JSON body is
decoded into or encoded from (`models`, the admin API's request bodies), so the document
cannot drift from the code. Integrators get a machine-readable contract; the API fuzz test
(`tests/test_api_fuzz.py`) drives schemathesis from it.

The document is a plain dict (OpenAPI's own nesting), with the Struct schemas from
`msgspec.json.schema_components`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .. import __version__
from . import models as m
from . import web_admin as admin
from .params import KICKOFF_PARAMS
from .web_kickoff import KICKOFF_ROUTES

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{name}"
_OUTCOME = {"application/fhir+json": {"schema": {"$ref": _REF.format(name="OperationOutcome")}}}
_OAUTH = {"application/json": {"schema": {"$ref": _REF.format(name="TokenError")}}}
_RETRY = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds to wait"}}
_PARAM_TYPES = {"boolean": {"type": "string", "enum": ["true", "false"]}}


def _errors(codes: dict[int, str], content=_OUTCOME) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code, text in codes.items():
        out[str(code)] = {"description": text, "content": content}
        if code in (429, 503):
            out[str(code)]["headers"] = _RETRY
    return out


_FHIR_ERRORS = {401: "no, a malformed or an expired bearer token", 403: "not allowed for this organization or scope",
                503: "the server's disk is full: retry after Retry-After"}


def _json(name: str, media: str = "application/json") -> dict[str, Any]:
    return {media: {"schema": {"$ref": _REF.format(name=name)}}}


def _path(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": text, "schema": {"type": "string"}}


def _kickoff(kind: str, path_params: list[dict]) -> dict[str, Any]:
    query = [{"name": p.name, "in": "query", "required": False, "schema": _PARAM_TYPES.get(p.type, {"type": "string"}),
              "description": f"FHIR {p.type}{', comma-separated, may repeat' if p.repeats else ''}"
                             f"{'' if p.supported else ' (refused; dropped under Prefer: handling=lenient)'}"}
             for p in KICKOFF_PARAMS if not p.post_only]
    headers = [
        {"name": "Prefer", "in": "header", "required": True, "schema": {"type": "string", "example": "respond-async"}},
        {"name": "Accept", "in": "header", "required": False,
         "schema": {"type": "string", "example": "application/fhir+json"}},
    ]
    responses = {"202": {"description": "accepted: poll Content-Location", "content": _OUTCOME,
                         "headers": {"Content-Location": {"schema": {"type": "string"}}}},
                 **_errors({400: "a bad parameter or header (the OperationOutcome names it)", **_FHIR_ERRORS,
                            404: "unknown group, missing or stale roster",
                            408: "the body did not arrive in time", 413: "the body is too large",
                            429: "the same export is already running"})}
    summary = f"Kick off a {kind}-level export"
    return {
        "get": {"summary": summary, "operationId": f"{kind}_export_get", "tags": ["Bulk Data"],
                "security": [{"bearer": []}], "parameters": path_params + query + headers, "responses": responses},
        "post": {"summary": summary + " (Parameters body)", "operationId": f"{kind}_export_post", "tags": ["Bulk Data"],
                 "security": [{"bearer": []}], "parameters": path_params + headers,
                 "requestBody": {"required": True, "content": _json("Parameters", "application/fhir+json")},
                 "responses": responses},
    }


def _admin_paths(prefix: str) -> dict[str, Any]:
    errors = _errors({400: "a body that does not match the schema (the message names the field)",
                      401: "no or an unknown admin key", 403: "the key's role does not allow it",
                      404: "unknown organization or credential", 503: "the server's disk is full"}, _OAUTH)
    sec: list[dict[str, list[str]]] = [{"adminKey": []}]
    ok = {"description": "done", "content": {"application/json": {"schema": {}}}}

    def op(summary: str, body: str | None = None, status: str = "200", *, params=(), query=()) -> dict[str, Any]:
        d: dict[str, Any] = {"summary": summary, "tags": ["Admin"], "security": sec,
                             "parameters": [*params, *query], "responses": {status: ok, **errors}}
        if body is not None:
            d["requestBody"] = {"required": False, "content": _json(body)}
        return d

    org = [_path("org", "organization id")]
    cred = [_path("cred", "credential id")]
    limit = [{"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}}]
    return {
        f"{prefix}/orgs": {"post": op("Create an organization", "NewOrg", "201")},
        f"{prefix}/orgs/{{org}}/users": {"post": op("Add a user (answers their admin key)", "NewUser", "201",
                                                    params=org)},
        f"{prefix}/orgs/{{org}}/credentials": {
            "get": op("The organization's credentials", params=org),
            "post": op("Issue a credential (answers the client secret once)", "NewCredential", "201", params=org)},
        f"{prefix}/orgs/{{org}}/attestations": {"post": op("Attest a contract", "Attestation", "201", params=org)},
        f"{prefix}/orgs/{{org}}/production": {"post": op("Request production access", "ProductionRequest",
                                                         params=org)},
        f"{prefix}/orgs/{{org}}/audit": {"get": op("The organization's audit log", params=org, query=limit)},
        f"{prefix}/credentials/{{cred}}/rotate": {"post": op("Rotate the client secret", "Empty", params=cred)},
        f"{prefix}/credentials/{{cred}}/revoke": {"post": op("Revoke a credential", "Revocation", params=cred)},
        f"{prefix}/credentials/{{cred}}/ips": {"put": op("Replace the IP allowlist", "Addresses", params=cred)},
        f"{prefix}/credentials/{{cred}}/keys": {"post": op("Register public keys (a JWKS or one JWK)", "JWKS", "201",
                                                           params=cred)},
        f"{prefix}/credentials/{{cred}}/audit": {"get": op("The credential's audit log", params=cred, query=limit)},
    }


# Operations endpoints of every node (`web_ops`), at the root: no token, for probes and scrapers.
_OPS_PATHS: dict[str, Any] = {
    "/healthz": {"get": {"summary": "Liveness: the process answers", "tags": ["Operations"], "security": [],
                         "responses": {"200": {"description": "alive", "content": {"application/json": {"schema": {}}}}}}},
    "/readyz": {"get": {"summary": "Readiness: the database answers", "tags": ["Operations"], "security": [],
                        "responses": {"200": {"description": "ready", "content": {"application/json": {"schema": {}}}},
                                      "503": {"description": "database unreachable",
                                              "content": {"application/json": {"schema": {}}}}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics of this node and the shared queue", "tags": ["Operations"],
                         "security": [], "responses": {"200": {"description": "Prometheus text format",
                                                               "content": {"text/plain": {"schema": {}}}}}}},
}


def openapi_document(base: str, admin_prefix: str | None, server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 description of this server's routes under FHIR base `base` (and the
    admin API under `admin_prefix` when it is mounted on the same app)."""
    base = base.rstrip("/")
    job = [_path("job", "job id (the status URL's last segment)")]
    paths: dict[str, Any] = {
        f"{base}/metadata": {"get": {
            "summary": "CapabilityStatement", "tags": ["Discovery"], "security": [],
            "responses": {"200": {"description": "the server's capabilities",
                                  "content": _json("CapabilityStatement", "application/fhir+json")}}}},
        f"{base}/.well-known/smart-configuration": {"get": {
            "summary": "SMART Backend Services configuration", "tags": ["Discovery"], "security": [],
            "responses": {"200": {"description": "token endpoint, grants, methods",
                                  "content": _json("SmartConfiguration")}}}},
        f"{base}/openapi.json": {"get": {
            "summary": "This document", "tags": ["Discovery"], "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {}}}}}}},
        f"{base}/auth/token": {"post": {
            "summary": "An access token (OAuth 2.0 client credentials)", "tags": ["Auth"],
            "security": [{"basic": []}, {}],
            "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["grant_type"], "properties": {
                    "grant_type": {"type": "string", "example": "client_credentials"},
                    "scope": {"type": "string", "example": "system/*.read"},
                    "client_assertion_type": {"type": "string"}, "client_assertion": {"type": "string"},
                    "client_id": {"type": "string"}}}}}},
            "responses": {"200": {"description": "a bearer token", "content": _json("TokenResponse")},
                          **_errors({400: "invalid_request, unsupported_grant_type or invalid_scope",
                                     401: "invalid_client", 408: "the body did not arrive in time",
                                     413: "the body is too large",
                                     429: "too many token requests or failed attempts",
                                     503: "the server's disk is full"}, _OAUTH)}}},
        f"{base}/jobs": {"get": {
            "summary": "The organization's jobs", "tags": ["Bulk Data"], "security": [{"bearer": []}],
            "responses": {"200": {"description": "newest first", "content": _json("JobList")},
                          **_errors(_FHIR_ERRORS)}}},
        f"{base}/jobs/{{job}}": {
            "get": {"summary": "Export status or manifest", "tags": ["Bulk Data"], "security": [{"bearer": []}],
                    "parameters": [*job, {"name": "page", "in": "query", "required": False,
                                          "schema": {"type": "string"}, "description": "manifest page (1, 2, ...)"}],
                    "responses": {
                        "200": {"description": "the manifest", "content": _json("Manifest")},
                        "202": {"description": "in progress (X-Progress, Retry-After)",
                                "headers": {"X-Progress": {"schema": {"type": "string"}}, **_RETRY}},
                        **_errors({400: "a bad page", **_FHIR_ERRORS, 404: "unknown or deleted job",
                                   410: "the job's files expired", 429: "polled too often",
                                   500: "the export failed (the OperationOutcome says why)"})}},
            "delete": {"summary": "Cancel and delete a job", "tags": ["Bulk Data"], "security": [{"bearer": []}],
                       "parameters": job,
                       "responses": {"202": {"description": "deleted", "content": _OUTCOME},
                                     **_errors({**_FHIR_ERRORS, 404: "unknown or deleted job"})}}},
        f"{base}/data/{{job}}/{{file}}": {"get": {
            "summary": "One output or error file (NDJSON; gzip/zstd as stored when accepted)",
            "tags": ["Bulk Data"], "security": [{"bearer": []}],
            "parameters": [*job, _path("file", "file name from the manifest"),
                           *({"name": h, "in": "header", "required": False, "schema": {"type": "string"}}
                             for h in ("Accept-Encoding", "Range", "If-None-Match", "If-Range"))],
            "responses": {"200": {"description": "the file", "content": {"application/fhir+ndjson": {"schema": {}}}},
                          "206": {"description": "a byte range"}, "304": {"description": "not modified"},
                          "416": {"description": "range not satisfiable"},
                          **_errors({**_FHIR_ERRORS, 404: "unknown job or file", 410: "expired"})}}},
        f"{base}/attribution_status": {"get": {
            "summary": "Roster and runout load dates (BCDA)", "tags": ["Bulk Data"], "security": [{"bearer": []}],
            "responses": {"200": {"description": "load dates", "content": {"application/json": {"schema": {}}}},
                          **_errors(_FHIR_ERRORS)}}},
    }
    for path, kind, _name in KICKOFF_ROUTES:
        params = [_path("group", "group id (all, runout)")] if "{group}" in path else []
        paths[base + path] = _kickoff(kind, params)
    if admin_prefix is not None:
        paths.update(_admin_paths(admin_prefix.rstrip("/")))
    paths.update(_OPS_PATHS)

    structs = (m.OperationOutcome, m.Parameters, m.Manifest, m.JobList, m.CapabilityStatement,
               m.SmartConfiguration, m.TokenResponse, m.TokenError, admin.NewOrg, admin.NewUser,
               admin.NewCredential, admin.Revocation, admin.Addresses, admin.Attestation,
               admin.ProductionRequest, admin.Empty)
    _, schemas = msgspec.json.schema_components(structs, ref_template=_REF)
    schemas["JWKS"] = {"type": "object", "description": "a JWK Set ({\"keys\": [...]}) or one JWK"}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "fhirhose Bulk Data Access API", "version": __version__,
                 "description": "FHIR Bulk Data Access (v2) for Medicare claims. Errors are FHIR OperationOutcome "
                                "(`application/fhir+json`); the token endpoint and the admin API answer RFC 6749 "
                                "error JSON (`error`, `error_description`)."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "basic": {"type": "http", "scheme": "basic", "description": "client id and client secret"},
            "adminKey": {"type": "http", "scheme": "bearer", "description": "operator key or a user's admin key"}}},
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
