"""NDJSON output files: compressed, hashed, rolled over by size, published atomically.

A file is written as `<name>.part`, fsynced, then renamed to `<name>`: a reader
that lists the directory or a manifest never sees a truncated file. sha256 and
length are of the uncompressed NDJSON (what a client verifies after decoding).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

import msgspec

from .compress import SUFFIX, new_encoder

__all__ = ["FileInfo", "NdjsonFile", "RollingWriter", "write_ndjson"]


class FileInfo(msgspec.Struct, frozen=True):
    """A finished output file."""

    type: str
    name: str  # relative to the output directory
    count: int  # resources (lines)
    sha256: str  # hex, of the uncompressed content
    length: int  # bytes, uncompressed
    stored: int  # bytes on disk
    compression: str


class NdjsonFile:
    """One output file being written; `close()` publishes it and returns its FileInfo."""

    def __init__(self, directory: Path, name: str, rtype: str, compression: str, level: int | None = None):
        self.dir = Path(directory)
        self.name = name
        self.type = rtype
        self.compression = compression
        self.final = self.dir / name
        self.tmp = self.dir / (name + ".part")
        self._fh = open(self.tmp, "wb")
        self._enc = new_encoder(compression, level)
        self._sha = hashlib.sha256()
        self.length = 0
        self.count = 0
        self.stored = 0

    def write(self, data, count: int) -> None:
        """Append complete NDJSON lines (`count` of them); `data` is any bytes-like."""
        with memoryview(data) as view:  # released at once: the buffer is reused
            self._sha.update(view)
            self.length += view.nbytes
            chunk = self._enc.compress(view)
        self.count += count
        if chunk:
            self._fh.write(chunk)
            self.stored += len(chunk)

    def close(self) -> FileInfo:
        tail = self._enc.flush()
        if tail:
            self._fh.write(tail)
            self.stored += len(tail)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.final)
        return FileInfo(self.type, self.name, self.count, self._sha.hexdigest(), self.length, self.stored, self.compression)

    def abort(self) -> None:
        """Drop the partial file (errors, cancellation)."""
        try:
            self._fh.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class RollingWriter:
    """Files of one resource type, rolled over after `max_bytes` of uncompressed NDJSON.

    Names: `<Type><tag>.<part:03d>.ndjson<suffix>` (tag e.g. "-00012" for a
    chunk). Rollover happens between writes, so a file ends at a line boundary.
    """

    def __init__(
        self,
        directory: Path,
        rtype: str,
        compression: str = "gzip",
        *,
        max_bytes: int = 256 << 20,
        tag: str = "",
        level: int | None = None,
    ):
        self.dir = Path(directory)
        self.type = rtype
        self.compression = compression
        self.max_bytes = max_bytes
        self.tag = tag
        self.level = level
        self.done: list[FileInfo] = []
        self._cur: NdjsonFile | None = None

    def _name(self, part: int) -> str:
        return f"{self.type}{self.tag}.{part:03d}.ndjson{SUFFIX[self.compression]}"

    def write(self, data, count: int) -> None:
        if count == 0:
            return
        if self._cur is None:
            self._cur = NdjsonFile(self.dir, self._name(len(self.done)), self.type, self.compression, self.level)
        self._cur.write(data, count)
        if self._cur.length >= self.max_bytes:
            self.done.append(self._cur.close())
            self._cur = None

    def close(self) -> list[FileInfo]:
        if self._cur is not None:
            self.done.append(self._cur.close())
            self._cur = None
        return self.done

    def abort(self) -> None:
        if self._cur is not None:
            self._cur.abort()
            self._cur = None


def write_ndjson(path: Path, lines: Iterable[bytes], compression: str, level: int | None = None) -> tuple[int, str, int]:
    """Write NDJSON `lines` (each without its newline) to `path` through an `NdjsonFile`
    (compressed, fsynced, published atomically); returns (count, sha256, length) of the NDJSON."""
    path = Path(path)
    out = NdjsonFile(path.parent, path.name, "", compression, level)
    try:
        for line in lines:
            out.write(line + b"\n", 1)
    except BaseException:
        out.abort()
        raise
    info = out.close()
    return info.count, info.sha256, info.length
