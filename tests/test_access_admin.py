"""`fhirhose admin` and the aiohttp token/admin endpoints over real HTTP on 127.0.0.1."""

import asyncio
import base64
import json

import aiohttp
from aiohttp import web

from fhirhose.access import AccessConfig, AccessDB
from fhirhose.cli import main
from fhirhose.server.web_admin import add_routes


def run(capsys, db, *args):
    assert main(["admin", "--database", str(db), *args]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_cli_lifecycle(database, capsys):
    """On both engines: `--database PATH` and `--database postgresql://...`."""
    db = database("access")
    assert run(capsys, db, "init") == {"db": str(db), "created": getattr(database, "engine", "sqlite") == "sqlite"}
    assert run(capsys, db, "org-create", "Z0001", "sponsor", "Sponsor Inc")["kind"] == "sponsor"
    run(capsys, db, "contract-add", "Z0001", "S1234")
    ops = run(capsys, db, "user-add", "Z0001", "Dana Ops", "dana@z.example", "data_ops")
    ceo = run(capsys, db, "user-add", "Z0001", "Cy Exec", "cy@z.example", "attestor", "--title", "ceo")
    assert ceo["title"] == "CEO"
    cred = run(capsys, db, "--user-key", ops["admin_key"], "cred-issue", "Z0001", "--label", "etl", "--ip", "203.0.113.0/28")
    assert cred["env"] == "sandbox" and len(cred["client_secret"]) > 30
    assert run(capsys, db, "cred-ips", cred["id"], "203.0.113.9", "198.51.100.0/24") == ["198.51.100.0/24", "203.0.113.9/32"]
    attested = run(capsys, db, "--user-key", ceo["admin_key"], "attest", "Z0001", "--contract", "S1234")
    assert list(attested["attested"]) == ["S1234"]
    # An operations user cannot attest; the refusal is a clean error, not a traceback.
    assert main(["admin", "--db", str(db), "--user-key", ops["admin_key"], "attest", "Z0001", "--contract", "S1234"]) == 2
    assert "needs role attestor" in capsys.readouterr().err
    new = run(capsys, db, "cred-rotate", cred["id"])["client_secret"]
    assert new != cred["client_secret"]
    run(capsys, db, "cred-revoke", cred["id"], "--reason", "rotated out")
    entries = run(capsys, db, "--user-key", ops["admin_key"], "audit", "--credential", cred["id"])
    assert [e["action"] for e in entries] == ["credential.revoke", "credential.rotate", "credential.set_ips", "credential.set_ips", "credential.issue"]
    listed = run(capsys, db, "--user-key", ceo["admin_key"], "cred-list", "Z0001")
    assert listed[0]["revoked_at"] is not None and "client_secret" not in listed[0]


def test_http_token_and_admin_endpoints(tmp_path):
    db = AccessDB(tmp_path / "access.db", AccessConfig(scrypt_n=2**12, token_url="http://127.0.0.1/auth/token"))
    jobs = {("job-1", "A0001")}

    async def scenario():
        app = web.Application()
        svc = add_routes(app, db, operator_key="operator-secret-key", job_completed=lambda j, o: (j, o) in jobs)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        op = {"Authorization": "Bearer operator-secret-key"}
        try:
            async with aiohttp.ClientSession() as http:
                async def call(method, path, headers=None, **kw):
                    async with http.request(method, base + path, headers=headers, **kw) as r:
                        return r.status, await r.json(), r.headers

                st, org, _ = await call("POST", "/admin/orgs", op, json={"id": "A0001", "kind": "ssp", "name": "ACO"})
                assert st == 201 and org["id"] == "A0001"
                st, ops, _ = await call("POST", "/admin/orgs/A0001/users", op, json={"name": "O", "email": "o@a.example", "role": "data_ops"})
                ops_h = {"Authorization": f"Bearer {ops['admin_key']}"}
                st, body, _ = await call("POST", "/admin/orgs", ops_h, json={"id": "A0002", "kind": "ssp", "name": "x"})
                assert st == 403 and "operator" in body["error_description"]
                st, body, _ = await call("POST", "/admin/orgs/A0001/credentials", {"Authorization": "Bearer nope"}, json={})
                assert st == 401
                st, cred, _ = await call("POST", "/admin/orgs/A0001/credentials", ops_h, json={"label": "etl", "ips": ["10.1.2.0/24"]})
                assert st == 201
                basic = "Basic " + base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()
                form = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": basic}
                st, body, hdr = await call("POST", "/auth/token", form, data="grant_type=client_credentials")
                assert (st, body["error"]) == (401, "invalid_client") and "127.0.0.1" in body["error_description"]
                assert hdr["WWW-Authenticate"].startswith("Basic")
                st, _, _ = await call("PUT", f"/admin/credentials/{cred['id']}/ips", ops_h, json={"ips": ["127.0.0.1"]})
                assert st == 200
                st, tok, hdr = await call("POST", "/auth/token", form, data="grant_type=client_credentials")
                assert st == 200 and tok["token_type"] == "bearer" and hdr["Cache-Control"] == "no-store"
                p = await asyncio.get_running_loop().run_in_executor(None, svc.verify_access_token, tok["access_token"], "127.0.0.1")
                assert p.org_id == "A0001"
                st, body, _ = await call("POST", "/auth/token", form, data="grant_type=password")
                assert (st, body["error"]) == (400, "unsupported_grant_type")
                st, body, _ = await call("POST", "/admin/orgs/A0001/production", ops_h, json={"job_id": "job-1"})
                assert st == 403 and "attestation" in body["error_description"]
                st, body, _ = await call("POST", f"/admin/credentials/{cred['id']}/revoke", ops_h, json={"reason": "test"})
                assert st == 200
                st, body, _ = await call("POST", "/auth/token", form, data="grant_type=client_credentials")
                assert st == 401 and "revoked" in body["error_description"]
                st, entries, _ = await call("GET", f"/admin/credentials/{cred['id']}/audit?limit=3", ops_h)
                assert [e["action"] for e in entries] == ["token.issue", "credential.revoke", "token.issue"]
                assert entries[0]["ip"] == "127.0.0.1" and entries[0]["outcome"] == "denied"
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_access_authenticator_plugs_into_the_server_interface(tmp_path):
    from fhirhose import AuthError
    from fhirhose.access import Actor
    from fhirhose.server.web_auth import PRINCIPAL, AccessAuthenticator

    db = AccessDB(tmp_path / "access.db", AccessConfig(scrypt_n=2**12))
    db.orgs.create(Actor.system(), "Z0001", "sponsor", "Sponsor")
    ops, _ = db.orgs.add_user(Actor.system(), "Z0001", "O", "o@z.example", "data_ops")
    cred, secret = db.credentials.issue(Actor.user(ops.id), "Z0001", ips=["127.0.0.1"])
    auth = AccessAuthenticator(db)
    assert auth.smart_configuration("http://h/fhir").token_endpoint == "http://h/fhir/auth/token"

    async def whoami(request):
        who = await auth.authenticate(request)
        assert request[PRINCIPAL] is who
        return web.json_response({"org": who.org_id, "kind": who.org_kind, "types": list(who.types)})

    async def scenario():
        app = web.Application()
        auth.setup(app, "/fhir")
        app.router.add_get("/fhir/whoami", whoami)

        @web.middleware
        async def auth_errors(request, handler):
            try:
                return await handler(request)
            except AuthError as e:  # as the server maps it
                return web.json_response({"error": str(e)}, status=e.status)

        app.middlewares.append(auth_errors)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/fhir"
        try:
            async with aiohttp.ClientSession() as http:
                basic = "Basic " + base64.b64encode(f"{cred.client_id}:{secret}".encode()).decode()
                async with http.post(f"{base}/auth/token", data="grant_type=client_credentials",
                                     headers={"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"}) as r:
                    tok = (await r.json())["access_token"]
                async with http.get(f"{base}/whoami", headers={"Authorization": f"Bearer {tok}"}) as r:
                    assert await r.json() == {"org": "Z0001", "kind": "sponsor", "types": ["ExplanationOfBenefit"]}
                async with http.get(f"{base}/whoami", headers={"Authorization": f"Bearer {tok}x"}) as r:
                    assert r.status == 401
                async with http.get(f"{base}/whoami") as r:
                    assert r.status == 401
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
