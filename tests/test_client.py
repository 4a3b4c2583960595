"""`fhirhose pull` / `BulkClient` against the real fhirhose server on 127.0.0.1.

The server runs in-process (aiohttp AppRunner, ephemeral port) over a small synthetic
store exported by the real exporter and templates; nothing on the server side is mocked.
Interruptions are real exceptions raised from the client's own progress hooks, and slow
exports are real exports held at a chunk by the tests' exporter (`DATA/hold`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest
from aiohttp import web

from fhirhose import synth
from fhirhose.access import AccessDB, Actor
from fhirhose.client import BulkClient, JwkAuth, Progress, PullState, SecretAuth
from fhirhose.client.auth import Tokens
from fhirhose.client.files import decoded
from fhirhose.columns import NO_DATE
from fhirhose.errors import ClientError
from fhirhose.export.manifest import CHECKSUM_EXT, FILESIZE_EXT, SOURCE_EXT, STORED_EXT
from fhirhose.fhir import c4bb
from fhirhose.fhir.validate import validate_r4
from fhirhose.server import ServerConfig, create_app
from fhirhose.server.demo import sandbox_access_config
from fhirhose.store import Store, rosters

from .support.server import Clock, async_test, basic

ROOT = Path(__file__).resolve().parent.parent
ORG = "A1002"  # 10 beneficiaries in the 300-beneficiary synthetic store
HOLD_EXPORTER = "tests.support.server:store_test_exporter"  # the real exporter, holdable per chunk
# The server runs on the synthetic store's calendar (history through synth.AS_OF), so its
# 2025 rosters are the current performance year's; the sandbox rules accept their age.
STORE_NOW = dt.datetime.combine(synth.AS_OF + dt.timedelta(days=1), dt.time(12), dt.UTC).timestamp()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "store"
    orgs = synth.write(path, 300, seed=0)
    assert {o.org_id: o.roster_size for o in orgs}[ORG] == 10
    return path


class Server:
    def __init__(self, base: str, data: Path, clock: Clock, client_id: str, secret: str | None):
        self.base, self.data, self.clock = base, data, clock
        self.client_id, self.secret = client_id, secret

    def hold(self, seq: int | None) -> None:
        """Hold the export at chunk `seq` (None: release)."""
        if seq is None:
            (self.data / "hold").unlink(missing_ok=True)
        else:
            (self.data / "hold").write_text(str(seq))

    async def token(self, session: aiohttp.ClientSession) -> str:
        async with session.post(f"{self.base}/auth/token", data={"grant_type": "client_credentials"},
                                headers=basic(self.client_id, self.secret)) as r:
            assert r.status == 200, await r.text()
            return (await r.json())["access_token"]

    async def get(self, url: str, **headers: str) -> tuple[int, dict, bytes]:
        async with aiohttp.ClientSession() as s:
            h = {"Authorization": f"Bearer {await self.token(s)}", **headers}
            async with s.get(url, headers=h) as r:
                return r.status, dict(r.headers), await r.read()

    async def kickoff(self, query: str = "") -> str:
        status, headers, body = await self.get(f"{self.base}/Group/all/$export{query}",
                                               Accept="application/fhir+json", Prefer="respond-async")
        assert status == 202, body
        return headers["Content-Location"]


def access_db(data: Path, token_ttl: int | None = None) -> AccessDB:
    """The server's access database: ORG, a Shared Savings ACO (sandbox rules)."""
    data.mkdir(parents=True, exist_ok=True)
    cfg = sandbox_access_config(scrypt_n=2**12, **({"basic_token_seconds": token_ttl} if token_ttl else {}))
    db = AccessDB(data / "access.sqlite", cfg)
    if not db.orgs.list():
        db.orgs.create(Actor.system(), ORG, "ssp", "Piñon Valley Health Partners")
    return db


@contextlib.asynccontextmanager
async def serving(tmp: Path, store: Path, *, access: AccessDB | None = None, token_ttl: int | None = None,
                  sock: socket.socket | None = None, **kw):
    data = tmp / "server"
    client_id = secret = None
    if access is None:  # a sandbox secret for ORG
        access = access_db(data, token_ttl)
        cred, secret = access.credentials.issue(Actor.system(), ORG)
        client_id = cred.client_id
    opts = dict(workers=1, chunk_size=4, retry_after=1)
    opts.update(kw)
    clock = Clock()
    clock.advance(STORE_NOW - time.time())
    app = create_app(ServerConfig(data_dir=str(data), store_path=str(store), **opts), access=access, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.SockSite(runner, sock) if sock else web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Server(f"http://127.0.0.1:{runner.addresses[0][1]}/api/v2", data, clock, client_id, secret)
    finally:
        await runner.cleanup()


def client(server: Server, **kw) -> BulkClient:
    return BulkClient(server.base, SecretAuth(server.client_id, server.secret), **kw)


def group_ids(store: Path) -> list[str]:
    """Patient ids `Group/all` gives ORG: its roster, less whoever opted out of data sharing."""
    with Store.open(store) as snap:
        t = snap.tables
        ids = t["bene"]["bene_id"].to_list()
        latest: dict[int, tuple[int, str]] = {}
        o = t["optout"]
        today = (dt.datetime.fromtimestamp(STORE_NOW, dt.UTC).date() - dt.date(1970, 1, 1)).days
        for b, pref, eff in zip(o["bene_row"].values.tolist(), o["pref_ind"].to_list(), o["effective_dt"].values.tolist(), strict=True):
            if NO_DATE < eff <= today and eff >= latest.get(b, (eff, ""))[0]:
                latest[b] = (eff, pref)
        rows = [int(r) for r in rosters.org_benes(t, ORG) if latest.get(int(r), (0, "Y"))[1] != "N"]
    return sorted(ids[r] for r in rows)


def check_files(out: Path, result, *, compressed: bool = False) -> dict[str, list[dict]]:
    """Every file against the local manifest.json (urls: the local files, each with its source URL;
    stored digest, lengths, count, recomputed here), sampled resources through R4 validation and the
    C4BB rules; the resources by type."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["transactionTime"] == result.transaction_time and not manifest.get("link")
    local = {f.url: f for f in result.files}
    items = [i for k in ("output", "error", "deleted") for i in manifest.get(k, [])]
    assert set(local) == {i["extension"][SOURCE_EXT] for i in items}
    by_type: dict[str, list[dict]] = {}
    for item in manifest["output"]:
        f = local[item["extension"][SOURCE_EXT]]
        assert item["url"] == f.path
        path = out / f.path
        assert path.name == f.name + ({"gzip": ".gz", "zstd": ".zst"}[f.encoding] if compressed else "")
        stored = item["extension"][STORED_EXT]
        if compressed:  # the bytes as stored and sent, checked against their digest only
            raw = path.read_bytes()
            assert hashlib.sha256(raw).hexdigest() == stored["sha256"] and len(raw) == stored["length"]
        with decoded(path, f.encoding if compressed else None) as fh:
            data = fh.read()
        assert f.checked == "digest"
        assert len(data) == stored["ndjsonLength"] and CHECKSUM_EXT not in item["extension"]
        lines = data.splitlines()
        assert len(lines) == item["count"]
        resources = [json.loads(line) for line in lines]
        assert {r["resourceType"] for r in resources} == {item["type"]}
        for r in resources[:3]:
            validate_r4(r)
            assert c4bb.check(r) == []
        by_type.setdefault(item["type"], []).extend(resources)
    assert result.resources == {t: len(v) for t, v in by_type.items()}
    return by_type


class Interrupted(Exception):
    """What a test raises to cut a download, as a crash or Ctrl-C would."""


class Recorder(Progress):
    """Records what the client reports; optionally interrupts a download or acts on a poll."""

    def __init__(self, *, stop_after: int | None = None, on_poll=None, on_verified=None):
        self.stop_after, self.on_poll, self.on_verified = stop_after, on_poll, on_verified
        self.bytes = 0
        self.starts: list[tuple[str, int]] = []
        self.polls: list[int] = []
        self.verified_names: list[str] = []

    def polled(self, status, progress):
        self.polls.append(status)
        if self.on_poll:
            self.on_poll(status)

    def started(self, f, offset, total):
        self.starts.append((f.name, offset))

    def received(self, f, n):
        self.bytes += n
        if self.stop_after is not None and self.bytes >= self.stop_after:
            raise Interrupted(f"interrupted by the test in {f.name}")

    def verified(self, f):
        self.verified_names.append(f.name)
        if self.on_verified:
            self.on_verified(f)


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("compression,keep", [("gzip", False), ("zstd", True)])
@async_test
async def test_full_pull_is_verified_and_deleted(tmp_path, store, compression, keep):
    async with serving(tmp_path, store, compression=compression) as srv:
        out = tmp_path / "out"
        async with client(srv, keep_compressed=keep) as c:
            result = await c.export("group", "all", out_dir=out)
        by_type = check_files(out, result, compressed=keep)
        assert sorted(p["id"] for p in by_type["Patient"]) == group_ids(store)
        assert set(by_type) == {"Patient", "Coverage", "ExplanationOfBenefit"}
        patients = {f"Patient/{i}" for i in group_ids(store)}
        assert {e["patient"]["reference"] for e in by_type["ExplanationOfBenefit"]} <= patients
        # Over the wire as the server stores them (gzip/zstd), several times smaller than the NDJSON.
        assert {f.encoding for f in result.files} == {compression}
        assert result.wire_bytes * 5 < result.ndjson_bytes
        assert result.stored_bytes == (result.wire_bytes if keep else result.ndjson_bytes)
        state = PullState.load(out)
        assert state.complete and state.deleted and result.deleted
        status, _, body = await srv.get(result.status_url)
        assert status == 404 and b"does not exist" in body  # DELETE at the end removed the job


@async_test
async def test_downloads_start_from_partial_manifests(tmp_path, store):
    """The export is held at its third chunk: files of the first two arrive while it runs."""
    async with serving(tmp_path, store, exporter=HOLD_EXPORTER) as srv:
        srv.hold(2)
        seen_while_held: list[str] = []

        def on_verified(f):
            if (srv.data / "hold").exists():
                seen_while_held.append(f.name)
                if len(seen_while_held) == 6:  # 3 types x 2 chunks
                    srv.hold(None)

        rec = Recorder(on_verified=on_verified)
        async with client(srv, progress=rec) as c:
            result = await c.export("group", out_dir=tmp_path / "out")
        assert sorted(seen_while_held) == sorted(f"{t}-{s:05d}-001.ndjson" for t in
                                                 ("Patient", "Coverage", "ExplanationOfBenefit") for s in (0, 1))
        assert 202 in rec.polls and rec.polls[-1] == 200
        check_files(tmp_path / "out", result)


@async_test
async def test_resume_after_interrupted_download_uses_range(tmp_path, store):
    async with serving(tmp_path, store) as srv:
        out = tmp_path / "out"
        first = Recorder(stop_after=150_000)
        with pytest.raises(Interrupted):
            async with client(srv, progress=first, concurrency=1, read_size=16384) as c:
                await c.export("group", out_dir=out)
        state = PullState.load(out)
        partial = [f for f in state.files if not f.done and (out / (f.name + ".part")).exists()]
        assert len(partial) == 1 and partial[0].etag
        part_size = (out / (partial[0].name + ".part")).stat().st_size
        assert 0 < part_size < first.bytes + 1
        done_before = {f.name for f in state.files if f.done}

        second = Recorder()
        async with client(srv, progress=second, read_size=16384) as c:
            result = await c.resume(state.status_url, out)
        check_files(out, result)
        # The cut file continued where it stopped; finished files were not fetched again.
        assert (partial[0].name, part_size) in second.starts
        assert not done_before & {name for name, _ in second.starts}
        whole = sum(f.encoded_bytes for f in result.files)
        assert first.bytes + second.bytes == whole
        assert result.wire_bytes == second.bytes < whole
        assert not list(out.glob("*.part"))


@async_test
async def test_cli_resume_status_url(tmp_path, store):
    """`fhirhose pull --resume URL` finishes an export someone else kicked off; `--resume` alone
    reuses the folder's state; `--no-delete` leaves the job on the server."""
    async with serving(tmp_path, store) as srv:
        status_url = await srv.kickoff("?_type=Patient,Coverage")
        secret = tmp_path / "secret"
        secret.write_text(srv.secret)
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "fhirhose.cli", "pull", srv.base, "--client-id", srv.client_id,
               "--secret-file", str(secret), "--out", str(out), "--json", "--no-delete"]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

        async def pull(*extra: str) -> dict:
            proc = await asyncio.create_subprocess_exec(*cmd, *extra, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
            stdout, stderr = await proc.communicate()
            assert proc.returncode == 0, stderr.decode()
            return json.loads(stdout)

        got = await pull("--resume", status_url)
        assert got["status_url"] == status_url and set(got["resources"]) == {"Patient", "Coverage"}
        assert got["resources"]["Patient"] == len(group_ids(store)) and not got["deleted"]
        again = await pull("--resume")
        assert again["wire_bytes"] == 0 and again["resources"] == got["resources"]
        status, _, _ = await srv.get(status_url)
        assert status == 200


@async_test
async def test_expired_token_is_renewed(tmp_path, store):
    """The server's clock passes the token's expiry mid-pull: the next request gets a 401,
    the client fetches a new token and goes on."""
    async with serving(tmp_path, store, token_ttl=600) as srv:
        def on_verified(f):
            srv.clock.advance(601)

        async with client(srv, progress=Recorder(on_verified=on_verified), concurrency=1) as c:
            result = await c.export("group", out_dir=tmp_path / "out", types=["Patient", "Coverage"])
        assert result.tokens == len(result.files) + 1
        check_files(tmp_path / "out", result)


@async_test
async def test_token_is_refreshed_before_it_expires(tmp_path, store):
    async with serving(tmp_path, store, token_ttl=100) as srv, aiohttp.ClientSession() as s:
        now = [0.0]
        tokens = Tokens(SecretAuth(srv.client_id, srv.secret), f"{srv.base}/auth/token", s, clock=lambda: now[0])
        first = await tokens.get()
        now[0] = 79.0  # more than a fifth of the lifetime left: kept
        assert await tokens.get() == first and tokens.issued == 1
        now[0] = 81.0
        srv.clock.advance(1)  # a new iat, so a new token
        second = await tokens.get()
        assert second != first and tokens.issued == 2
        status, _, _ = await srv.get(f"{srv.base}/jobs")
        assert status == 200


@async_test
async def test_429_on_status_honours_retry_after(tmp_path, store):
    """Someone polled just before the client: the server answers 429 + Retry-After, and
    the client waits instead of failing."""
    async with serving(tmp_path, store, exporter=HOLD_EXPORTER, retry_after=1) as srv:
        srv.hold(0)
        status_url = await srv.kickoff()
        status, headers, _ = await srv.get(status_url)
        assert status == 202 and headers["Retry-After"] == "1"

        def on_poll(status):
            if status == 429:
                srv.hold(None)

        rec = Recorder(on_poll=on_poll)
        async with client(srv, progress=rec) as c:
            result = await c.resume(status_url, tmp_path / "out")
        assert rec.polls[0] == 429 and result.throttled >= 1 and rec.polls[-1] == 200
        check_files(tmp_path / "out", result)


@async_test
async def test_server_errors_carry_the_operation_outcome(tmp_path, store):
    async with serving(tmp_path, store) as srv:
        async with client(srv) as c:
            with pytest.raises(ClientError) as e:
                await c.export("group", out_dir=tmp_path / "a", since="2024-13-45")
            assert "HTTP 400" in str(e.value) and "_since '2024-13-45' is not a" in str(e.value)
            assert "(at _since)" in str(e.value)
            with pytest.raises(ClientError, match=r"HTTP 404: error \[not-found\] Group/nope is not a group"):
                await c.export("group", "nope", out_dir=tmp_path / "b")
            with pytest.raises(ClientError, match=r"HTTP 404: .*job 0+ does not exist"):
                await c.resume(f"{srv.base}/jobs/{'0' * 32}", tmp_path / "c")
        async with BulkClient(srv.base, SecretAuth(srv.client_id, "wrong")) as c:
            with pytest.raises(ClientError, match=r"token endpoint .*/auth/token: HTTP 401: invalid_client: client "):
                await c.export("group", out_dir=tmp_path / "d")


@async_test
async def test_incremental_pull_uses_last_transaction_time(tmp_path, store):
    async with serving(tmp_path, store) as srv:
        since_file = tmp_path / "since.json"
        async with client(srv, since_file=since_file) as c:
            first = await c.export("group", out_dir=tmp_path / "one", incremental=True)
            second = await c.export("group", out_dir=tmp_path / "two", incremental=True)
        assert first.since is None and "_since" not in parse_qs(urlsplit(first.request).query)
        assert second.since == first.transaction_time
        assert parse_qs(urlsplit(second.request).query)["_since"] == [first.transaction_time]
        assert json.loads(since_file.read_text())["since"] == {
            f"{srv.base} {srv.client_id} /Group/all/$export *": second.transaction_time}
        # Nothing in the store changed after the first pull's transaction time.
        assert first.resources["ExplanationOfBenefit"] > 0
        assert second.resource_count < first.resource_count
        check_files(tmp_path / "two", second)


@async_test
async def test_patient_post_kickoff(tmp_path, store):
    ids = group_ids(store)[:2]
    async with serving(tmp_path, store) as srv:
        async with client(srv) as c:
            result = await c.export("group", "all", out_dir=tmp_path / "out", patients=ids,
                                    types=["Patient", "ExplanationOfBenefit"],
                                    type_filters=["ExplanationOfBenefit?service-date=ge2020-01-01"])
        by_type = check_files(tmp_path / "out", result)
        assert sorted(p["id"] for p in by_type["Patient"]) == ids
        assert {e["patient"]["reference"] for e in by_type["ExplanationOfBenefit"]} <= {f"Patient/{i}" for i in ids}


# --- SMART Backend Services (JWK) ------------------------------------------------------------


def _ec_jwk() -> tuple[dict, dict]:
    from fhirhose.server.demo import es384_jwk

    return es384_jwk()


def test_jwk_assertion_follows_smart_backend_services(tmp_path):
    """Checked with PyJWT, an independent JWS implementation."""
    private, public = _ec_jwk()
    (tmp_path / "key.json").write_text(json.dumps({"keys": [private]}))
    auth = JwkAuth(tmp_path / "key.json", "client-1")
    url = "https://fhir.example/auth/token"
    tokens = [auth.assertion(url) for _ in range(2)]
    key = jwt.PyJWK(public).key
    claims = [jwt.decode(t, key, algorithms=["ES384"], audience=url) for t in tokens]
    assert jwt.get_unverified_header(tokens[0]) == {"alg": "ES384", "kid": public["kid"], "typ": "JWT"}
    for c in claims:
        assert c["iss"] == c["sub"] == "client-1" and 0 < c["exp"] - c["iat"] <= 300
    assert claims[0]["jti"] != claims[1]["jti"]
    headers, form = auth.token_request(url)
    assert headers == {} and form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert form["scope"] == "system/*.read"


def test_rsa_pem_key_signs_rs384(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    with pytest.raises(ClientError, match="a PEM key has no kid"):
        JwkAuth(tmp_path / "key.pem", "c")
    token = JwkAuth(tmp_path / "key.pem", "c", kid="rsa-1").assertion("https://x/token")
    assert jwt.get_unverified_header(token)["alg"] == "RS384"
    jwt.decode(token, key.public_key(), algorithms=["RS384"], audience="https://x/token")


@async_test
async def test_pull_with_jwk_against_access_token_endpoint(tmp_path, store):
    """SMART Backend Services end to end: the access library's token endpoint verifies the
    client's ES384 assertion (aud = the discovered token URL, jti spent once)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v2"
    db = access_db(tmp_path / "server")
    private, public = _ec_jwk()
    cred, _ = db.credentials.issue(Actor.system(), ORG, secret=False, jwks={"keys": [public]})
    async with serving(tmp_path, store, access=db, sock=sock) as srv:
        assert srv.base == base

        class ServerTimeJwk(JwkAuth):
            """Assertions dated on the server's (the store's) calendar."""

            def assertion(self, token_url: str, now: float | None = None) -> str:
                return super().assertion(token_url, srv.clock() if now is None else now)

        async with BulkClient(base, ServerTimeJwk(private, cred.client_id)) as c:
            result = await c.export("group", out_dir=tmp_path / "out", types=["Patient"])
            assert c.token_url == f"{base}/auth/token"
        assert result.resources == {"Patient": len(group_ids(store))}
        check_files(tmp_path / "out", result)


# --- integrity: what is verified where -------------------------------------------------------


@pytest.mark.parametrize("keep", [False, True])
@async_test
async def test_pull_with_the_servers_bcda_checksum_option(tmp_path, store, keep):
    """fhirhose with --ndjson-sha256: the stored digest still vouches for the files (no NDJSON hash
    needed), and an identity download, decoded by the server, is checked by its Repr-Digest."""
    async with serving(tmp_path, store, ndjson_sha256=True) as srv:
        async with client(srv, keep_compressed=keep) as c:
            result = await c.export("group", out_dir=tmp_path / "out", types=["Patient", "Coverage"])
        manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
        assert all(CHECKSUM_EXT in i["extension"] and STORED_EXT in i["extension"] for i in manifest["output"])
        assert {f.checked for f in result.files} == {"digest"}
        async with client(srv, accept_encoding=["identity"]) as c:
            plain = await c.export("group", out_dir=tmp_path / "plain", types=["Patient"])
        assert {f.encoding for f in plain.files} == {None} and {f.checked for f in plain.files} == {"digest"}
        assert all(f.repr_digest == f.sha256 for f in plain.files)


@async_test
async def test_identity_download_of_a_compressed_file_is_checked_by_length_and_count(tmp_path, store):
    async with serving(tmp_path, store) as srv:
        async with client(srv, accept_encoding=["identity"]) as c:
            result = await c.export("group", out_dir=tmp_path / "out", types=["Patient"])
    assert {f.encoding for f in result.files} == {None} and {f.checked for f in result.files} == {"count"}
    assert result.resources["Patient"] == len(group_ids(store))


@pytest.mark.parametrize("in_memory", [True, False], ids=["decoded-from-memory", "decoded-from-part-file"])
@async_test
async def test_decoded_from_memory_or_from_the_part_file_alike(tmp_path, store, monkeypatch, in_memory):
    """A fresh compressed download up to `_IN_MEMORY` bytes is decoded from the bytes kept in
    memory (the `.part` copy is only for a resume); a larger one from its `.part` file."""
    from fhirhose.client import download, files

    if not in_memory:
        monkeypatch.setattr(download, "_IN_MEMORY", 0)
    sources = []
    real = files.decoded
    monkeypatch.setattr(files, "decoded", lambda p, e, data=None: sources.append(data is not None) or real(p, e, data))
    async with serving(tmp_path, store) as srv:
        async with client(srv) as c:
            result = await c.export("group", "all", out_dir=tmp_path / "out")
    by_type = check_files(tmp_path / "out", result, compressed=False)
    assert sorted(p["id"] for p in by_type["Patient"]) == group_ids(store)
    assert sources and set(sources) == {in_memory}
    assert not list((tmp_path / "out").glob("*.part"))


@pytest.mark.parametrize("keep", [False, True])
@async_test
async def test_a_stored_file_changed_on_the_server_fails_its_digest(tmp_path, store, keep):
    """One byte changed in a stored gzip file: the digest of the bytes as received catches it
    before any decoding (also when the compressed copy is kept as is)."""
    async with serving(tmp_path, store) as srv:
        status_url = await srv.kickoff("?_type=Patient")
        while (await srv.get(status_url))[0] != 200:  # the job is done: its files are on disk
            await asyncio.sleep(0.2)
        victim = sorted((srv.data / "jobs" / status_url.rsplit("/", 1)[1]).glob("*.gz"))[0]
        raw = bytearray(victim.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        victim.write_bytes(raw)
        async with client(srv, keep_compressed=keep) as c:
            with pytest.raises(ClientError, match="bytes received have sha256"):
                await c.resume(status_url, tmp_path / "out")


def _bcda_like_app(files: dict[str, bytes], checksums: dict[str, str]) -> web.Application:
    """A Bulk Data server as BCDA (or fhirhose before issue 12) answers: gzip on the wire, and per
    file only the SHA-256 and size of the uncompressed NDJSON; no Repr-Digest, no stored digest."""
    import gzip

    async def kickoff(request: web.Request) -> web.Response:
        return web.Response(status=202, headers={"Content-Location": str(request.url.with_path("/jobs/1"))})

    async def status(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            return web.Response(status=202)
        base = request.url.with_path("/data/")
        output = [{"type": name.split("-")[0], "url": str(base.with_path(f"/data/{name}")),
                   "extension": {CHECKSUM_EXT: f"sha256:{checksums[name]}", FILESIZE_EXT: len(body)}}
                  for name, body in files.items()]
        return web.json_response({"transactionTime": "2025-01-01T00:00:00.000Z", "request": "x",
                                  "requiresAccessToken": False, "output": output, "error": []})

    async def data(request: web.Request) -> web.Response:
        body = files[request.match_info["name"]]
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=gzip.compress(body), headers={"Content-Encoding": "gzip"})
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get("/Group/{id}/$export", kickoff)
    app.router.add_route("*", "/jobs/1", status)
    app.router.add_get("/data/{name}", data)
    return app


@pytest.mark.parametrize("keep", [False, True])
@async_test
async def test_pull_from_a_server_with_only_the_uncompressed_checksum(tmp_path, keep):
    """Against a server giving only BCDA's NDJSON checksum, pull verifies that (decoding a kept
    compressed copy to do so) and refuses a file whose NDJSON does not match it."""
    files = {"Patient-1.ndjson": b'{"resourceType":"Patient","id":"a"}\n{"resourceType":"Patient","id":"b"}\n'}
    good = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    runner = web.AppRunner(_bcda_like_app(files, good))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with BulkClient(base, keep_compressed=keep) as c:
            result = await c.export("group", "all", out_dir=tmp_path / "ok", partial=False)
        [f] = result.files
        assert f.checked == "sha256" and f.encoding == "gzip" and f.lines == 2 and f.sha256 == good[f.name]
        good["Patient-1.ndjson"] = "0" * 64
        async with BulkClient(base, keep_compressed=keep) as c:
            with pytest.raises(ClientError, match="sha256 .* but the manifest says 0000"):
                await c.export("group", "all", out_dir=tmp_path / "bad", partial=False)
    finally:
        await runner.cleanup()
