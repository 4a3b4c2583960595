"""The console over plain HTTP (no browser): cookies, session expiry, static files, headers."""

from __future__ import annotations

import re
import urllib.request
from http.cookiejar import CookieJar

import pytest

from .support.console import PASSWORD, console_server


class Client:
    """A cookie-keeping HTTP client that does not follow redirects."""

    def __init__(self):
        self.jar = CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **kw):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def go(self, method: str, url: str, form: dict | None = None):
        from urllib.parse import urlencode

        data = urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        try:
            with self.opener.open(req, timeout=60) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()

    def sign_in(self, base: str, email: str) -> None:
        _, _, page = self.go("GET", base + "sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        status, headers, _ = self.go("POST", base + "sign-in", {"csrf": csrf, "email": email, "password": PASSWORD})
        assert status == 303, status


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    # Served over plain HTTP here, but its public URL is https (TLS ends at a proxy). A client
    # sends Secure cookies only over https, so this server serves only the cookie test.
    with console_server(tmp_path_factory.mktemp("console-tls"), public_url="https://console.example") as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with console_server(tmp_path_factory.mktemp("console-http")) as s:
        yield s


def test_cookies_are_secure_behind_tls(tls_server):
    c = Client()
    status, headers, _ = c.go("GET", tls_server.console + "sign-in")
    cookie = headers["Set-Cookie"]
    assert status == 200 and "fhirhose_console_pre=" in cookie
    for attr in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/console/"):
        assert attr in cookie, cookie


def test_idle_session_ends(server):
    c = Client()
    c.sign_in(server.console, "delegate@a0001.example")
    assert c.go("GET", server.console + "org/A0001/")[0] == 200
    server.clock.advance(14 * 60)  # each request restarts the idle clock
    assert c.go("GET", server.console + "org/A0001/")[0] == 200
    server.clock.advance(16 * 60)
    status, headers, _ = c.go("GET", server.console + "org/A0001/")
    assert status == 303 and headers["Location"].endswith("/console/sign-in")


def test_static_files_and_headers(server):
    c = Client()
    status, headers, body = c.go("GET", server.console + "static/console.js")
    assert status == 200 and "javascript" in headers["Content-Type"] and "Cache-Control" not in headers
    for path in ("static/../templates/base.html", "static/%2e%2e/templates/base.html", "static/../web.py"):
        status, headers, body = c.go("GET", server.console + path)
        assert status in (403, 404) and "{% block" not in body and "import" not in body
    status, headers, _ = c.go("GET", server.console + "sign-in")
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer" and headers["X-Content-Type-Options"] == "nosniff"
    # The FHIR API is unaffected: its errors are still OperationOutcomes, not console pages.
    status, headers, body = c.go("GET", server.fhir + "/jobs")
    assert status == 401 and headers["Content-Type"].startswith("application/fhir+json")


def console_routes(server) -> list[tuple[str, str]]:
    """(method, path below /console) of every GET and POST route of the console."""
    from aiohttp.web_urldispatcher import PrefixedSubAppResource

    sub = next(r for r in server.app.router.resources() if isinstance(r, PrefixedSubAppResource))
    prefix = sub.canonical.rstrip("/")
    routes = sub.get_info()["app"].router.routes()
    return [(r.method, r.resource.canonical.removeprefix(prefix)) for r in routes
            if r.method in ("GET", "POST") and r.resource is not None]


def test_every_console_route_needs_a_session(server):
    """No page or action is open without signing in (except sign-in and static files)."""
    routes = console_routes(server)
    assert len(routes) > 35
    c = Client()
    for method, path in routes:
        if path.startswith(("/sign-in", "/static")):
            continue
        url = server.console + re.sub(r"\{[^}]+\}", "1", path).lstrip("/")
        status, headers, _ = c.go(method, url, {} if method == "POST" else None)
        if method == "GET":
            assert status == 303 and headers["Location"].endswith("/console/sign-in"), (method, path, status)
        else:
            assert status == 403, (method, path, status)


def test_every_route_refuses_another_organization(server):
    """Signed in to A0001, every page and action of A0002 and of the operator is 403, with a
    valid CSRF token too: the role check runs on the server before anything is looked up."""
    c = Client()
    c.sign_in(server.console, "delegate@a0001.example")
    _, _, page = c.go("GET", server.console + "org/A0001/credentials")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    checked = 0
    for method, path in console_routes(server):
        if not path.startswith(("/org/", "/ops/")):
            continue
        url = server.console + re.sub(r"\{[^}]+\}", "1", path.replace("{org}", "A0002")).lstrip("/")
        status, _, body = c.go(method, url, {"csrf": csrf} if method == "POST" else None)
        assert status == 403 and "Not allowed" in body, (method, path, status)
        checked += 1
    assert checked >= 30
    assert server.access.orgs.get("A0002").active  # nothing happened
