"""Client authentication for the token endpoint (SMART Backend Services / RFC 6749 §4.4).

`SecretAuth` sends the client id and secret with HTTP Basic (as BCDA and AB2D take them);
`JwkAuth` signs a client assertion JWT (RS384 or ES384) with a private JWK: iss = sub =
client id, aud = token URL, exp at most five minutes ahead, a fresh `jti`, `kid` in the
header. `Tokens` keeps one access token per client and refreshes it before it expires
(or once more when a request comes back 401).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..access import jws
from ..errors import ClientError
from ._http import ServerError, retry_after

__all__ = ["SecretAuth", "JwkAuth", "Tokens", "ASSERTION_TYPE", "load_private_jwk"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_CURVES = {"P-256": (ec.SECP256R1, "ES256"), "P-384": (ec.SECP384R1, "ES384")}


@dataclass
class SecretAuth:
    """client_credentials with HTTP Basic `client_id:client_secret` (each form-encoded, RFC 6749 §2.3.1)."""

    client_id: str
    client_secret: str
    scope: str | None = None  # None: the server's default for the client

    def token_request(self, token_url: str) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, form) of one token request."""
        raw = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}".encode()
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}, form


def _b64int(v: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(v + "=" * (-len(v) % 4)), "big")


def load_private_jwk(jwk: dict):
    """(private key, alg) from a private JWK (EC P-256/P-384 or RSA); ClientError when it is not one."""
    kty = jwk.get("kty")
    try:
        if kty == "EC":
            curve, alg = _CURVES[jwk["crv"]]
            pub = ec.EllipticCurvePublicNumbers(_b64int(jwk["x"]), _b64int(jwk["y"]), curve())
            return ec.EllipticCurvePrivateNumbers(_b64int(jwk["d"]), pub).private_key(), jwk.get("alg", alg)
        if kty == "RSA":
            n, e, d = _b64int(jwk["n"]), _b64int(jwk["e"]), _b64int(jwk["d"])
            if "p" in jwk and "q" in jwk:
                p, q = _b64int(jwk["p"]), _b64int(jwk["q"])
            else:
                p, q = rsa.rsa_recover_prime_factors(n, e, d)
            nums = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
                                         rsa.RSAPublicNumbers(e, n))
            return nums.private_key(), jwk.get("alg", "RS384")
    except KeyError as e:
        raise ClientError(f"JWK (kid {jwk.get('kid')!r}): member {e.args[0]!r} is missing (a private key needs 'd')") from None
    except ValueError as e:
        raise ClientError(f"JWK (kid {jwk.get('kid')!r}) is not a valid private key: {e}") from None
    raise ClientError(f"JWK (kid {jwk.get('kid')!r}): key type {kty!r} is not supported (EC or RSA)")


class JwkAuth:
    """SMART Backend Services: a signed client assertion instead of a secret.

    `jwk` is a private JWK (dict), a JWKS (the first key with a private part, or the one
    named by `kid`), or a path to either as JSON — or to a PEM private key (then `kid`
    is required). `lifetime` (≤ 300 s) is how far ahead each assertion's `exp` lies.
    """

    def __init__(self, jwk: dict | str | Path, client_id: str, *, kid: str | None = None,
                 scope: str | None = "system/*.read", lifetime: int = 240):
        if not 0 < lifetime <= 300:
            raise ClientError(f"assertion lifetime {lifetime} s: SMART allows at most 300 s")
        self.client_id, self.scope, self.lifetime = client_id, scope, lifetime
        self.key, self.alg, self.kid = _load_key(jwk, kid)

    def assertion(self, token_url: str, now: float | None = None) -> str:
        """A fresh, single-use client assertion for `token_url`."""
        t = int(time.time() if now is None else now)
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": token_url, "exp": t + self.lifetime,
                  "iat": t, "jti": secrets.token_urlsafe(24)}
        return jws.sign(self.alg, self.key, {"typ": "JWT", "kid": self.kid}, claims)

    def token_request(self, token_url: str) -> tuple[dict[str, str], dict[str, str]]:
        form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(token_url)}
        if self.scope:
            form["scope"] = self.scope
        return {}, form


def _load_key(src: dict | str | Path, kid: str | None):
    if not isinstance(src, dict):
        path = Path(src)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise ClientError(f"{path}: cannot read the key file: {e.strerror}") from None
        if raw.lstrip().startswith(b"-----BEGIN"):
            if not kid:
                raise ClientError(f"{path}: a PEM key has no kid; pass the kid the server registered")
            try:
                key = serialization.load_pem_private_key(raw, password=None)
            except (ValueError, TypeError) as e:
                raise ClientError(f"{path}: not an unencrypted PEM private key: {e}") from None
            if isinstance(key, rsa.RSAPrivateKey):
                return key, "RS384", kid
            if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
                return key, "ES384", kid
            raise ClientError(f"{path}: only RSA and P-384 EC keys sign RS384/ES384 assertions")
        try:
            src = json.loads(raw)
        except ValueError:
            raise ClientError(f"{path}: neither JSON (JWK/JWKS) nor a PEM private key") from None
    keys = src.get("keys") if isinstance(src, dict) and "keys" in src else [src]
    if not isinstance(keys, list):
        raise ClientError("JWKS 'keys' is not a list")
    for k in keys:
        if isinstance(k, dict) and "d" in k and (kid is None or k.get("kid") == kid):
            key, alg = load_private_jwk(k)
            if not k.get("kid") and not kid:
                raise ClientError("the private JWK has no 'kid'; pass the kid the server registered")
            return key, alg, kid or k["kid"]
    raise ClientError(f"no private key{f' with kid {kid!r}' if kid else ''} in the JWK set")


@dataclass
class _Token:
    value: str
    expires: float  # monotonic
    lifetime: float


@dataclass
class Tokens:
    """The current access token of one client, fetched and refreshed on demand.

    A token is renewed when less than a fifth of its lifetime (at most 60 s) is left, so
    a long download never starts with a token about to lapse; a 401 renews it once more.
    """

    auth: SecretAuth | JwkAuth
    token_url: str
    session: aiohttp.ClientSession
    clock: Callable[[], float] = time.monotonic
    issued: int = 0  # tokens fetched so far
    _token: _Token | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(self) -> str:
        tok = self._token
        if tok is None or self.clock() >= tok.expires - min(60.0, tok.lifetime / 5):
            tok = await self._refresh(tok)
        return tok.value

    async def invalidate(self, value: str) -> None:
        """The server refused `value`: the next `get` fetches a new token (unless one already did)."""
        if self._token is not None and self._token.value == value:
            self._token = None

    async def _refresh(self, stale: _Token | None) -> _Token:
        async with self._lock:
            if self._token is not None and self._token is not stale:
                return self._token  # another task refreshed meanwhile
            attempt = 0
            while True:
                headers, form = self.auth.token_request(self.token_url)
                async with self.session.post(self.token_url, data=form,
                                             headers={"Accept": "application/json", **headers}) as r:
                    body = await r.read()
                if r.status == 429 and attempt < 4:
                    attempt += 1
                    await asyncio.sleep(retry_after(r.headers, default=2.0 ** attempt))
                    continue
                if r.status != 200:
                    raise ServerError(f"token endpoint {self.token_url}", r.status, body, r.content_type)
                try:
                    doc = json.loads(body)
                    value, lifetime = doc["access_token"], float(doc.get("expires_in", 300))
                except (ValueError, KeyError, TypeError):
                    raise ClientError(f"token endpoint {self.token_url}: the response has no access_token") from None
                self.issued += 1
                self._token = _Token(value, self.clock() + lifetime, lifetime)
                return self._token
