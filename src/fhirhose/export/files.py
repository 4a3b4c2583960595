"""NDJSON output files: compressed, digested as stored, rolled over by size, published atomically.

A file is written as `<name>.part`, fsynced, then renamed to `<name>`: a reader
that lists the directory or a manifest never sees a truncated file. (With `fsync=False`
the caller fsyncs before it lists the file: the server's runner does, off the worker's
path.) gzip files are put together from independently deflated pieces
(compress.encode_piece), so the exporter's two threads can both compress; each is still
one ordinary gzip member.

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
import queue
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import BinaryIO

import msgspec

from .compress import PIECED, SUFFIX, Piece, PieceFrame, encode_piece, new_encoder
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


def _hashes_ndjson(compression: str, ndjson_sha256: bool) -> bool:
    """Whether BCDA's NDJSON checksum needs a hash of its own: an identity file's stored
    digest already is it, never hash twice."""
    return ndjson_sha256 and compression != "identity"


# Small writes (a line at a time) are gathered into pieces of about this much NDJSON: a
# piece per line would compress badly.
_GATHER = 1 << 20


class NdjsonFile:
    """One output file being written; `close()` publishes it and returns its FileInfo.

    Two ways in, not to be mixed: `write(data, count)` from one thread, or the pieces of
    a parallel pipeline — `encode` (any thread, any order) then `put` of each piece in
    line order (`compress.PIECED` codecs only).
    """

    def __init__(self, directory: Path, name: str, rtype: str, compression: str, level: int | None = None,
                 *, ndjson_sha256: bool = False, cached: bool = True, fsync: bool = True):
        self.dir = Path(directory)
        self.fsync = fsync
        self.name = name
        self.type = rtype
        self.compression = compression
        self.level = level
        self.final = self.dir / name
        self.tmp = self.dir / (name + ".part")
        self.pieced = compression in PIECED
        self._enc = None if self.pieced else new_encoder(compression, level)
        self._frame = PieceFrame(compression) if self.pieced else None
        self._gathered = bytearray()
        self._gathered_count = 0
        self._digest = hashlib.sha256()
        self._ndjson = hashlib.sha256() if _hashes_ndjson(compression, ndjson_sha256) else None
        self._want_ndjson = ndjson_sha256
        self.length = 0
        self.count = 0
        self.stored = 0
        self._fh: BinaryIO | StreamedFile = open(self.tmp, "wb") if cached else StreamedFile(self.tmp)
        if self._frame is not None:
            self._store(self._frame.head())

    @property
    def needs_ndjson(self) -> bool:
        """Whether `put` must also be given each piece's NDJSON (to hash it in order)."""
        return self._ndjson is not None

    def write(self, data, count: int) -> None:
        """Append complete NDJSON lines (`count` of them); `data` is any bytes-like."""
        if not self.pieced:
            with memoryview(data) as view:  # released at once: the caller reuses its buffer
                self._hash_ndjson(view)
                self.length += view.nbytes
                chunk = self._enc.compress(view)  # type: ignore[union-attr]
            self.count += count
            self._store(chunk)
            return
        with memoryview(data) as view:
            if not self._gathered and view.nbytes >= _GATHER:
                self.put(self.encode(view, count), view)
                return
            self._gathered += view
            self.length += view.nbytes  # counted now: a rollover at `length` sees them
        self._gathered_count += count
        self.count += count
        if len(self._gathered) >= _GATHER:
            self._put_gathered()

    def _put_gathered(self) -> None:
        if self._gathered:
            self._put(self.encode(self._gathered, self._gathered_count), self._gathered)
            self._gathered.clear()
            self._gathered_count = 0

    def encode(self, data, count: int) -> Piece:
        """Compress complete NDJSON lines on their own (thread-safe; `put` stores them)."""
        return encode_piece(self.compression, self.level, data, count)

    def put(self, piece: Piece, ndjson=None) -> None:
        """Store the next piece; `ndjson` is its uncompressed bytes when `needs_ndjson`."""
        if self._ndjson is not None and ndjson is None:
            raise ValueError(f"{self.name}: the NDJSON checksum needs each piece's NDJSON")
        self.length += piece.length
        self.count += piece.lines
        self._put(piece, ndjson)

    def _put(self, piece: Piece, ndjson) -> None:
        self._hash_ndjson(ndjson)
        self._frame.add(piece)  # type: ignore[union-attr]
        self._store(piece.data)

    def _hash_ndjson(self, data) -> None:
        if self._ndjson is not None:
            self._ndjson.update(data)

    def _store(self, chunk) -> None:
        """Digest and write bytes as stored."""
        if chunk:
            self._digest.update(chunk)
            self._fh.write(chunk)
            self.stored += len(chunk)

    def close(self) -> FileInfo:
        """Finish the stream, then publish."""
        if self._frame is not None:
            self._put_gathered()
            self._store(self._frame.tail())
        else:
            self._store(self._enc.flush())  # type: ignore[union-attr]
        return self._publish()

    def _publish(self) -> FileInfo:
        """fsync (unless the caller will), rename into place, describe."""
        self._fh.flush()
        if self.fsync:
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

    Names: `file_name(type, chunk, part)`. Rollover happens between writes (or pieces),
    so a file ends at a line boundary. A pipeline feeds it as `NdjsonFile` is fed: `write`
    from one thread, or `encode` on any thread and `put` in order (when `pieced`).
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
        fsync: bool = True,
    ):
        self.dir = Path(directory)
        self.type = rtype
        self.compression = compression
        self.max_bytes = max_bytes
        self.chunk = chunk
        self.level = level
        self.ndjson_sha256 = ndjson_sha256
        self.cached = cached
        self.fsync = fsync
        self.pieced = compression in PIECED
        # put() needs each piece's NDJSON to hash it in order (BCDA's checksum of a compressed file).
        self.needs_ndjson = _hashes_ndjson(compression, ndjson_sha256)
        self.done: list[FileInfo] = []
        self._cur: NdjsonFile | None = None
        self._parts = 0
        self._open: list[NdjsonFile] = []  # opened, not yet published (abort removes them)
        self._closing: list[tuple[NdjsonFile, Future]] = []  # full, being closed and published

    def _file(self) -> NdjsonFile:
        f = self._cur
        if f is None:
            self._parts += 1
            name = file_name(self.type, self.chunk, self._parts, self.compression)
            f = self._cur = NdjsonFile(self.dir, name, self.type, self.compression, self.level,
                                       ndjson_sha256=self.ndjson_sha256, cached=self.cached,
                                       fsync=self.fsync)
            self._open.append(f)
        return f

    def _roll(self, f: NdjsonFile) -> None:
        if f.length >= self.max_bytes:
            self._cur = None
            self._publish(f)

    def _publish(self, f: NdjsonFile) -> None:
        # On a thread of its own: closing waits for the file's last writes and fsyncs it
        # (~4 ms; longer while another writer fills the disk), and the pipeline stores
        # nothing else meanwhile.
        self._open.remove(f)
        self._closing.append((f, _closer().submit(f.close)))

    def _closed(self) -> None:
        """Wait for the files being closed; on an error close the rest, then raise it."""
        closing, self._closing = self._closing, []
        error = None
        for f, fut in closing:
            try:
                self.done.append(fut.result())
            except BaseException as e:  # its .part is removed; later files still wait
                f.abort()
                error = error or e
        if error is not None:
            raise error

    def write(self, data, count: int) -> None:
        if count:
            f = self._file()
            f.write(data, count)
            self._roll(f)

    def encode(self, data, count: int) -> Piece:
        """Compress a batch on its own (any thread); `put` it in order."""
        return encode_piece(self.compression, self.level, data, count)

    def put(self, piece: Piece, ndjson=None) -> None:
        """Store the next piece in the current file (opened on demand); rolls over at `max_bytes`."""
        if piece.lines:
            f = self._file()
            f.put(piece, ndjson)
            self._roll(f)

    def finish(self) -> None:
        """No more writes: the current file starts closing (on its own thread); `close` waits."""
        if self._cur is not None:
            f, self._cur = self._cur, None
            self._publish(f)

    def close(self) -> list[FileInfo]:
        """Finish, wait for every file to be published, and list them."""
        self.finish()
        self._closed()
        return self.done

    def abort(self) -> None:
        """Drop the files being written; files already closing are published and listed in
        `done` (the caller removes them)."""
        for f in self._open:
            f.abort()
        self._open.clear()
        self._cur = None
        try:
            self._closed()
        except BaseException:
            pass  # aborting already: the error that led here is the one to report


class _Closer:
    """Runs file closes on two daemon threads; `submit` returns a Future.

    Not a ThreadPoolExecutor: the interpreter's exit joins those threads through a registry
    that an interrupt landing while one starts leaves it out of, and the exit then waits for
    it forever (seen: `fhirhose export` stopped with Ctrl-C as its first files closed hung,
    about one run in thirty). Every close is waited for by whoever submitted it (a chunk
    waits for its files, an abort for the files already closing), so exit cuts none short."""

    def __init__(self, threads: int = 2):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(threads):
            threading.Thread(target=self._work, name=f"fhirhose-publish_{i}", daemon=True).start()

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        self._queue.put((fut, fn, args))
        return fut

    def _work(self) -> None:
        while True:
            fut, fn, args = self._queue.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # handed to the waiter, as an executor would
                fut.set_exception(e)


_CLOSER: _Closer | None = None


def _closer() -> _Closer:
    global _CLOSER
    if _CLOSER is None:
        _CLOSER = _Closer()
    return _CLOSER


def _forget_closer() -> None:
    global _CLOSER
    _CLOSER = None  # a forked child has none of its parent's threads: it makes its own


os.register_at_fork(after_in_child=_forget_closer)


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
