"""Numbered schema migrations, per component ("access", "jobs"), recorded in the database.

Each `Migration` is DDL in the neutral dialect (see `dialect.py`) and/or a Python step
(`fn(db, conn)`) for what DDL cannot say portably. `migrate` applies the missing ones in
order inside one transaction under a lock, so nodes starting together apply each once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import StoreError
from .base import Database, IntegrityError

__all__ = ["Migration", "migrate", "applied_versions"]

_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations(component TEXT NOT NULL, version INTEGER NOT NULL, "
          "name TEXT NOT NULL, applied_at REAL NOT NULL, PRIMARY KEY(component, version))")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    ddl: Sequence[str] = ()
    step: Callable | None = field(default=None)


def applied_versions(db: Database, component: str) -> list[int]:
    db.conn.execute(db.dialect.ddl(_TABLE))
    rows = db.conn.execute("SELECT version FROM schema_migrations WHERE component=? ORDER BY version", (component,))
    return [r[0] for r in rows]


def migrate(db: Database, component: str, migrations: Sequence[Migration]) -> list[int]:
    """Apply the migrations `db` lacks; returns the versions applied now.

    A database newer than this code (a version it does not know) is refused."""
    known = [m.version for m in migrations]
    if known != sorted(set(known)):
        raise ValueError(f"{component} migrations are not numbered in order: {known}")
    try:
        db.conn.execute(db.dialect.ddl(_TABLE))
    except IntegrityError:  # PostgreSQL: another node created it at the same moment
        pass
    done = []
    with db.tx() as conn:
        conn.lock(f"fhirhose-migrate-{component}")
        have = {r[0] for r in conn.execute("SELECT version FROM schema_migrations WHERE component=?", (component,))}
        unknown = sorted(have - set(known))
        if unknown:
            raise StoreError(f"{db.url}: {component} schema version {unknown[-1]} is newer than this fhirhose "
                             f"(knows up to {known[-1] if known else 0}); upgrade fhirhose")
        for m in migrations:
            if m.version in have:
                continue
            for stmt in m.ddl:
                conn.execute(db.dialect.ddl(stmt))
            if m.step is not None:
                m.step(db, conn)
            conn.execute("INSERT INTO schema_migrations VALUES (?,?,?,?)", (component, m.version, m.name, time.time()))
            done.append(m.version)
    return done
