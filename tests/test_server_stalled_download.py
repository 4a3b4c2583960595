"""A download whose client stops reading is cut after `send_timeout` (issue 10's last gap):
otherwise it would hold its connection, its file and its job's download count (which
holds back the job's expiry) for ever. Real server on 127.0.0.1, real sockets."""

from __future__ import annotations

import asyncio
import socket
import time

from aiohttp import web

from fhirhose.server.db import FileRow
from fhirhose.server.files import serve_file

from .support.server import async_test

SIZE = 96 << 20  # far more than loopback's socket buffers hold


async def _serve(tmp_path, stall_timeout):
    path = tmp_path / "Patient-00000-001.ndjson"
    with open(path, "wb") as f:
        line = b'{"resourceType":"Patient","id":"x"}\n'
        f.write(line * (SIZE // len(line)))
    size = path.stat().st_size
    row = FileRow("j", path.name, path.name, 0, "output", "Patient", 1, "", size, size, "identity", 0.0)
    ended: list[str] = []

    async def handler(request):
        try:
            return await serve_file(request, row, path, {}, stall_timeout=stall_timeout)
        except ConnectionError as e:
            ended.append(str(e))
            raise

    app = web.Application()
    app.router.add_get("/f", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1], size, ended


def _request(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    s.sendall(b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
    return s


def _drain(s: socket.socket) -> int:
    got = 0
    s.settimeout(10)
    try:
        while chunk := s.recv(1 << 20):
            got += len(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    s.close()
    return got


@async_test
async def test_a_client_that_stops_reading_is_disconnected(tmp_path):
    runner, port, size, ended = await _serve(tmp_path, stall_timeout=0.5)
    try:
        s = _request(port)
        await asyncio.sleep(2.5)  # reads nothing: the server's write stalls, then gives up
        got = await asyncio.to_thread(_drain, s)
        assert got < size, "the whole file went out: the stalled client was never cut"
        assert ended and "stopped reading" in ended[0]
    finally:
        await runner.cleanup()


@async_test
async def test_a_slow_reader_gets_the_whole_file(tmp_path):
    """The timeout is about a client taking (almost) nothing, not a slow one: one that keeps
    reading, with pauses, gets every byte."""
    runner, port, size, ended = await _serve(tmp_path, stall_timeout=2.0)
    try:
        s = _request(port)

        def slow() -> int:
            got, t_end = 0, time.monotonic() + 60
            s.settimeout(10)
            while time.monotonic() < t_end:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
                if got < (8 << 20):
                    time.sleep(0.05)  # slow at first: a 256 KiB piece still drains well within 2 s
                if got >= size:
                    break
            s.close()
            return got

        got = await asyncio.to_thread(slow)
        assert got > size and not ended  # headers + the whole body
    finally:
        await runner.cleanup()
