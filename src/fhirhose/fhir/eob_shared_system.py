"""ExplanationOfBenefit templates for shared-system claims (BCDA v3 partially adjudicated
claims): FISS (Part A, institutional; table `fiss` with `fiss_rev`, `fiss_px`, `fiss_dx`)
and MCS (Part B, professional; `mcs` with `mcs_line`).

The feed carries the NCH tables' columns (a claim is the same claim before and after it
finalizes), so each template is its NCH twin over the shared-system tables, as CMS's
idr-out MCS sample shows (`ExplanationOfBenefit-MCS.json`: the Professional-NonClinician
shape of a carrier claim) with what differs for a claim still in processing:

- `meta.tag` System-Type `SharedSystem` (NCH claims: `NationalClaimsHistory`, Part D: `DDPS`);
- `outcome` from the feed (`partial` while processing, `complete` once adjudicated);
- the claim control number identifier (CLM-CNTL-NUM), which the NCH version repeats;
- `related`: the previous control number when the claim was given a new one;
- ids `mcs-<clm_grp_id>` / `fiss-<clm_grp_id>`: one resource per claim and system, whose
  newer status replaces the older under the same id (BCDA v3: "claims are automatically
  deduplicated within a source system"; a client that upserts by id never holds a stale
  status, so a superseded version needs no `deleted` entry).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ..template import Each, Group, If, IfHas, IfMissing, K, Map, Node, Template, Val
from . import common as c
from . import eob_institutional, eob_professional

__all__ = ["EOB_MCS", "FISS_TEMPLATES", "FISS_KINDS", "retarget"]


def _rename(col: str, tables: Mapping[str, str]) -> str:
    table, dot, rest = col.partition(".")
    return f"{tables[table]}.{rest}" if dot and table in tables else col


def retarget(node: Node, tables: Mapping[str, str]) -> Node:
    """`node` reading tables renamed by `tables` (old name → new): `Each` tables and
    `table.column` references. Templates over tables with the same columns share one shape."""

    def kids(children: tuple) -> tuple:
        return tuple(retarget(ch, tables) for ch in children)

    if isinstance(node, Group):
        return type(node)(node.key, kids(node.children))
    if isinstance(node, Each):
        return Each(tables.get(node.table, node.table), *kids(node.children))
    if isinstance(node, If):
        return If(_rename(node.col, tables), tuple(node.labels), *kids(node.children))
    if isinstance(node, (IfHas, IfMissing)):
        return type(node)(_rename(node.col, tables), *kids(node.children))
    if isinstance(node, (Val, Map)):
        return dataclasses.replace(node, col=_rename(node.col, tables))
    return node


def _member_key(node: Node) -> str | None:
    return getattr(node, "key", None)


def _shared_system(nch: Template, name: str, root: str, tables: Mapping[str, str], profile: str) -> Template:
    """`nch` over the shared-system tables, with the shared-system header members."""
    members: list[Node] = []
    for m in nch.members:
        key = _member_key(m)
        if key == "id":
            members.append(Val("id", "clm_grp_id", prefix=f"{root}-"))
        elif key == "meta":
            members.append(c.meta(profile, c.system_type_tag("SharedSystem"), c.final_action_tag()))
        elif key == "identifier":
            members.append(retarget(m, tables))
            members.append(c.related_control_number())
        elif key == "outcome" and isinstance(m, K):
            members.append(Val("outcome", "outcome"))
        else:
            members.append(retarget(m, tables))
    keys = [_member_key(m) for m in members]
    missing = {"id", "meta", "identifier", "outcome", "related"} - set(keys)
    if missing:
        raise ValueError(f"{nch.name}: no {', '.join(sorted(missing))} member to replace for {name}")
    return Template(name, root, *members)


EOB_MCS = _shared_system(
    eob_professional.EOB_CARRIER, "eob-mcs", "mcs", {"partb": "mcs", "partb_line": "mcs_line"},
    c.PROFILE_EOB_PROFESSIONAL,
)
"""MCS (Part B professional) claims in the shared system: root `mcs`, lines `mcs_line`."""

_FISS_TABLES = {"parta": "fiss", "parta_rev": "fiss_rev", "parta_px": "fiss_px", "parta_dx": "fiss_dx"}
FISS_KINDS = tuple(eob_institutional.KINDS)
FISS_TEMPLATES: dict[str, Template] = {
    kind: _shared_system(
        eob_institutional.TEMPLATES[kind], f"eob-fiss-{kind}", "fiss", _FISS_TABLES,
        c.PROFILE_EOB_INPATIENT if eob_institutional.KINDS[kind].inpatient else c.PROFILE_EOB_OUTPATIENT,
    )
    for kind in FISS_KINDS
}
"""FISS (Part A institutional) claims in the shared system, per institutional kind: root `fiss`."""
