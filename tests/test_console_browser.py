"""The web console in a real browser: Debian's Chromium driven by Playwright against a real
server on 127.0.0.1; the API side of each flow over real HTTP; axe-core on every page visited.

One browser and one server for all of them (module scope: while Playwright's sync API is
open it holds the main thread's event loop, so a session-scoped browser would break
`asyncio.run` in the test modules after this one); each test gets a fresh browser
context (its own cookies).
"""

from __future__ import annotations

import re
import shutil

import pyotp
import pytest

from .support.console import (
    AXE,
    CHROMIUM,
    PASSWORD,
    api_client,
    console_server,
    http,
    kickoff,
    launch,
    token,
    wait_done,
)

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} missing (.ci/run installs it)")

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with console_server(tmp_path_factory.mktemp("console")) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def new_context(browser):
    ctx = browser.new_context()
    ctx.add_init_script(path=str(AXE))  # injected by the browser, so the page's CSP does not block it
    return ctx


@pytest.fixture
def context(browser):
    ctx = new_context(browser)
    yield ctx
    ctx.close()


AXE_RUN = """async () => {
  const r = await axe.run(document, {resultTypes: ["violations"]});
  return r.violations.map(v => `${v.id}: ${v.nodes.map(n => n.target.join(" ")).join(", ")}`);
}"""
UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea")]
  .filter(el => el.type !== "hidden" && !el.labels.length && !el.getAttribute("aria-label"))
  .map(el => el.outerHTML)"""


def check(page) -> None:
    """Zero axe-core violations and a label on every control, on the page as it is now."""
    assert page.evaluate(AXE_RUN) == [], page.url
    assert page.evaluate(UNLABELLED) == [], page.url


def visit(page, server, path: str, status: int = 200):
    resp = page.goto(server.console + path)
    assert resp.status == status, f"{path}: {resp.status}"
    check(page)
    return resp


def sign_in(context, server, email: str, password: str = PASSWORD):
    page = context.new_page()
    visit(page, server, "sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    return page


def secret_on(page) -> tuple[str, str]:
    """(client id, secret) from a shown-once page."""
    return page.locator("#client-id").inner_text().strip(), page.locator("#secret").inner_text().strip()


def test_keyboard_only_sign_in_and_security_headers(context, server):
    page = context.new_page()
    resp = visit(page, server, "sign-in")
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    # Keyboard only: the email field has focus; Tab to the password, Enter submits.
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type("delegate@a0001.example")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(server.console + "org/A0001/")
    check(page)
    assert "A sandbox credential" in page.locator("ol.steps").inner_text()
    cookie = next(c for c in context.cookies() if c["name"] == "fhirhose_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console/"
    assert not cookie["secure"]  # plain HTTP here; under TLS the cookie is Secure
    # The skip link is the first stop for keyboard users on every page.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(server.console + "sign-in")
    assert visit(page, server, "org/A0001/").url.endswith("/console/sign-in")  # session gone


def test_wrong_passwords_are_throttled(context, server):
    page = context.new_page()
    for _ in range(5):
        visit(page, server, "sign-in")
        page.get_by_label("Email").fill("throttled@a0001.example")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        assert "not correct" in page.get_by_role("alert").inner_text()
        check(page)
    page = sign_in(context, server, "throttled@a0001.example")  # the right one, too late
    assert "too many failed attempts" in page.get_by_role("alert").inner_text()
    denied = [e for e in server.access.audit.for_org("A0001", 200) if e.actor == "console:throttled@a0001.example"]
    assert len(denied) == 6 and {e.outcome for e in denied} == {"denied"}


def test_totp_second_factor(context, server):
    page = sign_in(context, server, "totp@a0001.example")
    visit(page, server, "account")
    key = page.locator("#totp-key").inner_text().strip()
    page.get_by_label("Current code").fill(pyotp.TOTP(key).at(server.clock()))
    page.get_by_role("button", name="Turn on two-step sign-in").click()
    assert "Two-step sign-in is on" in page.get_by_role("status").inner_text()
    page.get_by_role("button", name="Sign out").click()
    page = sign_in(context, server, "totp@a0001.example")
    assert page.url == server.console + "sign-in/totp"
    check(page)
    assert visit(page, server, "org/A0001/credentials").url == server.console + "sign-in/totp"  # not before the code
    server.clock.advance(30)  # the code that turned TOTP on is spent: use the next step's
    page.get_by_label("6-digit code").fill(pyotp.TOTP(key).at(server.clock()))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(server.console + "org/A0001/")
    # A lost phone: the operator turns two-step sign-in off; the person's session ends.
    op_ctx = new_context(context.browser)
    op = sign_in(op_ctx, server, "operator@cms.example")
    visit(op, server, "ops/users")
    op.get_by_role("button", name="Turn off two-step of totp@a0001.example").click()
    assert "Two-step sign-in turned off" in op.get_by_role("status").inner_text()
    check(op)
    op_ctx.close()
    assert visit(page, server, "org/A0001/").url == server.console + "sign-in"
    assert sign_in(context, server, "totp@a0001.example").url == server.console + "org/A0001/"


def test_credential_create_use_rotate_revoke(context, server):
    page = sign_in(context, server, "delegate@a0001.example")
    visit(page, server, "org/A0001/credentials")
    page.get_by_label("Label").fill("lifecycle")
    page.get_by_role("button", name="Create credential").click()
    check(page)
    assert "Shown once" in page.get_by_role("alert").inner_text()
    client_id, secret = secret_on(page)
    assert secret not in str(server.access.conn.execute("SELECT * FROM credentials").fetchall())
    assert secret not in str([e.detail for e in server.access.audit.all(1000)])
    # Use it: a real token request and a kick-off with the new secret.
    status, tok = token(server, client_id, secret)
    assert status == 200, tok
    code, where = kickoff(server, tok["access_token"])
    assert code == 202 and "/jobs/" in where
    assert wait_done(server, tok["access_token"], where) == 200
    page.get_by_role("link", name="I have stored it").click()
    check(page)
    # The 90-day expiry as a live countdown (the page's script rewrote the server's "90 days").
    assert re.fullmatch(r"(89|90) d \d+ h \d+ min left", page.locator(".countdown").first.inner_text())
    # Rotate: the old secret is refused at once, the new one works.
    page.get_by_role("button", name="Rotate secret").click()
    check(page)
    _, new_secret = secret_on(page)
    assert new_secret != secret
    assert token(server, client_id, secret)[0] == 401
    status, tok2 = token(server, client_id, new_secret)
    assert status == 200
    page.get_by_role("link", name="I have stored it").click()
    # Revoke: the secret and the token already handed out stop working at once.
    page.get_by_label("Reason").fill("test over")
    page.get_by_role("button", name="Revoke credential").click()
    assert page.locator("#cred-state").inner_text().startswith("revoked")
    check(page)
    assert token(server, client_id, new_secret)[0] == 401
    assert kickoff(server, tok2["access_token"])[0] == 401
    visit(page, server, "org/A0001/audit?action=credential.&outcome=ok")
    actions = page.locator("table tbody td:nth-child(4)").all_inner_texts()
    assert {"credential.issue", "credential.rotate", "credential.revoke"} <= set(actions)
    visit(page, server, "org/A0001/data")
    assert page.locator("svg.plot rect").count() >= 1  # the finished export in the plot
    job_id = where.rsplit("/", 1)[1]
    page.get_by_role("link", name=job_id[:12]).click()
    check(page)
    with page.expect_download() as dl:
        page.locator("table a").first.click()
    assert dl.value.suggested_filename.endswith(".gz")


def test_ip_allowlist_enforced(context, server):
    page = sign_in(context, server, "delegate@a0001.example")
    visit(page, server, "org/A0001/credentials")
    page.get_by_label("Label").fill("allowlisted")
    page.get_by_role("button", name="Create credential").click()
    client_id, secret = secret_on(page)
    page.get_by_role("link", name="I have stored it").click()
    box = page.get_by_label("Up to 8 addresses")
    box.fill("203.0.113.7\n10.0.0.300")  # validated as typed
    assert "Not an address" in page.locator("#ips-check").inner_text()
    assert box.get_attribute("aria-invalid") == "true"
    check(page)
    box.fill("\n".join(f"203.0.113.{i}" for i in range(9)))
    assert "at most 8" in page.locator("#ips-check").inner_text()
    page.get_by_role("button", name="Save allowlist").click()  # the server refuses it as well
    assert "at most 8" in page.get_by_role("alert").inner_text()
    check(page)
    page.go_back()
    page.get_by_label("Up to 8 addresses").fill("203.0.113.7\n198.51.100.0/28")
    page.get_by_role("button", name="Save allowlist").click()
    assert "2 entries" in page.get_by_role("status").inner_text()
    status, body = token(server, client_id, secret)  # from 127.0.0.1: not on the list
    assert status == 401 and "not allowed" in body["error_description"]
    page.get_by_label("Up to 8 addresses").fill("127.0.0.1")
    page.get_by_role("button", name="Save allowlist").click()
    assert token(server, client_id, secret)[0] == 200


def test_other_organizations_refused_by_url_tampering(context, server):
    other = api_client(server, "big-aco")  # organization A0002
    status, tok = token(server, other["client_id"], other["secret"])
    code, where = kickoff(server, tok["access_token"])
    assert code == 202
    page = sign_in(context, server, "delegate@a0001.example")
    for path in ("org/A0002/", "org/A0002/credentials", "org/A0002/data", "org/A0002/audit",
                 f"org/A0001/credentials/{other['credential']}", f"org/A0002/credentials/{other['credential']}",
                 f"org/A0001/jobs/{where.rsplit('/', 1)[1]}", "ops/", "ops/users", "ops/audit"):
        visit(page, server, path, 403)
    # A forged action with a valid CSRF token: refused on the server, audited, nothing changed.
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    r = page.request.post(server.console + f"org/A0001/credentials/{other['credential']}/revoke",
                          form={"csrf": csrf, "reason": "tampering"})
    assert r.status == 403
    assert server.access.credentials.get(other["credential"]).revoked_at is None
    # An ACO Executive reads credentials but may not create them (only the Credential Delegate).
    exec_page = sign_in(new_context(context.browser), server, "exec@a0001.example")
    visit(exec_page, server, "org/A0001/credentials")
    assert exec_page.get_by_role("button", name="Create credential").count() == 0
    csrf = exec_page.locator("input[name=csrf]").first.get_attribute("value")
    r = exec_page.request.post(server.console + "org/A0001/credentials", form={"csrf": csrf, "label": "sneaky"})
    assert r.status == 403
    denied = {e.action for e in server.access.audit.for_org("A0001", 300) if e.outcome == "denied"}
    assert {"console.credentials.manage", "console.credential"} <= denied
    exec_page.context.close()


def test_post_without_csrf_token_refused(context, server):
    page = sign_in(context, server, "delegate@a0001.example")
    visit(page, server, "org/A0001/credentials")
    before = len(server.access.credentials.list(server.access.orgs.get("A0001") and _op(), "A0001"))
    for form in ({"label": "no token"}, {"label": "bad token", "csrf": "0" * 64}):
        r = page.request.post(server.console + "org/A0001/credentials", form=form)
        assert r.status == 403 and "CSRF" in r.text()
    assert len(server.access.credentials.list(_op(), "A0001")) == before
    assert any(e.action == "console.csrf" for e in server.access.audit.for_org("A0001", 50))
    # The sign-in form is protected too (a login CSRF).
    fresh = context.browser.new_context()
    r = fresh.request.post(server.console + "sign-in", form={"email": "delegate@a0001.example", "password": PASSWORD})
    assert r.status == 403
    fresh.close()


def _op():
    from fhirhose.access import Actor

    return Actor.system("tests")


def test_part_d_onboarding_to_production(browser, server):
    ceo_ctx, dos_ctx, op_ctx = (new_context(browser) for _ in range(3))
    try:
        ceo = sign_in(ceo_ctx, server, "ceo@s1234.example")
        assert ceo.url == server.console + "org/S1234/"
        ceo.get_by_role("button", name=re.compile("Attest")).click()
        assert "Attested for contract S1234" in ceo.get_by_role("status").inner_text()
        check(ceo)
        ceo.get_by_label("Name").fill("Sam Specialist")
        ceo.get_by_label("Email").fill("dos@s1234.example")
        ceo.get_by_role("button", name="Assign specialist").click()
        check(ceo)
        first_password = ceo.locator("#secret").inner_text().strip()
        # The specialist: a sandbox credential, a sandbox export, then the onboarding request.
        dos = sign_in(dos_ctx, server, "dos@s1234.example", first_password)
        assert dos.url == server.console + "org/S1234/"
        visit(dos, server, "org/S1234/credentials")
        dos.get_by_label("Label").fill("sandbox")
        dos.get_by_role("button", name="Create credential").click()
        client_id, secret = secret_on(dos)
        status, tok = token(server, client_id, secret)
        code, where = kickoff(server, tok["access_token"])
        assert code == 202
        assert wait_done(server, tok["access_token"], where) == 200
        job_id = where.rsplit("/", 1)[1]
        visit(dos, server, "org/S1234/onboarding")
        dos.get_by_label("Job id").fill(job_id)
        dos.get_by_label("Static IP addresses").fill("127.0.0.1\n198.51.100.0/28")
        dos.get_by_role("button", name="Submit for review").click()
        assert "Submitted" in dos.get_by_role("status").inner_text()
        check(dos)
        # The specialist may not release; the attestor may not approve.
        csrf = dos.locator("input[name=csrf]").first.get_attribute("value")
        req_id = server.access.conn.execute("SELECT MAX(id) FROM onboarding").fetchone()[0]
        release = server.console + f"org/S1234/onboarding/{req_id}/release"
        assert dos.request.post(release, form={"csrf": csrf}).status == 403
        csrf = ceo.locator("input[name=csrf]").first.get_attribute("value")
        assert ceo.request.post(server.console + f"ops/onboarding/{req_id}/approve", form={"csrf": csrf}).status == 403
        # The operator's queue shows it; approval runs the library's production checks.
        op = sign_in(op_ctx, server, "operator@cms.example")
        visit(op, server, "ops/onboarding")
        assert job_id in op.locator("table").first.inner_text()
        op.get_by_role("button", name=f"Approve request {req_id}").click()
        assert "approved" in op.get_by_role("status").inner_text()
        check(op)
        # The attestor receives the production credential once.
        visit(ceo, server, "org/S1234/onboarding")
        ceo.get_by_role("button", name="Release production credential").click()
        check(ceo)
        prod_id, prod_secret = secret_on(ceo)
        status, tok = token(server, prod_id, prod_secret)
        assert status == 200
        code, where = kickoff(server, tok["access_token"])
        assert code == 202
        visit(ceo, server, "org/S1234/")
        assert "Missing" not in ceo.locator("ol.steps").inner_text()
    finally:
        for c in (ceo_ctx, dos_ctx, op_ctx):
            c.close()


def test_every_page_is_accessible(context, server):
    """axe-core and labels on the pages the other tests do not reach."""
    page = sign_in(context, server, "operator@cms.example")
    for path in ("ops/", "ops/orgs", "ops/users", "ops/onboarding", "ops/jobs", "ops/audit?outcome=denied",
                 "org/S1234/", "org/A0001/data", "account", "nowhere"):
        visit(page, server, path, 404 if path == "nowhere" else 200)
    visit(page, server, "ops/orgs")
    page.get_by_label("Id (e.g.").fill("S7777")
    page.get_by_label("Name").fill("Seventh Sponsor")
    page.get_by_label("Kind").select_option("sponsor")
    page.get_by_role("button", name="Create organization").click()
    assert "S7777 created" in page.get_by_role("status").inner_text()
    page.locator("#c-S7777").fill("S7777")
    page.locator("#c-S7777").press("Enter")  # keyboard submit
    assert "Contract added" in page.get_by_role("status").inner_text()
    check(page)
    assert server.access.orgs.contracts("S7777") == ["S7777"]
    visit(page, server, "ops/users")
    page.get_by_label("Name").fill("Nina New")
    page.get_by_label("Email").fill("nina@a0001.example")
    page.get_by_label("Organization (empty").select_option("A0001")
    page.get_by_label("Role", exact=True).select_option("credential_delegate")
    page.get_by_role("button", name="Add person").click()
    check(page)
    password = page.locator("#secret").inner_text().strip()
    visit(page, server, "ops/users")
    page.get_by_role("button", name="Reset password of nina@a0001.example").click()
    check(page)
    assert page.locator("#secret").inner_text().strip() != password
    visit(page, server, "ops/users")
    page.get_by_label("Role of nina@a0001.example").select_option("aco_executive")
    page.get_by_label("Role of nina@a0001.example").locator("xpath=..").get_by_role("button").click()
    assert "now ACO Executive" in page.get_by_role("status").inner_text()
    check(page)
    status, _, body = http("GET", server.console + "static/console.js")
    assert status == 200 and b"innerHTML" not in body


def test_the_checks_can_fail(context):
    """axe and the label check do report a page with an unlabelled control."""
    page = context.new_page()
    page.set_content('<!doctype html><html lang="en"><title>t</title><main><input id="x"></main></html>')
    assert any(v.startswith("label:") for v in page.evaluate(AXE_RUN))
    assert page.evaluate(UNLABELLED) == ['<input id="x">']


def test_job_progress_is_live(context, server):
    """A running job shows on the data page, and the page follows it to the end by itself."""
    client = api_client(server, "small-aco")
    hold = server.data / "hold"
    hold.write_text("0")  # the test exporter waits at chunk 0 while this file says so
    try:
        status, tok = token(server, client["client_id"], client["secret"])
        code, where = kickoff(server, tok["access_token"], "/Patient/$export")
        assert code == 202
        job_id = where.rsplit("/", 1)[1]
        page = sign_in(context, server, "delegate@a0001.example")
        visit(page, server, "org/A0001/data")
        bar = page.locator(f"#p-{job_id}")
        assert bar.get_attribute("value") == "0" and page.locator("#jobs").get_attribute("data-live") == "1"
    finally:
        hold.unlink()
    # No reload from the test: the page's own polling brings the finished state.
    page.wait_for_function(f"() => document.getElementById('p-{job_id}').value === 100", timeout=60_000)
    assert page.locator("#jobs").get_attribute("data-live") is None
    check(page)


def test_public_key_credential_for_smart_backend_services(context, server):
    """A key-only credential made from a pasted public JWK; the client signs an assertion with
    the private half and gets a token. A JWKS URL must be https."""
    import json
    import uuid

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from fhirhose.server.demo import es384_jwk

    private, public = es384_jwk()
    page = sign_in(context, server, "delegate@a0001.example")
    visit(page, server, "org/A0001/credentials")
    page.get_by_label("Label").fill("smart")
    page.get_by_label("Public key only").check()
    page.get_by_label("Public JWK or JWK Set").fill(json.dumps(public))
    page.get_by_role("button", name="Create credential").click()
    assert "public keys only" in page.get_by_role("status").inner_text()
    check(page)
    client_id = page.locator("dl.pairs code").first.inner_text().strip()
    assert public["kid"] in page.locator("#keys-h + ul").inner_text()
    page.get_by_label("JWKS URL").fill("http://keys.example/jwks.json")
    page.get_by_role("button", name="Save URL").click()
    assert "https:// URL needed" in page.get_by_role("alert").inner_text()
    check(page)
    numbers = ec.EllipticCurvePrivateNumbers(
        int.from_bytes(jwt.utils.base64url_decode(private["d"]), "big"),
        ec.EllipticCurvePublicNumbers(int.from_bytes(jwt.utils.base64url_decode(private["x"]), "big"),
                                      int.from_bytes(jwt.utils.base64url_decode(private["y"]), "big"), ec.SECP384R1()))
    token_url = server.fhir + "/auth/token"
    assertion = jwt.encode({"iss": client_id, "sub": client_id, "aud": token_url, "exp": int(server.clock()) + 120,
                            "jti": str(uuid.uuid4())}, numbers.private_key(), algorithm="ES384",
                           headers={"kid": public["kid"]})
    form = (f"grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type"
            f"%3Ajwt-bearer&client_assertion={assertion}").encode()
    status, _, body = http("POST", token_url, body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    assert json.loads(body)["expires_in"] == 300


def test_change_password(context, server):
    from fhirhose.access import Actor
    from fhirhose.access.users import ConsoleUsers

    ConsoleUsers(server.access).create(Actor.system("tests"), "pat@a0001.example", "Pat", "aco_executive", "A0001",
                                       password=PASSWORD)
    page = sign_in(context, server, "pat@a0001.example")
    visit(page, server, "account")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password (at least 12").fill("a brand new passphrase")
    page.get_by_label("New password again").fill("a brand new passphrase")
    page.get_by_role("button", name="Change password").click()
    assert "Password changed" in page.get_by_role("status").inner_text()
    check(page)
    page.get_by_role("button", name="Sign out").click()
    assert "not correct" in sign_in(context, server, "pat@a0001.example").get_by_role("alert").inner_text()
    assert sign_in(context, server, "pat@a0001.example", "a brand new passphrase").url == server.console + "org/A0001/"


def test_keyboard_only_credential(context, server):
    """Tab order through the new-credential form is the visual order; Enter on the button creates it."""
    page = sign_in(context, server, "delegate@a0001.example")
    visit(page, server, "org/A0001/credentials")

    def focused() -> str:
        return page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()")

    for _ in range(40):  # from the top of the page: skip link, header, navigation, ...
        page.keyboard.press("Tab")
        if focused() == "label":
            break
    assert focused() == "label"
    page.keyboard.type("keyboard")
    order = []
    for _ in range(5):
        page.keyboard.press("Tab")
        order.append(focused())
    assert order == ["auth-secret", "jwks", "jwks_url", "ips", "Create credential"]
    page.keyboard.press("Enter")
    page.wait_for_selector("#secret")
    check(page)
    assert page.locator("#client-id").inner_text().strip()
