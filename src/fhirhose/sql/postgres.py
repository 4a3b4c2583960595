"""PostgreSQL engine over asyncpg, with the synchronous `Database` surface.

asyncpg is asyncio-only. Its pool runs on a private event-loop thread owned by this
object; a synchronous call (from a server worker thread or the admin CLI) submits the
coroutine there and waits. So the access library and the job statements keep one SQL body
per statement for both engines, and the server's own loop never blocks on the network.
A transaction holds one pooled connection for the calling thread until it ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

import asyncpg

from .base import Conflict, Connection, Database, DatabaseUnavailable, IntegrityError, Result
from .dialect import POSTGRES

__all__ = ["PostgresDatabase"]

_FETCHING = ("SELECT", "WITH", "VALUES")
_UNREACHABLE = (OSError, asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.ConnectionDoesNotExistError,
                asyncpg.exceptions.InvalidCatalogNameError, asyncpg.exceptions.InvalidAuthorizationSpecificationError)


def _fetches(sql: str) -> bool:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    return head in _FETCHING or " RETURNING " in sql.upper()


async def _exec(conn: asyncpg.Connection, sql: str, params: Sequence[Any]) -> Result:
    try:
        if _fetches(sql):
            rows = [tuple(r) for r in await conn.fetch(sql, *params)]
            return Result(rows, len(rows))
        status = await conn.execute(sql, *params)
    except asyncpg.exceptions.IntegrityConstraintViolationError as e:
        raise IntegrityError(str(e)) from None
    except (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError) as e:
        raise Conflict(str(e)) from None
    tail = status.rsplit(" ", 1)[-1]
    return Result([], int(tail) if tail.isdigit() else -1)


class _Conn(Connection):
    """One thread's handle: a held connection inside a transaction, else a pooled one per statement."""

    __slots__ = ("db", "held", "tr")
    dialect = POSTGRES

    def __init__(self, db: PostgresDatabase):
        self.db = db
        self.held: asyncpg.Connection | None = None
        self.tr = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        q = POSTGRES.sql(sql)
        if self.held is not None:
            return self.db.call(_exec(self.held, q, tuple(params)))

        async def pooled():
            async with self.db.pool.acquire() as c:
                return await _exec(c, q, tuple(params))

        return self.db.call(pooled())

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if not rows:
            return
        q = POSTGRES.sql(sql)

        async def many(c):
            try:
                await c.executemany(q, rows)
            except asyncpg.exceptions.IntegrityConstraintViolationError as e:
                raise IntegrityError(str(e)) from None

        if self.held is not None:
            return self.db.call(many(self.held))

        async def pooled():
            async with self.db.pool.acquire() as c:
                await many(c)

        self.db.call(pooled())


class PostgresDatabase(Database):
    """A PostgreSQL database URL (`postgresql://user@host:port/db`, `?host=/socket/dir` works)."""

    dialect = POSTGRES

    def __init__(self, url: str, *, pool_size: int = 8):
        super().__init__()
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fhirhose-pg", daemon=True)
        self._thread.start()
        self._listeners: list[asyncpg.Connection] = []
        async def create_pool():
            # min_size=0: no connection floor to restore while the server is away (restarts, failover)
            return await asyncpg.create_pool(url, min_size=0, max_size=pool_size)

        try:
            self.pool: asyncpg.Pool = self.call(create_pool())
        except BaseException:
            self._stop_loop()
            raise

    def call(self, coro) -> Any:
        """Run a coroutine on the private loop and wait for it (never from that loop)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("PostgresDatabase.call from its own loop thread would deadlock")
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        except _UNREACHABLE as e:
            raise DatabaseUnavailable(f"PostgreSQL {self.where}: {e}") from None

    @property
    def where(self) -> str:
        return _redact(self.url)

    def _connect(self) -> _Conn:
        return _Conn(self)

    # The connection is always this class's own `_Conn` (made by `_connect`).
    def _begin(self, conn: Connection) -> None:
        held = cast(_Conn, conn)

        async def begin():
            c = await self.pool.acquire()
            tr = c.transaction()
            try:
                await tr.start()
            except BaseException:
                await self.pool.release(c)
                raise
            return c, tr

        held.held, held.tr = self.call(begin())

    def _end(self, conn: _Conn, commit: bool) -> None:
        c, tr = conn.held, conn.tr
        conn.held = conn.tr = None

        async def end():
            try:
                await (tr.commit() if commit else tr.rollback())
            finally:
                await self.pool.release(c)

        self.call(end())

    def _commit(self, conn: Connection) -> None:
        self._end(cast(_Conn, conn), True)

    def _rollback(self, conn: Connection) -> None:
        self._end(cast(_Conn, conn), False)

    def listen(self, channel: str, callback: Callable[[], None]) -> None:
        """Call `callback()` (on the private loop thread) on every NOTIFY to `channel`."""

        async def setup():
            c = await asyncpg.connect(self.url)
            await c.add_listener(channel, lambda *_: callback())
            return c

        self._listeners.append(self.call(setup()))

    def close(self) -> None:
        if not self._loop.is_running():
            return

        async def shutdown():
            for c in self._listeners:
                await c.close()
            await self.pool.close()

        try:
            self.call(shutdown())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def _redact(url: str) -> str:
    """The URL without its password (error messages and logs)."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, userpass = head.partition("//")
    return f"{scheme}//{userpass.split(':', 1)[0]}:***@{tail}"
