"""CARIN Blue Button (C4BB) conformance checks, interpreted from rules derived from the profiles.

The rules are data: `data/c4bb_rules.json`, written by `tools/c4bb_rules.py` from the C4BB
FSH sources (a new release is a re-run). For each profile fhirhose emits they hold element
and slice cardinalities, slicing discriminators, fixed/pattern values, bindings with the
C4BB value sets expanded, type and reference-target restrictions, and invariants. This
module only interprets them; it knows no profile by heart.

A test helper, not a full validator: base FHIR R4 structure and datatypes are left to
`fhirhose.fhir.validate`, codings in a C4BB code system must use its codes, bindings to
value sets the C4BB FSH does not define (ICD, HCPCS,
NUBC, X12 ...) are not checked, and an invariant is checked when `fhirhose.fhir._fhirpath`
can evaluate its expression. Every message names the resource, the element instance, the
rule's element path and the FSH line it came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from . import _fhirpath

__all__ = [
    "PROFILE_COVERAGE",
    "PROFILE_INPATIENT",
    "PROFILE_OUTPATIENT",
    "PROFILE_PATIENT",
    "PROFILE_PHARMACY",
    "PROFILE_PROFESSIONAL",
    "assert_conformant",
    "check",
    "in_value_set",
    "required_rules",
    "rules",
]

_C4BB = "http://hl7.org/fhir/us/carin-bb"
PROFILE_INPATIENT = f"{_C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Inpatient-Institutional"
PROFILE_OUTPATIENT = f"{_C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Outpatient-Institutional"
PROFILE_PROFESSIONAL = f"{_C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Professional-NonClinician"
PROFILE_PHARMACY = f"{_C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Pharmacy"
PROFILE_PATIENT = f"{_C4BB}/StructureDefinition/C4BB-Patient"
PROFILE_COVERAGE = f"{_C4BB}/StructureDefinition/C4BB-Coverage"

# Code system URLs the templates share with the rules (spelled once, here).
CS_IDENTIFIER_TYPE = f"{_C4BB}/CodeSystem/C4BBIdentifierType"
CS_ADJUDICATION = f"{_C4BB}/CodeSystem/C4BBAdjudication"
CS_ADJUDICATION_DISCRIMINATOR = f"{_C4BB}/CodeSystem/C4BBAdjudicationDiscriminator"
CS_SUPPORTING_INFO = f"{_C4BB}/CodeSystem/C4BBSupportingInfoType"
CS_HL7_ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
CS_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
NS_MBI = "http://hl7.org/fhir/sid/us-mbi"


@lru_cache(maxsize=1)
def rules() -> dict:
    """The generated rule data (profiles, invariants, value sets, code systems)."""
    text = resources.files("fhirhose.fhir").joinpath("data/c4bb_rules.json").read_text(encoding="utf-8")
    return json.loads(text)


# --- paths ---------------------------------------------------------------------------------

# A rule path such as "item.adjudication[benefitpaymentstatus].reason" as steps
# (element name, slice name or None, is-choice).
_Step = tuple[str, "str | None", bool]


@cache
def _steps(path: str) -> tuple[_Step, ...]:
    out: list[_Step] = []
    for part in path.split(".") if path else ():
        name, _, rest = part.partition("[")
        slice_name = rest[:-1] if rest else None
        if slice_name == "x":
            out.append((name, None, True))
        else:
            out.append((name, slice_name, False))
    return tuple(out)


def _sliced_key(steps: tuple[_Step, ...], upto: int) -> str:
    """The rule path of the element at ``steps[upto]`` without its own slice name."""
    parts = [f"{n}[{s}]" if s else (f"{n}[x]" if c else n) for n, s, c in steps[:upto]]
    parts.append(steps[upto][0])
    return ".".join(parts)


def _path_text(steps: tuple[_Step, ...]) -> str:
    return ".".join(f"{n}[{s}]" if s else (f"{n}[x]" if c else n) for n, s, c in steps)


def _present(v: Any) -> bool:
    # Empty values are reported by _empties; here they simply do not count as present.
    return v is not None and v != "" and v != [] and v != {}


# --- terminology ---------------------------------------------------------------------------


def _codings(node: Any) -> list[tuple[str | None, str | None]]:
    """(system, code) pairs of a CodeableConcept, a Coding, or a bare code string."""
    if isinstance(node, str):
        return [(None, node)]
    if not isinstance(node, dict):
        return []
    if "coding" in node:
        return [(c.get("system"), c.get("code")) for c in node.get("coding") or () if isinstance(c, dict)]
    if "code" in node:
        return [(node.get("system"), node.get("code"))]
    return []


@cache
def _value_set(url: str) -> tuple[frozenset[tuple[str, str]], frozenset[str], frozenset[str]] | None:
    vs = rules()["valueSets"].get(url)
    if vs is None:
        return None
    pairs = frozenset((s, c) for s, c in vs["codes"])
    return pairs, frozenset(vs["systems"]), frozenset(c for _, c in vs["codes"])


def in_value_set(node: Any, url: str) -> bool | None:
    """True if a coding of ``node`` is in value set ``url``; None if the set is not known."""
    vs = _value_set(url)
    if vs is None:
        return None
    pairs, systems, bare = vs
    for system, code in _codings(node):
        if system is None and code in bare:
            return True
        if (system, code) in pairs or system in systems:
            return True
    return False


def _matches(node: Any, fixed: dict) -> bool:
    """Does ``node`` carry the FSH assigned value (pattern semantics for codes)?"""
    if "string" in fixed:
        return node == fixed["string"]
    if "boolean" in fixed:
        return node is fixed["boolean"]
    if "number" in fixed:
        return node == fixed["number"]
    code, system = fixed.get("code"), fixed.get("system")
    return any(c == code and (system is None or s in (system, None)) for s, c in _codings(node))


def _vs_name(url: str) -> str:
    vs = rules()["valueSets"].get(url)
    return vs["name"] if vs else url.rsplit("/", 1)[-1]


# --- the interpreter -----------------------------------------------------------------------


class _Profile:
    """One profile's rules with the lookups the walk needs."""

    def __init__(self, url: str, data: dict):
        self.url = url
        self.id = data["id"]
        self.resource_type = data["resourceType"]
        self.card = data["card"]
        self.fixed = data["fixed"]
        self.binding = data["binding"]
        self.only = data["only"]
        self.slicing = data["slicing"]
        self.obeys = data["obeys"]

    def in_slice(self, key: str, slice_name: str, element: Any) -> bool:
        """Is ``element`` (an instance of the sliced element ``key``) in slice ``slice_name``?"""
        slicing = self.slicing.get(key)
        if slicing is None or not isinstance(element, dict):
            return False
        for d in slicing["discriminator"]:
            at = f"{key}[{slice_name}]" + ("" if d["path"] == "$this" else f".{d['path']}")
            values = [element] if d["path"] == "$this" else _values(element, d["path"])
            if at in self.fixed:
                if not any(_matches(v, self.fixed[at]) for v in values):
                    return False
            elif at in self.binding:
                if not any(in_value_set(v, self.binding[at]["valueSet"]) for v in values):
                    return False
            else:
                return False
        return True

    def children(self, node: Any, steps: tuple[_Step, ...], i: int, where: str) -> list[tuple[str, Any]]:
        """(location, value) of the element ``steps[i]`` under ``node`` (slice-filtered)."""
        if not isinstance(node, dict):
            return []
        name, slice_name, choice = steps[i]
        if choice:
            keys = [k for k in node if _is_choice_key(k.lstrip("_"), name)]
        else:
            keys = [k for k in (name, "_" + name) if k in node]
        # A primitive's extensions (`_servicedDate`) make it present; with its value, it is one.
        keys = [k for k in keys if not (k.startswith("_") and k[1:] in node)]
        out: list[tuple[str, Any]] = []
        for k in keys:
            v = node[k]
            prefix = f"{where}.{k}" if where else k
            if isinstance(v, list):
                out += [(f"{prefix}[{n}]", x) for n, x in enumerate(v) if _present(x)]
            elif _present(v):
                out.append((prefix, v))
        if slice_name is not None:
            key = _sliced_key(steps, i)
            out = [(loc, v) for loc, v in out if self.in_slice(key, slice_name, v)]
        return out

    def nodes(self, resource: dict, steps: tuple[_Step, ...]) -> list[tuple[str, Any]]:
        level: list[tuple[str, Any]] = [("", resource)]
        for i in range(len(steps)):
            level = [c for loc, n in level for c in self.children(n, steps, i, loc)]
        return level


def _is_choice_key(key: str, name: str) -> bool:
    return key.startswith(name) and key[len(name):len(name) + 1].isupper()


def _values(node: Any, dotted: str) -> list[Any]:
    level = [node]
    for part in dotted.split("."):
        nxt: list[Any] = []
        for n in level:
            v = n.get(part) if isinstance(n, dict) else None
            nxt += v if isinstance(v, list) else ([v] if v is not None else [])
        level = nxt
    return level


def _tag(rule: dict, path: str) -> str:
    return f"[{path} @ {rule['from']}]"


def _check_card(p: _Profile, r: dict) -> Iterator[str]:
    for path, rule in p.card.items():
        steps = _steps(path)
        parents = p.nodes(r, steps[:-1])
        lo, hi = rule["min"], rule["max"]
        for loc, parent in parents:
            n = len(p.children(parent, steps, len(steps) - 1, loc))
            if n < lo or (hi != "*" and n > int(hi)):
                name, slice_name, choice = steps[-1]
                elem = f"{name}[{slice_name}]" if slice_name else (f"{name}[x]" if choice else name)
                at = f"{loc}.{elem}" if loc else elem
                yield f"{at}: {n} found, {lo}..{hi} required {_tag(rule, path)}"


def _check_fixed(p: _Profile, r: dict) -> Iterator[str]:
    for path, rule in p.fixed.items():
        want = rule.get("string", rule.get("code"))
        if "system" in rule:
            want = f"{rule['system']}#{rule['code']}"
        for loc, v in p.nodes(r, _steps(path)):
            if not _matches(v, rule):
                yield f"{loc}: must be {want} {_tag(rule, path)}"


def _check_bindings(p: _Profile, r: dict) -> Iterator[str]:
    for path, rule in p.binding.items():
        if rule["strength"] != "required":
            continue
        for loc, v in p.nodes(r, _steps(path)):
            ok = in_value_set(v, rule["valueSet"])
            if ok is False:
                found = ", ".join(f"{s}#{c}" if s else str(c) for s, c in _codings(v)) or "no code"
                yield f"{loc}: {found} is not in required value set {_vs_name(rule['valueSet'])} {_tag(rule, path)}"


def _reference_type(resource: dict, ref: dict) -> str | None:
    target = ref.get("reference")
    if isinstance(target, str):
        if target.startswith("#"):
            for c in resource.get("contained") or ():
                if isinstance(c, dict) and c.get("id") == target[1:]:
                    return c.get("resourceType")
            return None
        parts = target.split("/")
        if len(parts) >= 2 and parts[-2][:1].isupper():
            return parts[-2]
        if len(parts) >= 4 and parts[-4][:1].isupper() and parts[-2] == "_history":
            return parts[-4]
        return None
    t = ref.get("type")
    return t.rsplit("/", 1)[-1] if isinstance(t, str) else None


def _check_only(p: _Profile, r: dict) -> Iterator[str]:
    for path, rule in p.only.items():
        steps = _steps(path)
        if "targets" in rule:
            for loc, v in p.nodes(r, steps):
                t = _reference_type(r, v) if isinstance(v, dict) else None
                if t is not None and t not in rule["targets"]:
                    yield f"{loc}: refers to a {t}; allowed: {', '.join(rule['targets'])} {_tag(rule, path)}"
            continue
        name, _, choice = steps[-1]
        if not choice:
            continue  # a non-choice element's type is fixed by the base resource
        allowed = {name + t[:1].upper() + t[1:] for t in rule["types"]}
        for loc, parent in p.nodes(r, steps[:-1]):
            if not isinstance(parent, dict):
                continue
            for k in parent:
                if _is_choice_key(k.lstrip("_"), name) and k.lstrip("_") not in allowed:
                    at = f"{loc}.{k}" if loc else k
                    yield f"{at}: type not allowed; {name}[x] only {', '.join(rule['types'])} {_tag(rule, path)}"


def _check_invariants(p: _Profile, r: dict) -> Iterator[str]:
    invs = rules()["invariants"]
    for ob in p.obeys:
        inv = invs[ob["key"]]
        if inv["severity"] != "error":
            continue
        for loc, node in p.nodes(r, _steps(ob["path"])) if ob["path"] else [("", r)]:
            result = _fhirpath.holds(inv["expression"], node, r, in_value_set)
            if result is False:
                at = loc or "<resource>"
                yield f"{at}: violates {ob['key']} ({inv['description']}) [{ob['path'] or '.'} @ {ob['from']}]"


@lru_cache(maxsize=1)
def _complete_code_systems() -> dict[str, tuple[frozenset[str], str, str]]:
    return {
        url: (frozenset(cs["codes"]), cs["name"], cs["from"])
        for url, cs in rules()["codeSystems"].items()
        if cs["content"] == "complete"
    }


def _check_code_systems(node: Any, path: str) -> Iterator[str]:
    """A coding in a C4BB code system (all `complete`) must use one of its codes."""
    if isinstance(node, dict):
        system, code = node.get("system"), node.get("code")
        cs = _complete_code_systems().get(system) if isinstance(system, str) else None
        if cs is not None and isinstance(code, str) and code not in cs[0]:
            yield f"{path}: code {code!r} is not in code system {cs[1]} [{cs[2]}]"
        for k, v in node.items():
            yield from _check_code_systems(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _check_code_systems(v, f"{path}[{i}]")


@cache
def _profile(url: str) -> _Profile | None:
    data = rules()["profiles"].get(url)
    return _Profile(url, data) if data else None


def _profiles_for(r: dict) -> tuple[list[_Profile], list[str]]:
    """The rule profiles a resource is checked against, and problems choosing them."""
    rtype = r.get("resourceType")
    meta = r["meta"] if isinstance(r.get("meta"), dict) else {}
    claimed = {p.split("|", 1)[0] for p in meta.get("profile") or () if isinstance(p, str)}
    known = [u for u, d in rules()["profiles"].items() if d["resourceType"] == rtype]
    chosen = [u for u in known if u in claimed]
    if chosen:
        return [p for u in chosen if (p := _profile(u))], []
    if len(known) == 1:
        # Patient and Coverage have one C4BB profile: check it even when meta.profile is wrong.
        return [p for p in (_profile(known[0]),) if p], []
    if known:
        names = ", ".join(sorted(rules()["profiles"][u]["id"] for u in known))
        # The rules every candidate profile shares (the C4BB base profile's) still apply.
        return [_common_profile(tuple(known))], [f"meta.profile names no C4BB {rtype} profile ({names})"]
    return [], []


@cache
def _common_profile(urls: tuple[str, ...]) -> _Profile:
    datas = [rules()["profiles"][u] for u in urls]
    common: dict[str, Any] = {"id": "common", "resourceType": datas[0]["resourceType"], "obeys": []}
    for kind in ("card", "fixed", "binding", "only", "slicing"):
        common[kind] = {k: v for k, v in datas[0][kind].items() if all(d[kind].get(k) == v for d in datas[1:])}
    common["obeys"] = [o for o in datas[0]["obeys"] if all(o in d["obeys"] for d in datas[1:])]
    return _Profile("common:" + ",".join(urls), common)


def check(resource: dict) -> list[str]:
    """Return the C4BB / FHIR-JSON violations of one resource; an empty list means conformant.

    The profiles are those of the resource's ``meta.profile`` that the rules know (version
    suffixes such as ``|2.2.0`` ignored); Patient and Coverage are checked against their one
    C4BB profile regardless. Every message starts with the resource label, e.g.
    ``"EOB carrier-1: item[0].adjudication[benefitpaymentstatus]: 0 found, 1..1 required
    [item.adjudication[benefitpaymentstatus] @ EOBProfessionalProfile.fsh:136]"``.
    """
    label = _label(resource)
    out = [f"{label}: {path} must not be {what} (FHIR JSON forbids it)" for path, what in _empties(resource, "")]
    profiles, problems = _profiles_for(resource)
    out += (f"{label}: {m}" for m in problems)
    if profiles:
        out += (f"{label}: {m}" for m in _check_code_systems(resource, ""))
    seen: set[str] = set()
    for p in profiles:
        for check_ in (_check_card, _check_fixed, _check_bindings, _check_only, _check_invariants):
            for m in check_(p, resource):
                if m not in seen:
                    seen.add(m)
                    out.append(f"{label}: {m}")
    return out


def assert_conformant(resource: dict) -> None:
    """Raise AssertionError listing every violation `check` finds in ``resource``."""
    problems = check(resource)
    if problems:
        raise AssertionError(f"{len(problems)} C4BB violation(s):\n" + "\n".join(problems))


def required_rules(profile_url: str) -> list[str]:
    """Rule paths of the profile's required elements and slices (minimum cardinality >= 1)."""
    data = rules()["profiles"][profile_url]
    return sorted(path for path, r in data["card"].items() if r["min"] >= 1)


# --- helpers -------------------------------------------------------------------------------


def _label(r: dict) -> str:
    rtype = r.get("resourceType") or "resource"
    short = "EOB" if rtype == "ExplanationOfBenefit" else rtype
    # BFD's sample EOBs carry no id, so fall back to the unique claim id to keep messages useful.
    rid = r.get("id")
    if not rid and isinstance(r.get("identifier"), list):
        rid = next((i.get("value") for i in r["identifier"] if isinstance(i, dict) and i.get("value")), None)
    return f"{short} {rid or '?'}"


def _empties(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Yield (path, kind) for every null, empty string, empty array or empty object."""
    if node is None:
        yield path or "<root>", "null"
    elif isinstance(node, str):
        if node == "":
            yield path, "an empty string"
    elif isinstance(node, dict):
        if not node:
            yield path or "<root>", "an empty object"
        for k, v in node.items():
            yield from _empties(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        if not node:
            yield path, "an empty array"
        for i, v in enumerate(node):
            yield from _empties(v, f"{path}[{i}]")
