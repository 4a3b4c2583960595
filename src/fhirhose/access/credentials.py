"""Credentials: client id + secret (scrypt-hashed, 90-day expiry, rotate, revoke)
and/or registered public keys for SMART backend services, each with an IP allowlist.

Sandbox credentials are issued at once; production credentials only after the
organization was approved (`Orgs.request_production`). Every change is one
transaction and is seen by the next request: nothing is cached.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..errors import InputError, RequestError
from .actors import ATTESTOR, DATA_OPS, READ_ONLY, Actor, PermissionDenied, check_secret, hash_secret, now_s

if TYPE_CHECKING:
    from .db import AccessDB

__all__ = ["Credential", "Credentials", "ENVS", "public_key_from_jwk"]

ENVS = ("sandbox", "production")
_MANAGE = (DATA_OPS,)
_READ = (DATA_OPS, ATTESTOR, READ_ONLY)
_MIN_PREFIX = {4: 24, 6: 48}  # an allowlist entry wider than this would defeat the allowlist
_KEY_ALGS = {"RS384": "RSA", "ES384": "EC"}
_PRIVATE_JWK = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@dataclass(frozen=True)
class Credential:
    id: str
    org_id: str
    env: str
    client_id: str
    label: str
    has_secret: bool
    secret_at: float | None
    expires_at: float | None
    jwks_url: str | None
    revoked_at: float | None
    created_at: float
    created_by: str


_COLS = "id, org_id, env, client_id, label, hash IS NOT NULL, secret_at, expires_at, jwks_url, revoked_at, created_at, created_by"


def _b64int(value, where: str) -> int:
    if not isinstance(value, str) or not value or "=" in value:
        raise InputError(f"{where}: not a base64url string")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise InputError(f"{where}: not a base64url string") from None
    return int.from_bytes(raw, "big")


def public_key_from_jwk(jwk: dict):
    """A `cryptography` public key from a JWK (RSA ≥ 2048 bits or EC P-384); InputError otherwise."""
    if not isinstance(jwk, dict):
        raise InputError("JWK: not a JSON object")
    kty = jwk.get("kty")
    if kty == "RSA":
        n, e = _b64int(jwk.get("n"), "JWK n"), _b64int(jwk.get("e"), "JWK e")
        if n.bit_length() < 2048:
            raise InputError(f"JWK: RSA modulus of {n.bit_length()} bits; at least 2048 needed")
        try:
            return rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as err:
            raise InputError(f"JWK: bad RSA key ({err})") from None
    if kty == "EC":
        if jwk.get("crv") != "P-384":
            raise InputError(f"JWK: EC curve {jwk.get('crv')!r}; P-384 needed for ES384")
        x, y = _b64int(jwk.get("x"), "JWK x"), _b64int(jwk.get("y"), "JWK y")
        try:
            return ec.EllipticCurvePublicNumbers(x, y, ec.SECP384R1()).public_key()
        except ValueError as err:
            raise InputError(f"JWK: point is not on P-384 ({err})") from None
    raise InputError(f"JWK: key type {kty!r}; RSA or EC needed")


def _network(text: str):
    try:
        net = ipaddress.ip_network(str(text).strip(), strict=True)
    except ValueError as e:
        raise InputError(f"IP allowlist entry {text!r}: {e}") from None
    if net.prefixlen < _MIN_PREFIX[net.version]:
        raise InputError(f"IP allowlist entry {text}: wider than /{_MIN_PREFIX[net.version]}")
    return net


class Credentials:
    """Credential administration and the lookups the token service needs."""

    def __init__(self, db: "AccessDB"):
        self.db = db

    # -- lookups ----------------------------------------------------------------
    def get(self, credential_id: str) -> Credential:
        row = self.db.conn.execute(f"SELECT {_COLS} FROM credentials WHERE id=?", (credential_id,)).fetchone()
        if row is None:
            raise RequestError(f"credential {credential_id!r} does not exist", status=404, param="credential")
        return Credential(*row)

    def by_client_id(self, client_id: str) -> Credential | None:
        row = self.db.conn.execute(f"SELECT {_COLS} FROM credentials WHERE client_id=?", (client_id,)).fetchone()
        return Credential(*row) if row else None

    def list(self, actor: Actor, org_id: str) -> list[Credential]:
        self.db.orgs.require(actor, org_id, _READ, "credential.list")
        self.db.orgs.get(org_id)  # an unknown organization is a 404, not an empty list
        rows = self.db.conn.execute(f"SELECT {_COLS} FROM credentials WHERE org_id=? ORDER BY created_at", (org_id,))
        return [Credential(*r) for r in rows]

    def ips(self, credential_id: str) -> list[str]:
        rows = self.db.conn.execute("SELECT cidr FROM credential_ips WHERE credential_id=? ORDER BY cidr", (credential_id,))
        return [r[0] for r in rows]

    def key(self, credential_id: str, kid: str) -> tuple[str, dict] | None:
        """(alg, public JWK) of a registered, unrevoked key."""
        row = self.db.conn.execute(
            "SELECT alg, jwk FROM credential_keys WHERE credential_id=? AND kid=? AND revoked_at IS NULL",
            (credential_id, kid),
        ).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def keys(self, credential_id: str) -> list[dict]:
        rows = self.db.conn.execute(
            "SELECT jwk FROM credential_keys WHERE credential_id=? AND revoked_at IS NULL ORDER BY kid", (credential_id,)
        )
        return [json.loads(r[0]) for r in rows]

    # -- checks used on every request -------------------------------------------------
    def verify_secret(self, cred: Credential, secret: str) -> bool:
        row = self.db.conn.execute("SELECT salt, hash, kdf FROM credentials WHERE id=?", (cred.id,)).fetchone()
        if row is None or row[1] is None:
            hash_secret(secret, self.db.config)  # same work either way
            return False
        return check_secret(secret, bytes(row[0]), bytes(row[1]), row[2])

    def refusal(self, cred: Credential, now: float | None = None, *, secret: bool = False) -> str | None:
        """Why this credential may not be used at `now` (None when it may)."""
        cred = self.get(cred.id)  # re-read: a revoke or rotation counts at once
        t = now_s(now)
        if cred.revoked_at is not None and cred.revoked_at <= t:
            return "credential was revoked"
        if secret and (cred.expires_at is None or t >= cred.expires_at):
            return "client secret has expired; rotate it"
        org = self.db.orgs.get(cred.org_id)
        if not org.active:
            return f"organization {org.id} is suspended"
        if cred.env == "production" and org.production_at is None:
            return f"organization {org.id} is not approved for production"
        return None

    def ip_allowed(self, cred: Credential, ip: str | None) -> bool:
        """Whether a request from `ip` may use this credential.

        Production credentials need a registered address; sandbox ones are
        open until an allowlist is set. Test mode lets loopback through."""
        try:
            addr = ipaddress.ip_address((ip or "").strip())
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        if self.db.config.allow_loopback and addr.is_loopback:
            return True
        nets = [ipaddress.ip_network(c) for c in self.ips(cred.id)]
        if not nets:
            return cred.env == "sandbox"
        return any(addr.version == n.version and addr in n for n in nets)

    # -- administration ----------------------------------------------------------------
    def issue(
        self,
        actor: Actor,
        org_id: str,
        *,
        env: str = "sandbox",
        label: str = "",
        secret: bool = True,
        jwks: dict | None = None,
        ips: Iterable[str] = (),
        now: float | None = None,
    ) -> tuple[Credential, str | None]:
        """A new credential (client id, and a secret returned once unless `secret=False`)."""
        self.db.orgs.require(actor, org_id, _MANAGE, "credential.issue", now)
        org = self.db.orgs.get(org_id)
        if env not in ENVS:
            raise InputError(f"environment {env!r}: sandbox or production")
        if env == "production" and org.production_at is None:
            with self.db.tx():
                self.db.audit.record(
                    "credential.issue", actor=actor, org_id=org_id, outcome="denied", now=now, reason="not approved"
                )
            raise PermissionDenied(
                f"organization {org_id} needs an attestation and a completed sandbox export before production credentials"
            )
        if not secret and not jwks:
            raise InputError("a credential needs a secret or at least one public key")
        t = now_s(now)
        cred_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
        plain = secrets.token_urlsafe(32) if secret else None
        salt = digest = kdf = None
        if plain:
            salt, digest, kdf = hash_secret(plain, self.db.config)
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO credentials(id, org_id, env, client_id, label, salt, hash, kdf, secret_at, expires_at,"
                " created_at, created_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    cred_id, org_id, env, client_id, label, salt, digest, kdf,
                    t if plain else None, t + self.db.config.secret_days * 86400.0 if plain else None, t, str(actor),
                ),
            )
            self.db.audit.record("credential.issue", actor=actor, org_id=org_id, credential_id=cred_id, now=t, env=env)
            if jwks:
                self.register_jwks(actor, cred_id, jwks, now=t)
            ips = list(ips)
            if ips:
                self.set_ips(actor, cred_id, ips, now=t)
        return self.get(cred_id), plain

    def _managed(self, actor: Actor, credential_id: str, action: str, now) -> Credential:
        cred = self.get(credential_id)
        self.db.orgs.require(actor, cred.org_id, _MANAGE, action, now)
        if cred.revoked_at is not None:
            raise InputError(f"credential {credential_id} was revoked; issue a new one")
        return cred

    def rotate(self, actor: Actor, credential_id: str, now: float | None = None) -> str:
        """A new secret; the old one is refused from this moment on."""
        cred = self._managed(actor, credential_id, "credential.rotate", now)
        if not cred.has_secret:
            raise InputError(f"credential {credential_id} uses public keys only; register a new key instead")
        t = now_s(now)
        plain = secrets.token_urlsafe(32)
        salt, digest, kdf = hash_secret(plain, self.db.config)
        with self.db.tx() as conn:
            conn.execute(
                "UPDATE credentials SET salt=?, hash=?, kdf=?, secret_at=?, expires_at=? WHERE id=?",
                (salt, digest, kdf, t, t + self.db.config.secret_days * 86400.0, cred.id),
            )
            self.db.audit.record("credential.rotate", actor=actor, org_id=cred.org_id, credential_id=cred.id, now=t)
        return plain

    def revoke(self, actor: Actor, credential_id: str, now: float | None = None, reason: str = "") -> None:
        """Revoke at once: no new tokens, and tokens already issued stop working."""
        cred = self._managed(actor, credential_id, "credential.revoke", now)
        t = now_s(now)
        with self.db.tx() as conn:
            conn.execute("UPDATE credentials SET revoked_at=? WHERE id=?", (t, cred.id))
            self.db.audit.record(
                "credential.revoke", actor=actor, org_id=cred.org_id, credential_id=cred.id, now=t, reason=reason
            )

    def set_ips(self, actor: Actor, credential_id: str, ips: Iterable[str], now: float | None = None) -> list[str]:
        """Replace the allowlist (at most `max_ips` addresses or CIDR ranges)."""
        cred = self._managed(actor, credential_id, "credential.set_ips", now)
        nets = sorted({str(_network(i)) for i in ips})
        if len(nets) > self.db.config.max_ips:
            raise InputError(f"{len(nets)} IP allowlist entries; at most {self.db.config.max_ips}")
        with self.db.tx() as conn:
            conn.execute("DELETE FROM credential_ips WHERE credential_id=?", (cred.id,))
            conn.executemany("INSERT INTO credential_ips VALUES (?, ?)", [(cred.id, n) for n in nets])
            self.db.audit.record(
                "credential.set_ips", actor=actor, org_id=cred.org_id, credential_id=cred.id, now=now, ips=nets
            )
        return nets

    def register_key(self, actor: Actor, credential_id: str, jwk: dict, now: float | None = None) -> str:
        """Register one public JWK (RS384 RSA ≥ 2048 bits or ES384 P-384) by its `kid`."""
        cred = self._managed(actor, credential_id, "credential.register_key", now)
        if not isinstance(jwk, dict):
            raise InputError("JWK: not a JSON object")
        if _PRIVATE_JWK & set(jwk):
            raise InputError("JWK holds private key material; register the public key only")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= 128:
            raise InputError("JWK: `kid` (1-128 characters) is required")
        public_key_from_jwk(jwk)
        alg = jwk.get("alg") or ("RS384" if jwk.get("kty") == "RSA" else "ES384")
        if _KEY_ALGS.get(alg) != jwk.get("kty") or alg not in self.db.config.assertion_algs:
            raise InputError(f"JWK {kid}: alg {alg!r} does not fit key type {jwk.get('kty')!r}")
        keep = {k: jwk[k] for k in ("kty", "kid", "n", "e", "crv", "x", "y") if k in jwk} | {"alg": alg}
        with self.db.tx() as conn:
            if conn.execute(
                "SELECT 1 FROM credential_keys WHERE credential_id=? AND kid=?", (cred.id, kid)
            ).fetchone():
                raise InputError(f"credential {cred.id} already has a key with kid {kid!r}")
            conn.execute(
                "INSERT INTO credential_keys(credential_id, kid, alg, jwk, added_at) VALUES (?,?,?,?,?)",
                (cred.id, kid, alg, json.dumps(keep), now_s(now)),
            )
            self.db.audit.record(
                "credential.register_key", actor=actor, org_id=cred.org_id, credential_id=cred.id, now=now, kid=kid
            )
        return kid

    def register_jwks(self, actor: Actor, credential_id: str, jwks: dict, now: float | None = None) -> list[str]:
        """Register every key of a JWK Set (`{"keys": [...]}`), all or none."""
        keys = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(keys, list) or not keys:
            raise InputError('JWKS: expected {"keys": [...]} with at least one key')
        with self.db.tx():
            return [self.register_key(actor, credential_id, k, now) for k in keys]

    def revoke_key(self, actor: Actor, credential_id: str, kid: str, now: float | None = None) -> None:
        cred = self._managed(actor, credential_id, "credential.revoke_key", now)
        with self.db.tx() as conn:
            n = conn.execute(
                "UPDATE credential_keys SET revoked_at=? WHERE credential_id=? AND kid=? AND revoked_at IS NULL",
                (now_s(now), cred.id, kid),
            ).rowcount
            if not n:
                raise InputError(f"credential {cred.id} has no active key {kid!r}")
            self.db.audit.record(
                "credential.revoke_key", actor=actor, org_id=cred.org_id, credential_id=cred.id, now=now, kid=kid
            )

    def set_jwks_url(self, actor: Actor, credential_id: str, url: str | None, now: float | None = None) -> None:
        """Register (or clear) a JWKS URL the server fetches keys from (https only)."""
        cred = self._managed(actor, credential_id, "credential.set_jwks_url", now)
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.hostname:
                raise InputError(f"JWKS URL {url!r}: https:// URL needed")
        with self.db.tx() as conn:
            conn.execute("UPDATE credentials SET jwks_url=? WHERE id=?", (url, cred.id))
            self.db.audit.record(
                "credential.set_jwks_url", actor=actor, org_id=cred.org_id, credential_id=cred.id, now=now, url=url
            )
