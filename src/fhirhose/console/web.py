"""The console's aiohttp sub-application: sessions, CSRF, security headers, rendering.

Every request passes three middlewares, outermost first:

1. `_guard`: security headers on every answer (a CSP without inline script or
   style, no framing, no caching of pages) and errors as HTML pages (403 for a
   refused permission, 404, 400 with the library's message, 429 when throttled).
2. `_session`: the session cookie → `request[SESSION]`; pages other than sign-in
   and static files redirect to sign-in without one; a session waiting for its
   TOTP code reaches only the code page and sign-out.
3. `_csrf`: every POST carries the form field `csrf`, an HMAC of the session (or,
   before sign-in, of a random pre-session cookie); otherwise 403, audited.

Handlers call the access library in a thread (`Ctx.run`): SQLite, argon2 and scrypt
never block the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ..access.orgs import PermissionDenied
from ..access.sessions import Session, Sessions
from ..access.users import ConsoleUser, ConsoleUsers, SignInError
from ..errors import AuthError, InputError, RequestError
from ..log import get_logger
from .backend import ConsoleBackend
from .plot import human_bytes

__all__ = ["create_console", "Ctx", "CONSOLE", "SESSION", "COOKIE", "PRE_COOKIE"]

log = get_logger(__name__)
HERE = Path(__file__).parent
COOKIE = "fhirhose_console"
PRE_COOKIE = "fhirhose_console_pre"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@dataclass
class ConsoleState:
    backend: ConsoleBackend
    prefix: str
    users: ConsoleUsers
    sessions: Sessions
    # One-shot messages per session, shown on the next page (this process only).
    flash: dict[bytes, list[tuple[str, str]]] = field(default_factory=dict)


CONSOLE = web.AppKey("fhirhose_console", ConsoleState)
SESSION = web.RequestKey("console_session", Session)
CSRF_TOKEN = web.RequestKey("console_csrf_token", str)
NEW_PRE_COOKIE = web.RequestKey("console_new_pre_cookie", str)


class Ctx:
    """Per-request helpers: the signed-in person, permission checks, library calls off the loop."""

    def __init__(self, request: web.Request):
        self.request = request
        self.state: ConsoleState = request.app[CONSOLE]
        self.session: Session | None = request.get(SESSION)
        self.db = self.state.backend.access
        self.backend = self.state.backend

    @property
    def user(self) -> ConsoleUser:
        assert self.session is not None
        return self.session.user

    @property
    def ip(self) -> str | None:
        return self.backend.client_ip(self.request)

    @property
    def now(self) -> float:
        return self.backend.clock()

    async def run(self, fn: Callable, *args, **kw) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kw))

    async def require(self, permission: str, org_id: str | None) -> None:
        """403 (audited) unless the person holds `permission` for `org_id` — on the server,
        whatever the page showed."""
        await self.run(self.state.users.require, self.user, permission, org_id, self.now)

    def url(self, path: str = "") -> str:
        return self.state.prefix + path.lstrip("/")

    def flash(self, kind: str, text: str) -> None:
        if self.session is not None:
            self.state.flash.setdefault(self.session.token_hash, []).append((kind, text))

    def redirect(self, path: str) -> web.HTTPSeeOther:
        return web.HTTPSeeOther(self.url(path))

    async def form(self) -> dict[str, str]:
        data = await self.request.post()
        return {k: v for k, v in data.items() if isinstance(v, str)}

    async def audit(self, action: str, org_id: str | None = None, outcome: str = "ok", **detail) -> None:
        def write():
            with self.db.tx():
                self.db.audit.record(action, actor=self.user.actor(), org_id=org_id, outcome=outcome, ip=self.ip,
                                     now=self.now, **detail)

        await self.run(write)

    def render(self, template: str, context: dict, *, status: int = 200) -> web.Response:
        return render(self.request, template, context, status=status)


def render(request: web.Request, template: str, context: dict, *, status: int = 200) -> web.Response:
    state: ConsoleState = request.app[CONSOLE]
    session: Session | None = request.get(SESSION)
    flashes = state.flash.pop(session.token_hash, []) if session is not None else []
    base = {"prefix": state.prefix, "me": session.user if session and session.complete else None,
            "csrf": request.get(CSRF_TOKEN, ""), "flashes": flashes, "path": request.path}
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def people_names(users: ConsoleUsers) -> dict[str, str]:
    """Actor strings as the audit log writes them → the person's email (for display)."""
    names = {}
    for cu in users.list():
        names[str(cu.actor())] = cu.email
    return names


def audit_filters(query) -> dict[str, str]:
    """The audit pages' filters from the query string (bounded; outcome "ok" or "denied")."""
    outcome = query.get("outcome", "")
    return {"action": query.get("action", "")[:64], "outcome": outcome if outcome in ("ok", "denied") else "",
            "actor": query.get("actor", "")[:64]}


def _cookie_secure(request: web.Request) -> bool:
    return request.secure or request.app[CONSOLE].backend.secure_cookies


def set_session_cookie(request: web.Request, resp: web.StreamResponse, token: str) -> None:
    state: ConsoleState = request.app[CONSOLE]
    resp.set_cookie(COOKIE, token, path=state.prefix, httponly=True, samesite="Strict", secure=_cookie_secure(request))


def clear_session_cookie(request: web.Request, resp: web.StreamResponse) -> None:
    state: ConsoleState = request.app[CONSOLE]
    resp.del_cookie(COOKIE, path=state.prefix)


@web.middleware
async def _guard(request: web.Request, handler):
    try:
        resp = await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            resp = e
        else:
            resp = _error_page(request, e.status, e.reason)
    except SignInError as e:  # only reached outside the sign-in form
        resp = _error_page(request, e.status, str(e))
    except PermissionDenied as e:
        resp = _error_page(request, 403, str(e))
    except AuthError as e:
        resp = _error_page(request, e.status if e.status in (401, 403) else 403, str(e))
    except RequestError as e:
        resp = _error_page(request, e.status, str(e))
    except InputError as e:
        resp = _error_page(request, 400, str(e))
    except Exception:  # a bug: logged with its trace; the person sees a plain 500 page
        log.exception("console %s %s failed", request.method, request.path)
        resp = _error_page(request, 500, "the server failed on this request; it was logged")
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    if not request.path.startswith(request.app[CONSOLE].prefix + "static/"):
        resp.headers["Cache-Control"] = "no-store"
    if isinstance(resp, web.HTTPException):
        raise resp
    return resp


def _error_page(request: web.Request, status: int, message: str) -> web.Response:
    titles = {400: "That did not work", 401: "Sign in again", 403: "Not allowed", 404: "Not found",
              405: "Not allowed", 429: "Too many attempts"}
    return render(request, "error.html", {"status": status, "title": titles.get(status, "Error"),
                                          "message": message}, status=status)


@web.middleware
async def _session(request: web.Request, handler):
    state: ConsoleState = request.app[CONSOLE]
    rel = "/" + request.path[len(state.prefix):]
    if rel.startswith("/static/"):
        return await handler(request)
    token = request.cookies.get(COOKIE)
    session = await asyncio.get_running_loop().run_in_executor(
        None, state.sessions.get, token, state.backend.clock()) if token else None
    if session is not None:
        request[SESSION] = session
        request[CSRF_TOKEN] = state.sessions.csrf_token(session.token_hash)
    if session is None:
        if rel.startswith("/sign-in") and rel != "/sign-in/totp":
            return await handler(request)
        if request.method == "POST":
            raise web.HTTPForbidden(reason="your session ended; sign in again")
        raise web.HTTPSeeOther(state.prefix + "sign-in")
    if not session.complete and rel not in ("/sign-in/totp", "/sign-out"):
        raise web.HTTPSeeOther(state.prefix + "sign-in/totp")
    return await handler(request)


@web.middleware
async def _csrf(request: web.Request, handler):
    state: ConsoleState = request.app[CONSOLE]
    session: Session | None = request.get(SESSION)
    if request.path.startswith(state.prefix + "static/"):
        return await handler(request)
    if session is None:  # the sign-in form: bound to a random pre-session cookie
        pre = request.cookies.get(PRE_COOKIE) or ""
        if not pre or len(pre) > 128:
            pre = secrets.token_urlsafe(32)
            request[NEW_PRE_COOKIE] = pre
        key = hashlib.sha256(pre.encode()).digest()
        request[CSRF_TOKEN] = state.sessions.csrf_token(key)
    else:
        key = session.token_hash
    if request.method == "POST":
        data = await request.post()
        sent = data.get("csrf")
        if not isinstance(sent, str) or not state.sessions.csrf_ok(key, sent) or NEW_PRE_COOKIE in request:
            def log():
                db = state.backend.access
                with db.tx():
                    db.audit.record("console.csrf", actor=session.user.actor() if session else "console:anonymous",
                                    org_id=session.user.org_id if session else None, outcome="denied",
                                    ip=state.backend.client_ip(request), now=state.backend.clock(), path=request.path)

            await asyncio.get_running_loop().run_in_executor(None, log)
            raise web.HTTPForbidden(reason="the form's CSRF token is missing or wrong; reload the page and try again")
    resp = await handler(request)
    if NEW_PRE_COOKIE in request:
        resp.set_cookie(PRE_COOKIE, request[NEW_PRE_COOKIE], path=state.prefix, httponly=True, samesite="Strict",
                        secure=_cookie_secure(request))
    return resp


def _fmt_time(t: float | None) -> str:
    import datetime as dt

    if t is None:
        return "—"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def create_console(backend: ConsoleBackend, prefix: str = "/console/") -> web.Application:
    """The console application; mount it with `app.add_subapp(prefix, create_console(...))`."""
    from . import pages_auth, pages_ops, pages_org

    prefix = "/" + prefix.strip("/") + "/"
    app = web.Application(middlewares=[_guard, _session, _csrf])
    sessions = Sessions(backend.access)
    sessions.csrf_token(b"")  # reads the CSRF key now, so no request waits on the database for it
    app[CONSOLE] = ConsoleState(backend, prefix, ConsoleUsers(backend.access), sessions)
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                               undefined=jinja2.StrictUndefined)
    env.filters["when"] = _fmt_time
    env.filters["bytes"] = human_bytes
    app.router.add_static("/static/", HERE / "static", name="static")
    pages_auth.add_routes(app)
    pages_org.add_routes(app)
    pages_ops.add_routes(app)
    return app
