"""The engine-neutral surface: `Database`, `Result`, and the errors callers catch."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import StoreError
from .dialect import Dialect

__all__ = ["Database", "Result", "IntegrityError", "DatabaseUnavailable", "Conflict", "Connection"]


class IntegrityError(StoreError):
    """A unique or foreign-key constraint refused a write (either engine)."""


class DatabaseUnavailable(StoreError):
    """The database cannot be reached or opened."""


class Result:
    """Rows of one statement (as tuples) and how many rows it changed."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list[tuple], rowcount: int):
        self.rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:  # a tuple or None, typed as DB-API drivers type it
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple]:
        return self.rows

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.rows)


class Conflict(StoreError):
    """Two transactions collided (deadlock, serialization failure): `Database.run` retries."""


class Connection:
    """What `Database.conn` and `tx()` hand out: sqlite3's calling shape on either engine."""

    dialect: Dialect

    def lock(self, key: str) -> None:
        """Hold a transaction-scoped lock on `key` (no-op where the engine serializes writers)."""
        if self.dialect.lock_sql:
            self.execute(self.dialect.lock_sql, (key,))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError


class Database:
    """A database URL opened for this process; connections are per thread.

    `tx()` is a write transaction (nested calls join the outer one); outside one, each
    statement commits on its own. `conn.lock(key)` serializes writers on a key for the rest
    of the transaction (PostgreSQL advisory lock; SQLite's write lock already does it)."""

    dialect: Dialect
    url: str

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def engine(self) -> str:
        return self.dialect.name

    @property
    def where(self) -> str:
        """The database, for messages and logs (never its password)."""
        return self.url

    @property
    def conn(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            self._local.depth = 0
        return conn

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction; nested calls join the outer one."""
        conn = self.conn
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        self._begin(conn)
        self._local.depth = 1
        try:
            yield conn
        except BaseException:
            self._local.depth = 0
            self._rollback(conn)
            raise
        else:
            self._local.depth = 0
            self._commit(conn)

    def run(self, fn: Callable[..., Any], *args: Any, attempts: int = 5) -> Any:
        """`fn(conn, *args)` inside one write transaction, retried when it collided with another."""
        for attempt in range(attempts):
            try:
                with self.tx() as conn:
                    return fn(conn, *args)
            except Conflict:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        """Whether the database answers (`/readyz`)."""
        try:
            return self.conn.execute("SELECT 1").fetchone() == (1,)
        except Exception:
            return False

    # engine-specific
    def _connect(self) -> Connection:
        raise NotImplementedError

    def _begin(self, conn: Connection) -> None:
        raise NotImplementedError

    def _commit(self, conn: Connection) -> None:
        raise NotImplementedError

    def _rollback(self, conn: Connection) -> None:
        raise NotImplementedError

    def listen(self, channel: str, callback: Callable[[], None]) -> None:
        """Call `callback` (from another thread) on each NOTIFY on `channel` (PostgreSQL only:
        one SQLite node has nobody else to hear from)."""
        raise NotImplementedError(f"{self.engine} has no NOTIFY")

    def close(self) -> None:
        """Close this thread's connection (and, for PostgreSQL, the pool)."""
        raise NotImplementedError
