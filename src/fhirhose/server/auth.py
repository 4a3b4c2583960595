"""Authentication behind one interface: request → `ClientIdentity`.

`Authenticator` is what the routes use; `TokenAuthenticator` is the simple built-in one:
`POST {base}/auth/token` with `grant_type=client_credentials` and HTTP Basic
client_id/secret (secrets registered only as scrypt hashes) issues short-lived
HMAC-SHA256-signed JWT bearer tokens. A SMART Backend Services implementation
(private_key_jwt client assertions) can replace it without touching the routes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

import msgspec
from aiohttp import web

from ..errors import AuthError
from .models import ClientRecord, ClientsFile, SmartConfiguration, TokenError, TokenResponse, encode

__all__ = [
    "ClientIdentity",
    "Authenticator",
    "TokenAuthenticator",
    "hash_secret",
    "verify_secret",
    "scopes_cover",
    "load_clients",
]

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


@dataclass(frozen=True)
class ClientIdentity:
    """Who is calling: the organization owns jobs, the scopes bound what it may export."""

    client_id: str
    org_id: str
    kind: str  # aco | pdp | system
    scopes: frozenset[str] = field(default_factory=frozenset)

    def may_export(self, rtype: str) -> bool:
        return scopes_cover(self.scopes, rtype)


def scopes_cover(scopes: Iterable[str], rtype: str) -> bool:
    """SMART v1 (`system/X.read`) or v2 (`system/X.rs`) scope, or the `*` wildcard, for a type."""
    for s in scopes:
        ctx, _, rest = s.partition("/")
        what, _, perm = rest.partition(".")
        if ctx == "system" and what in ("*", rtype) and (perm in ("read", "*") or "r" in perm and "s" in perm):
            return True
    return False


class Authenticator(Protocol):
    """Pluggable authentication for the Bulk Data routes."""

    async def authenticate(self, request: web.Request) -> ClientIdentity:
        """The caller's identity; raises `AuthError` (status 401) when it cannot be established."""
        ...

    def setup(self, app: web.Application, base: str) -> None:
        """Add the authenticator's own routes (e.g. the token endpoint) under `base`."""
        ...

    def smart_configuration(self, base_url: str) -> SmartConfiguration:
        """The `.well-known/smart-configuration` document for a FHIR base URL."""
        ...


def hash_secret(secret: str) -> str:
    """scrypt hash in a self-describing string: `scrypt$N$r$p$salt$hash` (base64)."""
    salt = secrets.token_bytes(16)
    h = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return "$".join(["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(h)])


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of a secret against `hash_secret` output."""
    try:
        algo, n, r, p, salt, want = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(
            secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(_unb64(want))
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(want))


def load_clients(path: Path) -> dict[str, ClientRecord]:
    """Client registrations from a clients JSON file (`ClientsFile`), by client_id."""
    try:
        doc = msgspec.json.decode(Path(path).read_bytes(), type=ClientsFile)
    except (OSError, msgspec.DecodeError) as e:
        raise AuthError(f"{path}: cannot load client registrations: {e}", status=500) from None
    return {c.client_id: c for c in doc.clients}


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class _Claims(msgspec.Struct):
    iss: str
    sub: str
    org: str
    kind: str
    scope: str
    iat: int
    exp: int
    jti: str


_claims_decoder = msgspec.json.Decoder(_Claims)
_JWT_HEADER = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())


class TokenAuthenticator:
    """client_credentials + HTTP Basic → HMAC-signed JWT bearer tokens (see module doc)."""

    issuer = "fhirhose"

    def __init__(
        self,
        clients: dict[str, ClientRecord],
        key: bytes,
        *,
        token_ttl: int = 1200,
        clock: Callable[[], float] = time.time,
    ):
        self.clients = clients
        self.key = key
        self.token_ttl = token_ttl
        self.clock = clock

    # --- tokens -----------------------------------------------------------------------------

    def issue(self, client: ClientRecord, scopes: list[str]) -> str:
        now = int(self.clock())
        claims = _Claims(
            iss=self.issuer, sub=client.client_id, org=client.organization, kind=client.kind,
            scope=" ".join(scopes), iat=now, exp=now + self.token_ttl, jti=secrets.token_urlsafe(12),
        )
        signing_input = f"{_JWT_HEADER}.{_b64(msgspec.json.encode(claims))}"
        return f"{signing_input}.{_b64(self._sign(signing_input))}"

    def _sign(self, signing_input: str) -> bytes:
        return hmac.new(self.key, signing_input.encode(), hashlib.sha256).digest()

    def verify(self, token: str) -> ClientIdentity:
        """Identity from a bearer token; AuthError 401 when forged, malformed, expired or revoked."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _JWT_HEADER:
            raise AuthError("the bearer token is not one this server issued", oauth_error="invalid_token")
        try:
            sig = _unb64(parts[2])
            claims = _claims_decoder.decode(_unb64(parts[1]))
        except (ValueError, msgspec.DecodeError):
            raise AuthError("the bearer token is malformed", oauth_error="invalid_token") from None
        if not hmac.compare_digest(sig, self._sign(f"{parts[0]}.{parts[1]}")):
            raise AuthError("the bearer token signature does not verify", oauth_error="invalid_token")
        if claims.exp <= self.clock():
            raise AuthError("the bearer token has expired", oauth_error="invalid_token")
        client = self.clients.get(claims.sub)
        if client is None or client.disabled:
            raise AuthError(f"client {claims.sub!r} is not (or no longer) registered", oauth_error="invalid_token")
        return ClientIdentity(claims.sub, claims.org, claims.kind, frozenset(claims.scope.split()))

    # --- Authenticator ----------------------------------------------------------------------

    async def authenticate(self, request: web.Request) -> ClientIdentity:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("an Authorization: Bearer token is required", oauth_error="invalid_request")
        return self.verify(token.strip())

    def setup(self, app: web.Application, base: str) -> None:
        app.router.add_post(f"{base}/auth/token", self.token_endpoint, name="token")

    def smart_configuration(self, base_url: str) -> SmartConfiguration:
        return SmartConfiguration(
            issuer=base_url,
            token_endpoint=f"{base_url}/auth/token",
            grant_types_supported=["client_credentials"],
            token_endpoint_auth_methods_supported=["client_secret_basic", "private_key_jwt"],
            token_endpoint_auth_signing_alg_values_supported=["RS384", "ES384"],
            scopes_supported=[
                "system/*.read", "system/*.rs",
                "system/Patient.read", "system/Coverage.read", "system/ExplanationOfBenefit.read",
                "system/Patient.rs", "system/Coverage.rs", "system/ExplanationOfBenefit.rs",
            ],
            capabilities=["client-confidential-symmetric", "client-confidential-asymmetric", "permission-v1",
                          "permission-v2"],
        )

    async def token_endpoint(self, request: web.Request) -> web.Response:
        """RFC 6749 §4.4 client credentials grant with client_secret_basic."""
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return _token_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        client = await self._basic_client(request)
        if client is None:
            return _token_error(401, "invalid_client", "client authentication failed (HTTP Basic client_id:secret)")
        asked = str(form.get("scope") or "").split()
        granted = asked or client.scopes
        outside = [s for s in granted if s not in client.scopes]
        if outside:
            return _token_error(400, "invalid_scope", f"scope not granted to this client: {' '.join(outside)}")
        body = TokenResponse(access_token=self.issue(client, granted), expires_in=self.token_ttl,
                             scope=" ".join(granted))
        return web.Response(body=encode(body), content_type="application/json",
                            headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def _basic_client(self, request: web.Request) -> ClientRecord | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        client = self.clients.get(client_id)
        if client is None or client.disabled or not client.secret_hash:
            return None
        # scrypt is deliberately slow: keep it off the event loop.
        ok = await asyncio.to_thread(verify_secret, secret, client.secret_hash)
        return client if ok else None


def _token_error(status: int, error: str, description: str) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="fhirhose"'
    return web.Response(status=status, body=encode(TokenError(error, description)),
                        content_type="application/json", headers=headers)
