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
import shlex
import sys
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from ..errors import ClientError
from .auth import JwkAuth, SecretAuth
from .client import BulkClient, PullResult
from .progress import TqdmProgress
from .state import PullState, write_atomic

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
    d.add_argument("--encoding", type=_encodings, default="gzip,zstd", metavar="CODINGS",
                   help=f"Accept-Encoding preference, comma-separated from {', '.join(_CODINGS)} (default gzip,zstd)")
    d.add_argument("--no-delete", action="store_true", help="do not DELETE the export when done")
    d.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    d.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)
    return p


_CODINGS = ("gzip", "zstd", "identity")


def _encodings(value: str) -> str:
    """--encoding: content codings in order of preference, each known, none twice."""
    codings = [c.strip() for c in value.split(",")]
    if not all(c in _CODINGS for c in codings) or len(set(codings)) != len(codings):
        raise argparse.ArgumentTypeError(f"{value!r}: comma-separated, each one of {', '.join(_CODINGS)}, once")
    return ",".join(codings)


# Which credentials a pull used (paths and names, never a secret), kept in OUT so that
# the `fhirhose pull --resume --out OUT` it prints when interrupted works as printed.
AUTH_NAME = ".fhirhose-pull-auth.json"
_AUTH_FLAGS = ("credentials", "org", "use_jwk", "client_id", "secret_file", "jwk", "kid", "scope", "token_url",
               "no_auth")


class AuthRecord(msgspec.Struct, omit_defaults=True):
    credentials: str | None = None
    org: str | None = None
    use_jwk: bool = False
    client_id: str | None = None
    secret_file: str | None = None
    jwk: str | None = None
    kid: str | None = None
    scope: str | None = None
    token_url: str | None = None
    no_auth: bool = False
    secret_env: bool = False  # the secret came from FHIRHOSE_CLIENT_SECRET: set it again to resume


def _record_auth(args: argparse.Namespace) -> None:
    values = {k: getattr(args, k) for k in _AUTH_FLAGS}
    for k in ("credentials", "secret_file", "jwk"):  # absolute: the resume may run elsewhere
        values[k] = str(Path(values[k]).resolve()) if values[k] else None
    record = AuthRecord(**values, secret_env=bool(args.client_id and not args.secret_file and not args.jwk
                                                   and os.environ.get(_SECRET_ENV)))
    write_atomic(args.out / AUTH_NAME, msgspec.json.encode(record))


def _recall_auth(args: argparse.Namespace) -> None:
    """`--resume` without credential flags: the ones the interrupted pull used."""
    if any(getattr(args, k) for k in ("credentials", "client_id", "secret_file", "jwk", "no_auth")):
        return
    try:
        record = msgspec.json.decode((args.out / AUTH_NAME).read_bytes(), type=AuthRecord)
    except FileNotFoundError:
        return
    except (OSError, msgspec.DecodeError) as e:
        raise ClientError(f"{args.out / AUTH_NAME}: unreadable ({e}); pass the credential flags") from None
    for k in _AUTH_FLAGS:
        value = getattr(record, k)
        setattr(args, k, Path(value) if k in ("credentials", "secret_file", "jwk") and value else value)


def _continue_hint(args: argparse.Namespace) -> str:
    env = ""
    try:
        record = msgspec.json.decode((args.out / AUTH_NAME).read_bytes(), type=AuthRecord)
        env = f"{_SECRET_ENV}=... " if record.secret_env else ""
    except (OSError, msgspec.DecodeError):
        pass
    return f"continue with: {env}fhirhose pull --resume --out {shlex.quote(str(args.out))}"


def _check_url(url: str, what: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it checks the port's range)
    except ValueError as e:  # a bad IPv6 literal, a port out of range
        raise ClientError(f"{what} {url!r}: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"{what} {url!r}: not an http(s) URL with a host")


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
    if args.jwk or (args.use_jwk and jwk):
        if not client_id:
            raise ClientError("--jwk needs --client-id")
        return base, JwkAuth(args.jwk or jwk, client_id, kid=args.kid, scope=args.scope or "system/*.read"), org
    if client_id and secret:
        return base, SecretAuth(client_id, secret, scope=args.scope), org
    raise ClientError(f"no credentials: pass --client-id with --secret-file (or {_SECRET_ENV}) or --jwk, "
                      "--credentials, or --no-auth")


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.out.is_dir():
        raise ClientError(f"--out {args.out}: exists and is not a folder")
    if args.concurrency < 1:
        raise ClientError(f"--concurrency {args.concurrency}: at least 1")
    if args.resume is not None:
        _recall_auth(args)
    base, auth, org = _auth(args)
    resume = args.resume
    if resume == "":
        state = PullState.load(args.out)
        if state is None:
            raise ClientError(f"--resume: {args.out} holds no earlier export; pass its status URL")
        resume, base = state.status_url, base or state.fhir_base
    if not base:
        raise ClientError("the FHIR base URL is required (argument, or --credentials)")
    _check_url(base, "FHIR base")
    if resume:
        _check_url(resume, "--resume")
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

    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        result = runner(go())
    except (ClientError, KeyboardInterrupt) as e:
        state = _state(args.out)
        if state is None or state.complete:
            raise
        _record_auth(args)
        if isinstance(e, KeyboardInterrupt):
            raise KeyboardInterrupt(f"files so far are kept in {args.out}; {_continue_hint(args)}") from None
        raise ClientError(f"{e}; {_continue_hint(args)}") from None
    _record_auth(args)
    if args.json:
        # The event loop may leave stdout non-blocking: a pipe would then cut the JSON short.
        os.set_blocking(sys.stdout.fileno(), True)
        sys.stdout.buffer.write(msgspec.json.encode(result) + b"\n")
        sys.stdout.flush()
    else:
        print(_summary(result), file=sys.stderr)
    return 0


def _state(out: Path) -> PullState | None:
    try:
        return PullState.load(out)
    except ClientError:
        return None


def _summary(r: PullResult) -> str:
    mb = 1e6
    secs = max(r.seconds, 1e-9)
    lines = [f"{r.resource_count:,} resources in {len(r.files)} files → {r.out_dir} "
             f"({r.seconds:.1f} s, {r.resource_count / secs:,.0f} resources/s, "
             f"{r.ndjson_bytes / mb / secs:,.1f} MB/s NDJSON, {r.wire_bytes / mb / secs:,.1f} MB/s wire)"]
    lines += [f"  {t:<22} {n:>12,}" for t, n in sorted(r.resources.items())]
    if r.errors:
        names = ", ".join(f.path for f in r.files if f.kind == "error")
        lines.append(f"  the server reported {r.errors} OperationOutcome issue(s): {names}")
    lines.append(f"  transactionTime {r.transaction_time}; status {r.status_url}" + (" (deleted)" if r.deleted else ""))
    return "\n".join(lines)
