"""One database interface, two engines: SQLite (embedded, one machine) and PostgreSQL
(many API and worker nodes).

Callers write SQL once, in the common subset both engines run (`?` or `?N` parameters,
`ON CONFLICT`, `RETURNING`); `dialect.py` is the one place the differences live
(parameter style, column types in DDL, row locks, advisory locks). A `Database` hands out
sqlite3-shaped connections (`execute`, `executemany`, `fetchone`, `fetchall`,
`rowcount`) and `tx()` write transactions, so the access library stays synchronous: the
server calls it from threads, the admin CLI directly.

PostgreSQL runs through asyncpg (the asyncio driver): its pool lives on a private event
loop thread, and the synchronous calls hop onto it (`postgres.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .base import Conflict, Connection, Database, DatabaseUnavailable, IntegrityError, Result
from .migrate import Migration, applied_versions, migrate

__all__ = ["Conflict", "Connection", "Database", "IntegrityError", "DatabaseUnavailable", "Result", "Migration", "migrate",
           "applied_versions", "open_database", "is_postgres_url", "sqlite_path", "check_location"]


def is_postgres_url(url: str) -> bool:
    return str(url).startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str | Path) -> Path:
    """The file of a SQLite URL (`sqlite:///abs/path`, `sqlite:relative` or a plain path)."""
    text = str(url)
    if text.startswith("sqlite:///"):
        return Path("/" + text[len("sqlite:///"):].lstrip("/"))
    if text.startswith("sqlite:"):
        return Path(text[len("sqlite:"):])
    if "://" in text:
        raise InputError(f"--database {text!r}: postgresql://..., sqlite:///PATH or a file path")
    return Path(text)


def check_location(url: str | Path, flag: str = "--database", *, must_exist: bool = False) -> None:
    """InputError unless `url` can name a database, before anything is opened: a
    PostgreSQL URL (reachability is checked on open), or a SQLite file in an existing
    folder (that exists too when `must_exist`)."""
    text = str(url)
    if is_postgres_url(text):
        return
    if not text.strip():
        raise InputError(f"{flag} {text!r}: a postgresql://... URL or a SQLite file path")
    path = sqlite_path(text)
    if path.is_dir():
        raise InputError(f"{flag} {text}: is a folder, not a database file")
    if not path.parent.is_dir():
        raise InputError(f"{flag} {text}: no such folder {path.parent}")
    if must_exist and not path.exists():
        raise InputError(f"{flag} {text}: no such database (the API node creates it: `fhirhose serve "
                         f"--database {text}`, or `fhirhose db upgrade --database {text}`)")


def open_database(url: str | os.PathLike, *, pool_size: int = 8) -> Database:
    """A `Database` for `url`: `postgresql://user@host/db` (PostgreSQL) or a SQLite file."""
    if is_postgres_url(str(url)):
        from .postgres import PostgresDatabase

        return PostgresDatabase(str(url), pool_size=pool_size)
    from .sqlite import SQLiteDatabase

    return SQLiteDatabase(sqlite_path(os.fspath(url)))
