"""The server enforcing the access rules end to end, over real HTTP on 127.0.0.1.

Two worlds:

- `access_world`: ten beneficiaries with hand-picked rosters, opt-outs, enrollment
  and claims (ids "<bene>-<yyyymmdd>"), so each organization × credential × rule
  case states exactly which beneficiaries and claims come out. The server plans with
  `plan_scope` and its worker processes export through the real Exporter
  (`access_world.world_exporter`), at a pinned clock (2024-06-15).
- a small synthetic store (`fhirhose.synth`) registered by the demo code, served
  by the production exporter and templates; what each organization gets is counted
  from the store's tables by an independent per-row oracle.

The access_world tests run on both engines (`database`); the synthetic-store matrix and
the fuzzers run on SQLite only, for time: they exercise rules and parsing, not storage.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import gzip
import http.client
import json
import multiprocessing
import shutil
import sqlite3
import ssl
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, urlencode

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fhirhose.access import ASSERTION_TYPE, AccessDB, Actor, Scope
from fhirhose.server import RULES_EXT, ServerConfig, TablePopulation, create_admin_app, create_app

from .support.access_world import DAY, NOW, SUD_CLAIM, UTC, add_user, build_store, carrier, make_db, pde
from .support.server import Clock as FixedClock  # pinned: FixedClock(t)
from .support.server import basic

FEB10 = dt.datetime(2024, 2, 10, tzinfo=UTC).timestamp()
CLIENT_IP = "203.0.113.5"  # where the tests' clients come from (X-Forwarded-For via the trusted loopback proxy)
FHIR = {"Accept": "application/fhir+json", "Prefer": "respond-async"}


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
    # On PostgreSQL the jobs go to the access database too (one --database for a node).
    kw.setdefault("database_url", db.sql.url if db.sql.engine == "postgresql" else None)
    kw.setdefault("lease", 2.0)  # a restarted node on PostgreSQL redoes a dead chunk after its lease
    cfg = ServerConfig(data_dir=str(data), workers=1, chunk_size=4, retry_after=3,
                       exporter="tests.support.access_world:world_exporter", trusted_proxies=["127.0.0.1"], **kw)
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


def test_credentials_matrix(database, tmp_path, keys):
    db = make_db(database("access"), rate_burst=20)
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


def test_other_organizations_job_and_files(database, tmp_path):
    db = make_db(database("access"))
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


def test_rules_matrix(database, tmp_path):
    db = make_db(database("access"))
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


def test_sponsor_runout_and_attestor_leaving(database, tmp_path):
    db = make_db(database("access"))
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


def test_restart_resumes_with_the_planned_scope(database, tmp_path):
    """A job keeps the scope it was planned with: after a restart it exports exactly that,
    although planning it again now would be refused (the attestor left meanwhile)."""
    db = make_db(database("access"))
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
    # Stopping the first server terminated its busy worker (the chunk was never recorded,
    # so the second server redoes it); wait until that process is gone.
    end = time.monotonic() + 30
    while multiprocessing.active_children():
        assert time.monotonic() < end, "the first server's worker outlived it"
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


# -- the admin API ------------------------------------------------------------------------------


def test_admin_api_behind_the_operator_key_and_production_onboarding(database, tmp_path):
    db = make_db(database("access"))
    a, a_secret, _ = issue(db, "A0001")
    clock = FixedClock(NOW)
    data = tmp_path / "d"

    async def scenario():
        async with world_server(data, db, clock) as c:
            admin = c.base.removesuffix("/api/v2") + "/admin"
            operator = {"Authorization": f"Bearer {(data / 'operator.key').read_text().strip()}"}
            assert (data / "operator.key").stat().st_mode & 0o077 == 0

            async def call(method, path, headers, body=None):
                async with c.s.request(method, admin + path, headers=headers, json=body) as r:
                    return r.status, await r.json()

            assert (await call("POST", "/orgs", {}, {"id": "A0901", "kind": "ssp", "name": "Q"}))[0] == 401
            assert (await call("POST", "/orgs", {"Authorization": "Bearer guess"}, {"id": "A0901", "kind": "ssp",
                                                                                   "name": "Q"}))[0] == 401
            status, org = await call("POST", "/orgs", operator, {"id": "A0901", "kind": "ssp", "name": "Q ACO"})
            assert status == 201 and org["kind"] == "ssp"
            status, ops = await call("POST", "/orgs/A0901/users", operator,
                                     {"name": "Ops", "email": "ops@q.example", "role": "data_ops"})
            assert status == 201
            ops_key = {"Authorization": f"Bearer {ops['admin_key']}"}
            status, cred = await call("POST", "/orgs/A0901/credentials", ops_key, {"ips": ["203.0.113.0/28"]})
            assert status == 201 and cred["client_secret"]
            assert (await c.token(cred["client_id"], cred["client_secret"]))[0] == 200  # 203.0.113.5
            status, _ = await call("PUT", f"/credentials/{cred['id']}/ips", ops_key, {"ips": ["192.0.2.1"]})
            assert status == 200
            assert (await c.token(cred["client_id"], cred["client_secret"]))[0] == 401  # at once
            # A user of A0901 cannot touch A0001's credentials.
            assert (await call("GET", "/orgs/A0001/credentials", ops_key))[0] == 403

            # Production needs an attestation and a completed sandbox export of this organization.
            status, a_ops = await call("POST", "/orgs/A0001/users", operator,
                                       {"name": "A ops", "email": "ops@a.example", "role": "data_ops"})
            status, a_ceo = await call("POST", "/orgs/A0001/users", operator,
                                       {"name": "A CEO", "email": "ceo@a.example", "role": "attestor", "title": "CEO"})
            a_ops_key = {"Authorization": f"Bearer {a_ops['admin_key']}"}
            tok = await c.bearer(a.client_id, a_secret)
            r = await c.kickoff(tok, params={"_type": "Patient"})
            job = r.headers["Content-Location"].rsplit("/", 1)[1]
            status, body = await call("POST", "/orgs/A0001/production", a_ops_key, {"job_id": job})
            assert status == 403 and "no attestation" in body["error_description"]
            assert (await call("POST", "/orgs/A0001/attestations", {"Authorization": f"Bearer {a_ceo['admin_key']}"},
                               {}))[0] == 201
            await c.wait(tok, r.headers["Content-Location"])
            status, body = await call("POST", "/orgs/A0001/production", a_ops_key, {"job_id": "0" * 32})
            assert status == 403 and "not a completed sandbox export" in body["error_description"]
            status, _ = await call("POST", "/orgs/A0001/production", a_ops_key, {"job_id": job})
            assert status == 200 and db.orgs.get("A0001").production_at is not None
            # Another organization cannot use A0001's job to get approved.
            status, q_ceo = await call("POST", "/orgs/A0901/users", operator,
                                       {"name": "Q CEO", "email": "ceo@q.example", "role": "attestor", "title": "CFO"})
            await call("POST", "/orgs/A0901/attestations", {"Authorization": f"Bearer {q_ceo['admin_key']}"}, {})
            status, body = await call("POST", "/orgs/A0901/production", ops_key, {"job_id": job})
            assert status == 403
            status, entries = await call("GET", "/orgs/A0001/audit", a_ops_key)
            assert status == 200 and {"export.kickoff", "production.request", "attest"} <= {e["action"] for e in entries}

    run(scenario())


def test_admin_api_on_its_own_port(database, tmp_path):
    db = make_db(database("access"))
    cfg = ServerConfig(data_dir=str(tmp_path / "d"), admin_prefix=None, workers=1)

    async def scenario():
        app = create_app(cfg, access=db, population=TablePopulation(build_store))
        runners = [web.AppRunner(app), web.AppRunner(create_admin_app(app))]
        ports = []
        for r in runners:
            await r.setup()
            await web.TCPSite(r, "127.0.0.1", 0).start()
            ports.append(r.addresses[0][1])
        operator = {"Authorization": f"Bearer {(tmp_path / 'd' / 'operator.key').read_text().strip()}"}
        body = {"id": "Q0002", "kind": "provider", "name": "Practice"}
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(f"http://127.0.0.1:{ports[0]}/admin/orgs", json=body, headers=operator) as r:
                    assert r.status == 404  # not on the public port
                async with s.post(f"http://127.0.0.1:{ports[1]}/admin/orgs", json=body, headers=operator) as r:
                    assert r.status == 201
                # A URL under the admin prefix that names no route: the admin API's own JSON
                # error, not a FHIR OperationOutcome (and not aiohttp's text/plain).
                async with s.get(f"http://127.0.0.1:{ports[1]}/admin/credentials/%5B'", headers=operator) as r:
                    assert r.status == 404 and r.content_type == "application/json"
                    assert set(await r.json()) == {"error", "error_description"}
                async with s.get(f"http://127.0.0.1:{ports[0]}/api/v2/no-such-route") as r:
                    assert r.status == 404 and r.content_type == "application/fhir+json"
            assert db.orgs.get("Q0002").kind == "provider"
        finally:
            for r in reversed(runners):
                await r.cleanup()

    run(scenario())


# -- public keys by URL --------------------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), the CA the client trusts for it."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextlib.asynccontextmanager
async def jwks_host(jwks: dict, tls: tuple[Path, Path] | None):
    """A client's key server on 127.0.0.1 (https with `tls`); yields (url, hit counter)."""
    hits = []

    async def serve(request):
        hits.append(request.path)
        return web.json_response(jwks)

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    ctx = None
    if tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*tls)
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx).start()
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{runner.addresses[0][1]}/.well-known/jwks.json", hits
    finally:
        await runner.cleanup()


def test_keys_by_jwks_url_over_https(database, tmp_path, keys):
    tls = self_signed(tmp_path)
    db = make_db(database("access"))
    cred, _, ops = issue(db, "A0001")
    clock = FixedClock(NOW)

    async def scenario():
        async with jwks_host({"keys": [jwk_of(keys["ec"], "hosted-ec")]}, tls) as (url, hits):
            db.credentials.set_jwks_url(ops, cred.id, url)
            async with world_server(tmp_path / "d", db, clock, jwks_ca_file=str(tls[0])) as c:
                for _ in range(2):
                    status, body = await c.token_jwt(c.assertion(keys["ec"], "ES384", "hosted-ec", cred.client_id))
                    assert status == 200, body
                    assert (await c.get(body["access_token"], "/jobs")).status == 200
                assert len(hits) == 1  # the key set is cached for a while
                status, body = await c.token_jwt(c.assertion(keys["ec"], "ES384", "other-kid", cred.client_id))
                assert status == 401 and "no registered key" in body["error_description"]
            # Without the CA the certificate is not trusted: no key, no token.
            async with world_server(tmp_path / "d2", db, clock) as c:
                status, body = await c.token_jwt(c.assertion(keys["ec"], "ES384", "hosted-ec", cred.client_id))
                assert status == 401 and len(hits) == 1

    run(scenario())


def test_jwks_fetcher_https_only_unless_test_mode_ttl_and_bad_documents(tmp_path, keys):
    from fhirhose.server.jwks import JwksError, JwksFetcher

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    now = [0.0]
    good = {"keys": [jwk_of(keys["ec"], "k")]}
    try:
        for doc, ok in ((good, True), ({"keys": "no"}, False), ([1, 2], False), ({"pad": "x" * 70000, "keys": []}, False)):
            host = jwks_host(doc, None)
            url, hits = asyncio.run_coroutine_threadsafe(host.__aenter__(), loop).result(10)
            try:
                with pytest.raises(JwksError, match="only https"):
                    JwksFetcher(loop)(url)
                fetch = JwksFetcher(loop, allow_http=True, ttl=30, clock=lambda: now[0])
                if not ok:
                    with pytest.raises(JwksError):
                        fetch(url)
                    continue
                assert fetch(url) == good and fetch(url) == good and len(hits) == 1
                now[0] += 31
                assert fetch(url) == good and len(hits) == 2
            finally:
                asyncio.run_coroutine_threadsafe(host.__aexit__(None, None, None), loop).result(10)
        with pytest.raises(JwksError):  # nobody listening
            JwksFetcher(loop, allow_http=True, timeout=2)(url)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# -- a synthetic store, the production exporter, an independent oracle --------------------------

SYNTH_AS_OF = dt.date(2025, 6, 30)
SYNTH_NOW = dt.datetime(2025, 7, 2, 12, tzinfo=UTC).timestamp()
SYNTH_TODAY = dt.date(2025, 7, 2)
_CLAIM_DATES = {"parta": ("clm_from_dt", "clm_thru_dt"), "partb": ("clm_from_dt", "clm_thru_dt"),
                "dme": ("clm_from_dt", "clm_thru_dt"), "pde": ("clm_line_from_dt", "clm_line_from_dt")}
_LOOKBACK = {"Shared Savings": None, "REACH": dt.date(2022, 1, 1), "KCC": dt.date(2023, 1, 1)}


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory):
    from fhirhose import synth

    root = tmp_path_factory.mktemp("synth")
    synth.write(root / "store", 500, seed=3, as_of=SYNTH_AS_OF)
    return root / "store"


def _day(days: int) -> dt.date | None:
    return None if days == -(2**31) else dt.date(1970, 1, 1) + dt.timedelta(days=int(days))


class Oracle:
    """What each organization may get, re-derived row by row from the store's tables
    and the rules as CMS states them (not from fhirhose.access)."""

    def __init__(self, tables):
        self.t = tables
        self.bene_ids = tables["bene"]["bene_id"].to_list()
        r = tables["roster"]
        self.roster = list(zip(r["org_id"].to_list(), r["roster_kind"].to_list(), r["performance_year"].values.tolist(),
                               r["file_date"].values.tolist(), r["bene_row"].values.tolist(), strict=True))
        o = tables["optout"]
        latest: dict[int, tuple] = {}
        for i, (b, pref, eff) in enumerate(zip(o["bene_row"].values.tolist(), o["pref_ind"].to_list(),
                                               o["effective_dt"].values.tolist(), strict=True)):
            if b >= 0 and _day(eff) is not None and _day(eff) <= SYNTH_TODAY:
                if b not in latest or (eff, i) >= latest[b][:2]:
                    latest[b] = (eff, i, pref)
        self.opted_out = {b for b, (_, _, pref) in latest.items() if pref == "N"}
        e = tables["enroll"]
        self.enroll = list(zip(e["bene_row"].values.tolist(), e["cntrct_id"].to_list(), e["year"].values.tolist(),
                               e["month_mask"].values.tolist(), strict=True))
        self.claims = []  # (table, clm_id, owner, from, thru, sud, last_updated ms)
        for name, (f, th) in _CLAIM_DATES.items():
            t = tables[name]
            owners = []
            off = tables["bene"].links[name].tolist()
            for b in range(len(off) - 1):
                owners += [b] * (off[b + 1] - off[b])
            self.claims += list(zip([name] * t.n, t["clm_id"].to_list(), owners, t[f].values.tolist(),
                                    t[th].values.tolist(), t["sud_ind"].to_list(), t["last_updated"].values.tolist(), strict=True))

    def aco(self, org: str, program: str, group: str) -> tuple[set[int], set[str]]:
        year, kind = (2025, "Y") if group == "all" else (2024, "R")
        rows = [x for x in self.roster if x[0] == org and x[1] == kind and x[2] == year]
        latest = max(x[3] for x in rows)
        benes = {x[4] for x in rows if x[3] == latest and x[4] >= 0} - self.opted_out
        start, end = _LOOKBACK[program], dt.date(2024, 12, 31) if group == "runout" else None
        claims = set()
        for _, cid, b, frm, thru, sud, _lu in self.claims:
            frm_d, thru_d = _day(frm), _day(thru) or _day(frm)
            if b not in benes or sud == "Y":
                continue
            if (start and (frm_d is None or thru_d < start)) or (end and (frm_d is None or frm_d > end)):
                continue
            claims.add(cid)
        return benes, claims

    def sponsor(self, contract: str, attested: dt.date) -> tuple[set[int], set[str]]:
        months: dict[tuple[int, int], set[int]] = {}
        for b, c, year, mask in self.enroll:
            if c != contract or b < 0:
                continue
            for m in range(1, 13):
                if mask >> (m - 1) & 1 and (year, m) >= (attested.year, attested.month) and (year, m) <= (2025, 7):
                    months.setdefault((b, year), set()).add(m)
        benes = {b for b, _ in months} - self.opted_out
        since_ms = dt.datetime.combine(attested, dt.time(), UTC).timestamp() * 1000
        claims = set()
        for _, cid, b, frm, thru, sud, lu in self.claims:
            frm_d, thru_d = _day(frm), _day(thru) or _day(frm)
            if b not in benes or sud == "Y" or frm_d is None or lu < since_ms or thru_d < attested:
                continue
            if frm_d.month in months.get((b, frm_d.year), ()):
                claims.add(cid)
        return benes, claims


@pytest.mark.slow
def test_synthetic_store_matrix_counted_by_an_independent_oracle(tmp_path, synth_store):
    from fhirhose.fhir.validate import validate_r4
    from fhirhose.server.demo import ensure_demo, sandbox_access_config, sandbox_orgs
    from fhirhose.store import Store

    data = tmp_path / "d"
    data.mkdir()
    shutil.copytree(synth_store, data / "store")
    db = AccessDB(data / "access.sqlite", sandbox_access_config(scrypt_n=2**12))
    clock = FixedClock(SYNTH_NOW)
    orgs = {o.org_id: o for o in sandbox_orgs(data / "store")}
    with Store.open(data / "store") as snap:
        oracle = Oracle(snap.tables)
    cases = [("A1001", "/Group/all/$export"), ("A1001", "/Group/runout/$export"), ("D1001", "/Group/all/$export"),
             ("K1001", "/Patient/$export"), ("S1001", "/Group/all/$export"), ("H1001", "/Group/H1001/$export")]

    async def scenario():
        cfg = ServerConfig(data_dir=str(data), workers=1, chunk_size=40, retry_after=3)
        app = create_app(cfg, access=db, clock=clock)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v2"
        creds = ensure_demo(data, base, db, now=clock())
        by_org = {x.organization: x for x in creds.clients}
        try:
            async with aiohttp.ClientSession() as s:
                c = Client(s, base, clock, app)
                for org_id, path in cases:
                    org = orgs[org_id]
                    x = by_org[org_id]
                    if org.kind == "pdp":
                        benes, claims = oracle.sponsor(org_id, org.attestation_date)
                        assert x.beneficiaries == len(benes)
                    else:
                        benes, claims = oracle.aco(org_id, org.program, "runout" if "runout" in path else "all")
                        if "runout" not in path:
                            assert x.beneficiaries == len(benes)
                    assert benes and claims, f"{org_id}: the oracle expects nothing; the case tests nothing"
                    manifest, got = await c.export(await c.bearer(x.client_id, x.client_secret, ip=None), path)
                    assert {i.partition("-")[2] for i in got["ExplanationOfBenefit"]} == claims, (org_id, path)
                    assert len(got["ExplanationOfBenefit"]) == len(claims)
                    if org.kind == "pdp":
                        assert set(got) == {"ExplanationOfBenefit"}
                    else:
                        assert got["Patient"] == sorted(oracle.bene_ids[b] for b in benes), (org_id, path)
                    rules = manifest["extension"][RULES_EXT]
                    assert rules[-1] == f"{len(benes)} beneficiaries in scope"
                    await validate_sample(c, x, manifest)
        finally:
            await runner.cleanup()

    async def validate_sample(c, x, manifest):
        tok = await c.bearer(x.client_id, x.client_secret, ip=None)
        for item in manifest["output"][:3]:
            f = await c.get(tok, item["url"], ip=None, **{"Accept-Encoding": "identity"})
            for line in (await f.read()).splitlines()[::25]:
                validate_r4(json.loads(line))

    run(scenario())


# -- fuzzing the token and kick-off endpoints ----------------------------------------------------

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# What each organization may ever receive in the world (any group, any rule).
MAY_GET = {"A0001": {0, 1, 2, 4, 5, 6}, "Z0001": {5, 6}}


@pytest.fixture(scope="module")
def live(tmp_path_factory, keys):
    """One server for all fuzz examples, on its own event loop thread; clients use http.client."""
    tmp = tmp_path_factory.mktemp("fuzz")
    db = make_db(tmp / "access.sqlite", rate_burst=100_000, rate_per_minute=1e6, throttle_failures=False)
    a, a_secret, _ = issue(db, "A0001", jwks={"keys": [jwk_of(keys["ec"], "ec-1")]})
    z, z_secret, _ = issue(db, "Z0001")
    attest(db, "Z0001", "S1234", FEB10)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    clock = FixedClock(NOW)

    async def start():
        cfg = ServerConfig(data_dir=str(tmp / "d"), workers=1, chunk_size=4, retry_after=1,
                           exporter="tests.support.access_world:world_exporter")
        runner = web.AppRunner(create_app(cfg, access=db, clock=clock, population=TablePopulation(build_store)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    env = SimpleNamespace(port=runner.addresses[0][1], data=tmp / "d", creds={"A0001": (a, a_secret),
                                                                              "Z0001": (z, z_secret)})
    env.token_url = f"http://127.0.0.1:{env.port}/api/v2/auth/token"
    env.tokens = {org: json.loads(http_call(env, "POST", "/api/v2/auth/token", b"grant_type=client_credentials",
                                            {"Content-Type": "application/x-www-form-urlencoded",
                                             **basic(cred.client_id, secret)})[1])["access_token"]
                  for org, (cred, secret) in env.creds.items()}
    env.key = keys["ec"]
    yield env
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def http_call(env, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body or b"")
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
                      max_size=60)
b64_json = st.dictionaries(st.sampled_from(["alg", "kid", "typ", "iss", "sub", "aud", "exp", "jti", "iat", "crit"]),
                           st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | header_text,
                           max_size=6).map(lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode())
jwt_like = st.one_of(
    header_text,
    st.tuples(b64_json, b64_json, st.text(alphabet="abcXYZ012-_", max_size=20)).map(".".join),
)


@FUZZ
@given(
    ctype=st.sampled_from(["application/x-www-form-urlencoded"] * 4 + ["application/json", "", "text/plain; charset=x"]),
    fields=st.fixed_dictionaries(
        {"grant_type": st.just("client_credentials") | header_text},
        optional={k: st.one_of(header_text, jwt_like, st.just(ASSERTION_TYPE), st.just("system/*.read"))
                  for k in ("scope", "client_id", "client_assertion", "client_assertion_type", "client_secret", "x")}),
    raw=st.none() | st.none() | st.binary(max_size=200),
    authz=st.none() | header_text | st.tuples(st.sampled_from(["A0001", "Z0001", "x"]), header_text).map(
        lambda t: "Basic " + base64.b64encode(f"{t[0]}:{t[1]}".encode("utf-8", "surrogatepass")).decode()),
    use_real_id=st.booleans(),
)
def test_fuzz_token_endpoint_never_5xx_never_a_token(live, ctype, fields, raw, authz, use_real_id):
    headers = {"Content-Type": ctype} if ctype else {}
    if authz is not None:
        if use_real_id and authz.startswith("Basic "):  # a real client id, a made-up secret
            cred = live.creds["A0001"][0]
            authz = "Basic " + base64.b64encode(f"{cred.client_id}:{authz[6:]}".encode()).decode()
        headers["Authorization"] = authz
    body = raw if raw is not None else urlencode(fields).encode()
    status, payload, _ = http_call(live, "POST", "/api/v2/auth/token", body, headers)
    event(f"HTTP {status}")
    assert status < 500, payload
    assert status != 200, payload
    if status in (400, 401):
        assert json.loads(payload)["error"] in ("invalid_request", "invalid_client", "invalid_grant", "invalid_scope",
                                                "unsupported_grant_type")


BREAKS = {
    "aud": lambda c, env: {**c, "aud": "https://elsewhere.example/auth/token"},
    "exp past": lambda c, env: {**c, "exp": int(NOW) - 60},
    "exp far": lambda c, env: {**c, "exp": int(NOW) + 3600},
    "exp text": lambda c, env: {**c, "exp": str(c["exp"])},
    "iat future": lambda c, env: {**c, "iat": int(NOW) + 600},
    "no jti": lambda c, env: {k: v for k, v in c.items() if k != "jti"},
    "sub": lambda c, env: {**c, "sub": env.creds["Z0001"][0].client_id},
    "iss": lambda c, env: {**c, "iss": "someone", "sub": "someone"},
    "replay": lambda c, env: {**c, "jti": "spent-once"},
}


@FUZZ
@given(
    breaks=st.lists(st.sampled_from(sorted(BREAKS)), max_size=2, unique=True),
    extra=st.dictionaries(st.sampled_from(["nbf", "iat", "exp", "aud", "jti"]),
                          st.none() | st.integers(-(2**62), 2**62) | st.floats(allow_nan=True) | header_text,
                          max_size=1),
    kid=st.sampled_from(["ec-1", "ec-1", "nope"]),
)
def test_fuzz_signed_assertions_exactly_the_valid_ones_pass(live, breaks, extra, kid):
    cred = live.creds["A0001"][0]
    claims = {"iss": cred.client_id, "sub": cred.client_id, "aud": live.token_url, "exp": int(NOW) + 120,
              "jti": str(uuid.uuid4())}
    if "replay" in breaks:  # spend it first
        http_call(live, "POST", "/api/v2/auth/token", _assertion_form(live, {**claims, "jti": "spent-once"}, "ec-1"),
                  {"Content-Type": "application/x-www-form-urlencoded"})
    claims.update(extra)  # before the breaks, so an extra claim cannot undo one (e.g. drop a future iat)
    for name in breaks:
        claims = BREAKS[name](claims, live)
    status, payload, _ = http_call(live, "POST", "/api/v2/auth/token", _assertion_form(live, claims, kid),
                                   {"Content-Type": "application/x-www-form-urlencoded"})
    event(f"HTTP {status}")
    assert status < 500, payload
    if not breaks and not extra and kid == "ec-1":
        assert status == 200, payload
    elif breaks or kid != "ec-1":
        assert status == 401, payload


def _assertion_form(live, claims: dict, kid: str) -> bytes:
    token = jwt.encode({k: v for k, v in claims.items() if v is not None}, live.key, algorithm="ES384",
                       headers={"kid": kid})
    return urlencode({"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                      "client_assertion": token}).encode()


dates = st.one_of(
    st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)).map(str),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1),
                 timezones=st.sampled_from([UTC, None])).map(lambda d: d.isoformat()),
    st.sampled_from(["2024-13-01", "2024-02-30T00:00:00Z", "+10000-01-01", "2024-01-01T25:00:00Z", "", "now",
                     "2024-01-01T00:00:00+99:00"]),
    header_text,
)
param_names = st.sampled_from(["_type", "_since", "_until", "_typeFilter", "_elements", "_outputFormat", "patient",
                               "allowPartialManifests", "organizeOutputBy", "includeAssociatedData", "x"])
param_values = st.one_of(dates, header_text,
                         st.sampled_from(["Patient", "ExplanationOfBenefit", "Coverage,Patient", "Observation",
                                          "ExplanationOfBenefit?service-date=ge2024-01-01",
                                          "ExplanationOfBenefit?_tag=FinalAction", "ndjson", "true", "Patient/-1"]))


def _only_own_data(live, org: str, job_id: str) -> None:
    conn = sqlite3.connect(f"file:{live.data / 'jobs.sqlite'}?mode=ro", uri=True)
    try:
        owner, raw = conn.execute("SELECT org_id, scope FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        conn.close()
    scope = Scope.from_bytes(raw)
    assert owner == scope.org_id == org
    assert set(scope.bene_rows.tolist()) <= MAY_GET[org]


@settings(FUZZ, max_examples=60)
@given(
    org=st.sampled_from(["A0001", "Z0001"]),
    path=st.one_of(*[st.sampled_from(["/Group/all/$export", "/Group/runout/$export", "/Patient/$export", "/$export",
                                       "/Group/S1234/$export"])] * 3,
                   st.text(alphabet="abcS0123-_.%", max_size=12).map(lambda g: f"/Group/{quote(g, safe='')}/$export")),
    params=st.just([]) | st.lists(st.tuples(param_names, param_values), max_size=4),
    prefer=st.one_of(*[st.sampled_from(["respond-async", "respond-async, handling=lenient", "", "handling=strict"])] * 3,
                     header_text),
    accept=st.one_of(*[st.sampled_from(["application/fhir+json", "*/*", "text/html"])] * 3, header_text),
    post=st.booleans(),
    token_mutation=st.sampled_from(["none"] * 6 + ["drop", "flip", "other-scheme"]),
)
def test_fuzz_kickoff_never_5xx_never_another_organizations_data(live, org, path, params, prefer, accept, post,
                                                                 token_mutation):
    tok = live.tokens[org]
    authz = {"none": f"Bearer {tok}", "drop": "", "flip": f"Bearer {tok[:-3]}{'A' if tok[-3] != 'A' else 'B'}{tok[-2:]}",
             "other-scheme": f"Basic {tok}"}[token_mutation]
    headers = {"Authorization": authz, "Prefer": prefer, "Accept": accept}
    if post:
        body = json.dumps({"resourceType": "Parameters", "parameter": [
            {"name": n, "valueReference": {"reference": v}} if n == "patient" else {"name": n, "valueString": v}
            for n, v in params]}).encode()
        status, payload, h = http_call(live, "POST", "/api/v2" + path, body,
                                       {**headers, "Content-Type": "application/fhir+json"})
    else:
        status, payload, h = http_call(live, "GET", "/api/v2" + path + ("?" + urlencode(params) if params else ""),
                                       None, headers)
    event(f"HTTP {status}")
    assert status < 500, payload
    if status != 202:
        if status >= 400 and payload:
            assert json.loads(payload)["resourceType"] == "OperationOutcome"
        return
    assert token_mutation == "none"
    job_id = h["Content-Location"].rsplit("/", 1)[1]
    _only_own_data(live, org, job_id)
    assert http_call(live, "DELETE", f"/api/v2/jobs/{job_id}", None, {"Authorization": f"Bearer {tok}"})[0] == 202
