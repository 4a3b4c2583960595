"""On-disk layout of a store: generations of memory-mapped column files.

    <store>/
      CURRENT                     name of the active generation ("7\\n"), swapped atomically
      LOCK                        flock()ed by the one writer (loads, garbage collection)
      generations/<N>/            one immutable generation
        manifest.json             `Manifest`: format, row counts, load history, file checksums
        <table>.<column>.offsets.npy  + .data.npy     Str (int64 offsets, uint8 UTF-8 bytes)
        <table>.<column>.codes.npy    + .labels.json  Cat (uint16 codes, JSON list of labels)
        <table>.<column>.values.npy                   Date / Num / Time
        <table>.links.<child>.npy                     int64 offsets of child rows per row
      generations/.tmp-<N>-<pid>/ a generation being written (never read)
      readers/g<N>.p<pid>.<token> a reader's lease on generation N

Arrays are plain `.npy` files opened with `np.load(mmap_mode="r")` when a
reader first touches their table, so a snapshot costs a few syscalls per column
and no reading. A file whose bytes equal the previous generation's file of the
same name, or another file of the same generation (all-missing columns), is a
hard link to it: unchanged tables cost no space, and a load creates only the
files that carry data. Writers fsync every file, then the manifest, then rename
the directory into place, then replace CURRENT.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import numpy as np

from ..columns import AnyColumn, Cat, Date, Num, Str, Table, Time
from ..errors import StoreError
from . import schema

__all__ = [
    "FORMAT_VERSION",
    "FileEntry",
    "SourceFile",
    "SourceInfo",
    "LoadEntry",
    "TableEntry",
    "Manifest",
    "GenerationWriter",
    "Tables",
    "fsync_dir",
    "fsync_path",
    "write_atomic",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class FileEntry(msgspec.Struct, frozen=True):
    """A column file of a generation: its SHA-256 and size in bytes."""

    sha256: str
    size: int


class SourceFile(msgspec.Struct, frozen=True):
    """An input file of a load (a CCLF file, a preference file, ...)."""

    name: str
    sha256: str
    size: int


class SourceInfo(msgspec.Struct):
    """Where a load came from: `kind` ("cclf", "prefs", "synth", ...), its files,
    the rows each input table had, and a free note (e.g. a generator's seed)."""

    kind: str
    files: list[SourceFile] = msgspec.field(default_factory=list)
    rows: dict[str, int] = msgspec.field(default_factory=dict)
    note: str = ""


class LoadEntry(msgspec.Struct):
    """One load in a generation's history: what came in and what it changed."""

    generation: int
    loaded_at: int  # ms since the epoch, UTC; the `last_updated` of rows it added
    source: SourceInfo
    added: dict[str, int]  # new rows per table
    skipped: dict[str, int] = msgspec.field(default_factory=dict)  # re-delivered versions
    updated: dict[str, int] = msgspec.field(default_factory=dict)  # stored rows replaced by changed ones


class TableEntry(msgspec.Struct):
    n: int
    columns: dict[str, str]  # column → schema kind
    links: list[str]


class Manifest(msgspec.Struct):
    """A generation's description; written last, so a generation without one is incomplete."""

    format_version: int
    generation: int
    created_at: int  # ms since the epoch, UTC
    tables: dict[str, TableEntry]
    files: dict[str, FileEntry]
    history: list[LoadEntry]
    next_bene_seq: int = 1

    def rows(self) -> dict[str, int]:
        return {name: t.n for name, t in self.tables.items()}


def fsync_path(path: Path, *, uncache: bool = False) -> None:
    """fsync a file or a directory (a rename is durable once its directory is synced);
    `uncache` then drops the file's pages, clean after the fsync, from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        if uncache and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


fsync_dir = fsync_path


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader sees the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class _HashSink:
    """A write-only file that only hashes (to find out whether an array is unchanged)."""

    def __init__(self):
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, b) -> int:
        self.h.update(b)
        self.size += len(b)
        return len(b)


def _npy_entry(arr: np.ndarray) -> FileEntry:
    sink = _HashSink()
    np.lib.format.write_array(sink, np.ascontiguousarray(arr), allow_pickle=False)
    return FileEntry(sink.h.hexdigest(), sink.size)


class GenerationWriter:
    """Writes one generation's files into `tmp` and records their checksums.

    A file identical to the one of the same name in `prev` (per its manifest)
    is hard-linked instead of written.
    """

    def __init__(self, tmp: Path, prev_dir: Path | None, prev: Manifest | None):
        self.dir = tmp
        self.prev_dir = prev_dir
        self.prev_files = prev.files if prev is not None else {}
        self.files: dict[str, FileEntry] = {}
        self.written: list[str] = []
        self.by_content: dict[FileEntry, str] = {}
        self.linked = 0

    def _reuse(self, name: str, entry: FileEntry) -> bool:
        """Hard-link an identical file instead of writing one: the previous generation's
        file of the same name, else a file of this generation with the same bytes (all-
        missing columns of a table are identical). Creating files is the slow part of a
        load on most file systems; a link is a fraction of it."""
        sources = []
        if self.prev_dir is not None and self.prev_files.get(name) == entry:
            sources.append(self.prev_dir / name)
        if entry in self.by_content:
            sources.append(self.dir / self.by_content[entry])
        for src in sources:
            try:
                os.link(src, self.dir / name)
            except OSError:
                continue
            self.linked += 1
            return True
        self.by_content[entry] = name
        return False

    def array(self, name: str, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr)
        entry = _npy_entry(arr)
        if not self._reuse(name, entry):
            with open(self.dir / name, "wb") as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
            self.written.append(name)
        self.files[name] = entry

    def blob(self, name: str, data: bytes) -> None:
        entry = FileEntry(hashlib.sha256(data).hexdigest(), len(data))
        if not self._reuse(name, entry):
            (self.dir / name).write_bytes(data)
            self.written.append(name)
        self.files[name] = entry

    def table(self, table: Table) -> TableEntry:
        kinds = schema.kinds(table.name)
        for cname, col in table.columns.items():
            stem = f"{table.name}.{cname}"
            if isinstance(col, Str):
                self.array(f"{stem}.offsets.npy", col.offsets)
                self.array(f"{stem}.data.npy", col.data)
            elif isinstance(col, Cat):
                self.array(f"{stem}.codes.npy", col.codes)
                self.blob(f"{stem}.labels.json", json.dumps(list(col.labels)).encode())
            else:
                self.array(f"{stem}.values.npy", col.values)
        for child, off in table.links.items():
            self.array(f"{table.name}.links.{child}.npy", off)
        return TableEntry(table.n, {c: kinds[c] for c in table.columns}, sorted(table.links))

    def finish(self, manifest: Manifest) -> None:
        """Make every written file durable, then write the manifest (which marks the
        generation complete)."""
        # fsync is mostly waiting for the disk: overlapping hundreds of them is ~4x faster.
        # Then out of the page cache: the writer's cache holds the files in large folios (on
        # Linux 6.18 up to 2 MB) and a reader's memory map maps a whole folio on its first
        # touch, so an export touching a hundred columns held ~300 MB of them per worker
        # process between page releases (100,000 beneficiaries), against ~100 MB when the
        # pages come back through the readers' own faults. The first export reads them from disk.
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda n: fsync_path(self.dir / n, uncache=True), self.written))
        with open(self.dir / MANIFEST, "wb") as f:
            f.write(msgspec.json.encode(manifest))
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(self.dir)


def read_manifest(gen_dir: Path) -> Manifest:
    try:
        raw = (gen_dir / MANIFEST).read_bytes()
    except OSError as e:
        raise StoreError(f"{gen_dir}: no readable manifest ({e.strerror})") from None
    try:
        m = msgspec.json.decode(raw, type=Manifest)
    except msgspec.ValidationError as e:
        raise StoreError(f"{gen_dir / MANIFEST}: {e}") from None
    except msgspec.DecodeError as e:
        raise StoreError(f"{gen_dir / MANIFEST}: not JSON ({e})") from None
    if m.format_version != FORMAT_VERSION:
        raise StoreError(
            f"{gen_dir}: store format {m.format_version}, this fhirhose reads format {FORMAT_VERSION}"
        )
    return m


class _Opener:
    """Opens the files of one generation, memory-mapped, with structural checks only."""

    def __init__(self, gen_dir: Path, manifest: Manifest):
        self.dir = gen_dir
        self.manifest = manifest
        self.maps: dict[str, np.ndarray] = {}

    def array(self, name: str, dtype) -> np.ndarray:
        if name not in self.manifest.files:
            raise StoreError(f"{self.dir}: manifest lists no file {name}")
        try:
            a = np.load(self.dir / name, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise StoreError(f"{self.dir / name}: cannot be opened ({e})") from None
        if a.dtype != np.dtype(dtype) or a.ndim != 1:
            raise StoreError(f"{self.dir / name}: {a.dtype}{a.shape}, expected 1-d {np.dtype(dtype)}")
        self.maps[name] = a
        return a

    def labels(self, name: str) -> tuple[str, ...]:
        try:
            labels = json.loads((self.dir / name).read_bytes())
        except (OSError, ValueError) as e:
            raise StoreError(f"{self.dir / name}: cannot be read ({e})") from None
        if not isinstance(labels, list) or not labels or labels[0] != "":
            raise StoreError(f"{self.dir / name}: labels must be a JSON list starting with \"\"")
        return tuple(labels)

    def column(self, table: str, cname: str, kind: str, n: int) -> AnyColumn:
        stem = f"{table}.{cname}"
        where = f"{self.dir}/{stem}"
        if kind == "str":
            off = self.array(f"{stem}.offsets.npy", np.int64)
            data = self.array(f"{stem}.data.npy", np.uint8)
            if len(off) != n + 1 or off[0] != 0 or off[-1] != len(data):
                raise StoreError(f"{where}: offsets do not span its data for {n} rows")
            return Str(off, data)
        if kind == "cat":
            codes = self.array(f"{stem}.codes.npy", np.uint16)
            col: AnyColumn = Cat(codes, self.labels(f"{stem}.labels.json"))
        else:
            values = self.array(f"{stem}.values.npy", np.int32 if kind == "date" else np.int64)
            proto = schema.empty_column(kind, 0)
            if isinstance(proto, Num):
                col = Num(values, proto.scale, proto.trim)
            elif isinstance(proto, Date):
                col = Date(values)
            else:
                col = Time(values)
        if len(col) != n:
            raise StoreError(f"{where}: {len(col)} rows, manifest says {n}")
        return col

    def table(self, name: str) -> Table:
        entry = self.manifest.tables.get(name)
        spec = schema.kinds(name)
        if entry is None:  # a table added to the schema after this generation was written
            return schema.complete(name, {}, 0)
        cols: dict[str, AnyColumn] = {}
        for cname, kind in entry.columns.items():
            if cname not in spec:
                continue  # dropped from the schema since; not served
            if spec[cname] != kind:
                raise StoreError(f"{self.dir}: {name}.{cname} is {kind} on disk, the schema says {spec[cname]}")
            cols[cname] = self.column(name, cname, kind, entry.n)
        links = {}
        for child in entry.links:
            off = self.array(f"{name}.links.{child}.npy", np.int64)
            if len(off) != entry.n + 1:
                raise StoreError(f"{self.dir}: {name}.links.{child} has {len(off)} offsets for {entry.n} rows")
            links[child] = off
        links = {c: o for c, o in links.items() if c in schema.LINKS.get(name, ())}
        return schema.complete(name, cols, entry.n, links, check=False)


class Tables(Mapping[str, Table]):
    """A generation's schema tables, each memory-mapped on first access.

    Opening a table costs a few syscalls per column file and reads nothing, so a
    reader pays only for the tables it uses. Checks are structural (lengths,
    offset ends, links against the children's row counts); `Store.verify`
    checks contents.
    """

    def __init__(self, gen_dir: Path, manifest: Manifest):
        self._op = _Opener(gen_dir, manifest)
        self._open: dict[str, Table] = {}
        self.maps = self._op.maps  # file name → memory map, for the tables opened so far

    def __getitem__(self, name: str) -> Table:
        t = self._open.get(name)
        if t is None:
            if name not in schema.TABLES:
                raise KeyError(name)
            t = self._op.table(name)
            for child, off in t.links.items():
                entry = self._op.manifest.tables.get(child)
                rows = entry.n if entry is not None else 0
                if len(off) and (off[0] < 0 or off[-1] > rows):
                    raise StoreError(f"{self._op.dir}: {name}.links.{child} points past {rows} rows")
            self._open[name] = t
        return t

    def __iter__(self) -> Iterator[str]:
        return iter(schema.TABLES)

    def __len__(self) -> int:
        return len(schema.TABLES)


def verify_files(gen_dir: Path, manifest: Manifest) -> list[str]:
    """Names of files whose SHA-256 or size differs from the manifest (or are missing)."""
    bad = []
    for name, entry in manifest.files.items():
        h = hashlib.sha256()
        size = 0
        try:
            with open(gen_dir / name, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
                    size += len(chunk)
        except OSError:
            bad.append(name)
            continue
        if size != entry.size or h.hexdigest() != entry.sha256:
            bad.append(name)
    return bad


def generation_dirs(root: Path) -> Iterable[tuple[int, Path]]:
    """Complete generation directories (named by number), oldest first."""
    gens = []
    base = root / "generations"
    if base.is_dir():
        for p in base.iterdir():
            if p.name.isdigit():
                gens.append((int(p.name), p))
    return sorted(gens)
