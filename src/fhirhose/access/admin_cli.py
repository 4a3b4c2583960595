"""`fhirhose admin`: organizations, users, credentials, attestations and the audit log.

Runs as the CMS operator unless `--user-key` names an organization user, in
which case that user's role decides (e.g. attest needs an attestor's key).
Every command prints JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

from ..errors import InputError, StoreError
from ..sql import is_postgres_url, sqlite_path
from .actors import ROLES, Actor
from .config import AccessConfig
from .credentials import ENVS
from .db import AccessDB


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("admin", help="administer organizations, users, credentials and attestations")
    p.add_argument("--database", "--db", dest="db", required=True, metavar="URL",
                   help="access database: postgresql://... or a SQLite file (sqlite:///PATH or PATH)")
    p.add_argument("--user-key", help="act as this organization user (default: the CMS operator)")
    sub = p.add_subparsers(dest="admin_cmd", required=True)

    def cmd(name, fn, help_):
        c = sub.add_parser(name, help=help_)
        c.set_defaults(func=lambda a: _run(a, fn))
        return c

    sub.add_parser("init", help="create the access database (every other command needs one)").set_defaults(func=_init)
    c = cmd("org-create", _org_create, "register an organization")
    c.add_argument("org_id")
    c.add_argument("kind", choices=list(AccessConfig().kinds))
    c.add_argument("name")
    cmd("org-list", lambda db, actor, a: [asdict(o) for o in db.orgs.list()], "list organizations")
    c = cmd("org-suspend", lambda db, actor, a: db.orgs.set_active(actor, a.org_id, a.reinstate), "suspend an organization")
    c.add_argument("org_id")
    c.add_argument("--reinstate", action="store_true")
    c = cmd("contract-add", lambda db, actor, a: db.orgs.add_contract(actor, a.org_id, a.contract), "assign a Part D contract")
    c.add_argument("org_id")
    c.add_argument("contract")
    c = cmd("user-add", _user_add, "add a user with a role (prints their admin key once)")
    c.add_argument("org_id")
    c.add_argument("name")
    c.add_argument("email")
    c.add_argument("role", choices=ROLES)
    c.add_argument("--title", default="", help="CEO, CFO or COO for attestors")
    c = cmd("user-remove", lambda db, actor, a: db.orgs.remove_user(actor, a.user_id), "a user leaves")
    c.add_argument("user_id", type=int)
    c = cmd("attest", _attest, "attest (as an attestor, with --user-key)")
    c.add_argument("org_id")
    c.add_argument("--contract")
    c = cmd("cred-issue", _cred_issue, "issue a credential (prints the secret once)")
    c.add_argument("org_id")
    c.add_argument("--env", choices=ENVS, default="sandbox")
    c.add_argument("--label", default="")
    c.add_argument("--no-secret", action="store_true", help="public keys only (SMART backend services)")
    c.add_argument("--jwks", type=Path, help="JWK or JWK Set file with public keys")
    c.add_argument("--ip", action="append", default=[], help="allowed IP or CIDR (repeat, at most 8)")
    c = cmd("cred-list", lambda db, actor, a: [asdict(x) for x in db.credentials.list(actor, a.org_id)], "list credentials")
    c.add_argument("org_id")
    c = cmd("cred-rotate", lambda db, actor, a: {"client_secret": db.credentials.rotate(actor, a.credential_id)}, "new secret")
    c.add_argument("credential_id")
    c = cmd("cred-revoke", lambda db, actor, a: db.credentials.revoke(actor, a.credential_id, reason=a.reason), "revoke")
    c.add_argument("credential_id")
    c.add_argument("--reason", default="")
    c = cmd("cred-ips", lambda db, actor, a: db.credentials.set_ips(actor, a.credential_id, a.ips), "replace the IP allowlist")
    c.add_argument("credential_id")
    c.add_argument("ips", nargs="*")
    c = cmd("cred-key", _cred_key, "register public keys from a JWK or JWK Set file")
    c.add_argument("credential_id")
    c.add_argument("jwks", type=Path)
    c = cmd("console-user-add", _console_user_add, "add a web console user (prints the first password once)")
    c.add_argument("email")
    c.add_argument("name")
    c.add_argument("role", help="a console role (access/roles.py), e.g. operator, credential_delegate, attestor")
    c.add_argument("--org", help="the organization (none for an operator)")
    c.add_argument("--title", default="", help="CEO, CFO or COO for attestors")
    c = cmd("console-password-reset", _console_password_reset, "a new console password (prints it once)")
    c.add_argument("email")
    c = cmd("audit", _audit, "list audit entries, newest first")
    c.add_argument("--org")
    c.add_argument("--credential")
    c.add_argument("--limit", type=int, default=50)


def _open(location: str, *, create: bool = False) -> AccessDB:
    """The access database at --db; only `init` creates a SQLite file, so a mistyped path is an
    error, not a new empty database. A PostgreSQL database must exist (its tables are
    created or upgraded on open: `init` and every command apply the migrations)."""
    if is_postgres_url(location):
        return AccessDB(location)
    path = sqlite_path(location)
    if path.is_dir():
        raise InputError(f"--db {path}: is a folder, not an access database")
    if not create and not path.exists():
        raise InputError(f"--db {path}: no such access database (create one with "
                         f"`fhirhose admin --db {path} init`; `fhirhose serve` creates DATA/access.sqlite)")
    if create and not path.parent.is_dir():
        raise InputError(f"--db {path}: no such folder {path.parent}")
    try:
        db = AccessDB(path)
        db.orgs.list()  # a file that is not SQLite fails here, not halfway through a command
        return db
    except (sqlite3.Error, StoreError) as e:
        raise InputError(f"--db {path}: not an access database ({e})") from None


def _init(args) -> int:
    created = not is_postgres_url(args.db) and not sqlite_path(args.db).exists()
    _open(args.db, create=True).close()
    print(json.dumps({"db": str(args.db), "created": created}, indent=2))
    return 0


def _run(args, fn) -> int:
    db = _open(args.db)
    try:
        actor = Actor.user(db.orgs.authenticate(args.user_key).id) if args.user_key else Actor.system("cli")
        out = fn(db, actor, args)
    except sqlite3.Error as e:
        raise InputError(f"--db {args.db}: {e}") from None
    finally:
        db.close()
    print(json.dumps({"ok": True} if out is None else out, indent=2, default=str))
    return 0


def _org_create(db, actor, a):
    return asdict(db.orgs.create(actor, a.org_id, a.kind, a.name))


def _user_add(db, actor, a):
    user, key = db.orgs.add_user(actor, a.org_id, a.name, a.email, a.role, a.title)
    return {**asdict(user), "admin_key": key}


def _console_user_add(db, actor, a):
    from .users import ConsoleUsers

    cu, password = ConsoleUsers(db).create(actor, a.email, a.name, a.role, a.org, title=a.title)
    return {**asdict(cu), "password": password}


def _console_password_reset(db, actor, a):
    from .users import ConsoleUsers

    users = ConsoleUsers(db)
    cu = users.by_email(a.email)
    if cu is None:
        raise InputError(f"console user {a.email!r} does not exist")
    return {"email": cu.email, "password": users.reset_password(actor, cu.id)}


def _attest(db, actor, a):
    db.orgs.attest(actor, a.org_id, a.contract)
    return {"attested": db.orgs.attested_contracts(a.org_id)}


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable JSON file ({e})") from None


def _jwks(path: Path | None) -> dict | None:
    if path is None:
        return None
    data = _load_json(path)
    return data if "keys" in data else {"keys": [data]}


def _cred_issue(db, actor, a):
    cred, secret = db.credentials.issue(
        actor, a.org_id, env=a.env, label=a.label, secret=not a.no_secret, jwks=_jwks(a.jwks), ips=a.ip
    )
    return {**asdict(cred), "client_secret": secret}


def _cred_key(db, actor, a):
    return {"registered": db.credentials.register_jwks(actor, a.credential_id, _jwks(a.jwks))}


def _audit(db, actor, a):
    if a.credential:
        cred = db.credentials.get(a.credential)
        db.orgs.require(actor, cred.org_id, ROLES, "audit.read")
        rows = db.audit.recent(a.credential, a.limit)
    elif a.org:
        db.orgs.require(actor, a.org, ROLES, "audit.read")
        rows = db.audit.for_org(a.org, a.limit)
    else:
        db.orgs.require(actor, None, (), "audit.read")
        rows = db.audit.all(a.limit)
    return [{**asdict(r), "at": dt.datetime.fromtimestamp(r.at, dt.UTC).isoformat()} for r in rows]

