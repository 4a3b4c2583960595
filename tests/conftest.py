"""Shared fixtures: both backends (compiled core and its twin), hypothesis profiles."""

import os

import pytest
from hypothesis import HealthCheck, settings

from .support.backends import BACKENDS
from .support.backends import cext as _cext

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=BACKENDS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def core(request):
    """Each test using `core` runs once per backend."""
    return request.param


@pytest.fixture
def cext():
    if _cext is None:
        pytest.skip("compiled core not built")
    return _cext


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL cluster per test run (see tests/support/postgres.py)."""
    from .support.postgres import MISSING, Cluster, pg_bin

    bin_dir = pg_bin()
    if bin_dir is None:
        pytest.skip(MISSING)
    cluster = Cluster(bin_dir)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """Each test using `database` runs once per engine: `database(name)` is the location of a
    fresh database (a SQLite file, or a new PostgreSQL database); the same name, the same one."""
    made: dict[str, str] = {}
    if request.param == "sqlite":
        yield lambda name="db": tmp_path / f"{name}.sqlite"
        return
    cluster = request.getfixturevalue("pg_cluster")

    def make(name="db"):
        if name not in made:
            made[name] = cluster.create_database()
        return made[name][1]

    make.engine = "postgresql"
    yield make
    for db_name, _ in made.values():
        cluster.drop_database(db_name)


@pytest.fixture
def server_engine(database):
    """The harness servers of a test (tests/support/server.py) run on each engine: on
    PostgreSQL every server over a data folder shares one fresh database."""
    from .support import server

    if getattr(database, "engine", "sqlite") == "sqlite":
        yield "sqlite"
        return
    server.DATABASE_HOOK = database
    try:
        yield "postgresql"
    finally:
        server.DATABASE_HOOK = None


@pytest.fixture
def pg_servers(pg_cluster):
    """For tests of several nodes on one database (PostgreSQL only): every harness server
    over a data folder shares one fresh PostgreSQL database."""
    from .support import server

    made: dict[str, tuple[str, str]] = {}

    def make(name):
        if name not in made:
            made[name] = pg_cluster.create_database()
        return made[name][1]

    server.DATABASE_HOOK = make
    try:
        yield make
    finally:
        server.DATABASE_HOOK = None
        for db_name, _ in made.values():
            pg_cluster.drop_database(db_name)
