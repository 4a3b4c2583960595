"""Slow and greedy clients (issue 10): half-open sockets are not held, one address cannot
hold more than its share, and client mistakes are logged as client errors."""

import asyncio
import logging
import socket

from fhirhose.server import create_app
from fhirhose.server.guard import app_runner, start_site

from .support.server import ACCESS, TablePopulation, async_test, config, tables


async def serve(data, **kw):
    cfg = config(data, **kw)
    runner = app_runner(create_app(cfg, access=ACCESS, population=TablePopulation(tables)), cfg)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    site = await start_site(runner, sock, cfg)
    return runner, site, sock.getsockname()[1]


async def closed_by_server(reader: asyncio.StreamReader, bound: float = 60.0) -> bytes:
    """What the server sent before closing (bounded wait: a hang fails the test)."""
    try:
        return await asyncio.wait_for(reader.read(), bound)
    except ConnectionResetError:
        return b""


@async_test
async def test_half_open_sockets_are_capped_per_address_and_closed_when_idle(tmp_path):
    runner, _site, port = await serve(tmp_path, idle_timeout=1.0, max_connections_per_address=10)
    try:
        conns = []
        for _ in range(50):  # a request head that never ends
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /api/v2/metadata HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            conns.append((reader, writer))
        answers = await asyncio.gather(*(closed_by_server(r) for r, _ in conns))
        assert answers == [b""] * 50  # every one closed, none answered
        for _, w in conns:
            w.close()
        # A byte every 0.3 s does not keep a connection past the idle limit either.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def trickle():
            for b in b"GET /api/v2/metadata HTTP/1.1\r\nHost: x\r\n":
                writer.write(bytes([b]))
                await asyncio.sleep(0.3)

        dripper = asyncio.create_task(trickle())
        assert await closed_by_server(reader) == b""
        dripper.cancel()
        writer.close()
        # The address is not blocked afterwards: an ordinary request is answered.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/v2/metadata HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        await runner.cleanup()


@async_test
async def test_over_the_cap_is_closed_at_once(tmp_path):
    runner, _site, port = await serve(tmp_path, idle_timeout=600.0, max_connections_per_address=5)
    try:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        await asyncio.sleep(0.2)  # the server has accepted them
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/v2/metadata HTTP/1.1\r\nHost: x\r\n\r\n")
        # Closed long before the 600 s idle limit: the cap, not the timer.
        assert await closed_by_server(reader, bound=30.0) == b""
        writer.close()
        for _, w in held:
            w.close()
    finally:
        await runner.cleanup()


@async_test
async def test_client_mistakes_are_client_errors_in_the_log(tmp_path, caplog):
    runner, _site, port = await serve(tmp_path, body_timeout=5.0)
    try:
        with caplog.at_level(logging.INFO):
            # Oversized header: 400 from the HTTP parser, logged as a client error.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /api/v2/metadata HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
            assert (await closed_by_server(reader)).split(b" ")[1] == b"400"
            writer.close()
            # A token request whose client disconnects mid-body.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /api/v2/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=")
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            await asyncio.sleep(0.5)  # let the server notice
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, [r.getMessage() for r in errors]
        client = [r.getMessage() for r in caplog.records if "client error" in r.getMessage()]
        assert any("8190 bytes" in m for m in client) and any("/auth/token" in m for m in client), client
    finally:
        await runner.cleanup()
