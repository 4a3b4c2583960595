"""Production onboarding as AB2D runs it, and what each organization still lacks.

1. An Attestor attests (per contract) — `Orgs.attest`.
2. The Attestor assigns a Data Operations Specialist — `ConsoleUsers.assign_specialist`.
3. The specialist submits the id of a completed sandbox export and the static IPs
   (at most `max_ips`) — `Onboarding.submit`.
4. The operator reviews and approves — `Onboarding.approve`, which runs the library's
   `Orgs.request_production` (attestation in force, sandbox job completed) as the operator.
5. An Attestor releases the production credential (its secret shown once, its
   allowlist the approved IPs) to hand to the specialist — `Onboarding.release`.

`checklist()` says, per organization, which of these steps are missing and why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InputError, RequestError
from .actors import ATTESTOR, DATA_OPS, Actor, PermissionDenied, now_s
from .credentials import Credential, _network

if TYPE_CHECKING:
    from .db import AccessDB

__all__ = ["Onboarding", "OnboardingRequest", "Step"]

JobCompleted = Callable[[str, str], bool]


@dataclass(frozen=True)
class OnboardingRequest:
    id: int
    org_id: str
    job_id: str
    ips: tuple[str, ...]
    status: str  # pending | approved | rejected | released
    submitted_by: str
    submitted_at: float
    reviewed_by: str | None
    reviewed_at: float | None
    note: str
    credential_id: str | None
    released_at: float | None


@dataclass(frozen=True)
class Step:
    """One onboarding step: done or not, and why it matters / what to do."""

    name: str
    done: bool
    why: str


_COLS = ("id, org_id, job_id, ips, status, submitted_by, submitted_at, reviewed_by, reviewed_at, note,"
         " credential_id, released_at")


def _req(row) -> OnboardingRequest:
    return OnboardingRequest(row[0], row[1], row[2], tuple(json.loads(row[3])), *row[4:])


class Onboarding:
    """Onboarding requests over an AccessDB."""

    def __init__(self, db: AccessDB):
        self.db = db

    def get(self, request_id: int) -> OnboardingRequest:
        row = self.db.conn.execute(f"SELECT {_COLS} FROM onboarding WHERE id=?", (int(request_id),)).fetchone()
        if row is None:
            raise RequestError(f"onboarding request {request_id} does not exist", status=404, param="request")
        return _req(row)

    def for_org(self, org_id: str) -> list[OnboardingRequest]:
        rows = self.db.conn.execute(f"SELECT {_COLS} FROM onboarding WHERE org_id=? ORDER BY id DESC", (org_id,))
        return [_req(r) for r in rows]

    def pending(self) -> list[OnboardingRequest]:
        """The operator's queue, oldest first."""
        rows = self.db.conn.execute(f"SELECT {_COLS} FROM onboarding WHERE status='pending' ORDER BY id")
        return [_req(r) for r in rows]

    def submit(self, actor: Actor, org_id: str, job_id: str, ips: list[str], job_completed: JobCompleted,
               now: float | None = None) -> OnboardingRequest:
        """The specialist asks for production: a completed sandbox export and the static IPs."""
        self.db.orgs.require(actor, org_id, (DATA_OPS,), "onboarding.submit", now)
        nets = sorted({str(_network(i)) for i in ips if i.strip()})
        if not nets:
            raise InputError("IP addresses: at least one static address or CIDR range is required")
        if len(nets) > self.db.config.max_ips:
            raise InputError(f"IP addresses: {len(nets)} entries; at most {self.db.config.max_ips}")
        job_id = (job_id or "").strip()
        if not self.db.orgs.attested_contracts(org_id, now):
            self._refuse(actor, org_id, now,
                         f"organization {org_id} has no attestation in force; an Attestor attests first")
        if not job_id or not job_completed(job_id, org_id):
            self._refuse(actor, org_id, now, f"job {job_id!r} is not a completed sandbox export of {org_id}")
        t = now_s(now)
        with self.db.tx() as conn:
            if conn.execute("SELECT 1 FROM onboarding WHERE org_id=? AND status='pending'", (org_id,)).fetchone():
                raise InputError(f"organization {org_id} already has a request waiting for review")
            (req_id,) = conn.execute(
                "INSERT INTO onboarding(org_id, job_id, ips, status, submitted_by, submitted_at)"
                " VALUES (?,?,?,'pending',?,?) RETURNING id",
                (org_id, job_id, json.dumps(nets), str(actor), t),
            ).fetchone()
            self.db.audit.record("onboarding.submit", actor=actor, org_id=org_id, now=t, request=req_id,
                                 job=job_id, ips=nets)
        return self.get(req_id)

    def approve(self, actor: Actor, request_id: int, job_completed: JobCompleted, now: float | None = None) -> None:
        """The operator approves: the library's production checks run again now."""
        req = self._reviewable(actor, request_id, "onboarding.approve", now)
        self.db.orgs.request_production(actor, req.org_id, req.job_id, job_completed, now)
        with self.db.tx() as conn:
            conn.execute("UPDATE onboarding SET status='approved', reviewed_by=?, reviewed_at=? WHERE id=?",
                         (str(actor), now_s(now), req.id))
            self.db.audit.record("onboarding.approve", actor=actor, org_id=req.org_id, now=now, request=req.id,
                                 ips=list(req.ips))

    def reject(self, actor: Actor, request_id: int, note: str, now: float | None = None) -> None:
        req = self._reviewable(actor, request_id, "onboarding.reject", now)
        if not note.strip():
            raise InputError("note: say why the request is rejected")
        with self.db.tx() as conn:
            conn.execute("UPDATE onboarding SET status='rejected', reviewed_by=?, reviewed_at=?, note=? WHERE id=?",
                         (str(actor), now_s(now), note.strip(), req.id))
            self.db.audit.record("onboarding.reject", actor=actor, org_id=req.org_id, now=now, request=req.id,
                                 note=note.strip())

    def release(self, actor: Actor, request_id: int, now: float | None = None) -> tuple[Credential, str]:
        """An Attestor receives the production credential of an approved request (once):
        the secret is returned here and never again; its allowlist is the approved IPs."""
        req = self.get(request_id)
        self.db.orgs.require(actor, req.org_id, (ATTESTOR,), "production.release", now)
        if req.status != "approved":
            raise InputError(f"onboarding request {req.id} is {req.status}, not approved")
        t = now_s(now)
        with self.db.tx() as conn:
            # The attestor's own library role may not issue credentials; the approval
            # (checked above, in this transaction) is what lets this one be issued.
            cred, secret = self.db.credentials.issue(
                Actor.system(f"onboarding:{req.id}:released-to:{actor}"), req.org_id, env="production",
                label=f"production (onboarding {req.id})", ips=list(req.ips), now=t,
            )
            conn.execute("UPDATE onboarding SET status='released', credential_id=?, released_at=? WHERE id=?",
                         (cred.id, t, req.id))
            self.db.audit.record("production.release", actor=actor, org_id=req.org_id, credential_id=cred.id, now=t,
                                 request=req.id)
        assert secret is not None
        return cred, secret

    def _reviewable(self, actor: Actor, request_id: int, action: str, now) -> OnboardingRequest:
        req = self.get(request_id)
        if actor.kind != "system":
            self._refuse(actor, req.org_id, now, f"{action} is for the CMS operator only", action)
        if req.status != "pending":
            raise InputError(f"onboarding request {req.id} is {req.status}, not pending")
        return req

    def _refuse(self, actor: Actor, org_id: str, now, reason: str, action: str = "onboarding.submit"):
        with self.db.tx():
            self.db.audit.record(action, actor=actor, org_id=org_id, outcome="denied", now=now, reason=reason)
        raise PermissionDenied(reason)

    # -- what is missing -------------------------------------------------------------------
    def checklist(self, org_id: str, job_completed_any: Callable[[str], bool], now: float | None = None) -> list[Step]:
        """The onboarding steps of `org_id`, in order; `job_completed_any(org_id)` says whether
        the organization has a completed sandbox export."""
        org = self.db.orgs.get(org_id)
        users = [u for u in self.db.orgs.users(org_id) if u.active]
        creds = [c for c in self.db.credentials.list(Actor.system("checklist"), org_id) if c.revoked_at is None]
        sandbox = any(c.env == "sandbox" for c in creds)
        steps: list[Step] = []
        if not org.active:
            steps.append(Step("Organization active", False,
                              "the operator suspended this organization: no tokens, no data"))
        if org.kind == "sponsor":
            contracts = self.db.orgs.contracts(org_id)
            attested = self.db.orgs.attested_contracts(org_id, now)
            steps.append(Step("An active Attestor", any(u.role == ATTESTOR for u in users),
                              "AB2D sends data only while a CEO, CFO or COO attests; the operator adds Attestors"))
            for c in contracts or ["(none)"]:
                steps.append(Step(f"Attestation for contract {c}", c in attested,
                                  "data flows only from the attestation date on" if c in attested else
                                  "no data for this contract until an Attestor attests"))
            steps.append(Step("A Data Operations Specialist", any(u.role == DATA_OPS for u in users),
                              "the Attestor assigns the specialist who manages credentials and submits onboarding"))
        else:
            steps.append(Step("Someone who manages credentials", any(u.role == DATA_OPS for u in users),
                              "only the roles allowed to manage credentials can create them; the operator adds people"))
        steps.append(Step("A sandbox credential", sandbox, "sandbox exports prove the client works before production"))
        steps.append(Step("A completed sandbox export", job_completed_any(org_id),
                          "production needs the id of a successful sandbox export"))
        reqs = self.for_org(org_id)
        latest = reqs[0] if reqs else None
        if org.kind == "sponsor":
            submitted = latest is not None and latest.status in ("pending", "approved", "released")
            steps.append(Step("Onboarding request (sandbox job id and static IPs)", submitted,
                              f"rejected: {latest.note}" if latest is not None and latest.status == "rejected"
                              else "the specialist submits them; the operator reviews the IPs"))
            steps.append(Step("Operator approval", org.production_at is not None,
                              "waiting in the operator's queue" if latest is not None and latest.status == "pending"
                              else "the operator approves the request"))
            steps.append(Step("Production credential released",
                              any(c.env == "production" for c in creds),
                              "an Attestor receives it once and hands it to the specialist"))
        else:
            steps.append(Step("Production approval", org.production_at is not None,
                              "production needs an attestation in force and a completed sandbox export; for this "
                              "kind the operator grants it through the admin API (the console's flow is Part D's)"))
        return steps
