"""Large output files written past the page cache: `pull`'s NDJSON, the offline export's files.

Tens of GB written through the page cache fill memory with pages nobody reads back, and on
this VM filling fresh pages is what costs most: `dd` of 4 GiB took 10.4 s through the cache
(9.6 s of it kernel time) and 1.9 s with O_DIRECT (0.24 s kernel). So where the file system
takes O_DIRECT, a `StreamedFile` gathers bytes in a page-aligned buffer and writes whole
aligned blocks straight to the device; the unaligned last few bytes go through the cache.
Where it does not (some file systems, other systems), it writes through the cache and every
`_WINDOW` bytes starts the writeback of what it wrote (`sync_file_range`) and drops the window
before that from the cache (`POSIX_FADV_DONTNEED`), as `dd oflag=nocache` does.

(The server keeps its stored files cached: it serves them next.)
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

__all__ = ["StreamedFile"]

_O_DIRECT = getattr(os, "O_DIRECT", 0)
_ALIGN = 4096  # O_DIRECT wants buffer address, file offset and length in whole logical blocks
_STAGE = 8 << 20  # bytes gathered per write (two such buffers per file)
_WINDOW = 16 << 20  # through the cache: bytes between writeback starts (16-256 MiB measured alike)


def _libc_sync_file_range():
    """libc's sync_file_range (Linux), or None where there is none."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return fn


_SYNC_FILE_RANGE = _libc_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


# Buffers are kept for the next file: fresh anonymous memory costs kernel time on every
# first touch (on this VM more than the direct write of it), and a pull writes hundreds of files.
_SPARE: list[mmap.mmap] = []
_SPARE_MAX = 8
_SPARE_LOCK = threading.Lock()


def _take_stage() -> mmap.mmap:
    with _SPARE_LOCK:
        while _SPARE:
            stage = _SPARE.pop()
            if len(stage) == _STAGE:
                return stage
    return mmap.mmap(-1, _STAGE)  # page-aligned, as O_DIRECT wants


def _give_stage(stage: mmap.mmap) -> None:
    """Keep `stage` for the next file, unless a view of it is still held somewhere (a caller's
    slice of `space()`): then it is left to be unmapped when that view goes."""
    try:
        stage.resize(len(stage))  # a no-op that mmap refuses (BufferError) while views exist
    except (BufferError, OSError, SystemError, ValueError):
        return
    with _SPARE_LOCK:
        if len(_SPARE) < _SPARE_MAX and len(stage) == _STAGE:
            _SPARE.append(stage)


class StreamedFile:
    """A write-only file for bytes nobody reads back soon (see the module doc).

    `write(data)` copies; a producer that can fill a buffer in place (a decoder's `readinto`)
    asks for `space()` and then `commit(n)` the bytes it put there, saving that copy.
    A full buffer is written on a thread of the file's own while the other one fills, so the
    producer does not wait for the device (direct writes are synchronous). A write's error
    (a full disk) is raised by the next `commit`/`write`, `flush` or `close`.
    `flush()` puts every byte given so far in the file (then `os.fsync` makes them durable);
    `close()` flushes and closes. `direct=False` always goes through the cache; `append=True`
    continues an existing file."""

    def __init__(self, path: Path | str, *, direct: bool = True, append: bool = False):
        flags = os.O_WRONLY | os.O_CREAT | (0 if append else os.O_TRUNC) | getattr(os, "O_CLOEXEC", 0)
        self._direct = False
        self._fd = -1
        if direct and _O_DIRECT:
            try:
                self._fd = os.open(path, flags | _O_DIRECT, 0o666)
                self._direct = True
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: this file system has no direct I/O
                    raise
        if self._fd < 0:
            self._fd = os.open(path, flags, 0o666)
        # Appending continues at the end (a direct write there that is not block-aligned is
        # refused, and the file goes on through the cache).
        end = os.lseek(self._fd, 0, os.SEEK_END) if append else 0
        # Two page-aligned buffers: one fills while the other is written.
        self._stages = [_take_stage(), _take_stage()]
        self._views = [memoryview(m) for m in self._stages]
        self._view = self._views[0]
        self._fill = 0  # bytes waiting in `_view`
        self._writer: ThreadPoolExecutor | None = None
        self._pending: Future | None = None  # the other buffer's write
        self._written = end  # bytes in the file
        self._started = end  # through the cache: writeback started up to here

    @property
    def direct(self) -> bool:
        """True while writes bypass the page cache."""
        return self._direct

    def fileno(self) -> int:
        return self._fd

    def write(self, data) -> None:
        """Append the bytes of any bytes-like object."""
        with memoryview(data) as mv:
            src = mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")
            while src:
                n = min(len(src), len(self._view) - self._fill)
                self._view[self._fill:self._fill + n] = src[:n]
                src = src[n:]
                self.commit(n)

    def space(self) -> memoryview:
        """Where the next bytes can be put in place (never empty); then `commit` how many."""
        return self._view[self._fill:]

    def commit(self, n: int) -> None:
        """`n` bytes were put at the start of the last `space()`."""
        self._fill += n
        if self._fill == len(self._view):
            self._wait()  # the other buffer is written: it can be refilled
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="fhirhose-streamed")
            self._pending = self._writer.submit(self._write_all, self._view)
            self._view = self._views[1] if self._view is self._views[0] else self._views[0]
            self._fill = 0

    def flush(self) -> None:
        """Every byte given so far into the file (the last partial block through the cache)."""
        self._wait()
        whole = self._fill - self._fill % _ALIGN if self._direct else self._fill
        if whole:
            self._write_all(self._view[:whole])
            rest = self._fill - whole
            self._view[:rest] = self._view[whole:self._fill]
            self._fill = rest
        if self._fill:  # a partial block: direct I/O cannot write it, so the file continues cached
            self._leave_direct()
            self._write_all(self._view[:self._fill])
            self._fill = 0

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)  # never close the descriptor under a write
            os.close(self._fd)
            self._fd = -1
            for v, m in zip(self._views, self._stages, strict=True):
                try:
                    v.release()
                except BufferError:  # something holds a buffer of this view: leave it be
                    continue
                _give_stage(m)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # raises the write's error here

    def _write_all(self, view: memoryview) -> None:
        """Write `view` at the end of the file (whole blocks while direct)."""
        while view:
            try:
                done = os.write(self._fd, view)
            except OSError as e:
                if e.errno != errno.EINVAL or not self._direct:
                    raise
                self._leave_direct()  # the file system refused this direct write: go on cached
                continue
            view = view[done:]
            self._written += done
        if not self._direct:
            self._pace_writeback()

    def _leave_direct(self) -> None:
        if self._direct:
            fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~_O_DIRECT)
            self._direct = False
            self._started = self._written

    def _pace_writeback(self) -> None:
        """Through the cache: start writeback every `_WINDOW` bytes, drop the window before."""
        if _SYNC_FILE_RANGE is None or self._written - self._started < _WINDOW:
            return
        _SYNC_FILE_RANGE(self._fd, self._started, self._written - self._started, _SYNC_FILE_RANGE_WRITE)
        if self._started >= _WINDOW:
            os.posix_fadvise(self._fd, 0, self._started - _WINDOW, os.POSIX_FADV_DONTNEED)
        self._started = self._written
