"""Field-by-field comparison of two FHIR resources, independent of array order.

A resource is flattened to *facts*: path → scalar, where each array element is
named by what it is about (an extension by its url, a coding by its system, a
supportingInfo by its category, an item by its sequence, ...) instead of its
position. Two EOBs that say the same things in a different order, or number
their supportingInfo differently, give the same facts; `diff` lists what one
says that the other does not, and allowances (path regex + reason) explain the
documented differences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

_BB_INFO = "https://bluebutton.cms.gov/resources/codesystem/information"
_BB_ADJ = "https://bluebutton.cms.gov/resources/codesystem/adjudication"
_MIDNIGHT = re.compile(r"^(\d{4}-\d{2}-\d{2})T00:00:00(\.0+)?\+00:00$")


def _codes(cc: dict) -> list[tuple[str, str]]:
    return [(x.get("system", ""), str(x.get("code", ""))) for x in (cc or {}).get("coding", [])]


def _code_in(cc: dict, *systems: str) -> str | None:
    for system, code in _codes(cc):
        if system in systems:
            return code
    return None


def _key(parent: str, elem: object, index: int) -> str:
    """The name of array element `elem` under array path `parent`."""
    if not isinstance(elem, dict):
        return str(elem)
    leaf = parent.rsplit(".", 1)[-1]
    if "url" in elem:
        return elem["url"]
    if leaf == "coding":
        return elem.get("system", "")
    if leaf == "supportingInfo":
        cat = elem.get("category", {})
        return _code_in(cat, _BB_INFO) or _codes(cat)[0][1]
    if leaf in ("adjudication", "total"):
        cat = elem.get("category", {})
        reason = _codes(elem.get("reason", {}))
        return _code_in(cat, _BB_ADJ) or (reason[0][0] if reason and reason[0][0].startswith("https://bluebutton") else _codes(cat)[0][1])
    if leaf == "financial":
        return _codes(elem.get("type", {}))[0][1]
    if leaf == "benefitBalance":
        return _codes(elem.get("category", {}))[0][1]
    if leaf == "careTeam":
        return _codes(elem.get("role", {}))[0][1]
    if leaf == "diagnosis":
        return _codes(elem.get("diagnosisCodeableConcept", {}))[0][1]
    if leaf == "procedure":
        return _codes(elem.get("procedureCodeableConcept", {}))[0][1]
    if leaf in ("type", "modifier"):
        return _codes(elem)[0][1]
    if leaf == "item":
        return str(elem.get("sequence"))
    if leaf == "identifier":
        return elem.get("system") or _codes(elem.get("type", {}))[0][1]
    if leaf == "contained":
        return elem.get("id", "")
    return str(index)


def _scalar(v: object) -> object:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return Decimal(str(v)).normalize()
    if isinstance(v, str):
        m = _MIDNIGHT.match(v)
        return m.group(1) if m else v
    return v


def facts(resource: object, path: str = "") -> dict[str, object]:
    """path → value for every scalar; displays and sequence numbers are left out (free text
    and positional numbering, not data)."""
    out: dict[str, object] = {}
    if isinstance(resource, dict):
        for k, v in resource.items():
            if k in ("display", "sequence", "careTeamSequence", "text"):
                continue
            out.update(facts(v, f"{path}.{k}" if path else k))
    elif isinstance(resource, list):
        for i, v in enumerate(resource):
            out.update(facts(v, f"{path}[{_key(path, v, i)}]"))
    else:
        out[path] = _scalar(resource)
    return out


@dataclass(frozen=True)
class Allow:
    """A documented difference: facts whose path matches `pattern` may differ, for `reason`."""

    pattern: str
    reason: str

    def matches(self, path: str) -> bool:
        return re.search(self.pattern, path) is not None


def diff(ours: dict, theirs: dict, allowed: list[Allow]) -> tuple[list[str], list[str], set[Allow]]:
    """(facts BFD has that we lack or state differently, facts only we have, allowances used)."""
    a, b = facts(ours), facts(theirs)
    used: set[Allow] = set()

    def explained(path: str) -> bool:
        for allow in allowed:
            if allow.matches(path):
                used.add(allow)
                return True
        return False

    missing = [f"{p} = {v!r} (ours: {a.get(p, '<absent>')!r})" for p, v in b.items() if a.get(p) != v and not explained(p)]
    extra = [f"{p} = {v!r}" for p, v in a.items() if p not in b and not explained(p)]
    return missing, extra, used
