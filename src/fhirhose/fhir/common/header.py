"""Resource header pieces: meta and tags, status, identifiers, references, insurer, type.

What sits at the top of a Patient, Coverage or ExplanationOfBenefit before its
claim-specific parts.
"""

from __future__ import annotations

from ...template import Arr, E, If, IfHas, IfMissing, K, Map, Node, Obj, Val
from .datatypes import bb_coding, codeable, const_coding
from .systems import (
    BB_CS_EOB_TYPE,
    BB_CS_FINAL_ACTION,
    BB_CS_SYSTEM_TYPE,
    BB_ID_CLAIM_GROUP,
    BB_ID_CLM_CNTL_NUM,
    CMS_NAME,
    CMS_ORG_ID,
    CS_CLAIM_TYPE,
    CS_IDENTIFIER_TYPE,
    CS_RELATED_CLAIM,
    PROFILE_ORGANIZATION,
    SYSTEM_TYPES,
    bb_var,
    versioned,
)

__all__ = [
    "final_action_tag",
    "system_type_tag",
    "control_number_identifier",
    "related_control_number",
    "meta",
    "status",
    "uc_identifier",
    "claim_group_identifier",
    "reference",
    "patient_ref",
    "coverage_id_prefix",
    "insurance",
    "cms_organization",
    "local_ref",
    "insurer",
    "eob_type",
    "created",
]

def final_action_tag(col: str = "final_action") -> Node:
    """meta.tag element from the store's final-action flag (F final, N not final), as idr-out tags."""
    return Map(
        col,
        {
            "F": Obj(None, K("system", BB_CS_FINAL_ACTION), K("code", "FinalAction")),
            "N": Obj(None, K("system", BB_CS_FINAL_ACTION), K("code", "NotFinalAction")),
        },
    )


def system_type_tag(code: str) -> Node:
    """meta.tag element naming the claim's source system (BCDA v3 filters `_tag` on it)."""
    if code not in SYSTEM_TYPES:
        raise ValueError(f"System-Type {code!r} is not one of {', '.join(SYSTEM_TYPES)}")
    return Obj(None, K("system", BB_CS_SYSTEM_TYPE), K("code", code))


def control_number_identifier(col: str = "clm_cntl_num") -> Node:
    """The claim control number identifier (CLM-CNTL-NUM): equal on a claim's shared-system
    and NCH versions, so clients match them on it."""
    return IfHas(col, Obj(None, K("system", BB_ID_CLM_CNTL_NUM, weak=True), Val("value", col)))


def related_control_number(col: str = "clm_prev_cntl_num") -> Node:
    """`related`: the control number a claim had before it was given a new one (relationship prior)."""
    return Arr(
        "related",
        IfHas(col, Obj(
            None,
            codeable("relationship", const_coding(CS_RELATED_CLAIM, "prior", "Prior Claim")),
            Obj("reference", K("system", BB_ID_CLM_CNTL_NUM, weak=True), Val("value", col)),
        )),
    )


def meta(profile: str, *tags: Node, last_updated: str = "last_updated") -> Node:
    """`meta`: lastUpdated from the load time, the C4BB profile (versioned), optional tags."""
    members: list[Node] = [Val("lastUpdated", last_updated), Arr("profile", E(versioned(profile)))]
    if tags:
        members.append(Arr("tag", *tags))
    return Obj("meta", *members)


def status(col: str = "final_action") -> tuple[Node, ...]:
    """Members: `status` active for a final version (F), cancelled otherwise (N, missing, other),
    as BFD maps FINAL_ACTION; status is required, so every label yields one."""
    return (
        Map(col, {"F": K("status", "active")}, default=K("status", "cancelled")),
        If(col, [""], K("status", "cancelled")),
    )


def uc_identifier(col: str = "clm_id", system: str | None = None) -> Node:
    """The C4BB unique claim id (`identifier` element with type uc), system clm_id by default."""
    return IfHas(col, Obj(
        None,
        codeable("type", const_coding(CS_IDENTIFIER_TYPE, "uc", "Unique Claim ID")),
        K("system", system or bb_var("clm_id")),
        Val("value", col),
    ))


def claim_group_identifier(col: str = "clm_grp_id") -> Node:
    """The claim-group identifier element (no `uc` type: C4BB allows one unique claim id)."""
    return Obj(None, K("system", BB_ID_CLAIM_GROUP, weak=True), Val("value", col))


def reference(key: str, col: str, prefix: str) -> Node:
    """`{key: {"reference": prefix + col}}`."""
    return Obj(key, Val("reference", col, prefix=prefix))


def patient_ref(col: str = "bene_id", key: str = "patient") -> Node:
    """Reference to the beneficiary's Patient (`Patient/<bene_id>`)."""
    return reference(key, col, "Patient/")


def coverage_id_prefix(part: str) -> str:
    """Coverage id prefix of a Medicare part ("a".."d"): `part-a-`."""
    part = part.lower()
    if part not in ("a", "b", "c", "d"):
        raise ValueError(f"Medicare part must be one of a, b, c, d; got {part!r}")
    return f"part-{part}-"


def insurance(part: str, col: str = "bene_id") -> Node:
    """`insurance`: one focal entry referencing `Coverage/part-<part>-<bene_id>`."""
    return Arr(
        "insurance",
        Obj(None, K("focal", True, weak=True), reference("coverage", col, "Coverage/" + coverage_id_prefix(part))),
    )


def cms_organization(org_id: str = CMS_ORG_ID) -> Node:
    """A contained C4BB Organization for CMS (insurer of every EOB, payor of every Coverage)."""
    return Obj(
        None,
        K("resourceType", "Organization"),
        K("id", org_id),
        Obj("meta", Arr("profile", E(versioned(PROFILE_ORGANIZATION)))),
        K("active", True),
        K("name", CMS_NAME),
    )


def local_ref(key: str | None, contained_id: str) -> Node:
    """A reference to a contained resource: `{key: {"reference": "#id"}}`."""
    return Obj(key, K("reference", "#" + contained_id))


def insurer() -> Node:
    """`insurer` → the contained CMS organization (put `cms_organization()` in `contained`)."""
    return local_ref("insurer", CMS_ORG_ID)


def eob_type(claim_type: str, bb_eob_type: str, clm_type_col: str = "clm_type_cd") -> Node:
    """EOB `type`: C4BB claim type (professional, institutional, pharmacy), the Blue Button
    EOB type (CARRIER, DME, ...) that clients filter on, and the NCH claim type code."""
    return codeable(
        "type",
        const_coding(CS_CLAIM_TYPE, claim_type),
        const_coding(BB_CS_EOB_TYPE, bb_eob_type),
        bb_coding("nch_clm_type_cd", clm_type_col),
    )


def created(col: str = "clm_idr_ld_dt", fallback: str = "last_updated") -> tuple[Node, ...]:
    """Members: `created` (required by C4BB) from the IDR load date as idr-out does, else the
    store's load time (RIF and synthetic inputs carry no IDR load date)."""
    return IfHas(col, Val("created", col)), IfMissing(col, Val("created", fallback))
