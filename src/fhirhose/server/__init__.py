"""The FHIR Bulk Data Access server: an aiohttp app factory, its job runner and job DB.

`create_app(config)` returns an `aiohttp.web.Application` that can run alone
(`fhirhose serve`) or be mounted into another aiohttp server with `add_subapp`.
Authentication, credentials and the CMS data rules come from `fhirhose.access`.
Names are imported on first use (`fhirhose._lazy`): export workers import
`fhirhose.server.worker` and need none of the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .app import RULES_EXT, create_admin_app, create_app
    from .config import ServerConfig
    from .population import Population, StorePopulation, TablePopulation
    from .worker import ChunkExporter, ChunkFile, ChunkTask

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
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
