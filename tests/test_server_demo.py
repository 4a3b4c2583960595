"""`fhirhose serve --demo` plumbing: credentials.json shape and a sandbox client that works."""

import json

import msgspec

from fhirhose.server.auth import load_clients, verify_secret
from fhirhose.server.demo import ensure_demo

from .server_support import STORE_ORGS, build_store


def test_demo_credentials(tmp_path):
    data = tmp_path / "demo"
    build_store(data / "store")
    creds = ensure_demo(data, "http://127.0.0.1:8123/api/v2")
    doc = json.loads((data / "credentials.json").read_text())
    assert doc["fhir_base"] == "http://127.0.0.1:8123/api/v2"
    assert [(c["organization"], c["kind"], c["beneficiaries"]) for c in doc["clients"]] == [
        (org, kind, n) for org, kind, n in STORE_ORGS]
    registered = load_clients(data / "clients.json")
    for c in doc["clients"]:
        assert set(c) == {"organization", "kind", "client_id", "client_secret", "jwk", "groups", "beneficiaries"}
        assert c["groups"] == ["all", "runout"]
        jwk = c["jwk"]
        assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "P-384", "ES384") and jwk["kid"] and jwk["d"]
        rec = registered[c["client_id"]]
        assert verify_secret(c["client_secret"], rec.secret_hash) and c["client_secret"] not in rec.secret_hash
        (public,) = rec.jwks["keys"]
        assert public["kid"] == jwk["kid"] and "d" not in public
    assert (data / "credentials.json").stat().st_mode & 0o077 == 0

    # A second start on another port keeps the registrations and rewrites only fhir_base.
    again = ensure_demo(data, "http://127.0.0.1:9999/api/v2")
    assert again.fhir_base.endswith(":9999/api/v2")
    assert msgspec.to_builtins(again.clients) == msgspec.to_builtins(creds.clients)
