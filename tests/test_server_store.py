"""The server over a real store and the real exporter: every line valid R4; restart resumes a job."""

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

from fhirhose.fhir.validate import validate_r4
from fhirhose.server import ServerConfig, create_app
from fhirhose.store import Store

from .support.server import (
    ACCESS,
    CLAIMS,
    STORE_ORGS,
    Clock,
    Harness,
    async_test,
    basic,
    build_store,
    clients_of,
    register_store_clients,
    today,
    until,
)

ROOT = Path(__file__).resolve().parent.parent


def sandbox(data: Path) -> None:
    data.mkdir(parents=True)
    build_store(data / "store")
    register_store_clients(data)


async def all_lines(h: Harness, client: str, manifest: dict) -> dict[str, list[dict]]:
    """Every resource of every output file, validated as R4; by type."""
    out: dict[str, list[dict]] = {}
    for item in manifest["output"]:
        r = await h.fetch(client, item["url"], **{"Accept-Encoding": "gzip"})
        assert r.status == 200
        lines = gzip.decompress(await r.read()).splitlines()
        assert len(lines) == item["count"]
        for line in lines:
            res = json.loads(line)
            assert res["resourceType"] == item["type"]
            validate_r4(res)
            out.setdefault(item["type"], []).append(res)
    return out


@async_test
async def test_real_store_and_exporter(tmp_path):
    from aiohttp import web

    data = tmp_path / "d"
    sandbox(data)
    clock = Clock()
    cfg = ServerConfig(data_dir=str(data), workers=1, chunk_size=5, retry_after=3,
                       exporter="tests.support.server:store_test_exporter")
    runner = web.AppRunner(create_app(cfg, access=ACCESS, clock=clock))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as s:
            h = Harness(f"http://127.0.0.1:{runner.addresses[0][1]}/api/v2", s, clock, None, clients_of(data))
            with Store.open(data / "store") as snap:
                ids = snap.tables["bene"]["bene_id"].to_list()
                roster = snap.tables["roster"]["bene_row"].values.tolist()
            for org, kind, n in STORE_ORGS:
                client = f"client-{org}"
                r = await h.kickoff(client)
                assert r.status == 202, await r.text()
                manifest = await (await h.wait(client, r.headers["Content-Location"])).json()
                got = await all_lines(h, client, manifest)
                counts = {t: sum(o["count"] for o in manifest["output"] if o["type"] == t) for t in got}
                if kind == "aco":
                    assert counts == {"Patient": n, "Coverage": n, "ExplanationOfBenefit": n * CLAIMS}
                    assert sorted(p["id"] for p in got["Patient"]) == sorted(ids[r] for r in roster)
                else:  # a Part D sponsor gets claims only
                    assert counts == {"ExplanationOfBenefit": n * CLAIMS}

            # _typeFilter reaches the exporter: final-action claims only, then a service window.
            client, n = "client-A0001", STORE_ORGS[0][2]
            for tf, per_bene in (("_tag=https://bluebutton.cms.gov/fhir/CodeSystem/Final-Action|FinalAction",
                                  CLAIMS - 1),
                                 ("service-date=ge2024-04-01&service-date=le2024-04-30", 1)):
                r = await h.kickoff(client, params={"_type": "ExplanationOfBenefit",
                                                   "_typeFilter": f"ExplanationOfBenefit?{tf}"})
                assert r.status == 202, await r.text()
                manifest = await (await h.wait(client, r.headers["Content-Location"])).json()
                assert sum(o["count"] for o in manifest["output"]) == n * per_bene

            # _since after the load (and after the roster delivery, so nobody is new to the
            # roster): nothing changed since, so no files (an empty output array).
            r = await h.kickoff(client, params={"_since": f"{today().isoformat()}T00:00:00Z"})
            manifest = await (await h.wait(client, r.headers["Content-Location"])).json()
            assert manifest["output"] == [] and manifest["error"] == []

            # POST patient by id: only that beneficiary.
            pid = ids[roster[3]]
            r = await h.kickoff(client, json_body={"resourceType": "Parameters", "parameter": [
                {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}}]})
            manifest = await (await h.wait(client, r.headers["Content-Location"])).json()
            got = await all_lines(h, client, manifest)
            assert [p["id"] for p in got["Patient"]] == [pid] and len(got["ExplanationOfBenefit"]) == CLAIMS
    finally:
        await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(data: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    with open(data.parent / "server.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "fhirhose.cli", "serve", "--data", str(data), "--port", str(port),
             "--workers", "1", "--chunk-size", "5", "--retry-after", "0", "--loop", "uvloop",
             "--exporter", "tests.support.server:store_test_exporter"],
            env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log,
        )


async def _token(s: aiohttp.ClientSession, base: str, creds: dict) -> str | None:
    """A bearer token, or None while the server is not listening yet."""
    try:
        r = await s.post(f"{base}/auth/token", data={"grant_type": "client_credentials"},
                         headers=basic(creds["client_id"], creds["secret"]))
    except aiohttp.ClientConnectionError:
        return None
    return (await r.json())["access_token"]


@pytest.mark.slow
@async_test
async def test_restart_resumes_without_loss_or_duplicates(tmp_path):
    data = tmp_path / "d"
    sandbox(data)
    (data / "hold").write_text("1")  # chunk 0 finishes; chunk 1 writes its files, then hangs
    port = _free_port()
    base = f"http://127.0.0.1:{port}/api/v2"
    client, n = "client-A0001", STORE_ORGS[0][2]  # 12 beneficiaries: chunks of 5, 5, 2
    creds = clients_of(data)[client]
    proc = _start(data, port)
    try:
        async with aiohttp.ClientSession() as s:
            def token():
                return _token(s, base, creds)

            tok = await until(token, "server did not start")
            hd = {"Authorization": f"Bearer {tok}", "Prefer": "respond-async", "Accept": "application/fhir+json"}
            r = await s.get(f"{base}/Group/all/$export", headers=hd)
            assert r.status == 202
            url = r.headers["Content-Location"]
            job = url.rsplit("/", 1)[1]

            async def chunk1_held():  # the attempt's private folder: .chunk-00001-<pid>-<nonce>
                return next((data / "jobs" / job).glob(".chunk-00001-*/Patient.partial"), None)

            partial = await until(chunk1_held, "chunk 1 never reached its hold")
            r = await s.get(url, headers=hd)
            assert r.status == 202 and r.headers["X-Progress"].startswith("33%")
            os.killpg(proc.pid, signal.SIGKILL)  # the server and its worker, mid-chunk
            proc.wait()
            assert partial.exists() and len(list(partial.parent.glob("*.ndjson.gz"))) == 3  # unlisted

            (data / "hold").unlink()
            proc = _start(data, port)
            tok = await until(token, "server did not restart")
            hd["Authorization"] = f"Bearer {tok}"

            async def done():
                r = await s.get(url, headers=hd)
                return None if r.status == 202 else r

            r = await until(done, "resumed job did not finish")
            assert r.status == 200, await r.text()
            manifest = await r.json()
            counts = {}
            seen = []
            for item in manifest["output"]:
                counts[item["type"]] = counts.get(item["type"], 0) + item["count"]
                rr = await s.get(item["url"], headers={**hd, "Accept-Encoding": "identity"})
                for line in (await rr.read()).splitlines():
                    res = json.loads(line)
                    validate_r4(res)
                    seen.append((res["resourceType"], res["id"]))
            assert counts == {"Patient": n, "Coverage": n, "ExplanationOfBenefit": n * CLAIMS}
            assert len(seen) == len(set(seen))  # no duplicates
            assert not list((data / "jobs" / job).glob(".chunk-00001*"))
            runs = (data / "exports.log").read_text().split()
            assert runs.count(job) == 4  # chunk 0 kept, chunk 1 redone from scratch, chunk 2
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def _children(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, IndexError, ValueError):
                continue
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def _held_export(data: Path, port: int) -> tuple[subprocess.Popen, list[int]]:
    """A server whose export worker is stuck in chunk 0; returns it and its worker pids."""
    sandbox(data)
    (data / "hold").write_text("0")
    proc = _start(data, port)
    base = f"http://127.0.0.1:{port}/api/v2"
    creds = clients_of(data)["client-A0001"]
    async with aiohttp.ClientSession() as s:
        def token():
            return _token(s, base, creds)

        tok = await until(token, "server did not start")
        r = await s.get(f"{base}/Group/all/$export", headers={
            "Authorization": f"Bearer {tok}", "Prefer": "respond-async", "Accept": "application/fhir+json"})
        assert r.status == 202
        job = r.headers["Content-Location"].rsplit("/", 1)[1]
        async def held():  # the attempt's private folder: .chunk-00000-<pid>-<nonce>
            return next((data / "jobs" / job).glob(".chunk-00000-*/Patient.partial"), None)

        await until(held, "chunk 0 never reached its hold")

    async def workers():
        return [p for p in _children(proc.pid) if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text()]

    return proc, await until(workers, "no export worker")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
@async_test
async def test_sigterm_stops_the_server_and_its_busy_workers(tmp_path):
    proc, workers = await _held_export(tmp_path / "d", _free_port())
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # a clean stop, not death by signal
        await until(_async(lambda: not any(map(_alive, workers))), "workers outlived the server", 15)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
@async_test
async def test_workers_exit_when_the_server_is_killed(tmp_path):
    proc, workers = await _held_export(tmp_path / "d", _free_port())
    try:
        proc.kill()  # the server only: its pool gets no chance to stop the workers
        proc.wait()
        await until(_async(lambda: not any(map(_alive, workers))), "orphaned workers kept running", 15)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _async(f):
    async def call():
        return f()
    return call


def test_warm_up_imports_and_never_raises(caplog):
    import subprocess as sp

    probe = ("import sys\nfrom fhirhose.server import worker\n"
             "worker.warm_up('fhirhose.server.worker:store_exporter')\n"
             "print(all(m in sys.modules for m in ('fhirhose.fhir.registry', 'fhirhose.export.exporter', "
             "'fhirhose.access.rules')))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    got = sp.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert got.stdout.split() == ["True"], got.stderr
    # A pool initializer that raised would break the pool: a bad exporter is only logged here
    # (the first chunk fails with it, as without warm-up).
    from fhirhose.server import worker

    worker.warm_up("no.such.module:exporter")
    assert "warm-up" in caplog.text and "no.such.module" in caplog.text


@async_test
async def test_warm_workers_start_with_the_server_and_export(tmp_path):
    from aiohttp import web

    data = tmp_path / "d"
    sandbox(data)
    cfg = ServerConfig(data_dir=str(data), workers=2, chunk_size=5, retry_after=0, warm_workers=True)
    clock = Clock()
    app = create_app(cfg, access=ACCESS, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        from fhirhose.server.state import API

        job_runner = app[API].runner
        # Both processes exist before any kick-off (spawned at start, importing meanwhile).
        warm = set(job_runner._pool._processes)
        assert len(warm) == 2
        async with aiohttp.ClientSession() as s:
            h = Harness(f"http://127.0.0.1:{runner.addresses[0][1]}/api/v2", s, clock, None, clients_of(data))
            r = await h.kickoff("client-A0001")
            assert r.status == 202, await r.text()
            manifest = await (await h.wait("client-A0001", r.headers["Content-Location"])).json()
            assert sum(o["count"] for o in manifest["output"] if o["type"] == "Patient") == STORE_ORGS[0][2]
        assert set(job_runner._pool._processes) == warm  # the warm processes ran the chunks
    finally:
        await runner.cleanup()
