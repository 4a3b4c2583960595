"""Local files of a pull: decoding, verification, final names.

A download lands in `<name>.part` exactly as it came over the wire (gzip or zstd bytes
when the server sent a content coding), so an interruption can continue with `Range`
on the same representation. Once complete, one pass decodes it, hashes the NDJSON,
counts lines and — unless the compressed copy is kept — writes the NDJSON file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO, NamedTuple

from .._backend import core
from ..errors import ClientError
from ..export.compress import SUFFIX

__all__ = ["Verified", "decoded", "finish", "safe_name"]

_READ = 4 << 20


def safe_name(name: str) -> str:
    """A file name that stays inside the output folder."""
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return keep or "file"


def decoded(path: Path, encoding: str | None) -> BinaryIO:
    """The NDJSON bytes of a downloaded file, whatever its content coding."""
    if encoding == "gzip":
        from isal import igzip

        return igzip.open(path, "rb")  # multi-member streams too
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), read_across_frames=True, closefd=True)
    return open(path, "rb")


class Verified(NamedTuple):
    path: Path  # the kept file
    sha256: str
    length: int  # NDJSON bytes
    lines: int
    stored: int  # bytes on disk


def finish(part: Path, encoding: str | None, final: Path, *, keep_compressed: bool, sha256: str | None,
           length: int | None, count: int | None) -> Verified:
    """Decode `part`, check it against the manifest's digest, length and count, and place it.

    `final` is the NDJSON path; a kept compressed file gets the coding's suffix. Raises
    `ClientError` naming the mismatch (the caller then downloads the file again)."""
    write = encoding is not None and not keep_compressed
    target = final.with_name(final.name + SUFFIX[encoding or "identity"]) if not write else final
    digest, n, lines, last = hashlib.sha256(), 0, 0, b"\n"
    tmp = final.with_name(final.name + ".tmp")
    out = open(tmp, "wb") if write else None
    try:
        try:
            with decoded(part, encoding) as f:
                while chunk := f.read(_READ):
                    digest.update(chunk)
                    n += len(chunk)
                    lines += core.count_newlines(chunk)
                    last = chunk[-1:]
                    if out is not None:
                        out.write(chunk)
        except (OSError, EOFError, ValueError) as e:  # gzip/zstd raise these on corrupt input
            raise ClientError(f"{final.name}: the downloaded {encoding} stream does not decode: {e}") from None
        if n and last != b"\n":
            lines += 1
        got = digest.hexdigest()
        problems = []
        if sha256 is not None and got != sha256:
            problems.append(f"sha256 {got} but the manifest says {sha256}")
        if length is not None and n != length:
            problems.append(f"{n} bytes but the manifest says {length}")
        if count is not None and lines != count:
            problems.append(f"{lines} lines but the manifest says {count} resources")
        if problems:
            raise ClientError(f"{final.name}: " + "; ".join(problems))
        if out is not None:
            out.close()
            out = None
            os.replace(tmp, target)
            part.unlink()
        else:
            os.replace(part, target)
    finally:
        if out is not None:
            out.close()
            tmp.unlink(missing_ok=True)
    return Verified(target, got, n, lines, target.stat().st_size)
