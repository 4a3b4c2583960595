"""Discovery: `GET {base}/metadata` (CapabilityStatement) and
`GET {base}/.well-known/smart-configuration` (SMART Backend Services). No token needed."""

from __future__ import annotations

from aiohttp import web

from . import models as m
from .capability import capability_statement
from .state import API
from .web_response import FHIR_JSON

__all__ = ["metadata", "smart_config"]


async def metadata(request: web.Request) -> web.Response:
    """The CapabilityStatement (built from the registry and this server's configuration)."""
    st = request.app[API]
    doc = capability_statement(st.fhir_base(request), st.started)
    return web.Response(body=m.encode(doc), content_type=FHIR_JSON)


async def smart_config(request: web.Request) -> web.Response:
    """The SMART configuration: token endpoint, grant, auth methods, scopes."""
    st = request.app[API]
    doc = st.auth.smart_configuration(st.fhir_base(request))
    return web.Response(body=m.encode(doc), content_type="application/json")
