"""Response helpers every handler module shares: the FHIR JSON media type, an
OperationOutcome response, and HTTP dates."""

from __future__ import annotations

from email.utils import formatdate
from typing import Literal

from aiohttp import web

from . import models as m

__all__ = ["FHIR_JSON", "outcome_response", "http_date"]

FHIR_JSON = "application/fhir+json"


def outcome_response(status: int, text: str, *, code: str, expression: str | None = None,
                     severity: Literal["fatal", "error", "warning", "information"] = "error",
                     headers: dict | None = None) -> web.Response:
    """An OperationOutcome (`application/fhir+json`) with one issue."""
    body = m.encode(m.outcome(text, code=code, expression=expression, severity=severity))
    return web.Response(status=status, body=body, content_type=FHIR_JSON, headers=headers)


def http_date(t: float) -> str:
    """An epoch time as an HTTP date (`Expires`, `Last-Modified`)."""
    return formatdate(t, usegmt=True)
