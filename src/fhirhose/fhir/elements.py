"""`_elements`: resources cut down to the requested top-level elements.

A subset is a template too (the members kept, meta tagged SUBSETTED), bound
once per job like any other, so subsetting costs nothing per record. Elements
R4 requires (min 1) are always kept, with `id`, `meta` and `contained` (local
references point into it), as the Bulk Data IG asks.
"""

from __future__ import annotations

import json

from ..template import Arr, E, Group, If, IfHas, IfMissing, K, Map, Node, Raw, Seq, Template, Val, constant_text

__all__ = ["MANDATORY", "SUBSETTED_TAG", "elements_for", "subset"]

SUBSETTED_TAG = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}

ALWAYS = frozenset({"resourceType", "id", "meta", "contained"})
# Top-level elements with minimum cardinality 1 in R4.
MANDATORY = {
    "ExplanationOfBenefit": frozenset(
        {"status", "type", "use", "patient", "created", "insurer", "provider", "outcome", "insurance"}
    ),
    "Coverage": frozenset({"status", "beneficiary", "payor"}),
    "Patient": frozenset(),
}


def elements_for(rtype: str, elements: tuple[str, ...] | list[str]) -> frozenset[str] | None:
    """The element names `_elements` asks of `rtype` ("name" applies to every type,
    "Patient.name" to Patient only); None when nothing applies (whole resources)."""
    names = set()
    for e in elements:
        t, _, name = e.rpartition(".")
        if not t or t == rtype:
            names.add(name)
    return frozenset(names) if names else None


def _keys(n: Node) -> set[str] | None:
    """Top-level keys a member node can emit; None when not knowable (kept)."""
    if isinstance(n, (K, Val, Group, Seq)):
        return {n.key} if n.key is not None else set()
    if isinstance(n, Map):
        if callable(n.mapping):
            return None
        out: set[str] = set()
        for node in [*n.mapping.values(), n.default]:
            if node is not None:
                out |= set(json.loads("{" + constant_text(node) + "}"))
        return out
    return None


def _filter(members, keep: frozenset[str]) -> list[Node]:
    out: list[Node] = []
    for n in members:
        if isinstance(n, Raw):
            out.append(n)
        elif isinstance(n, If):
            kids = _filter(n.children, keep)
            if kids:
                out.append(If(n.col, n.labels, *kids))
        elif isinstance(n, (IfHas, IfMissing)):
            kids = _filter(n.children, keep)
            if kids:
                out.append(type(n)(n.col, *kids))
        else:
            keys = _keys(n)
            if keys is None or keys & keep:
                out.append(n)
    return out


def _tag_meta(n: Node) -> Node:
    if not (isinstance(n, Group) and n.key == "meta"):
        return n
    kids = list(n.children)
    for i, c in enumerate(kids):
        if isinstance(c, Group) and c.key == "tag":
            kids[i] = Arr("tag", *c.children, E(SUBSETTED_TAG))
            break
    else:
        kids.append(Arr("tag", E(SUBSETTED_TAG)))
    return type(n)(n.key, tuple(kids))


def subset(template: Template, rtype: str, names: frozenset[str]) -> Template:
    """`template` keeping only `names` (plus mandatory elements), tagged SUBSETTED."""
    keep = names | ALWAYS | MANDATORY.get(rtype, frozenset())
    members = [_tag_meta(n) for n in _filter(template.members, keep)]
    return Template(f"{template.name}[_elements]", template.root, *members)
