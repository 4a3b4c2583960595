"""The large-file writer of `pull` and the offline export: what it writes is what was given, on Linux (writeback
started and old windows dropped from the cache) and where those calls do not exist."""

from __future__ import annotations

import os

import pytest

from fhirhose.export import files


@pytest.mark.parametrize("kernel_calls", [True, False], ids=["sync_file_range", "plain"])
def test_streamed_file_writes_every_byte(tmp_path, monkeypatch, kernel_calls):
    if kernel_calls and files._SYNC_FILE_RANGE is None:
        pytest.skip("this C library has no sync_file_range")
    if not kernel_calls:
        monkeypatch.setattr(files, "_SYNC_FILE_RANGE", None)
    monkeypatch.setattr(files, "_WINDOW", 1 << 16)  # many windows in a small file
    calls = []
    if kernel_calls:
        real = files._SYNC_FILE_RANGE
        monkeypatch.setattr(files, "_SYNC_FILE_RANGE", lambda *a: calls.append(a[1:3]) or real(*a))
    pieces = [os.urandom(n) for n in (1, 70_000, 3, 200_000, 65_536, 5)]
    f = files.StreamedFile(tmp_path / "out")
    for p in pieces:
        f.write(memoryview(p) if len(p) % 2 else p)
    f.close()
    assert (tmp_path / "out").read_bytes() == b"".join(pieces)
    if kernel_calls:  # writeback started over consecutive ranges, from the start
        assert calls and calls[0][0] == 0
        assert all(a[0] + a[1] == b[0] for a, b in zip(calls, calls[1:], strict=False))
