"""`fhirhose pull`: download a FHIR Bulk Data export into a folder (NDJSON + manifest.json).

    fhirhose pull https://host/api/v2 --client-id ID --secret-file S --out ./export
    fhirhose pull --credentials fhirhose-demo/credentials.json --org A0002 --out ./export
    fhirhose pull ... --resume https://host/api/v2/jobs/42   (or --resume: the folder's own)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec

from ..errors import ClientError
from .auth import JwkAuth, SecretAuth
from .client import BulkClient, PullResult
from .progress import TqdmProgress
from .state import PullState

__all__ = ["add_parser", "run"]

_SECRET_ENV = "FHIRHOSE_CLIENT_SECRET"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("pull", help="download a Bulk Data export (any FHIR Bulk Data server)",
                              description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("fhir_base", nargs="?", help="FHIR base URL (default: from --credentials)")
    p.add_argument("--out", "-o", type=Path, required=True, help="output folder")
    a = p.add_argument_group("authentication")
    a.add_argument("--client-id", help="client id")
    a.add_argument("--secret-file", type=Path, help=f"file holding the client secret (or set {_SECRET_ENV})")
    a.add_argument("--jwk", type=Path, help="private JWK / JWKS / PEM key: SMART Backend Services assertion")
    a.add_argument("--kid", help="key id (required for a PEM key; picks a key from a JWKS)")
    a.add_argument("--scope", help="scope to ask for (default: system/*.read with --jwk, the server's default otherwise)")
    a.add_argument("--token-url", help="token endpoint (default: discovered from .well-known/smart-configuration)")
    a.add_argument("--credentials", type=Path, help="sandbox credentials.json (fhirhose serve --demo)")
    a.add_argument("--org", help="organization in --credentials (default: the first)")
    a.add_argument("--use-jwk", action="store_true", help="with --credentials: sign with its JWK, not its secret")
    a.add_argument("--no-auth", action="store_true", help="the server is open: send no token")
    k = p.add_argument_group("export")
    lv = k.add_mutually_exclusive_group()
    lv.add_argument("--group", help="Group/<id>/$export (the default level, group 'all')")
    lv.add_argument("--patient-level", action="store_true", help="Patient/$export")
    lv.add_argument("--system", action="store_true", help="system-level $export")
    k.add_argument("--type", action="append", default=[], help="_type (repeat or comma-separate)")
    k.add_argument("--since", help="_since instant")
    k.add_argument("--until", help="_until instant")
    k.add_argument("--type-filter", action="append", default=[], help="_typeFilter query (repeatable)")
    k.add_argument("--elements", action="append", default=[], help="_elements (repeat or comma-separate)")
    k.add_argument("--output-format", help="_outputFormat")
    k.add_argument("--patient", action="append", default=[], help="patient id (repeatable; sends a POST kick-off)")
    k.add_argument("--post", action="store_true", help="kick off with POST and a Parameters body")
    k.add_argument("--lenient", action="store_true", help="Prefer: handling=lenient")
    k.add_argument("--no-partial", action="store_true", help="do not ask for partial manifests")
    k.add_argument("--incremental", action="store_true",
                   help="_since = the transactionTime of the last complete pull of this organization")
    k.add_argument("--since-file", type=Path,
                   help="where --incremental keeps transactionTimes (default OUT/../.fhirhose-since.json)")
    k.add_argument("--resume", nargs="?", const="", metavar="STATUS_URL",
                   help="continue an earlier export (no URL: the one recorded in OUT)")
    d = p.add_argument_group("download")
    d.add_argument("--concurrency", "-j", type=int, default=4, help="parallel downloads (default 4)")
    d.add_argument("--keep-compressed", action="store_true", help="keep files as sent (.ndjson.gz / .ndjson.zst)")
    d.add_argument("--encoding", choices=("gzip,zstd", "zstd,gzip", "gzip", "zstd", "identity"), default="gzip,zstd",
                   help="Accept-Encoding preference (default gzip,zstd)")
    d.add_argument("--no-delete", action="store_true", help="do not DELETE the export when done")
    d.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    d.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)
    return p


def _split(values: list[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _auth(args: argparse.Namespace) -> tuple[str | None, SecretAuth | JwkAuth | None, str | None]:
    """(FHIR base, auth, organization) from the arguments."""
    base, org = args.fhir_base, args.org
    client_id, secret, jwk = args.client_id, None, None
    if args.credentials:
        try:
            doc = json.loads(args.credentials.read_bytes())
            clients = doc["clients"]
            c = next(c for c in clients if org in (None, c["organization"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ClientError(f"{args.credentials}: not a credentials file ({e})") from None
        except StopIteration:
            known = ", ".join(c.get("organization", "?") for c in clients)
            raise ClientError(f"{args.credentials}: no organization {org!r} (has {known})") from None
        base, org = base or doc.get("fhir_base"), c["organization"]
        client_id, secret, jwk = client_id or c["client_id"], c.get("client_secret"), c.get("jwk")
    if args.secret_file:
        try:
            secret = args.secret_file.read_text().strip()
        except OSError as e:
            raise ClientError(f"{args.secret_file}: {e.strerror}") from None
    secret = secret or os.environ.get(_SECRET_ENV)
    if args.no_auth:
        return base, None, org
    if key := args.jwk or (args.use_jwk and jwk):
        if not client_id:
            raise ClientError("--jwk needs --client-id")
        return base, JwkAuth(key, client_id, kid=args.kid, scope=args.scope or "system/*.read"), org
    if client_id and secret:
        return base, SecretAuth(client_id, secret, scope=args.scope), org
    raise ClientError(f"no credentials: pass --client-id with --secret-file (or {_SECRET_ENV}) or --jwk, "
                      "--credentials, or --no-auth")


def run(args: argparse.Namespace) -> int:
    base, auth, org = _auth(args)
    resume = args.resume
    if resume == "":
        state = PullState.load(args.out)
        if state is None:
            raise ClientError(f"--resume: {args.out} holds no earlier export; pass its status URL")
        resume, base = state.status_url, base or state.fhir_base
    if not base:
        raise ClientError("the FHIR base URL is required (argument, or --credentials)")
    progress = TqdmProgress(disable=True if args.quiet else None)
    client = BulkClient(base, auth, token_url=args.token_url, concurrency=args.concurrency,
                        keep_compressed=args.keep_compressed, accept_encoding=args.encoding.split(","),
                        progress=progress, delete=not args.no_delete, since_file=args.since_file, organization=org)
    level = "system" if args.system else "patient" if args.patient_level else "group"

    async def go() -> PullResult:
        async with client:
            if resume:
                return await client.resume(resume, args.out)
            return await client.export(
                level, args.group if level == "group" else None, out_dir=args.out, types=_split(args.type),
                since=args.since, until=args.until, type_filters=args.type_filter, elements=_split(args.elements),
                output_format=args.output_format, patients=args.patient, post=args.post,
                partial=not args.no_partial, lenient=args.lenient, incremental=args.incremental,
            )

    runner: Callable[[Coroutine[Any, Any, PullResult]], PullResult]  # uvloop.run or asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        result = runner(go())
    except (ClientError, KeyboardInterrupt):
        state = PullState.load(args.out)
        if state is not None and not state.complete:
            print(f"fhirhose pull: interrupted; continue with: fhirhose pull --resume --out {args.out} ...",
                  file=sys.stderr)
        raise
    if args.json:
        # The event loop may leave stdout non-blocking: a pipe would then cut the JSON short.
        os.set_blocking(sys.stdout.fileno(), True)
        sys.stdout.buffer.write(msgspec.json.encode(result) + b"\n")
        sys.stdout.flush()
    else:
        print(_summary(result), file=sys.stderr)
    return 0


def _summary(r: PullResult) -> str:
    mb = 1e6
    secs = max(r.seconds, 1e-9)
    lines = [f"{r.resource_count:,} resources in {len(r.files)} files → {r.out_dir} "
             f"({r.seconds:.1f} s, {r.resource_count / secs:,.0f} resources/s, "
             f"{r.ndjson_bytes / mb / secs:,.1f} MB/s NDJSON, {r.wire_bytes / mb / secs:,.1f} MB/s wire)"]
    lines += [f"  {t:<22} {n:>12,}" for t, n in sorted(r.resources.items())]
    if r.errors:
        names = ", ".join(f.path or f.url for f in r.files if f.kind == "error")
        lines.append(f"  the server reported {r.errors} OperationOutcome issue(s): {names}")
    lines.append(f"  transactionTime {r.transaction_time}; status {r.status_url}" + (" (deleted)" if r.deleted else ""))
    return "\n".join(lines)
