"""Property-based fuzzing of token requests and access-token verification:
whatever arrives, the only outcomes are an AuthError or a principal of the
organization that really owns the credential."""

import base64
import json
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fhirhose import AuthError
from fhirhose.access import ASSERTION_TYPE, TokenRequest, TokenService

from .support.access_world import DAY, NOW, add_user, make_db

FORM = "application/x-www-form-urlencoded"
IP = "203.0.113.7"
TOKEN_URL = "https://fhirhose.example/auth/token"
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3), max_leaves=8)
times = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**62), 2**62), st.just(NOW))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    db = make_db(tmp_path_factory.mktemp("fuzz") / "a.db", token_url=TOKEN_URL)
    key = ec.generate_private_key(ec.SECP384R1())
    pub = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": "k1"}
    ops_a = add_user(db, "A0001", "data_ops")[0]
    cred_a, secret_a = db.credentials.issue(ops_a, "A0001", jwks={"keys": [pub]}, ips=[IP], now=NOW - DAY)
    ops_d = add_user(db, "D0001", "data_ops")[0]
    cred_d, secret_d = db.credentials.issue(ops_d, "D0001", ips=[IP], now=NOW - DAY)
    svc = TokenService(db)
    auth = "Basic " + base64.b64encode(f"{cred_a.client_id}:{secret_a}".encode()).decode()
    good = svc.issue(TokenRequest.parse(b"grant_type=client_credentials", FORM, auth), IP, now=NOW).access_token
    return {"db": db, "svc": svc, "key": key, "a": (cred_a, secret_a), "d": (cred_d, secret_d), "good": good}


@FUZZ
@given(body=st.binary(max_size=300), ctype=st.text(max_size=40) | st.just(FORM), authz=st.none() | st.text(max_size=80), ip=st.text(max_size=20))
def test_token_request_parsing_only_raises_auth_errors(world, body, ctype, authz, ip):
    try:
        req = TokenRequest.parse(body, ctype, authz)
        world["svc"].issue(req, ip, now=NOW)
    except AuthError:
        return
    pytest.fail("a token was issued for random input")


form_values = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@FUZZ
@given(
    fields=st.dictionaries(
        st.sampled_from(["grant_type", "scope", "client_assertion_type", "client_assertion", "client_id", "x"]),
        form_values | st.sampled_from(["client_credentials", ASSERTION_TYPE, "system/*.read"]),
    ),
    user=form_values,
    password=form_values,
    with_basic=st.booleans(),
)
def test_structured_token_requests(world, fields, user, password, with_basic):
    from urllib.parse import urlencode

    authz = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if with_basic else None
    try:
        world["svc"].issue(TokenRequest.parse(urlencode(fields).encode(), FORM, authz), IP, now=NOW)
    except AuthError:
        return
    pytest.fail("random credentials were accepted")


@FUZZ
@given(header=st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "jku"]), json_values), payload=st.dictionaries(st.sampled_from(["iss", "sub", "aud", "exp", "jti", "iat", "nbf"]), json_values), fill=st.booleans(), now=times)
def test_assertions_with_hostile_headers_and_claims(world, header, payload, fill, now):
    cred, _ = world["a"]
    if fill:
        base = {"iss": cred.client_id, "sub": cred.client_id, "aud": TOKEN_URL, "exp": int(NOW) + 60, "jti": str(uuid.uuid4())}
        payload = {**base, **payload}
        header = {"alg": "ES384", "kid": "k1", **header}
    raw = json.dumps(payload).encode()
    if fill and header.get("alg") == "ES384" and isinstance(header.get("kid"), str):
        # Correctly signed: only the claims and extra header members are hostile.
        extra = {k: v for k, v in header.items() if k != "alg"}
        signed = jwt.api_jws.PyJWS().encode(raw, world["key"], algorithm="ES384", headers=extra)
    else:
        head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
        signed = f"{head}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.AAAA"
    form = f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={signed}"
    try:
        tok = world["svc"].issue(TokenRequest.parse(form.encode(), FORM, None), IP, now=now)
    except AuthError:
        return
    p = world["svc"].verify_access_token(tok.access_token, IP, now=now if isinstance(now, int) and abs(now - NOW) < 60 else NOW)
    assert p.org_id == "A0001" and p.client_id == cred.client_id


def _mutations():
    segment = st.sampled_from([0, 1, 2])
    return st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10_000), st.characters(codec="ascii")),
        st.tuples(st.just("claims"), st.dictionaries(st.sampled_from(["org", "cid", "sub", "env", "exp", "iat", "scope", "amr", "sat", "iss"]), json_values, min_size=1), st.none()),
        st.tuples(st.just("header"), st.dictionaries(st.sampled_from(["alg", "typ", "kid"]), json_values, min_size=1), st.none()),
        st.tuples(st.just("drop"), segment, st.none()),
    )


@FUZZ
@given(mutation=_mutations(), now=times, ip=st.text(max_size=40) | st.just(IP))
def test_verify_access_token_never_yields_a_foreign_principal(world, mutation, now, ip):
    good = world["good"]
    parts = good.split(".")
    kind, a, b = mutation
    if kind == "flip":
        i = a % len(good)
        token = good[:i] + b + good[i + 1 :]
    elif kind == "claims":
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=="))
        parts[1] = base64.urlsafe_b64encode(json.dumps({**payload, **a}).encode()).rstrip(b"=").decode()
        token = ".".join(parts)
    elif kind == "header":
        head = json.loads(base64.urlsafe_b64decode(parts[0] + "=="))
        parts[0] = base64.urlsafe_b64encode(json.dumps({**head, **a}).encode()).rstrip(b"=").decode()
        token = ".".join(parts)
    else:
        token = ".".join(p for i, p in enumerate(parts) if i != a)
    try:
        p = world["svc"].verify_access_token(token, ip, now=now)
    except AuthError:
        return
    assume(token != good)
    # Only a change that leaves the signed bytes intact (e.g. base64 padding bits) may pass.
    assert p.org_id == "A0001" and p.client_id == world["a"][0].client_id


@FUZZ
@given(token=st.text(max_size=200) | st.binary(max_size=100).map(lambda b: base64.urlsafe_b64encode(b).decode()), now=times, ip=st.text(max_size=40))
def test_verify_random_tokens(world, token, now, ip):
    with pytest.raises(AuthError):
        world["svc"].verify_access_token(token, ip, now=now)
