"""The server's CapabilityStatement and SMART configuration, built from what it serves.

Resource types come from the resource registry (`fhir.registry.SOURCES`), kick-off
parameters from the parser's own table (`params.KICKOFF_PARAMS`, with the Prefer values
and organizeOutputBy types it honours beside it), `_typeFilter`
search parameters from `params.TYPE_FILTER_PARAMS`, the token endpoint and signing
algorithms from the access configuration, the version from the package metadata and
the date from the server's start: the statement cannot drift from what is served.
"""

from __future__ import annotations

import datetime as _dt
from importlib import metadata

from .. import __version__
from . import models as m
from .params import KICKOFF_PARAMS, ORGANIZE_BY, OUTPUT_FORMATS, PREFERENCES, TYPE_FILTER_PARAMS
from .web_response import FHIR_JSON

__all__ = ["served_types", "kickoff_parameters", "capability_statement", "smart_configuration", "software_version",
           "BULK_IG", "BULK_IG_VERSION", "KICKOFF_PARAM_EXT", "PREFER_EXT", "ORGANIZE_BY_EXT"]

BULK_IG = "http://hl7.org/fhir/uv/bulkdata"
# The Bulk Data Access IG release whose server CapabilityStatement this one instantiates.
BULK_IG_VERSION = "3.0.0"
# Operation extensions: one supported kick-off parameter, Prefer value, organizeOutputBy type (valueCode).
KICKOFF_PARAM_EXT = "urn:fhirhose:kickoff-parameter"
PREFER_EXT = "urn:fhirhose:prefer"
ORGANIZE_BY_EXT = "urn:fhirhose:organize-output-by"
_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
_SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"

# Export operation (CapabilityStatement name) -> route level and the resource it is defined on.
_OPERATIONS = (("export", "system", None), ("patient-export", "patient", "Patient"),
               ("group-export", "group", "Group"))


def served_types() -> list[str]:
    """Resource types the exporter emits, in registry order."""
    from ..fhir.registry import SOURCES

    return list(dict.fromkeys(s.rtype for s in SOURCES))


def kickoff_parameters(kind: str) -> list[str]:
    """Supported kick-off parameters at `kind` level (system / patient / group)."""
    return [p.name for p in KICKOFF_PARAMS if p.supported and not (p.post_only and kind == "system")]


def software_version() -> str:
    """The installed distribution's version (the source tree's when run uninstalled)."""
    try:
        return metadata.version("fhirhose")
    except metadata.PackageNotFoundError:
        return __version__


def _operation(name: str, kind: str) -> m.CapOperation:
    params = kickoff_parameters(kind)
    return m.CapOperation(
        name, f"{BULK_IG}/OperationDefinition/{name}",
        documentation=(
            f"Parameters: {', '.join(params)}; _outputFormat: {', '.join(sorted(OUTPUT_FORMATS))}; "
            f"organizeOutputBy: {', '.join(ORGANIZE_BY)}; Prefer: {', '.join(PREFERENCES)}. "
            "With _since, the manifest's `deleted` lists resources removed since then (replaced or cancelled "
            "claim versions, beneficiaries who opted out or left the roster) as transaction Bundles of DELETEs."
        ),
        extension=[{"url": KICKOFF_PARAM_EXT, "valueCode": p} for p in params]
        + [{"url": PREFER_EXT, "valueCode": p} for p in PREFERENCES]
        + [{"url": ORGANIZE_BY_EXT, "valueCode": t} for t in ORGANIZE_BY],
    )


def capability_statement(base_url: str, started: float, flavour: str = "v2") -> m.CapabilityStatement:
    """The statement for a server whose FHIR base is `base_url`, started at `started` (epoch s),
    as its `flavour` API ("v2" or "v3": the `_typeFilter` search parameters differ)."""
    ops = {name: _operation(name, kind) for name, kind, _ in _OPERATIONS}
    on_type = {rtype: ops[name] for name, _, rtype in _OPERATIONS if rtype}
    resources = [
        m.CapResource(
            t,
            operation=[on_type[t]] if t in on_type else None,
            searchParam=[m.CapSearchParam(p.name, p.type, documentation=f"in _typeFilter: {p.documentation}")
                         for p in TYPE_FILTER_PARAMS.get(t, ()) if flavour in p.flavours] or None,
        )
        for t in served_types()
    ]
    resources += [m.CapResource(t, operation=[op]) for t, op in on_type.items() if t not in served_types()]
    date = _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds")
    return m.CapabilityStatement(
        status="active",
        date=date.replace("+00:00", "Z"),
        kind="instance",
        fhirVersion="4.0.1",
        format=[FHIR_JSON],
        instantiates=[f"{BULK_IG}/CapabilityStatement/bulk-data|{BULK_IG_VERSION}"],
        software=m.CapSoftware("fhirhose", software_version()),
        implementation=m.CapImplementation(f"fhirhose Bulk Data Access server (BCDA {flavour} flavour)", base_url),
        rest=[
            m.CapRest(
                mode="server",
                resource=resources,
                operation=list(ops.values()),
                security=m.CapSecurity(
                    service=[m.CodeableConcept(coding=[m.Coding(system=_SECURITY_SERVICE, code="SMART-on-FHIR")])],
                    extension=[{"url": _OAUTH_URIS, "extension": [{"url": "token", "valueUri": f"{base_url}/auth/token"}]}],
                ),
            )
        ],
    )


def smart_configuration(base_url: str, assertion_algs: tuple[str, ...] | list[str]) -> m.SmartConfiguration:
    """`.well-known/smart-configuration`: SMART Backend Services over the served types."""
    return m.SmartConfiguration(
        issuer=base_url,
        token_endpoint=f"{base_url}/auth/token",
        grant_types_supported=["client_credentials"],
        token_endpoint_auth_methods_supported=["client_secret_basic", "private_key_jwt"],
        token_endpoint_auth_signing_alg_values_supported=list(assertion_algs),
        scopes_supported=[f"system/{t}.{p}" for p in ("read", "rs") for t in ("*", *served_types())],
        capabilities=["client-confidential-symmetric", "client-confidential-asymmetric", "permission-v1", "permission-v2"],
    )
