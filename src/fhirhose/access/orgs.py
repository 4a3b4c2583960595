"""Organizations, their users and roles, contracts and attestations.

Roles (per organization):

- `attestor`: holds a CEO, CFO or COO title; attests (per contract for Part D
  sponsors); several may attest.
- `data_ops`: data operations specialist / credential delegate: manages
  credentials, IP allowlists and public keys; asks for production access.
- `read_only`: reads credentials' metadata, attestation and audit entries.

The CMS-side operator (`Actor.system`) creates organizations and users.
Every action is audited, refusals included.
"""

from __future__ import annotations

import builtins
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import AuthError, InputError, RequestError
from .actors import ATTESTOR, DATA_OPS, READ_ONLY, ROLES, Actor, PermissionDenied, check_secret, hash_secret, now_s

if TYPE_CHECKING:
    from .db import AccessDB

__all__ = [
    "ATTESTOR",
    "DATA_OPS",
    "READ_ONLY",
    "ROLES",
    "Org",
    "User",
    "Orgs",
    "PermissionDenied",
    "hash_secret",
    "check_secret",
]

_ORG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_INF = float("inf")


@dataclass(frozen=True)
class Org:
    id: str
    kind: str
    name: str
    active: bool
    created_at: float
    production_at: float | None
    sandbox_job: str | None


@dataclass(frozen=True)
class User:
    id: int
    org_id: str
    name: str
    email: str
    role: str
    title: str
    active: bool
    created_at: float
    left_at: float | None


_ORG_COLS = "id, kind, name, active, created_at, production_at, sandbox_job"
_USER_COLS = "id, org_id, name, email, role, title, active, created_at, left_at"


def _org(row) -> Org:
    return Org(row[0], row[1], row[2], bool(row[3]), row[4], row[5], row[6])


def _user(row) -> User:
    return User(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), row[7], row[8])


def merge_periods(spans: Iterable[tuple[float, float | None]], grace: float) -> list[tuple[float, float]]:
    """Merge [start, end) attestation spans; gaps up to `grace` seconds do not break a period."""
    out: list[list[float]] = []
    for start, end in sorted((s, _INF if e is None else e) for s, e in spans):
        if out and start <= out[-1][1] + grace:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


class Orgs:
    """Organization administration over an AccessDB (see module doc for roles)."""

    def __init__(self, db: AccessDB):
        self.db = db

    # -- lookups ----------------------------------------------------------------
    def get(self, org_id: str) -> Org:
        row = self.db.conn.execute(f"SELECT {_ORG_COLS} FROM orgs WHERE id=?", (org_id,)).fetchone()
        if row is None:
            raise RequestError(f"organization {org_id!r} does not exist", status=404, param="org")
        return _org(row)

    def list(self) -> list[Org]:
        return [_org(r) for r in self.db.conn.execute(f"SELECT {_ORG_COLS} FROM orgs ORDER BY id")]

    def user(self, user_id: int) -> User:
        row = self.db.conn.execute(f"SELECT {_USER_COLS} FROM users WHERE id=?", (int(user_id),)).fetchone()
        if row is None:
            raise RequestError(f"user {user_id} does not exist", status=404, param="user")
        return _user(row)

    def users(self, org_id: str) -> builtins.list[User]:  # builtins.: in this class `list` is the method
        rows = self.db.conn.execute(f"SELECT {_USER_COLS} FROM users WHERE org_id=? ORDER BY id", (org_id,))
        return [_user(r) for r in rows]

    def contracts(self, org_id: str) -> builtins.list[str]:
        rows = self.db.conn.execute("SELECT contract_id FROM contracts WHERE org_id=? ORDER BY contract_id", (org_id,))
        return [r[0] for r in rows]

    # -- permission checks --------------------------------------------------------
    def require(self, actor: Actor, org_id: str | None, roles: tuple[str, ...], action: str, now=None) -> None:
        """Raise PermissionDenied (and audit it) unless `actor` may do `action` on `org_id`.

        The operator may do everything; a user only with one of `roles`, while
        active, in that organization."""
        if actor.kind == "system":
            return
        reason = None
        if actor.kind != "user" or actor.user_id is None:
            reason = "unknown actor"
        else:
            row = self.db.conn.execute(f"SELECT {_USER_COLS} FROM users WHERE id=?", (actor.user_id,)).fetchone()
            u = _user(row) if row else None
            if u is None or not u.active:
                reason = f"{actor} is not an active user"
            elif org_id is None or u.org_id != org_id:
                reason = f"{actor} does not belong to organization {org_id}"
            elif u.role not in roles:
                reason = f"{action} needs role {' or '.join(roles)}; {actor} is {u.role}"
        if reason:
            with self.db.tx():
                self.db.audit.record(action, actor=actor, org_id=org_id, outcome="denied", now=now, reason=reason)
            raise PermissionDenied(reason)

    # -- operator actions ---------------------------------------------------------
    def create(self, actor: Actor, org_id: str, kind: str, name: str, now: float | None = None) -> Org:
        """Register an organization of `kind` (see config.KINDS)."""
        self._system_only(actor, "org.create", org_id, now)
        if not _ORG_ID.match(org_id or ""):
            raise InputError(f"organization id {org_id!r}: 1-32 letters, digits, '-' or '_'")
        if kind not in self.db.config.kinds:
            raise InputError(f"organization kind {kind!r}: not one of {', '.join(self.db.config.kinds)}")
        rules = self.db.config.rules(kind)
        if not rules.matches_id(org_id):
            raise InputError(f"organization id {org_id!r}: a {rules.title} id matches {rules.id_pattern}")
        if not name.strip():
            raise InputError("organization name is empty")
        t = now_s(now)
        with self.db.tx() as conn:
            if conn.execute("SELECT 1 FROM orgs WHERE id=?", (org_id,)).fetchone():
                raise InputError(f"organization {org_id!r} already exists")
            conn.execute("INSERT INTO orgs(id, kind, name, created_at) VALUES (?,?,?,?)", (org_id, kind, name, t))
            self.db.audit.record("org.create", actor=actor, org_id=org_id, now=t, kind=kind, name=name)
        return self.get(org_id)

    def set_active(self, actor: Actor, org_id: str, active: bool, now: float | None = None) -> None:
        """Suspend or reinstate an organization (a suspended one gets no tokens and no data)."""
        self._system_only(actor, "org.set_active", org_id, now)
        self.get(org_id)
        with self.db.tx() as conn:
            conn.execute("UPDATE orgs SET active=? WHERE id=?", (int(active), org_id))
            self.db.audit.record("org.set_active", actor=actor, org_id=org_id, now=now, active=active)

    def add_contract(self, actor: Actor, org_id: str, contract_id: str, now: float | None = None) -> None:
        """Assign a Part D contract (e.g. S1234) to a sponsor organization."""
        self._system_only(actor, "contract.add", org_id, now)
        org = self.get(org_id)
        if org.kind != "sponsor":
            raise InputError(f"organization {org_id}: only Part D sponsors hold contracts ({org.kind})")
        if not re.match(r"^[A-Z0-9]{5}$", contract_id or ""):
            raise InputError(f"contract id {contract_id!r}: 5 letters or digits (e.g. S1234)")
        with self.db.tx() as conn:
            owner = conn.execute("SELECT org_id FROM contracts WHERE contract_id=?", (contract_id,)).fetchone()
            if owner:
                raise InputError(f"contract {contract_id} already belongs to {owner[0]}")
            conn.execute("INSERT INTO contracts VALUES (?, ?)", (contract_id, org_id))
            self.db.audit.record("contract.add", actor=actor, org_id=org_id, now=now, contract=contract_id)

    def add_user(
        self, actor: Actor, org_id: str, name: str, email: str, role: str, title: str = "", now: float | None = None
    ) -> tuple[User, str]:
        """Add a user; returns the user and their personal admin key (shown once)."""
        self._system_only(actor, "user.add", org_id, now)
        self.get(org_id)
        if role not in ROLES:
            raise InputError(f"role {role!r}: not one of {', '.join(ROLES)}")
        titles = self.db.config.attestor_titles
        if role == ATTESTOR and title.upper() not in titles:
            raise InputError(f"an attestor must hold title {', '.join(titles)}; got {title!r}")
        if not name.strip() or "@" not in email:
            raise InputError(f"user needs a name and an email address; got {name!r}, {email!r}")
        secret = secrets.token_urlsafe(24)
        salt, digest, _ = hash_secret(secret, self.db.config)
        t = now_s(now)
        with self.db.tx() as conn:
            (uid,) = conn.execute(
                "INSERT INTO users(org_id, name, email, role, title, created_at, key_salt, key_hash)"
                " VALUES (?,?,?,?,?,?,?,?) RETURNING id",
                (org_id, name, email, role, title.upper() if role == ATTESTOR else title, t, salt, digest),
            ).fetchone()
            self.db.audit.record("user.add", actor=actor, org_id=org_id, now=t, user=uid, role=role)
        return self.user(uid), f"u{uid}.{secret}"

    def remove_user(self, actor: Actor, user_id: int, now: float | None = None) -> None:
        """The user leaves: their key stops working and their attestations end now."""
        u = self.user(user_id)
        self._system_only(actor, "user.remove", u.org_id, now)
        t = now_s(now)
        with self.db.tx() as conn:
            conn.execute("UPDATE users SET active=0, left_at=? WHERE id=?", (t, u.id))
            conn.execute("UPDATE attestations SET ended_at=? WHERE user_id=? AND ended_at IS NULL", (t, u.id))
            self.db.audit.record("user.remove", actor=actor, org_id=u.org_id, now=t, user=u.id, role=u.role)

    def authenticate(self, key: str) -> User:
        """The active user owning a personal admin key `u<id>.<secret>` (401 otherwise)."""
        m = re.fullmatch(r"u(\d{1,12})\.([A-Za-z0-9_-]{1,128})", key or "")
        row = None
        if m:
            row = self.db.conn.execute(
                f"SELECT {_USER_COLS}, key_salt, key_hash FROM users WHERE id=?", (int(m.group(1)),)
            ).fetchone()
        cfg = self.db.config
        kdf = f"scrypt:{cfg.scrypt_n}:{cfg.scrypt_r}:{cfg.scrypt_p}"
        if row is None:
            # Spend the same work as a real check so timing does not reveal user ids.
            hash_secret(key or "", cfg)
            raise AuthError("admin key is not valid", status=401, oauth_error="invalid_token")
        if m is None or not check_secret(m.group(2), bytes(row[9]), bytes(row[10]), kdf) or not row[6]:
            raise AuthError("admin key is not valid", status=401, oauth_error="invalid_token")
        return _user(row[:9])

    # -- attestation --------------------------------------------------------------
    def attest(self, actor: Actor, org_id: str, contract_id: str | None = None, now: float | None = None) -> None:
        """An attestor attests for the organization (for one contract, for sponsors)."""
        self.require(actor, org_id, (ATTESTOR,), "attest", now)
        if actor.kind != "user":
            raise PermissionDenied("only an attestor (a user with a CEO, CFO or COO title) can attest")
        org = self.get(org_id)
        contract = self._contract_arg(org, contract_id)
        t = now_s(now)
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO attestations(org_id, contract_id, user_id, attested_at) VALUES (?,?,?,?)",
                (org_id, contract, actor.user_id, t),
            )
            self.db.audit.record("attest", actor=actor, org_id=org_id, now=t, contract=contract)

    def _contract_arg(self, org: Org, contract_id: str | None) -> str:
        if org.kind != "sponsor":
            if contract_id:
                raise InputError(f"organization {org.id} ({org.kind}) attests without a contract")
            return ""
        if not contract_id:
            raise InputError(f"sponsor {org.id}: attest names a contract ({', '.join(self.contracts(org.id))})")
        if contract_id not in self.contracts(org.id):
            raise InputError(f"contract {contract_id} does not belong to {org.id}")
        return contract_id

    def attestation_start(self, org_id: str, contract_id: str = "", now: float | None = None) -> float | None:
        """Start of the attestation period in force at `now`, or None when nobody attests.

        Periods of overlapping attestations merge; after the last attestor
        leaves, data stops (after the configured grace) and a new attestation
        starts a new period, so data starts again from its date."""
        t = now_s(now)
        grace = self.db.config.attestation_grace_days * 86400.0
        spans = self.db.conn.execute(
            "SELECT attested_at, ended_at FROM attestations WHERE org_id=? AND contract_id=? AND attested_at<=?",
            (org_id, contract_id, t),
        ).fetchall()
        for start, end in reversed(merge_periods(spans, grace)):
            if start <= t < end + grace:
                return start
        return None

    def attested_contracts(self, org_id: str, now: float | None = None) -> dict[str, float]:
        """Contract (or '' for the organization) → attestation start, for those attested at `now`."""
        org = self.get(org_id)
        keys = self.contracts(org_id) if org.kind == "sponsor" else [""]
        out = {}
        for k in keys:
            start = self.attestation_start(org_id, k, now)
            if start is not None:
                out[k] = start
        return out

    def request_production(
        self,
        actor: Actor,
        org_id: str,
        sandbox_job_id: str,
        job_completed: Callable[[str, str], bool],
        now: float | None = None,
    ) -> None:
        """Unlock production credentials: needs an attestation in force and the id of
        a completed sandbox export of this organization (`job_completed(job_id, org_id)`)."""
        self.require(actor, org_id, (DATA_OPS, ATTESTOR), "production.request", now)
        if not self.attested_contracts(org_id, now):
            self._refuse(actor, org_id, "production.request", now, f"organization {org_id} has no attestation in force")
        if not sandbox_job_id or not job_completed(str(sandbox_job_id), org_id):
            self._refuse(
                actor, org_id, "production.request", now, f"job {sandbox_job_id!r} is not a completed sandbox export of {org_id}"
            )
        with self.db.tx() as conn:
            conn.execute("UPDATE orgs SET production_at=?, sandbox_job=? WHERE id=?", (now_s(now), str(sandbox_job_id), org_id))
            self.db.audit.record("production.request", actor=actor, org_id=org_id, now=now, job=sandbox_job_id)

    def _refuse(self, actor: Actor, org_id: str | None, action: str, now, reason: str):
        with self.db.tx():
            self.db.audit.record(action, actor=actor, org_id=org_id, outcome="denied", now=now, reason=reason)
        raise PermissionDenied(reason)

    def _system_only(self, actor: Actor, action: str, org_id: str | None, now) -> None:
        if actor.kind != "system":
            self._refuse(actor, org_id, action, now, f"{action} is for the CMS operator only")
