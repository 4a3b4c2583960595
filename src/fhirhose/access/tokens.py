"""Token endpoint and access-token checks.

Clients authenticate with `grant_type=client_credentials` and either HTTP
Basic (client id + secret, as BCDA and AB2D) or a signed JWT client assertion
(SMART Backend Services: RS384/ES384, iss = sub = client id, aud = token URL,
exp at most 5 minutes ahead, `jti` used once, `kid` picks the key). Access
tokens are short-lived JWTs signed by the server (HS256, or ES256).

`TokenService.verify_access_token` re-reads the credential and organization on
every call: a revoke, rotation, key removal, IP change or suspension stops
tokens already handed out.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import parse_qsl, unquote_plus

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from ..errors import AuthError, InputError
from . import jws
from .actors import now_s
from .credentials import Credential, public_key_from_jwk
from .throttle import TOKEN_CLIENT, TOKEN_IP, TOKEN_PAIR, Throttle

if TYPE_CHECKING:
    from .db import AccessDB

__all__ = [
    "ASSERTION_TYPE",
    "TokenError",
    "TokenRequest",
    "TokenResponse",
    "Principal",
    "TokenService",
    "parse_scopes",
    "MAX_BODY",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_SCOPE = re.compile(r"^system/(\*|[A-Z][A-Za-z]{0,63})\.(read|rs)$")
MAX_BODY = 65536  # bytes of a request body the access endpoints read (token and admin requests)
_MAX_FIELD = 16384
_STATUS = {"invalid_client": 401, "invalid_token": 401}


class TokenError(AuthError):
    """An OAuth 2.0 error (RFC 6749 §5.2): `oauth_error` is the code, `status` the HTTP status.

    invalid_client → 401; invalid_request, invalid_grant, invalid_scope,
    unsupported_grant_type → 400; too many requests → 429 with `retry_after`."""

    def __init__(self, error: str, description: str, *, status: int | None = None, retry_after: int | None = None):
        super().__init__(description, status=status or _STATUS.get(error, 400), oauth_error=error)
        self.retry_after = retry_after
        self.credential: Credential | None = None  # the credential a refusal concerns, when known

    def body(self) -> dict:
        """The JSON error response."""
        return {"error": self.oauth_error, "error_description": str(self)}

    def headers(self) -> dict:
        h = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if self.status == 401:
            h["WWW-Authenticate"] = 'Basic realm="fhirhose"'
        if self.retry_after is not None:
            h["Retry-After"] = str(self.retry_after)
        return h


def _fail(error: str, description: str, **kw) -> TokenError:
    return TokenError(error, description, **kw)


@dataclass(frozen=True)
class TokenRequest:
    """A parsed token request (form body + Authorization header)."""

    grant_type: str | None
    scope: str | None = None
    basic_id: str | None = None
    basic_secret: str | None = None
    assertion_type: str | None = None
    assertion: str | None = None
    client_id: str | None = None

    @classmethod
    def parse(cls, body: bytes | str, content_type: str | None, authorization: str | None) -> TokenRequest:
        """Parse strictly; anything malformed is a TokenError (invalid_request / invalid_client)."""
        mime = (content_type or "").split(";", 1)[0].strip().lower()
        if mime != "application/x-www-form-urlencoded":
            raise _fail("invalid_request", "token requests are application/x-www-form-urlencoded")
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        if len(body) > MAX_BODY:
            raise _fail("invalid_request", "request body is too large")
        try:
            pairs = parse_qsl(
                body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body),
                encoding="utf-8", errors="strict", max_num_fields=32,
            )
        except ValueError:
            raise _fail("invalid_request", "request body is not form-encoded") from None
        form: dict[str, str] = {}
        for k, v in pairs:
            if k in form:
                raise _fail("invalid_request", f"parameter {k!r} appears more than once")
            if len(v) > _MAX_FIELD:
                raise _fail("invalid_request", f"parameter {k!r} is too long")
            form[k] = v
        if "client_secret" in form:
            raise _fail("invalid_request", "send the client secret with HTTP Basic, not in the body")
        basic_id = basic_secret = None
        if authorization is not None:
            basic_id, basic_secret = _parse_basic(authorization)
        return cls(
            grant_type=form.get("grant_type"),
            scope=form.get("scope"),
            basic_id=basic_id,
            basic_secret=basic_secret,
            assertion_type=form.get("client_assertion_type"),
            assertion=form.get("client_assertion"),
            client_id=form.get("client_id"),
        )


def _parse_basic(header: str) -> tuple[str, str]:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise _fail("invalid_client", "the Authorization header must be HTTP Basic")
    try:
        raw = base64.b64decode(value.strip().encode("ascii"), validate=True).decode("utf-8")
        user, sep, password = raw.partition(":")
        # RFC 6749 §2.3.1: both parts are form-encoded before base64.
        user, password = unquote_plus(user, errors="strict"), unquote_plus(password, errors="strict")
    except (ValueError, binascii.Error, UnicodeError):
        raise _fail("invalid_client", "the Basic credentials are not base64 of UTF-8 text") from None
    if not sep or not user:
        raise _fail("invalid_client", "the Basic credentials are not client_id:client_secret")
    return user, password


def parse_scopes(text: str | None, allowed_types: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(granted scopes, resource types they cover); invalid_scope when one is unknown."""
    allowed = tuple(allowed_types)
    scopes = tuple(dict.fromkeys((text or "system/*.read").split()))
    types: list[str] = []
    for s in scopes:
        m = _SCOPE.match(s)
        if not m or (m.group(1) != "*" and m.group(1) not in allowed):
            raise _fail("invalid_scope", f"scope {s[:80]!r} is not offered; use system/*.read or system/<{'|'.join(allowed)}>.read")
        types.extend(allowed if m.group(1) == "*" else [m.group(1)])
    return scopes, tuple(t for t in allowed if t in types)


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    expires_in: int
    scope: str
    token_type: str = "bearer"

    def to_dict(self) -> dict:
        return {"access_token": self.access_token, "token_type": self.token_type, "expires_in": self.expires_in, "scope": self.scope}


@dataclass(frozen=True)
class Principal:
    """Who a verified access token speaks for."""

    org_id: str
    org_kind: str
    client_id: str
    credential_id: str
    scopes: tuple[str, ...]
    types: tuple[str, ...]  # resource types the scopes and the organization kind allow
    env: str  # sandbox | production
    token_id: str
    expires_at: float

    def allows(self, rtype: str) -> bool:
        return rtype in self.types

    def require_types(self, types: Iterable[str]) -> None:
        """403 unless every resource type in `types` is allowed."""
        missing = [t for t in types if t not in self.types]
        if missing:
            raise AuthError(
                f"token does not grant {', '.join(missing)} (granted: {', '.join(self.types) or 'none'})", status=403
            )


def _is_num(v: object) -> TypeGuard[int | float]:
    """A JSON number usable as a NumericDate (finite, within ±2^53)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return abs(v) < 2**53 if isinstance(v, int) else math.isfinite(v) and abs(v) < 2**53


def _ident(v: object, limit: int = 256) -> TypeGuard[str]:
    """A client id, kid or jti: printable ASCII of bounded length (safe to look up and store)."""
    return isinstance(v, str) and 0 < len(v) <= limit and v.isascii() and v.isprintable()


def _denied(message: str, status: int = 401) -> AuthError:
    return AuthError(message, status=status, oauth_error="invalid_token" if status == 401 else "insufficient_scope")


class TokenService:
    """Issues and verifies tokens over an AccessDB.

    `jwks_fetcher(url) -> dict` (optional) resolves keys of credentials that
    registered a JWKS URL instead of inline keys."""

    def __init__(self, db: AccessDB, *, jwks_fetcher: Callable[[str], Mapping] | None = None):
        self.db = db
        self.cfg = db.config
        self.jwks_fetcher = jwks_fetcher
        self._sign_key: bytes | PrivateKeyTypes  # HS256: the shared secret; ES256: a key pair
        self._verify_key: bytes | PublicKeyTypes
        self.throttle = Throttle(db)
        if self.cfg.token_alg == "HS256":
            self._sign_key = self._verify_key = db.meta_secret("token_hmac_key")
        elif self.cfg.token_alg == "ES256":
            pem = db.meta_value(
                "token_es256_key",
                lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ),
            )
            key = serialization.load_pem_private_key(pem, None)
            self._sign_key, self._verify_key = key, key.public_key()
        else:
            raise InputError(f"token_alg {self.cfg.token_alg!r}: HS256 or ES256")

    # -- token endpoint ---------------------------------------------------------------
    def issue(
        self, req: TokenRequest, ip: str | None, now: float | None = None, *, token_url: str | None = None
    ) -> TokenResponse:
        """Authenticate the client and mint an access token (TokenError on any failure).

        `token_url` is the audience client assertions must name (default
        `AccessConfig.token_url`); a server passes the URL it was reached at."""
        t = now_s(now)
        cred = None
        try:
            if req.grant_type is None:
                raise _fail("invalid_request", "grant_type is required")
            if req.grant_type != "client_credentials":
                raise _fail("unsupported_grant_type", f"grant_type {req.grant_type[:60]!r}: only client_credentials")
            if req.basic_id is not None and (req.assertion is not None or req.assertion_type is not None):
                raise _fail("invalid_request", "use one client authentication method, not both")
            if req.basic_id is None and req.assertion is None and req.assertion_type is None:
                raise _fail("invalid_client", "client authentication is required (HTTP Basic or a client assertion)")
            cred, method, ttl, extra = self._authenticate(req, ip, t, token_url or self.cfg.token_url)
            reason = self.db.credentials.refusal(cred, t, secret=method == "secret")
            if reason:
                raise _fail("invalid_client", reason)
            kind = self.db.orgs.get(cred.org_id).kind
            scopes, types = parse_scopes(req.scope, self.cfg.rules(kind).types)
            self._take_rate_token(cred.org_id, t)
            jti = secrets.token_urlsafe(16)
            claims: dict[str, Any] = {  # a JSON object
                "iss": self.cfg.issuer, "sub": cred.client_id, "org": cred.org_id, "cid": cred.id,
                "env": cred.env, "scope": " ".join(scopes), "amr": method,
                "iat": int(t), "exp": int(t) + ttl, "jti": jti, **extra,
            }
            token = jws.sign(self.cfg.token_alg, self._sign_key, {"typ": "JWT"}, claims)
        except TokenError as e:
            self._audit_token(cred or e.credential, ip, t, "denied", error=e.oauth_error, reason=str(e))
            raise
        self._audit_token(cred, ip, t, "ok", jti=jti, method=method, scope=claims["scope"])
        return TokenResponse(token, ttl, claims["scope"])

    def _authenticate(self, req: TokenRequest, ip: str | None, t: float, token_url: str) -> tuple[Credential, str, int, dict]:
        """The client's credential, method, token lifetime and extra claims; failed attempts
        are throttled per address, per client and per (client, address) (`throttle`)."""
        claimed = req.basic_id if req.basic_id is not None else _claimed_issuer(req.assertion)
        known = self.db.credentials.by_client_id(claimed) if claimed is not None and _ident(claimed) else None
        rules = {f"token:ip:{ip}": TOKEN_IP}
        gate = list(rules)
        if known is not None:
            rules[f"token:pair:{known.client_id}@{ip}"] = TOKEN_PAIR
            rules[f"token:client:{known.client_id}"] = TOKEN_CLIENT
            gate.append(f"token:pair:{known.client_id}@{ip}")
            # The client-wide lock does not stop the client at an address it used before:
            # an attacker elsewhere must not be able to lock a real client out.
            if not self.throttle.known(known.client_id, ip, t):
                gate.append(f"token:client:{known.client_id}")
        if not self.cfg.throttle_failures:
            rules, gate = {}, []
        wait = self.throttle.wait(gate, t)
        if wait:
            raise _fail("temporarily_unavailable", f"too many failed attempts; retry in {wait} s",
                        status=429, retry_after=wait)
        out: tuple[Credential, str, int, dict]
        try:
            if req.basic_id is not None:
                cred = self._basic(req, ip, t)
                out = cred, "secret", self.cfg.basic_token_seconds, {"sat": cred.secret_at}
            else:
                cred, kid = self._assertion(req, ip, t, token_url)
                out = cred, "jwt", self.cfg.smart_token_seconds, {"kid": kid}
        except TokenError as e:
            if e.oauth_error == "invalid_client":
                self.throttle.failed(rules, t)
            raise
        if rules:
            self.throttle.succeeded(rules)
            self.throttle.remember(cred.client_id, ip, t)
        return out

    def _refuse_address(self, cred: Credential, ip: str | None) -> None:
        """The IP allowlist, checked before any secret or signature: a caller outside it
        learns nothing about whether its secret was right (and costs no scrypt)."""
        if not self.db.credentials.ip_allowed(cred, ip):
            e = _fail("invalid_client", f"requests from {ip} are not allowed for this credential")
            e.credential = cred  # the refusal is audited against the credential it was for
            raise e

    def _audit_token(self, cred: Credential | None, ip, t, outcome, **detail) -> None:
        with self.db.tx():
            self.db.audit.record(
                "token.issue",
                actor=f"client:{cred.client_id}" if cred else "client:?",
                org_id=cred.org_id if cred else None,
                credential_id=cred.id if cred else None,
                outcome=outcome, ip=ip, now=t, **detail,
            )

    def _basic(self, req: TokenRequest, ip: str | None, t: float) -> Credential:
        cred = self.db.credentials.by_client_id(req.basic_id) if _ident(req.basic_id) else None
        if cred is not None:
            self._refuse_address(cred, ip)
        if cred is None or not self.db.credentials.verify_secret(cred, req.basic_secret or ""):
            if cred is None:
                self.db.credentials.verify_secret(_NO_CRED, req.basic_secret or "")
            raise _fail("invalid_client", "client id or secret is not valid")
        return cred

    def _assertion(self, req: TokenRequest, ip: str | None, t: float, token_url: str) -> tuple[Credential, str]:
        if req.assertion_type != ASSERTION_TYPE:
            raise _fail("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        if not req.assertion:
            raise _fail("invalid_request", "client_assertion is required")
        try:
            header, claims, signing_input, signature = jws.parse(req.assertion)
        except jws.JWSError as e:
            raise _fail("invalid_client", f"client assertion is malformed: {e}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.cfg.assertion_algs:
            raise _fail("invalid_client", f"client assertion alg {str(alg)[:20]!r}: only {', '.join(self.cfg.assertion_algs)}")
        if not _ident(kid, 128):
            raise _fail("invalid_client", "client assertion header needs a kid (printable, 1-128 characters)")
        if header.get("typ") not in (None, "JWT") or "crit" in header:
            raise _fail("invalid_client", "client assertion header has an unsupported typ or crit")
        iss, sub = claims.get("iss"), claims.get("sub")
        if not _ident(iss) or iss != sub:
            raise _fail("invalid_client", "client assertion iss and sub must both be the client id")
        if req.client_id is not None and req.client_id != iss:
            raise _fail("invalid_client", "client_id does not match the assertion issuer")
        cred = self.db.credentials.by_client_id(iss)
        if cred is None:
            raise _fail("invalid_client", "client assertion issuer is not a registered client")
        self._refuse_address(cred, ip)
        key_alg, key = self._key(cred, kid)
        if key is None:
            raise _fail("invalid_client", f"no registered key with kid {kid[:60]!r}")
        if key_alg != alg:
            raise _fail("invalid_client", f"key {kid[:60]!r} is registered for {key_alg}, assertion says {alg}")
        if not jws.verify(alg, key, signing_input, signature):
            raise _fail("invalid_client", "client assertion signature is not valid")
        self._check_assertion_claims(claims, t, token_url)
        self._spend_jti(cred.client_id, claims["jti"], float(claims["exp"]), t)
        return cred, kid

    def _key(self, cred: Credential, kid: str):
        found = self.db.credentials.key(cred.id, kid)
        if found is None and cred.jwks_url and self.jwks_fetcher is not None:
            try:
                jwks = self.jwks_fetcher(cred.jwks_url)
                jwk = next(k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid)
                found = (jwk.get("alg") or ("RS384" if jwk.get("kty") == "RSA" else "ES384"), jwk)
            except (StopIteration, AttributeError, TypeError, ValueError, OSError):
                found = None
        if found is None:
            return None, None
        try:
            return found[0], public_key_from_jwk(found[1])
        except InputError:
            return None, None

    def _check_assertion_claims(self, claims: dict, t: float, token_url: str) -> None:
        skew = self.cfg.clock_skew_seconds
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if token_url not in auds:
            raise _fail("invalid_client", f"client assertion aud must be {token_url}")
        exp = claims.get("exp")
        if not _is_num(exp):
            raise _fail("invalid_client", "client assertion exp must be a number")
        if exp <= t - skew:
            raise _fail("invalid_client", "client assertion has expired")
        if exp > t + self.cfg.assertion_max_seconds + skew:
            raise _fail("invalid_client", f"client assertion exp is more than {self.cfg.assertion_max_seconds} s ahead")
        for name in ("iat", "nbf"):
            v = claims.get(name)
            if v is not None and (not _is_num(v) or v > t + skew):
                raise _fail("invalid_client", f"client assertion {name} is not a past time")
        if not _ident(claims.get("jti")):
            raise _fail("invalid_client", "client assertion needs a jti (printable, 1-256 characters)")

    def _spend_jti(self, client_id: str, jti: str, exp: float, t: float) -> None:
        """Record the jti until the assertion expires; a second use is a replay (on any node:
        the insert and the primary key decide, in the shared database)."""
        with self.db.tx() as conn:
            conn.execute("DELETE FROM jti_seen WHERE exp < ?", (t - self.cfg.clock_skew_seconds,))
            fresh = conn.execute(
                "INSERT INTO jti_seen VALUES (?,?,?) ON CONFLICT (client_id, jti) DO NOTHING",
                (client_id, jti, exp + self.cfg.clock_skew_seconds),
            ).rowcount
        if fresh != 1:
            raise _fail("invalid_client", "client assertion jti was already used")

    def _take_rate_token(self, org_id: str, t: float) -> None:
        """Token bucket per organization: `rate_burst` at once, `rate_per_minute` sustained.

        The bucket row is locked while it is read and written, so nodes sharing the
        database draw from one bucket."""
        rate, burst = self.cfg.rate_per_minute / 60.0, float(self.cfg.rate_burst)
        with self.db.tx() as conn:
            conn.execute("INSERT INTO rate VALUES (?,?,?) ON CONFLICT (org_id) DO NOTHING", (org_id, burst, t))
            row = conn.execute(
                "SELECT tokens, at FROM rate WHERE org_id=?" + self.db.sql.dialect.for_update, (org_id,)
            ).fetchone()
            tokens = min(burst, row[0] + max(0.0, t - row[1]) * rate)
            ok = tokens >= 1.0
            conn.execute("UPDATE rate SET tokens=?, at=? WHERE org_id=?", (tokens - 1.0 if ok else tokens, max(t, row[1]), org_id))
        if not ok:
            wait = max(1, math.ceil((1.0 - tokens) / rate)) if rate > 0 else 3600
            raise _fail(
                "temporarily_unavailable",
                f"too many token requests for {org_id}; retry in {wait} s",
                status=429,
                retry_after=wait,
            )

    # -- resource server side ------------------------------------------------------------
    def verify_access_token(
        self, token: str | None, ip: str | None, now: float | None = None, *, types: Iterable[str] = ()
    ) -> Principal:
        """The Principal of a bearer token, checked against the database now.

        401 (AuthError) for a missing, malformed, forged or expired token or a
        revoked credential; 403 for a valid token used from a disallowed IP,
        for a suspended organization, or without the scope for `types`."""
        t = now_s(now)
        if not token:
            raise _denied("bearer token is missing")
        try:
            header, c, signing_input, signature = jws.parse(token)
        except jws.JWSError:
            raise _denied("bearer token is malformed") from None
        if header.get("alg") != self.cfg.token_alg or not jws.verify(
            self.cfg.token_alg, self._verify_key, signing_input, signature
        ):
            raise _denied("bearer token signature is not valid")
        fields = ("sub", "org", "cid", "env", "scope", "jti", "amr")
        if c.get("iss") != self.cfg.issuer or not all(_ident(c.get(k), 4096) for k in fields):
            raise _denied("bearer token claims are not valid")
        if not _is_num(c.get("exp")) or not _is_num(c.get("iat")):
            raise _denied("bearer token claims are not valid")
        if t >= c["exp"]:
            raise _denied("bearer token has expired")
        if c["iat"] > t + self.cfg.clock_skew_seconds:
            raise _denied("bearer token is not valid yet")
        cred = self.db.credentials.by_client_id(c["sub"])
        if cred is None or cred.id != c["cid"] or cred.org_id != c["org"] or cred.env != c["env"]:
            raise _denied("bearer token credential is unknown")
        if c["amr"] == "secret":
            if c.get("sat") != cred.secret_at:
                raise _denied("client secret was rotated; request a new token")
        elif c["amr"] == "jwt":
            kid = c.get("kid")
            if not _ident(kid, 128) or (self.db.credentials.key(cred.id, kid) is None and not cred.jwks_url):
                raise _denied("the key that signed the client assertion was removed")
        else:
            raise _denied("bearer token claims are not valid")
        reason = self.db.credentials.refusal(cred, t, secret=c["amr"] == "secret")
        if reason:
            status = 403 if reason.startswith("organization") else 401
            raise _denied(reason, status)
        if not self.db.credentials.ip_allowed(cred, ip):
            raise _denied(f"requests from {ip} are not allowed for this credential", 403)
        kind = self.db.orgs.get(cred.org_id).kind
        try:
            scopes, granted = parse_scopes(c["scope"], self.cfg.rules(kind).types)
        except TokenError:
            raise _denied("bearer token scope is not valid") from None
        p = Principal(cred.org_id, kind, cred.client_id, cred.id, scopes, granted, cred.env, c["jti"], float(c["exp"]))
        p.require_types(types)
        return p

    def audit_request(self, principal: Principal, action: str, ip: str | None, now: float | None = None, **detail) -> None:
        """Record an export, status or file request made with a verified token."""
        with self.db.tx():
            self.db.audit.record(
                action, actor=f"client:{principal.client_id}", org_id=principal.org_id,
                credential_id=principal.credential_id, ip=ip, now=now, **detail,
            )


def _claimed_issuer(assertion: str | None) -> str | None:
    """The `iss` an assertion claims (unverified: only to pick throttle keys)."""
    if not assertion:
        return None
    try:
        iss = jws.parse(assertion)[1].get("iss")
    except (jws.JWSError, AttributeError):
        return None
    return iss if isinstance(iss, str) else None


# A stand-in for "no such client": verify_secret spends the same scrypt work on it.
_NO_CRED = Credential("", "", "", "", "", False, None, None, None, None, 0.0, "")
