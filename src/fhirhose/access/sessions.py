"""Console sessions: random 256-bit tokens in an HttpOnly cookie, only their SHA-256 in
the database; a session ends after `SESSION_IDLE` seconds without a request or
`SESSION_MAX` after sign-in, when the person is removed, or at sign-out. CSRF tokens
are an HMAC of the session (no storage)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .actors import now_s
from .users import ConsoleUser, ConsoleUsers

if TYPE_CHECKING:
    from .db import AccessDB

__all__ = ["Session", "Sessions", "SESSION_IDLE", "SESSION_MAX"]

SESSION_IDLE = 15 * 60
SESSION_MAX = 12 * 3600


@dataclass(frozen=True)
class Session:
    token_hash: bytes
    user: ConsoleUser
    created_at: float
    second_factor: bool

    @property
    def complete(self) -> bool:
        """Signed in fully: the password, and the TOTP code when the user has TOTP."""
        return self.second_factor or not self.user.has_totp


class Sessions:
    """Server-side console sessions; the browser holds only the random token."""

    def __init__(self, db: AccessDB, *, idle: float = SESSION_IDLE, max_age: float = SESSION_MAX):
        self.db, self.idle, self.max_age = db, idle, max_age
        self._csrf_key: bytes | None = None

    @staticmethod
    def _hash(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def start(self, cu: ConsoleUser, ip: str | None, now: float | None = None) -> str:
        t = now_s(now)
        token = secrets.token_urlsafe(32)
        with self.db.tx() as conn:
            conn.execute("DELETE FROM console_sessions WHERE seen_at < ? OR created_at < ?",
                         (t - self.idle, t - self.max_age))
            conn.execute("INSERT INTO console_sessions VALUES (?,?,?,?,?,0)", (self._hash(token), cu.id, t, t, ip))
        return token

    def get(self, token: str | None, now: float | None = None) -> Session | None:
        """The live session of `token` (its idle clock restarts), or None."""
        if not token or len(token) > 128:
            return None
        t = now_s(now)
        h = self._hash(token)
        row = self.db.conn.execute(
            "SELECT console_user_id, created_at, seen_at, second_factor FROM console_sessions WHERE token_hash=?", (h,)
        ).fetchone()
        if row is None:
            return None
        if t - row[2] > self.idle or t - row[1] > self.max_age:
            self.end(token)
            return None
        cu = ConsoleUsers(self.db).get(row[0])
        if not cu.active:
            self.end(token)
            return None
        with self.db.tx() as conn:
            conn.execute("UPDATE console_sessions SET seen_at=? WHERE token_hash=?", (t, h))
        return Session(h, cu, row[1], bool(row[3]))

    def second_factor_passed(self, token: str) -> None:
        with self.db.tx() as conn:
            conn.execute("UPDATE console_sessions SET second_factor=1 WHERE token_hash=?", (self._hash(token),))

    def end(self, token: str) -> None:
        with self.db.tx() as conn:
            conn.execute("DELETE FROM console_sessions WHERE token_hash=?", (self._hash(token),))

    def csrf_token(self, session_key: bytes) -> str:
        """The CSRF token of forms in a session (or of a pre-sign-in key): an HMAC with a
        server secret, so it needs no storage and is worthless without the cookie."""
        if self._csrf_key is None:  # stored once in the database; constant afterwards
            self._csrf_key = self.db.meta_secret("console_csrf_key")
        return hmac.new(self._csrf_key, b"csrf:" + session_key, hashlib.sha256).hexdigest()

    def csrf_ok(self, session_key: bytes, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session_key), str(token))
