"""BCDA v3 beside v2, over HTTP: one server, one store, `/api/v2` and `/api/v3`.

A real synthetic store (preset "models": one organization per model entity kind with
rules of its own, and the shared-system feed), registered by the demo's own code, served
by the real app and exporter on 127.0.0.1; resources are read back from the downloaded
NDJSON. As in the demo, the data runs through yesterday and the server keeps real time
(rosters are current, poll pacing is real, and a third-party client's SMART assertions
are dated as the server expects).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import threading
import time
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from fhirhose.access import AccessDB
from fhirhose.access.config import KINDS, MODEL_ENTITY_KINDS, kind_for_id
from fhirhose.fhir import c4bb
from fhirhose.server import ServerConfig, create_app
from fhirhose.server.demo import ensure_demo, sandbox_access_config
from fhirhose.store import Store

pytestmark = pytest.mark.slow

TODAY = dt.datetime.now(dt.UTC).date()
AS_OF = TODAY - dt.timedelta(days=1)
SYS = "https://bluebutton.cms.gov/fhir/CodeSystem/System-Type"
CNTL = "https://bluebutton.cms.gov/identifiers/CLM-CNTL-NUM"
EOB = "ExplanationOfBenefit"
SHARED = f"{EOB}?_tag={SYS}|SharedSystem"
ALL_SYSTEMS = f"{EOB}?_tag={SYS}|SharedSystem,{SYS}|NationalClaimsHistory,{SYS}|DDPS"


# -- one server for the module ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from fhirhose import synth

    data = tmp_path_factory.mktemp("bcdav3") / "data"
    synth.write(data / "store", preset="models", seed=5, as_of=AS_OF)
    db = AccessDB(data / "access.sqlite", sandbox_access_config(scrypt_n=2**12))
    clock = time.time
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start():
        cfg = ServerConfig(data_dir=str(data), workers=1, chunk_size=50, retry_after=1)
        runner = web.AppRunner(create_app(cfg, access=db, clock=clock))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    port = runner.addresses[0][1]
    origin = f"http://127.0.0.1:{port}"
    creds = ensure_demo(data, origin + "/api/v2", db, now=clock(), fhir_base_v3=origin + "/api/v3")
    env = SimpleNamespace(port=port, origin=origin, data=data, clients={c.organization: c for c in creds.clients},
                          creds=creds, tokens={})
    yield env
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    db.close()


def call(env, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def token(env, org: str, version: str) -> str:
    key = (org, version)
    if key not in env.tokens:
        c = env.clients[org]
        import base64

        basic = base64.b64encode(f"{c.client_id}:{c.client_secret}".encode()).decode()
        status, _, body = call(env, "POST", f"/api/{version}/auth/token", b"grant_type=client_credentials",
                               {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200, body
        env.tokens[key] = json.loads(body)["access_token"]
    return env.tokens[key]


def kickoff(env, org: str, version: str, **params: str):
    query = urllib.parse.urlencode(params)
    return call(env, "GET", f"/api/{version}/Group/all/$export?{query}", headers={
        "Authorization": f"Bearer {token(env, org, version)}", "Accept": "application/fhir+json",
        "Prefer": "respond-async"})


def export(env, org: str, version: str, **params: str) -> tuple[dict, list[dict]]:
    """Kick off, poll until done, download every file: (manifest, resources)."""
    status, headers, body = kickoff(env, org, version, **params)
    assert status == 202, body
    where = urllib.parse.urlsplit(headers["Content-Location"])
    assert where.path.startswith(f"/api/{version}/jobs/"), where  # the job answers at its flavour's base
    auth = {"Authorization": f"Bearer {token(env, org, version)}"}
    deadline = time.monotonic() + 300
    while True:
        status, headers, body = call(env, "GET", where.path, headers=auth)
        if status != 202:
            break
        assert time.monotonic() < deadline, "export still running"
        time.sleep(float(headers.get("Retry-After", 1)))
    assert status == 200, body
    manifest = json.loads(body)
    out = []
    for item in manifest["output"]:
        url = urllib.parse.urlsplit(item["url"])
        assert url.path.startswith(f"/api/{version}/data/")
        status, _, data = call(env, "GET", url.path, headers={**auth, "Accept-Encoding": "identity"})
        assert status == 200
        out += [json.loads(line) for line in data.splitlines()]
    return manifest, out


def system_type(r: dict) -> str:
    tags = [t["code"] for t in r["meta"].get("tag", []) if t["system"] == SYS]
    assert len(tags) == 1, r["id"]
    return tags[0]


def control_number(r: dict) -> str | None:
    return next((i["value"] for i in r["identifier"] if i.get("system") == CNTL), None)


def ids(resources, rtype: str = EOB) -> set[str]:
    return {r["id"] for r in resources if r["resourceType"] == rtype}


@pytest.fixture(scope="module")
def ssp(server):
    """The SSP's claims at v3, once per System-Type selection (shared by several tests)."""
    return SimpleNamespace(
        default=export(server, "A0101", "v3", _type=EOB)[1],
        shared=export(server, "A0101", "v3", _type=EOB, _typeFilter=SHARED)[1],
        everything=export(server, "A0101", "v3", _typeFilter=ALL_SYSTEMS),
    )


# -- discovery and the two flavours -------------------------------------------------------------


def test_metadata_lists_each_flavours_typefilter_parameters(server):
    for version, expected in (("v2", {"service-date", "_tag"}), ("v3", {"service-date", "_tag", "outcome"})):
        status, _, body = call(server, "GET", f"/api/{version}/metadata")
        assert status == 200
        doc = json.loads(body)
        assert doc["implementation"]["url"] == f"{server.origin}/api/{version}"
        eob = next(r for r in doc["rest"][0]["resource"] if r["type"] == EOB)
        assert {p["name"] for p in eob["searchParam"]} == expected
        status, _, body = call(server, "GET", f"/api/{version}/.well-known/smart-configuration")
        assert json.loads(body)["token_endpoint"] == f"{server.origin}/api/{version}/auth/token"


def test_v2_refuses_the_v3_filters_naming_the_parameter(server):
    for query in (SHARED, f"{EOB}?outcome=partial"):
        status, _, body = kickoff(server, "A0101", "v2", _typeFilter=query)
        assert status == 400, body
        issue = json.loads(body)["issue"][0]
        assert issue["expression"] == ["_typeFilter"]
        assert "v3" in issue["details"]["text"]


@pytest.mark.parametrize("query, message", [
    (f"{EOB}?outcome=pending", "outcome 'pending' is not one of complete, partial"),
    (f"{EOB}?_tag={SYS}|Medicaid", "_tag"),
    (f"{EOB}?status=active", "search parameter 'status' is not supported"),
    (f"Patient?_tag={SYS}|DDPS", "only ExplanationOfBenefit"),
])
def test_v3_refuses_bad_filters(server, query, message):
    status, _, body = kickoff(server, "A0101", "v3", _typeFilter=query)
    assert status == 400, body
    assert message in json.loads(body)["issue"][0]["details"]["text"]


def test_v3_without_a_system_type_filter_exports_nch_and_ddps_like_v2(server, ssp):
    assert ssp.default and {system_type(r) for r in ssp.default} == {"NationalClaimsHistory", "DDPS"}
    _, v2 = export(server, "A0101", "v2", _type=EOB)
    assert ids(v2) == ids(ssp.default)
    # v2 keeps today's behaviour: no shared-system claims, whatever the filter.
    _, v2_final = export(server, "A0101", "v2", _type=EOB,
                         _typeFilter=f"{EOB}?_tag=https://bluebutton.cms.gov/fhir/CodeSystem/Final-Action|FinalAction")
    assert {system_type(r) for r in v2_final} <= {"NationalClaimsHistory", "DDPS"}


def test_tag_selects_system_types_and_a_comma_ors_them(server, ssp):
    assert ssp.shared and {system_type(r) for r in ssp.shared} == {"SharedSystem"}
    manifest, everything = ssp.everything
    assert {r["resourceType"] for r in everything} == {"Patient", "Coverage", EOB}  # other types unfiltered
    assert ids(everything) == ids(ssp.default) | ids(ssp.shared)
    assert not ids(ssp.default) & ids(ssp.shared)
    assert {r["outcome"] for r in ssp.shared} == {"partial", "complete"}
    assert any("shared-system (partially adjudicated) claims: on request" in rule
               for rule in manifest["extension"]["urn:fhirhose:access-rules"])


def test_outcome_filter(server, ssp):
    _, partial = export(server, "A0101", "v3", _type=EOB, _typeFilter=f"{SHARED}&outcome=partial")
    assert ids(partial) == {r["id"] for r in ssp.shared if r["outcome"] == "partial"} != set()
    # NCH and Part D claims are fully adjudicated: outcome=complete alone is the default set.
    _, complete = export(server, "A0101", "v3", _type=EOB, _typeFilter=f"{EOB}?outcome=complete")
    assert ids(complete) == ids(ssp.default)


def test_service_date_filter_and_several_filters_or(server, ssp):
    since = (AS_OF - dt.timedelta(days=30)).isoformat()
    _, recent = export(server, "A0101", "v3", _type=EOB, _typeFilter=f"{SHARED}&service-date=ge{since}")
    expected = {r["id"] for r in ssp.shared if (r["billablePeriod"].get("end") or r["billablePeriod"]["start"]) >= since}
    assert ids(recent) == expected != set()
    # Two queries in one parameter, as the IG (and smart-fetch) sends them: OR-ed.
    both = f"{SHARED}&outcome=partial,{EOB}?_tag={SYS}|DDPS"
    _, got = export(server, "A0101", "v3", _type=EOB, _typeFilter=both)
    assert ids(got) == ({r["id"] for r in ssp.shared if r["outcome"] == "partial"}
                        | {r["id"] for r in ssp.default if system_type(r) == "DDPS"})


def test_shared_system_claims_match_their_nch_version_by_control_number(ssp):
    nch = {control_number(r) for r in ssp.default if system_type(r) == "NationalClaimsHistory"}
    complete = [r for r in ssp.shared if r["outcome"] == "complete"]
    partial = [r for r in ssp.shared if r["outcome"] == "partial"]
    assert all(control_number(r) for r in ssp.shared)
    # Adjudicated shared-system claims reappear in NCH under the same number; in-process ones not yet.
    assert {control_number(r) for r in complete} <= nch
    assert not {control_number(r) for r in partial} & nch
    related = [r for r in ssp.shared if r.get("related")]
    assert related, "some claims were given a new control number"
    for r in related:
        (rel,) = r["related"]
        assert rel["relationship"]["coding"][0]["code"] == "prior"
        assert rel["reference"]["system"] == CNTL and rel["reference"]["value"] != control_number(r)


# -- model entities -----------------------------------------------------------------------------


def test_guide_gets_no_shared_system_claims(server):
    manifest, got = export(server, "GUIDE-00101", "v3", _type=EOB, _typeFilter=ALL_SYSTEMS)
    assert got and {system_type(r) for r in got} <= {"NationalClaimsHistory", "DDPS"}
    assert any("not available to GUIDE" in rule for rule in manifest["extension"]["urn:fhirhose:access-rules"])
    _, shared = export(server, "D0101", "v3", _type=EOB, _typeFilter=SHARED)
    assert shared, "REACH gets them"


def test_lookback_applies_to_shared_system_claims(server):
    """CKCC: claims serviced from the performance year's start 2 years back, shared-system ones too."""
    start = dt.date(TODAY.year - 2, 1, 1)
    with Store.open(server.data / "store") as snap:
        t = snap.tables
        roster = t["roster"]
        benes = {int(b) for o, k, b in zip(roster["org_id"].to_list(), roster["roster_kind"].to_list(),
                                           roster["bene_row"].values, strict=True) if o == "C0101" and k == "Y"}
        off = t["bene"].links["mcs"]
        thru = t["mcs"]["clm_thru_dt"].values
        older = sum(int((thru[off[b]:off[b + 1]] < (start - dt.date(1970, 1, 1)).days).sum()) for b in benes)
    assert older, "the store holds older shared-system claims of C0101: the rule has something to cut"
    _, got = export(server, "C0101", "v3", _type=EOB, _typeFilter=SHARED)
    assert got and all(r["billablePeriod"]["end"] >= start.isoformat() for r in got)


def test_model_entity_table():
    assert {k: kind_for_id(i) for k, i in (("ssp", "A1234"), ("reach", "D1234"), ("kcc", "C1234"),
                                           ("kcf", "K1234"), ("guide", "GUIDE-12345"))} == {
        k: k for k in ("ssp", "reach", "kcc", "kcf", "guide")}
    assert kind_for_id("S1234") is None  # a Part D contract, not a model entity
    assert {k for k in MODEL_ENTITY_KINDS if not KINDS[k].shared_system} == {"guide"}
    assert (KINDS["ssp"].lookback_years, KINDS["reach"].lookback_years, KINDS["kcc"].lookback_years) == (None, 3, 2)


def test_admin_refuses_an_id_of_another_model(server):
    key = (server.data / "operator.key").read_text().strip()
    body = json.dumps({"id": "A0999", "kind": "reach", "name": "Mislabelled"}).encode()
    status, _, out = call(server, "POST", "/admin/orgs", body,
                          {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert status == 400, out
    assert json.loads(out)["error_description"] == r"organization id 'A0999': a ACO REACH id matches D\d{4}"
    body = json.dumps({"id": "D0999", "kind": "reach", "name": "REACH two"}).encode()
    status, _, out = call(server, "POST", "/admin/orgs", body,
                          {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert status == 201, out


def test_demo_credentials_name_models_and_both_bases(server):
    assert server.creds.fhir_base_v3 == server.origin + "/api/v3"
    assert {c.organization: c.model for c in server.creds.clients} == {
        "A0101": "ssp", "D0101": "reach", "C0101": "kcc", "GUIDE-00101": "guide", "S0101": "sponsor"}


# -- conformance and a third-party client -------------------------------------------------------


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_c4bb_checker_finds_nothing_in_a_full_export(server, ssp, version):
    resources = ssp.everything[1] if version == "v3" else export(server, "A0101", "v2")[1]
    assert {r["resourceType"] for r in resources} == {"Patient", "Coverage", EOB}
    findings = [p for r in resources for p in c4bb.check(r)]
    assert findings == [], findings[:10]


def test_smart_fetch_exports_shared_system_claims_from_v3(server, ssp, tmp_path):
    """smart-fetch (PyPI) runs a Group export against /api/v3 with `_typeFilter` `_tag`,
    authenticating with SMART Backend Services (the sandbox's ES384 key), and gets exactly
    the shared-system claims. Its CLI offers only clinical resource types, so the test
    drives its bulk exporter, the code behind `smart-fetch export`, directly."""
    cfs = pytest.importorskip("cumulus_fhir_support")
    bulk_utils = pytest.importorskip("smart_fetch.bulk_utils")
    lifecycle = pytest.importorskip("smart_fetch.lifecycle")
    c = server.clients["A0101"]
    out = tmp_path / "out"
    out.mkdir()

    async def fetch():
        async with cfs.FhirClient(f"{server.origin}/api/v3", [EOB], smart_client_id=c.client_id,
                                  smart_jwks={"keys": [c.jwk]}) as client:
            exporter = bulk_utils.BulkExporter(
                client, {EOB}, f"{server.origin}/api/v3/Group/all", str(out),
                type_filter={EOB: {f"_tag={SYS}|SharedSystem"}}, metadata=lifecycle.OutputMetadata(str(out)),
            )
            await exporter.export()
            return exporter.export_url

    url = asyncio.run(fetch())
    assert "_typeFilter=" in url and "SharedSystem" in urllib.parse.unquote(url)
    got = [json.loads(line) for f in sorted(out.glob(f"{EOB}*.ndjson*"))
           for line in _read_maybe_gzip(f).splitlines() if line.strip()]
    assert got and {system_type(r) for r in got} == {"SharedSystem"}
    assert ids(got) == ids(ssp.shared)


def _read_maybe_gzip(path: Path) -> str:
    import gzip

    data = path.read_bytes()
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode()
