"""The FHIR Bulk Data Access server: an aiohttp app factory, its job runner and job DB.

`create_app(config)` returns an `aiohttp.web.Application` that can run alone
(`fhirhose serve`) or be mounted into another aiohttp server with `add_subapp`.
Authentication, credentials and the CMS data rules come from `fhirhose.access`.

Names are imported on first use (PEP 562): an export worker process imports
`fhirhose.server.worker`, and loading the app with aiohttp there would cost each
worker ~15 MB of memory it never uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import RULES_EXT, create_admin_app, create_app
    from .config import ServerConfig
    from .population import Population, StorePopulation, TablePopulation
    from .worker import ChunkExporter, ChunkFile, ChunkTask

# public name → the module defining it
_HOMES = {
    "create_app": ".app",
    "create_admin_app": ".app",
    "RULES_EXT": ".app",
    "ServerConfig": ".config",
    "Population": ".population",
    "TablePopulation": ".population",
    "StorePopulation": ".population",
    "ChunkExporter": ".worker",
    "ChunkFile": ".worker",
    "ChunkTask": ".worker",
}

__all__ = list(_HOMES)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
