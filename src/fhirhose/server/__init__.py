"""The FHIR Bulk Data Access server: an aiohttp app factory, its job runner and job DB.

`create_app(config)` returns an `aiohttp.web.Application` that can run alone
(`fhirhose serve`) or be mounted into another aiohttp server with `add_subapp`.
"""

from .app import create_app
from .auth import Authenticator, ClientIdentity, TokenAuthenticator, hash_secret
from .config import ServerConfig
from .population import Population, TablePopulation
from .worker import ChunkExporter, ChunkFile, ChunkTask

__all__ = [
    "create_app",
    "ServerConfig",
    "Authenticator",
    "ClientIdentity",
    "TokenAuthenticator",
    "hash_secret",
    "Population",
    "TablePopulation",
    "ChunkExporter",
    "ChunkFile",
    "ChunkTask",
]
