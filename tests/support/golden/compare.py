"""Field-by-field comparison of our output with a BFD response.

Every leaf of the BFD document must appear in ours with the same value (numbers
compared as decimals, so 37.5 == 37.50). Lists are compared as sets of
elements: each BFD element must be covered by some element of ours. Paths name
list elements by what identifies them (`extension[<url>]`, `coding[<system>]`)
so an allowance can say exactly which BFD element it excuses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

__all__ = ["uncovered", "element_path"]

IGNORED = "IGNORED_FIELD"


def _codes(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [c.get("code", "") for c in concept.get("coding") or () if isinstance(c, dict)]


def _tag(element: Any) -> str:
    """What names a list element: its url or system, else the codes of its category
    (adjudication, total, supportingInfo) or role (careTeam)."""
    if isinstance(element, dict):
        for key in ("url", "system"):
            if isinstance(element.get(key), str):
                return f"[{element[key]}]"
        if "category" in element:
            return "[" + "|".join(_codes(element["category"])) + "]"
        if "role" in element:
            who = ((element.get("provider") or {}).get("identifier") or {}).get("value", "")
            return "[" + "|".join(_codes(element["role"])) + f"@{who}]"
    return "[]"


def element_path(path: str, element: Any) -> str:
    """The path of a list element: `path[<url or system>]` or `path[]`."""
    return path + _tag(element)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return Decimal(str(a)) == Decimal(str(b))
    return a == b


def uncovered(bfd: Any, ours: Any, allow: Mapping[str, str] | Iterable[str] = (), path: str = "") -> list[str]:
    """BFD leaves missing from or different in `ours`, as "path: problem" lines.

    `allow` holds regular expressions (full match) of BFD paths to skip — the keys of a
    {pattern: reason} mapping, so each excuse carries its reason."""
    patterns = [re.compile(p) for p in allow]
    return _walk(bfd, ours, patterns, path)


def _allowed(path: str, patterns) -> bool:
    return any(p.fullmatch(path) for p in patterns)


def _walk(bfd: Any, ours: Any, patterns, path: str) -> list[str]:
    if bfd == IGNORED or _allowed(path, patterns):
        return []
    if isinstance(bfd, dict):
        if not isinstance(ours, dict):
            return [f"{path}: expected an object, got {ours!r:.80}"]
        out = []
        for key, value in bfd.items():
            sub = f"{path}.{key}" if path else key
            if value == IGNORED or _allowed(sub, patterns):
                continue
            if key not in ours:
                out.append(f"{sub}: missing")
            else:
                out += _walk(value, ours[key], patterns, sub)
        return out
    if isinstance(bfd, list):
        if not isinstance(ours, list):
            return [f"{path}: expected an array, got {ours!r:.80}"]
        out = []
        for element in bfd:
            sub = element_path(path, element)
            if _allowed(sub, patterns):
                continue
            tries = [_walk(element, o, patterns, sub) for o in ours]
            if not tries:
                out.append(f"{sub}: no element to match")
            elif not any(not t for t in tries):
                out += min(tries, key=len)
        return out
    return [] if _same(bfd, ours) else [f"{path}: BFD {bfd!r} != ours {ours!r}"]
