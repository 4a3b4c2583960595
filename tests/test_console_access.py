"""Console users, roles, sessions, throttling and onboarding in the access library (real SQLite)."""

from __future__ import annotations

import base64

import pyotp
import pytest

from fhirhose.access import AccessConfig, AccessDB, Actor, TokenRequest, TokenService
from fhirhose.access.auditlog import search_audit
from fhirhose.access.onboarding import Onboarding
from fhirhose.access.orgs import PermissionDenied
from fhirhose.access.roles import ROLES, roles_for
from fhirhose.access.sessions import Sessions
from fhirhose.access.tokens import TokenError
from fhirhose.access.users import ConsoleUsers, SignInError
from fhirhose.errors import InputError

NOW = 1_750_000_000.0
OP = Actor.system("tests")
PW = "correct horse battery"


@pytest.fixture
def db(database):
    """Every test using it runs on SQLite and on PostgreSQL (the console tables are migration 3)."""
    db = AccessDB(database("access"), AccessConfig(scrypt_n=2**10))
    db.orgs.create(OP, "A0001", "ssp", "ACO one", now=NOW)
    db.orgs.create(OP, "D0001", "reach", "REACH one", now=NOW)
    db.orgs.create(OP, "S1234", "sponsor", "Sponsor", now=NOW)
    db.orgs.add_contract(OP, "S1234", "S1234", now=NOW)
    yield db
    db.close()


def test_permission_table_agrees_with_the_library(db):
    """Every org role: the library lets its user issue credentials iff the table says so."""
    users = ConsoleUsers(db)
    orgs = {"ssp": "A0001", "reach": "D0001", "kcc": None, "sponsor": "S1234", "provider": None}
    for i, r in enumerate(x for x in ROLES.values() if x.kinds):
        org = next((orgs[k] for k in r.kinds if orgs.get(k)), None)
        if org is None:
            continue
        cu, _ = users.create(OP, f"p{i}@x.example", "P", r.name, org, title="CEO" if r.needs_title else "",
                             password=PW, now=NOW)
        allowed = "credentials.manage" in r.permissions
        if allowed:
            db.credentials.issue(cu.actor(), org, now=NOW)
        else:
            with pytest.raises(PermissionDenied):
                db.credentials.issue(cu.actor(), org, now=NOW)
    assert [r.title for r in roles_for("reach")] == [
        "Executive Contact", "Entity Primary Contact", "Entity Secondary Contact", "DUA Requestor", "DUA Custodian"]
    assert [r.title for r in roles_for("sponsor")] == ["Attestor", "Data Operations Specialist"]


def test_role_must_fit_the_organization_kind(db):
    users = ConsoleUsers(db)
    with pytest.raises(InputError, match="not offered to a ssp"):
        users.create(OP, "a@x.example", "A", "attestor", "A0001", title="CEO", password=PW)
    with pytest.raises(InputError, match="CEO, CFO, COO"):
        users.create(OP, "a@x.example", "A", "attestor", "S1234", title="CTO", password=PW)
    with pytest.raises(PermissionDenied):
        users.create(Actor.user(1), "b@x.example", "B", "credential_delegate", "A0001", password=PW)
    with pytest.raises(InputError, match="at least 12"):
        users.create(OP, "c@x.example", "C", "credential_delegate", "A0001", password="short")
    assert users.list() == []  # nothing half-created


def test_sign_in_throttle_and_sessions(db):
    users, sessions = ConsoleUsers(db), Sessions(db)
    cu, _ = users.create(OP, "Del@A.example", "Del", "credential_delegate", "A0001", password=PW, now=NOW)
    assert users.sign_in("del@a.example", PW, "10.0.0.1", NOW).id == cu.id
    for k in range(5):
        with pytest.raises(SignInError) as e:
            users.sign_in("del@a.example", "wrong password!", "10.0.0.1", NOW + k)
        assert e.value.status == 401
    with pytest.raises(SignInError) as e:  # locked now, even with the right password
        users.sign_in("del@a.example", PW, "10.0.0.1", NOW + 10)
    assert e.value.status == 429 and e.value.retry_after > 0
    assert users.sign_in("del@a.example", PW, "10.0.0.1", NOW + 1000).id == cu.id
    token = sessions.start(cu, "10.0.0.1", NOW)
    assert sessions.get(token, NOW + 60).user.id == cu.id
    assert sessions.get(token, NOW + 60 + 15 * 60 + 1) is None  # idle timeout
    assert db.conn.execute("SELECT COUNT(*) FROM console_sessions").fetchone()[0] == 0  # removed, not only refused
    assert token not in str(db.conn.execute("SELECT * FROM console_sessions").fetchall())
    denied = search_audit(db, action="console.sign_in", outcome="denied")
    assert len(denied) == 6 and all(e.org_id == "A0001" for e in denied)


def test_totp_second_factor_used_once(db):
    users = ConsoleUsers(db)
    cu, _ = users.create(OP, "d@a.example", "D", "credential_delegate", "A0001", password=PW, now=NOW)
    secret = users.new_totp_secret()
    with pytest.raises(InputError, match="current code"):
        users.enable_totp(cu, secret, "000000", NOW)
    users.enable_totp(cu, secret, pyotp.TOTP(secret).at(NOW), NOW)
    cu = users.get(cu.id)
    assert cu.has_totp
    with pytest.raises(SignInError):  # the code that enabled it is spent
        users.check_totp(cu, pyotp.TOTP(secret).at(NOW), "10.0.0.1", NOW)
    users.check_totp(cu, pyotp.TOTP(secret).at(NOW + 30), "10.0.0.1", NOW + 30)
    with pytest.raises(PermissionDenied):
        users.reset_totp(cu.actor(), cu.id)
    users.reset_totp(OP, cu.id, NOW)  # a lost phone
    assert not users.get(cu.id).has_totp


def test_sign_in_and_token_endpoint_share_one_throttle(db):
    """Console sign-in failures and token-endpoint failures land in the same throttle table
    (access.throttle): one mechanism, one place to tune and inspect."""
    cu, _ = ConsoleUsers(db).create(OP, "d@a.example", "D", "credential_delegate", "A0001", password=PW)
    cred, _ = db.credentials.issue(cu.actor(), "A0001", now=NOW)
    auth = "Basic " + base64.b64encode(f"{cred.client_id}:wrong".encode()).decode()
    with pytest.raises(TokenError):
        TokenService(db).issue(TokenRequest.parse(b"grant_type=client_credentials",
                                                  "application/x-www-form-urlencoded", auth), "10.0.0.1", NOW)
    with pytest.raises(SignInError):
        ConsoleUsers(db).sign_in("d@a.example", "wrong password!", "10.0.0.1", NOW)
    keys = {r[0] for r in db.conn.execute("SELECT key FROM auth_throttle WHERE failures > 0")}
    assert f"token:client:{cred.client_id}" in keys and "login:email:d@a.example" in keys


def test_part_d_onboarding(db):
    users, onb = ConsoleUsers(db), Onboarding(db)
    ceo, _ = users.create(OP, "ceo@s.example", "CEO", "attestor", "S1234", title="CEO", password=PW, now=NOW)
    jobs = {("job-1", "S1234")}
    done = lambda j, o: (j, o) in jobs  # noqa: E731
    steps = {s.name: s.done for s in onb.checklist("S1234", lambda o: False, NOW)}
    assert steps["An active Attestor"] and not steps["Attestation for contract S1234"]
    db.orgs.attest(ceo.actor(), "S1234", "S1234", now=NOW)
    dos, first_pw = users.assign_specialist(ceo, "S1234", "dos@s.example", "Specialist", NOW)
    assert users.sign_in("dos@s.example", first_pw, "10.0.0.2", NOW).role == "data_operations_specialist"
    with pytest.raises(PermissionDenied):  # a specialist cannot assign specialists
        users.assign_specialist(dos, "S1234", "x@s.example", "X", NOW)
    with pytest.raises(PermissionDenied, match="not a completed sandbox export"):
        onb.submit(dos.actor(), "S1234", "job-9", ["203.0.113.7"], done, NOW)
    with pytest.raises(InputError, match="at most 8"):
        onb.submit(dos.actor(), "S1234", "job-1", [f"203.0.113.{i}" for i in range(9)], done, NOW)
    with pytest.raises(PermissionDenied):  # the attestor does not submit
        onb.submit(ceo.actor(), "S1234", "job-1", ["203.0.113.7"], done, NOW)
    db.credentials.issue(dos.actor(), "S1234", now=NOW)
    req = onb.submit(dos.actor(), "S1234", "job-1", ["203.0.113.7", "198.51.100.0/28"], done, NOW)
    assert [r.id for r in onb.pending()] == [req.id]
    with pytest.raises(PermissionDenied):
        onb.approve(dos.actor(), req.id, done, NOW)
    with pytest.raises(InputError, match="not approved"):
        onb.release(ceo.actor(), req.id, NOW)
    onb.approve(OP, req.id, done, NOW)
    with pytest.raises(PermissionDenied):  # the specialist does not receive it
        onb.release(dos.actor(), req.id, NOW)
    cred, secret = onb.release(ceo.actor(), req.id, NOW)
    assert cred.env == "production" and secret
    assert db.credentials.ips(cred.id) == ["198.51.100.0/28", "203.0.113.7/32"]
    with pytest.raises(InputError, match="released"):
        onb.release(ceo.actor(), req.id, NOW)
    assert [s.name for s in onb.checklist("S1234", lambda o: True, NOW) if not s.done] == []
    assert secret not in str([e.detail for e in search_audit(db, limit=1000)])


def test_admin_cli_adds_console_users(tmp_path, capsys):
    """`fhirhose admin console-user-add` bootstraps an operator outside the demo."""
    import json

    from fhirhose.cli import main

    path = tmp_path / "access.sqlite"

    def run(*args):
        assert main(["admin", "--db", str(path), *args]) == 0, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)

    run("init")
    op = run("console-user-add", "root@cms.example", "Root", "operator")
    assert op["role"] == "operator" and op["org_id"] is None and len(op["password"]) >= 12
    run("org-create", "A0009", "ssp", "ACO nine")
    cd = run("console-user-add", "cd@a.example", "CD", "credential_delegate", "--org", "A0009")
    assert main(["admin", "--db", str(path), "console-user-add", "x@a.example", "X", "attestor", "--org", "A0009",
                 "--title", "CEO"]) == 2
    assert "not offered to a ssp" in capsys.readouterr().err
    again = run("console-password-reset", "cd@a.example")["password"]
    db = AccessDB(path)
    users = ConsoleUsers(db)
    assert users.sign_in("cd@a.example", again, "10.0.0.1").id == cd["id"]
    with pytest.raises(SignInError):
        users.sign_in("cd@a.example", cd["password"], "10.0.0.1")
    db.close()


def test_operator_changes_a_role(db):
    users = ConsoleUsers(db)
    cu, _ = users.create(OP, "d@a.example", "D", "credential_delegate", "A0001", password=PW, now=NOW)
    db.credentials.issue(cu.actor(), "A0001", now=NOW)
    token = Sessions(db).start(cu, "10.0.0.1", NOW)
    with pytest.raises(PermissionDenied):
        users.change_role(cu.actor(), cu.id, "aco_executive")
    with pytest.raises(InputError, match="not offered"):
        users.change_role(OP, cu.id, "attestor", title="CEO")
    now = users.change_role(OP, cu.id, "aco_executive", now=NOW)
    assert now.role == "aco_executive" and now.user_id != cu.user_id
    assert Sessions(db).get(token, NOW) is None  # signed out: the permissions changed
    with pytest.raises(PermissionDenied):  # the library sees the new role at once
        db.credentials.issue(now.actor(), "A0001", now=NOW)
    with pytest.raises(PermissionDenied):  # and the old library user is gone
        db.credentials.issue(cu.actor(), "A0001", now=NOW)
    assert users.change_role(OP, cu.id, "credential_delegate", now=NOW).may("credentials.manage")


def test_password_change_ends_other_sessions(db):
    users, sessions = ConsoleUsers(db), Sessions(db)
    cu, _ = users.create(OP, "d@a.example", "D", "credential_delegate", "A0001", password=PW, now=NOW)
    here, elsewhere = sessions.start(cu, "10.0.0.1", NOW), sessions.start(cu, "10.0.0.2", NOW)
    with pytest.raises(InputError, match="current password"):
        users.change_password(cu, "wrong", "another long password", NOW)
    users.change_password(cu, PW, "another long password", NOW, keep_session=sessions.get(here, NOW).token_hash)
    assert sessions.get(here, NOW) is not None and sessions.get(elsewhere, NOW) is None
    assert users.sign_in("d@a.example", "another long password", "10.0.0.1", NOW).id == cu.id
