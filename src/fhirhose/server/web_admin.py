"""The access library's admin API over HTTP: organizations, users, credentials,
attestations, production approval and audit reads, under a prefix (default `/admin`).

    add_routes(app, db, job_completed=server_job_completed, operator_key=...)

Requests authenticate with `Authorization: Bearer <user admin key>` (an organization
user; their role decides) or the operator key. Bodies are JSON objects; errors are
OAuth-style JSON (`web_auth.error_response`). Database work runs off the event loop.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from typing import Annotated, Any, Callable

import msgspec
from aiohttp import web

from ..access.actors import ROLES, Actor
from ..access.db import AccessDB
from ..access.tokens import MAX_BODY, TokenService
from ..errors import AuthError, InputError, RequestError
from .web_auth import (
    ClientIP,
    error_response,
    json_response,
    off_loop,
    peer_address,
    token_handler,
)
from .web_errors import classify, read_body

__all__ = ["add_routes"]


class _Admin:
    def __init__(self, db: AccessDB, operator_key: str | None, job_completed: Callable[[str, str], bool] | None,
                 body_timeout: float = 30.0):
        self.db, self.operator_key, self.job_completed = db, operator_key, job_completed
        self.body_timeout = body_timeout

    def actor(self, request: web.Request) -> Actor:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthError("admin requests need Authorization: Bearer <admin key>", status=401, oauth_error="invalid_token")
        if self.operator_key and hmac.compare_digest(key.encode(), self.operator_key.encode()):
            return Actor.system("api")
        return Actor.user(self.db.orgs.authenticate(key).id)

    def route(self, fn, body_type: type | None = None):
        """Wrap `fn(actor, request, body) -> (status, data)`: auth, the JSON body decoded
        strictly into `body_type` (wrong types, unknown fields: 400 naming the field),
        errors, off-loop DB work."""

        async def handle(request: web.Request) -> web.Response:
            try:
                body = None
                if body_type is not None:
                    raw = await read_body(request, MAX_BODY, self.body_timeout)
                    body = _decode(raw or b"{}", body_type)

                def work():
                    return fn(self.actor(request), request, body)

                status, data = await off_loop(work)
            except (AuthError, InputError) as e:
                return error_response(e)
            except Exception as e:  # noqa: BLE001 - same JSON shape for the unexpected (full disk: 503)
                f = classify(e, request)
                return json_response({"error": f.oauth, "error_description": f.text}, f.status, f.headers)
            return json_response({"ok": True} if data is None else data, status)

        return handle

    # -- actions -------------------------------------------------------------------
    def create_org(self, actor, request, b: NewOrg):
        return 201, asdict(self.db.orgs.create(actor, b.id, b.kind, b.name))

    def add_user(self, actor, request, b: NewUser):
        user, key = self.db.orgs.add_user(actor, request.match_info["org"], b.name, b.email, b.role, b.title)
        return 201, {**asdict(user), "admin_key": key}

    def list_creds(self, actor, request, b):
        return 200, [asdict(c) for c in self.db.credentials.list(actor, request.match_info["org"])]

    def issue(self, actor, request, b: NewCredential):
        cred, secret = self.db.credentials.issue(
            actor, request.match_info["org"], env=b.env, label=b.label, secret=b.secret, jwks=b.jwks, ips=b.ips,
        )
        return 201, {**asdict(cred), "client_secret": secret}

    def rotate(self, actor, request, b):
        return 200, {"client_secret": self.db.credentials.rotate(actor, request.match_info["cred"])}

    def revoke(self, actor, request, b: Revocation):
        self.db.credentials.revoke(actor, request.match_info["cred"], reason=b.reason)
        return 200, None

    def set_ips(self, actor, request, b: Addresses):
        return 200, {"ips": self.db.credentials.set_ips(actor, request.match_info["cred"], b.ips)}

    def add_keys(self, actor, request, b: dict):
        jwks = b if "keys" in b else {"keys": [b]}
        return 201, {"registered": self.db.credentials.register_jwks(actor, request.match_info["cred"], jwks)}

    def attest(self, actor, request, b: Attestation):
        org = request.match_info["org"]
        self.db.orgs.attest(actor, org, b.contract)
        return 201, {"attested": self.db.orgs.attested_contracts(org)}

    def production(self, actor, request, b: ProductionRequest):
        if self.job_completed is None:
            raise RequestError("production approval is not available on this server", status=404)
        self.db.orgs.request_production(actor, request.match_info["org"], b.job_id, self.job_completed)
        return 200, None

    def org_audit(self, actor, request, b):
        org = request.match_info["org"]
        self.db.orgs.require(actor, org, ROLES, "audit.read")
        self.db.orgs.get(org)  # an unknown organization is a 404, not an empty list
        return 200, [asdict(r) for r in self.db.audit.for_org(org, _limit(request))]

    def cred_audit(self, actor, request, b):
        cred = self.db.credentials.get(request.match_info["cred"])
        self.db.orgs.require(actor, cred.org_id, ROLES, "audit.read")
        return 200, [asdict(r) for r in self.db.audit.recent(cred.id, _limit(request))]


# Request bodies, decoded strictly: `"secret": "no"` or a dict `label` is a 400 naming the field.
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class Empty(msgspec.Struct, forbid_unknown_fields=True):
    """A body that carries nothing (an empty object, or no body at all)."""


class NewOrg(msgspec.Struct, forbid_unknown_fields=True):
    id: NonEmpty
    kind: NonEmpty
    name: NonEmpty


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    name: NonEmpty
    email: NonEmpty
    role: NonEmpty
    title: str = ""


class NewCredential(msgspec.Struct, forbid_unknown_fields=True):
    env: str = "sandbox"
    label: str = ""
    secret: bool = True  # False: a SMART-only credential (keys, no secret)
    jwks: dict[str, Any] | None = None
    ips: list[str] = []


class Revocation(msgspec.Struct, forbid_unknown_fields=True):
    reason: str = ""


class Addresses(msgspec.Struct, forbid_unknown_fields=True):
    ips: list[str]


class Attestation(msgspec.Struct, forbid_unknown_fields=True):
    contract: str | None = None


class ProductionRequest(msgspec.Struct, forbid_unknown_fields=True):
    job_id: NonEmpty


def _decode(raw: bytes, body_type: type):
    try:
        return msgspec.json.decode(raw, type=body_type, strict=True)
    except msgspec.ValidationError as e:
        raise InputError(f"request body: {e}") from None
    except msgspec.DecodeError:
        raise InputError("request body is not JSON") from None


def _limit(request: web.Request) -> int:
    try:
        return max(1, min(1000, int(request.query.get("limit", "100"))))
    except ValueError:
        raise InputError("limit: not an integer") from None


def add_routes(
    app: web.Application,
    db: AccessDB,
    *,
    service: TokenService | None = None,
    token_path: str | None = "/auth/token",
    admin_prefix: str = "/admin",
    operator_key: str | None = None,
    job_completed: Callable[[str, str], bool] | None = None,
    client_ip: ClientIP = peer_address,
) -> TokenService:
    """Mount the token endpoint (unless `token_path` is None) and the admin API on
    `app`; returns the TokenService used."""
    svc = service or TokenService(db)
    if token_path is not None:
        app.router.add_post(token_path, token_handler(svc, client_ip=client_ip))
    a = _Admin(db, operator_key, job_completed)
    p = admin_prefix.rstrip("/")
    app.router.add_post(f"{p}/orgs", a.route(a.create_org, NewOrg))
    app.router.add_post(f"{p}/orgs/{{org}}/users", a.route(a.add_user, NewUser))
    app.router.add_get(f"{p}/orgs/{{org}}/credentials", a.route(a.list_creds))
    app.router.add_post(f"{p}/orgs/{{org}}/credentials", a.route(a.issue, NewCredential))
    app.router.add_post(f"{p}/orgs/{{org}}/attestations", a.route(a.attest, Attestation))
    app.router.add_post(f"{p}/orgs/{{org}}/production", a.route(a.production, ProductionRequest))
    app.router.add_get(f"{p}/orgs/{{org}}/audit", a.route(a.org_audit))
    app.router.add_post(f"{p}/credentials/{{cred}}/rotate", a.route(a.rotate, Empty))
    app.router.add_post(f"{p}/credentials/{{cred}}/revoke", a.route(a.revoke, Revocation))
    app.router.add_put(f"{p}/credentials/{{cred}}/ips", a.route(a.set_ips, Addresses))
    app.router.add_post(f"{p}/credentials/{{cred}}/keys", a.route(a.add_keys, dict))
    app.router.add_get(f"{p}/credentials/{{cred}}/audit", a.route(a.cred_audit))
    return svc
