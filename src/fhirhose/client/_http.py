"""HTTP details shared by the client's parts: error bodies, JSON bodies, Retry-After,
network failures."""

from __future__ import annotations

import asyncio
import email.utils
import json
import ssl
import time
from collections.abc import Mapping

import aiohttp

from ..errors import ClientError

__all__ = ["NET_ERRORS", "ServerError", "error_text", "network_error", "read_json", "retry_after"]

MAX_WAIT = 600.0  # never sleep longer than this on one Retry-After
# A request that may succeed when tried again: the connection failed, broke or timed out.
NET_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)


class ServerError(ClientError):
    """The server answered with an error status; the message carries its own explanation
    (OperationOutcome issues, or the OAuth error and description)."""

    def __init__(self, what: str, status: int, body: bytes, content_type: str | None):
        self.status = status
        self.text = error_text(body, content_type)
        super().__init__(f"{what}: HTTP {status}: {self.text}")


def _issue_text(issue: dict) -> str:
    details = issue.get("details") or {}
    text = details.get("text") or issue.get("diagnostics") or ", ".join(
        c.get("display") or c.get("code", "") for c in details.get("coding", [])) or "(no text)"
    where = issue.get("expression") or issue.get("location")
    head = f"{issue.get('severity', 'error')} [{issue.get('code', '?')}]"
    return f"{head} {text}" + (f" (at {', '.join(where)})" if where else "")


def error_text(body: bytes, content_type: str | None = None) -> str:
    """What the server said: OperationOutcome issues joined, an OAuth error, or the body's start."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        if doc.get("resourceType") == "OperationOutcome" and isinstance(doc.get("issue"), list):
            return "; ".join(_issue_text(i) for i in doc["issue"] if isinstance(i, dict)) or "(empty OperationOutcome)"
        if "error" in doc:
            desc = doc.get("error_description")
            return f"{doc['error']}: {desc}" if desc else str(doc["error"])
    text = body[:500].decode("utf-8", "replace").strip()
    return text or f"(empty {content_type or 'body'})"


async def read_json(r: aiohttp.ClientResponse, what: str) -> dict | None:
    """The JSON object of a response body (None: an empty body); `what` names the request in errors."""
    body = await r.read()
    if not body.strip():
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        raise ClientError(f"{what}: the response is not JSON: {error_text(body)}") from None
    if not isinstance(doc, dict):
        raise ClientError(f"{what}: the response is not a JSON object")
    return doc


def retry_after(headers: Mapping[str, str], default: float) -> float:
    """Seconds to wait from a Retry-After header (delay seconds or an HTTP date); `default` without one."""
    value = headers.get("Retry-After")
    if value is None:
        return default
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_WAIT)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return default
    return min(max(0.0, when - time.time()), MAX_WAIT)


def network_error(base: str, e: BaseException) -> str:
    """One line for a request that got no HTTP answer (connection, DNS, TLS, timeout),
    naming the server's URL and what went wrong."""
    if isinstance(e, aiohttp.InvalidURL):
        return f"{e.url}: not a valid URL"
    if isinstance(e, (aiohttp.ClientSSLError, ssl.SSLError)):
        return f"{base}: TLS failed: {getattr(e, 'reason', None) or e}"
    if isinstance(e, aiohttp.ClientConnectorError):
        why = e.os_error.strerror or str(e.os_error) or type(e.os_error).__name__
        return f"{base}: cannot connect to {e.host}:{e.port}: {why}"
    if isinstance(e, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return f"{base}: no answer in time (timed out)"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return f"{base}: the server closed the connection without an answer"
    return f"{base}: {type(e).__name__}: {e}"
