"""NDJSON output files: compressed, digested as stored, rolled over by size, published atomically.

A file is written as `<name>.part`, fsynced, then renamed to `<name>`: a reader
that lists the directory or a manifest never sees a truncated file.

Integrity (DESIGN.md "Integrity"): `digest` is the SHA-256 of the bytes as stored and
sent (the gzip or zstd file), ~19x fewer bytes than the NDJSON. The NDJSON inside is
guarded by the codec's own check (gzip CRC32 + ISIZE, zstd frame content checksum),
which every decoder verifies. The SHA-256 of the uncompressed NDJSON (BCDA's checksum)
is computed only when asked (`ndjson_sha256=True`): it costs more CPU than writer and
gzip together.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import msgspec

from .compress import SUFFIX, new_encoder
from .streamed import StreamedFile

__all__ = ["FileInfo", "NdjsonFile", "RollingWriter", "write_ndjson", "file_name"]


class FileInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A finished output file."""

    type: str
    name: str  # relative to the output directory
    count: int  # resources (lines)
    length: int  # bytes of NDJSON (uncompressed)
    stored: int  # bytes on disk
    compression: str  # gzip | zstd | identity
    digest: str  # sha256 hex of the bytes on disk (the representation sent with Content-Encoding)
    sha256: str | None = None  # sha256 hex of the NDJSON, only when asked for (BCDA checksum)


def file_name(rtype: str, chunk: int, part: int, compression: str = "identity") -> str:
    """The one naming scheme of output files, offline and served: `Patient-00000-001.ndjson[.gz]`
    (chunk from 0, part within the chunk from 1)."""
    return f"{rtype}-{chunk:05d}-{part:03d}.ndjson{SUFFIX[compression]}"


class NdjsonFile:
    """One output file being written; `close()` publishes it and returns its FileInfo."""

    def __init__(self, directory: Path, name: str, rtype: str, compression: str, level: int | None = None,
                 *, ndjson_sha256: bool = False, cached: bool = True):
        self.dir = Path(directory)
        self.name = name
        self.type = rtype
        self.compression = compression
        self.final = self.dir / name
        self.tmp = self.dir / (name + ".part")
        self._enc = new_encoder(compression, level)
        self._digest = hashlib.sha256()
        # Identity files: the stored digest already is the NDJSON's, never hash twice.
        self._ndjson = hashlib.sha256() if ndjson_sha256 and compression != "identity" else None
        self._want_ndjson = ndjson_sha256
        self.length = 0
        self.count = 0
        self.stored = 0
        self._fh: BinaryIO | StreamedFile = open(self.tmp, "wb") if cached else StreamedFile(self.tmp)

    def write(self, data, count: int) -> None:
        """Append complete NDJSON lines (`count` of them); `data` is any bytes-like."""
        self.put(self.encode(data, count))

    # The two halves of `write`, for a pipeline that compresses on one thread and stores on
    # another: `encode` calls in line order, then `put` of their results in the same order.
    def encode(self, data, count: int) -> bytes:
        """Compress complete NDJSON lines; returns the bytes to `put` (maybe empty)."""
        with memoryview(data) as view:  # released at once: the buffer is reused
            if self._ndjson is not None:
                self._ndjson.update(view)
            self.length += view.nbytes
            chunk = self._enc.compress(view)
        self.count += count
        return chunk

    def flush(self) -> bytes:
        """The encoder's last bytes (to `put` before `publish`); no `encode` after it."""
        return self._enc.flush()

    def put(self, chunk) -> None:
        """Digest and store compressed bytes."""
        if chunk:
            self._digest.update(chunk)
            self._fh.write(chunk)
            self.stored += len(chunk)

    def close(self) -> FileInfo:
        self.put(self.flush())
        return self.publish()

    def publish(self) -> FileInfo:
        """fsync, rename into place, describe."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.final)
        digest = self._digest.hexdigest()
        sha = None
        if self._want_ndjson:
            sha = digest if self._ndjson is None else self._ndjson.hexdigest()
        return FileInfo(type=self.type, name=self.name, count=self.count, length=self.length, stored=self.stored,
                        compression=self.compression, digest=digest, sha256=sha)

    def abort(self) -> None:
        """Drop the partial file (errors, cancellation)."""
        try:
            self._fh.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class RollingWriter:
    """Files of one resource type, rolled over after `max_bytes` of uncompressed NDJSON.

    Names: `file_name(type, chunk, part)`. Rollover happens between writes, so a file
    ends at a line boundary.
    """

    def __init__(
        self,
        directory: Path,
        rtype: str,
        compression: str = "gzip",
        *,
        max_bytes: int = 256 << 20,
        chunk: int = 0,
        level: int | None = None,
        ndjson_sha256: bool = False,
        cached: bool = True,
    ):
        self.dir = Path(directory)
        self.type = rtype
        self.compression = compression
        self.max_bytes = max_bytes
        self.chunk = chunk
        self.level = level
        self.ndjson_sha256 = ndjson_sha256
        self.cached = cached
        self.done: list[FileInfo] = []
        self._cur: NdjsonFile | None = None
        self._parts = 0
        self._open: list[NdjsonFile] = []  # opened, not yet published (abort removes them)

    def write(self, data, count: int) -> None:
        self.put(self.encode(data, count))

    # `write` in two halves (see NdjsonFile.encode): `encode` runs on the compressing thread,
    # `put` of its results in the same order on the storing one.
    def encode(self, data, count: int) -> tuple[NdjsonFile, bytes, bytes | None] | None:
        """Compress into the current file (opened on demand); at `max_bytes` also flush it."""
        if count == 0:
            return None
        f = self._cur
        if f is None:
            self._parts += 1
            name = file_name(self.type, self.chunk, self._parts, self.compression)
            f = self._cur = NdjsonFile(self.dir, name, self.type, self.compression, self.level,
                                       ndjson_sha256=self.ndjson_sha256, cached=self.cached)
            self._open.append(f)
        chunk = f.encode(data, count)
        tail = None
        if f.length >= self.max_bytes:
            tail, self._cur = f.flush(), None
        return f, chunk, tail

    def put(self, encoded: tuple[NdjsonFile, bytes, bytes | None] | None) -> None:
        """Store what `encode` returned; a flushed file is published."""
        if encoded is None:
            return
        f, chunk, tail = encoded
        f.put(chunk)
        if tail is not None:
            f.put(tail)
            self.done.append(f.publish())
            self._open.remove(f)

    def close(self) -> list[FileInfo]:
        if self._cur is not None:
            f, self._cur = self._cur, None
            self.put((f, b"", f.flush()))
        return self.done

    def abort(self) -> None:
        for f in self._open:
            f.abort()
        self._open.clear()
        self._cur = None


def write_ndjson(path: Path, lines: Iterable[bytes], compression: str, level: int | None = None, *,
                 rtype: str = "", ndjson_sha256: bool = False) -> FileInfo:
    """Write NDJSON `lines` (each without its newline) to `path` through an `NdjsonFile`
    (compressed, fsynced, published atomically) and describe it."""
    path = Path(path)
    out = NdjsonFile(path.parent, path.name, rtype, compression, level, ndjson_sha256=ndjson_sha256)
    try:
        for line in lines:
            out.write(line + b"\n", 1)
    except BaseException:
        out.abort()
        raise
    return out.close()
