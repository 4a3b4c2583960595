"""What serving a job file costs: write paths × event loops, over loopback.

    PYTHONPATH=src python benchmarks/bench_serve.py [--mib 64] [--rounds 3]

Paths: `FileResponse` (aiohttp's sendfile, which falls back to read+write on uvloop,
which has no `loop.sendfile`), 1 MiB reads in a thread with awaited `write()` (the
server's path for stored bytes), and on-the-fly gzip decompression (ISA-L) for clients
that do not accept gzip. The client reads with aiohttp, discarding bytes. Prints MB/s
(median of rounds) and the ratio to sendfile on asyncio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from isal import igzip

CHUNK = 1 << 20


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


async def threaded(request: web.Request, path: Path, opener) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    resp = web.StreamResponse()
    f = await loop.run_in_executor(None, opener, path)
    try:
        await resp.prepare(request)
        while chunk := await loop.run_in_executor(None, f.read, CHUNK):
            await resp.write(chunk)
    finally:
        f.close()
    await resp.write_eof()
    return resp


def app(raw: Path, gz: Path) -> web.Application:
    a = web.Application()
    a.router.add_get("/sendfile", lambda r: web.FileResponse(raw))
    a.router.add_get("/thread", lambda r: threaded(r, raw, lambda p: open(p, "rb")))
    a.router.add_get("/gunzip", lambda r: threaded(r, gz, lambda p: igzip.open(p, "rb")))
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
            for path in ("sendfile", "thread", "gunzip"):
                times = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    async with s.get(f"http://127.0.0.1:{port}/{path}") as r:
                        got = 0
                        async for chunk in r.content.iter_chunked(CHUNK):
                            got += len(chunk)
                    times.append(time.perf_counter() - t0)
                    assert got == size, (path, got, size)
                out[path] = size / statistics.median(times) / 1e6
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
    base = results["asyncio"]["sendfile"]
    print(f"{'loop':8} {'path':9} {'MB/s':>8} {'ratio':>6}")
    for loop, paths in results.items():
        for path, mbs in paths.items():
            print(f"{loop:8} {path:9} {mbs:8.0f} {mbs / base:6.2f}")


if __name__ == "__main__":
    main()
