"""msgspec Structs for every JSON document the server reads or writes (outside the hot loop).

Decoding a request body through these Structs validates it: a wrong type or unknown
field becomes a `msgspec.ValidationError` whose message names the JSON path, which the
routes turn into a 400 OperationOutcome.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import Struct

from ..export.manifest import CHECKSUM_EXT, FILESIZE_EXT

__all__ = [
    "Coding",
    "CodeableConcept",
    "OperationOutcomeIssue",
    "OperationOutcome",
    "Reference",
    "ParametersParameter",
    "Parameters",
    "ManifestItem",
    "Manifest",
    "ManifestLink",
    "CapabilityStatement",
    "SmartConfiguration",
    "TokenResponse",
    "TokenError",
    "DemoClient",
    "DemoCredentials",
    "JobSummary",
    "JobList",
    "EXT_SHA256",
    "EXT_LENGTH",
    "outcome",
    "encode",
]

# Manifest output-item extension keys, shared with the exporter's manifest.json ("sha256:<hex>"
# and byte length of the NDJSON the client ends up with, after Content-Encoding is undone).
EXT_SHA256 = CHECKSUM_EXT
EXT_LENGTH = FILESIZE_EXT


class _Doc(Struct, omit_defaults=True):
    """Base: absent optional fields are left out of the JSON."""


class Coding(_Doc):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class CodeableConcept(_Doc):
    coding: list[Coding] | None = None
    text: str | None = None


class OperationOutcomeIssue(_Doc):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str
    details: CodeableConcept | None = None
    diagnostics: str | None = None
    expression: list[str] | None = None


class OperationOutcome(_Doc, tag_field="resourceType", tag="OperationOutcome"):
    issue: list[OperationOutcomeIssue]
    id: str | None = None


def outcome(
    text: str,
    *,
    code: str = "invalid",
    severity: Literal["fatal", "error", "warning", "information"] = "error",
    expression: str | None = None,
    id: str | None = None,
) -> OperationOutcome:
    """A one-issue OperationOutcome; `expression` names the offending parameter."""
    return OperationOutcome(
        id=id,
        issue=[
            OperationOutcomeIssue(
                severity=severity,
                code=code,
                details=CodeableConcept(text=text),
                expression=[expression] if expression else None,
            )
        ],
    )


# --- POST kick-off body -------------------------------------------------------------------


class Reference(_Doc, forbid_unknown_fields=True):
    reference: str | None = None
    identifier: dict | None = None
    display: str | None = None


class ParametersParameter(_Doc, forbid_unknown_fields=True):
    name: str
    valueString: str | None = None
    valueCode: str | None = None
    valueUri: str | None = None
    valueCanonical: str | None = None
    valueInstant: str | None = None
    valueDateTime: str | None = None
    valueBoolean: bool | None = None
    valueReference: Reference | None = None

    def __post_init__(self) -> None:
        # FHIR: value[x] is one choice; two would leave which one counts to chance.
        if sum(getattr(self, f) is not None for f in self.__struct_fields__[1:]) > 1:
            raise ValueError(f"parameter {self.name!r} has more than one value[x]")

    def value(self) -> str | bool | Reference | None:
        """The one value[x] that is set (None when none is)."""
        for f in self.__struct_fields__[1:]:
            v = getattr(self, f)
            if v is not None:
                return v
        return None


class Parameters(_Doc, forbid_unknown_fields=True):
    resourceType: Literal["Parameters"]
    parameter: list[ParametersParameter] = []
    id: str | None = None
    meta: dict | None = None


# --- manifest -------------------------------------------------------------------------------


class ManifestItem(_Doc):
    url: str
    type: str | None = None
    count: int | None = None
    extension: dict[str, str | int] | None = None


class ManifestLink(_Doc):
    relation: str
    url: str


class Manifest(_Doc):
    transactionTime: str
    request: str
    requiresAccessToken: bool
    output: list[ManifestItem]
    error: list[ManifestItem]
    outputOrganizedBy: str | None = None  # organizeOutputBy of the kick-off (items then carry no type)
    deleted: list[ManifestItem] = []
    link: list[ManifestLink] | None = None
    extension: dict | None = None


class JobSummary(_Doc):
    id: str
    url: str
    status: str
    request: str
    createdTime: str
    progress: str
    expires: str | None = None


class JobList(_Doc):
    jobs: list[JobSummary]


# --- discovery ------------------------------------------------------------------------------


class CapOperation(_Doc):
    name: str
    definition: str
    documentation: str | None = None
    extension: list[dict] | None = None


class CapSearchParam(_Doc):
    name: str
    type: str
    documentation: str | None = None


class CapResource(_Doc):
    type: str
    operation: list[CapOperation] | None = None
    searchParam: list[CapSearchParam] | None = None


class CapSecurity(_Doc):
    service: list[CodeableConcept]
    extension: list[dict] | None = None
    description: str | None = None


class CapRest(_Doc):
    mode: str
    resource: list[CapResource]
    operation: list[CapOperation]
    security: CapSecurity | None = None


class CapSoftware(_Doc):
    name: str
    version: str


class CapImplementation(_Doc):
    description: str
    url: str


class CapabilityStatement(_Doc, tag_field="resourceType", tag="CapabilityStatement"):
    status: str
    date: str
    kind: str
    fhirVersion: str
    format: list[str]
    instantiates: list[str]
    software: CapSoftware
    implementation: CapImplementation
    rest: list[CapRest]


class SmartConfiguration(_Doc):
    issuer: str
    token_endpoint: str
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    scopes_supported: list[str]
    capabilities: list[str]
    jwks_uri: str | None = None


class TokenResponse(_Doc):
    access_token: str
    expires_in: int
    scope: str
    token_type: str = "bearer"


class TokenError(_Doc):
    error: str
    error_description: str | None = None


# --- configuration files --------------------------------------------------------------------


class DemoClient(Struct):
    """One sandbox client in `credentials.json` (what a user hands to `fhirhose pull`)."""

    organization: str
    kind: Literal["aco", "pdp"]
    client_id: str
    client_secret: str
    jwk: dict
    groups: list[str]
    beneficiaries: int
    model: str = ""  # the access kind (`access.config.KINDS`: ssp, reach, guide, ... sponsor)


class DemoCredentials(Struct):
    fhir_base: str
    clients: list[DemoClient]
    fhir_base_v3: str | None = None  # the same sandbox as BCDA v3 serves it


_encoder = msgspec.json.Encoder()


def encode(doc: Struct) -> bytes:
    """JSON bytes of a Struct (shared encoder, no per-call setup)."""
    return _encoder.encode(doc)
