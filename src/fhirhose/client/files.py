"""Local files of a pull: verification, decoding, final names.

A download lands in `<name>.part` exactly as it came over the wire (gzip or zstd bytes
when the server sent a content coding), so an interruption can continue with `Range`
on the same representation; a fresh compressed one of a few MB that is to be decoded is
held in memory instead (written to `.part` only if interrupted). Its SHA-256 is taken
over those bytes as they arrive.

`finish` then checks, in order of cost:
- the representation digest (the manifest's stored digest when the coding sent is the
  one stored, and/or the response's RFC 9530 `Repr-Digest`) and its length;
- unless the compressed copy is kept as is: one pass decodes it (the codec verifies its
  own CRC32 + ISIZE / content checksum), counts lines against the manifest's `count`,
  checks the NDJSON length and writes the NDJSON file;
- the SHA-256 of the NDJSON only when nothing else vouches for the bytes: a server that
  gives only BCDA's uncompressed checksum (BCDA, older fhirhose), or an identity download
  of a file stored compressed. Then a kept compressed file is decoded to check it.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from .._backend import core
from ..errors import ClientError
from ..export.compress import SUFFIX
from ..export.streamed import StreamedFile

__all__ = ["Expected", "Verified", "decoded", "finish", "safe_name"]

_READ = 4 << 20


def safe_name(name: str) -> str:
    """A file name that stays inside the output folder."""
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return keep or "file"


class Decoded(Protocol):
    """A readable binary stream of NDJSON (a file, igzip's or zstandard's reader)."""

    def readinto(self, buffer: Any, /) -> int | None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, t: Any, v: Any, tb: Any, /) -> Any: ...


def decoded(path: Path, encoding: str | None, data: bytes | None = None) -> Decoded:
    """The NDJSON bytes of a downloaded file (read from `data` when given: the same bytes,
    kept in memory), whatever its content coding."""
    if encoding == "gzip":
        from isal import igzip

        # Multi-member streams too; checks each member's CRC32 + ISIZE.
        return igzip.open(path if data is None else io.BytesIO(data), "rb")
    raw: Any = open(path, "rb") if data is None else io.BytesIO(data)
    if encoding == "zstd":
        import zstandard

        # Frames written with a content checksum are verified by the decoder.
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
    return raw


class Expected(NamedTuple):
    """What the manifest and the response say about one file (None: not said)."""

    lines: int | None = None  # resources (the manifest's count)
    length: int | None = None  # NDJSON bytes
    sha256: str | None = None  # hex, of the NDJSON (BCDA's checksum)
    digest: str | None = None  # hex, of the representation received (stored digest or Repr-Digest)
    digest_length: int | None = None  # bytes of that representation


class Verified(NamedTuple):
    path: Path  # the kept file
    sha256: str | None  # of the NDJSON, when it was computed
    length: int | None  # NDJSON bytes (the manifest's when not decoded)
    lines: int | None  # counted, or the manifest's when not decoded
    stored: int  # bytes on disk
    checked: str  # what vouched for the content: "digest", "sha256", "count"


def _read_through(f: Decoded, out: StreamedFile | None, digest) -> tuple[int, int, bytes]:
    """Read `f` to its end, into `out` when given: (bytes, newlines, last byte).

    Decoded in place: into the output file's own buffer when writing NDJSON, else into one
    buffer for the whole file (a fresh 4 MiB bytes object per read is a fresh mapping, and
    faulting its pages in cost more kernel time than writing them). Its own function, so no
    view of the file's buffer outlives it and `out` can keep the buffer for the next file."""
    buf = memoryview(bytearray(_READ if out is None else 0))  # (unused when writing to `out`)
    n, lines, last = 0, 0, b"\n"
    while True:
        space = out.space()[:_READ] if out is not None else buf
        got = f.readinto(space)
        if not got:
            return n, lines, last
        chunk = space[:got]
        if digest is not None:
            digest.update(chunk)
        n += got
        lines += core.count_newlines(chunk)
        last = bytes(chunk[-1:])
        if out is not None:
            out.commit(got)


def finish(part: Path, encoding: str | None, final: Path, *, keep_compressed: bool, expect: Expected,
           received_sha256: str | None, received_bytes: bytes | None = None) -> Verified:
    """Check `part` (see module doc) and place it; `received_sha256` is the hex digest of its bytes
    as they arrived, `received_bytes` those bytes when they were kept in memory (then decoded
    from there, not read back). `final` is the NDJSON path; a kept compressed file gets the
    coding's suffix. Raises `ClientError` naming the mismatch (the caller then downloads the
    file again)."""
    problems = []
    size = part.stat().st_size if received_bytes is None else len(received_bytes)
    if expect.digest is not None:
        if received_sha256 != expect.digest:
            problems.append(f"the {encoding or 'identity'} bytes received have sha256 {received_sha256}, "
                            f"the server says {expect.digest}")
        if expect.digest_length is not None and size != expect.digest_length:
            problems.append(f"{size} bytes received, the server says {expect.digest_length}")
    if problems:
        raise ClientError(f"{final.name}: " + "; ".join(problems))
    need_sha = expect.digest is None and expect.sha256 is not None
    if encoding is not None and keep_compressed and not need_sha:
        # Verified as sent: nothing to decode (the codec's check runs whenever it is read).
        target = final.with_name(final.name + SUFFIX[encoding])
        os.replace(part, target)
        return Verified(target, None, expect.length, expect.lines, size, "digest" if expect.digest else "none")
    write = encoding is not None and not keep_compressed
    target = final if write else final.with_name(final.name + SUFFIX[encoding or "identity"])
    digest = hashlib.sha256() if need_sha else None
    tmp = final.with_name(final.name + ".tmp")
    out = StreamedFile(tmp) if write else None
    try:
        try:
            with decoded(part, encoding, received_bytes) as f:
                n, lines, last = _read_through(f, out, digest)
        except (OSError, EOFError, ValueError) as e:  # gzip/zstd raise these on corrupt input
            raise ClientError(f"{final.name}: the downloaded {encoding} stream does not decode: {e}") from None
        if n and last != b"\n":
            lines += 1
        got = digest.hexdigest() if digest is not None else None
        if got is not None and got != expect.sha256:
            problems.append(f"sha256 {got} but the manifest says {expect.sha256}")
        if expect.length is not None and n != expect.length:
            problems.append(f"{n} bytes but the manifest says {expect.length}")
        if expect.lines is not None and lines != expect.lines:
            problems.append(f"{lines} lines but the manifest says {expect.lines} resources")
        if problems:
            raise ClientError(f"{final.name}: " + "; ".join(problems))
        if out is not None:
            out.close()
            out = None
            os.replace(tmp, target)
            part.unlink(missing_ok=True)  # (none when decoded from memory)
        else:
            os.replace(part, target)
    finally:
        if out is not None:
            out.close()
            tmp.unlink(missing_ok=True)
    checked = "digest" if expect.digest else "sha256" if got else "count"
    return Verified(target, got, n, lines, target.stat().st_size, checked)
