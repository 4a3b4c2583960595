"""`fhirhose serve`: run the Bulk Data server (optionally as a self-contained sandbox)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import typing
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import msgspec

from ..access import AccessConfig, AccessDB
from ..errors import FhirhoseError, InputError
from ..log import get_logger
from ..sql import check_location, is_postgres_url
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
    p.add_argument("--ndjson-sha256", action="store_true",
                   help="also give BCDA's checksum (SHA-256 of the uncompressed NDJSON) per file; costs more CPU "
                        "than writer and gzip together")
    p.add_argument("--ttl-hours", type=float, default=_DEFAULT["file_ttl"] / 3600,
                   help=f"hours job files stay downloadable (default {_DEFAULT['file_ttl'] / 3600:g})")
    p.add_argument("--retry-after", type=int, default=_DEFAULT["retry_after"],
                   help=f"longest wait between status polls, in seconds (default {_DEFAULT['retry_after']}; "
                        f"shorter as a job nears its end)")
    p.add_argument("--exporter", default=None, help=argparse.SUPPRESS)  # tests: module:function
    p.add_argument("--demo", action="store_true",
                   help="sandbox: generate a synthetic store if DATA has none, register its organizations, "
                        "write DATA/credentials.json")
    p.set_defaults(func=serve)
    return p


def _data_dir(args: argparse.Namespace) -> Path:
    data = args.data or (Path("fhirhose-demo") if args.demo else None)
    if data is None:
        raise InputError("--data DIR is required (or --demo)")
    return data


def check_lease(lease: float) -> None:
    if not 1 <= lease <= 86400:  # also refuses nan
        raise InputError(f"--lease {lease}: seconds from 1 to 86400")


def check_args(args: argparse.Namespace) -> None:
    """Refuse what would fail later, or succeed wrongly, before anything is bound or written.

    The data folder holds the store (`DATA/store`, or `--store`) and, beside it, the
    server's own state; the store folder itself is never written to. Only `--demo`
    creates folders (and a store); otherwise a folder without a store says how to make one.
    """
    for flag, port in (("--port", args.port), ("--admin-port", args.admin_port)):
        if port is not None and not 0 <= port <= 65535:
            raise InputError(f"{flag} {port}: a TCP port is 0..65535 (0: any free port)")
    # --workers 0: an API node only (`fhirhose worker` nodes export)
    for flag, value, low in (("--workers", args.workers, 0), ("--chunk-size", args.chunk_size, 1),
                             ("--retry-after", args.retry_after, 0)):
        if value < low:
            raise InputError(f"{flag} {value}: must be at least {low}")
    if not 0 < args.ttl_hours < 24 * 366:
        raise InputError(f"--ttl-hours {args.ttl_hours}: must be more than 0 and less than a year")
    check_lease(args.lease)
    if args.database is not None:
        check_location(args.database)
    for flag, host in (("--host", args.host), ("--admin-host", args.admin_host)):
        if not host.strip():
            raise InputError(f"{flag} {host!r}: name an interface (127.0.0.1, ::1, 0.0.0.0)")
    if not args.base.startswith("/") or any(c.isspace() for c in args.base):
        raise InputError(f"--base {args.base!r}: a URL path starting with /")
    data = _data_dir(args)
    if data.exists() and not data.is_dir():
        raise InputError(f"--data {data}: exists and is not a folder")
    if is_store(data):
        raise InputError(f"--data {data} is a store: the server keeps its state (job and access databases, "
                         f"job files, operator key) beside the store, never in it; pass --data <a folder "
                         f"for that state> --store {data}, or move the store to <folder>/store")
    store = args.store or data / "store"
    if args.store is not None and not is_store(store):
        raise InputError(f"--store {store}: not a store (no CURRENT file); create one with "
                         f"`fhirhose synth --out {store}` or `fhirhose ingest cclf --create --store {store} FILES`")
    if args.demo:
        return
    if not data.is_dir():
        raise InputError(f"--data {data}: no such folder; create a store in it with `fhirhose synth --out "
                         f"{data / 'store'}` or `fhirhose ingest cclf --create --store {data / 'store'} FILES`, "
                         f"or run `fhirhose serve --demo --data {data}` for a sandbox")
    if not is_store(store):
        raise InputError(f"--data {data}: no store in {store}; create one with `fhirhose synth --out {store}` "
                         f"or `fhirhose ingest cclf --create --store {store} FILES`, or run "
                         f"`fhirhose serve --demo --data {data}` for a sandbox")


def is_store(path: Path) -> bool:
    """Whether `path` holds a store (what `--data DIR/store` must be)."""
    return (path / "CURRENT").is_file()


def config_from_args(args: argparse.Namespace, port: int) -> ServerConfig:
    data = _data_dir(args)
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
        ndjson_sha256=args.ndjson_sha256,
        file_ttl=args.ttl_hours * 3600,
        retry_after=args.retry_after,
        admin_prefix=None if args.admin_port is not None else _DEFAULT["admin_prefix"],
        trusted_proxies=list(args.trusted_proxy),
        **kw,
    )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: the kernel picks), so URLs can name the real port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise InputError(f"cannot listen on {host!r}: {getattr(e, 'strerror', None) or e}") from None
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
    from .._backend import announce_backend
    from .._memory import limit_malloc_retention

    check_args(args)
    announce_backend("serve", quiet=True)  # the twin's warning now; the backend in the "serving" line
    limit_malloc_retention()  # before the sandbox setup: its arrays are freed back, not kept in the heap
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(_bind(args.host, args.port))
        admin_sock = stack.enter_context(_bind(args.admin_host, args.admin_port)) if args.admin_port is not None else None
        config = config_from_args(args, sock.getsockname()[1])
        assert config.public_url is not None  # config_from_args sets it
        fhir_base = config.public_url.rstrip("/") + config.base.rstrip("/")
        if args.demo:
            config.data.mkdir(parents=True, exist_ok=True)
        if not is_postgres_url(config.database_url or ""):
            # One machine's engine: one server per data folder. On PostgreSQL every node
            # shares DATA by design (leases, not a folder lock, keep them apart).
            stack.enter_context(hold_data_dir(config.data, fhir_base))
        access_config = None
        if args.demo:
            from .demo import ensure_demo, sandbox_access_config

            access_config = sandbox_access_config()
            config.access_db.parent.mkdir(parents=True, exist_ok=True)
            db = AccessDB(config.database_url or config.access_db, access_config)
            v3_base = None if config.v3_base is None else config.public_url.rstrip("/") + config.v3_base.rstrip("/")
            try:
                creds = ensure_demo(config.data, fhir_base, db, fhir_base_v3=v3_base)
            finally:
                db.close()
            log.info("sandbox credentials for %d clients in %s", len(creds.clients), config.data / "credentials.json")
        run(config, sock, admin_sock, access_config, loop=args.loop)
    return 0


LOCK_NAME = "server.lock"


@contextlib.contextmanager
def hold_data_dir(data: Path, fhir_base: str) -> Iterator[None]:
    """Hold DATA for this server's lifetime: one server per data folder.

    A second server would share the job database and take over the first one's running
    jobs at start (it redoes "running" chunks and removes files it does not know), and
    `--demo` would rewrite credentials.json to name itself. The lock file says who holds it.
    """
    path = data / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another server"
            raise FhirhoseError(f"--data {data} is in use by {holder}; stop it, or give this server "
                                f"its own --data folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"the server at {fhir_base} (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def run(config: ServerConfig, sock: socket.socket, admin_sock: socket.socket | None = None,
        access_config: AccessConfig | None = None, *, loop: str = "uvloop") -> None:
    """Serve until interrupted; `loop` picks uvloop (default) or the stdlib event loop.

    `serve` calls this module's `run` last, once every argument is checked, the sockets
    are bound and the data folder is held: the CLI fuzzer replaces it to stop there.
    """
    runner: Callable[[Coroutine[Any, Any, None]], None]  # uvloop.run or asyncio.run
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
    from .._backend import backend

    log.info("serving %s%s on %s:%d (core backend %s; operator key for the admin API: %s)", config.public_url or "",
             config.base, *sock.getsockname()[:2], backend, config.operator_key)
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
