"""Organizations, roles and client-secret credentials: who may do what, and when a
secret stops working."""

from functools import partial

import pytest

from fhirhose import AuthError, InputError
from fhirhose.access import AccessDB, Actor, PermissionDenied, TokenError, TokenRequest, TokenService

from .support.access_world import DAY, NOW, add_user, make_db
from .support.server import basic_authorization

FORM = "application/x-www-form-urlencoded"
ALLOWED_IP, OTHER_IP = "203.0.113.7", "198.51.100.9"


@pytest.fixture
def db(database):
    """Every test here runs on SQLite and on PostgreSQL."""
    d = make_db(database("access"))
    yield d
    d.close()


def token(db, client_id, secret, ip=ALLOWED_IP, now=NOW, body="grant_type=client_credentials"):
    return TokenService(db).issue(TokenRequest.parse(body.encode(), FORM, basic_authorization(client_id, secret)), ip, now=now)


def refused(fn, error="invalid_client", status=401):
    with pytest.raises(TokenError) as e:
        fn()
    assert (e.value.oauth_error, e.value.status) == (error, status), str(e.value)
    return str(e.value)


@pytest.fixture
def ops(db):
    return add_user(db, "A0001", "data_ops")[0]


@pytest.fixture
def issued(db, ops):
    cred, secret = db.credentials.issue(ops, "A0001", label="etl", ips=[ALLOWED_IP], now=NOW - DAY)
    return cred, secret


def test_secret_is_stored_as_scrypt_hash_never_plain(database):
    db = AccessDB(database("a"))
    db.orgs.create(Actor.system(), "A0002", "ssp", "ACO")
    ops = add_user(db, "A0002", "data_ops")[0]
    cred, secret = db.credentials.issue(ops, "A0002")
    row = db.conn.execute("SELECT salt, hash, kdf FROM credentials WHERE id=?", (cred.id,)).fetchone()
    assert row[2] == "scrypt:16384:8:1" and len(row[0]) == 16 and len(row[1]) == 32
    for table in ("credentials", "audit"):
        for row in db.conn.execute(f"SELECT * FROM {table}"):
            assert not any(secret.encode() in (v if isinstance(v, bytes) else str(v).encode()) for v in row)
    assert db.credentials.verify_secret(cred, secret) and not db.credentials.verify_secret(cred, secret + "x")


def test_basic_token_verifies_to_the_right_principal(db, issued):
    cred, secret = issued
    tok = token(db, cred.client_id, secret)
    assert tok.expires_in == 1200 and tok.scope == "system/*.read" and tok.token_type == "bearer"
    p = TokenService(db).verify_access_token(tok.access_token, ALLOWED_IP, now=NOW + 60)
    assert (p.org_id, p.client_id, p.credential_id, p.env) == ("A0001", cred.client_id, cred.id, "sandbox")
    assert p.types == ("Patient", "Coverage", "ExplanationOfBenefit")
    with pytest.raises(AuthError, match="expired") as e:
        TokenService(db).verify_access_token(tok.access_token, ALLOWED_IP, now=NOW + 1200)
    assert (e.value.status, e.value.oauth_error) == (401, "invalid_token")


def test_wrong_secret_and_unknown_client(db, issued):
    cred, secret = issued
    refused(lambda: token(db, cred.client_id, "nope"))
    refused(lambda: token(db, "00000000-0000-0000-0000-000000000000", secret))


def test_revoked_secret_refused_and_outstanding_tokens_die(db, ops, issued):
    cred, secret = issued
    tok = token(db, cred.client_id, secret)
    db.credentials.revoke(ops, cred.id, now=NOW + 5, reason="laptop lost")
    assert "revoked" in refused(lambda: token(db, cred.client_id, secret, now=NOW + 6))
    with pytest.raises(AuthError) as e:
        TokenService(db).verify_access_token(tok.access_token, ALLOWED_IP, now=NOW + 7)
    assert e.value.status == 401
    recent = db.audit.recent(cred.id)
    assert [a.action for a in recent[:3]] == ["token.issue", "credential.revoke", "token.issue"]
    assert recent[0].outcome == "denied" and recent[0].ip == ALLOWED_IP and recent[1].detail["reason"] == "laptop lost"


def test_expired_secret_refused_after_90_days(db, issued):
    cred, secret = issued
    token(db, cred.client_id, secret, now=NOW + 88 * DAY)
    assert "expired" in refused(lambda: token(db, cred.client_id, secret, now=NOW + 90 * DAY))


def test_rotation_refuses_old_secret_at_once(db, ops, issued):
    cred, secret = issued
    old_token = token(db, cred.client_id, secret)
    new = db.credentials.rotate(ops, cred.id, now=NOW + 10)
    refused(lambda: token(db, cred.client_id, secret, now=NOW + 11))
    with pytest.raises(AuthError, match="rotated"):
        TokenService(db).verify_access_token(old_token.access_token, ALLOWED_IP, now=NOW + 12)
    token(db, cred.client_id, new, now=NOW + 13)
    # Rotation restarts the 90 days (the first secret would have expired at NOW + 89 days).
    token(db, cred.client_id, new, now=NOW + 89.5 * DAY)


def test_ip_allowlist_enforced_on_token_and_every_request(db, ops, issued):
    cred, secret = issued
    assert "not allowed" in refused(lambda: token(db, cred.client_id, secret, ip=OTHER_IP))
    tok = token(db, cred.client_id, secret)
    svc = TokenService(db)
    with pytest.raises(AuthError) as e:
        svc.verify_access_token(tok.access_token, OTHER_IP, now=NOW)
    assert e.value.status == 403
    db.credentials.set_ips(ops, cred.id, ["198.51.100.0/24", "2001:db8::/48"], now=NOW + 1)
    assert svc.verify_access_token(tok.access_token, OTHER_IP, now=NOW + 2).org_id == "A0001"
    assert svc.verify_access_token(tok.access_token, "2001:db8::5", now=NOW + 2)
    with pytest.raises(AuthError):
        svc.verify_access_token(tok.access_token, ALLOWED_IP, now=NOW + 2)
    with pytest.raises(AuthError):
        svc.verify_access_token(tok.access_token, "not-an-ip", now=NOW + 2)


def test_ip_allowlist_limits(db, ops, issued):
    cred, _ = issued
    with pytest.raises(InputError, match="at most 8"):
        db.credentials.set_ips(ops, cred.id, [f"203.0.113.{i}" for i in range(9)])
    for bad in ("10.0.0.0/8", "203.0.113.5/24", "300.1.1.1", "::/0"):
        with pytest.raises(InputError):
            db.credentials.set_ips(ops, cred.id, [bad])
    assert db.credentials.ips(cred.id) == [f"{ALLOWED_IP}/32"]


def test_loopback_passes_only_in_test_mode(database):
    for allow in (False, True):
        db = make_db(database(f"{allow}"), allow_loopback=allow)
        ops = add_user(db, "A0001", "data_ops")[0]
        cred, secret = db.credentials.issue(ops, "A0001", ips=[ALLOWED_IP], now=NOW - DAY)
        if allow:
            token(db, cred.client_id, secret, ip="127.0.0.1")
        else:
            refused(partial(token, db, cred.client_id, secret, ip="127.0.0.1"))


def test_roles(db, issued):
    cred, _ = issued
    reader = add_user(db, "A0001", "read_only")[0]
    ceo = add_user(db, "A0001", "attestor", "ceo")[0]
    other_ops = add_user(db, "D0001", "data_ops")[0]
    for actor in (reader, ceo, other_ops):
        with pytest.raises(PermissionDenied):
            db.credentials.issue(actor, "A0001")
        with pytest.raises(PermissionDenied):
            db.credentials.revoke(actor, cred.id)
        with pytest.raises(PermissionDenied):
            db.credentials.set_ips(actor, cred.id, [ALLOWED_IP])
    assert [c.id for c in db.credentials.list(reader, "A0001")] == [cred.id]
    with pytest.raises(PermissionDenied):
        db.credentials.list(other_ops, "A0001")
    with pytest.raises(PermissionDenied):
        db.orgs.attest(reader, "A0001")
    with pytest.raises(PermissionDenied):
        db.orgs.add_user(ceo, "A0001", "x", "x@y.z", "data_ops")
    with pytest.raises(PermissionDenied):
        db.orgs.create(ceo, "A0009", "ssp", "Mine")
    with pytest.raises(InputError, match="CEO, CFO, COO"):
        add_user(db, "A0001", "attestor", "CTO")
    denied = [a for a in db.audit.for_org("A0001", 50) if a.outcome == "denied"]
    assert len(denied) >= 9 and all(a.detail["reason"] for a in denied)


def test_user_who_left_can_do_nothing(db):
    ops, key = add_user(db, "A0001", "data_ops")
    assert db.orgs.authenticate(key).id == ops.user_id
    db.orgs.remove_user(Actor.system(), ops.user_id, now=NOW)
    with pytest.raises(PermissionDenied):
        db.credentials.issue(ops, "A0001")
    with pytest.raises(AuthError):
        db.orgs.authenticate(key)
    with pytest.raises(AuthError):
        db.orgs.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B"))


def test_production_needs_attestation_and_completed_sandbox_job(db, ops):
    completed = {("job-7", "A0001")}
    done = lambda job, org: (job, org) in completed  # noqa: E731 - the server's callback
    with pytest.raises(PermissionDenied, match="completed sandbox export"):
        db.credentials.issue(ops, "A0001", env="production")
    with pytest.raises(PermissionDenied, match="no attestation"):
        db.orgs.request_production(ops, "A0001", "job-7", done, now=NOW)
    ceo = add_user(db, "A0001", "attestor", "COO")[0]
    db.orgs.attest(ceo, "A0001", now=NOW)
    with pytest.raises(PermissionDenied, match="not a completed sandbox export"):
        db.orgs.request_production(ops, "A0001", "job-8", done, now=NOW)
    with pytest.raises(PermissionDenied, match="not a completed sandbox export"):
        db.orgs.request_production(ops, "A0001", "job-7", lambda j, o: (j, "D0001") in completed, now=NOW)
    db.orgs.request_production(ops, "A0001", "job-7", done, now=NOW)
    cred, secret = db.credentials.issue(ops, "A0001", env="production", now=NOW)
    # Production without a registered IP is closed; with one it opens.
    refused(lambda: token(db, cred.client_id, secret, now=NOW + 1))
    db.credentials.set_ips(ops, cred.id, [ALLOWED_IP], now=NOW + 1)
    assert TokenService(db).verify_access_token(token(db, cred.client_id, secret, now=NOW + 2).access_token, ALLOWED_IP, now=NOW + 3).env == "production"


def test_changes_are_seen_by_another_process_at_once(database):
    db1 = make_db(database("shared"))
    ops = add_user(db1, "A0001", "data_ops")[0]
    cred, secret = db1.credentials.issue(ops, "A0001", ips=[ALLOWED_IP], now=NOW - DAY)
    db2 = AccessDB(database("shared"), db1.config)  # a second server process
    svc2 = TokenService(db2)
    tok = token(db2, cred.client_id, secret)
    assert svc2.verify_access_token(tok.access_token, ALLOWED_IP, now=NOW)
    db1.credentials.set_ips(ops, cred.id, ["198.51.100.0/24"], now=NOW + 1)
    with pytest.raises(AuthError):
        svc2.verify_access_token(tok.access_token, ALLOWED_IP, now=NOW + 2)
    db1.orgs.set_active(Actor.system(), "A0001", False, now=NOW + 3)
    with pytest.raises(AuthError) as e:
        svc2.verify_access_token(tok.access_token, OTHER_IP, now=NOW + 4)
    assert e.value.status == 403


def test_token_requests_are_rate_limited_per_organization(database):
    db = make_db(database("a"), rate_burst=3, rate_per_minute=6)
    ops = add_user(db, "A0001", "data_ops")[0]
    creds = [db.credentials.issue(ops, "A0001", now=NOW - DAY) for _ in range(2)]
    for i in range(3):
        c, s = creds[i % 2]
        token(db, c.client_id, s, now=NOW)
    with pytest.raises(TokenError) as e:
        token(db, creds[0][0].client_id, creds[0][1], now=NOW + 1)
    assert e.value.status == 429 and e.value.retry_after == 9 and e.value.headers()["Retry-After"] == "9"
    other = add_user(db, "D0001", "data_ops")[0]
    c, s = db.credentials.issue(other, "D0001", now=NOW - DAY)
    token(db, c.client_id, s, now=NOW + 1)  # another organization has its own bucket
    token(db, creds[0][0].client_id, creds[0][1], now=NOW + 11)


def test_scopes(db, issued):
    cred, secret = issued
    tok = token(db, cred.client_id, secret, body="grant_type=client_credentials&scope=system/Patient.read system/Coverage.rs")
    p = TokenService(db).verify_access_token(tok.access_token, ALLOWED_IP, now=NOW)
    assert p.types == ("Patient", "Coverage")
    with pytest.raises(AuthError) as e:
        TokenService(db).verify_access_token(tok.access_token, ALLOWED_IP, now=NOW, types=["ExplanationOfBenefit"])
    assert e.value.status == 403
    for bad in ("user/*.read", "system/Claim.read", "system/*.write", "openid"):
        refused(partial(token, db, cred.client_id, secret, body=f"grant_type=client_credentials&scope={bad}"),
                "invalid_scope", 400)


def test_token_request_errors(db, issued):
    cred, secret = issued
    svc = TokenService(db)
    auth = basic_authorization(cred.client_id, secret)
    cases = [
        (b"grant_type=password", FORM, auth, "unsupported_grant_type", 400),
        (b"scope=system/*.read", FORM, auth, "invalid_request", 400),
        (b"grant_type=client_credentials&grant_type=client_credentials", FORM, auth, "invalid_request", 400),
        (b'{"grant_type": "client_credentials"}', "application/json", auth, "invalid_request", 400),
        (b"grant_type=client_credentials&client_secret=x", FORM, auth, "invalid_request", 400),
        (b"grant_type=client_credentials", FORM, None, "invalid_client", 401),
        (b"grant_type=client_credentials", FORM, "Bearer abc", "invalid_client", 401),
        (b"grant_type=client_credentials", FORM, "Basic !!!", "invalid_client", 401),
        (b"grant_type=client_credentials&client_assertion_type=x", FORM, auth, "invalid_request", 400),
    ]
    for body, ctype, authz, error, status in cases:
        # Parsing is part of what must refuse, so it runs inside `refused` with this case's values.
        issue = partial(lambda b, c, a: svc.issue(TokenRequest.parse(b, c, a), ALLOWED_IP, now=NOW), body, ctype, authz)
        refused(issue, error, status)
