"""SMART Backend Services client assertions and access-token integrity.

Assertions are signed with PyJWT (an independent JWS implementation); hostile
ones (alg none, HS256 with the public key, wrong kid ...) are built by hand."""

import base64
import hashlib
import hmac
import json
import uuid
from functools import partial

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhirhose import AuthError, InputError
from fhirhose.access import ASSERTION_TYPE, TokenError, TokenRequest, TokenService

from .support.access_world import DAY, NOW, add_user, make_db

FORM = "application/x-www-form-urlencoded"
IP = "203.0.113.7"
TOKEN_URL = "https://fhirhose.example/auth/token"


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP384R1())


def jwk(private, kid):
    pub = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()) if isinstance(private, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    return {**pub, "kid": kid}


@pytest.fixture
def world(database, rsa_key, ec_key):
    """Every test here runs on SQLite and on PostgreSQL."""
    db = make_db(database("a"), token_url=TOKEN_URL)
    ops = add_user(db, "A0001", "data_ops")[0]
    jwks = {"keys": [jwk(rsa_key, "rsa-1"), jwk(ec_key, "ec-1")]}
    cred, secret = db.credentials.issue(ops, "A0001", secret=False, jwks=jwks, ips=[IP], now=NOW - DAY)
    assert secret is None
    return db, ops, cred


def claims(client_id, **over):
    c = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": int(NOW) + 240, "jti": str(uuid.uuid4())}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def assertion(key, alg, kid, payload, headers=None):
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, **(headers or {})})


def request(db, token, now=NOW, extra=""):
    body = f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={token}{extra}"
    return TokenService(db).issue(TokenRequest.parse(body.encode(), FORM, None), IP, now=now)


def refused(fn, fragment=""):
    with pytest.raises(TokenError) as e:
        fn()
    assert (e.value.oauth_error, e.value.status) == ("invalid_client", 401), str(e.value)
    assert fragment in str(e.value)
    return e.value


def b64(obj):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_rs384_and_es384_assertions_get_five_minute_tokens(world, rsa_key, ec_key):
    db, _, cred = world
    for key, alg, kid in ((rsa_key, "RS384", "rsa-1"), (ec_key, "ES384", "ec-1")):
        tok = request(db, assertion(key, alg, kid, claims(cred.client_id)))
        assert tok.expires_in == 300
        p = TokenService(db).verify_access_token(tok.access_token, IP, now=NOW + 299)
        assert (p.org_id, p.credential_id) == ("A0001", cred.id)
        with pytest.raises(AuthError):
            TokenService(db).verify_access_token(tok.access_token, IP, now=NOW + 300)


def test_replayed_jti_refused(world, rsa_key):
    db, _, cred = world
    payload = claims(cred.client_id)
    request(db, assertion(rsa_key, "RS384", "rsa-1", payload))
    refused(lambda: request(db, assertion(rsa_key, "RS384", "rsa-1", payload), now=NOW + 5), "already used")
    # The same jti from a fresh signature is still a replay.
    refused(lambda: request(db, assertion(rsa_key, "RS384", "rsa-1", {**payload, "exp": payload["exp"] + 10}), now=NOW + 6))


def test_claims_checks(world, rsa_key):
    db, _, cred = world
    cid = cred.client_id
    bad = {
        "aud": claims(cid, aud="https://elsewhere.example/token"),
        "expired": claims(cid, exp=int(NOW) - 60),
        "more than 300": claims(cid, exp=int(NOW) + 600),
        "iss and sub": claims(cid, sub="someone-else"),
        "exp must be a number": claims(cid, exp="soon"),
        "needs a jti": claims(cid, jti=None),
        "iat": claims(cid, iat=int(NOW) + 3600),
        "not a registered client": claims("not-a-client", sub="not-a-client"),
    }
    for fragment, payload in bad.items():
        refused(partial(request, db, assertion(rsa_key, "RS384", "rsa-1", payload)), fragment)
    refused(lambda: request(db, assertion(rsa_key, "RS384", "rsa-1", claims(cid)), extra="&client_id=other"), "client_id")


def test_key_selection(world, rsa_key, ec_key):
    db, ops, cred = world
    cid = cred.client_id
    refused(lambda: request(db, assertion(rsa_key, "RS384", "rsa-9", claims(cid))), "no registered key")
    refused(lambda: request(db, assertion(rsa_key, "RS384", "ec-1", claims(cid))), "registered for ES384")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(lambda: request(db, assertion(other, "RS384", "rsa-1", claims(cid))), "signature is not valid")
    tok = request(db, assertion(rsa_key, "RS384", "rsa-1", claims(cid)))
    db.credentials.revoke_key(ops, cred.id, "rsa-1", now=NOW + 1)
    refused(lambda: request(db, assertion(rsa_key, "RS384", "rsa-1", claims(cid)), now=NOW + 2), "no registered key")
    with pytest.raises(AuthError, match="removed"):
        TokenService(db).verify_access_token(tok.access_token, IP, now=NOW + 3)


def test_algorithm_confusion_refused(world, rsa_key):
    db, _, cred = world
    payload = claims(cred.client_id)
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def hand_signed(alg, key):
        head = b64({"alg": alg, "kid": "rsa-1", "typ": "JWT"})
        body = b64(payload)
        sig = b"" if key is None else hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{b64(sig)}"

    refused(lambda: request(db, hand_signed("none", None)), "alg")
    refused(lambda: request(db, hand_signed("HS256", pem)), "alg")
    refused(lambda: request(db, assertion(rsa_key, "RS256", "rsa-1", payload)), "alg")
    refused(lambda: request(db, assertion(rsa_key, "PS384", "rsa-1", payload)), "alg")


def test_assertion_credential_is_bound_to_its_ips_and_revocation(world, rsa_key):
    db, ops, cred = world
    svc = TokenService(db)
    body = f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion="
    tok = assertion(rsa_key, "RS384", "rsa-1", claims(cred.client_id))
    refused(lambda: svc.issue(TokenRequest.parse((body + tok).encode(), FORM, None), "192.0.2.1", now=NOW), "not allowed")
    db.credentials.revoke(ops, cred.id, now=NOW + 1)
    refused(lambda: request(db, assertion(rsa_key, "RS384", "rsa-1", claims(cred.client_id)), now=NOW + 2), "revoked")


def test_key_registration_rules(world, rsa_key, ec_key):
    db, ops, cred = world
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p256 = ec.generate_private_key(ec.SECP256R1())
    private = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key))
    cases = {
        "2048": jwk(small, "small"),
        "P-384": jwk(p256, "p256"),
        "private key": {**private, "kid": "priv"},
        "kid": {k: v for k, v in jwk(rsa_key, "x").items() if k != "kid"},
        "already has": jwk(rsa_key, "rsa-1"),
        "does not fit": {**jwk(ec_key, "ec-2"), "alg": "RS384"},
    }
    for fragment, key in cases.items():
        with pytest.raises(InputError, match=fragment):
            db.credentials.register_key(ops, cred.id, key)
    with pytest.raises(InputError, match="https"):
        db.credentials.set_jwks_url(ops, cred.id, "http://keys.example/jwks.json")


def test_jwks_url_keys_through_the_servers_fetcher(world, ec_key):
    db, ops, cred = world
    db.credentials.set_jwks_url(ops, cred.id, "https://client.example/jwks.json")
    fetched = []

    def fetch(url):
        fetched.append(url)
        return {"keys": [jwk(ec_key, "rotated-ec")]}

    svc = TokenService(db, jwks_fetcher=fetch)
    body = f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion="
    tok = assertion(ec_key, "ES384", "rotated-ec", claims(cred.client_id))
    svc.issue(TokenRequest.parse((body + tok).encode(), FORM, None), IP, now=NOW)
    assert fetched == ["https://client.example/jwks.json"]


def test_access_token_tampering(world, rsa_key):
    db, _, cred = world
    svc = TokenService(db)
    good = request(db, assertion(rsa_key, "RS384", "rsa-1", claims(cred.client_id))).access_token
    head, body, sig = good.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged_org = f"{head}.{b64({**payload, 'org': 'D0001'})}.{sig}"
    alg_none = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{body}."
    longer = f"{head}.{b64({**payload, 'exp': payload['exp'] + 3600})}.{sig}"
    for bad in (forged_org, alg_none, longer, good + "x", "", None, "a.b.c"):
        with pytest.raises(AuthError) as e:
            svc.verify_access_token(bad, IP, now=NOW)
        assert e.value.status == 401


def test_es256_access_tokens(tmp_path, rsa_key):
    db = make_db(tmp_path / "es.db", token_url=TOKEN_URL, token_alg="ES256")
    ops = add_user(db, "A0001", "data_ops")[0]
    cred, secret = db.credentials.issue(ops, "A0001", now=NOW - DAY)
    auth = "Basic " + base64.b64encode(f"{cred.client_id}:{secret}".encode()).decode()
    tok = TokenService(db).issue(TokenRequest.parse(b"grant_type=client_credentials", FORM, auth), IP, now=NOW)
    assert json.loads(base64.urlsafe_b64decode(tok.access_token.split(".")[0] + "=="))["alg"] == "ES256"
    assert TokenService(db).verify_access_token(tok.access_token, IP, now=NOW).org_id == "A0001"
    # The HS256 key of another server (or an attacker's) does not verify here.
    hs = jwt.encode({"iss": "fhirhose"}, "k" * 32, algorithm="HS256")
    with pytest.raises(AuthError):
        TokenService(db).verify_access_token(hs, IP, now=NOW)
