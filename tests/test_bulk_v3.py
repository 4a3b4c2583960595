"""Bulk Data IG v3 server features over real HTTP, a real store and the real exporter:
`deleted` with `_since`, `organizeOutputBy=Patient`, `Prefer: handling=lenient` and
`Prefer: separate-export-status`."""

import asyncio
import contextlib
import datetime as dt
import gzip
import json
import time
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web

from fhirhose.columns import Time
from fhirhose.fhir.validate import validate_r4
from fhirhose.server import ServerConfig, create_app
from fhirhose.store import Store
from fhirhose.store.schema import column_for, complete
from fhirhose.store.versions import superseded_between

from .support.server import (
    ACCESS,
    STORE_ORGS,
    Clock,
    Harness,
    async_test,
    build_store,
    clients_of,
    register_store_clients,
    running,
    today,
)

CLIENT = "client-A0001"
SINCE = "2025-02-01T00:00:00Z"
GEN2 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)  # the second load (build_store loads 2025-01-02)


def sandbox(data: Path) -> None:
    data.mkdir(parents=True)
    build_store(data / "store")
    register_store_clients(data)


@contextlib.asynccontextmanager
async def store_server(data: Path, **kw):
    clock = Clock()
    cfg = ServerConfig(data_dir=str(data), workers=1, chunk_size=5, retry_after=3,
                       exporter="tests.support.server:store_test_exporter", **kw)
    runner = web.AppRunner(create_app(cfg, access=ACCESS, clock=clock))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with aiohttp.ClientSession() as s:
            yield Harness(f"http://127.0.0.1:{runner.addresses[0][1]}/api/v2", s, clock, None, clients_of(data))
    finally:
        await runner.cleanup()


async def export(h: Harness, path: str = "/Patient/$export", **params) -> dict:
    r = await h.kickoff(CLIENT, path, params=params or None)
    assert r.status == 202, await r.text()
    r = await h.wait(CLIENT, r.headers["Content-Location"])
    assert r.status == 200, await r.text()
    return await r.json()


async def lines_of(h: Harness, item: dict) -> list[dict]:
    r = await h.fetch(CLIENT, item["url"], **{"Accept-Encoding": "gzip"})
    assert r.status == 200
    lines = [json.loads(x) for x in gzip.decompress(await r.read()).splitlines()]
    assert len(lines) == item["count"]
    return lines


def patient_of(res: dict) -> str:
    """The Patient a resource belongs to (itself, Coverage.beneficiary, EOB.patient)."""
    if res["resourceType"] == "Patient":
        return res["id"]
    ref = res["beneficiary"] if res["resourceType"] == "Coverage" else res["patient"]
    return ref["reference"].removeprefix("Patient/")


def mbi(i: int) -> str:
    """The MBI `build_store` gives its i-th beneficiary (claims `cn{i}-k`, ids `1000 + 10 i + k`)."""
    return f"{i + 1}EG4TE5MK{i:02d}"


def second_generation(store: Path) -> None:
    """Load 2 (GEN2): a cancel of beneficiary 0's second claim, a replacement of 1's, a
    late older version of 3's (sorts before the current one: changes nothing), 2's opt-out
    and 11 dropped from the ACO's roster."""
    c = column_for
    versions = [  # (beneficiary, new uid, control number, effective date, adjustment type)
        (0, "9001", "cn0-1", dt.date(2025, 2, 20), "1"),
        (1, "9011", "cn1-1", dt.date(2025, 2, 20), "2"),
        (3, "9031", "cn3-1", dt.date(2023, 1, 1), "2"),
    ]
    n = len(versions)
    partb = complete("partb", {
        "bene_mbi_id": c("str", [mbi(b) for b, *_ in versions]),
        "cur_clm_uniq_id": c("str", [u for _, u, *_ in versions]),
        "clm_cntl_num": c("str", [cn for _, _, cn, *_ in versions]),
        "clm_from_dt": c("date", [dt.date(2024, 4, 5)] * n), "clm_thru_dt": c("date", [dt.date(2024, 4, 6)] * n),
        "clm_efctv_dt": c("date", [e for *_, e, _ in versions]),
        "clm_adjsmt_type_cd": c("cat", [a for *_, a in versions]), "clm_type_cd": c("cat", ["71"] * n),
    }, n)
    optout = complete("optout", {"bene_mbi_id": c("str", [mbi(2)]), "pref_ind": c("cat", ["N"]),
                                 "effective_dt": c("date", [dt.date(2025, 2, 15)]),
                                 "source_file": c("str", ["P.A0001.PREF"])}, 1)
    # Rosters: last performance year's (delivered before SINCE) had beneficiaries 0-11;
    # this year's is delivered again without 11 (it replaces the stored one).
    year, aco = today().year, STORE_ORGS[0][2]
    kept = [mbi(i) for i in range(aco)] + [mbi(i) for i in range(aco - 1)]
    roster = complete("roster", {
        "org_id": c("str", ["A0001"] * len(kept)), "bene_mbi_id": c("str", kept),
        "roster_kind": c("cat", ["Y"] * len(kept)),
        "performance_year": c("int", [year - 1] * aco + [year] * (aco - 1)),
        "file_date": c("date", [dt.date(2025, 1, 15)] * aco + [today() - dt.timedelta(days=1)] * (aco - 1)),
    }, len(kept))
    Store(store).load({"partb": partb, "optout": optout, "roster": roster}, "gen2", now=GEN2)


async def deleted_urls(h: Harness, manifest: dict) -> list[set[str]]:
    """The DELETE urls of each Bundle line of the manifest's deleted files (checked as IG v3 asks)."""
    out = []
    for item in manifest.get("deleted", []):
        assert item["type"] == "Bundle"
        for bundle in await lines_of(h, item):
            validate_r4(bundle)
            assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
            assert {e["request"]["method"] for e in bundle["entry"]} == {"DELETE"}
            out.append({e["request"]["url"] for e in bundle["entry"]})
    return out


@async_test
async def test_deleted_lists_exactly_the_cancelled_replaced_opted_out_and_unrostered(tmp_path):
    data = tmp_path / "d"
    sandbox(data)
    with Store.open(data / "store") as snap:
        mbis = snap.tables["bene"]["bene_mbi_id"].to_list()
        ids = snap.tables["bene"]["bene_id"].to_list()
    pid = {i: ids[mbis.index(mbi(i))] for i in (0, 1, 2, 3, 11)}  # Patient id of build_store's i-th beneficiary
    async with store_server(data) as h:
        before = await export(h)  # generation 1, no _since: everything, nothing deleted
        assert await deleted_urls(h, before) == []
        held: dict[str, set[str]] = {}  # Patient id -> "Type/id" the client holds after it
        for item in before["output"]:
            for res in await lines_of(h, item):
                held.setdefault(patient_of(res), set()).add(f"{res['resourceType']}/{res['id']}")

        second_generation(data / "store")
        want = {
            pid[0]: {"ExplanationOfBenefit/carrier-1001"},  # cancelled by 9001
            pid[1]: {"ExplanationOfBenefit/carrier-1011"},  # replaced by 9011
            pid[2]: held[pid[2]],  # opted out: everything the client got for them
            pid[11]: held[pid[11]],  # off the roster: likewise
        }
        for path in ("/Patient/$export", "/Group/all/$export"):
            after = await export(h, path, _since=SINCE)
            deleted: dict[str, set[str]] = {}
            for urls in await deleted_urls(h, after):
                (owner,) = {p for p, got in held.items() if urls & got}  # one Bundle per beneficiary
                assert urls <= held[owner] and owner not in deleted
                deleted[owner] = urls
            assert deleted == want, path
            output = {f"{r['resourceType']}/{r['id']}" for item in after["output"] for r in await lines_of(h, item)}
            # The new versions are output (the cancel too: it is the claim's final state); the
            # late older version of beneficiary 3's claim is output but deletes nothing.
            assert output == {"ExplanationOfBenefit/carrier-9001", "ExplanationOfBenefit/carrier-9011",
                              "ExplanationOfBenefit/carrier-9031"}, path
            assert not output & set().union(*deleted.values())
            assert any("deleted: 2 beneficiaries" in rule for rule in after["extension"]["urn:fhirhose:access-rules"])

        # _until before the second load: no claim was superseded by then. The opt-out and the
        # roster are in effect today, so those beneficiaries are out of every export and listed.
        until = await export(h, _since=SINCE, _until="2025-02-10T00:00:00Z")
        assert sorted(map(sorted, await deleted_urls(h, until))) == sorted(map(sorted, [held[pid[2]], held[pid[11]]]))
        # No _since: nothing is deleted, and the opted-out beneficiary is simply absent.
        full = await export(h)
        assert await deleted_urls(h, full) == []
        assert not {pid[2], pid[11]} & {patient_of(r) for item in full["output"] for r in await lines_of(h, item)}


@async_test
async def test_organize_output_by_patient_writes_blocks(tmp_path):
    data = tmp_path / "d"
    sandbox(data)
    async with store_server(data) as h:
        plain = await export(h, path="/Group/all/$export")
        want = {f"{r['resourceType']}/{r['id']}" for item in plain["output"] for r in await lines_of(h, item)}
        r = await h.kickoff(CLIENT, "/Group/all/$export", params={"organizeOutputBy": "Patient"})
        assert r.status == 202, await r.text()
        manifest = await (await h.wait(CLIENT, r.headers["Content-Location"])).json()
        assert manifest["outputOrganizedBy"] == "Patient"
        assert manifest["output"] and all("type" not in o for o in manifest["output"])
        got, heads = set(), []
        for item in manifest["output"]:
            lines = await lines_of(h, item)
            assert lines[0]["resourceType"] == "Parameters"  # every file starts with a block
            current = None
            for res in lines:
                validate_r4(res)
                if res["resourceType"] == "Parameters":
                    (p,) = res["parameter"]
                    assert p["name"] == "header"
                    current = p["valueReference"]["reference"].removeprefix("Patient/")
                    heads.append(current)
                    expect_patient = True
                    continue
                if expect_patient:  # the Patient named in the header comes right after it
                    assert res["resourceType"] == "Patient" and res["id"] == current
                    expect_patient = False
                assert patient_of(res) == current
                got.add(f"{res['resourceType']}/{res['id']}")
        assert got == want  # the same resources as the per-type export
        assert len(heads) == len(set(heads)) == STORE_ORGS[0][2]  # one block per beneficiary, never split


@async_test
async def test_lenient_drops_an_unsupported_organize_output_by(tmp_path):
    async with running(tmp_path / "d") as h:
        params = {"organizeOutputBy": "Encounter"}
        r = await h.kickoff("small-aco", params=params)
        assert r.status == 400 and "organizeOutputBy" in await r.text()
        r = await h.kickoff("small-aco", params=params, prefer="respond-async, handling=lenient")
        assert r.status == 202 and r.headers["Preference-Applied"] == "respond-async, handling=lenient"
        manifest = await (await h.wait("small-aco", r.headers["Content-Location"])).json()
        assert "outputOrganizedBy" not in manifest and all("type" in o for o in manifest["output"])
        (err,) = manifest["error"]
        (oo,) = [json.loads(x) for x in (await (await h.fetch("small-aco", err["url"], **{
            "Accept-Encoding": "identity"})).read()).splitlines()]
        assert oo["issue"][0]["expression"] == ["organizeOutputBy"] and "Encounter" in oo["issue"][0]["details"]["text"]


async def _poll(h: Harness, client: str, url: str, *, until: str, deadline: float = 60.0) -> aiohttp.ClientResponse:
    end = time.monotonic() + deadline
    while True:
        h.clock.advance(3)
        r = await h.session.get(url, headers=await h.headers(client, Accept="application/json"))
        await r.read()
        assert r.status == 200, (r.status, await r.text())  # the status request itself succeeded
        if r.headers["X-Export-Status"] == until:
            return r
        assert time.monotonic() < end, f"X-Export-Status never became {until}"
        await asyncio.sleep(0.05)


@async_test
async def test_separate_export_status(tmp_path):
    data = tmp_path / "d"
    prefer = "respond-async, separate-export-status"
    async with running(data) as h:
        (data / "hold").write_text("0")  # the fixture exporter holds at chunk 0: the job stays in progress
        r = await h.kickoff("small-aco", prefer=prefer)
        assert r.status == 202
        assert r.headers["Preference-Applied"] == "respond-async, separate-export-status"
        url = r.headers["Content-Location"]
        r = await _poll(h, "small-aco", url, until="202 Accepted")
        assert "X-Progress" in r.headers and "Retry-After" in r.headers
        (data / "hold").unlink()
        r = await _poll(h, "small-aco", url, until="200 OK")
        assert (await r.json())["output"]
        # Without the preference, the status code is the job's (unchanged v2 behaviour).
        r = await h.kickoff("big-aco")
        assert "separate-export-status" not in r.headers["Preference-Applied"]
        r = await h.wait("big-aco", r.headers["Content-Location"])
        assert r.status == 200 and "X-Export-Status" not in r.headers
    async with running(tmp_path / "f", exporter="tests.support.server:failing_exporter") as h:
        r = await h.kickoff("small-aco", prefer=prefer)
        r = await _poll(h, "small-aco", r.headers["Content-Location"], until="500 Internal Server Error")
        assert (await r.json(content_type=None))["resourceType"] == "OperationOutcome"


def test_superseded_between_follows_version_order_and_load_time():
    """Versions of one claim are adjacent, in version order; each carries its load time."""
    c = column_for
    # claim A: a (t=1) then b (t=5, replaces a); claim B: c (t=1) then d (t=5) that sorts
    # BEFORE c (a late older version: c stays current); claim C: e (t=1), f (t=9).
    grp = ["A", "A", "B", "B", "C", "C"]
    order = ["a", "b", "d", "c", "e", "f"]
    lu = [1, 5, 5, 1, 1, 9]
    t = complete("partb", {"clm_grp_id": c("str", grp), "cur_clm_uniq_id": c("str", order),
                           "last_updated": Time(np.array(lu, np.int64))}, 6)
    rows = np.arange(6)
    got = superseded_between(t, rows, since_ms=3, until_ms=None, stop=6)
    assert [u for u, s in zip(order, got.tolist(), strict=True) if s] == ["a", "e"]  # b replaced a; f replaced e
    got = superseded_between(t, rows, since_ms=3, until_ms=8, stop=6)
    assert [u for u, s in zip(order, got.tolist(), strict=True) if s] == ["a"]  # f came after the cut-off
    assert not superseded_between(t, rows, since_ms=0, until_ms=None, stop=6).any()  # nothing held before


@async_test
async def test_capability_statement_lists_exactly_the_v3_features_honoured(tmp_path):
    from fhirhose.server.capability import ORGANIZE_BY_EXT, PREFER_EXT
    from fhirhose.server.params import parse_query

    now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    async with running(tmp_path / "d") as h:
        cap = await (await h.session.get(f"{h.base}/metadata")).json(content_type=None)
        validate_r4(cap)
        assert cap["instantiates"] == ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data|3.0.0"]
        for op in cap["rest"][0]["operation"]:
            ext = op["extension"]
            prefer = [e["valueCode"] for e in ext if e["url"] == PREFER_EXT]
            organize = [e["valueCode"] for e in ext if e["url"] == ORGANIZE_BY_EXT]
            assert prefer == ["respond-async", "handling=lenient", "separate-export-status"]
            assert organize == ["Patient"]
            for t in organize:  # accepted strictly...
                assert parse_query([("organizeOutputBy", t)], now, kind="group", lenient=False).organize_by == t
        # ...and every listed preference is applied by a kick-off (and echoed).
        r = await h.kickoff("small-aco", prefer=", ".join(prefer + ["wait=10"]))
        assert r.status == 202 and r.headers["Preference-Applied"].split(", ") == prefer


def _decoded(out_dir: Path, infos) -> bytes:
    return b"".join(gzip.decompress((out_dir / f.name).read_bytes()) for f in infos)


def test_blocks_and_deletions_are_the_same_bytes_on_both_backends(tmp_path):
    """The library functions behind the server: the compiled core and its twin agree."""
    from fhirhose.export.deleted import export_deleted
    from fhirhose.export.exporter import Exporter, ExportSpec
    from fhirhose.export.organized import export_organized
    from fhirhose.fhir.registry import SOURCES

    from .support.backends import BACKENDS

    build_store(tmp_path / "store")
    second_generation(tmp_path / "store")
    since = int(dt.datetime(2025, 2, 1, tzinfo=dt.UTC).timestamp() * 1000)
    spec = ExportSpec(types=("Patient", "Coverage", "ExplanationOfBenefit"))
    written = []
    with Store.open(tmp_path / "store") as snap:
        rows = np.arange(snap.tables["bene"].n, dtype=np.int64)
        for core in BACKENDS:
            ex = Exporter(snap.tables, SOURCES, core)
            out = tmp_path / core.__name__
            (out / "o").mkdir(parents=True)
            (out / "x").mkdir()
            blocks = _decoded(out / "o", export_organized(ex, rows, spec, out / "o"))
            dels = _decoded(out / "x", export_deleted(ex, rows, np.zeros(0, np.int64), spec, since, None, out / "x"))
            heads = [x for x in blocks.splitlines() if x.startswith(b'{"resourceType":"Parameters"')]
            assert len(heads) == len(rows)
            urls = sorted(e["request"]["url"] for x in dels.splitlines() for e in json.loads(x)["entry"])
            assert urls == ["ExplanationOfBenefit/carrier-1001", "ExplanationOfBenefit/carrier-1011"]
            written.append((blocks, dels))
    assert all(w == written[0] for w in written)
