"""Server configuration (a msgspec Struct, so it can be loaded from JSON as well as the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

__all__ = ["ServerConfig"]


class ServerConfig(msgspec.Struct, kw_only=True):
    """Everything `create_app` needs; paths default to places inside `data_dir`.

    Layout of `data_dir`: `store/` (the columnar store), `jobs.sqlite` (job DB),
    `jobs/<id>/` (job files), `clients.json` (client registrations, hashed secrets),
    `server.key` (token signing key, created on first start).
    """

    data_dir: str
    store_path: str | None = None
    clients_path: str | None = None
    base: str = "/api/v2"
    # Absolute origin for URLs in responses (e.g. "http://127.0.0.1:8080"); else from the request.
    public_url: str | None = None
    workers: int = 2
    chunk_size: int = 2500  # beneficiaries per chunk
    compression: Literal["gzip", "zstd"] = "gzip"
    level: int = 1
    file_ttl: float = 24 * 3600.0  # seconds from completion until files expire (410)
    retry_after: int = 5  # seconds clients should wait between status polls
    token_ttl: int = 1200
    janitor_interval: float = 60.0
    exporter: str = "fhirhose.server.worker:store_exporter"

    @property
    def data(self) -> Path:
        return Path(self.data_dir)

    @property
    def store(self) -> Path:
        return Path(self.store_path) if self.store_path else self.data / "store"

    @property
    def clients(self) -> Path:
        return Path(self.clients_path) if self.clients_path else self.data / "clients.json"
