"""The server over a real store and the real exporter: every line valid R4; restart resumes a job."""

import asyncio
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from fhirhose.fhir.validate import validate_r4
from fhirhose.server import ServerConfig, create_app
from fhirhose.store import Store

from .server_support import (ACCESS, CLAIMS, STORE_ORGS, Clock, Harness, async_test, basic, build_store, clients_of,
                             register_store_clients, today)

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
                       exporter="tests.server_support:store_test_exporter")
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
             "--exporter", "tests.server_support:store_test_exporter"],
            env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log,
        )


async def _until(cond, what: str, deadline: float = 60.0):
    end = time.monotonic() + deadline
    while True:
        got = await cond()
        if got:
            return got
        assert time.monotonic() < end, what
        await asyncio.sleep(0.05)


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
            async def token():
                try:
                    r = await s.post(f"{base}/auth/token", data={"grant_type": "client_credentials"},
                                     headers=basic(creds["client_id"], creds["secret"]))
                except aiohttp.ClientConnectionError:
                    return None
                return (await r.json())["access_token"]

            tok = await _until(token, "server did not start")
            hd = {"Authorization": f"Bearer {tok}", "Prefer": "respond-async", "Accept": "application/fhir+json"}
            r = await s.get(f"{base}/Group/all/$export", headers=hd)
            assert r.status == 202
            url = r.headers["Content-Location"]
            job = url.rsplit("/", 1)[1]

            partial = data / "jobs" / job / ".chunk-00001" / "Patient.partial"

            async def chunk1_held():
                return partial.exists()

            await _until(chunk1_held, "chunk 1 never reached its hold")
            r = await s.get(url, headers=hd)
            assert r.status == 202 and r.headers["X-Progress"].startswith("33%")
            os.killpg(proc.pid, signal.SIGKILL)  # the server and its worker, mid-chunk
            proc.wait()
            assert partial.exists() and len(list(partial.parent.glob("*.ndjson.gz"))) == 3  # unlisted

            (data / "hold").unlink()
            proc = _start(data, port)
            tok = await _until(token, "server did not restart")
            hd["Authorization"] = f"Bearer {tok}"

            async def done():
                r = await s.get(url, headers=hd)
                return None if r.status == 202 else r

            r = await _until(done, "resumed job did not finish")
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
            assert not (data / "jobs" / job / ".chunk-00001").exists()
            runs = (data / "exports.log").read_text().split()
            assert runs.count(job) == 4  # chunk 0 kept, chunk 1 redone from scratch, chunk 2
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
