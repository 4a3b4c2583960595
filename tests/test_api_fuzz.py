"""Every route, fuzzed from the server's own OpenAPI document (schemathesis over a real
server on 127.0.0.1): no 5xx, every error a FHIR OperationOutcome (RFC 6749 error JSON
on the token endpoint and the admin API), and no other organization's data in any
success.

Two organizations, each with a finished export; requests carry the first one's token
(and its user's admin key). Path parameters are drawn from both organizations' real ids
as well as arbitrary strings, so the fuzzer asks for the other organization's jobs,
files, credentials and audit log. Bounded for CI by `FUZZ_EXAMPLES` per operation."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from types import SimpleNamespace

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from fhirhose.access import AccessDB, Actor
from fhirhose.server import TablePopulation, create_app
from fhirhose.server.guard import app_runner, start_site
from fhirhose.server.openapi import openapi_document

from .support.server import ACCESS, basic, config, tables

FUZZ_EXAMPLES = int(os.environ.get("FHIRHOSE_FUZZ_EXAMPLES", "15"))


def _token(base: str, client: dict) -> str:
    r = requests.post(f"{base}/auth/token", data={"grant_type": "client_credentials"},
                      headers=basic(client["client_id"], client["secret"]), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _finished_export(base: str, token: str) -> tuple[str, list[str]]:
    h = {"Authorization": f"Bearer {token}", "Prefer": "respond-async", "Accept": "application/fhir+json"}
    r = requests.get(f"{base}/Group/all/$export", headers=h, timeout=30)
    assert r.status_code == 202, r.text
    url = r.headers["Content-Location"]
    end = time.monotonic() + 120
    while True:
        r = requests.get(url, headers=h, timeout=30)
        if r.status_code == 200:
            return url.rsplit("/", 1)[1], [o["url"].rsplit("/", 1)[1] for o in r.json()["output"]]
        assert r.status_code == 202 and time.monotonic() < end, r.text
        time.sleep(0.05)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    data = tmp_path_factory.mktemp("fuzz")
    cfg = config(data, retry_after=0)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)

    async def start():
        runner = app_runner(create_app(cfg, access=ACCESS, population=TablePopulation(tables)), cfg)
        await runner.setup()
        await start_site(runner, sock, cfg)
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
    base = origin + "/api/v2"
    clients = json.loads((data / "test-clients.json").read_text())
    me, other = clients["small-aco"], clients["big-aco"]
    db = AccessDB(data / "access.sqlite", ACCESS)
    user, admin_key = db.orgs.add_user(Actor.system("tests"), me["org"], "Fuzz", "fuzz@a0001.example", "data_ops")
    spare, _ = db.credentials.issue(Actor.user(user.id), me["org"], label="spare")  # the fuzzer may revoke it
    db.close()
    token, other_token = _token(base, me), _token(base, other)
    my_job, my_files = _finished_export(base, token)
    other_job, other_files = _finished_export(base, other_token)
    yield SimpleNamespace(
        origin=origin, base=base, token=token, admin_key=admin_key, basic=basic(me["client_id"], me["secret"]),
        ids={"job": [my_job, other_job], "file": [my_files[0], other_files[0]], "org": [me["org"], other["org"]],
             "cred": [spare.id, other["credential"]], "group": ["all", "runout"]},
        # What a success for the first organization must never contain.
        foreign=[other_job, other["client_id"], other["credential"], other["org"], *other_files],
    )
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture(scope="module")
def api_schema(world):
    doc = requests.get(f"{world.base}/openapi.json", timeout=30).json()
    # Path parameters: both organizations' real ids, or anything at all.
    for item in doc["paths"].values():
        for op in item.values():
            for p in op.get("parameters", []):
                if p["in"] == "path" and p["name"] in world.ids:
                    p["schema"] = {"anyOf": [{"enum": world.ids[p["name"]]}, {"type": "string", "minLength": 1}]}
    return schemathesis.openapi.from_dict(doc)


# One test per operation of the document (as the server builds it), valid and invalid data.
OPERATIONS = [(method.upper(), path) for path, item in openapi_document("/api/v2", "/admin")["paths"].items()
              for method in item]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_route(world, api_schema, method, path, mode):
    op = next(r.ok() for r in api_schema.get_all_operations()
              if r.ok().method.upper() == method and r.ok().path == path)

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def fuzz(case):
        check(world, case)

    try:
        fuzz()
    except Unsatisfiable:  # nothing in this operation can be made invalid (no parameter, no body)
        assert mode is GenerationMode.NEGATIVE
        pytest.skip("no parameter or body to make invalid")


def check(world, case) -> None:
    path = case.path
    if path.startswith("/admin"):
        auth = {"Authorization": f"Bearer {world.admin_key}"}
    elif path.endswith("/auth/token"):
        auth = world.basic  # the client's real credentials: the fuzzer varies the form
    else:
        auth = {"Authorization": f"Bearer {world.token}"}
    response = case.call(base_url=world.origin, headers=auth, timeout=30)
    status = response.status_code
    where = f"{case.method} {case.formatted_path} {case.query} -> {status}: {response.text[:300]}"
    assert status < 500, where
    ctype = (response.headers.get("content-type") or [""])[0]  # schemathesis: lower-case names, lists
    if status >= 400:
        body = response.json()
        if path.startswith("/admin") or path.endswith("/auth/token"):
            assert ctype.startswith("application/json") and set(body) >= {"error", "error_description"}, where
        else:
            assert ctype.startswith("application/fhir+json") and body["resourceType"] == "OperationOutcome", where
    elif status < 300 and not path.endswith("/openapi.json"):
        text = response.content.decode("utf-8", "replace") if "ndjson" not in ctype else ""
        leaked = [x for x in world.foreign if x in text]
        assert not leaked, f"{where}: another organization's {leaked}"
        if "ndjson" in ctype:  # a file of the other organization's job would carry its rows
            assert case.path_parameters.get("job") != world.ids["job"][1], where


def test_the_document_lists_every_route_and_nothing_else(tmp_path):
    app = create_app(config(tmp_path), access=ACCESS, population=TablePopulation(tables))
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    # Each flavour (BCDA v2, v3) is documented at its own base.
    documented = {(m.upper(), p) for base in ("/api/v2", "/api/v3")
                  for p, item in openapi_document(base, "/admin")["paths"].items() for m in item}
    assert served == documented
