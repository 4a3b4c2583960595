"""Input files: paths, directories and (nested) zip archives → named byte buffers.

A plain file is memory-mapped, so a multi-GB CCLF file is parsed in place; a zip
member is read into memory. Each buffer keeps where it came from (`path` or
`archive.zip:member`) for messages, and `source_info` records every input's
SHA-256 in the store's history.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...columns import Table
from ...errors import IngestError
from ..layout import SourceFile, SourceInfo

__all__ = ["Member", "read_members", "source_info"]


@dataclass
class Member:
    """One input file: its name, bytes and where it came from (for messages)."""

    name: str
    data: bytes | mmap.mmap
    origin: str


def read_members(paths: Iterable[str | os.PathLike]) -> list[Member]:
    """Every file under `paths` (directories in name order; zips unpacked, nested ones too)."""
    out: list[Member] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(read_members(sorted(q for q in p.iterdir() if q.is_file())))
        elif not p.exists():
            raise IngestError(f"{p}: no such file")
        else:
            out.extend(_unpack(p.name, _map(p), str(p)))
    return out


def _map(p: Path):
    """A plain file's bytes, memory-mapped: a multi-GB CCLF file is parsed in place
    (the record matrix is a view of the map) instead of being read into memory."""
    with open(p, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _unpack(name: str, data: bytes, origin: str) -> list[Member]:
    if data[:4] != b"PK\x03\x04" and not name.lower().endswith(".zip"):
        return [Member(name, data, origin)]
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            out = []
            for info in z.infolist():
                if info.is_dir():
                    continue
                inner = z.read(info)
                base = info.filename.rsplit("/", 1)[-1]
                out.extend(_unpack(base, inner, f"{origin}:{info.filename}"))
            return out
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error) as e:
        raise IngestError(f"{origin}: corrupt zip archive ({e})") from None


def source_info(kind: str, members: Sequence[Member], tables: Mapping[str, Table], note: str = "") -> SourceInfo:
    files = [SourceFile(m.origin, hashlib.sha256(m.data).hexdigest(), len(m.data)) for m in members]
    return SourceInfo(kind, files, {n: t.n for n, t in tables.items()}, note)
