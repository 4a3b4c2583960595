"""Load, bounded and on loopback: concurrent exports from 10 organizations and 200 status
pollers spread over two API nodes on one PostgreSQL database, for FHIRHOSE_LOAD_SECONDS
(default 30; CI may shorten it, never skip it). Zero errors other than the 429s the rules
ask for (status-poll pacing, token rate limit), and zero cross-tenant reads: every poll of
another organization's job is refused, every downloaded resource belongs to the caller.

PostgreSQL only: two API nodes share one database."""

from __future__ import annotations

import asyncio
import collections
import gzip
import json
import os
import random
import time

import pytest

from fhirhose.server.population import TablePopulation

from .support.server import ACCESS, Clock, async_test, basic, group_rows, register_clients, running, tables

pytestmark = pytest.mark.slow

ORGS = [(f"load-{k}", f"A{9100 + k}", "aco", 40 + 5 * k, 0) for k in range(10)]  # ACO ids: A + 4 digits
TYPES = ("Patient", "Coverage")  # two concurrent exports per organization: 20 in all
POLLERS = 200


@async_test
async def test_load_two_api_nodes(tmp_path, pg_servers):
    seconds = float(os.environ.get("FHIRHOSE_LOAD_SECONDS", "30"))
    data = tmp_path / "d"
    data.mkdir()
    creds = register_clients(data, [(name, org, kind, None) for name, org, kind, *_ in ORGS], config=ACCESS)
    (data / "test-clients.json").write_text(json.dumps(creds))
    population = TablePopulation(lambda: tables(ORGS))
    rows_of = {org: {f"b{r}" for r in group_rows(org, clients=ORGS)} for _, org, *_ in ORGS}
    errors: list[str] = []
    counts = collections.Counter()
    clock = Clock()
    kw = dict(workers=1, chunk_size=25, retry_after=1, population=population, clock=clock)
    async with running(data, **kw) as n1, running(data, **kw) as n2:
        nodes = [n1.base, n2.base]
        s = n1.session
        tokens: dict[str, str] = {}
        current: dict[str, str] = {}  # org -> a job URL path (after the base) of that org, for pollers
        end = time.monotonic() + seconds

        async def token(name: str) -> str:
            while name not in tokens:
                c = creds[name]
                r = await s.post(f"{random.choice(nodes)}/auth/token", data={"grant_type": "client_credentials"},
                                 headers=basic(c["client_id"], c["secret"]))
                if r.status == 200:
                    tokens[name] = (await r.json())["access_token"]
                elif r.status == 429:
                    counts["token 429"] += 1
                    await asyncio.sleep(int(r.headers.get("Retry-After", "1")))
                else:
                    errors.append(f"token {name}: {r.status} {await r.text()}")
                    return ""
            return tokens[name]

        async def hd(name: str) -> dict:
            return {"Authorization": f"Bearer {await token(name)}", "Accept": "application/fhir+json",
                    "Prefer": "respond-async"}

        async def exporter(name: str, org: str, rtype: str) -> None:
            while time.monotonic() < end:
                r = await s.get(f"{random.choice(nodes)}/Group/all/$export", params={"_type": rtype},
                                headers=await hd(name))
                if r.status != 202:
                    errors.append(f"kick-off {org} {rtype}: {r.status} {await r.text()}")
                    return
                path = r.headers["Content-Location"].split("/api/v2", 1)[1]
                current[org] = path
                while True:
                    r = await s.get(random.choice(nodes) + path, headers=await hd(name))
                    if r.status in (202, 429):
                        counts[f"status {r.status}"] += 1
                        await asyncio.sleep(int(r.headers.get("Retry-After", "1")))
                        continue
                    break
                if r.status != 200:
                    errors.append(f"status {org}: {r.status} {await r.text()}")
                    return
                got = 0
                for item in (await r.json())["output"]:
                    url = random.choice(nodes) + item["url"].split("/api/v2", 1)[1]
                    rr = await s.get(url, headers={**await hd(name), "Accept-Encoding": "gzip"},
                                     auto_decompress=False)
                    if rr.status != 200:
                        errors.append(f"download {org}: {rr.status}")
                        continue
                    for line in gzip.decompress(await rr.read()).splitlines():
                        res = json.loads(line)
                        pid = res["id"] if rtype == "Patient" else res["beneficiary"]["reference"].split("/")[1]
                        if pid not in rows_of[org]:
                            errors.append(f"cross-tenant resource {res['id']} in an export of {org}")
                        got += 1
                if got != len(rows_of[org]):
                    errors.append(f"{org} {rtype}: {got} resources, expected {len(rows_of[org])}")
                counts["exports"] += 1

        async def poller(k: int) -> None:
            name, org = ORGS[k % len(ORGS)][:2]
            other = ORGS[(k + 1) % len(ORGS)][1]
            while time.monotonic() < end:
                target = current.get(org if k % 4 else other)  # every fourth poller tries another org's job
                if target is None:
                    await asyncio.sleep(0.2)
                    continue
                r = await s.get(random.choice(nodes) + target, headers=await hd(name))
                await r.read()
                if k % 4 == 0:
                    if r.status == 403:
                        counts["cross-tenant refused"] += 1
                    else:
                        errors.append(f"{org} read {other}'s job: {r.status}")
                elif r.status in (200, 202, 429):
                    counts[f"poll {r.status}"] += 1
                else:
                    errors.append(f"poll {org}: {r.status}")
                await asyncio.sleep(int(r.headers.get("Retry-After", "1") or 1))

        tasks = [exporter(name, org, t) for name, org, *_ in ORGS for t in TYPES]
        tasks += [poller(k) for k in range(POLLERS)]
        await asyncio.gather(*tasks)
    print(f"\nload {seconds:g} s: {dict(counts)}")
    assert not errors, errors[:20]
    assert counts["exports"] >= len(ORGS) * len(TYPES)
    assert counts["cross-tenant refused"] > 0
