"""Filtered reads of the audit log (the console's audit pages)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .db import AuditEntry

if TYPE_CHECKING:
    from .db import AccessDB

__all__ = ["search_audit"]


def search_audit(
    db: AccessDB,
    *,
    org_id: str | None = None,
    action: str = "",
    outcome: str = "",
    actor: str = "",
    limit: int = 200,
) -> list[AuditEntry]:
    """Newest first. `org_id` None: every organization (the operator's search); `action`
    and `actor` match as prefixes/substrings, `outcome` exactly ("ok" or "denied")."""
    where, args = [], []
    if org_id is not None:
        where.append("org_id = ?")
        args.append(org_id)
    if action:
        where.append("action LIKE ? ESCAPE '\\'")
        args.append(_like(action) + "%")
    if outcome:
        where.append("outcome = ?")
        args.append(outcome)
    if actor:
        where.append("actor LIKE ? ESCAPE '\\'")
        args.append("%" + _like(actor) + "%")
    rows = db.conn.execute(
        "SELECT id, at, actor, org_id, credential_id, action, outcome, ip, detail FROM audit"
        f" WHERE {' AND '.join(where) or '1 = 1'} ORDER BY id DESC LIMIT ?",
        (*args, max(1, min(int(limit), 1000))),
    ).fetchall()
    return [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8] or "{}")) for r in rows]


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
