"""Console roles per organization kind and what each may do: the one permission table.

The roles are the ones CMS's model systems use:

- Shared Savings Program ACOs (ACO-MS): only a Credential Delegate manages
  credentials; an ACO Executive reads.
- ACO REACH and Kidney Care Choices (4innovation): Executive Contact, Entity
  Primary Contact, Entity Secondary Contact, DUA Requestor and DUA Custodian may
  all manage credentials.
- Part D sponsors (AB2D): an Attestor (CEO, CFO or COO) attests per contract,
  assigns the Data Operations Specialist and receives production credentials; the
  specialist manages credentials and submits the onboarding request.
- Provider practices (DPC): a Practice Administrator.
- The CMS operator: organizations, users, approvals, every audit entry.

Each role maps onto one of the access library's three roles (`orgs.ROLES`), which the
library checks on every call: `library_role` is derived from the permissions, so
this table and the library cannot disagree (a test checks both ways).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from .actors import ATTESTOR, DATA_OPS, READ_ONLY

__all__ = ["Role", "ROLES", "OPERATOR", "PERMISSIONS", "role", "roles_for", "may"]

OPERATOR = "operator"

# permission → what it allows (shown on the users page)
PERMISSIONS: dict[str, str] = {
    "credentials.read": "see the organization's credentials",
    "credentials.manage": "create, rotate and revoke credentials; keys and IP allowlists",
    "attest": "attest for the organization (per contract for Part D)",
    "specialist.assign": "assign a Data Operations Specialist",
    "onboarding.submit": "submit the sandbox job and static IPs for production",
    "production.release": "receive the production credential once approved",
    "data.read": "see attribution, jobs, manifests and files",
    "audit.read": "read the organization's audit trail",
    "orgs.manage": "create organizations, contracts, suspend",
    "users.manage": "create users, assign roles, reset passwords",
    "onboarding.approve": "review and approve production onboarding",
    "audit.all": "search every organization's audit trail",
    "service.read": "see all jobs and the service health",
}

_READ = frozenset({"credentials.read", "data.read", "audit.read"})
_MANAGE = _READ | {"credentials.manage"}


@dataclass(frozen=True)
class Role:
    """A console role: who holds it (organization kinds), what it may do."""

    name: str
    title: str
    kinds: tuple[str, ...]  # organization kinds; () for the operator
    permissions: frozenset[str]
    needs_title: bool = False  # an attestor holds CEO, CFO or COO

    @property
    def library_role(self) -> str | None:
        """The access library role the user row gets (None: the operator, no user row)."""
        if not self.kinds:
            return None
        if "credentials.manage" in self.permissions:
            return DATA_OPS
        if "attest" in self.permissions:
            return ATTESTOR
        return READ_ONLY


_ACO_4I = ("reach", "kcc")
ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("credential_delegate", "Credential Delegate", ("ssp",), _MANAGE),
        Role("aco_executive", "ACO Executive", ("ssp",), _READ),
        Role("executive_contact", "Executive Contact", _ACO_4I, _MANAGE),
        Role("entity_primary_contact", "Entity Primary Contact", _ACO_4I, _MANAGE),
        Role("entity_secondary_contact", "Entity Secondary Contact", _ACO_4I, _MANAGE),
        Role("dua_requestor", "DUA Requestor", _ACO_4I, _MANAGE),
        Role("dua_custodian", "DUA Custodian", _ACO_4I, _MANAGE),
        Role("attestor", "Attestor", ("sponsor",),
             _READ | {"attest", "specialist.assign", "production.release"}, needs_title=True),
        Role("data_operations_specialist", "Data Operations Specialist", ("sponsor",),
             _MANAGE | {"onboarding.submit"}),
        Role("practice_administrator", "Practice Administrator", ("provider",), _MANAGE),
        Role(OPERATOR, "Operator", (), _READ | {
            "orgs.manage", "users.manage", "onboarding.approve", "audit.all", "service.read"}),
    )
}


def role(name: str) -> Role:
    """The role called `name` (InputError naming the known ones otherwise)."""
    try:
        return ROLES[name]
    except KeyError:
        raise InputError(f"role {name!r}: not one of {', '.join(ROLES)}") from None


def roles_for(kind: str) -> list[Role]:
    """The roles an organization of `kind` can give its people."""
    return [r for r in ROLES.values() if kind in r.kinds]


def may(role_name: str, permission: str) -> bool:
    """Whether `role_name` holds `permission` (unknown roles hold nothing)."""
    r = ROLES.get(role_name)
    return r is not None and permission in r.permissions
