"""Packages whose public names are imported on first use (PEP 562).

An export worker process imports `fhirhose.server.worker` and `fhirhose.access.rules`;
a package `__init__` that imported all of its modules would load the aiohttp app and
the cryptography bindings into every worker, ~25 MB of memory they never use.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, homes: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for `package`, whose public names are `homes` (name → the
    relative module defining it); a name is imported when first read, then cached."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__
