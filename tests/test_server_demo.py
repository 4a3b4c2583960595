"""`fhirhose serve --demo` plumbing: credentials.json shape, registrations in the access DB."""

import json

import msgspec

from fhirhose.access import AccessDB
from fhirhose.server.demo import ensure_demo

from .support.server import ACCESS, STORE_ORGS, build_store


def test_demo_credentials(tmp_path):
    data = tmp_path / "demo"
    build_store(data / "store")
    db = AccessDB(data / "access.sqlite", ACCESS)
    creds = ensure_demo(data, "http://127.0.0.1:8123/api/v2", db)
    doc = json.loads((data / "credentials.json").read_text())
    assert set(doc) == {"fhir_base", "fhir_base_v3", "clients", "console"}
    assert doc["fhir_base_v3"] is None  # no v3 base given
    assert doc["fhir_base"] == "http://127.0.0.1:8123/api/v2"
    # Beneficiaries Group/all gives each today: the roster; the sponsor's enrollees since attestation.
    assert [(c["organization"], c["kind"], c["beneficiaries"]) for c in doc["clients"]] == [
        (org, kind, n) for org, kind, n in STORE_ORGS]
    for c in doc["clients"]:
        assert set(c) == {"organization", "kind", "client_id", "client_secret", "jwk", "groups", "beneficiaries",
                          "model"}
        assert c["model"] == ("sponsor" if c["kind"] == "pdp" else "ssp")
        assert c["groups"] == ["all", "runout"]
        jwk = c["jwk"]
        assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "P-384", "ES384") and jwk["kid"] and jwk["d"]
        cred = db.credentials.by_client_id(c["client_id"])
        assert cred.org_id == c["organization"] and cred.env == "sandbox" and cred.revoked_at is None
        assert db.credentials.verify_secret(cred, c["client_secret"])
        assert not db.credentials.verify_secret(cred, c["client_secret"] + "x")
        alg, public = db.credentials.key(cred.id, jwk["kid"])
        assert alg == "ES384" and "d" not in public and (public["x"], public["y"]) == (jwk["x"], jwk["y"])
        kind = db.orgs.get(c["organization"]).kind
        assert kind == ("sponsor" if c["kind"] == "pdp" else "ssp")
    assert list(db.orgs.attested_contracts("S1234")) == ["S1234"]
    raw = b"".join(p.read_bytes() for p in data.glob("access.sqlite*"))  # the WAL too
    assert all(c["client_secret"].encode() not in raw for c in doc["clients"])
    assert (data / "credentials.json").stat().st_mode & 0o077 == 0

    # A second start on another port keeps the registrations and rewrites only fhir_base.
    again = ensure_demo(data, "http://127.0.0.1:9999/api/v2", db)
    assert again.fhir_base.endswith(":9999/api/v2")
    assert msgspec.to_builtins(again.clients) == msgspec.to_builtins(creds.clients)
    assert len(db.orgs.list()) == len(STORE_ORGS)
    assert msgspec.to_builtins(again.console.users) == msgspec.to_builtins(creds.console.users)
    assert again.console.url == "http://127.0.0.1:9999/console/"


def test_demo_console_users(tmp_path):
    """One console sign-in per role of each demo organization and an operator; each works."""
    from fhirhose.access.users import ConsoleUsers

    data = tmp_path / "demo"
    build_store(data / "store")
    db = AccessDB(data / "access.sqlite", ACCESS)
    ensure_demo(data, "http://127.0.0.1:8123/api/v2", db)
    console = json.loads((data / "credentials.json").read_text())["console"]
    assert console["url"] == "http://127.0.0.1:8123/console/"
    got = sorted((u["organization"] or "", u["role"]) for u in console["users"])
    assert got == [("", "operator"), ("A0001", "aco_executive"), ("A0001", "credential_delegate"),
                   ("S1234", "attestor"), ("S1234", "data_operations_specialist")]
    users = ConsoleUsers(db)
    for u in console["users"]:
        assert set(u) == {"email", "password", "organization", "role"}
        assert users.sign_in(u["email"], u["password"], "127.0.0.1").role == u["role"]
    raw = b"".join(p.read_bytes() for p in data.glob("access.sqlite*"))
    assert all(u["password"].encode() not in raw for u in console["users"])


def test_demo_sandbox_on_postgresql(tmp_path, pg_cluster):
    """`serve --demo --database postgresql://...`: the same sandbox, registered in PostgreSQL
    (secrets hashed there too). PostgreSQL only: the SQLite sandbox is the test above."""
    name, url = pg_cluster.create_database()
    data = tmp_path / "demo"
    build_store(data / "store")
    db = AccessDB(url, ACCESS)
    try:
        creds = ensure_demo(data, "http://127.0.0.1:8123/api/v2", db)
        assert [c.organization for c in creds.clients] == [org for org, _, _ in STORE_ORGS]
        for c in creds.clients:
            cred = db.credentials.by_client_id(c.client_id)
            assert db.credentials.verify_secret(cred, c.client_secret)
        stored = [bytes(r[0]) for r in db.conn.execute("SELECT hash FROM credentials")]
        assert all(c.client_secret.encode() not in h for c in creds.clients for h in stored)
        assert not list(data.glob("access.sqlite*"))  # nothing fell back to a SQLite file
        again = ensure_demo(data, "http://127.0.0.1:9999/api/v2", db)
        assert msgspec.to_builtins(again.clients) == msgspec.to_builtins(creds.clients)
        from fhirhose.access.users import ConsoleUsers

        users = ConsoleUsers(db)  # the console's people live in PostgreSQL too, and sign in
        assert {u.role for u in creds.console.users} >= {"operator", "attestor"}
        for u in creds.console.users:
            assert users.sign_in(u.email, u.password, "127.0.0.1").role == u.role
    finally:
        db.close()
        pg_cluster.drop_database(name)
