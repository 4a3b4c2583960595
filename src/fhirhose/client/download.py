"""One file's download: fetch it whole or continue a partial copy, verify it, record it.

A download lands in `<name>.part` as it came over the wire, or in memory when it is a
fresh compressed one of at most `_IN_MEMORY` bytes to be decoded (see `files`). An interrupted
one continues with `Range` + `If-Range` on the representation it started (same ETag,
same content coding); the SHA-256 of the bytes as sent is taken as they arrive (over a
resumed copy, from what is already on disk). `files.finish` then checks and places it;
a file that fails verification is downloaded once more from the start.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from ..errors import ClientError
from ..export.streamed import StreamedFile
from ..log import get_logger
from ._http import NET_ERRORS, ServerError
from .files import Expected, finish
from .state import FileState, PullState

if TYPE_CHECKING:
    from .client import BulkClient

__all__ = ["Downloads"]

_IN_FLIGHT = 4  # received chunks (read_size each) waiting for the digest and the file write
_IN_MEMORY = 64 << 20  # compressed downloads up to this size are decoded from memory

log = get_logger(__name__)

_CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "zstd": "zstd", "identity": None, "": None}


class _Retry(Exception):
    """A download must start again (its partial copy was discarded)."""


class Downloads:
    """The download side of one pull: workers take files from `queue` (None stops one) and
    download each; counts what came over the wire."""

    def __init__(self, client: BulkClient, state: PullState, out: Path):
        self.c = client
        self.state = state
        self.out = out
        self.queue: asyncio.Queue[FileState | None] = asyncio.Queue()
        self.wire_bytes = 0
        self.last_byte: float | None = None
        self.requires_token = True  # the manifest's requiresAccessToken

    async def worker(self) -> None:
        while (f := await self.queue.get()) is not None:
            await self.download(f)

    async def download(self, f: FileState) -> None:
        """Bring `f` in: fetch (network failures continue the partial copy, up to five times),
        verify and place it, and record it in the pull state."""
        part = self.out / (f.name + ".part")
        fetch_failures = verify_failures = 0
        while True:
            try:
                received, held = await self.fetch(f, part)
            except _Retry:
                continue
            except NET_ERRORS as e:
                fetch_failures += 1
                if fetch_failures > 5:
                    raise ClientError(f"download {f.url}: {type(e).__name__}: {e}") from None
                log.info("download %s interrupted (%s); resuming", f.name, e)
                await asyncio.sleep(min(2.0 ** fetch_failures, 30.0))
                continue
            self.last_byte = time.monotonic()
            f.encoded_bytes = part.stat().st_size if held is None else len(held)
            try:
                v = await asyncio.to_thread(finish, part, f.encoding, self.out / f.name,
                                            keep_compressed=self.c.keep_compressed, expect=self.expected(f),
                                            received_sha256=received, received_bytes=held)
            except ClientError as e:
                verify_failures += 1
                part.unlink(missing_ok=True)
                f.etag = f.encoding = None
                if verify_failures > 1:
                    raise
                log.warning("%s; downloading it again", e)
                continue
            f.path, f.lines, f.ndjson_bytes, f.stored_bytes = v.path.name, v.lines, v.length, v.stored
            f.sha256, f.checked = f.sha256 or v.sha256, v.checked
            self.state.save(self.out)
            self.c.progress.verified(f)
            return

    @staticmethod
    def expected(f: FileState) -> Expected:
        """What to check `f`'s download against: the manifest's stored digest applies when the
        coding received is the one stored; a `Repr-Digest` sent with it applies always."""
        digest = digest_length = None
        if f.stored_sha256 and (f.encoding or "identity") == f.stored_encoding:
            digest, digest_length = f.stored_sha256, f.stored_length
        if f.repr_digest:
            if digest is not None and digest != f.repr_digest:
                raise ClientError(f"{f.name}: the download's Repr-Digest {f.repr_digest} contradicts the "
                                  f"manifest's stored sha256 {digest}")
            digest = f.repr_digest
        return Expected(lines=f.count, length=f.length, sha256=f.sha256, digest=digest, digest_length=digest_length)

    async def fetch(self, f: FileState, part: Path) -> tuple[str | None, bytes | None]:
        """Bring `part` up to the whole representation (appending with Range when it can);
        returns the hex SHA-256 of the whole representation, taken as the bytes arrive, and
        the representation itself when it was kept in memory to be decoded (`_IN_MEMORY`)."""
        have = part.stat().st_size if part.exists() else 0
        if have and not f.etag:
            have = 0  # no validator for the partial copy: it cannot be continued safely
        headers = {"Accept-Encoding": self.c.accept_encoding, "Accept": "application/fhir+ndjson"}
        if have and f.etag:  # (have is 0 without an etag)
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = f.etag
        r = await self.c._send("GET", f.url, auth=self.requires_token, headers=headers, auto_decompress=False)
        async with r:
            if r.status == 416 and have:
                total = _range_total(r.headers.get("Content-Range"))
                await r.read()
                if total == have:  # the partial copy was already whole
                    return await asyncio.to_thread(_file_sha256, part), None
                part.unlink()
                raise _Retry
            if r.status not in (200, 206):
                raise ServerError(f"download {f.url}", r.status, await r.read(), r.content_type)
            encoding = _coding(r.headers.get("Content-Encoding"))
            etag = r.headers.get("ETag")
            if r.status == 206:
                start, total = _content_range(r.headers.get("Content-Range"))
                if start != have or encoding != f.encoding:
                    part.unlink()
                    f.etag = None
                    raise _Retry
                offset = have
            else:
                offset, total = 0, r.content_length
            validator = etag if etag and not etag.startswith("W/") else None
            repr_digest = _repr_digest(r.headers.get("Repr-Digest"))
            if (validator, encoding, repr_digest) != (f.etag, f.encoding, f.repr_digest):
                f.etag, f.encoding, f.repr_digest = validator, encoding, repr_digest
                self.state.save(self.out)
            self.c.progress.started(f, offset, total)
            got = offset
            # The digest covers the bytes as sent, before decoding: ~19x fewer than the NDJSON.
            digest = await asyncio.to_thread(_file_sha256, part, False) if offset else hashlib.sha256()

            # A fresh compressed download to be decoded (a few MB) is held in memory and decoded
            # from there: no `.part` is written and read back. An interrupted one is written to
            # `.part` then, so that it continues with Range as any other.
            held: list[bytes] | None = None
            if (not self.c.keep_compressed and not offset and encoding is not None and total is not None
                    and total <= _IN_MEMORY):
                held = []

            def keep(chunk: bytes) -> None:
                digest.update(chunk)
                put(chunk)

            # Digest and file write on a thread of their own (in arrival order), so the event
            # loop only receives: at the end of an export, when the server's cores go idle, the
            # client's download rate is what is left of the run.
            pending: collections.deque[asyncio.Future] = collections.deque()
            with contextlib.ExitStack() as files:
                if held is not None:
                    put = held.append
                else:  # written past the page cache: a kept file is not read back soon
                    dst = StreamedFile(part, append=bool(offset))
                    files.callback(dst.close)
                    put = dst.write
                keeper = files.enter_context(ThreadPoolExecutor(1, thread_name_prefix="fhirhose-keep"))
                loop = asyncio.get_running_loop()
                try:
                    async for chunk in r.content.iter_chunked(self.c.read_size):
                        pending.append(loop.run_in_executor(keeper, keep, chunk))
                        if len(pending) > _IN_FLIGHT:
                            await pending.popleft()
                        got += len(chunk)
                        self.wire_bytes += len(chunk)
                        self.c.progress.received(f, len(chunk))
                    while pending:
                        await pending.popleft()
                except BaseException:
                    if held is not None:
                        for p in pending:
                            p.cancel()
                        keeper.shutdown(wait=True)
                        part.write_bytes(b"".join(held))  # what arrived, for a resume
                    raise
            if total is not None and got != total:
                raise aiohttp.ClientPayloadError(f"{f.name}: got {got} of {total} bytes")
            return digest.hexdigest(), None if held is None else b"".join(held)


def _coding(header: str | None) -> str | None:
    key = (header or "").strip().lower()
    if key not in _CODINGS:
        raise ClientError(f"the server sent Content-Encoding {header!r}, which was not asked for")
    return _CODINGS[key]


def _repr_digest(header: str | None) -> str | None:
    """The sha-256 of an RFC 9530 `Repr-Digest` field, in hex (None: absent or another algorithm)."""
    for member in (header or "").split(","):
        name, _, value = member.strip().partition("=")
        if name.strip().lower() == "sha-256" and value.startswith(":") and value.endswith(":"):
            try:
                raw = base64.b64decode(value[1:-1], validate=True)
            except (binascii.Error, ValueError):
                raise ClientError(f"unreadable Repr-Digest {header!r}") from None
            if len(raw) == 32:
                return raw.hex()
    return None


def _content_range(header: str | None) -> tuple[int, int | None]:
    """(first byte, complete length) of `Content-Range: bytes a-b/n`."""
    try:
        unit, _, spec = (header or "").partition(" ")
        span, _, total = spec.partition("/")
        if unit != "bytes":
            raise ValueError
        return int(span.partition("-")[0]), None if total == "*" else int(total)
    except ValueError:
        raise ClientError(f"206 with an unreadable Content-Range {header!r}") from None


def _range_total(header: str | None) -> int | None:
    _, _, total = (header or "").rpartition("/")
    return int(total) if total.isdigit() else None


def _file_sha256(path: Path, hexdigest: bool = True):
    """SHA-256 of a partial download already on disk (a resumed download continues it)."""
    with open(path, "rb") as fh:
        h = hashlib.file_digest(fh, "sha256")
    return h.hexdigest() if hexdigest else h
