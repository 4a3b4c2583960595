"""Failed-attempt throttling with exponential back-off (token endpoint; console sign-in).

A key (`token:ip:…`, `token:client:…`, `token:pair:…@…`, `login:email:…`) collects
failures in a window; at `max_failures` it is locked for `lockout` seconds, doubled at
each further lock (`strikes`) up to `max_lockout`. A refused attempt while locked costs
nothing and does not count, so a lock always ends; the strikes are forgotten after a
success or a quiet `max_lockout`. Rows live in the access database, so every process
and every restart sees the same counts.

An attacker who knows a client id could keep that client's key locked; the token
endpoint therefore lets a client through from an address it authenticated from before
(`remember` / `known`) while only its client-wide key is locked — the address's own
keys still apply.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .actors import now_s

if TYPE_CHECKING:
    from .db import AccessDB

__all__ = [
    "KNOWN_ADDRESS_SECONDS",
    "LOGIN_EMAIL",
    "LOGIN_IP",
    "TOKEN_CLIENT",
    "TOKEN_IP",
    "TOKEN_PAIR",
    "Throttle",
    "ThrottleRule",
]


@dataclass(frozen=True)
class ThrottleRule:
    max_failures: int
    window: float  # seconds failures are counted over
    lockout: float  # seconds of the first lock; each further lock doubles it
    max_lockout: float = 900.0  # the longest a lock lasts

    def lock_seconds(self, strikes: int) -> float:
        """How long the lock after `strikes` earlier locks lasts."""
        return min(self.max_lockout, self.lockout * 2.0 ** min(strikes, 32))


# A client secret is 256 random bits: the limits stop a misconfigured client hammering
# the scrypt check (CPU) and the audit log, not a guesser. One address may serve many
# clients (an office, a proxy), so it gets more room than one client from one address.
TOKEN_PAIR = ThrottleRule(10, 900.0, 30.0)
TOKEN_CLIENT = ThrottleRule(20, 900.0, 30.0)
TOKEN_IP = ThrottleRule(50, 900.0, 30.0)
# A person's password: few tries. One address: more (an office shares it).
LOGIN_EMAIL = ThrottleRule(5, 900.0, 60.0)
LOGIN_IP = ThrottleRule(50, 900.0, 60.0)
# How long an address a client authenticated from stays "known" (see module doc).
KNOWN_ADDRESS_SECONDS = 30 * 86400.0


class Throttle:
    """Failure counters over an AccessDB (tables `auth_throttle`, `known_addresses`)."""

    def __init__(self, db: AccessDB):
        self.db = db

    def wait(self, keys: Iterable[str], now: float | None = None) -> int:
        """Seconds until every key is unlocked (0: go ahead)."""
        t = now_s(now)
        keys = list(keys)
        if not keys:
            return 0
        marks = ",".join("?" * len(keys))
        row = self.db.conn.execute(f"SELECT MAX(locked_until) FROM auth_throttle WHERE key IN ({marks})",
                                   keys).fetchone()
        until = row[0] or 0.0
        return max(1, math.ceil(until - t)) if until > t else 0

    def failed(self, rules: Mapping[str, ThrottleRule], now: float | None = None) -> int:
        """Count one failure on each key (key -> its rule); returns the seconds of a lock
        this failure started (0: none)."""
        t = now_s(now)
        longest = 0.0
        with self.db.tx() as conn:
            for key, rule in rules.items():
                # Locked while counted: API nodes sharing the database count every failure.
                row = conn.execute("SELECT failures, last_at, strikes, locked_until FROM auth_throttle WHERE key=?"
                                   + self.db.sql.dialect.for_update, (key,)).fetchone()
                failures, strikes, locked = 1, 0, 0.0
                if row is not None:
                    last, strikes, locked = row[1], row[2], row[3]
                    if t - max(last, locked) > rule.max_lockout:
                        strikes = 0  # quiet for long enough: back to the first step
                    failures = 1 if t - last > rule.window else row[0] + 1
                if failures >= rule.max_failures:
                    seconds = rule.lock_seconds(strikes)
                    locked, strikes, failures = t + seconds, strikes + 1, 0
                    longest = max(longest, seconds)
                conn.execute("INSERT INTO auth_throttle VALUES (?,?,?,?,?) ON CONFLICT (key) DO UPDATE SET "
                             "failures = excluded.failures, last_at = excluded.last_at, "
                             "strikes = excluded.strikes, locked_until = excluded.locked_until",
                             (key, failures, t, strikes, locked))
        return math.ceil(longest)

    def succeeded(self, keys: Iterable[str]) -> None:
        """Forget the failures and strikes of `keys` (a lock in force stays until it ends)."""
        with self.db.tx() as conn:
            conn.executemany("UPDATE auth_throttle SET failures=0, strikes=0 WHERE key=?", [(k,) for k in keys])

    def remember(self, client_id: str, ip: str | None, now: float | None = None) -> None:
        """`client_id` authenticated from `ip`: that address is known for it from now on."""
        if ip:
            with self.db.tx() as conn:
                conn.execute("INSERT INTO known_addresses VALUES (?,?,?) ON CONFLICT (client_id, ip) DO UPDATE "
                             "SET seen_at = excluded.seen_at", (client_id, ip, now_s(now)))

    def known(self, client_id: str, ip: str | None, now: float | None = None) -> bool:
        """Whether `client_id` authenticated from `ip` within `KNOWN_ADDRESS_SECONDS`."""
        if not ip:
            return False
        row = self.db.conn.execute("SELECT seen_at FROM known_addresses WHERE client_id=? AND ip=?",
                                   (client_id, ip)).fetchone()
        return row is not None and now_s(now) - row[0] < KNOWN_ADDRESS_SECONDS
