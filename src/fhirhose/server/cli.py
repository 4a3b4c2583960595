"""`fhirhose serve`: run the Bulk Data server (optionally as a self-contained sandbox)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from aiohttp import web

from ..errors import FhirhoseError
from .app import create_app
from .config import ServerConfig

__all__ = ["add_parser", "serve"]

log = logging.getLogger("fhirhose.server")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="run the FHIR Bulk Data Access server",
                              description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="data directory (store, job DB, job files); --demo: ./fhirhose-demo")
    p.add_argument("--store", type=Path, help="store directory (default DATA/store)")
    p.add_argument("--clients", type=Path, help="client registrations JSON (default DATA/clients.json)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--base", default="/api/v2", help="FHIR base path (default /api/v2)")
    p.add_argument("--public-url", help="origin used in absolute URLs (default http://HOST:PORT)")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="event loop (default uvloop)")
    p.add_argument("--workers", type=int, default=2, help="export worker processes")
    p.add_argument("--chunk-size", type=int, default=2500, help="beneficiaries per chunk")
    p.add_argument("--compression", choices=("gzip", "zstd"), default="gzip")
    p.add_argument("--ttl-hours", type=float, default=24.0, help="hours job files stay downloadable")
    p.add_argument("--retry-after", type=int, default=5, help="seconds between status polls")
    p.add_argument("--exporter", default=None, help=argparse.SUPPRESS)  # tests: module:function
    p.add_argument("--demo", action="store_true",
                   help="sandbox: generate a synthetic store if DATA has none, write DATA/credentials.json")
    p.set_defaults(func=serve)
    return p


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    data = args.data or (Path("fhirhose-demo") if args.demo else None)
    if data is None:
        raise FhirhoseError("--data DIR is required (or --demo)")
    host = f"[{args.host}]" if ":" in args.host else args.host
    kw = {"exporter": args.exporter} if args.exporter else {}
    return ServerConfig(
        data_dir=str(data.resolve()),
        store_path=str(args.store) if args.store else None,
        clients_path=str(args.clients) if args.clients else None,
        base=args.base,
        public_url=args.public_url or f"http://{host}:{args.port}",
        workers=args.workers,
        chunk_size=args.chunk_size,
        compression=args.compression,
        file_ttl=args.ttl_hours * 3600,
        retry_after=args.retry_after,
        **kw,
    )


def serve(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.demo:
        from .demo import ensure_demo

        creds = ensure_demo(config.data, config.public_url.rstrip("/") + config.base.rstrip("/"))
        log.info("sandbox credentials for %d clients in %s", len(creds.clients), config.data / "credentials.json")
    if not config.clients.exists():
        raise FhirhoseError(f"{config.clients}: no client registrations (run with --demo, or pass --clients)")
    run(config, args.host, args.port, loop=args.loop)
    return 0


def run(config: ServerConfig, host: str, port: int, *, loop: str = "uvloop") -> None:
    """Serve until interrupted; `loop` picks uvloop (default) or the stdlib event loop."""
    if loop == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    runner(_serve(config, host, port))


async def _serve(config: ServerConfig, host: str, port: int) -> None:
    app_runner = web.AppRunner(create_app(config), access_log=logging.getLogger("fhirhose.access"))
    await app_runner.setup()
    site = web.TCPSite(app_runner, host, port)
    await site.start()
    log.info("serving %s%s on %s:%d", config.public_url or "", config.base, host, port)
    try:
        await asyncio.Event().wait()
    finally:
        await app_runner.cleanup()
