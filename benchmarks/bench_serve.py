"""What serving a job file costs: write paths × event loops, over loopback.

    PYTHONPATH=src python benchmarks/bench_serve.py [--mib 64] [--rounds 3]

Paths: `FileResponse` (aiohttp's sendfile, which falls back to read+write on uvloop,
which has no `loop.sendfile`), 1 MiB reads in a thread with awaited `write()`,
os.sendfile from a thread on the socket (`send_stored` here; the server keeps the 1 MiB
path, which measured faster on uvloop), and on-the-fly gzip decompression (ISA-L) for clients that do not accept
gzip. The client reads with aiohttp, discarding bytes. Prints MB/s (median of rounds),
the ratio to sendfile on asyncio, and the process's CPU seconds per GB (server and
client share it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from isal import igzip

from fhirhose.server.files import CHUNK, copy_to


def make_files(d: Path, mib: int) -> tuple[Path, Path]:
    line = (b'{"resourceType":"ExplanationOfBenefit","id":"carrier-%08d","status":"active",'
            b'"use":"claim","outcome":"complete","total":[{"amount":{"value":%d.25}}]}\n')
    raw = d / "data.ndjson"
    with open(raw, "wb") as f:
        i = 0
        while f.tell() < mib << 20:
            f.write(b"".join(line % (i + k, (i + k) % 997) for k in range(1000)))
            i += 1000
    gz = d / "stored.gzip"  # not data.ndjson.gz: FileResponse would serve that sibling instead
    with open(raw, "rb") as src, igzip.open(gz, "wb", compresslevel=1) as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
    return raw, gz


async def threaded(request: web.Request, path: Path, opener, size: int) -> web.StreamResponse:
    """The server's own path: `size` bytes (decoded size for gunzip) in `CHUNK` reads on a thread."""
    loop = asyncio.get_running_loop()
    resp = web.StreamResponse()
    f = await loop.run_in_executor(None, opener, path)
    try:
        await resp.prepare(request)
        await copy_to(resp, f, size, path.name)
    finally:
        f.close()
    await resp.write_eof()
    return resp


_FIRST = 64 << 10  # bytes sent through the transport first (they carry the headers out)


def _sendfile_all(sock_fd: int, file_fd: int, offset: int, count: int, timeout: float = 300.0) -> None:
    """os.sendfile until `count` bytes are sent; the socket is non-blocking, so wait for
    POLLOUT (at most `timeout` s at a time) whenever it is full."""
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    while count:
        try:
            n = os.sendfile(sock_fd, file_fd, offset, count)
        except BlockingIOError:
            if not poller.poll(timeout * 1000):
                raise ConnectionError(f"client took no data for {timeout:.0f} s") from None
            continue
        if n == 0:
            raise ConnectionError("file ended early or the connection closed")
        offset += n
        count -= n


async def send_stored(request: web.Request, resp: web.StreamResponse, path: Path, start: int, count: int) -> None:
    """Send `count` stored bytes of `path` from `start` on a prepared response.

    The kernel copies file pages to the socket (os.sendfile, on a thread: uvloop has no
    loop.sendfile): the first 64 KiB go through the transport with the headers, and once
    its buffer is empty the rest goes by sendfile on the socket itself. Without a socket
    (TLS, tests' transports) it falls back to 1 MiB reads and writes."""
    loop = asyncio.get_running_loop()
    f = await loop.run_in_executor(None, open, path, "rb")
    f.seek(start)
    try:
        first = await loop.run_in_executor(None, f.read, min(_FIRST, count))
        if len(first) != min(_FIRST, count):
            raise ConnectionError(f"{path.name}: file ended early")
        await resp.write(first)
        left = count - len(first)
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        ssl = transport.get_extra_info("sslcontext") if transport is not None else None
        if left and sock is not None and ssl is None:
            while transport.get_write_buffer_size():  # the headers and first bytes are out first
                await asyncio.sleep(0.0005)
            await loop.run_in_executor(None, _sendfile_all, sock.fileno(), f.fileno(), start + len(first), left)
            return
        await copy_to(resp, f, left, path.name)
    finally:
        await loop.run_in_executor(None, f.close)


async def sendfile_thread(request: web.Request, path: Path) -> web.StreamResponse:
    resp = web.StreamResponse()
    size = path.stat().st_size
    resp.content_length = size
    await resp.prepare(request)
    await send_stored(request, resp, path, 0, size)
    await resp.write_eof()
    return resp


def app(raw: Path, gz: Path) -> web.Application:
    a = web.Application()
    a.router.add_get("/sendfile-thread", lambda r: sendfile_thread(r, raw))
    a.router.add_get("/sendfile", lambda r: web.FileResponse(raw))
    size = raw.stat().st_size  # gz holds the same bytes
    a.router.add_get("/thread", lambda r: threaded(r, raw, lambda p: open(p, "rb"), size))
    a.router.add_get("/gunzip", lambda r: threaded(r, gz, lambda p: igzip.open(p, "rb"), size))
    return a


async def measure(raw: Path, gz: Path, rounds: int) -> dict[str, float]:
    runner = web.AppRunner(app(raw, gz), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    size = raw.stat().st_size
    out = {}
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            for path in ("sendfile", "thread", "sendfile-thread", "gunzip"):
                times, cpu = [], []
                for _ in range(rounds):
                    t0, c0 = time.perf_counter(), time.process_time()
                    async with s.get(f"http://127.0.0.1:{port}/{path}") as r:
                        got = 0
                        async for chunk in r.content.iter_chunked(CHUNK):
                            got += len(chunk)
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                    assert got == size, (path, got, size)
                out[path] = (size / statistics.median(times) / 1e6, statistics.median(cpu) / size * 1e9)
    finally:
        await runner.cleanup()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory() as d:
        raw, gz = make_files(Path(d), args.mib)
        print(f"file: {raw.stat().st_size / 1e6:.0f} MB NDJSON, {gz.stat().st_size / 1e6:.1f} MB gzip; "
              f"{os.cpu_count()} cores; client and server share them")
        results = {"asyncio": asyncio.run(measure(raw, gz, args.rounds)),
                   "uvloop": uvloop.run(measure(raw, gz, args.rounds))}
    base = results["asyncio"]["sendfile"][0]
    print(f"{'loop':8} {'path':16} {'MB/s':>8} {'ratio':>6} {'CPU s/GB (server + client)':>28}")
    for loop, paths in results.items():
        for path, (mbs, cpu) in paths.items():
            print(f"{loop:8} {path:16} {mbs:8.0f} {mbs / base:6.2f} {cpu:28.2f}")


if __name__ == "__main__":
    main()
