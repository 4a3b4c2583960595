"""The access database holding organizations, users, attestations, credentials, the JWT
replay cache, rate buckets, failed-attempt throttles and the audit log: one SQLite file
(WAL) on one machine, or PostgreSQL shared by every node (`fhirhose.sql`).

Nothing is cached in memory: every check reads the row it needs, so a revoke,
rotation or IP change takes effect on the very next request, in every process.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from ..sql import Database, DatabaseUnavailable, Migration, migrate, open_database
from ..sql.base import Connection
from .actors import Actor, now_s
from .config import AccessConfig
from .credentials import Credentials
from .orgs import Orgs

__all__ = ["AccessDB", "Actor", "Audit", "AuditEntry", "now_s", "MIGRATIONS"]

# Numbered migrations (neutral dialect, see fhirhose.sql.dialect). Version 1 is the schema
# SQLite files had before migrations were recorded: IF NOT EXISTS adopts such a file as is.
MIGRATIONS = [
    Migration(1, "access tables", (
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL)",
        """CREATE TABLE IF NOT EXISTS orgs(
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
  active INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL,
  production_at REAL, sandbox_job TEXT)""",
        """CREATE TABLE IF NOT EXISTS contracts(
  contract_id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id))""",
        """CREATE TABLE IF NOT EXISTS users(
  id SERIAL_PK, org_id TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL,
  email TEXT NOT NULL, role TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
  active INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, left_at REAL,
  key_salt BLOB NOT NULL, key_hash BLOB NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS attestations(
  id SERIAL_PK, org_id TEXT NOT NULL REFERENCES orgs(id), contract_id TEXT NOT NULL,
  user_id INTEGER NOT NULL REFERENCES users(id), attested_at REAL NOT NULL, ended_at REAL)""",
        """CREATE TABLE IF NOT EXISTS credentials(
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), env TEXT NOT NULL,
  client_id TEXT NOT NULL UNIQUE, label TEXT NOT NULL DEFAULT '',
  salt BLOB, hash BLOB, kdf TEXT, secret_at REAL, expires_at REAL,
  jwks_url TEXT, revoked_at REAL, created_at REAL NOT NULL, created_by TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS credential_ips(
  credential_id TEXT NOT NULL REFERENCES credentials(id), cidr TEXT NOT NULL,
  PRIMARY KEY(credential_id, cidr))""",
        """CREATE TABLE IF NOT EXISTS credential_keys(
  credential_id TEXT NOT NULL REFERENCES credentials(id), kid TEXT NOT NULL, alg TEXT NOT NULL,
  jwk TEXT NOT NULL, added_at REAL NOT NULL, revoked_at REAL,
  PRIMARY KEY(credential_id, kid))""",
        """CREATE TABLE IF NOT EXISTS jti_seen(
  client_id TEXT NOT NULL, jti TEXT NOT NULL, exp REAL NOT NULL, PRIMARY KEY(client_id, jti))""",
        "CREATE TABLE IF NOT EXISTS rate(org_id TEXT PRIMARY KEY, tokens REAL NOT NULL, at REAL NOT NULL)",
        """CREATE TABLE IF NOT EXISTS audit(
  id SERIAL_PK, at REAL NOT NULL, actor TEXT NOT NULL, org_id TEXT,
  credential_id TEXT, action TEXT NOT NULL, outcome TEXT NOT NULL, ip TEXT, detail TEXT)""",
        "CREATE INDEX IF NOT EXISTS audit_credential ON audit(credential_id, id)",
        "CREATE INDEX IF NOT EXISTS audit_org ON audit(org_id, id)",
        "CREATE INDEX IF NOT EXISTS jti_seen_exp ON jti_seen(exp)",
    )),
    # Failed-authentication throttle with back-off, and the addresses each client was seen
    # from. IF NOT EXISTS: a SQLite file written before migrations were recorded has them.
    Migration(2, "failed-auth throttle, known addresses", (
        """CREATE TABLE IF NOT EXISTS auth_throttle(
  key TEXT PRIMARY KEY, failures INTEGER NOT NULL, last_at REAL NOT NULL,
  strikes INTEGER NOT NULL, locked_until REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS known_addresses(
  client_id TEXT NOT NULL, ip TEXT NOT NULL, seen_at REAL NOT NULL, PRIMARY KEY(client_id, ip))""",
    )),
    # Web console (issue 15): people who sign in, their sessions and Part D onboarding
    # reviews (sign-in failures share `auth_throttle`). IF NOT EXISTS: a SQLite file the
    # console wrote before migrations were recorded is adopted as is.
    Migration(3, "console users, sessions, onboarding", (
        """CREATE TABLE IF NOT EXISTS console_users(
  id SERIAL_PK, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
  org_id TEXT REFERENCES orgs(id), user_id INTEGER REFERENCES users(id), role TEXT NOT NULL,
  password_hash TEXT NOT NULL, totp_secret TEXT, totp_step INTEGER NOT NULL DEFAULT 0,
  active INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, password_at REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS console_sessions(
  token_hash BLOB PRIMARY KEY, console_user_id INTEGER NOT NULL REFERENCES console_users(id),
  created_at REAL NOT NULL, seen_at REAL NOT NULL, ip TEXT, second_factor INTEGER NOT NULL DEFAULT 0)""",
        """CREATE TABLE IF NOT EXISTS onboarding(
  id SERIAL_PK, org_id TEXT NOT NULL REFERENCES orgs(id), job_id TEXT NOT NULL,
  ips TEXT NOT NULL, status TEXT NOT NULL, submitted_by TEXT NOT NULL, submitted_at REAL NOT NULL,
  reviewed_by TEXT, reviewed_at REAL, note TEXT NOT NULL DEFAULT '',
  credential_id TEXT REFERENCES credentials(id), released_at REAL)""",
        "CREATE INDEX IF NOT EXISTS onboarding_org ON onboarding(org_id, id)",
    )),
]

_SCHEMA_VERSION = b"1"  # meta 'schema': marks the database as an access database


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    org_id: str | None
    credential_id: str | None
    action: str
    outcome: str
    ip: str | None
    detail: dict


class Audit:
    """Append-only log of admin actions and of token, export and file requests."""

    def __init__(self, db: AccessDB):
        self._db = db

    def record(
        self,
        action: str,
        *,
        actor: Actor | str,
        org_id: str | None = None,
        credential_id: str | None = None,
        outcome: str = "ok",
        ip: str | None = None,
        now: float | None = None,
        **detail,
    ) -> None:
        """Write one entry (inside the caller's transaction when there is one)."""
        self._db.conn.execute(
            "INSERT INTO audit(at, actor, org_id, credential_id, action, outcome, ip, detail)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (now_s(now), str(actor), org_id, credential_id, action, outcome, ip, json.dumps(detail, default=str)),
        )

    def _rows(self, where: str, args: tuple, limit: int) -> list[AuditEntry]:
        rows = self._db.conn.execute(
            "SELECT id, at, actor, org_id, credential_id, action, outcome, ip, detail FROM audit"
            f" WHERE {where} ORDER BY id DESC LIMIT ?",
            (*args, int(limit)),
        ).fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8] or "{}")) for r in rows]

    def recent(self, credential_id: str, limit: int = 100) -> list[AuditEntry]:
        """The latest entries of one credential, newest first (review a revoked one)."""
        return self._rows("credential_id = ?", (credential_id,), limit)

    def for_org(self, org_id: str, limit: int = 100) -> list[AuditEntry]:
        return self._rows("org_id = ?", (org_id,), limit)

    def all(self, limit: int = 100) -> list[AuditEntry]:
        return self._rows("1 = 1", (), limit)


class AccessDB:
    """Opens (creating and migrating if needed) the access database at `location`: a
    SQLite file path, `sqlite:///PATH`, `postgresql://...`, or an open `fhirhose.sql.Database`.

    Connections are per thread; `tx()` is a write transaction, so concurrent writers
    serialize instead of failing half-way."""

    def __init__(self, location: str | os.PathLike | Database, config: AccessConfig | None = None):
        self._owns = not isinstance(location, Database)
        self.sql = location if isinstance(location, Database) else open_database(location)
        self.path: Path | None = getattr(self.sql, "path", None)
        self.config = config or AccessConfig()
        self.audit = Audit(self)
        try:
            self._init_schema()
        except BaseException:
            self.close()
            raise
        self.orgs = Orgs(self)
        self.credentials = Credentials(self)

    @property
    def where(self) -> str:
        """The database, for messages (a file path or a URL without its password)."""
        return self.sql.where

    def _init_schema(self) -> None:
        try:
            migrate(self.sql, "access", MIGRATIONS)
            with self.tx() as conn:
                conn.execute("INSERT INTO meta VALUES ('schema', ?) ON CONFLICT (key) DO NOTHING", (_SCHEMA_VERSION,))
                row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except DatabaseUnavailable as e:
            if self.sql.engine != "sqlite":
                raise  # unreachable server: its message names the URL (without the password)
            raise StoreError(f"{self.where}: not an access database ({e})") from None
        if bytes(row[0]) != _SCHEMA_VERSION:
            raise StoreError(f"{self.where}: access schema version {bytes(row[0])!r}, expected {_SCHEMA_VERSION!r}")

    @property
    def conn(self) -> Connection:
        return self.sql.conn

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction; nested calls join the outer one."""
        with self.sql.tx() as conn:
            yield conn

    def meta_secret(self, key: str, nbytes: int = 32) -> bytes:
        """A random server secret stored once (created on first use)."""
        return self.meta_value(key, lambda: secrets.token_bytes(nbytes))

    def meta_value(self, key: str, make) -> bytes:
        """A server value stored once; `make()` builds it the first time (the first node wins)."""
        with self.tx() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            if row is not None:
                return bytes(row[0])
            conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, make()))
            return bytes(conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0])

    def close(self) -> None:
        """Close the database if this object opened it (a shared `Database` stays open)."""
        if self._owns:
            self.sql.close()
