"""The token endpoint and the bearer-token check of every other request (aiohttp side of
`fhirhose.access`).

- `POST {base}/auth/token`: OAuth 2.0 client credentials (HTTP Basic or a SMART client
  assertion); RFC 6749 §5.2 errors; 429 with Retry-After.
- `AccessAuthenticator.authenticate(request)`: the caller's verified `Principal`.

Handlers take the client address from `client_ip(request)` (default: the TCP peer), so
a server behind a trusted proxy passes the forwarded address IP allowlists are checked
against. Database work (scrypt, SQLite) runs in the default executor so the event loop
never waits on it. The JSON helpers here are shared with the admin API (`web_admin`).
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Callable

from aiohttp import web

from ..access.db import AccessDB
from ..access.tokens import MAX_BODY, Principal, TokenError, TokenRequest, TokenService
from ..errors import AuthError, RequestError
from .capability import smart_configuration
from .models import SmartConfiguration
from .web_errors import classify, read_body

__all__ = ["token_handler", "AccessAuthenticator", "PRINCIPAL", "ClientIP", "peer_address",
           "json_response", "error_response", "off_loop"]

ClientIP = Callable[[web.Request], "str | None"]

PRINCIPAL = web.RequestKey("principal", Principal)


def peer_address(request: web.Request) -> str | None:
    """The TCP peer (no proxy in front)."""
    return request.remote


def json_response(data, status: int = 200, headers: dict | None = None) -> web.Response:
    """Plain JSON (dates and other non-JSON values as strings)."""
    return web.json_response(data, status=status, headers=headers, dumps=lambda o: json.dumps(o, default=str))


def error_response(e: Exception) -> web.Response:
    """An OAuth-style error body (`error`, `error_description`) with the error's status."""
    if isinstance(e, TokenError):
        return json_response(e.body(), e.status, e.headers())
    if isinstance(e, AuthError):
        return json_response({"error": e.oauth_error or "access_denied", "error_description": str(e)}, e.status)
    status = e.status if isinstance(e, RequestError) else 400
    return json_response({"error": "invalid_request", "error_description": str(e)}, status)


async def off_loop(fn, *args, **kw):
    """`fn(*args, **kw)` in the default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kw))


def token_handler(
    svc: TokenService,
    *,
    client_ip: ClientIP = peer_address,
    token_url: Callable[[web.Request], str] | None = None,
    clock: Callable[[], float] | None = None,
    body_timeout: float = 30.0,
):
    """The `POST /auth/token` handler. `token_url(request)` is the audience client
    assertions must carry (default `AccessConfig.token_url`); `clock` pins time;
    the whole body (bounded by `MAX_BODY`) must arrive within `body_timeout` seconds."""

    async def handle(request: web.Request) -> web.Response:
        try:
            try:
                body = await read_body(request, MAX_BODY, body_timeout)
            except RequestError as e:
                raise TokenError("invalid_request", str(e), status=e.status) from None
            req = TokenRequest.parse(body, request.headers.get("Content-Type"), request.headers.get("Authorization"))
            aud = token_url(request) if token_url is not None else None
            now = clock() if clock is not None else None
            tok = await off_loop(svc.issue, req, client_ip(request), now, token_url=aud)
        except AuthError as e:
            return error_response(e)
        except Exception as e:  # noqa: BLE001 - RFC 6749 §5.2 shape for the unexpected (full disk: 503)
            f = classify(e, request)
            return json_response({"error": f.oauth, "error_description": f.text}, f.status,
                                 {"Cache-Control": "no-store", "Pragma": "no-cache", **f.headers})
        return json_response(tok.to_dict(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    return handle


class AccessAuthenticator:
    """Bearer-token checks for a resource server: every request's token is verified
    against the database now (signature, expiry, scope, IP allowlist, credential and
    organization active), with no caching. The verified `Principal` is returned and
    also left in `request[PRINCIPAL]` (for `plan_scope`).

    `client_ip(request)` gives the address allowlists are checked against; `clock`
    pins time (tests, or a server with an injectable clock)."""

    def __init__(self, db: AccessDB, service: TokenService | None = None, *, client_ip: ClientIP = peer_address,
                 clock: Callable[[], float] | None = None):
        self.db = db
        self.service = service or TokenService(db)
        self.client_ip = client_ip
        self.clock = clock

    async def authenticate(self, request: web.Request, types=()) -> Principal:
        """The caller's Principal (AuthError 401/403 otherwise); `types` must all be granted."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        now = self.clock() if self.clock is not None else None
        p: Principal = await off_loop(
            self.service.verify_access_token, token, self.client_ip(request), now, types=tuple(types)
        )
        request[PRINCIPAL] = p
        return p

    def setup(self, app: web.Application, base: str, token_url: Callable[[web.Request], str] | None = None,
              body_timeout: float = 30.0, name: str = "token") -> web.AbstractRoute:
        """Add `POST {base}/auth/token` (route name `name`)."""
        return app.router.add_post(
            f"{base}/auth/token",
            token_handler(self.service, client_ip=self.client_ip, token_url=token_url, clock=self.clock,
                          body_timeout=body_timeout),
            name=name,
        )

    def smart_configuration(self, base_url: str) -> SmartConfiguration:
        """`.well-known/smart-configuration` for a FHIR base (this database's signing algorithms)."""
        return smart_configuration(base_url, self.db.config.assertion_algs)
