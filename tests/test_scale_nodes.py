"""Scale-out with real processes: two API nodes and two worker nodes (`fhirhose serve`,
`fhirhose worker`) on one PostgreSQL database and one data folder, the real store and
exporter. A worker node and an API node (with its own runner) are killed with SIGKILL
mid-chunk: every job still completes, each resource is listed once, and the output equals
a single-node SQLite export of the same requests (same files, counts and NDJSON digests).

PostgreSQL only: several nodes on one database is what the PostgreSQL engine is for."""

from __future__ import annotations

import functools
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from .support.server import STORE_ORGS, async_test, basic, build_store, clients_of, register_store_clients, until

ROOT = Path(__file__).resolve().parent.parent
until_started = functools.partial(until, deadline=120.0)  # four processes start slowly on 2 cores
EXPORTER = "tests.support.server:store_test_exporter"
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(data: Path, args: list[str], log_name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    with open(data.parent / f"{log_name}.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "fhirhose.cli", *args], env=env, cwd=ROOT,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=log)


def _api_node(data: Path, port: int, workers: int, database: str | None, name: str) -> subprocess.Popen:
    db = ["--database", database] if database else []
    return _spawn(data, ["serve", "--data", str(data), *db, "--port", str(port), "--workers", str(workers),
                         "--chunk-size", "2", "--retry-after", "0", "--lease", "2", "--loop", "uvloop",
                         "--exporter", EXPORTER], name)


def _worker_node(data: Path, database: str, name: str) -> subprocess.Popen:
    return _spawn(data, ["worker", "--data", str(data), "--database", database, "--processes", "1",
                         "--lease", "2", "--exporter", EXPORTER], name)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the node and its export processes
    except ProcessLookupError:
        pass
    proc.wait()


class _Client:
    def __init__(self, s: aiohttp.ClientSession, creds: dict):
        self.s, self.creds, self.tokens = s, creds, {}

    async def token(self, base: str, name: str) -> str | None:
        if (base, name) not in self.tokens:
            c = self.creds[name]
            try:
                r = await self.s.post(f"{base}/auth/token", data={"grant_type": "client_credentials"},
                                      headers=basic(c["client_id"], c["secret"]))
            except aiohttp.ClientConnectionError:
                return None
            assert r.status == 200, await r.text()
            self.tokens[(base, name)] = (await r.json())["access_token"]
        return self.tokens[(base, name)]

    async def hd(self, base: str, name: str) -> dict:
        return {"Authorization": f"Bearer {await self.token(base, name)}", "Prefer": "respond-async",
                "Accept": "application/fhir+json"}


async def _export_all(c: _Client, kick_base: str, poll_base: str, before_release=None) -> dict:
    """Kick off a group export per organization on `kick_base`, poll and download on
    `poll_base`; returns {org: {"files": [(name, count, sha256)], "ids": {type: [ids]}}}."""
    urls = {}
    for org, _, _ in STORE_ORGS:
        name = f"client-{org}"
        r = await c.s.get(f"{kick_base}/Group/all/$export", headers=await c.hd(kick_base, name))
        assert r.status == 202, await r.text()
        urls[org] = r.headers["Content-Location"].replace(kick_base, poll_base)
    if before_release is not None:
        await before_release()
    out = {}
    for org, url in urls.items():
        name = f"client-{org}"

        async def done(url: str = url, name: str = name):  # this iteration's export
            r = await c.s.get(url, headers=await c.hd(poll_base, name))
            return None if r.status == 202 else r

        r = await until_started(done, f"export of {org} did not finish")
        assert r.status == 200, await r.text()
        manifest = await r.json()
        files, ids = [], {}
        for item in manifest["output"]:
            ext = {e["url"].rsplit("/", 1)[-1]: e for e in item.get("extension", [])} if isinstance(
                item.get("extension"), list) else item.get("extension", {})
            files.append((item["url"].rsplit("/", 1)[-1], item["count"], json.dumps(ext, sort_keys=True)))
            rr = await c.s.get(item["url"], headers={**await c.hd(poll_base, name), "Accept-Encoding": "gzip"})
            assert rr.status == 200
            lines = gzip.decompress(await rr.read()).splitlines()
            assert len(lines) == item["count"]
            ids.setdefault(item["type"], []).extend(json.loads(line)["id"] for line in lines)
        out[org] = {"files": sorted(files), "ids": {t: sorted(v) for t, v in ids.items()}}
    return out


async def _single_node(tmp: Path) -> dict:
    from .support import server

    data = tmp / "single"
    data.mkdir()
    build_store(data / "store")
    hook, server.DATABASE_HOOK = server.DATABASE_HOOK, None  # the embedded default: SQLite files in DATA
    try:
        register_store_clients(data)
    finally:
        server.DATABASE_HOOK = hook
    port = _free_port()
    proc = _api_node(data, port, 2, None, "single")
    base = f"http://127.0.0.1:{port}/api/v2"
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            c = _Client(s, clients_of(data))
            await until_started(lambda: c.token(base, f"client-{STORE_ORGS[0][0]}"), "single node did not start")
            return await _export_all(c, base, base)
    finally:
        _kill(proc)


@async_test
async def test_two_api_and_two_worker_nodes_survive_kill_9(tmp_path, pg_servers):
    from .support.server import database_url

    expected = await _single_node(tmp_path)

    data = tmp_path / "shared"
    data.mkdir()
    url = database_url(data)
    build_store(data / "store")
    register_store_clients(data)
    (data / "hold").write_text("0")  # every chunk holds after writing its files, until released
    p1, p2 = _free_port(), _free_port()
    api1 = _api_node(data, p1, 1, url, "api1")  # an API node with a runner of its own
    api2 = _api_node(data, p2, 0, url, "api2")  # an API node only
    wa, wb = _worker_node(data, url, "worker-a"), _worker_node(data, url, "worker-b")
    procs = [api1, api2, wa, wb]
    b1, b2 = f"http://127.0.0.1:{p1}/api/v2", f"http://127.0.0.1:{p2}/api/v2"
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            c = _Client(s, clients_of(data))
            for b in (b1, b2):
                await until_started(lambda b=b: c.token(b, f"client-{STORE_ORGS[0][0]}"), f"{b} did not start")

            async def kill_mid_chunk():
                async def three_held():  # api1's runner, worker a and worker b each hold a chunk
                    held = list((data / "jobs").glob("*/.chunk-*/Patient.partial"))
                    return held if len(held) >= 3 else None

                await until_started(three_held, "three nodes never held a chunk each")
                _kill(wa)
                _kill(api1)
                (data / "hold").unlink()

            got = await _export_all(c, b1, b2, kill_mid_chunk)
    finally:
        for p in procs:
            _kill(p)
    assert got == expected
    for org in got.values():
        for ids in org["ids"].values():
            assert len(ids) == len(set(ids))  # no chunk twice into the output
    log = (data / "exports.log").read_text().split("\n")
    assert len([x for x in log if x]) > sum(-(-n // 2) for _, _, n in STORE_ORGS)  # some chunks were redone
