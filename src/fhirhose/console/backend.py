"""What the console reads from the server it is mounted on, as plain callables.

The console imports the access library and nothing of the server: the server builds
a `ConsoleBackend` from its own state (`fhirhose.server.console_backend`) and mounts
the console with it. Callables that touch SQLite or the disk are synchronous; the
console runs them in a thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from ..access import AccessDB

__all__ = ["ConsoleBackend", "JobView"]


@dataclass(frozen=True)
class JobView:
    """One export job as the console shows it. `job` has the server's job fields (id,
    org_id, env, kind, group_id, status, error, created, completed, expires,
    chunks_done, chunks_total, request_url, rules, active)."""

    job: Any
    files: int
    bytes: int  # stored (compressed) bytes written so far
    resources: int
    seconds: float  # running time so far, or until completion

    @property
    def percent(self) -> int:
        return 100 * self.job.chunks_done // max(self.job.chunks_total, 1)

    @property
    def rate(self) -> float:
        """Stored bytes per second."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ConsoleBackend:
    """The server's state as the console needs it."""

    access: AccessDB
    clock: Callable[[], float]
    client_ip: Callable[[web.Request], str | None]
    fhir_base: Callable[[web.Request], str]  # absolute URL of the FHIR base
    jobs: Callable[[str | None, int], list[JobView]]  # (organization or None for all, limit), newest first
    job: Callable[[str], Any]  # job id → job or None
    files: Callable[[str], list[Any]]  # job id → file rows (name, stored, type, kind, count, length, ...)
    file_path: Callable[[str, str], Path | None]  # (job id, file name) → path of the stored file
    job_completed: Callable[[str, str], bool]  # (job id, organization): a completed sandbox export
    has_completed_sandbox_job: Callable[[str], bool]
    job_url: Callable[[web.Request, str, str], str]  # the API download URL of (job, file)
    active_jobs: Callable[[], int] = lambda: 0
    queued_chunks: Callable[[], int] = lambda: 0
    workers: int = 0
    attribution: Callable[[str], dict | None] = lambda org_id: None
    secure_cookies: bool = False  # served over TLS behind a proxy: cookies get Secure
