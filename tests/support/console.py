"""Harness for the console's browser tests: a real server on 127.0.0.1 in a thread,
console people in its access database, Debian's Chromium through Playwright, axe-core.

`python -m tests.support.console docs/console` writes the README's screenshots with the
same harness.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from fhirhose.access import AccessDB, Actor
from fhirhose.access.users import ConsoleUsers
from fhirhose.server import TablePopulation, create_app
from fhirhose.server.app import API

from . import FIXTURES
from .server import ACCESS, Clock, clients_of, config, tables

AXE = FIXTURES / "axe" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORD = "console-test-password"
OP = Actor.system("tests")
# email → (name, role, organization, title)
PEOPLE = {
    "operator@cms.example": ("Olivia Operator", "operator", None, ""),
    "delegate@a0001.example": ("Dana Delegate", "credential_delegate", "A0001", ""),
    "exec@a0001.example": ("Evan Executive", "aco_executive", "A0001", ""),
    "delegate@a0002.example": ("Dale Other", "credential_delegate", "A0002", ""),
    "ceo@s1234.example": ("Cora Chief", "attestor", "S1234", "CEO"),
    "throttled@a0001.example": ("Theo Tries", "credential_delegate", "A0001", ""),
    "totp@a0001.example": ("Tara Twostep", "credential_delegate", "A0001", ""),
}


class ConsoleServer:
    """The Bulk Data app (console mounted) serving in a background thread."""

    def __init__(self, data: Path, **config_kw):
        self.data = data
        self.config_kw = config_kw
        self.clock = Clock()
        self.origin = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-server", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # surfaced by start()
            self.error = e
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.app = create_app(config(self.data, **self.config_kw), access=ACCESS, clock=self.clock,
                              population=TablePopulation(tables))
        runner = web.AppRunner(self.app, shutdown_timeout=2)  # a browser keeps connections open: stop anyway
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def start(self) -> ConsoleServer:
        self._thread.start()
        self._ready.wait(60)
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    @property
    def access(self) -> AccessDB:
        return self.app[API].access

    @property
    def console(self) -> str:
        return self.origin + "/console/"

    @property
    def fhir(self) -> str:
        return self.origin + "/api/v2"


def seed_people(db: AccessDB) -> None:
    users = ConsoleUsers(db)
    for email, (name, role, org, title) in PEOPLE.items():
        if users.by_email(email) is None:
            users.create(OP, email, name, role, org, title=title, password=PASSWORD)


@contextmanager
def console_server(data: Path, **config_kw):
    """A running server over `data` with PEOPLE seeded (`config_kw`: ServerConfig fields)."""
    data.mkdir(parents=True, exist_ok=True)
    config(data)  # registers the harness's organizations and API clients
    server = ConsoleServer(data, **config_kw).start()
    try:
        seed_people(server.access)
        yield server
    finally:
        server.stop()


def launch(playwright):
    """Debian's Chromium (Playwright's own browser download is not reachable here)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# -- the API side, over real HTTP (stdlib: the browser owns the test thread) ---------------------


def http(method: str, url: str, *, headers: dict | None = None, body: bytes | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def token(server: ConsoleServer, client_id: str, secret: str) -> tuple[int, dict]:
    """POST /auth/token with HTTP Basic; (status, JSON body)."""
    auth = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    status, _, body = http("POST", server.fhir + "/auth/token", body=b"grant_type=client_credentials",
                           headers={"Authorization": f"Basic {auth}",
                                    "Content-Type": "application/x-www-form-urlencoded"})
    return status, json.loads(body or b"{}")


def kickoff(server: ConsoleServer, access_token: str, path: str = "/Group/all/$export") -> tuple[int, str]:
    """A Bulk Data kick-off; (status, Content-Location)."""
    status, headers, _ = http("GET", server.fhir + path, headers={
        "Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json", "Prefer": "respond-async"})
    return status, headers.get("Content-Location", "")


def wait_done(server: ConsoleServer, access_token: str, status_url: str, polls: int = 2000, advance: float = 3) -> int:
    """Poll (advancing the server's clock past Retry-After) until the job leaves 202."""
    import time

    for _ in range(polls):
        server.clock.advance(advance)
        status, _, _ = http("GET", status_url, headers={"Authorization": f"Bearer {access_token}"})
        if status != 202:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{status_url} still running")


def api_client(server: ConsoleServer, name: str) -> dict:
    """A harness API client (`tests.support.server.CLIENTS`): client_id, secret, org."""
    return clients_of(server.data)[name]


# -- screenshots for the README ----------------------------------------------------------------


def screenshots(out: Path) -> None:
    """Sign in as the delegate, the attestor and the operator and save the main pages as PNG."""
    import tempfile

    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, console_server(Path(tmp), retry_after=0) as server, \
            sync_playwright() as p:
        browser = launch(p)
        c = api_client(server, "small-aco")
        status, tok = token(server, c["client_id"], c["secret"])
        for path in ("/Group/all/$export", "/Group/runout/$export", "/Patient/$export", "/Group/all/$export"):
            code, where = kickoff(server, tok["access_token"], path)
            wait_done(server, tok["access_token"], where, advance=0)
        # A sponsor's request waiting in the operator's queue (made through the library, as the
        # harness's data operations user of S1234, after a real sandbox export).
        sponsor = api_client(server, "sponsor")
        status, tok = token(server, sponsor["client_id"], sponsor["secret"])
        code, where = kickoff(server, tok["access_token"])
        wait_done(server, tok["access_token"], where, advance=0)
        from fhirhose.access.onboarding import Onboarding

        ops = next(u for u in server.access.orgs.users("S1234") if u.role == "data_ops")
        Onboarding(server.access).submit(Actor.user(ops.id), "S1234", where.rsplit("/", 1)[1],
                                         ["203.0.113.7", "198.51.100.0/28"], server.app[API].sandbox_job_completed)
        pages = {
            "delegate@a0001.example": [("sign-in", None), ("org/A0001/", "home"),
                                       ("org/A0001/credentials", "credentials"),
                                       ("org/A0001/data", "data")],
            "ceo@s1234.example": [("org/S1234/", "sponsor-home"), ("org/S1234/onboarding", "onboarding")],
            "operator@cms.example": [("ops/", "ops-health"), ("ops/onboarding", "ops-approvals"),
                                     ("ops/users", "ops-people"), ("ops/orgs", "ops-orgs")],
        }
        for email, shots in pages.items():
            ctx = browser.new_context(viewport={"width": 1200, "height": 800})
            page = ctx.new_page()
            page.goto(server.console + "sign-in")
            if email == "delegate@a0001.example":
                page.screenshot(path=str(out / "sign-in.png"))
            page.fill("#email", email)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            if email == "delegate@a0001.example":
                page.goto(server.console + "org/A0001/credentials")
                page.fill("#label", "nightly pull")
                page.fill("#ips", "203.0.113.7\n198.51.100.0/28")
                page.click("text=Create credential")
                page.screenshot(path=str(out / "secret-once.png"))
            for path, name in shots:
                if name is None:
                    continue
                page.goto(server.console + path)
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            ctx.close()
        browser.close()


if __name__ == "__main__":
    screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console"))
