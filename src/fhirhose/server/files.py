"""Serving one job file: content coding, Range, ETag, HEAD.

Files are stored compressed (gzip by default, zstd optional). When the client's
`Accept-Encoding` accepts the stored coding, the stored bytes go out as they are with
`Content-Encoding`; otherwise they are decompressed on the fly and sent as identity.

Integrity (RFC 9530): the stored representation (the file's bytes as they are on disk,
sent with its Content-Encoding, or as identity when stored so) goes out with
`Repr-Digest: sha-256=:<base64>:` (the manifest's stored digest), and a Range response of
it also with `Content-Digest` of the part sent (hashed from the file before sending). An
identity download of a file stored compressed is decoded here on the fly: its digest is
only known when the server computes BCDA's NDJSON checksum (then it is its Repr-Digest);
otherwise the client can check its length and line count, and the decoder here checks the
stored CRC32/content checksum (a mismatch ends the response early).

Range requests apply to the representation being sent (RFC 9110 §14): to the stored,
encoded bytes when they are sent with `Content-Encoding` (as static servers do for
precompressed files), and to the uncompressed NDJSON when decompressing — then the
server decompresses and discards up to the start offset, so a resumed identity
download costs decompression time proportional to the offset. Only single ranges are
honoured; a multi-range or malformed `Range` is ignored (a full 200), as RFC 9110 allows.

The write path is 256 KiB reads in a thread, each awaited `write()`: the event loop never
waits on the disk, and `Content-Length` is always set (no chunked-encoding copies). Not
1 MiB: the server fixes malloc's mmap threshold at 1 MiB (`_memory`), so every 1 MiB read
would be a fresh mapping, faulted in page by page and unmapped again — 0.8–1.0 server CPU
s per GB served against 0.5–0.6 for 256 KiB reads, which the heap reuses (loopback,
uvloop, 4 downloads at a time; issue 12).
benchmarks/bench_serve.py on 2 shared cores, 67 MB file over loopback: uvloop 1.0 GB/s
(FileResponse's sendfile fallback 1.4 GB/s), asyncio 0.43 GB/s (sendfile 0.57 GB/s);
on-the-fly gunzip 0.45 GB/s. os.sendfile from a thread on the socket (after the headers
went through the transport; uvloop has no loop.sendfile) measured worse on uvloop, under
other load: 0.23 GB/s at 1.18 CPU s/GB against 0.98 GB/s at 0.47 for this path (the
thread wakes per socket-buffer fill). Stored files are gzip (~19x smaller than the
NDJSON), so this path is far above what a client's link carries.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from pathlib import Path
from typing import BinaryIO, Literal

from aiohttp import web

from ..log import get_logger
from .db import FileRow

client_log = get_logger("fhirhose.server.client")  # client mistakes, as web_errors logs them

__all__ = ["CHUNK", "NDJSON", "serve_file", "copy_to", "accepts", "parse_range", "etag_for", "sf_value"]

CHUNK = 256 << 10  # below malloc's mmap threshold (see the module doc)
NDJSON = "application/fhir+ndjson"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_TOKEN = {"gzip": "gzip", "zstd": "zstd"}


def accepts(header: str | None, coding: str) -> bool:
    """Whether an Accept-Encoding header accepts `coding` with q > 0 (x-gzip counts as gzip)."""
    if not header:
        return False
    star = None
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        q = 1.0
        m = re.search(r"q\s*=\s*([0-9.]+)", params)
        if m:
            try:
                q = float(m[1])
            except ValueError:
                q = 0.0
        if name == coding or (coding == "gzip" and name == "x-gzip"):
            return q > 0
        if name == "*":
            star = q > 0
    return bool(star)


def parse_range(header: str | None, length: int) -> tuple[int, int] | Literal[False] | None:
    """(start, end inclusive) of a single satisfiable byte range; None to ignore the header;
    False when it is unsatisfiable (→ 416)."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m[1] and not m[2]):
        return None
    if not m[1]:  # suffix: the last N bytes
        n = int(m[2])
        if n == 0 or length == 0:
            return False
        return max(length - n, 0), length - 1
    start = int(m[1])
    if m[2] and int(m[2]) < start:
        return None
    if start >= length:
        return False
    return start, min(int(m[2]) if m[2] else length - 1, length - 1)


def etag_for(row: FileRow, encoded: bool) -> str:
    """Strong ETag per representation: the stored file's digest (the NDJSON's in job DBs of older
    versions), suffixed for the encoded bytes."""
    tag = (row.digest or row.sha256)[:32]
    return f'"{tag}.{row.compression}"' if encoded else f'"{tag}"'


def sf_value(hex_digest: str) -> str:
    """An RFC 9530 digest field value for a SHA-256 given in hex."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(hex_digest)).decode()}:"


def _repr_digest(row: FileRow, send_stored: bool) -> str | None:
    if send_stored:
        return row.digest or (row.sha256 if row.compression == "identity" else "") or None
    return row.sha256 or None  # decoded on the fly: only BCDA's NDJSON checksum describes it


def _range_digest(path: Path, start: int, end: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start + 1
        while left:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == etag for t in header.split(","))


def _open_decoded(path: Path, compression: str) -> BinaryIO:
    if compression == "gzip":
        from isal import igzip

        return igzip.open(path, "rb")  # reads multi-member gzip too
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), read_across_frames=True, closefd=True)
    return open(path, "rb")


def _open_at(path: Path, compression: str | None, start: int) -> BinaryIO:
    """Stored bytes (compression None) or decoded NDJSON, positioned at `start`."""
    if compression is None:
        f: BinaryIO = open(path, "rb")
        f.seek(start)
        return f
    f = _open_decoded(path, compression)
    left = start
    while left:
        got = len(f.read(min(CHUNK, left)))
        if not got:
            break
        left -= got
    return f


async def serve_file(request: web.Request, row: FileRow, path: Path, headers: dict[str, str],
                     *, stall_timeout: float | None = None) -> web.StreamResponse:
    """Answer GET/HEAD for a stored job file (see module doc). A client that takes none of
    the response for `stall_timeout` seconds is disconnected (see `copy_to`)."""
    encoded = row.compression != "identity" and accepts(request.headers.get("Accept-Encoding"), row.compression)
    send_stored = encoded or row.compression == "identity"
    length = row.stored_length if send_stored else row.length
    etag = etag_for(row, encoded)
    h = {
        **headers,
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Vary": "Accept-Encoding",
        "Cache-Control": "private, no-cache",
        "Content-Type": NDJSON,
    }
    if encoded:
        h["Content-Encoding"] = _TOKEN[row.compression]
    digest = _repr_digest(row, send_stored)
    if digest:
        h["Repr-Digest"] = sf_value(digest)
    if _etag_matches(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers={k: v for k, v in h.items() if k != "Content-Type"})
    rng = parse_range(request.headers.get("Range"), length)
    if_range = request.headers.get("If-Range")
    if rng is not None and if_range is not None and if_range.strip() != etag:
        rng = None  # the client's partial copy is of another representation: send it whole
    if rng is False:
        h["Content-Range"] = f"bytes */{length}"
        del h["Content-Type"]
        return web.Response(status=416, text=f"range not satisfiable: representation is {length} bytes", headers=h)
    status, start, end = 200, 0, length - 1
    loop = asyncio.get_running_loop()
    if rng:
        status, (start, end) = 206, rng
        h["Content-Range"] = f"bytes {start}-{end}/{length}"
        if send_stored and request.method != "HEAD":
            h["Content-Digest"] = sf_value(await loop.run_in_executor(None, _range_digest, path, start, end))
    elif digest:
        h["Content-Digest"] = h["Repr-Digest"]  # the whole representation is the content
    resp = web.StreamResponse(status=status, headers=h)
    resp.content_length = end - start + 1
    await resp.prepare(request)
    if request.method == "HEAD" or end < start:
        await resp.write_eof()
        return resp
    f = await loop.run_in_executor(None, _open_at, path, None if send_stored else row.compression, start)
    try:
        await copy_to(resp, f, end - start + 1, path.name, stall_timeout)
    except TimeoutError:
        client_log.info("%s %s from %s: client error: read nothing of %s for %s s; disconnected",
                        request.method, request.path, request.remote, path.name, stall_timeout)
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError(f"{path.name}: the client stopped reading") from None
    finally:
        await loop.run_in_executor(None, f.close)
    await resp.write_eof()
    return resp


async def copy_to(resp: web.StreamResponse, f: BinaryIO, count: int, name: str,
                  stall_timeout: float | None = None) -> None:
    """Write the next `count` bytes of the open file `f` to a prepared response: `CHUNK` reads
    on a thread, each write awaited (on uvloop this beat sendfile from a thread; see
    benchmarks/bench_serve.py). A file shorter than promised raises ConnectionError naming it.
    A `CHUNK` that cannot go out within `stall_timeout` seconds (the client reads nothing, or
    less than CHUNK / stall_timeout a second: 4 KiB/s at the server's 60 s) raises
    TimeoutError; without it a stalled client would hold its download, and the expiry of
    its job, for ever."""
    loop = asyncio.get_running_loop()
    left = count
    while left:
        chunk = await loop.run_in_executor(None, f.read, min(CHUNK, left))
        if not chunk:
            raise ConnectionError(f"{name}: file ended {left} bytes early")
        async with asyncio.timeout(stall_timeout):
            await resp.write(chunk)
        left -= len(chunk)
