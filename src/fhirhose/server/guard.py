"""Slow and greedy clients: what one client address may hold, and for how long.

aiohttp has no per-address limit and its idle timer defaults to an hour, so 2,000
half-open sockets could be held for as long as their owner liked. Here:

- `app_runner(app, config)`: an idle connection, or one that has not finished sending
  a request head (new, or between requests), is closed after `config.idle_timeout`
  seconds (aiohttp's keep-alive timer covers both); request heads are bounded in size;
  client mistakes aiohttp's HTTP parser sees (oversized or malformed headers, a peer
  gone mid-body) are logged as client errors (INFO, one line), not ERROR tracebacks.
- `start_site(runner, sock, config)`: at most `config.max_connections_per_address`
  open connections per client address; more are closed as soon as they open.
- Request bodies must arrive within `config.body_timeout` (`web_errors.read_body`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..log import get_logger
from .config import ServerConfig

__all__ = ["ConnectionCap", "app_runner", "start_site"]

client_log = get_logger("fhirhose.server.client")

# Request line and each header field (aiohttp's defaults, stated so they are ours).
MAX_LINE = 8190
MAX_FIELD = 8190


class _ProtocolLog:
    """aiohttp's server logger, with the client's mistakes told apart from ours."""

    def __init__(self, target: logging.Logger):
        self._target = target

    def exception(self, msg: str, *args: Any, exc_info: Any = True, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(exc, (HttpProcessingError, ConnectionError)):
            client_log.info(msg + ": client error: %s", *args, exc, **kw)
        else:
            self._target.error(msg, *args, exc_info=exc_info, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def app_runner(app: web.Application, config: ServerConfig, **kw: Any) -> web.AppRunner:
    """An AppRunner with this server's timeouts, header limits and protocol log."""
    return web.AppRunner(app, keepalive_timeout=config.idle_timeout, max_line_size=MAX_LINE,
                         max_field_size=MAX_FIELD, logger=_ProtocolLog(logging.getLogger("aiohttp.server")), **kw)


class ConnectionCap:
    """Open connections per client address, and the protocol factory that enforces the cap."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open: Counter[str] = Counter()

    def factory(self, make_protocol):
        cap = self

        class Capped(asyncio.Protocol):
            """Forwards to aiohttp's protocol once the address is under its cap."""

            def __init__(self):
                self.inner = make_protocol()
                self.addr: str | None = None

            def connection_made(self, transport):
                peer = transport.get_extra_info("peername")
                addr = str(peer[0]) if peer else "?"
                if cap.limit and cap.open[addr] >= cap.limit:
                    client_log.info("connection from %s refused: client error: %d connections open (the cap)",
                                    addr, cap.open[addr])
                    transport.abort()
                    return
                self.addr = addr
                cap.open[addr] += 1
                self.inner.connection_made(transport)

            def connection_lost(self, exc):
                if self.addr is None:
                    return
                cap.open[self.addr] -= 1
                if not cap.open[self.addr]:
                    del cap.open[self.addr]
                self.inner.connection_lost(exc)

            def data_received(self, data):
                if self.addr is not None:
                    self.inner.data_received(data)

            def eof_received(self):
                return self.inner.eof_received() if self.addr is not None else None

            def pause_writing(self):
                self.inner.pause_writing()

            def resume_writing(self):
                self.inner.resume_writing()

        return Capped


class _CappedSite(web.SockSite):
    def __init__(self, runner: web.AppRunner, sock: socket.socket, cap: ConnectionCap):
        super().__init__(runner, sock)
        self.cap = cap

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        factory = self.cap.factory(self._runner.server)
        self._server = await loop.create_server(factory, sock=self._sock, backlog=self._backlog)


async def start_site(runner: web.AppRunner, sock: socket.socket, config: ServerConfig) -> web.SockSite:
    """Serve `runner` on the listening socket `sock`, capping connections per address."""
    site = _CappedSite(runner, sock, ConnectionCap(config.max_connections_per_address))
    await site.start()
    return site
