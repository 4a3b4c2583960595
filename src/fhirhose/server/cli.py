"""`fhirhose serve`: run the Bulk Data server (optionally as a self-contained sandbox)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import typing
from pathlib import Path

import msgspec

from ..access import AccessConfig, AccessDB
from ..errors import FhirhoseError
from ..log import get_logger
from .app import create_admin_app, create_app
from .config import ServerConfig
from .guard import app_runner, start_site

__all__ = ["add_parser", "serve"]

log = get_logger(__name__)
_ACCESS_LOG = get_logger(f"{__package__}.access")  # aiohttp's request log
# The flags' defaults are ServerConfig's, so the CLI and a config built in code agree.
_DEFAULT = {f.name: f.default for f in msgspec.structs.fields(ServerConfig)}
_COMPRESSIONS = typing.get_args(typing.get_type_hints(ServerConfig)["compression"])


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="run the FHIR Bulk Data Access server",
                              description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="data directory (store, job DB, access DB, job files); --demo: ./fhirhose-demo")
    p.add_argument("--store", type=Path, help="store directory (default DATA/store)")
    p.add_argument("--database", metavar="URL",
                   help="one database for jobs and access, shared by every node: postgresql://... or a SQLite "
                        "file (sqlite:///PATH or PATH); default: DATA/jobs.sqlite and DATA/access.sqlite")
    p.add_argument("--access-db", type=Path, help="access database (default DATA/access.sqlite; `fhirhose admin --db`)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    p.add_argument("--base", default=_DEFAULT["base"], help=f"FHIR base path (default {_DEFAULT['base']})")
    p.add_argument("--public-url", help="origin used in absolute URLs (default http://HOST:PORT)")
    p.add_argument("--admin-port", type=int,
                   help=f"serve the admin API on this port (bound to --admin-host) instead of under "
                        f"{_DEFAULT['admin_prefix']}")
    p.add_argument("--admin-host", default="127.0.0.1", help="interface of --admin-port (default 127.0.0.1)")
    p.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                   help="proxy whose X-Forwarded-For names the client address (repeat)")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="event loop (default uvloop)")
    p.add_argument("--workers", type=int, default=_DEFAULT["workers"],
                   help=f"export worker processes (default {_DEFAULT['workers']}; 0: an API node only, "
                        "`fhirhose worker` nodes export)")
    p.add_argument("--chunk-size", type=int, default=_DEFAULT["chunk_size"],
                   help=f"beneficiaries per chunk (default {_DEFAULT['chunk_size']})")
    p.add_argument("--lease", type=float, default=_DEFAULT["lease"],
                   help=f"seconds a claimed chunk is held without renewal (default {_DEFAULT['lease']:g})")
    p.add_argument("--compression", choices=_COMPRESSIONS, default=_DEFAULT["compression"],
                   help=f"job file compression (default {_DEFAULT['compression']})")
    p.add_argument("--ttl-hours", type=float, default=_DEFAULT["file_ttl"] / 3600,
                   help=f"hours job files stay downloadable (default {_DEFAULT['file_ttl'] / 3600:g})")
    p.add_argument("--retry-after", type=int, default=_DEFAULT["retry_after"],
                   help=f"seconds between status polls (default {_DEFAULT['retry_after']})")
    p.add_argument("--exporter", default=None, help=argparse.SUPPRESS)  # tests: module:function
    p.add_argument("--demo", action="store_true",
                   help="sandbox: generate a synthetic store if DATA has none, register its organizations, "
                        "write DATA/credentials.json")
    p.set_defaults(func=serve)
    return p


def config_from_args(args: argparse.Namespace, port: int) -> ServerConfig:
    data = args.data or (Path("fhirhose-demo") if args.demo else None)
    if data is None:
        raise FhirhoseError("--data DIR is required (or --demo)")
    host = f"[{args.host}]" if ":" in args.host else args.host
    kw = {"exporter": args.exporter} if args.exporter else {}  # unset: ServerConfig's
    return ServerConfig(
        data_dir=str(data.resolve()),
        store_path=str(args.store) if args.store else None,
        access_db_path=str(args.access_db) if args.access_db else None,
        database_url=args.database,
        base=args.base,
        public_url=args.public_url or f"http://{host}:{port}",
        workers=args.workers,
        chunk_size=args.chunk_size,
        lease=args.lease,
        compression=args.compression,
        file_ttl=args.ttl_hours * 3600,
        retry_after=args.retry_after,
        admin_prefix=None if args.admin_port is not None else _DEFAULT["admin_prefix"],
        trusted_proxies=list(args.trusted_proxy),
        **kw,
    )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: the kernel picks), so URLs can name the real port."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise FhirhoseError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def serve(args: argparse.Namespace) -> int:
    from .._memory import limit_malloc_retention

    limit_malloc_retention()  # before the sandbox setup: its arrays are freed back, not kept in the heap
    sock = _bind(args.host, args.port)
    admin_sock = _bind(args.admin_host, args.admin_port) if args.admin_port is not None else None
    config = config_from_args(args, sock.getsockname()[1])
    access_config = None
    if args.demo:
        from .demo import ensure_demo, sandbox_access_config

        access_config = sandbox_access_config()
        config.access_db.parent.mkdir(parents=True, exist_ok=True)
        db = AccessDB(config.database_url or config.access_db, access_config)
        creds = ensure_demo(config.data, config.public_url.rstrip("/") + config.base.rstrip("/"), db)
        db.close()
        log.info("sandbox credentials for %d clients in %s", len(creds.clients), config.data / "credentials.json")
    run(config, sock, admin_sock, access_config, loop=args.loop)
    return 0


def run(config: ServerConfig, sock: socket.socket, admin_sock: socket.socket | None = None,
        access_config: AccessConfig | None = None, *, loop: str = "uvloop") -> None:
    """Serve until interrupted; `loop` picks uvloop (default) or the stdlib event loop."""
    if loop == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    runner(_serve(config, sock, admin_sock, access_config))


async def _serve(config: ServerConfig, sock: socket.socket, admin_sock: socket.socket | None,
                 access_config: AccessConfig | None) -> None:
    app = create_app(config, access=access_config)
    # Timeouts, header limits and the per-address connection cap (server.guard).
    runners = [app_runner(app, config, access_log=_ACCESS_LOG)]
    if admin_sock is not None:
        runners.append(app_runner(create_admin_app(app), config, access_log=_ACCESS_LOG))
    for r in runners:
        await r.setup()
    await start_site(runners[0], sock, config)
    if admin_sock is not None:
        await start_site(runners[1], admin_sock, config)
        log.info("admin API on %s:%d/admin", *admin_sock.getsockname()[:2])
    log.info("serving %s%s on %s:%d (operator key for the admin API: %s)", config.public_url or "", config.base,
             *sock.getsockname()[:2], config.operator_key)
    stop = asyncio.Event()
    try:  # SIGTERM (systemd, docker stop, kill) stops as cleanly as Ctrl-C
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    except (NotImplementedError, RuntimeError):  # no signals here (Windows, a non-main thread)
        pass
    try:
        await stop.wait()
    finally:
        for r in reversed(runners):
            await r.cleanup()
