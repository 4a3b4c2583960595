"""How the server answers what goes wrong: one error middleware for the FHIR routes,
the classification of failures the token endpoint and the admin API share, and the
bounded, timed request-body read every handler that takes a body uses.

Every failure gets one answer, never aiohttp's `500 text/plain`:

| failure | answer | logged as |
|---|---|---|
| `RequestError` / `AuthError` | its status, OperationOutcome naming the parameter | — |
| full disk (ENOSPC, EDQUOT, SQLite "disk is full") | 503 + Retry-After | WARNING, one line |
| the client went away mid-request, a body too large or too slow | 400 / 408 / 413 | INFO, client error |
| anything else | 500 OperationOutcome | ERROR with the traceback |
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3

from aiohttp import web

from ..errors import AuthError, RequestError
from ..log import get_logger
from .web_response import outcome_response

__all__ = ["DISK_RETRY_AFTER", "JSON_ERROR_PREFIXES", "Failure", "classify", "errors_middleware", "read_body"]

log = get_logger(__name__)
client_log = get_logger("fhirhose.server.client")

# Path prefixes of an app whose errors are RFC 6749-style JSON, not OperationOutcomes (the
# admin API): a URL under one that matches no route is answered in that API's own shape.
JSON_ERROR_PREFIXES = web.AppKey("fhirhose_json_error_prefixes", list)

# Seconds a client is told to wait when the disk is full (an operator has to free space).
DISK_RETRY_AFTER = 60
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class Failure:
    """What an unexpected exception means for the answer: HTTP status, FHIR issue code,
    RFC 6749 error code, message, extra headers."""

    def __init__(self, status: int, code: str, oauth: str, text: str, headers: dict | None = None):
        self.status, self.code, self.oauth, self.text, self.headers = status, code, oauth, text, headers or {}


def disk_full(e: BaseException) -> bool:
    """Whether `e` (or what it was raised from) is a full disk or an exceeded quota."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return True
        if isinstance(e, sqlite3.OperationalError) and getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return True
        if getattr(e, "sqlstate", None) == "53100":  # PostgreSQL disk_full (asyncpg's DiskFullError)
            return True
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


def classify(e: Exception, request: web.Request) -> Failure:
    """The answer to an exception no handler expected; logs it at the right level."""
    if disk_full(e):
        log.warning("%s %s: disk full (%s); answered 503", request.method, request.path, e)
        return Failure(503, "transient", "temporarily_unavailable",
                       "the server's disk is full; retry later", {"Retry-After": str(DISK_RETRY_AFTER)})
    if isinstance(e, (ConnectionResetError, BrokenPipeError)) or isinstance(e, web.HTTPException) and e.status < 500:
        client_log.info("%s %s from %s: client error: %s", request.method, request.path, request.remote, e)
        status = e.status if isinstance(e, web.HTTPException) else 400
        return Failure(status, "invalid", "invalid_request", f"request not read: {e}")
    log.error("%s %s failed", request.method, request.path, exc_info=e)
    return Failure(500, "exception", "server_error", "internal server error (logged on the server)")


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The whole request body (every TCP segment), at most `limit` bytes, within `timeout`
    seconds: 413 when larger, 408 when the client is too slow to send it."""
    if request.content_length is not None and request.content_length > limit:
        raise RequestError(f"request body of {request.content_length} bytes is larger than {limit}",
                           status=413, param="body")
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await request.content.read(min(65536, limit + 1 - size))
                if not chunk:
                    break
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise RequestError(f"request body is larger than {limit} bytes", status=413, param="body")
    except TimeoutError:
        client_log.info("%s %s from %s: client error: body not complete after %s s",
                        request.method, request.path, request.remote, timeout)
        raise RequestError(f"request body not received within {timeout:g} s", status=408, param="body") from None
    return b"".join(parts)


@web.middleware
async def errors_middleware(request: web.Request, handler):
    """Every error of a FHIR route as an OperationOutcome (`application/fhir+json`); a URL
    under a `JSON_ERROR_PREFIXES` prefix that matches no route gets that API's JSON error."""
    try:
        return await handler(request)
    except RequestError as e:
        code = {404: "not-found", 408: "timeout", 413: "too-costly", 429: "throttled"}.get(e.status, "invalid")
        return outcome_response(e.status, str(e), code=code, expression=e.param)
    except AuthError as e:
        headers = {}
        if e.status == 401:
            headers["WWW-Authenticate"] = f'Bearer realm="fhirhose", error="{e.oauth_error or "invalid_token"}"'
        return outcome_response(e.status, str(e), code="login" if e.status == 401 else "forbidden", headers=headers)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "retry-after")}
        path = request.path
        if any(path == p or path.startswith(p + "/") for p in request.app.get(JSON_ERROR_PREFIXES, ())):
            return web.json_response({"error": "invalid_request", "error_description": e.reason}, status=e.status,
                                     headers=headers)
        return outcome_response(e.status, e.reason, code="not-found" if e.status == 404 else "invalid",
                                headers=headers)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - the one place every unexpected failure gets its answer
        f = classify(e, request)
        return outcome_response(f.status, f.text, code=f.code, headers=f.headers)
