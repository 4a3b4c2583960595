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
                return r.status, r.headers, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode(errors="replace")

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


def test_every_page_renders_on_each_engine(server_engine, tmp_path):
    """Every console page without an id in its path renders for the person it is for, with
    the access and job databases on SQLite and on PostgreSQL: the console reads jobs, files,
    people, onboarding and audit through the one SQL layer, and a finished export shows on
    the organization's data page and the operator's jobs page. (The browser tests run on
    SQLite only: they test pages, not engines.)"""
    from .support.console import api_client, kickoff, token, wait_done

    with console_server(tmp_path / "c") as server:
        client = api_client(server, "small-aco")  # organization A0001
        status, body = token(server, client["client_id"], client["secret"])
        assert status == 200
        status, status_url = kickoff(server, body["access_token"])
        assert status == 202
        assert wait_done(server, body["access_token"], status_url) == 200
        job_id = status_url.rstrip("/").rsplit("/", 1)[-1]
        pages = [path for method, path in console_routes(server)
                 if method == "GET" and path.startswith(("/account", "/org/", "/ops/"))
                 and "{" not in path.replace("{org}", "")]
        seen = set()
        for email, own in (("delegate@a0001.example", ("/account", "/org/")), ("operator@cms.example", ("/",))):
            c = Client()
            c.sign_in(server.console, email)
            for path in pages:
                if not path.startswith(own):
                    continue
                status, _, body = c.go("GET", server.console + path.replace("{org}", "A0001").lstrip("/"))
                assert status == 200 and "<html" in body, (server_engine, email, path, status)
                if path in ("/org/{org}/data", "/ops/jobs"):
                    assert job_id in body, (server_engine, path)
                seen.add(path)
        assert seen == set(pages) and len(pages) >= 11
        # The job's own page lists its files; a file downloads; the credential's page renders.
        c = Client()
        c.sign_in(server.console, "delegate@a0001.example")
        status, _, body = c.go("GET", server.console + f"org/A0001/jobs/{job_id}")
        names = re.findall(rf"jobs/{job_id}/files/([^\"/]+\.ndjson[^\"/]*)\"", body)
        assert status == 200 and names, (server_engine, status)
        status, _, _ = c.go("GET", server.console + f"org/A0001/jobs/{job_id}/files/{names[0]}")
        assert status == 200, (server_engine, names[0], status)
        cred = server.access.credentials.by_client_id(client["client_id"])
        status, _, body = c.go("GET", server.console + f"org/A0001/credentials/{cred.id}")
        assert status == 200 and client["client_id"] in body, (server_engine, status)
