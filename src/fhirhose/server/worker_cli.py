"""`fhirhose worker`: an export worker node, claiming chunks from the shared job queue."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
import typing
from pathlib import Path

import msgspec

from ..errors import InputError
from ..log import get_logger
from ..sql import check_location, open_database
from .cli import check_lease, is_store
from .config import ServerConfig
from .db import JobDB
from .runner import JobRunner, RunnerSettings

__all__ = ["add_parser", "work"]

log = get_logger(__name__)
_DEFAULT = {f.name: f.default for f in msgspec.structs.fields(ServerConfig)}
_COMPRESSIONS = typing.get_args(typing.get_type_hints(ServerConfig)["compression"])


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("worker", help="run an export worker node on the shared job queue",
                              description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True,
                   help="data directory the API nodes share (store, jobs/): a filesystem every node mounts")
    p.add_argument("--store", type=Path, help="store directory (default DATA/store)")
    p.add_argument("--database", required=True, metavar="URL",
                   help="the API nodes' database: postgresql://... (or a SQLite file on this machine)")
    p.add_argument("--processes", type=int, default=2, help="export worker processes (default 2)")
    p.add_argument("--compression", choices=_COMPRESSIONS, default=_DEFAULT["compression"])
    p.add_argument("--ttl-hours", type=float, default=_DEFAULT["file_ttl"] / 3600,
                   help="hours job files stay downloadable once a job completes (match the API nodes)")
    p.add_argument("--lease", type=float, default=30.0, help="seconds a claimed chunk is held without renewal")
    p.add_argument("--exporter", default=_DEFAULT["exporter"], help=argparse.SUPPRESS)  # tests: module:function
    p.set_defaults(func=work)
    return p


def check_args(args: argparse.Namespace) -> None:
    """Refuse before anything is opened: a worker node needs the shared data folder with its
    store, an existing database, and sane numbers."""
    if not 1 <= args.processes <= 1024:
        raise InputError(f"--processes {args.processes}: from 1 to 1024")
    if not 0 < args.ttl_hours < 24 * 366:
        raise InputError(f"--ttl-hours {args.ttl_hours}: must be more than 0 and less than a year")
    check_lease(args.lease)
    if not args.data.is_dir():
        raise InputError(f"--data {args.data}: no such folder (the data folder the API nodes share)")
    store = args.store or args.data / "store"
    if not is_store(store):
        raise InputError(f"--data {args.data}: no store in {store} (the API nodes' store, on the shared filesystem)")
    check_location(args.database, must_exist=True)


def work(args: argparse.Namespace) -> int:
    check_args(args)
    data = args.data.resolve()
    settings = RunnerSettings(
        store_path=str(args.store or data / "store"), jobs_dir=str(data / "jobs"), workers=args.processes,
        compression=args.compression, exporter=args.exporter, ttl=args.ttl_hours * 3600, lease=args.lease,
        sole_node=False,
    )
    import uvloop

    uvloop.run(_work(args.database, settings))
    return 0


async def _work(url: str, settings: RunnerSettings) -> None:
    sql = await asyncio.to_thread(open_database, url)
    db = JobDB(sql)
    runner = JobRunner(db, settings, time.time)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await asyncio.to_thread(db.migrate)
        await runner.start()
        log.info("worker %s: %d process(es) on %s", runner.owner, settings.workers, sql.where)
        await stop.wait()
    finally:
        await runner.stop()
        await db.close()
        await asyncio.to_thread(sql.close)
