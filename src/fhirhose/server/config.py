"""Server configuration (a msgspec Struct, so it can be loaded from JSON as well as the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

__all__ = ["ServerConfig"]


class ServerConfig(msgspec.Struct, kw_only=True):
    """Everything `create_app` needs; paths default to places inside `data_dir`.

    Layout of `data_dir`: `store/` (the columnar store), `jobs.sqlite` (job DB),
    `jobs/<id>/` (job files), `access.sqlite` (organizations, credentials, audit log:
    `fhirhose admin --db`), `operator.key` (the admin API's operator credential,
    created on first start, mode 0600).
    """

    data_dir: str
    store_path: str | None = None
    # One database for jobs and access: postgresql://... (many nodes) or a SQLite file;
    # None: SQLite files DATA/jobs.sqlite and `access_db` (one machine).
    database_url: str | None = None
    access_db_path: str | None = None
    operator_key_path: str | None = None
    base: str = "/api/v2"
    # The BCDA v3 flavour of the same API, served beside `base` from the same store and job
    # DB (shared-system claims, `_typeFilter` _tag System-Type and outcome); None: not served.
    v3_base: str | None = "/api/v3"
    # Absolute origin for URLs in responses (e.g. "http://127.0.0.1:8080"); else from the request.
    public_url: str | None = None
    workers: int = 2
    # Start the export workers with the server (their imports done) instead of at the first
    # chunk: the first export starts ~0.4 s sooner.
    warm_workers: bool = True
    chunk_size: int = 2500  # beneficiaries per chunk
    lease: float = 30.0  # seconds a claimed chunk is held without renewal (a dead node's chunk waits this long)
    compression: Literal["gzip", "zstd"] = "gzip"
    level: int = 1
    # Also give BCDA's SHA-256 of the uncompressed NDJSON (+ fileSize) per file; off by default:
    # it costs more CPU than writer and gzip together (stored files always carry their digest).
    ndjson_sha256: bool = False
    file_ttl: float = 24 * 3600.0  # seconds from completion until files expire (410)
    retry_after: int = 5  # at most this many seconds between status polls (fewer as a job nears its end)
    janitor_interval: float = 60.0
    exporter: str = "fhirhose.server.worker:store_exporter"
    # Admin HTTP API path on this app (operator key or a user's admin key); None: not
    # mounted here (`create_admin_app` serves it elsewhere, e.g. on another port).
    admin_prefix: str | None = "/admin"
    # Proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client address
    # that IP allowlists are checked against; empty: the TCP peer is the client.
    trusted_proxies: list[str] = []
    jwks_ttl: float = 60.0  # seconds a fetched JWKS URL's key set is reused
    jwks_ca_file: str | None = None  # CA bundle for JWKS URLs (default: the system's)
    jwks_allow_http: bool = False  # test mode only: fetch http:// JWKS URLs too
    # Slow or idle clients (seconds, `server.guard`): a connection that has not sent a
    # complete request head within `idle_timeout` of opening (or of its previous
    # response) is closed, idle or not; a request body must arrive within `body_timeout`.
    idle_timeout: float = 30.0
    body_timeout: float = 30.0
    # A download whose client takes not one 256 KiB piece of it in this long is disconnected
    # (its slot in the job's downloads frees, so the job can expire): under ~4 KiB/s.
    send_timeout: float = 60.0
    # Open connections one client address may hold; more are closed at once (0: no cap).
    max_connections_per_address: int = 64

    @property
    def data(self) -> Path:
        return Path(self.data_dir)

    @property
    def store(self) -> Path:
        return Path(self.store_path) if self.store_path else self.data / "store"

    @property
    def access_db(self) -> Path:
        return Path(self.access_db_path) if self.access_db_path else self.data / "access.sqlite"

    @property
    def operator_key(self) -> Path:
        return Path(self.operator_key_path) if self.operator_key_path else self.data / "operator.key"
