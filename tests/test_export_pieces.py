"""gzip written in pieces (each batch deflated on its own, on either of the exporter's two
threads): the files are ordinary gzip for every decoder, byte-identical however the threads
ran, and a failing batch leaves no file behind."""

import gzip
import hashlib
import random
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st
from isal import igzip

from fhirhose import ExportError, InputError, synth
from fhirhose.export.compress import GZIP_HEAD, encode_piece, gzip_tail
from fhirhose.export.exporter import Exporter, ExportSpec, Pipeline, Tally
from fhirhose.export.files import NdjsonFile, RollingWriter, write_ndjson
from fhirhose.fhir.registry import SOURCES
from fhirhose.store import Store

BENES, SEED = 25, 2


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("pieces") / "store"
    synth.write(root, BENES, SEED)
    with Store.open(root) as snap:
        yield snap


def _eob(snapshot):
    """An exporter of the snapshot, every ExplanationOfBenefit row, and their bound writer."""
    ex = Exporter(snapshot.tables, SOURCES)
    src = next(s for s in SOURCES if s.rtype == "ExplanationOfBenefit")
    return ex, ex.rows_for(src, np.arange(BENES), ExportSpec()), ex.writer(src.template, src.rtype)


def _decoders(raw: bytes) -> list[bytes]:
    """The file as stdlib gzip, zlib (wbits 31, one member), ISA-L and gzip(1) read it."""
    one = zlib.decompressobj(31)
    out = one.decompress(raw)
    assert one.eof and not one.unused_data, "not exactly one gzip member"
    cli = subprocess.run(["gzip", "-dc"], input=raw, capture_output=True, check=True).stdout
    return [gzip.decompress(raw), out, igzip.decompress(raw), cli]


@given(st.lists(st.binary(max_size=3000), max_size=12))
def test_pieces_make_one_gzip_member(parts):
    """A file put together from pieces (header, pieces in order, the tail with the CRC-32
    combined piece by piece) is one valid gzip member: every decoder returns the bytes and
    checks that CRC and the length."""
    with tempfile.TemporaryDirectory() as d:
        f = NdjsonFile(Path(d), "x.ndjson.gz", "Patient", "gzip")
        for p in parts:
            f.put(f.encode(p, 1))
        info = f.close()
        raw = (Path(d) / "x.ndjson.gz").read_bytes()
    assert all(out == b"".join(parts) for out in _decoders(raw))
    assert (info.count, info.length, info.stored) == (len(parts), sum(map(len, parts)), len(raw))


def test_a_wrong_crc_or_length_is_caught_by_the_decoder():
    data = b'{"resourceType":"Patient"}\n' * 1000
    p = encode_piece("gzip", 1, data, 1000)
    good = GZIP_HEAD + p.data + gzip_tail(p.crc, len(data))
    assert gzip.decompress(good) == data
    for bad in (GZIP_HEAD + p.data + gzip_tail(p.crc ^ 1, len(data)),
                GZIP_HEAD + p.data + gzip_tail(p.crc, len(data) + 1)):
        with pytest.raises((OSError, zlib.error)):
            gzip.decompress(bad)


def test_zstd_is_not_written_in_pieces():
    with pytest.raises(InputError, match="zstd"):
        encode_piece("zstd", None, b"x\n", 1)


def test_line_at_a_time_writes_are_gathered_into_few_pieces(tmp_path):
    """write_ndjson feeds one line per write: gathered, the file compresses as one stream does."""
    lines = [msgspec.json.encode({"resourceType": "Patient", "id": str(i), "active": i % 2 == 0}) for i in range(20000)]
    info = write_ndjson(tmp_path / "p.ndjson.gz", lines, "gzip")
    whole = b"".join(line + b"\n" for line in lines)
    raw = (tmp_path / "p.ndjson.gz").read_bytes()
    assert all(d == whole for d in _decoders(raw))
    assert info.count == 20000 and info.length == len(whole) and info.stored == len(raw)
    assert info.digest == hashlib.sha256(raw).hexdigest()
    assert len(raw) < 1.1 * len(igzip.compress(whole, 1))


def _export(ex: Exporter, out: Path, **spec) -> dict[str, bytes]:
    out.mkdir()
    files = ex.export_chunk(np.arange(BENES), ExportSpec(**spec), out)
    return {f.name: (out / f.name).read_bytes() for f in files}


@pytest.mark.parametrize("compression", ["gzip", "zstd", "identity"])
@pytest.mark.parametrize("ndjson_sha256", [False, True], ids=["stored digest", "plus NDJSON sha256"])
def test_two_threads_write_the_bytes_one_thread_writes(snapshot, tmp_path, compression, ndjson_sha256):
    """Batch bounds come from each source's first batch, not from thread timing: the stored
    files (so their digests and ETags) are the same with one thread or two, run after run."""
    ex = Exporter(snapshot.tables, SOURCES)
    # small batches and files: many pieces, rollovers mid-source
    kw = dict(compression=compression, ndjson_sha256=ndjson_sha256, batch_bytes=16 << 10, max_file_bytes=200 << 10)
    one = _export(ex, tmp_path / "one", threads=1, **kw)
    runs = [_export(ex, tmp_path / f"two{i}", threads=2, **kw) for i in range(3)]
    assert len(one) > 3
    assert all(r == one for r in runs)
    for name, raw in one.items():
        if compression == "gzip":
            text = _decoders(raw)[0]
        elif compression == "zstd":
            text = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        else:
            text = raw
        assert text.endswith(b"\n") and all(msgspec.json.decode(line) for line in text.splitlines()), name


class _Failing:
    """A writer that renders like the real one, then fails on its `fail_at`th call."""

    def __init__(self, writer, fail_at: int):
        self.writer, self.fail_at, self.calls = writer, fail_at, 0

    def write(self, rows, out):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("disk on fire")
        return self.writer.write(rows, out)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_failing_batch_stops_the_pipeline_and_later_batches_are_not_stored(snapshot, tmp_path, threads):
    ex, rows, eob = _eob(snapshot)
    w = _Failing(eob, fail_at=3)
    roll = RollingWriter(tmp_path, "ExplanationOfBenefit", "gzip")
    tally = Tally()
    with pytest.raises(RuntimeError, match="disk on fire"):
        with Pipeline(ex.core, threads) as pipe:
            for i in range(len(rows)):
                pipe.submit(w, rows[i : i + 1], roll, tally)
            pipe.drain()
    assert tally.rows == 2  # the two batches before the failure, nothing after it
    roll.abort()
    assert list(tmp_path.iterdir()) == []


def test_an_unpublished_pieced_file_is_a_part_file_until_closed(tmp_path):
    f = NdjsonFile(tmp_path, "x.ndjson.gz", "Patient", "gzip")
    piece = f.encode(b'{"a":1}\n', 1)
    f.put(piece)
    assert [p.name for p in tmp_path.iterdir()] == ["x.ndjson.gz.part"]
    info = f.close()
    assert gzip.decompress((tmp_path / "x.ndjson.gz").read_bytes()) == b'{"a":1}\n'
    assert (info.count, info.length) == (1, 8)


def test_the_ndjson_checksum_needs_each_pieces_ndjson(tmp_path):
    f = NdjsonFile(tmp_path, "x.ndjson.gz", "Patient", "gzip", ndjson_sha256=True)
    assert f.needs_ndjson
    with pytest.raises(ValueError, match="needs each piece's NDJSON"):
        f.put(f.encode(b"{}\n", 1))
    f.abort()


class _Jittery:
    """The real writer, with a random pause before each batch: batches finish out of order."""

    def __init__(self, writer, seed: int):
        self.writer, self.rng = writer, random.Random(seed)

    def write(self, rows, out):
        time.sleep(self.rng.random() * 0.003)
        return self.writer.write(rows, out)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_batches_finishing_out_of_order_are_stored_in_order(snapshot, tmp_path, compression):
    ex, rows, w = _eob(snapshot)
    got = {}
    for threads, writer in ((1, w), (2, _Jittery(w, 1)), (2, _Jittery(w, 2))):
        out = tmp_path / f"{threads}-{id(writer)}"
        out.mkdir()
        roll = RollingWriter(out, "ExplanationOfBenefit", compression, max_bytes=64 << 10)
        with Pipeline(ex.core, threads, depth=8) as pipe:
            for i in range(0, len(rows), 3):
                pipe.submit(writer, rows[i : i + 3], roll)
            pipe.drain()
        got[out.name] = [(out / f.name).read_bytes() for f in roll.close()]
    first, *rest = got.values()
    assert len(first) > 2 and all(r == first for r in rest)


def test_a_file_that_fails_to_close_is_reported_and_leaves_no_part(tmp_path, monkeypatch):
    """Full files are closed (fsync, rename) on a thread of their own; a failure there is
    raised by the writer's close, its .part removed, and the files closed fine are listed."""
    real_close = NdjsonFile.close

    def close(self):
        if self.name.endswith("-002.ndjson.gz"):
            raise OSError(28, "No space left on device")
        return real_close(self)

    monkeypatch.setattr(NdjsonFile, "close", close)
    roll = RollingWriter(tmp_path, "Patient", "gzip", max_bytes=10)
    for i in range(3):
        roll.write(b'{"id":"%d"}\n' % i, 1)  # each write fills a file: three files
    with pytest.raises(OSError, match="No space"):
        roll.close()
    assert sorted(f.name for f in roll.done) == ["Patient-00000-001.ndjson.gz", "Patient-00000-003.ndjson.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Patient-00000-001.ndjson.gz", "Patient-00000-003.ndjson.gz"]


def test_a_chunk_cancelled_late_leaves_none_of_its_files(snapshot, tmp_path):
    """Files of the types written before the failure (closing on their own thread, or done)
    are removed too: a failed chunk leaves nothing behind."""
    ex = Exporter(snapshot.tables, SOURCES)
    spec = ExportSpec(batch_bytes=16 << 10, max_file_bytes=64 << 10)
    published_then = []

    def cancelled() -> bool:  # asked before every batch; the EOBs come last
        published_then[:] = [p.name for p in tmp_path.iterdir() if not p.name.endswith(".part")]
        return any(n.startswith("ExplanationOfBenefit") for n in published_then)

    with pytest.raises(ExportError, match="cancelled"):
        ex.export_chunk(np.arange(BENES), spec, tmp_path, cancelled=cancelled)
    assert {n.split("-")[0] for n in published_then} >= {"Patient", "Coverage", "ExplanationOfBenefit"}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fsync", [True, False])
def test_fsync_false_leaves_the_fsync_to_the_caller(snapshot, tmp_path, monkeypatch, fsync):
    """`ExportSpec(fsync=False)` (the server's workers: their runner fsyncs before listing)
    publishes every file without an fsync; the default fsyncs each one before its rename."""
    import fhirhose.export.files as files_module

    synced: list[int] = []
    real = files_module.os.fsync
    monkeypatch.setattr(files_module.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    spec = ExportSpec(max_file_bytes=64 << 10, fsync=fsync)
    infos = Exporter(snapshot.tables, SOURCES).export_chunk(np.arange(BENES), spec, tmp_path)
    assert len(infos) > 3 and not list(tmp_path.glob("*.part"))
    assert len(synced) == (len(infos) if fsync else 0)
    for i in infos:  # whole files either way
        assert hashlib.sha256((tmp_path / i.name).read_bytes()).hexdigest() == i.digest


class _InterruptedPool:
    """A thread pool whose `submit` is interrupted (Ctrl-C lands on the submitting thread)
    before the batch is queued, or just after."""

    def __init__(self, pool, queue_first: bool):
        self.pool, self.queue_first = pool, queue_first

    def submit(self, fn, *args):
        if self.queue_first:
            self.pool.submit(fn, *args)
        raise KeyboardInterrupt

    def shutdown(self, wait: bool = True):
        self.pool.shutdown(wait=wait)


@pytest.mark.parametrize("queue_first", [False, True])
def test_an_interrupt_while_handing_over_a_batch_leaves_a_drain_that_returns(snapshot, tmp_path, queue_first):
    """`Pipeline.__exit__` drains on the way out of an interrupted export; a batch counted but
    never handed to a thread must not keep it waiting (the offline export hung on Ctrl-C)."""
    import threading

    ex, rows, w = _eob(snapshot)
    roll = RollingWriter(tmp_path, "ExplanationOfBenefit", "gzip")
    pipe = Pipeline(ex.core, 2)
    pipe.submit(w, rows[:2], roll).wait()
    pipe._pool = _InterruptedPool(pipe._pool, queue_first)
    with pytest.raises(KeyboardInterrupt):
        pipe.submit(w, rows[2:4], roll)
    done = threading.Event()
    exiting = threading.Thread(target=lambda: (pipe.__exit__(KeyboardInterrupt, None, None), done.set()), daemon=True)
    exiting.start()
    assert done.wait(30), "the drain after an interrupted hand-over never returned"
    roll.abort()


def test_file_closing_threads_never_hold_up_the_interpreters_exit(tmp_path):
    """Files close on daemon threads, each close waited for by its submitter: a thread pool's
    threads are joined at exit through a registry an interrupt can leave one out of, and the
    interrupted `fhirhose export` then never exited."""
    import threading

    roll = RollingWriter(tmp_path, "Patient", "gzip", max_bytes=1)
    for i in range(4):
        roll.write(b'{"i":%d}\n' % i, 1)
    infos = roll.close()
    assert [i.count for i in infos] == [1, 1, 1, 1]
    closers = [t for t in threading.enumerate() if t.name.startswith("fhirhose-publish")]
    assert closers and all(t.daemon for t in closers)
