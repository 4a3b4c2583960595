"""People who sign in to the web console: passwords, TOTP, sessions.

A console user of an organization is also a user of the access library (`users`
row, with the library role of their console role, see `roles`), so every action
they take runs through the same `Orgs.require` checks as the admin API. The
operator has no user row and acts as `Actor.system("console:<email>")`.

Passwords are argon2id hashes; the optional second factor is TOTP (RFC 6238,
30 s steps, one step of clock drift, a code used once). Failed sign-ins count
against the email and the address (`throttle`). Sessions: `sessions`.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import AuthError, InputError, RequestError
from .actors import Actor, PermissionDenied, now_s
from .roles import OPERATOR, ROLES, may, role
from .throttle import LOGIN_EMAIL, LOGIN_IP, Throttle

if TYPE_CHECKING:
    from .db import AccessDB

__all__ = ["ConsoleUser", "ConsoleUsers", "SignInError", "MIN_PASSWORD"]

MIN_PASSWORD = 12
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")
_hasher = PasswordHasher()
# Spent on unknown emails so a miss costs what a wrong password costs.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class SignInError(AuthError):
    """Sign-in refused: wrong email/password/code (401) or throttled (429, `retry_after`)."""

    def __init__(self, message: str, status: int = 401, retry_after: int | None = None):
        super().__init__(message, status=status, oauth_error="access_denied")
        self.retry_after = retry_after


@dataclass(frozen=True)
class ConsoleUser:
    id: int
    email: str
    name: str
    org_id: str | None
    user_id: int | None
    role: str
    has_totp: bool
    active: bool
    created_at: float

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR

    @property
    def role_title(self) -> str:
        return ROLES[self.role].title

    def actor(self) -> Actor:
        """Who the access library sees acting."""
        return Actor.system(f"console:{self.email}") if self.is_operator else Actor.user(self.user_id or 0)

    def may(self, permission: str) -> bool:
        return self.active and may(self.role, permission)


_COLS = "id, email, name, org_id, user_id, role, totp_secret IS NOT NULL, active, created_at"


def _cu(row) -> ConsoleUser:
    return ConsoleUser(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), bool(row[7]), row[8])


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InputError(f"password: at least {MIN_PASSWORD} characters")


class ConsoleUsers:
    """Console user administration, sign-in and permission checks over an AccessDB."""

    def __init__(self, db: AccessDB):
        self.db = db
        self.throttle = Throttle(db)

    # -- lookups -------------------------------------------------------------------------
    def get(self, cu_id: int) -> ConsoleUser:
        row = self.db.conn.execute(f"SELECT {_COLS} FROM console_users WHERE id=?", (int(cu_id),)).fetchone()
        if row is None:
            raise RequestError(f"console user {cu_id} does not exist", status=404, param="user")
        return _cu(row)

    def by_email(self, email: str) -> ConsoleUser | None:
        row = self.db.conn.execute(f"SELECT {_COLS} FROM console_users WHERE email=?",
                                   (email.strip().lower(),)).fetchone()
        return _cu(row) if row else None

    def list(self, org_id: str | None = None) -> list[ConsoleUser]:
        if org_id is None:
            rows = self.db.conn.execute(f"SELECT {_COLS} FROM console_users ORDER BY org_id, id")
        else:
            rows = self.db.conn.execute(f"SELECT {_COLS} FROM console_users WHERE org_id=? ORDER BY id", (org_id,))
        return [_cu(r) for r in rows]

    # -- permission checks -----------------------------------------------------------------
    def require(self, cu: ConsoleUser, permission: str, org_id: str | None, now: float | None = None) -> None:
        """PermissionDenied (audited) unless `cu` holds `permission` for `org_id`.

        Organization people act only in their own organization; the operator's
        permissions hold for every organization."""
        fresh = self.get(cu.id)  # re-read: a removed user or changed role counts at once
        reason = None
        if not fresh.active:
            reason = f"{fresh.email} is not active"
        elif not may(fresh.role, permission):
            reason = f"{permission} is not allowed to a {fresh.role_title}"
        elif not fresh.is_operator and (org_id is None or fresh.org_id != org_id):
            reason = f"{fresh.email} does not belong to organization {org_id}"
        if reason:
            with self.db.tx():
                self.db.audit.record(f"console.{permission}", actor=fresh.actor(), org_id=org_id, outcome="denied",
                                     now=now, reason=reason)
            raise PermissionDenied(reason)

    # -- administration ----------------------------------------------------------------------
    def create(
        self,
        actor: Actor,
        email: str,
        name: str,
        role_name: str,
        org_id: str | None = None,
        *,
        title: str = "",
        password: str | None = None,
        now: float | None = None,
    ) -> tuple[ConsoleUser, str]:
        """A console user (the operator only); returns the user and their first password
        (generated unless given: hand it over once, the database keeps only its hash)."""
        if actor.kind != "system":
            with self.db.tx():
                self.db.audit.record("console.user.create", actor=actor, org_id=org_id, outcome="denied", now=now,
                                     reason="console users are created by the operator")
            raise PermissionDenied("console users are created by the operator (or a sponsor's Attestor)")
        return self._create(actor, email, name, role_name, org_id, title, password, now)

    def _create(self, actor, email, name, role_name, org_id, title, password, now) -> tuple[ConsoleUser, str]:
        r = role(role_name)
        email = (email or "").strip().lower()
        if not _EMAIL.match(email):
            raise InputError(f"email {email!r}: not an email address")
        if not (name or "").strip():
            raise InputError("name: required")
        if self.by_email(email) is not None:
            raise InputError(f"email {email}: a console user already has it")
        if r.name == OPERATOR:
            if org_id:
                raise InputError("an operator belongs to no organization")
        else:
            if not org_id:
                raise InputError(f"a {r.title} belongs to an organization: organization is required")
            org = self.db.orgs.get(org_id)
            if org.kind not in r.kinds:
                raise InputError(f"role {r.title} is not offered to a {org.kind} organization "
                                 f"(roles there: {', '.join(x.title for x in ROLES.values() if org.kind in x.kinds)})")
        password = password if password is not None else secrets.token_urlsafe(12)
        _check_password(password)
        t = now_s(now)
        with self.db.tx() as conn:
            user_id = None
            if r.library_role is not None:
                user, _ = self.db.orgs.add_user(actor, org_id, name, email, r.library_role, title, now=t)
                user_id = user.id
            (cu_id,) = conn.execute(
                "INSERT INTO console_users(email, name, org_id, user_id, role, password_hash, created_at, password_at)"
                " VALUES (?,?,?,?,?,?,?,?) RETURNING id",
                (email, name.strip(), org_id or None, user_id, r.name, _hasher.hash(password), t, t),
            ).fetchone()
            self.db.audit.record("console.user.create", actor=actor, org_id=org_id, now=t, console_user=cu_id,
                                 email=email, role=r.name)
        return self.get(cu_id), password

    def assign_specialist(self, by: ConsoleUser, org_id: str, email: str, name: str,
                          now: float | None = None) -> tuple[ConsoleUser, str]:
        """A sponsor's Attestor assigns a Data Operations Specialist (first password returned once)."""
        self.require(by, "specialist.assign", org_id, now)
        return self._create(Actor.system(f"assigned-by:{by.email}"), email, name, "data_operations_specialist",
                            org_id, "", None, now)

    def deactivate(self, actor: Actor, cu_id: int, now: float | None = None) -> None:
        """The person leaves: sessions end, the library user leaves (attestations end)."""
        if actor.kind != "system":
            raise PermissionDenied("console users are removed by the operator")
        cu = self.get(cu_id)
        with self.db.tx() as conn:
            conn.execute("UPDATE console_users SET active=0 WHERE id=?", (cu.id,))
            conn.execute("DELETE FROM console_sessions WHERE console_user_id=?", (cu.id,))
            if cu.user_id is not None and self.db.orgs.user(cu.user_id).active:
                self.db.orgs.remove_user(actor, cu.user_id, now)
            self.db.audit.record("console.user.deactivate", actor=actor, org_id=cu.org_id, now=now,
                                 console_user=cu.id, email=cu.email)

    def change_role(self, actor: Actor, cu_id: int, role_name: str, *, title: str = "",
                    now: float | None = None) -> ConsoleUser:
        """The operator gives a person another role of their organization's kind. When the
        library role changes, the old library user leaves (ending their attestations) and a
        new one with the new role takes their place; their sessions end either way."""
        if actor.kind != "system":
            raise PermissionDenied("roles are changed by the operator")
        cu, r = self.get(cu_id), role(role_name)
        if not cu.active:
            raise InputError(f"{cu.email} was removed")
        if (r.name == OPERATOR) != cu.is_operator:
            raise InputError("an operator stays an operator; an organization's person stays in the organization")
        if cu.org_id is not None:
            kind = self.db.orgs.get(cu.org_id).kind
            if kind not in r.kinds:
                raise InputError(f"role {r.title} is not offered to a {kind} organization")
        t = now_s(now)
        with self.db.tx() as conn:
            user_id = cu.user_id
            old = self.db.orgs.user(cu.user_id) if cu.user_id is not None else None
            if old is not None and (old.role != r.library_role or (r.needs_title and old.title != title.upper())):
                self.db.orgs.remove_user(actor, old.id, t)
                user_id = self.db.orgs.add_user(actor, old.org_id, old.name, old.email, r.library_role or "", title,
                                                now=t)[0].id
            conn.execute("UPDATE console_users SET role=?, user_id=? WHERE id=?", (r.name, user_id, cu.id))
            conn.execute("DELETE FROM console_sessions WHERE console_user_id=?", (cu.id,))
            self.db.audit.record("console.user.role", actor=actor, org_id=cu.org_id, now=t, console_user=cu.id,
                                 old=cu.role, new=r.name)
        return self.get(cu.id)

    def reset_password(self, actor: Actor, cu_id: int, now: float | None = None) -> str:
        """The forgotten-password path without email: the operator sets a new random
        password (returned once) and ends the person's sessions."""
        if actor.kind != "system":
            raise PermissionDenied("passwords are reset by the operator")
        cu = self.get(cu_id)
        password = secrets.token_urlsafe(12)
        t = now_s(now)
        with self.db.tx() as conn:
            conn.execute("UPDATE console_users SET password_hash=?, password_at=? WHERE id=?",
                         (_hasher.hash(password), t, cu.id))
            conn.execute("DELETE FROM console_sessions WHERE console_user_id=?", (cu.id,))
            self.db.audit.record("console.password.reset", actor=actor, org_id=cu.org_id, now=t, console_user=cu.id)
        return password

    def reset_totp(self, actor: Actor, cu_id: int, now: float | None = None) -> None:
        """A lost authenticator: the operator turns the second factor off (the person turns it
        on again with a new key); their sessions end."""
        if actor.kind != "system":
            raise PermissionDenied("two-step sign-in is reset by the operator")
        cu = self.get(cu_id)
        with self.db.tx() as conn:
            conn.execute("UPDATE console_users SET totp_secret=NULL, totp_step=0 WHERE id=?", (cu.id,))
            conn.execute("DELETE FROM console_sessions WHERE console_user_id=?", (cu.id,))
            self.db.audit.record("console.totp.reset", actor=actor, org_id=cu.org_id, now=now, console_user=cu.id)

    def change_password(self, cu: ConsoleUser, old: str, new: str, now: float | None = None, *,
                        keep_session: bytes | None = None) -> None:
        """A new password; every session of the person ends except `keep_session` (the one
        asking, by its token hash)."""
        row = self.db.conn.execute("SELECT password_hash FROM console_users WHERE id=?", (cu.id,)).fetchone()
        if row is None or not _verify(row[0], old):
            raise InputError("current password: not correct")
        _check_password(new)
        with self.db.tx() as conn:
            conn.execute("UPDATE console_users SET password_hash=?, password_at=? WHERE id=?",
                         (_hasher.hash(new), now_s(now), cu.id))
            conn.execute("DELETE FROM console_sessions WHERE console_user_id=? AND token_hash != ?",
                         (cu.id, keep_session or b""))
            self.db.audit.record("console.password.change", actor=cu.actor(), org_id=cu.org_id, now=now)

    # -- second factor -------------------------------------------------------------------------
    @staticmethod
    def new_totp_secret() -> str:
        return pyotp.random_base32()

    def enable_totp(self, cu: ConsoleUser, secret: str, code: str, now: float | None = None) -> None:
        """Turn TOTP on once the person proved their app holds `secret` with a current code."""
        if not re.fullmatch(r"[A-Z2-7]{32}", secret or ""):
            raise InputError("TOTP secret: not one this server made")
        step = _totp_step(secret, code, now_s(now))
        if step is None:
            raise InputError("code: not the current code of your authenticator app")
        with self.db.tx() as conn:
            conn.execute("UPDATE console_users SET totp_secret=?, totp_step=? WHERE id=?", (secret, step, cu.id))
            self.db.audit.record("console.totp.enable", actor=cu.actor(), org_id=cu.org_id, now=now)

    def check_totp(self, cu: ConsoleUser, code: str, ip: str | None, now: float | None = None) -> None:
        """SignInError unless `code` is a current, unused TOTP code of `cu` (throttled like passwords)."""
        t = now_s(now)
        keys = {f"login:email:{cu.email}": LOGIN_EMAIL, f"login:ip:{ip}": LOGIN_IP}
        self._throttled(keys, t, cu.email, ip)
        row = self.db.conn.execute("SELECT totp_secret, totp_step FROM console_users WHERE id=?", (cu.id,)).fetchone()
        step = _totp_step(row[0], code, t) if row and row[0] else None
        if step is None or step <= row[1]:
            self.throttle.failed(keys, t)
            self._audit_sign_in(cu.email, cu.org_id, ip, t, "denied", reason="wrong or reused TOTP code")
            raise SignInError("that code is not valid (or was used already)")
        with self.db.tx() as conn:
            conn.execute("UPDATE console_users SET totp_step=? WHERE id=?", (step, cu.id))
        self.throttle.succeeded(keys)
        self._audit_sign_in(cu.email, cu.org_id, ip, t, "ok", factor="totp")

    # -- sign-in -------------------------------------------------------------------------------
    def sign_in(self, email: str, password: str, ip: str | None, now: float | None = None) -> ConsoleUser:
        """The active user with this email and password (SignInError otherwise, 429 when throttled)."""
        t = now_s(now)
        email = (email or "").strip().lower()[:256]
        keys = {f"login:email:{email}": LOGIN_EMAIL, f"login:ip:{ip}": LOGIN_IP}
        self._throttled(keys, t, email, ip)
        row = self.db.conn.execute(
            f"SELECT {_COLS}, password_hash FROM console_users WHERE email=?", (email,)
        ).fetchone()
        ok = _verify(row[9] if row else _DUMMY_HASH, password or "") and row is not None and bool(row[7])
        if not ok:
            self.throttle.failed(keys, t)
            self._audit_sign_in(email, row[3] if row else None, ip, t, "denied", reason="wrong email or password")
            raise SignInError("email or password is not correct")
        self.throttle.succeeded(keys)
        cu = _cu(row[:9])
        self._audit_sign_in(email, cu.org_id, ip, t, "ok", factor="password")
        return cu

    def _throttled(self, keys: dict, t: float, email: str, ip: str | None) -> None:
        wait = self.throttle.wait(keys, t)
        if wait:
            cu = self.by_email(email)
            self._audit_sign_in(email, cu.org_id if cu else None, ip, t, "denied", reason=f"throttled for {wait} s")
            raise SignInError(f"too many failed attempts; try again in {wait} s", status=429, retry_after=wait)

    def _audit_sign_in(self, email, org_id, ip, t, outcome, **detail) -> None:
        with self.db.tx():
            self.db.audit.record("console.sign_in", actor=f"console:{email}", org_id=org_id, outcome=outcome, ip=ip,
                                 now=t, **detail)


def _verify(digest: str, password: str) -> bool:
    try:
        return _hasher.verify(digest, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _totp_step(secret: str, code: str, t: float) -> int | None:
    """The 30 s step whose code `code` is (current step ± 1), else None."""
    code = (code or "").strip().replace(" ", "")
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(t // 30)
    for step in (now_step, now_step - 1, now_step + 1):
        if hmac.compare_digest(totp.at(step * 30), code):
            return step
    return None
