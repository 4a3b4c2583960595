"""Failed-attempt throttling, shared by console sign-in and the token endpoint.

A key (`login:email:…`, `login:ip:…`, `token:client:…`) collects failures in a
window; at `max_failures` it is locked for `lockout` seconds. Rows live in the access
database, so every process and every restart sees the same counts. A success clears
the key's failures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from .actors import now_s

if TYPE_CHECKING:
    from .db import AccessDB

__all__ = ["Throttle", "ThrottleRule", "LOGIN_EMAIL", "LOGIN_IP", "TOKEN_CLIENT"]


@dataclass(frozen=True)
class ThrottleRule:
    max_failures: int
    window: float  # seconds failures are counted over
    lockout: float  # seconds a key stays locked once it reached max_failures


# A person's password: few tries. One address: more (an office shares it). A client
# secret is 256 random bits, so its limit only stops a misconfigured client hammering.
LOGIN_EMAIL = ThrottleRule(5, 900.0, 900.0)
LOGIN_IP = ThrottleRule(50, 900.0, 900.0)
TOKEN_CLIENT = ThrottleRule(20, 900.0, 300.0)


class Throttle:
    """Failure counters over an AccessDB."""

    def __init__(self, db: "AccessDB"):
        self.db = db

    def wait(self, keys: Iterable[str], now: float | None = None) -> int:
        """Seconds until every key is unlocked (0: go ahead)."""
        t = now_s(now)
        keys = list(keys)
        if not keys:
            return 0
        marks = ",".join("?" * len(keys))
        row = self.db.conn.execute(
            f"SELECT MAX(locked_until) FROM throttle WHERE key IN ({marks})", keys
        ).fetchone()
        until = row[0] or 0.0
        return max(0, math.ceil(until - t)) if until > t else 0

    def failed(self, rules: dict[str, ThrottleRule], now: float | None = None) -> None:
        """Count one failure on each key (key → its rule)."""
        t = now_s(now)
        with self.db.tx() as conn:
            for key, rule in rules.items():
                row = conn.execute("SELECT failures, first_at, locked_until FROM throttle WHERE key=?",
                                   (key,)).fetchone()
                failures, first, locked = (1, t, 0.0) if row is None else (row[0] + 1, row[1], row[2])
                if row is not None and t - first > rule.window:
                    failures, first = 1, t
                if failures >= rule.max_failures:
                    failures, first, locked = 0, t, max(locked, t + rule.lockout)  # a fresh window after the lock
                conn.execute(
                    "INSERT INTO throttle VALUES (?,?,?,?) ON CONFLICT(key) DO UPDATE SET"
                    " failures=excluded.failures, first_at=excluded.first_at, locked_until=excluded.locked_until",
                    (key, failures, first, locked),
                )

    def succeeded(self, keys: Iterable[str]) -> None:
        """Forget the failures of `keys` (a lock in force stays until it ends)."""
        with self.db.tx() as conn:
            conn.executemany("UPDATE throttle SET failures=0 WHERE key=?", [(k,) for k in keys])
