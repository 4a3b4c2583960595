"""The Bulk Data server over real HTTP on 127.0.0.1: kick-off → poll → download, and every error path."""

import asyncio
import gzip
import hashlib
import json
import time

import aiohttp
import pytest
import zstandard

from fhirhose.export.manifest import STORED_EXT
from fhirhose.fhir.validate import validate_r4
from fhirhose.server.app import API
from fhirhose.server.files import sf_value
from fhirhose.server.models import EXT_LENGTH, EXT_SHA256

from .support.server import async_test, basic, clients_of, group_rows, running

# Every test here runs on SQLite and on PostgreSQL (see conftest `server_engine`).
pytestmark = pytest.mark.usefixtures("server_engine")


def outcome_text(body: dict) -> str:
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["details"]["text"]


async def expect_outcome(r: aiohttp.ClientResponse, status: int, *, expression: str | None = None) -> str:
    assert r.status == status, await r.text()
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    body = json.loads(await r.read())
    if expression is not None:
        assert body["issue"][0]["expression"] == [expression]
    return outcome_text(body)


def decoded(r_body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(r_body)
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(r_body)
    return r_body


async def hold_until_started(data, job_id: str, seq: int, *, deadline: float = 60.0) -> None:
    """Wait (bounded) until the exporter logged the start of chunk `seq` of `job_id`."""
    end = time.monotonic() + deadline
    while f"{job_id} {seq}" not in _log(data):
        assert time.monotonic() < end, f"chunk {seq} of {job_id} never started"
        await asyncio.sleep(0.02)


def _log(data) -> list[str]:
    try:
        return (data / "exports.log").read_text().splitlines()
    except FileNotFoundError:
        return []


def job_id_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


@async_test
async def test_discovery_auth_and_kickoff_errors(tmp_path):
    async with running(tmp_path / "d") as h:
        s, base = h.session, h.base
        r = await s.get(f"{base}/metadata")
        cap = await r.json(content_type=None)
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/fhir+json")
        assert cap["fhirVersion"] == "4.0.1"
        assert cap["instantiates"] == ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data|3.0.0"]
        ops = {o["name"]: o["definition"] for o in cap["rest"][0]["operation"]}
        assert ops["group-export"] == "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
        assert set(ops) == {"export", "patient-export", "group-export"}

        r = await s.get(f"{base}/.well-known/smart-configuration")
        smart = await r.json()
        assert smart["token_endpoint"] == f"{base}/auth/token"
        assert "private_key_jwt" in smart["token_endpoint_auth_methods_supported"]
        assert {"RS384", "ES384"} <= set(smart["token_endpoint_auth_signing_alg_values_supported"])
        assert "client-confidential-asymmetric" in smart["capabilities"]
        assert smart["grant_types_supported"] == ["client_credentials"]

        tok = f"{base}/auth/token"
        r = await s.post(tok, data={"grant_type": "password"}, headers=h.basic("small-aco", "x"))
        assert r.status == 400 and (await r.json())["error"] == "unsupported_grant_type"
        r = await s.post(tok, data={"grant_type": "client_credentials"}, headers=h.basic("small-aco", "x"))
        assert r.status == 401 and (await r.json())["error"] == "invalid_client"
        assert r.headers["WWW-Authenticate"].startswith("Basic")
        r = await s.post(tok, data={"grant_type": "client_credentials"})
        assert r.status == 401
        r = await s.post(tok, data={"grant_type": "client_credentials", "scope": "system/*.write"},
                         headers=h.basic("small-aco"))
        assert r.status == 400 and (await r.json())["error"] == "invalid_scope"

        hdr = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
        r = await s.get(f"{base}/Group/all/$export", headers=hdr)
        await expect_outcome(r, 401)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = await s.get(f"{base}/Group/all/$export", headers={**hdr, "Authorization": "Bearer abc.def.ghi"})
        await expect_outcome(r, 401)

        await expect_outcome(await h.kickoff("small-aco", "/Group/nobody/$export"), 404, expression="group")
        await expect_outcome(await h.kickoff("small-aco", "/$export"), 403)
        await expect_outcome(await h.kickoff("narrow", params={"_type": "Coverage"}), 403)
        await expect_outcome(await h.kickoff("small-aco", prefer="handling=strict"), 400, expression="Prefer")
        await expect_outcome(await h.kickoff("small-aco", params={"_since": "2999-01-01T00:00:00Z"}), 400,
                             expression="_since")
        await expect_outcome(await h.kickoff("small-aco", params={"_type": "Observation"}), 400, expression="_type")
        await expect_outcome(await h.kickoff("small-aco", params={"_outputFormat": "csv"}), 400,
                             expression="_outputFormat")
        text = await expect_outcome(
            await h.kickoff("small-aco", json_body={"resourceType": "Parameters", "parameter": [{"name": 1}]}),
            400, expression="$.parameter[0].name")
        assert "Expected `str`" in text
        r = await s.get(f"{base}/Group/all/$export",
                        headers={**hdr, "Accept": "text/html", **await h.headers("small-aco")})
        await expect_outcome(r, 400, expression="Accept")

        h2 = await h.headers("small-aco")
        await expect_outcome(await s.get(f"{base}/jobs/0123456789abcdef", headers=h2), 404)
        await expect_outcome(await s.get(f"{base}/data/0123456789abcdef/x.ndjson", headers=h2), 404)
        await expect_outcome(await s.delete(f"{base}/jobs/0123456789abcdef", headers=h2), 404)
        await expect_outcome(await s.get(f"{base}/nowhere", headers=h2), 404)


@async_test
async def test_export_flow_every_line_valid(tmp_path):
    async with running(tmp_path / "d") as h:
        r = await h.kickoff("small-aco", params=[("_type", "Patient,Coverage"), ("_type", "ExplanationOfBenefit")])
        assert r.status == 202, await r.text()
        status_url = r.headers["Content-Location"]
        assert status_url.startswith(h.base + "/jobs/")
        r = await h.wait("small-aco", status_url)
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
        assert "Expires" in r.headers
        manifest = await r.json()
        assert manifest["requiresAccessToken"] is True and manifest["error"] == []
        assert manifest["request"].endswith("/Group/all/$export?_type=Patient,Coverage&_type=ExplanationOfBenefit")
        rows = group_rows("A0001")
        for rtype in ("Patient", "Coverage", "ExplanationOfBenefit"):
            items = [o for o in manifest["output"] if o["type"] == rtype]
            assert len(items) == 1 + (len(rows) - 1) // 40  # the exporter rolls over every 40 lines
            assert sum(o["count"] for o in items) == len(rows)
            seen = []
            for o in items:
                r = await h.fetch("small-aco", o["url"], **{"Accept-Encoding": "gzip"})
                assert r.status == 200 and r.headers["Content-Type"] == "application/fhir+ndjson"
                assert r.headers["Content-Encoding"] == "gzip"
                raw = await r.read()
                ndjson = gzip.decompress(raw)
                # The digest covers the bytes as stored and sent; BCDA's NDJSON checksum is off by default.
                stored = o["extension"][STORED_EXT]
                assert stored == {"contentEncoding": "gzip", "sha256": hashlib.sha256(raw).hexdigest(),
                                  "length": len(raw), "ndjsonLength": len(ndjson)}
                assert r.headers["Repr-Digest"] == sf_value(stored["sha256"]) == r.headers["Content-Digest"]
                assert EXT_SHA256 not in o["extension"] and EXT_LENGTH not in o["extension"]
                lines = ndjson.splitlines()
                assert len(lines) == o["count"]
                for line in lines:
                    res = json.loads(line)
                    assert res["resourceType"] == rtype
                    validate_r4(res)
                    seen.append(res["id"])
            prefix = {"Patient": "b", "Coverage": "part-d-b", "ExplanationOfBenefit": "carrier-"}[rtype]
            assert sorted(seen) == sorted(f"{prefix}{i}" for i in rows)  # every member once

        r = await h.session.get(f"{h.base}/jobs", headers=await h.headers("small-aco"))
        listed = (await r.json())["jobs"]
        assert [j["url"] for j in listed] == [status_url] and listed[0]["status"] == "done"
        r = await h.session.get(f"{h.base}/jobs", headers=await h.headers("big-aco"))
        assert (await r.json())["jobs"] == []
        # Another organization cannot poll or download it.
        await expect_outcome(await h.session.get(status_url, headers=await h.headers("big-aco")), 403)
        await expect_outcome(await h.fetch("big-aco", manifest["output"][0]["url"]), 403)

        # POST with patient: only those members; one outside the group is a 400 naming `patient`.
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Patient"},
            {"name": "patient", "valueReference": {"reference": f"Patient/b{rows[2]}"}},
            {"name": "patient", "valueReference": {"reference": f"Patient/b{rows[5]}"}},
        ]}
        r = await h.kickoff("small-aco", json_body=body)
        assert r.status == 202, await r.text()
        manifest = await (await h.wait("small-aco", r.headers["Content-Location"])).json()
        assert [(o["type"], o["count"]) for o in manifest["output"]] == [("Patient", 2)]
        body["parameter"].append({"name": "patient", "valueReference": {"reference": "Patient/b999"}})
        await expect_outcome(await h.kickoff("small-aco", json_body=body), 400, expression="patient")

        # Scopes narrow what is exported when _type is absent.
        r = await h.kickoff("narrow")
        manifest = await (await h.wait("narrow", r.headers["Content-Location"])).json()
        assert {o["type"] for o in manifest["output"]} == {"Patient"}


@async_test
async def test_download_encodings_ranges_etags(tmp_path):
    async with running(tmp_path / "d") as h:
        r = await h.kickoff("sponsor", params={"_type": "ExplanationOfBenefit"})
        manifest = await (await h.wait("sponsor", r.headers["Content-Location"])).json()
        url = manifest["output"][0]["url"]
        get = lambda **hd: h.fetch("sponsor", url, **hd)  # noqa: E731

        gz = await get(**{"Accept-Encoding": "gzip"})
        plain = await get(**{"Accept-Encoding": "identity"})
        stored, ndjson = await gz.read(), await plain.read()
        assert "Content-Encoding" not in plain.headers and gzip.decompress(stored) == ndjson
        ext = manifest["output"][0]["extension"][STORED_EXT]
        assert int(plain.headers["Content-Length"]) == len(ndjson) == ext["ndjsonLength"]
        assert gz.headers["ETag"] != plain.headers["ETag"] and gz.headers["Vary"] == "Accept-Encoding"
        # Stored representation: its digest; decoded on the fly: none known (no NDJSON checksum asked for).
        assert gz.headers["Repr-Digest"] == sf_value(hashlib.sha256(stored).hexdigest()) == sf_value(ext["sha256"])
        assert "Repr-Digest" not in plain.headers and "Content-Digest" not in plain.headers

        # Range on the identity representation: decompressed bytes.
        r = await get(**{"Accept-Encoding": "identity", "Range": "bytes=100-299"})
        assert r.status == 206 and await r.read() == ndjson[100:300]
        assert r.headers["Content-Range"] == f"bytes 100-299/{len(ndjson)}"
        r = await get(**{"Accept-Encoding": "identity", "Range": "bytes=-50"})
        assert r.status == 206 and await r.read() == ndjson[-50:]
        # Range on the gzip representation: the stored bytes.
        r = await get(**{"Accept-Encoding": "gzip", "Range": "bytes=10-"})
        assert r.status == 206 and await r.read() == stored[10:] and r.headers["Content-Encoding"] == "gzip"
        # A part: Repr-Digest of the whole representation, Content-Digest of the bytes sent.
        assert r.headers["Repr-Digest"] == gz.headers["Repr-Digest"]
        assert r.headers["Content-Digest"] == sf_value(hashlib.sha256(stored[10:]).hexdigest())
        r = await get(**{"Accept-Encoding": "gzip", "Range": f"bytes={len(stored)}-"})
        assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{len(stored)}"
        r = await get(**{"Accept-Encoding": "identity", "Range": "bytes=0-1,5-6"})
        assert r.status == 200 and await r.read() == ndjson  # multi-range ignored
        r = await get(**{"Accept-Encoding": "identity", "Range": "bytes=0-9", "If-Range": gz.headers["ETag"]})
        assert r.status == 200 and await r.read() == ndjson  # validator of another representation

        r = await get(**{"Accept-Encoding": "gzip", "If-None-Match": gz.headers["ETag"]})
        assert r.status == 304 and await r.read() == b""
        r = await get(**{"Accept-Encoding": "identity", "If-None-Match": gz.headers["ETag"]})
        assert r.status == 200

        r = await h.session.head(url, headers={**await h.headers("sponsor"), "Accept-Encoding": "identity"})
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(ndjson) and await r.read() == b""

        job = job_id_of(r.url.parent.path)
        for name in ("..%2F..%2Fjobs.sqlite", "ExplanationOfBenefit-00000-001.ndjson.gz", "nope.ndjson"):
            r = await h.fetch("sponsor", f"{h.base}/data/{job}/{name}")
            assert r.status == 404


@async_test
async def test_zstd_storage(tmp_path):
    async with running(tmp_path / "d", compression="zstd", level=3) as h:
        r = await h.kickoff("sponsor", params={"_type": "ExplanationOfBenefit"})
        manifest = await (await h.wait("sponsor", r.headers["Content-Location"])).json()
        url = manifest["output"][0]["url"]
        z = await h.fetch("sponsor", url, **{"Accept-Encoding": "zstd, gzip"})
        assert z.headers["Content-Encoding"] == "zstd"
        raw = await z.read()
        assert zstandard.get_frame_parameters(raw).has_checksum  # the decoder verifies the NDJSON
        ndjson = decoded(raw, "zstd")
        g = await h.fetch("sponsor", url, **{"Accept-Encoding": "gzip"})  # not stored as gzip: identity
        assert "Content-Encoding" not in g.headers and await g.read() == ndjson
        ext = manifest["output"][0]["extension"][STORED_EXT]
        assert ext["contentEncoding"] == "zstd" and ext["sha256"] == hashlib.sha256(raw).hexdigest()
        assert z.headers["Repr-Digest"] == sf_value(ext["sha256"])
        assert len(ndjson.splitlines()) == manifest["output"][0]["count"] == len(group_rows("S1234"))


@async_test
async def test_bcda_ndjson_checksum_option(tmp_path):
    """--ndjson-sha256: BCDA's checksum + fileSize of the NDJSON beside the stored digest; an identity
    download (decoded on the fly) then has a Repr-Digest too."""
    async with running(tmp_path / "d", ndjson_sha256=True) as h:
        r = await h.kickoff("sponsor", params={"_type": "ExplanationOfBenefit"})
        manifest = await (await h.wait("sponsor", r.headers["Content-Location"])).json()
        o = manifest["output"][0]
        gz = await h.fetch("sponsor", o["url"], **{"Accept-Encoding": "gzip"})
        raw = await gz.read()
        plain = await h.fetch("sponsor", o["url"], **{"Accept-Encoding": "identity"})
        ndjson = await plain.read()
        assert gzip.decompress(raw) == ndjson
        assert o["extension"][EXT_SHA256] == "sha256:" + hashlib.sha256(ndjson).hexdigest()
        assert o["extension"][EXT_LENGTH] == len(ndjson)
        assert o["extension"][STORED_EXT]["sha256"] == hashlib.sha256(raw).hexdigest()
        assert plain.headers["Repr-Digest"] == sf_value(hashlib.sha256(ndjson).hexdigest())
        assert gz.headers["Repr-Digest"] == sf_value(hashlib.sha256(raw).hexdigest())


@async_test
async def test_cancel_expiry_and_failure(tmp_path):
    data = tmp_path / "d"
    async with running(data, file_ttl=3600) as h:
        r = await h.kickoff("small-aco", params={"_type": "Patient"})
        url = r.headers["Content-Location"]
        manifest = await (await h.wait("small-aco", url)).json()
        file_url = manifest["output"][0]["url"]
        job_dir = data / "jobs" / job_id_of(url)
        assert any(job_dir.iterdir())

        # Expiry: 410 for status and downloads once the clock passes it; the sweep deletes the files.
        h.clock.advance(3601)
        await h.token("small-aco", fresh=True)
        await expect_outcome(await h.session.get(url, headers=await h.headers("small-aco")), 410)
        await expect_outcome(await h.fetch("small-aco", file_url), 410)
        api = h.app[API]
        assert await api.expire() == [job_id_of(url)]
        assert not job_dir.exists()
        await expect_outcome(await h.session.get(url, headers=await h.headers("small-aco")), 410)

        # Cancel a finished job: 202, then 404 everywhere, files gone.
        r = await h.kickoff("small-aco", params={"_type": "Coverage"})
        url = r.headers["Content-Location"]
        manifest = await (await h.wait("small-aco", url)).json()
        r = await h.session.delete(url, headers=await h.headers("small-aco"))
        assert r.status == 202
        await expect_outcome(await h.session.get(url, headers=await h.headers("small-aco")), 404)
        await expect_outcome(await h.fetch("small-aco", manifest["output"][0]["url"]), 404)
        await expect_outcome(await h.session.delete(url, headers=await h.headers("small-aco")), 404)
        assert not (data / "jobs" / job_id_of(url)).exists()

        # Cancel a running job: its chunk's files are dropped when the chunk ends.
        (data / "hold").write_text("0")
        r = await h.kickoff("big-aco", params={"_type": "Patient"})
        url = r.headers["Content-Location"]
        await hold_until_started(data, job_id_of(url), 0)
        r = await h.session.delete(url, headers=await h.headers("big-aco"))
        assert r.status == 202
        (data / "hold").unlink()
        await expect_outcome(await h.session.get(url, headers=await h.headers("big-aco")), 404)
        r = await h.kickoff("big-aco", params={"_type": "Patient"})  # not a duplicate any more
        assert r.status == 202
        await h.wait("big-aco", r.headers["Content-Location"])
        assert not (data / "jobs" / job_id_of(url)).exists()

    async with running(data, exporter="tests.support.server:failing_exporter") as h:
        r = await h.kickoff("sponsor")
        r = await h.wait("sponsor", r.headers["Content-Location"])
        text = await expect_outcome(r, 500)
        assert "simulated exporter failure" in text and "after 2 attempts" in text


@async_test
async def test_chunk_files_are_fsynced_before_they_are_listed(tmp_path, monkeypatch):
    """A worker renames its chunk's files into the job folder without an fsync and goes on to
    its next chunk; the runner fsyncs them and the folder (`sync_chunk`) and only then lists
    them: every listed file went through it, and a chunk whose fsync fails is never listed."""
    import errno

    from fhirhose.server import runner

    synced: list[str] = []
    real = runner.sync_chunk

    def recording(job_dir, placed):
        real(job_dir, placed)
        synced.extend(f["stored"] for f in placed)

    monkeypatch.setattr(runner, "sync_chunk", recording)
    async with running(tmp_path / "d", chunk_size=20) as h:
        r = await h.kickoff("small-aco", params={"_type": "Patient,Coverage"})
        manifest = await (await h.wait("small-aco", r.headers["Content-Location"])).json()
        listed = {o["url"].rsplit("/", 1)[1].partition(".ndjson")[0] for o in manifest["output"]}
        assert len(listed) >= 4 and listed == {s.partition(".ndjson")[0] for s in synced}

    def failing(job_dir, placed):
        raise OSError(errno.EIO, "simulated fsync failure")

    monkeypatch.setattr(runner, "sync_chunk", failing)
    async with running(tmp_path / "e") as h:
        r = await h.kickoff("small-aco", params={"_type": "Patient"})
        text = await expect_outcome(await h.wait("small-aco", r.headers["Content-Location"]), 500)
        assert "simulated fsync failure" in text and "after 2 attempts" in text


@async_test
async def test_a_poll_near_the_end_is_answered_when_the_job_ends(tmp_path, monkeypatch):
    """Retry-After counts whole seconds: a poll of a job about to end waits for the end and gets
    the manifest, instead of a 202 that sends the client away for another second."""
    from fhirhose.server import web_status

    monkeypatch.setattr(web_status, "HOLD", 120.0)  # the job's end, not the hold's limit, must end the wait
    data = tmp_path / "d"
    data.mkdir()
    (data / "hold").write_text("1")  # chunk 0 completes, chunk 1 waits
    async with running(data) as h:
        r = await h.kickoff("big-aco", params={"_type": "Patient,Coverage"})
        url = r.headers["Content-Location"]
        await hold_until_started(data, job_id_of(url), 1)
        # 1 of 3 chunks done and no time passed on the server's clock: the end looks imminent.
        poll = asyncio.ensure_future(h.session.get(url, headers=await h.headers("big-aco")))
        await asyncio.sleep(0.3)  # the poll is in; without the hold it would be answered 202 by now
        assert not poll.done()
        (data / "hold").unlink()
        r = await poll
        assert r.status == 200
        assert sum(o["count"] for o in (await r.json())["output"] if o["type"] == "Patient") == 130

        # A job far from its end (more than HOLD) is answered at once (202, paced).
        monkeypatch.setattr(web_status, "HOLD", 2.0)
        (data / "hold").write_text("1")
        r = await h.kickoff("big-aco", params={"_type": "Patient"})
        url = r.headers["Content-Location"]
        await hold_until_started(data, job_id_of(url), 1)
        h.clock.advance(10)  # 1 of 3 chunks in 10 s: ~20 s left
        r = await h.session.get(url, headers=await h.headers("big-aco"))
        assert r.status == 202 and r.headers["Retry-After"] == "3"
        (data / "hold").unlink()
        assert (await h.wait("big-aco", url)).status == 200


@async_test
async def test_a_partial_manifest_poll_is_answered_when_new_files_are_listed(tmp_path, monkeypatch):
    """With partial manifests a chunk's files are news: a poll with files the client has not
    been told of is answered at once, one without is held until the next chunk's files are
    listed (not until the job ends), so downloads overlap the export."""
    from fhirhose.server import web_status

    monkeypatch.setattr(web_status, "HOLD", 120.0)  # the news, not the hold's limit, must end the wait
    data = tmp_path / "d"
    data.mkdir()
    (data / "hold").write_text("1")  # chunk 0 completes, chunk 1 waits
    async with running(data) as h:
        r = await h.kickoff("big-aco", params={"_type": "Patient,Coverage", "allowPartialManifests": "true"})
        url = r.headers["Content-Location"]
        await hold_until_started(data, job_id_of(url), 1)
        hd = await h.headers("big-aco")
        r = await h.session.get(url, headers=hd)  # chunk 0's files are news: answered at once
        assert r.status == 202 and "link" not in await r.json()
        assert r.headers["Retry-After"] == "0"  # the next poll is held until news: come back at once
        poll = asyncio.ensure_future(h.session.get(url, headers=hd))  # nothing new: held
        await asyncio.sleep(0.3)
        assert not poll.done()
        (data / "hold").write_text("2")  # chunk 1 completes, chunk 2 waits
        r = await poll
        assert r.status == 202  # before the job ends
        page = await r.json()
        assert page["link"][0]["relation"] == "next"  # page 2: chunk 1's files
        r = await h.session.get(page["link"][0]["url"], headers=hd)
        assert r.status == 202 and {o["type"] for o in (await r.json())["output"]} == {"Patient", "Coverage"}
        (data / "hold").unlink()
        assert (await h.wait("big-aco", url)).status == 200


@async_test
async def test_poll_pacing_duplicates_and_partial_manifests(tmp_path):
    data = tmp_path / "d"
    (data).mkdir()
    (data / "hold").write_text("1")  # chunk 0 completes, chunk 1 waits
    async with running(data) as h:
        r = await h.kickoff("big-aco", params={"_type": "Patient,Coverage", "allowPartialManifests": "true"})
        url = r.headers["Content-Location"]
        job = job_id_of(url)
        await hold_until_started(data, job, 1)
        hd = await h.headers("big-aco")

        h.clock.advance(10)  # 1 of 3 chunks in 10 s: ~20 s left, so the longest wait (retry_after=3)
        r = await h.session.get(url, headers=hd)
        assert r.status == 202 and r.headers["Retry-After"] == "3"
        assert r.headers["X-Progress"] == "33% complete (1/3 chunks)" and len(r.headers["X-Progress"]) < 100
        partial = await r.json()  # chunk 0 is available already
        assert {o["type"] for o in partial["output"]} == {"Patient", "Coverage"}
        assert all(o["count"] == 40 or o["count"] == 10 for o in partial["output"]) and "link" not in partial
        r = await h.session.get(url, headers=hd)  # too soon
        await expect_outcome(r, 429)
        assert 1 <= int(r.headers["Retry-After"]) <= 3

        # Same client, same scope while running → 429 pointing at the running job; another scope is fine.
        r = await h.kickoff("big-aco", params={"_type": "Coverage,Patient"})
        assert "already running" in await expect_outcome(r, 429)
        assert r.headers["Content-Location"] == url and r.headers["Retry-After"] == "3"
        r = await h.kickoff("big-aco", "/Patient/$export", params={"_type": "Patient"})
        assert r.status == 202

        (data / "hold").unlink()
        r = await h.wait("big-aco", url)
        assert r.status == 200
        page = await r.json()
        assert page["output"] == partial["output"]  # a returned manifest never changes
        seen = {}
        pages = 1
        while "link" in page:
            assert page["link"][0]["relation"] == "next"
            r = await h.session.get(page["link"][0]["url"], headers=hd)
            assert r.status == 200
            page = await r.json()
            pages += 1
            for o in page["output"]:
                seen[o["url"]] = o
        for o in partial["output"]:
            seen[o["url"]] = o
        assert pages == 3
        for rtype in ("Patient", "Coverage"):
            assert sum(o["count"] for o in seen.values() if o["type"] == rtype) == len(group_rows("A0002"))
        r = await h.session.get(url + "?page=4", headers=hd)
        await expect_outcome(r, 404, expression="page")


@async_test
async def test_concurrent_jobs_fair_across_organizations(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "hold").write_text("1")
    async with running(data) as h:
        r = await h.kickoff("big-aco", params={"_type": "Patient"})  # 3 chunks of 50
        big = r.headers["Content-Location"]
        await hold_until_started(data, job_id_of(big), 1)
        small = (await h.kickoff("small-aco", params={"_type": "Patient"})).headers["Content-Location"]
        sponsor = (await h.kickoff("sponsor", params={"_type": "ExplanationOfBenefit"})).headers["Content-Location"]
        (data / "hold").unlink()
        results = await asyncio.gather(
            h.wait("big-aco", big), h.wait("small-aco", small), h.wait("sponsor", sponsor))
        for r, org in zip(results, ("A0002", "A0001", "S1234"), strict=True):
            assert r.status == 200
            assert sum(o["count"] for o in (await r.json())["output"]) == len(group_rows(org))
        order = _log(data)
        # The small jobs that arrived while the big one ran go before its remaining chunk.
        assert order.index(f"{job_id_of(big)} 2") > order.index(f"{job_id_of(small)} 0")
        assert order.index(f"{job_id_of(big)} 2") > order.index(f"{job_id_of(sponsor)} 0")


@async_test
async def test_lenient_and_type_filters_reach_the_exporter(tmp_path):
    data = tmp_path / "d"
    async with running(data) as h:
        r = await h.kickoff(
            "small-aco",
            params=[("_type", "ExplanationOfBenefit,Observation"), ("_elements", "id,meta"),
                    ("_typeFilter", "ExplanationOfBenefit?service-date=ge2024-01-01&_tag=FinalAction"),
                    ("_typeFilter", "ExplanationOfBenefit?_tag=NotFinalAction"),
                    ("_since", "2024-01-01T00:00:00Z"), ("organizeOutputBy", "Encounter")],
            prefer="respond-async, handling=lenient",
        )
        assert r.status == 202, await r.text()
        url = r.headers["Content-Location"]
        manifest = await (await h.wait("small-aco", url)).json()
        assert {o["type"] for o in manifest["output"]} == {"ExplanationOfBenefit"}
        (err,) = manifest["error"]
        assert err["type"] == "OperationOutcome" and err["count"] == 2
        body = await (await h.fetch("small-aco", err["url"], **{"Accept-Encoding": "identity"})).read()
        issues = [json.loads(line) for line in body.splitlines()]
        for oo in issues:
            validate_r4(oo)
        assert sorted(oo["issue"][0]["expression"][0] for oo in issues) == ["_type", "organizeOutputBy"]

        task = json.loads((data / f"task-{job_id_of(url)}-0.json").read_text())
        assert task["types"] == ["ExplanationOfBenefit"] and task["elements"] == ["id", "meta"]
        assert task["since"] == "2024-01-01T00:00:00Z"
        assert task["transaction_time"] == manifest["transactionTime"] and task["until"] is None
        assert task["type_filters"] == [
            {"type": "ExplanationOfBenefit", "service_date": [["ge", "2024-01-01"]], "final_action": ["FinalAction"]},
            {"type": "ExplanationOfBenefit", "final_action": ["NotFinalAction"]},
        ]


@pytest.mark.parametrize("base", ["/fhir/r4"])
@async_test
async def test_mounted_as_subapp_with_custom_base(tmp_path, base):
    from aiohttp import web

    from fhirhose.server import TablePopulation, create_app

    from .support.server import ACCESS, Clock, config, tables

    parent = web.Application()
    parent.add_subapp("/bulk", create_app(config(tmp_path / "d", base=base), access=ACCESS, clock=Clock(),
                                          population=TablePopulation(tables)))
    small = clients_of(tmp_path / "d")["small-aco"]
    runner = web.AppRunner(parent)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as s:
            r = await s.get(f"http://127.0.0.1:{port}/bulk{base}/.well-known/smart-configuration")
            assert (await r.json())["token_endpoint"] == f"http://127.0.0.1:{port}/bulk{base}/auth/token"
            r = await s.post(f"http://127.0.0.1:{port}/bulk{base}/auth/token", data={"grant_type": "client_credentials"},
                             headers=basic(small["client_id"], small["secret"]))
            tok = (await r.json())["access_token"]
            r = await s.get(f"http://127.0.0.1:{port}/bulk{base}/Patient/$export",
                            headers={"Authorization": f"Bearer {tok}", "Prefer": "respond-async"})
            assert r.status == 202
            assert r.headers["Content-Location"].startswith(f"http://127.0.0.1:{port}/bulk{base}/jobs/")
    finally:
        await runner.cleanup()
