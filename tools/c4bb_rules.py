"""Derive the C4BB checker's rules from the CARIN Blue Button FSH sources.

    python tools/c4bb_rules.py            # rewrite src/fhirhose/fhir/data/c4bb_rules.json
    python tools/c4bb_rules.py --check    # exit 1 if the committed JSON is stale

Reads the FHIR Shorthand copied into tools/carin-bb-fsh/ (HL7/carin-bb, C4BB 2.2.0)
and writes, for every profile fhirhose emits, the rules a conformance check can
interpret without knowing C4BB: cardinalities of elements and slices, slicing
discriminators, fixed/pattern values, bindings (required value sets expanded from
ValueSets.fsh + CodeSystems.fsh), type and reference-target restrictions, and the
invariants (FHIRPath text) with the element they sit on. Parent chains and
`insert`ed RuleSets are flattened, so a profile's entry is complete on its own.

A new C4BB release is a new copy of the .fsh files and a re-run; the test suite
re-runs this script and fails when the committed JSON differs.

Only the FSH subset C4BB uses is understood; anything else (RuleSet parameters,
unknown keywords, a binding to an undefined local value set) stops the run with
file:line, so a release that needs more cannot pass silently.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FSH_DIR = ROOT / "tools" / "carin-bb-fsh"
OUT = ROOT / "src" / "fhirhose" / "fhir" / "data" / "c4bb_rules.json"

# The IG's canonical base and version live in sushi-config.yaml, not in the .fsh files.
CANONICAL = "http://hl7.org/fhir/us/carin-bb"
IG_VERSION = "2.2.0"

# The profiles fhirhose emits (by FSH Id); their ancestors are flattened into them.
EMITTED = (
    "C4BB-Patient",
    "C4BB-Coverage",
    "C4BB-ExplanationOfBenefit-Inpatient-Institutional",
    "C4BB-ExplanationOfBenefit-Outpatient-Institutional",
    "C4BB-ExplanationOfBenefit-Professional-NonClinician",
    "C4BB-ExplanationOfBenefit-Pharmacy",
)

_KEYWORD = re.compile(r"^([A-Z][A-Za-z]*)\s*:\s*(.*)$", re.DOTALL)
_CARD = re.compile(r"^(\d+)\.\.(\d+|\*)?$")
_FLAGS = {"MS", "SU", "?!", "N", "TU", "D"}
_STRENGTHS = {"required", "extensible", "preferred", "example"}
# External parents (US Core) are named <Prefix><ResourceType>Profile; strip to the type.
_EXTERNAL_PARENT = re.compile(r"^USCore(\w+?)Profile(\|.*)?$")


class FshError(Exception):
    """The FSH uses something this generator does not understand; the message names file:line."""


@dataclass
class Line:
    where: str  # "File.fsh:12"
    text: str
    indent: int = 0


@dataclass
class Entity:
    kind: str  # Profile, CodeSystem, ValueSet, Invariant, RuleSet, ...
    name: str
    where: str
    meta: dict[str, str] = field(default_factory=dict)
    rules: list[Line] = field(default_factory=list)


# ------------------------------------------------------------------------------ lexing


def _strip_comments(text: str) -> str:
    """Drop // and /* */ comments outside strings, keeping line breaks so line numbers hold."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith('"""', i):
            j = text.find('"""', i + 3)
            j = n if j < 0 else j + 3
            out.append(text[i:j])
            i = j
        elif ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i) and (i == 0 or text[i - 1].isspace()):
            # Only at a token start: `//` inside a URL (`http://...`) is not a comment.
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i) and (i == 0 or text[i - 1].isspace()):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _physical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) with newlines inside strings folded into spaces."""
    lines: list[tuple[int, str]] = []
    buf: list[str] = []
    start, lineno, in_str = 1, 1, False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            in_str = not in_str
        if ch == "\n":
            lineno += 1
            if in_str:
                buf.append(" ")
            else:
                lines.append((start, "".join(buf)))
                buf, start = [], lineno
        else:
            buf.append(ch)
        i += 1
    if buf:
        lines.append((start, "".join(buf)))
    return lines


def parse_file(path: Path) -> tuple[list[Entity], dict[str, str]]:
    """Entities (with their logical rule lines) and aliases of one .fsh file."""
    text = _strip_comments(path.read_text(encoding="utf-8", errors="replace"))
    entities: list[Entity] = []
    aliases: dict[str, str] = {}
    current: Entity | None = None
    last_key: str | None = None
    for lineno, raw in _physical_lines(text):
        where = f"{path.name}:{lineno}"
        stripped = raw.strip()
        if not stripped:
            continue
        m = _KEYWORD.match(raw)
        if m and not raw[0].isspace():
            key, value = m.group(1), m.group(2).strip()
            if key == "Alias":
                name, _, url = value.partition("=")
                aliases[name.strip()] = url.strip()
                current = None
            elif key in ("Profile", "CodeSystem", "ValueSet", "Invariant", "RuleSet", "Extension", "Instance",
                         "Logical", "Resource", "Mapping"):
                if "(" in value:
                    raise FshError(f"{where}: parameterized RuleSet {value!r} is not supported")
                current = Entity(key, value, where)
                entities.append(current)
            elif current is not None:
                current.meta[key] = value
                last_key = key
            else:
                raise FshError(f"{where}: {key}: outside any entity")
            continue
        if current is None:
            raise FshError(f"{where}: text outside any entity: {stripped[:60]!r}")
        if stripped.startswith("*"):
            indent = len(raw) - len(raw.lstrip())
            current.rules.append(Line(where, stripped[1:].strip(), indent))
            last_key = None
        elif current.rules and last_key is None:
            # Continuation of a multi-line rule (`contains` lists span lines).
            current.rules[-1].text += " " + stripped
        elif last_key is not None:
            current.meta[last_key] += " " + stripped
        else:
            raise FshError(f"{where}: cannot place {stripped[:60]!r}")
    return entities, aliases


# ------------------------------------------------------------------------------ model


@dataclass
class Fsh:
    aliases: dict[str, str]
    entities: dict[tuple[str, str], Entity]  # (kind, name or id) -> entity
    files: dict[str, str]  # file name -> sha256

    def get(self, kind: str, name: str) -> Entity | None:
        return self.entities.get((kind, name))


def load(fsh_dir: Path = FSH_DIR) -> Fsh:
    aliases: dict[str, str] = {}
    entities: dict[tuple[str, str], Entity] = {}
    files: dict[str, str] = {}
    for path in sorted(fsh_dir.glob("*.fsh")):
        files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        ents, al = parse_file(path)
        aliases.update(al)
        for e in ents:
            entities.setdefault((e.kind, e.name), e)
            if "Id" in e.meta:
                entities.setdefault((e.kind, e.meta["Id"]), e)
    return Fsh(aliases, entities, files)


def _unversioned(url: str) -> str:
    return url.split("|", 1)[0]


def _entity_id(e: Entity) -> str:
    return e.meta.get("Id", e.name)


def _cs_url(fsh: Fsh, ref: str, where: str) -> str:
    """A code system reference in `System#code`: alias, local CodeSystem name or a URL."""
    if ref.startswith("$"):
        if ref.split("|")[0] not in fsh.aliases:
            raise FshError(f"{where}: unknown alias {ref}")
        return _unversioned(fsh.aliases[ref.split("|")[0]])
    cs = fsh.get("CodeSystem", _unversioned(ref))
    if cs is not None:
        return f"{CANONICAL}/CodeSystem/{_entity_id(cs)}"
    if "://" in ref or ref.startswith("urn:"):
        return _unversioned(ref)
    raise FshError(f"{where}: unknown code system {ref!r}")


def _vs_url(fsh: Fsh, ref: str, where: str) -> tuple[str, Entity | None]:
    if ref.startswith("$"):
        if ref not in fsh.aliases:
            raise FshError(f"{where}: unknown alias {ref}")
        return _unversioned(fsh.aliases[ref]), None
    vs = fsh.get("ValueSet", ref)
    if vs is not None:
        return f"{CANONICAL}/ValueSet/{_entity_id(vs)}", vs
    if "://" in ref:
        return _unversioned(ref), None
    # A name that is neither an alias nor a local value set: defined in the IG's other files
    # (external terminology); kept by name, not expandable here.
    return f"{CANONICAL}/ValueSet/{ref}", None


def _parse_code(fsh: Fsh, token: str, where: str) -> dict:
    """`System#code`, `#code` or a quoted string as a JSON-ready value."""
    token = token.strip()
    if token.startswith('"'):
        return {"string": token[1:-1]}
    if token in ("true", "false"):
        return {"boolean": token == "true"}
    if re.fullmatch(r"-?\d+(\.\d+)?", token):
        return {"number": float(token) if "." in token else int(token)}
    if "#" not in token:
        raise FshError(f"{where}: cannot read value {token!r}")
    system, _, code = token.partition("#")
    code = code.split()[0].strip('"')
    if not system:
        return {"code": code}
    return {"system": _cs_url(fsh, system, where), "code": code}


# ------------------------------------------------------------------------------ terminology


def code_systems(fsh: Fsh) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for (kind, key), e in fsh.entities.items():
        if kind != "CodeSystem" or key != e.name:
            continue
        codes = []
        content = "complete"  # SUSHI's default when ^content is not given
        for line in e.rules:
            m = re.match(r"^#(\S+)", line.text)
            if m:
                codes.append(m.group(1).strip('"'))
            m = re.match(r"^\^content\s*=\s*#(\S+)", line.text)
            if m:
                content = m.group(1)
        out[f"{CANONICAL}/CodeSystem/{_entity_id(e)}"] = {
            "name": e.name,
            "content": content,
            "codes": sorted(set(codes)),
            "from": e.where,
        }
    return dict(sorted(out.items()))


def value_sets(fsh: Fsh, cs: dict[str, dict], wanted: set[str]) -> dict[str, dict]:
    """The local value sets in ``wanted`` (canonical URLs) expanded to (system, code) pairs,
    plus whole external systems they include (`codes from system $X`), which a membership
    test accepts by system. Value sets no emitted profile uses are not expanded."""
    out: dict[str, dict] = {}

    def expand(e: Entity, seen: tuple[str, ...]) -> tuple[set[tuple[str, str]], set[str]]:
        if e.name in seen:
            raise FshError(f"{e.where}: value set {e.name} includes itself")
        codes: set[tuple[str, str]] = set()
        systems: set[str] = set()
        for line in e.rules:
            t = line.text
            if t.startswith("^"):
                continue
            m = re.match(r"^(include\s+)?codes from (system|valueset) (\S+)(.*)$", t)
            if m:
                if m.group(4).strip():
                    raise FshError(f"{line.where}: filtered include {t!r} is not supported")
                if m.group(2) == "system":
                    url = _cs_url(fsh, m.group(3), line.where)
                    if url in cs:
                        codes |= {(url, c) for c in cs[url]["codes"]}
                    else:
                        systems.add(url)
                else:
                    sub = fsh.get("ValueSet", m.group(3))
                    if sub is None:
                        raise FshError(f"{line.where}: value set {m.group(3)} is not defined in the FSH")
                    c2, s2 = expand(sub, seen + (e.name,))
                    codes |= c2
                    systems |= s2
                continue
            if t.startswith("exclude"):
                raise FshError(f"{line.where}: exclude is not supported")
            m = re.match(r"^(include\s+)?(\S*#\S+)", t)
            if not m:
                raise FshError(f"{line.where}: cannot read value set rule {t!r}")
            v = _parse_code(fsh, m.group(2), line.where)
            codes.add((v["system"], v["code"]))
        return codes, systems

    for (kind, key), e in fsh.entities.items():
        url = f"{CANONICAL}/ValueSet/{_entity_id(e)}"
        if kind != "ValueSet" or key != e.name or url not in wanted:
            continue
        codes, systems = expand(e, ())
        out[url] = {
            "name": e.name,
            "codes": sorted([list(c) for c in codes]),
            "systems": sorted(systems),
            "from": e.where,
        }
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------------ profiles


@dataclass
class ProfileRules:
    resource_type: str
    chain: list[str]
    card: dict[str, dict] = field(default_factory=dict)
    fixed: dict[str, dict] = field(default_factory=dict)
    binding: dict[str, dict] = field(default_factory=dict)
    only: dict[str, dict] = field(default_factory=dict)
    slicing: dict[str, dict] = field(default_factory=dict)
    slices: dict[str, list[str]] = field(default_factory=dict)
    obeys: list[dict] = field(default_factory=list)


def _resource_type(fsh: Fsh, parent: str, where: str) -> str:
    m = _EXTERNAL_PARENT.match(parent)
    if m:
        return m.group(1)
    if re.fullmatch(r"[A-Z][A-Za-z]+", parent):
        return parent  # a FHIR resource type
    raise FshError(f"{where}: cannot tell the resource type of parent {parent!r}")


def _profile_type(fsh: Fsh, name: str, where: str) -> str:
    e = fsh.get("Profile", name)
    if e is None:
        return _resource_type(fsh, name, where)
    return _profile_type(fsh, e.meta["Parent"], e.where)


def _expand_rules(fsh: Fsh, e: Entity, depth: int = 0) -> list[tuple[Line, str]]:
    """(rule line, context path) for an entity, with `insert`ed RuleSets expanded in place
    and indented rules resolved against the rule above them."""
    if depth > 10:
        raise FshError(f"{e.where}: RuleSet insertion too deep")
    out: list[tuple[Line, str]] = []
    stack: list[tuple[int, str]] = []
    for line in e.rules:
        while stack and stack[-1][0] >= line.indent:
            stack.pop()
        ctx = stack[-1][1] if stack else ""
        m = re.match(r"^(?:(\S+)\s+)?insert\s+(\S+)$", line.text)
        if m:
            rs = fsh.get("RuleSet", m.group(2))
            if rs is None:
                raise FshError(f"{line.where}: unknown RuleSet {m.group(2)}")
            prefix = _join(ctx, m.group(1) or "")
            out += [(ln, _join(prefix, c)) for ln, c in _expand_rules(fsh, rs, depth + 1)]
            continue
        out.append((line, ctx))
        first = line.text.split()[0] if line.text.split() else ""
        if first and not first.startswith(("^", "obeys")):
            stack.append((line.indent, _join(ctx, first)))
    return out


def _join(a: str, b: str) -> str:
    return f"{a}.{b}" if a and b else a or b


def _refs_to_types(fsh: Fsh, text: str, where: str) -> list[str]:
    inner = re.search(r"Reference\s*\((.*)\)", text)
    if not inner:
        raise FshError(f"{where}: cannot read reference targets in {text!r}")
    return sorted({_profile_type(fsh, t.strip(), where) for t in inner.group(1).split(" or ")})


def _apply(fsh: Fsh, pr: ProfileRules, line: Line, ctx: str) -> None:
    text = line.text
    where = line.where
    tokens = text.split()
    if text.startswith("obeys") or (len(tokens) > 1 and tokens[1] == "obeys"):
        path = "" if text.startswith("obeys") else tokens[0]
        keys = re.split(r"\s+and\s+", text.split("obeys", 1)[1].strip())
        for key in keys:
            pr.obeys.append({"path": _join(ctx, path), "key": key.strip(), "from": where})
        return
    if text.startswith("^") or (len(tokens) > 1 and tokens[1].startswith("^")):
        path = "" if text.startswith("^") else tokens[0]
        caret = text[len(path):].strip()
        m = re.match(r"^\^slicing\.(discriminator\.type|discriminator\.path|rules|ordered)\s*=\s*(.+)$", caret)
        if m:
            full = _join(ctx, path)
            s = pr.slicing.setdefault(full, {"discriminator": [{}], "rules": "open"})
            value = m.group(2).strip().strip('"').lstrip("#")
            if m.group(1) == "discriminator.type":
                s["discriminator"][0]["type"] = value
            elif m.group(1) == "discriminator.path":
                s["discriminator"][0]["path"] = value
            elif m.group(1) == "rules":
                s["rules"] = value
        return  # other caret rules (short, comment, abstract, extensions) carry no constraint
    path = _join(ctx, tokens[0])
    rest = text[len(tokens[0]):].strip()
    if rest.startswith("contains"):
        body = rest[len("contains"):].strip()
        for item in re.split(r"\s+and\s+", body):
            parts = item.split()
            if not parts:
                continue
            if len(parts) >= 3 and parts[1] == "named":
                parts = parts[2:]
            name = parts[0]
            card = next((p for p in parts[1:] if _CARD.match(p)), None)
            if card is None:
                raise FshError(f"{where}: slice {name} of {path} has no cardinality")
            pr.slices.setdefault(path, [])
            if name not in pr.slices[path]:
                pr.slices[path].append(name)
            _set_card(pr, f"{path}[{name}]", card, where)
        return
    if rest.startswith("="):
        value = rest[1:].strip()
        exactly = value.endswith("(exactly)")
        value = value.removesuffix("(exactly)").strip()
        pr.fixed[path] = {**_parse_code(fsh, value, where), "exactly": exactly, "from": where}
        return
    if rest.startswith("from "):
        m = re.match(r"^from\s+(\S+)\s*(?:\((\w+)\))?\s*$", rest)
        if not m:
            raise FshError(f"{where}: cannot read binding {rest!r}")
        strength = m.group(2) or "required"  # FSH: a binding without strength is required
        if strength not in _STRENGTHS:
            raise FshError(f"{where}: unknown binding strength {strength!r}")
        url, _ = _vs_url(fsh, m.group(1), where)
        pr.binding[path] = {"valueSet": url, "strength": strength, "from": where}
        return
    if rest.startswith("only "):
        body = rest[5:].strip()
        if body.startswith("Reference"):
            pr.only[path] = {"targets": _refs_to_types(fsh, body, where), "from": where}
        else:
            pr.only[path] = {"types": [t.strip() for t in body.split(" or ")], "from": where}
        return
    if rest.startswith("->"):
        return  # mapping
    parts = rest.split()
    if parts and _CARD.match(parts[0]):
        _set_card(pr, path, parts[0], where)
        parts = parts[1:]
    if any(p not in _FLAGS for p in parts):
        raise FshError(f"{where}: cannot read rule {text!r}")


def _set_card(pr: ProfileRules, path: str, card: str, where: str) -> None:
    m = _CARD.match(card)
    assert m
    lo, hi = int(m.group(1)), m.group(2) or "*"
    pr.card[path] = {"min": lo, "max": hi, "from": where}


def profile_rules(fsh: Fsh, pid: str) -> ProfileRules:
    e = fsh.get("Profile", pid)
    if e is None:
        raise FshError(f"profile {pid} is not defined in {FSH_DIR}")
    parent = e.meta.get("Parent")
    if parent is None:
        raise FshError(f"{e.where}: profile {e.name} has no Parent")
    if fsh.get("Profile", parent) is not None:
        base = profile_rules(fsh, parent)
        pr = ProfileRules(base.resource_type, base.chain + [_entity_id(e)],
                          dict(base.card), dict(base.fixed), dict(base.binding), dict(base.only),
                          json.loads(json.dumps(base.slicing)), {k: list(v) for k, v in base.slices.items()},
                          list(base.obeys))
    else:
        pr = ProfileRules(_resource_type(fsh, parent, e.where), [_unversioned(parent), _entity_id(e)])
    for line, ctx in _expand_rules(fsh, e):
        _apply(fsh, pr, line, ctx)
    return pr


def invariants(fsh: Fsh, keys: set[str]) -> dict[str, dict]:
    out = {}
    for key in sorted(keys):
        inv = fsh.get("Invariant", key)
        if inv is None:
            raise FshError(f"invariant {key} is not defined in the FSH")
        out[key] = {
            "description": inv.meta.get("Description", "").strip('"'),
            "expression": inv.meta.get("Expression", "").strip('"'),
            "severity": inv.meta.get("Severity", "#error").lstrip("#"),
            "from": inv.where,
        }
    return out


def _check_slices(pr: ProfileRules, pid: str) -> None:
    """Every slice must be recognisable: a slicing with a discriminator, and for each
    discriminator path a fixed value or a binding on the slice."""
    for path, names in pr.slices.items():
        s = pr.slicing.get(path)
        if s is None:
            raise FshError(f"{pid}: {path} has slices {names} but no ^slicing")
        for d in s["discriminator"]:
            if d.get("type") not in ("value", "pattern") or not d.get("path"):
                raise FshError(f"{pid}: {path} slicing discriminator {d} is not supported")
            for name in names:
                at = _join(f"{path}[{name}]", d["path"]) if d["path"] != "$this" else f"{path}[{name}]"
                if at not in pr.fixed and at not in pr.binding:
                    raise FshError(f"{pid}: slice {path}[{name}] has no value or binding at {d['path']}")


def generate(fsh_dir: Path = FSH_DIR) -> dict:
    fsh = load(fsh_dir)
    cs = code_systems(fsh)
    profiles = {}
    keys: set[str] = set()
    for pid in EMITTED:
        pr = profile_rules(fsh, pid)
        _check_slices(pr, pid)
        keys |= {o["key"] for o in pr.obeys}
        profiles[f"{CANONICAL}/StructureDefinition/{pid}"] = {
            "id": pid,
            "resourceType": pr.resource_type,
            "chain": pr.chain,
            "card": dict(sorted(pr.card.items())),
            "fixed": dict(sorted(pr.fixed.items())),
            "binding": dict(sorted(pr.binding.items())),
            "only": dict(sorted(pr.only.items())),
            "slicing": dict(sorted(pr.slicing.items())),
            "slices": dict(sorted(pr.slices.items())),
            "obeys": pr.obeys,
        }
    invs = invariants(fsh, keys)
    wanted = {b["valueSet"] for p in profiles.values() for b in p["binding"].values()}
    wanted |= {u for i in invs.values() for u in re.findall(r"memberOf\('([^']+)'\)", i["expression"])}
    vs = value_sets(fsh, cs, wanted)
    return {
        "about": "Generated by tools/c4bb_rules.py from tools/carin-bb-fsh/*.fsh; do not edit.",
        "ig": {"canonical": CANONICAL, "version": IG_VERSION},
        "sources": fsh.files,
        "profiles": profiles,
        "invariants": invs,
        "valueSets": vs,
        "codeSystems": cs,
    }


def render(data: dict) -> str:
    return json.dumps(data, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed rules differ from a re-run")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    try:
        text = render(generate())
    except FshError as e:
        print(f"c4bb_rules: {e}", file=sys.stderr)
        return 2
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"c4bb_rules: {args.out} is stale; run python tools/c4bb_rules.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    data = json.loads(text)
    for p in data["profiles"].values():
        n = sum(len(p[k]) for k in ("card", "fixed", "binding", "only", "slicing", "obeys"))
        print(f"{p['id']}: {n} rules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
