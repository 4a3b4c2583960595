"""`fhirhose ingest cclf|prefs PATH...`: load CCLF deliveries or 1-800-MEDICARE
preference files into a store as one new generation."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..errors import InputError, StoreError
from ..log import get_logger
from .store import Store

log = get_logger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("ingest", help="load CCLF or preference files into a store")
    sub = p.add_subparsers(dest="source", required=True)
    for name, what in (("cclf", "CCLF files, directories or zip archives"),
                       ("prefs", "1-800-MEDICARE data-sharing preference files")):
        s = sub.add_parser(name, help=f"load {what}")
        s.add_argument("paths", nargs="+", help=what)
        s.add_argument("--store", required=True, help="store directory")
        s.add_argument("--create", action="store_true", help="create the store if it does not exist")
        s.add_argument("--keep", type=int, default=3, help="generations to keep (default 3)")
        if name == "cclf":
            s.add_argument("--org-id", help="ACO id for files whose names carry none (e.g. ZC8)")
            s.add_argument("--year", type=int, help="performance year for such files")
            s.add_argument("--kind", choices=("Y", "R"), help="Y performance year or R runout (default from the name)")
            s.add_argument("--trimmed", action="store_true",
                           help="accept records whose trailing blanks were cut (BCDA's synthetic sets); "
                                "a truncated record then goes undetected")
        s.set_defaults(func=_run)


def _open(args) -> tuple[Store, bool | None]:
    """The store, and whether this run created it: None no, False in an empty folder
    that was there, True with its folder."""
    try:
        return Store(args.store, keep=args.keep), None
    except StoreError:
        if not args.create:
            raise
        existed = Path(args.store).exists()
        return Store.create(args.store, keep=args.keep), not existed


def _uncreate(path: Path, folder: bool) -> None:
    if folder:
        shutil.rmtree(path, ignore_errors=True)
        return
    for child in path.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def _run(args: argparse.Namespace) -> int:
    from . import cclf

    if args.keep < 1:
        raise InputError(f"--keep {args.keep}: at least 1 generation")
    store, created = _open(args)
    try:
        if args.source == "cclf":
            gen = cclf.ingest_cclf(store, args.paths, org_id=args.org_id, year=args.year, kind=args.kind,
                                   trimmed=args.trimmed)
        else:
            gen = cclf.ingest_prefs(store, args.paths)
    except BaseException:
        if created is not None:  # a refused delivery leaves no empty store behind where there was none
            _uncreate(store.path, created)
        raise
    with store.snapshot(gen) as snap:
        entry = snap.manifest.history[-1]
    added = ", ".join(f"{t} +{n}" for t, n in entry.added.items() if n)
    notes = [f"{what}: " + ", ".join(f"{t} {n}" for t, n in counts.items())
             for what, counts in (("updated", entry.updated), ("already stored", entry.skipped)) if counts]
    print(f"{args.store}: generation {gen}: {added or 'no new rows'}" + (f" ({'; '.join(notes)})" if notes else ""))
    return 0
