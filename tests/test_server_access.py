"""The server enforcing the access rules end to end, over real HTTP on 127.0.0.1.

Two worlds:

- `access_world`: ten beneficiaries with hand-picked rosters, opt-outs, enrollment
  and claims (ids "<bene>-<yyyymmdd>"), so each organization × credential × rule
  case states exactly which beneficiaries and claims come out. The server plans with
  `plan_scope` and its worker processes export through the real Exporter
  (`access_world.world_exporter`), at a pinned clock (2024-06-15).
- a small synthetic store (`fhirhose.store.synth`) registered by the demo code, served
  by the production exporter and templates; what each organization gets is counted
  from the store's tables by an independent per-row oracle.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import gzip
import json
import ssl
import time
import uuid
from pathlib import Path

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhirhose.access import ASSERTION_TYPE, AccessDB, Actor
from fhirhose.server import RULES_EXT, ServerConfig, TablePopulation, create_admin_app, create_app

from .access_world import DAY, NOW, SUD_CLAIM, UTC, add_user, build_store, carrier, make_db, pde

FEB10 = dt.datetime(2024, 2, 10, tzinfo=UTC).timestamp()
CLIENT_IP = "203.0.113.5"  # where the tests' clients come from (X-Forwarded-For via the trusted loopback proxy)
FHIR = {"Accept": "application/fhir+json", "Prefer": "respond-async"}


class FixedClock:
    """The server's clock: pinned, moved only by the tests."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def jwk_of(key, kid: str) -> dict:
    algo = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    return {**json.loads(algo.to_jwk(key.public_key())), "kid": kid}


@pytest.fixture(scope="module")
def keys():
    return {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec": ec.generate_private_key(ec.SECP384R1()), "stranger": ec.generate_private_key(ec.SECP384R1())}


class Client:
    """A Bulk Data client session against one running server."""

    def __init__(self, session: aiohttp.ClientSession, base: str, clock: FixedClock, app: web.Application):
        self.s, self.base, self.clock, self.app = session, base, clock, app

    @property
    def token_url(self) -> str:
        return f"{self.base}/auth/token"

    @staticmethod
    def _ip(ip: str | None) -> dict[str, str]:
        return {"X-Forwarded-For": ip} if ip else {}

    async def token(self, client_id: str, secret: str, *, ip: str | None = CLIENT_IP, scope: str | None = None):
        form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
        async with self.s.post(self.token_url, data=form, headers={**basic(client_id, secret), **self._ip(ip)}) as r:
            return r.status, await r.json(), dict(r.headers)

    def assertion(self, key, alg: str, kid: str, client_id: str, **claims) -> str:
        c = {"iss": client_id, "sub": client_id, "aud": self.token_url, "exp": int(self.clock()) + 240,
             "jti": str(uuid.uuid4()), **claims}
        return jwt.encode({k: v for k, v in c.items() if v is not None}, key, algorithm=alg, headers={"kid": kid})

    async def token_jwt(self, assertion: str, *, ip: str | None = CLIENT_IP):
        form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion}
        async with self.s.post(self.token_url, data=form, headers=self._ip(ip)) as r:
            return r.status, await r.json()

    async def bearer(self, client_id: str, secret: str, **kw) -> str:
        status, body, _ = await self.token(client_id, secret, **kw)
        assert status == 200, body
        return body["access_token"]

    async def get(self, tok: str, url: str, *, ip: str | None = CLIENT_IP, **headers):
        r = await self.s.get(url if url.startswith("http") else self.base + url, auto_decompress=False,
                             headers={"Authorization": f"Bearer {tok}", **self._ip(ip), **headers})
        await r.read()
        return r

    async def kickoff(self, tok: str, path: str = "/Group/all/$export", params=None, *, ip: str | None = CLIENT_IP):
        r = await self.s.get(self.base + path, params=params,
                             headers={"Authorization": f"Bearer {tok}", **FHIR, **self._ip(ip)})
        await r.read()
        return r

    async def wait(self, tok: str, url: str, *, ip: str | None = CLIENT_IP) -> dict:
        end = time.monotonic() + 120
        while True:
            self.clock.advance(3)  # honour Retry-After on the server's clock
            r = await self.get(tok, url, ip=ip)
            if r.status != 202:
                assert r.status == 200, await r.text()
                return await r.json()
            assert time.monotonic() < end, "job still running after 120 s"
            await asyncio.sleep(0.05)

    async def export(self, tok: str, path: str = "/Group/all/$export", params=None) -> tuple[dict, dict]:
        """Kick off, wait, download: (manifest, resource type → sorted ids)."""
        r = await self.kickoff(tok, path, params)
        assert r.status == 202, await r.text()
        manifest = await self.wait(tok, r.headers["Content-Location"])
        got: dict[str, list] = {}
        for item in manifest["output"]:
            f = await self.get(tok, item["url"], **{"Accept-Encoding": "gzip"})
            assert f.status == 200 and f.headers["Content-Encoding"] == "gzip"
            lines = gzip.decompress(await f.read()).splitlines()
            assert len(lines) == item["count"]
            got.setdefault(item["type"], []).extend(json.loads(line)["id"] for line in lines)
        return manifest, {k: sorted(v) for k, v in got.items()}


async def outcome(r: aiohttp.ClientResponse, status: int) -> str:
    assert r.status == status, await r.text()
    body = json.loads(await r.read())
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["details"]["text"]


@contextlib.asynccontextmanager
async def world_server(data: Path, db: AccessDB, clock: FixedClock, **kw):
    """The server over access_world's tables, trusting X-Forwarded-For from loopback only."""
    cfg = ServerConfig(data_dir=str(data), workers=1, chunk_size=4, retry_after=3,
                       exporter="tests.access_world:world_exporter", trusted_proxies=["127.0.0.1"], **kw)
    app = create_app(cfg, access=db, clock=clock, population=TablePopulation(build_store))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Client(session, f"http://127.0.0.1:{runner.addresses[0][1]}/api/v2", clock, app)
    finally:
        await runner.cleanup()


def issue(db: AccessDB, org: str, *, now: float = NOW - DAY, **kw):
    """A sandbox credential of `org` issued by its data-ops user: (credential, secret, user)."""
    ops, _ = add_user(db, org, "data_ops")
    cred, secret = db.credentials.issue(ops, org, now=now, **kw)
    return cred, secret, ops


def attest(db: AccessDB, org: str, contract: str, when: float):
    ceo, _ = add_user(db, org, "attestor", "CEO", now=when - DAY)
    db.orgs.attest(ceo, org, contract, now=when)
    return ceo


def eobs(got: dict) -> set[str]:
    return set(got.get("ExplanationOfBenefit", []))


def run(coro):
    return asyncio.run(coro)


# -- credentials × checks -------------------------------------------------------------------------


def test_credentials_matrix(tmp_path, keys):
    db = make_db(tmp_path / "access.sqlite", rate_burst=20)
    good, good_secret, ops = issue(db, "A0001")
    old, old_secret, _ = issue(db, "A0001", now=NOW - 91 * DAY)  # secrets last 90 days
    doomed, doomed_secret, _ = issue(db, "A0001")
    rot, rot_secret, _ = issue(db, "A0001")
    fenced, fenced_secret, _ = issue(db, "A0001", ips=["203.0.113.0/24"])
    jwks = {"keys": [jwk_of(keys["rsa"], "rsa-1"), jwk_of(keys["ec"], "ec-1")]}
    signer, none, _ = issue(db, "A0001", secret=False, jwks=jwks)
    assert none is None
    other, other_secret, _ = issue(db, "D0001")
    clock = FixedClock(NOW)

    async def scenario():
        async with world_server(tmp_path / "d", db, clock) as c:
            # Secrets: good, wrong, expired, unknown client.
            status, body, _ = await c.token(good.client_id, good_secret)
            assert status == 200 and body["expires_in"] == 1200 and body["scope"] == "system/*.read"
            for cid, secret, fragment in ((good.client_id, good_secret + "x", "not valid"),
                                          (old.client_id, old_secret, "expired"),
                                          (str(uuid.uuid4()), good_secret, "not valid")):
                status, body, headers = await c.token(cid, secret)
                assert (status, body["error"]) == (401, "invalid_client") and fragment in body["error_description"]
                assert headers["WWW-Authenticate"].startswith("Basic")

            # Revoked: no new token, and the token already handed out stops working at once.
            tok = await c.bearer(doomed.client_id, doomed_secret)
            assert (await c.kickoff(tok, params={"_type": "Patient"})).status == 202
            db.credentials.revoke(ops, doomed.id, now=clock(), reason="leaked")
            assert (await c.token(doomed.client_id, doomed_secret))[0] == 401
            assert "revoked" in await outcome(await c.kickoff(tok, params={"_type": "Coverage"}), 401)
            assert "revoked" in await outcome(await c.get(tok, "/jobs"), 401)

            # Rotated: the old secret and its tokens are refused, the new one works.
            tok = await c.bearer(rot.client_id, rot_secret)
            new_secret = db.credentials.rotate(ops, rot.id, now=clock())
            assert (await c.token(rot.client_id, rot_secret))[0] == 401
            assert "rotated" in await outcome(await c.get(tok, "/jobs"), 401)
            assert (await c.get(await c.bearer(rot.client_id, new_secret), "/jobs")).status == 200

            # IP allowlist, on the token endpoint and on every request.
            status, body, _ = await c.token(fenced.client_id, fenced_secret, ip="198.51.100.7")
            assert status == 401 and "198.51.100.7 are not allowed" in body["error_description"]
            assert (await c.token(fenced.client_id, fenced_secret, ip=None))[0] == 401  # loopback: no test mode
            tok = await c.bearer(fenced.client_id, fenced_secret, ip="203.0.113.77")
            assert (await c.get(tok, "/jobs", ip="203.0.113.77")).status == 200
            assert "not allowed" in await outcome(await c.get(tok, "/jobs", ip="198.51.100.7"), 403)
            # A client cannot smuggle an allowed address left of its own.
            r = await c.get(tok, "/jobs", ip="203.0.113.77, 198.51.100.7")
            assert r.status == 403

            # SMART assertions: RS384 and ES384 work once; replay, audience, expiry, keys are checked.
            for key, alg, kid in ((keys["rsa"], "RS384", "rsa-1"), (keys["ec"], "ES384", "ec-1")):
                a = c.assertion(key, alg, kid, signer.client_id)
                status, body = await c.token_jwt(a)
                assert status == 200 and body["expires_in"] == 300, body
                assert (await c.get(body["access_token"], "/jobs")).status == 200
                status, body = await c.token_jwt(a)
                assert (status, body["error"]) == (401, "invalid_client") and "jti was already used" in body["error_description"]
            refusals = [
                (c.assertion(keys["ec"], "ES384", "ec-1", signer.client_id, aud="https://elsewhere.example/auth/token"),
                 "aud must be " + c.token_url),
                (c.assertion(keys["ec"], "ES384", "ec-1", signer.client_id, exp=int(clock()) - 60), "expired"),
                (c.assertion(keys["ec"], "ES384", "ec-1", signer.client_id, exp=int(clock()) + 3600), "ahead"),
                (c.assertion(keys["stranger"], "ES384", "ec-1", signer.client_id), "signature"),
                (c.assertion(keys["ec"], "ES384", "nope", signer.client_id), "no registered key"),
                (c.assertion(keys["rsa"], "RS384", "rsa-1", other.client_id), "no registered key"),
            ]
            for a, fragment in refusals:
                status, body = await c.token_jwt(a)
                assert (status, body["error"]) == (401, "invalid_client") and fragment in body["error_description"], body

            # Wrong audience of an access token: one minted for another server (another key) is refused.
            forged = jwt.encode({"iss": "fhirhose", "sub": good.client_id, "org": "A0001", "cid": good.id,
                                 "env": "sandbox", "scope": "system/*.read", "amr": "secret", "sat": good.secret_at,
                                 "iat": int(clock()), "exp": int(clock()) + 60, "jti": "x"}, "k" * 32, algorithm="HS256")
            assert "signature" in await outcome(await c.get(forged, "/jobs"), 401)

            # Per-organization token rate limit (D0001 has its own bucket).
            for _ in range(20):
                assert (await c.token(other.client_id, other_secret))[0] == 200
            status, body, headers = await c.token(other.client_id, other_secret)
            assert status == 429 and int(headers["Retry-After"]) >= 1 and body["error"] == "temporarily_unavailable"
            assert (await c.token(good.client_id, good_secret))[0] == 200  # A0001 is not throttled
            clock.advance(60)
            assert (await c.token(other.client_id, other_secret))[0] == 200

            # Suspension stops every request of the organization at once.
            tok = await c.bearer(good.client_id, good_secret)
            db.orgs.set_active(Actor.system(), "A0001", False, now=clock())
            assert "suspended" in await outcome(await c.get(tok, "/jobs"), 403)
            assert (await c.token(good.client_id, good_secret))[0] == 401

        # Every token request was audited, refusals with their reason and address.
        denied = [e for e in db.audit.recent(fenced.id, 50) if e.action == "token.issue" and e.outcome == "denied"]
        assert {e.ip for e in denied} == {"198.51.100.7", "127.0.0.1"}

    run(scenario())


def test_other_organizations_job_and_files(tmp_path):
    db = make_db(tmp_path / "access.sqlite")
    a, a_secret, _ = issue(db, "A0001")
    d, d_secret, _ = issue(db, "D0001")
    clock = FixedClock(NOW)

    async def scenario():
        async with world_server(tmp_path / "d", db, clock) as c:
            ta, td = await c.bearer(a.client_id, a_secret), await c.bearer(d.client_id, d_secret)
            manifest, _ = await c.export(ta, params={"_type": "Patient"})
            r = await c.kickoff(ta, params={"_type": "Coverage"})
            status_url = r.headers["Content-Location"]
            file_url = manifest["output"][0]["url"]
            job = file_url.split("/")[-2]
            assert "another organization" in await outcome(await c.get(td, status_url), 403)
            assert "another organization" in await outcome(await c.get(td, file_url), 403)
            r = await c.s.delete(status_url, headers={"Authorization": f"Bearer {td}"})
            assert r.status == 403
            r = await c.s.head(file_url, headers={"Authorization": f"Bearer {td}"})
            assert r.status == 403
            await outcome(await c.get(td, f"/jobs/{uuid.uuid4().hex}"), 404)
            await outcome(await c.get(ta, f"/data/{job}/ExplanationOfBenefit-00000-001.ndjson.gz"), 404)
            await outcome(await c.get(ta, f"/data/{job}/..%2F..%2Faccess.sqlite"), 404)
            assert (await (await c.get(td, "/jobs")).json())["jobs"] == []
            assert len((await (await c.get(ta, "/jobs")).json())["jobs"]) == 2
            assert (await c.get(ta, file_url)).status == 200  # the owner still can
            await c.wait(ta, status_url)

        # The audit log: A0001's kick-offs and download, D0001's refused attempts, with addresses.
        mine = db.audit.for_org("A0001", 50)
        kick = [e for e in mine if e.action == "export.kickoff"]
        assert len(kick) == 2 and all(e.ip == CLIENT_IP and e.outcome == "ok" for e in kick)
        assert {e.detail["job"] for e in kick} >= {job}
        assert kick[-1].detail["beneficiaries"] == 4 and kick[-1].detail["types"] == ["Patient"]
        dl = [e for e in mine if e.action == "export.download"]
        assert [(e.detail["job"], e.detail["file"]) for e in dl] == [(job, file_url.rsplit("/", 1)[1])] * 2
        theirs = [(e.action, e.outcome, e.detail.get("job")) for e in db.audit.for_org("D0001", 50)
                  if e.action.startswith("export.")]
        assert sorted(theirs) == sorted([("export.status", "denied", status_url.rsplit("/", 1)[1]),
                                         ("export.download", "denied", job), ("export.download", "denied", job),
                                         ("export.cancel", "denied", status_url.rsplit("/", 1)[1])])

    run(scenario())


# -- organizations × rules -------------------------------------------------------------------------


def test_rules_matrix(tmp_path):
    db = make_db(tmp_path / "access.sqlite")
    creds = {org: issue(db, org)[:2] for org in ("A0001", "D0001", "C0001", "P0001", "Z0001", "Z0002")}
    attest(db, "Z0001", "S1234", FEB10)  # S5678 is never attested; Z0002 has no attestor at all
    clock = FixedClock(NOW)

    async def scenario():
        async with world_server(tmp_path / "d", db, clock) as c:
            tok = {org: await c.bearer(cred.client_id, secret) for org, (cred, secret) in creds.items()}

            # SSP: latest roster (0-4) minus the opted-out 3 (1's opt-out is not in effect yet); all history.
            manifest, got = await c.export(tok["A0001"])
            assert got["Patient"] == ["-0", "-1", "-2", "-4"]
            assert eobs(got) == carrier([0, 1, 2, 4]) | pde([0, 1, 2, 4]) and SUD_CLAIM not in eobs(got)
            rules = manifest["extension"][RULES_EXT]
            assert any("opt-out: 1 beneficiaries" in r for r in rules) and any("42 CFR Part 2" in r for r in rules)

            # Runout: the prior year's roster, claims serviced through Dec 31.
            manifest, got = await c.export(tok["A0001"], "/Group/runout/$export")
            assert got["Patient"] == ["-5", "-6"]
            assert eobs(got) == carrier([5, 6], lambda d: d <= "2023-12-31") | pde([5, 6], lambda d: d <= "2023-12-31")
            assert "runout: claims serviced through 2023-12-31" in manifest["extension"][RULES_EXT]

            # Group/all + _since: 4 joined the roster since then and gets everything; the others only
            # what changed. Patient/$export has no such rule.
            since = {"_since": "2024-03-01T00:00:00Z"}
            changed = lambda d: d >= "2024-02-20"  # noqa: E731  (loaded ten days after service)
            _, got = await c.export(tok["A0001"], params=since)
            assert got["Patient"] == ["-4"]
            assert eobs(got) == carrier([0, 1, 2], changed) | pde([0, 1, 2], changed) | carrier([4]) | pde([4])
            _, got = await c.export(tok["A0001"], "/Patient/$export", params=since)
            assert "Patient" not in got and eobs(got) == carrier([0, 1, 2, 4], changed) | pde([0, 1, 2, 4], changed)

            # REACH: three years back from the performance year; 3 opted out.
            _, got = await c.export(tok["D0001"])
            assert got["Patient"] == ["-2", "-7"]
            assert eobs(got) == carrier([2, 7], lambda d: d >= "2021-01-01") | pde([2, 7])

            # KCC: the roster is 106 days old.
            text = await outcome(await c.kickoff(tok["C0001"]), 404)
            assert "loaded 2024-03-01 is 106 days old" in text and "no data until a newer one" in text

            # Provider: recent attributions (8, 9; 7's is past 90 days), claims of the last 18 months.
            _, got = await c.export(tok["P0001"], "/Patient/$export")
            assert got["Patient"] == ["-8", "-9"]
            assert eobs(got) == carrier([8, 9], lambda d: d >= "2022-12-15") | pde([8, 9])

            # Sponsor: enrolled months from the attestation on, claims only, not S5678 (unattested).
            expected = {"5-20240301", "5-20240520", "5-20240410", "6-20240301"}  # 5-20240105 predates it
            manifest, got = await c.export(tok["Z0001"])
            assert set(got) == {"ExplanationOfBenefit"} and eobs(got) == expected
            assert any("S5678 not attested" in r for r in manifest["extension"][RULES_EXT])
            _, got = await c.export(tok["Z0001"], "/Group/S1234/$export")
            assert eobs(got) == expected
            _, got = await c.export(tok["Z0001"], "/Patient/$export", params={"_type": "ExplanationOfBenefit"})
            assert eobs(got) == expected
            assert "no attestor" in await outcome(await c.kickoff(tok["Z0001"], "/Group/S5678/$export"), 403)
            await outcome(await c.kickoff(tok["Z0001"], "/Group/S9999/$export"), 404)  # another sponsor's
            assert "Patient" in await outcome(await c.kickoff(tok["Z0001"], params={"_type": "Patient"}), 403)
            text = await outcome(await c.kickoff(tok["Z0002"]), 403)
            assert "no attestor is in place" in text and "CEO, CFO or COO" in text

            # No organization kind has a system-level export.
            assert "Group/all/$export" in await outcome(await c.kickoff(tok["A0001"], "/$export"), 403)

            # Attribution status (BCDA): roster and runout load dates.
            r = await c.get(tok["A0001"], "/attribution_status")
            assert await r.json() == {"ingestion_dates": [
                {"type": "default", "timestamp": "2024-05-01", "performance_year": 2024},
                {"type": "runout", "timestamp": "2024-04-01", "performance_year": 2023}]}
            assert (await c.get("nope", "/attribution_status")).status == 401

        refused = [e for e in db.audit.for_org("Z0001", 100) if e.action == "export.kickoff" and e.outcome == "denied"]
        assert sorted(e.detail["status"] for e in refused) == [403, 403, 404]

    run(scenario())


def test_sponsor_runout_and_attestor_leaving(tmp_path):
    db = make_db(tmp_path / "access.sqlite")
    cid, secret, _ = issue(db, "Z0001")
    ceo = attest(db, "Z0001", "S1234", dt.datetime(2023, 3, 1, tzinfo=UTC).timestamp())
    clock = FixedClock(NOW)

    async def scenario():
        async with world_server(tmp_path / "d", db, clock) as c:
            tok = await c.bearer(cid.client_id, secret)
            # Runout: 2023's enrolled months since the March attestation, serviced through Dec 31.
            manifest, got = await c.export(tok, "/Group/runout/$export")
            assert eobs(got) == {"5-20230315", "5-20231220", "5-20230601"}
            _, got = await c.export(tok)
            assert eobs(got) == {"5-20230315", "5-20231220", "5-20230601", "5-20240105", "5-20240301",
                                 "5-20240410", "5-20240520", "6-20240301"}
            # The last attestor leaves: no data at all, a clear 403.
            db.orgs.remove_user(Actor.system(), ceo.user_id, now=clock())
            text = await outcome(await c.kickoff(tok, params={"_since": "2024-01-01T00:00:00Z"}), 403)
            assert "no attestor is in place for contract S1234" in text

    run(scenario())


def test_restart_resumes_with_the_planned_scope(tmp_path):
    """A job keeps the scope it was planned with: after a restart it exports exactly that,
    although planning it again now would be refused (the attestor left meanwhile)."""
    db = make_db(tmp_path / "access.sqlite")
    cred, secret, _ = issue(db, "Z0001")
    ceo = attest(db, "Z0001", "S1234", FEB10)
    data = tmp_path / "d"
    data.mkdir()
    (data / "hold").touch()
    clock = FixedClock(NOW)

    async def first():
        async with world_server(data, db, clock) as c:
            tok = await c.bearer(cred.client_id, secret)
            r = await c.kickoff(tok)
            assert r.status == 202
            end = time.monotonic() + 60
            while not (data / "exports.log").exists():
                assert time.monotonic() < end, "the chunk never started"
                await asyncio.sleep(0.02)
            return r.headers["Content-Location"], tok

    url, tok = run(first())
    db.orgs.remove_user(Actor.system(), ceo.user_id, now=clock())
    (data / "hold").unlink()
    # The first server's worker finishes its (unrecorded) chunk; let it leave before resuming.
    tmp = data / "jobs" / url.rsplit("/", 1)[1] / ".chunk-00000"
    end = time.monotonic() + 60
    while tmp.exists():
        assert time.monotonic() < end, "the first server's worker never finished"
        time.sleep(0.02)

    async def second():
        async with world_server(data, db, clock) as c:
            assert (await c.kickoff(tok)).status == 403  # a new plan is refused now
            manifest = await c.wait(tok, f"/jobs/{url.rsplit('/', 1)[1]}")  # same job, new port
            got: set[str] = set()
            for item in manifest["output"]:
                f = await c.get(tok, item["url"], **{"Accept-Encoding": "identity"})
                got |= {json.loads(line)["id"] for line in (await f.read()).splitlines()}
            assert got == {"5-20240301", "5-20240520", "5-20240410", "6-20240301"}
            assert any("attested 2024-02-10" in r for r in manifest["extension"][RULES_EXT])

    run(second())
