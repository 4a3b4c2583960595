"""SQLite engine: one connection per thread, WAL, writers serialized by BEGIN IMMEDIATE."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from .base import Connection, Database, DatabaseUnavailable, IntegrityError, Result
from .dialect import SQLITE

__all__ = ["SQLiteDatabase"]


class _Conn(Connection):
    __slots__ = ("raw",)
    dialect = SQLITE

    def __init__(self, raw: sqlite3.Connection):
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        try:
            cur = self.raw.execute(sql, params)
            return Result(cur.fetchall(), cur.rowcount)
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from None

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self.raw.executemany(sql, rows)
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from None


class SQLiteDatabase(Database):
    """A SQLite file; `synchronous` FULL so a committed chunk survives power loss."""

    dialect = SQLITE

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self.url = f"sqlite:///{self.path.resolve()}"

    @property
    def where(self) -> str:
        return str(self.path)

    def _connect(self) -> _Conn:
        try:
            raw = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            raw.execute("PRAGMA journal_mode=WAL")
            raw.execute("PRAGMA synchronous=FULL")
            raw.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as e:
            raise DatabaseUnavailable(f"{self.path}: not a SQLite database ({e})") from None
        return _Conn(raw)

    # The connection is always this class's own `_Conn` (made by `_connect`).
    def _begin(self, conn: Connection) -> None:
        cast(_Conn, conn).raw.execute("BEGIN IMMEDIATE")

    def _commit(self, conn: Connection) -> None:
        cast(_Conn, conn).raw.execute("COMMIT")

    def _rollback(self, conn: Connection) -> None:
        cast(_Conn, conn).raw.execute("ROLLBACK")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.raw.close()
            self._local.conn = None
