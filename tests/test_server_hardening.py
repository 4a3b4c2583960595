"""Server hardening (issue 10): never a bare 500, never a hang. Real server on 127.0.0.1,
raw sockets where a client misbehaves below HTTP."""

import asyncio
import base64
import json
import logging

import pytest

from fhirhose.access import AccessDB, Actor
from fhirhose.server import TablePopulation

from .support.server import ACCESS, async_test, database_url, running
from .test_server_api import expect_outcome

# Every test here runs on SQLite and on PostgreSQL (conftest `server_engine`): the
# throttle and the known addresses are shared by the nodes of one database.
pytestmark = pytest.mark.usefixtures("server_engine")

FORM = "application/x-www-form-urlencoded"


async def raw_exchange(port: int, *parts: bytes, pause: float = 0.3) -> tuple[int, dict[str, str], bytes]:
    """Send `parts` on one connection, `pause` seconds apart; read the whole response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), 30)
        return status, headers, body
    finally:
        writer.close()


def port_of(h) -> int:
    return int(h.base.split(":")[2].split("/")[0])


@async_test
async def test_token_body_split_across_tcp_segments_is_read_whole(tmp_path):
    async with running(tmp_path) as h:
        c = h.clients["small-aco"]
        auth = base64.b64encode(f"{c['client_id']}:{c['secret']}".encode()).decode()
        head = (f"POST /api/v2/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {FORM}\r\n"
                f"Authorization: Basic {auth}\r\nContent-Length: 29\r\nConnection: close\r\n\r\n").encode()
        status, _, body = await raw_exchange(port_of(h), head + b"grant_type=client_cr", b"edentials")
        assert status == 200, body
        assert json.loads(body)["token_type"] == "bearer"


@async_test
async def test_instants_outside_the_calendar_once_in_utc_are_400(tmp_path):
    async with running(tmp_path) as h:
        for name, value in (("_since", "0001-01-01T00:00:00+14:00"), ("_until", "9999-12-31T23:59:59-14:00")):
            r = await h.kickoff("small-aco", params={name: value})
            await expect_outcome(r, 400, expression=name)
            body = {"resourceType": "Parameters", "parameter": [{"name": name, "valueInstant": value}]}
            r = await h.kickoff("small-aco", json_body=body)
            await expect_outcome(r, 400, expression=name)


@async_test
async def test_manifest_page_that_is_not_ascii_digits_is_400(tmp_path):
    (tmp_path / "hold").write_text("0")  # the job stays in progress: the partial manifest is what is asked
    async with running(tmp_path) as h:
        r = await h.kickoff("small-aco", params={"allowPartialManifests": "true"})
        assert r.status == 202
        url = r.headers["Content-Location"]
        for page in ("%C2%B2", "%D9%A3", "1" * 40):
            r = await h.session.get(f"{url}?page={page}", headers=await h.headers("small-aco"))
            await expect_outcome(r, 400, expression="page")
        (tmp_path / "hold").unlink()


@async_test
async def test_two_value_x_in_one_parameter_is_400(tmp_path):
    async with running(tmp_path) as h:
        body = {"resourceType": "Parameters",
                "parameter": [{"name": "_type", "valueString": "Patient", "valueCode": "Coverage"}]}
        r = await h.kickoff("small-aco", json_body=body)
        assert "more than one value[x]" in await expect_outcome(r, 400)


@async_test
async def test_an_unexpected_exception_is_a_json_operation_outcome(tmp_path, caplog):
    def broken_tables():
        raise RuntimeError("population tables unreadable")

    async with running(tmp_path, population=TablePopulation(broken_tables)) as h:
        with caplog.at_level(logging.ERROR, logger="fhirhose.server"):
            r = await h.kickoff("small-aco")
            text = await expect_outcome(r, 500)
        assert "population tables unreadable" not in text  # details stay in the log
        assert any("population tables unreadable" in str(rec.exc_info) for rec in caplog.records)


@async_test
async def test_ip_allowlist_is_checked_before_the_secret(tmp_path):
    async with running(tmp_path) as h:
        c = h.clients["small-aco"]
        db = AccessDB(database_url(tmp_path) or tmp_path / "access.sqlite", ACCESS)
        db.credentials.set_ips(Actor.system("tests"), c["credential"], ["192.0.2.0/24"])
        db.close()
        answers = []
        for secret in (c["secret"], "wrong"):
            async with h.session.post(f"{h.base}/auth/token", data={"grant_type": "client_credentials"},
                                      headers=h.basic("small-aco", secret)) as r:
                answers.append((r.status, await r.json()))
        assert answers[0] == answers[1]  # the right secret and a wrong one look the same
        assert answers[0][0] == 401 and "not allowed" in answers[0][1]["error_description"]


@async_test
async def test_a_kickoff_body_that_never_arrives_is_408_not_a_hang(tmp_path):
    async with running(tmp_path, body_timeout=0.5) as h:
        # A kick-off body announced but never sent: 408 after the body timeout, not a hang.
        head = (f"POST /api/v2/$export HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                f"{await h.token('small-aco')}\r\nPrefer: respond-async\r\nAccept: application/fhir+json\r\n"
                "Content-Type: application/fhir+json\r\nContent-Length: 50\r\nConnection: close\r\n\r\n").encode()
        status, headers, body = await raw_exchange(port_of(h), head + b'{"resourceType":')
        assert status == 408 and headers["content-type"].startswith("application/fhir+json")
        assert json.loads(body)["issue"][0]["expression"] == ["body"]


async def token_status(h, name: str, secret: str | None = None) -> tuple[int, dict, dict]:
    async with h.session.post(f"{h.base}/auth/token", data={"grant_type": "client_credentials"},
                              headers=h.basic(name, secret)) as r:
        return r.status, dict(r.headers), await r.json()


@async_test
async def test_failed_client_authentication_backs_off_exponentially_and_ends(tmp_path):
    async with running(tmp_path) as h:
        waits = []
        for _ in range(3):
            for _ in range(10):
                assert (await token_status(h, "small-aco", "wrong"))[0] == 401
            status, headers, body = await token_status(h, "small-aco")  # even the right secret waits
            assert status == 429 and body["error"] == "temporarily_unavailable", body
            waits.append(int(headers["Retry-After"]))
            assert (await token_status(h, "big-aco"))[0] == 200  # another client from the same address
            h.clock.advance(waits[-1] - 1)
            assert (await token_status(h, "small-aco"))[0] == 429  # refused attempts do not extend it
            h.clock.advance(2)
        assert waits == [30, 60, 120]
        assert (await token_status(h, "small-aco"))[0] == 200  # the lock ends; a success forgets the strikes
        for _ in range(10):
            await token_status(h, "small-aco", "wrong")
        assert int((await token_status(h, "small-aco"))[1]["Retry-After"]) == 30
        # The counts live in the access database: another server over it sees the lock.
        async with running(tmp_path, clock=h.clock) as other:
            assert (await token_status(other, "small-aco"))[0] == 429


def test_an_attacker_elsewhere_cannot_lock_a_client_out_of_its_known_address(tmp_path):
    from fhirhose.access import TokenService
    from fhirhose.access.tokens import TokenError, TokenRequest

    from .support.server import basic, register_harness_clients

    c = register_harness_clients(tmp_path)["small-aco"]
    svc = TokenService(AccessDB(database_url(tmp_path) or tmp_path / "access.sqlite", ACCESS))

    def ask(secret: str, ip: str, now: float = 1e9):
        req = TokenRequest.parse(b"grant_type=client_credentials", FORM,
                                 basic(c["client_id"], secret)["Authorization"])
        try:
            return svc.issue(req, ip, now)
        except TokenError as e:
            return e.status

    assert not isinstance(ask(c["secret"], "198.51.100.1"), int)  # the client's usual address
    for i in range(20):  # at most 7 failures from each of 3 addresses: only the client id is locked
        assert ask("guess", f"203.0.113.{i % 3}") == 401
    assert ask("guess", "203.0.113.0") == 429
    assert ask(c["secret"], "203.0.113.99") == 429  # a new address waits
    assert not isinstance(ask(c["secret"], "198.51.100.1"), int)  # the known one does not


@async_test
async def test_admin_api_refuses_loose_bodies_and_unknown_organizations(tmp_path):
    async with running(tmp_path) as h:
        root = h.base.removesuffix("/api/v2")
        op = {"Authorization": "Bearer " + (tmp_path / "operator.key").read_text().strip()}

        async def call(method, path, body=None):
            kw = {} if body is None else {"data": body if isinstance(body, bytes) else json.dumps(body)}
            async with h.session.request(method, root + path, headers=op, **kw) as r:
                return r.status, await r.json()

        status, body = await call("GET", "/admin/orgs/NOPE/credentials")
        assert status == 404 and "NOPE" in body["error_description"]
        assert (await call("GET", "/admin/orgs/NOPE/audit"))[0] == 404
        # No such route under the admin prefix (the fuzzer's `cred` = "['#']" cuts the path at
        # the '#'): the admin API's JSON error too, and a wrong method says which are allowed.
        status, body = await call("GET", "/admin/credentials/['")
        assert status == 404 and set(body) == {"error", "error_description"}
        async with h.session.delete(root + "/admin/orgs", headers=op) as r:
            assert r.status == 405 and r.content_type == "application/json" and "POST" in r.headers["Allow"]
        for bad, field in (({"secret": "no"}, "$.secret"), ({"label": {"a": 1}}, "$.label"),
                           ({"ips": "10.0.0.1"}, "$.ips"), ({"label": "x", "surprise": 1}, "surprise")):
            status, body = await call("POST", "/admin/orgs/A0001/credentials", bad)
            assert status == 400 and field in body["error_description"], (bad, body)
        for raw in (b"[]", b"null", b"{", b'"x"'):
            assert (await call("POST", "/admin/orgs/A0001/credentials", raw))[0] == 400
        assert (await call("POST", "/admin/orgs", {"id": "", "kind": "ssp", "name": "x"}))[0] == 400
        status, body = await call("POST", "/admin/orgs/A0001/credentials", {"label": "etl", "secret": True})
        assert status == 201 and body["label"] == "etl" and body["client_secret"]
