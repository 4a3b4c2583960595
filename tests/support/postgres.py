"""A throwaway PostgreSQL cluster for the test run, started by the tests themselves.

`initdb` + `pg_ctl` from the Debian server packages (/usr/lib/postgresql/*/bin), in a
temporary folder, listening only on a Unix socket in that folder (no TCP port to collide
on), trust authentication, fsync off (the cluster dies with the run). As root, the
cluster runs as the unprivileged `postgres` (or `nobody`) user via `runuser`: the server
refuses to run as root. Each test gets a database of its own (`Cluster.create_database`).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["Cluster", "pg_bin", "MISSING"]

MISSING = "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin: apt-get install postgresql"
_PORT = 5432  # only names the socket file inside the private folder


def pg_bin() -> Path | None:
    """The newest installed server's bin folder (or one with initdb on PATH)."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` user exists for the test cluster")


class Cluster:
    """One cluster for the test session; `url(db)` names a database in it."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.user = _run_as()
        self.dir = Path(tempfile.mkdtemp(prefix="fhirhose-pg-"))
        self.data = self.dir / "data"
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._names = itertools.count(1)
        self._cmd("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
                  "--no-sync")
        opts = (f"-k {self.dir} -p {_PORT} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=400 -c shared_buffers=32MB")
        self._cmd("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "server.log"), "-w", "start")

    def _cmd(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.dir}&port={_PORT}"

    def psql(self, sql: str, database: str = "postgres") -> None:
        """Run one statement as the superuser (CREATE / DROP DATABASE)."""
        cmd = [str(self.bin / "psql"), "-h", str(self.dir), "-p", str(_PORT), "-U", "postgres", "-d", database,
               "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"psql {sql!r} failed:\n{done.stderr}")

    def create_database(self) -> tuple[str, str]:
        """A fresh empty database: (name, URL)."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0")
        return name, self.url(name)

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        try:
            self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
