"""`fhirhose export`: a Bulk Data export straight from a store, no server.

Exports every beneficiary of the store, or one organization's group (an ACO's
roster, a Part D contract's enrollees: `fhirhose.store.rosters`), into OUTDIR as
NDJSON files (one resource type per file, rolled over by size) plus
`OUTDIR/manifest.json` in the Bulk Data manifest shape. The work is the
library's `export_store`; worker processes open the same store generation by path.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

import msgspec
import numpy as np

from .._backend import announce_backend, backend
from ..errors import InputError, StoreError
from ..fhir.instant import parse_instant
from ..fhir.registry import RESOURCE_TYPES, registry_sources
from ..log import get_logger
from ..store import Store, rosters
from ..store.opener import SnapshotOpener, shared_snapshot
from .compress import SUFFIX
from .exporter import ExportResult, ExportSpec, export_store

__all__ = ["add_parser", "run", "parse_types", "parse_since", "select_benes", "chunk_size"]

log = get_logger(__name__)

MAX_CHUNK = 5000  # beneficiaries per chunk: bounds a worker's memory and a file's lifetime
MIN_CHUNK = 100  # below this, per-chunk overhead (files, fsyncs) outweighs spreading the work


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="export a store (or an organization's roster) to NDJSON files + manifest.json",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--store", required=True, type=Path, help="store directory")
    p.add_argument("--out", required=True, type=Path, help="output directory (created; must be empty)")
    p.add_argument("--org", help="organization: an ACO (its roster) or a Part D contract (its enrollees); "
                                 "default: every beneficiary in the store")
    p.add_argument("--group", choices=rosters.GROUPS, default="all",
                   help="with --org: all = current roster / enrollment year, runout = the year before")
    p.add_argument("--type", dest="types", default=",".join(RESOURCE_TYPES),
                   help=f"resource types, comma-separated (default {','.join(RESOURCE_TYPES)})")
    p.add_argument("--since", help="only resources updated at or after this FHIR instant "
                                   "(e.g. 2024-01-31T00:00:00Z; a date alone is midnight UTC)")
    # "none": the older spelling of "identity" (the HTTP Content-Encoding token), still accepted
    p.add_argument("--compression", type=lambda v: "identity" if v == "none" else v, choices=sorted(SUFFIX),
                   default="gzip", help="file compression (default gzip)")
    p.add_argument("--ndjson-sha256", action="store_true",
                   help="also SHA-256 the uncompressed NDJSON (BCDA's checksum extension; costs more CPU than "
                        "writer and gzip together; the stored files' digests are always given)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--max-file-mb", type=float, default=256.0,
                   help="roll a file over after this many MiB of NDJSON (default 256)")
    p.add_argument("--chunk-benes", type=int, default=None,
                   help=f"beneficiaries per work unit (default: spread over the workers, at most {MAX_CHUNK})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def parse_types(value: str) -> tuple[str, ...]:
    """`--type` as resource types in the order given, duplicates dropped."""
    types = tuple(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
    bad = [t for t in types if t not in RESOURCE_TYPES]
    if bad or not types:
        raise InputError(f"--type {value!r}: {', '.join(bad) or 'no type'} is not one of {', '.join(RESOURCE_TYPES)}")
    return types


def parse_since(value: str, now: dt.datetime) -> int:
    """`--since` (a FHIR instant with its zone, or a date = midnight UTC) as epoch ms."""
    since = parse_instant(value, "--since")
    if since > now:
        raise InputError(f"--since {value} is in the future (now is {now.isoformat(timespec='seconds')})")
    return int(since.timestamp() * 1000)


def _orgs_file(store_dir: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """org_id → (kind, contract ids) from `orgs.json` beside the store (synthetic stores have one)."""
    path = store_dir / "orgs.json"
    if not path.is_file():
        return {}
    try:
        orgs = msgspec.json.decode(path.read_bytes(), type=list[_OrgEntry])
    except msgspec.DecodeError as e:
        raise InputError(f"{path}: {e}") from None
    return {o.org_id: (o.kind, o.contract_ids or (o.org_id,)) for o in orgs}


class _OrgEntry(msgspec.Struct):
    org_id: str
    kind: str = "aco"
    contract_ids: tuple[str, ...] = ()


def select_benes(tables, store_dir: Path, org: str | None, group: str) -> np.ndarray:
    """Bene rows to export: all of them, or the group of `org`. Its kind (and a sponsor's
    contracts) come from orgs.json when it lists the org, else from the store's tables."""
    if org is None:
        return np.arange(tables["bene"].n, dtype=np.int64)
    kind, contracts = _orgs_file(store_dir).get(org) or (rosters.org_kind(tables, org), (org,))
    if kind is None:
        raise InputError(f"--org {org}: no such organization in {store_dir} (no roster or enrollment rows)")
    ids = (org,) if kind == "aco" else contracts
    rows = np.unique(np.concatenate([rosters.org_benes(tables, i, group, kind) for i in ids]))
    if not len(rows):
        what = "roster" if kind == "aco" else "enrollees"
        raise InputError(f"--org {org} --group {group}: no {what} on file in {store_dir}")
    return rows


def chunk_size(benes: int, workers: int, requested: int | None = None) -> int:
    """Beneficiaries per chunk: about four chunks per worker, within MIN_CHUNK..MAX_CHUNK."""
    if requested is not None:
        if requested < 1:
            raise InputError(f"--chunk-benes {requested} must be at least 1")
        return requested
    if workers <= 1:
        return MAX_CHUNK
    return max(MIN_CHUNK, min(MAX_CHUNK, -(-benes // (workers * 4))))


def _request(args: argparse.Namespace, types: tuple[str, ...]) -> str:
    """What the manifest's `request` says was asked."""
    parts = [f"fhirhose export --store {args.store}"]
    if args.org:
        parts.append(f"--org {args.org} --group {args.group}")
    parts.append(f"--type {','.join(types)}")
    if args.since:
        parts.append(f"--since {args.since}")
    return " ".join(parts)


def _open_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out}: exists and is not an empty directory")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: no such folder {out.parent}")


def _staging(out: Path) -> Path:
    """Where the files are written until the export is complete: beside OUT (same file
    system, so the move into place is one rename), hidden, named for this process."""
    return out.parent / f".{out.name}.partial-{os.getpid()}"


def _place(stage: Path, out: Path) -> None:
    """Move the finished export into place; OUT is absent or (checked) an empty folder."""
    if out.is_dir():
        out.rmdir()  # fails, leaving everything, if something appeared in it meanwhile
    os.rename(stage, out)


def run(args: argparse.Namespace) -> int:
    types = parse_types(args.types)
    now = dt.datetime.now(dt.UTC)
    since_ms = parse_since(args.since, now) if args.since else None
    if args.workers < 1:
        raise InputError(f"--workers {args.workers} must be at least 1")
    if not args.max_file_mb > 0:
        raise InputError(f"--max-file-mb {args.max_file_mb} must be positive")
    if not args.store.is_dir():
        raise StoreError(f"--store {args.store}: no such directory")
    _open_out(args.out)
    announce_backend("export", quiet=True)  # the twin's warning; the backend is in the summary line
    path = str(args.store.resolve())
    opener = SnapshotOpener(path, Store(path).current())
    tables = shared_snapshot(*opener).tables
    benes = select_benes(tables, args.store, args.org, args.group)
    spec = ExportSpec(types=types, since_ms=since_ms, compression=args.compression,
                      max_file_bytes=max(1, int(args.max_file_mb * (1 << 20))), ndjson_sha256=args.ndjson_sha256,
                      cached=False,  # the files are the product: written past the page cache
                      # This process ends with the export, so hold store pages longer than a
                      # server does (32 MiB): each release costs an unmap and refaults, ~10 % of
                      # the CPU at that rate; RSS stays under what 1 GiB of NDJSON reads.
                      release_bytes=1 << 30,
                      threads=max(1, (os.cpu_count() or 1) // args.workers))  # each process's share of the cores
    chunk = chunk_size(len(benes), args.workers, args.chunk_benes)
    t0 = time.perf_counter()
    # Files go to a staging folder renamed to OUT at the end: an interrupted or failed
    # export leaves OUT as it was, and the same command can simply run again.
    stage = _staging(args.out)
    try:
        result = _export(opener, benes, spec, args, chunk, stage)
        _place(stage, args.out)
    except KeyboardInterrupt:
        shutil.rmtree(stage, ignore_errors=True)
        raise KeyboardInterrupt(f"nothing was written to {args.out}; run the same command again") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    result.manifest_path = str(args.out / "manifest.json")
    _summary(result, len(benes), time.perf_counter() - t0)
    return 0


def _export(opener: SnapshotOpener, benes: np.ndarray, spec: ExportSpec, args, chunk: int,
            out: Path) -> ExportResult:
    from tqdm import tqdm

    quiet = args.quiet or not sys.stderr.isatty()
    with tqdm(total=len(benes), unit="bene", desc="export", file=sys.stderr, disable=quiet) as bar:
        shown = 0

        def progress(done: float, _total: int) -> None:  # chunks done, fractions within one
            nonlocal shown
            whole = int(done) * chunk  # beneficiaries in finished chunks; then a share of the next
            now = min(whole + int((done - int(done)) * min(chunk, len(benes) - whole)), len(benes))
            bar.update(now - shown)
            shown = now

        # mypy#9858: a NamedTuple's __call__ does not make it a Callable to mypy (it is one at run time)
        return export_store(opener, opener.key, registry_sources, benes, spec, out, workers=args.workers,  # type: ignore[arg-type]
                            chunk_benes=chunk, request=_request(args, spec.types), progress=progress)


def _summary(result: ExportResult, benes: int, seconds: float) -> None:
    per_type: dict[str, int] = {}
    for f in result.files:
        per_type[f.type] = per_type.get(f.type, 0) + f.count
    length = sum(f.length for f in result.files)
    stored = sum(f.stored for f in result.files)
    counts = ", ".join(f"{t} {n:,}" for t, n in per_type.items()) or "no resources"
    print(f"{benes:,} beneficiaries: {counts}; {len(result.files)} files, {length / 1e6:,.1f} MB NDJSON "
          f"({stored / 1e6:,.1f} MB stored) in {seconds:.1f} s (core {backend}) -> {result.manifest_path}")
