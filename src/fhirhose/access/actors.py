"""Who performs an access action and with which role: the pieces the access database,
organizations and credentials share (kept here so those modules need not import each other)."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass

from ..errors import AuthError

__all__ = ["Actor", "now_s", "ATTESTOR", "DATA_OPS", "READ_ONLY", "ROLES", "PermissionDenied", "hash_secret",
           "check_secret"]

ATTESTOR, DATA_OPS, READ_ONLY = "attestor", "data_ops", "read_only"
ROLES = (ATTESTOR, DATA_OPS, READ_ONLY)


class PermissionDenied(AuthError):
    """The actor lacks the role the action needs (403)."""

    def __init__(self, message: str):
        super().__init__(message, status=403, oauth_error="access_denied")


def now_s(now: float | None = None) -> float:
    """Seconds since the epoch; `now` lets tests and callers pin the clock.

    A non-finite clock would make every expiry comparison false (and so pass):
    it falls back to the real clock instead."""
    if now is None:
        return time.time()
    t = float(now)
    return t if math.isfinite(t) else time.time()


@dataclass(frozen=True)
class Actor:
    """Who performs an admin action: the CMS-side operator or an organization user."""

    kind: str  # "system" | "user"
    name: str
    user_id: int | None = None

    @classmethod
    def system(cls, name: str = "operator") -> Actor:
        return cls("system", name)

    @classmethod
    def user(cls, user_id: int) -> Actor:
        return cls("user", f"user:{user_id}", int(user_id))

    def __str__(self) -> str:
        return self.name if self.kind == "user" else f"system:{self.name}"


def hash_secret(secret: str, config, salt: bytes | None = None) -> tuple[bytes, bytes, str]:
    """scrypt(secret) with a fresh 16-byte salt → (salt, hash, kdf parameters)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    n, r, p = config.scrypt_n, config.scrypt_r, config.scrypt_p
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=32)
    return salt, digest, f"scrypt:{n}:{r}:{p}"


def check_secret(secret: str, salt: bytes, digest: bytes, kdf: str) -> bool:
    """Constant-time comparison of scrypt(secret) with the stored hash."""
    name, n_text, r_text, p_text = kdf.split(":")
    if name != "scrypt":
        return False
    n, r, p = int(n_text), int(r_text), int(p_text)
    got = hashlib.scrypt(secret.encode(errors="surrogatepass"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=32)
    return hmac.compare_digest(got, digest)
