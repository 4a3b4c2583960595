"""The large-file writer of `pull` and the offline export: what it writes is what was given, byte for byte,
whether it writes past the cache with O_DIRECT, through the cache with writeback paced (`sync_file_range`), or
plainly where neither exists; and whether the bytes come by `write` or are put in place (`space` + `commit`)."""

from __future__ import annotations

import os

import pytest

from fhirhose.export import streamed

SIZES = (1, 70_000, 3, 200_000, 65_536, 5, 4096, 300_001)  # block-aligned and not, across many stages


def _modes():
    return [pytest.param(True, True, id="direct"), pytest.param(False, True, id="sync_file_range"),
            pytest.param(False, False, id="plain")]


@pytest.fixture(autouse=True)
def small_buffers(monkeypatch):
    monkeypatch.setattr(streamed, "_STAGE", 1 << 16)  # many stages in a small file
    monkeypatch.setattr(streamed, "_WINDOW", 1 << 16)


def _open(path, direct, kernel_calls, monkeypatch):
    if kernel_calls and not direct and streamed._SYNC_FILE_RANGE is None:
        pytest.skip("this C library has no sync_file_range")
    if not kernel_calls:
        monkeypatch.setattr(streamed, "_SYNC_FILE_RANGE", None)
    f = streamed.StreamedFile(path, direct=direct)
    if direct and not f.direct:
        f.close()
        pytest.skip(f"the file system under {path} takes no O_DIRECT")
    return f


@pytest.mark.parametrize(("direct", "kernel_calls"), _modes())
def test_written_bytes_are_the_given_bytes(tmp_path, monkeypatch, direct, kernel_calls):
    f = _open(tmp_path / "out", direct, kernel_calls, monkeypatch)
    calls = []
    if kernel_calls and not direct:
        real = streamed._SYNC_FILE_RANGE
        monkeypatch.setattr(streamed, "_SYNC_FILE_RANGE", lambda *a: calls.append(a[1:3]) or real(*a))
    pieces = [os.urandom(n) for n in SIZES]
    for p in pieces:
        f.write(memoryview(p) if len(p) % 2 else p)
    f.close()
    f.close()  # a second close is harmless
    assert (tmp_path / "out").read_bytes() == b"".join(pieces)
    if calls:  # writeback started over consecutive ranges, from the start
        assert calls[0][0] == 0
        assert all(a[0] + a[1] == b[0] for a, b in zip(calls, calls[1:], strict=False))


@pytest.mark.parametrize(("direct", "kernel_calls"), _modes())
def test_bytes_put_in_place(tmp_path, monkeypatch, direct, kernel_calls):
    f = _open(tmp_path / "out", direct, kernel_calls, monkeypatch)
    want = bytearray()
    for n in SIZES:
        space = f.space()
        assert len(space) > 0
        k = min(n, len(space))
        chunk = os.urandom(k)
        space[:k] = chunk
        f.commit(k)
        want += chunk
    f.flush()  # all of it in the file before close (publish fsyncs after flush)
    assert (tmp_path / "out").read_bytes() == want
    f.write(b"tail")  # the file goes on after a flush that ended on a partial block
    f.close()
    assert (tmp_path / "out").read_bytes() == want + b"tail"


def test_a_refused_direct_write_goes_on_through_the_cache(tmp_path, monkeypatch):
    f = _open(tmp_path / "out", True, True, monkeypatch)
    real, refused = os.write, []

    def write(fd, data):
        if fd == f.fileno() and f.direct:
            refused.append(len(data))
            raise OSError(22, "Invalid argument")  # EINVAL, as a file system without direct writes says
        return real(fd, data)

    monkeypatch.setattr(streamed.os, "write", write)
    data = os.urandom(200_000)
    f.write(data)
    f.close()
    assert refused and not f.direct
    assert (tmp_path / "out").read_bytes() == data


@pytest.mark.parametrize(("direct", "kernel_calls"), _modes())
def test_a_failed_write_is_raised_not_lost(tmp_path, monkeypatch, direct, kernel_calls):
    f = _open(tmp_path / "out", direct, kernel_calls, monkeypatch)
    real = os.write

    def write(fd, data):
        if fd == f.fileno():
            raise OSError(28, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(streamed.os, "write", write)
    with pytest.raises(OSError, match="No space left"):
        f.write(os.urandom(3 * streamed._STAGE))  # the first full buffer fails on the writing thread
    with pytest.raises(OSError, match="No space left"):
        f.close()  # the disk is still full: close says so, and closes the descriptor all the same
    assert f.fileno() == -1
    f.close()
