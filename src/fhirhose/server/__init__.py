"""The FHIR Bulk Data Access server: an aiohttp app factory, its job runner and job DB.

`create_app(config)` returns an `aiohttp.web.Application` that can run alone
(`fhirhose serve`) or be mounted into another aiohttp server with `add_subapp`.
Authentication, credentials and the CMS data rules come from `fhirhose.access`.
"""

from .app import RULES_EXT, create_admin_app, create_app
from .config import ServerConfig
from .population import Population, StorePopulation, TablePopulation
from .worker import ChunkExporter, ChunkFile, ChunkTask

__all__ = [
    "create_app",
    "create_admin_app",
    "RULES_EXT",
    "ServerConfig",
    "Population",
    "TablePopulation",
    "StorePopulation",
    "ChunkExporter",
    "ChunkFile",
    "ChunkTask",
]
