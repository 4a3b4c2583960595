"""Discovery: `GET {base}/metadata` (CapabilityStatement),
`GET {base}/.well-known/smart-configuration` (SMART Backend Services) and
`GET {base}/openapi.json` (the HTTP API as OpenAPI 3.1). No token needed."""

from __future__ import annotations

from aiohttp import web

from . import models as m
from .capability import capability_statement
from .openapi import openapi_document
from .state import API
from .web_response import FHIR_JSON

__all__ = ["metadata", "smart_config", "openapi"]


async def metadata(request: web.Request) -> web.Response:
    """The CapabilityStatement (built from the registry and this server's configuration)."""
    st = request.app[API]
    doc = capability_statement(st.fhir_base(request), st.started, st.flavour(request))
    return web.Response(body=m.encode(doc), content_type=FHIR_JSON)


async def smart_config(request: web.Request) -> web.Response:
    """The SMART configuration: token endpoint, grant, auth methods, scopes."""
    st = request.app[API]
    doc = st.auth.smart_configuration(st.fhir_base(request))
    return web.Response(body=m.encode(doc), content_type="application/json")


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this server's HTTP API (`server.openapi`)."""
    st = request.app[API]
    base = st.bases[st.flavour(request)]  # the flavour asked (v2 or v3)
    origin = st.fhir_base(request).removesuffix(base)  # scheme, host and any mount prefix
    doc = openapi_document(base, st.config.admin_prefix, origin)
    return web.json_response(doc)
