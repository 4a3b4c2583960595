"""`fhirhose db upgrade`: apply the schema migrations of the job and access databases."""

from __future__ import annotations

import argparse
import json

from ..access import AccessDB
from ..sql import applied_versions, check_location, open_database
from .db import JobDB

__all__ = ["add_parser", "upgrade"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("db", help="database schema: upgrade (migrations are also applied on start)",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="db_cmd", required=True)
    u = sub.add_parser("upgrade", help="apply missing migrations and print the schema versions")
    u.add_argument("--database", required=True, metavar="URL",
                   help="postgresql://... or a SQLite file (sqlite:///PATH or PATH)")
    u.set_defaults(func=upgrade)
    return p


def upgrade(args: argparse.Namespace) -> int:
    check_location(args.database)
    sql = open_database(args.database)
    try:
        jobs = JobDB(sql)
        applied = {"jobs": jobs.migrate()}
        access = AccessDB(sql)  # migrates on open
        access.close()
        versions = {c: applied_versions(sql, c) for c in ("access", "jobs")}
        print(json.dumps({"engine": sql.engine, "applied_now": applied, "versions": versions}, indent=2))
    finally:
        sql.close()
    return 0
