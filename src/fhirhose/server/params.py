"""Kick-off parameters: GET query strings and POST `Parameters` bodies → `ExportParams`.

Repeated parameters that take comma-delimited values are joined (IG: "as if they were
comma delimited values within a single instance"). Anything unsupported or malformed
raises `RequestError` naming the parameter, unless the client sent
`Prefer: handling=lenient`: then the parameter is dropped and a warning is kept for the
job's error file.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable
from typing import NamedTuple

import msgspec
from msgspec import Struct

from ..errors import RequestError
from ..export.organized import ORGANIZE_BY
from ..fhir.instant import parse_instant
from ..fhir.registry import RESOURCE_TYPES
from .models import Parameters, Reference

__all__ = [
    "RESOURCE_TYPES",
    "KickoffParam",
    "KICKOFF_PARAMS",
    "TypeFilterParam",
    "PREFERENCES",
    "ORGANIZE_BY",
    "TYPE_FILTER_PARAMS",
    "FLAVOURS",
    "SYSTEM_TYPE_SYSTEM",
    "SYSTEM_TYPES",
    "OUTCOMES",
    "OUTPUT_FORMATS",
    "FINAL_ACTION_SYSTEMS",
    "DateBound",
    "TypeFilter",
    "ExportParams",
    "parse_instant",
    "parse_query",
    "parse_body",
]

OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
# Final-action tag systems: BFD's newer outputs and its v2 one.
FINAL_ACTION_SYSTEMS = (
    "https://bluebutton.cms.gov/fhir/CodeSystem/Final-Action",
    "https://bluebutton.cms.gov/resources/codesystem/finalAction",
)
FINAL_ACTION_CODES = frozenset({"FinalAction", "NotFinalAction"})
# BCDA v3: the System-Type tag (`_tag`, comma = OR) and the adjudication outcome.
SYSTEM_TYPE_SYSTEM = "https://bluebutton.cms.gov/fhir/CodeSystem/System-Type"
SYSTEM_TYPES = ("SharedSystem", "NationalClaimsHistory", "DDPS")
OUTCOMES = ("complete", "partial")
# API flavours served side by side: v2 (today's BCDA v2 behaviour) and v3 (BCDA v3).
FLAVOURS = ("v2", "v3")
_DATE_PREFIXES = ("eq", "ge", "gt", "le", "lt")


class KickoffParam(NamedTuple):
    """One kick-off parameter the parser recognises (the CapabilityStatement lists the supported ones)."""

    name: str
    type: str  # FHIR parameter type
    repeats: bool  # comma-delimited values, may repeat (joined)
    supported: bool = True  # False: recognised but rejected (dropped with a warning under handling=lenient)
    post_only: bool = False  # only in a POST Parameters body, and not on a system-level export


# The one table of kick-off parameters: the parser's dispatch and the CapabilityStatement read it.
KICKOFF_PARAMS = (
    KickoffParam("_outputFormat", "string", False),
    KickoffParam("_since", "instant", False),
    KickoffParam("_until", "instant", False),
    KickoffParam("_type", "string", True),
    KickoffParam("_elements", "string", True),
    KickoffParam("_typeFilter", "string", True),
    KickoffParam("allowPartialManifests", "boolean", False),
    KickoffParam("patient", "Reference", True, post_only=True),
    KickoffParam("organizeOutputBy", "string", False),
    KickoffParam("includeAssociatedData", "code", True, supported=False),
)
# Prefer header values a kick-off honours (respond-async required), echoed in Preference-Applied.
PREFERENCES = ("respond-async", "handling=lenient", "separate-export-status")


class TypeFilterParam(NamedTuple):
    """One search parameter `_typeFilter` accepts (the CapabilityStatement lists it per flavour)."""

    name: str
    type: str  # FHIR search parameter type
    flavours: tuple[str, ...]  # API flavours that accept it
    documentation: str


# The one table of `_typeFilter` search parameters, per resource type: the parser's dispatch
# and the CapabilityStatement read it.
TYPE_FILTER_PARAMS: dict[str, tuple[TypeFilterParam, ...]] = {
    "ExplanationOfBenefit": (
        TypeFilterParam("service-date", "date", FLAVOURS, "[eq|ge|gt|le|lt]YYYY-MM-DD; the claim's service period"),
        TypeFilterParam(
            "_tag", "token", FLAVOURS,
            f"{FINAL_ACTION_SYSTEMS[0]}|FinalAction or NotFinalAction; v3 also {SYSTEM_TYPE_SYSTEM}|"
            f"{' / '.join(SYSTEM_TYPES)} (comma = OR; without a System-Type only NationalClaimsHistory and DDPS)",
        ),
        TypeFilterParam("outcome", "token", ("v3",), "complete | partial (comma = OR)"),
    )
}
_LIST_PARAMS = tuple(p.name for p in KICKOFF_PARAMS if p.repeats and not p.post_only)
_SINGLE_PARAMS = tuple(p.name for p in KICKOFF_PARAMS if not p.repeats)
_NEXT_QUERY = re.compile(r",(?=[A-Z][A-Za-z]+\?)")
_ELEMENT = re.compile(r"^(?:(?P<type>[A-Z][A-Za-z]+)\.)?(?P<name>[a-z][A-Za-z0-9]*)$")
class DateBound(Struct, array_like=True):
    """One `service-date` comparison: prefix (eq/ge/gt/le/lt) and ISO date."""

    op: str
    date: str


class TypeFilter(Struct, omit_defaults=True):
    """One `_typeFilter` query: all its criteria must hold (AND); several filters of one type OR."""

    type: str
    service_date: list[DateBound] = []
    final_action: list[str] = []  # accepted codes (FinalAction / NotFinalAction)
    system_type: list[str] = []  # accepted System-Types (v3); [] = NationalClaimsHistory and DDPS
    outcome: list[str] = []  # accepted outcomes (v3); [] = any


class ExportParams(Struct, omit_defaults=True):
    """A validated export request, stored with the job."""

    types: list[str]
    explicit_types: bool = False  # the client named them in _type
    output_format: str = "application/fhir+ndjson"
    since: str | None = None
    until: str | None = None
    type_filters: list[TypeFilter] = []
    elements: list[str] = []
    patients: list[str] = []  # Patient ids (POST `patient`)
    allow_partial: bool = False
    warnings: list[list[str]] = []  # [parameter, message] dropped under handling=lenient
    organize_by: str | None = None  # organizeOutputBy: files of blocks per resource of this type
    separate_status: bool = False  # Prefer: separate-export-status (status code in X-Export-Status)


class _Collector:
    """Gathers raw values per parameter and validates them once all are in."""

    def __init__(self, lenient: bool, flavour: str):
        self.lenient = lenient
        self.flavour = flavour
        self.lists: dict[str, list[str]] = {p: [] for p in _LIST_PARAMS}
        self.single: dict[str, str] = {}
        self.patients: list[str] = []
        self.warnings: list[list[str]] = []

    def reject(self, param: str, message: str) -> None:
        """Unsupported input: an error, or a dropped parameter with a warning when lenient."""
        if not self.lenient:
            raise RequestError(message, param=param)
        self.warnings.append([param, message])

    def add(self, name: str, value: str) -> None:
        if name in _LIST_PARAMS:
            # _typeFilter: comma-delimited queries whose values may hold commas themselves (a
            # `_tag` OR-list): a new query starts only where a comma precedes `Type?`.
            parts = _NEXT_QUERY.split(value) if name == "_typeFilter" else value.split(",")
            self.lists[name].extend(p.strip() for p in parts if p.strip())
        elif name in _SINGLE_PARAMS:
            if name in self.single:
                raise RequestError(f"{name} may appear only once", param=name)
            self.single[name] = value.strip()
        elif name == "patient":
            self.patients.append(value)
        else:
            self.reject(name, f"unknown parameter {name!r}")

    def build(self, now: _dt.datetime, *, kind: str) -> ExportParams:
        fmt = self.single.get("_outputFormat", "application/fhir+ndjson")
        if fmt not in OUTPUT_FORMATS:
            raise RequestError(
                f"_outputFormat {fmt!r} is not supported (use application/fhir+ndjson)", param="_outputFormat"
            )
        since = until = None
        if "_since" in self.single:
            since = _utc(parse_instant(self.single["_since"], "_since"), "_since")
            if since > now:
                raise RequestError(f"_since {self.single['_since']} is in the future", param="_since")
        if "_until" in self.single:
            until = _utc(parse_instant(self.single["_until"], "_until"), "_until")
            if since is not None and until <= since:
                raise RequestError("_until must be later than _since", param="_until")
        types = self._types()
        partial = self.single.get("allowPartialManifests", "false")
        if partial not in ("true", "false"):
            raise RequestError(f"allowPartialManifests {partial!r} is not true or false", param="allowPartialManifests")
        organize = self.single.get("organizeOutputBy")
        if organize is not None and organize not in ORGANIZE_BY:
            self.reject("organizeOutputBy", f"organizeOutputBy {organize!r} is not supported "
                        f"(output can be organized by {', '.join(ORGANIZE_BY)})")
            organize = None
        if self.lists["includeAssociatedData"]:
            self.reject("includeAssociatedData", "includeAssociatedData is not supported (no Provenance)")
        if self.patients and kind == "system":
            raise RequestError("patient is not allowed on a system-level export", param="patient")
        return ExportParams(
            types=types,
            explicit_types=bool(self.lists["_type"]),
            output_format=fmt,
            since=_iso(since),
            until=_iso(until),
            type_filters=self._type_filters(types),
            elements=self._elements(types),
            patients=[_patient_id(p) for p in self.patients],
            allow_partial=partial == "true",
            warnings=self.warnings,
            organize_by=organize,
        )

    def _types(self) -> list[str]:
        asked = self.lists["_type"]
        if not asked:
            return list(RESOURCE_TYPES)
        known = [t for t in dict.fromkeys(asked) if t in RESOURCE_TYPES]
        for t in dict.fromkeys(asked):
            if t not in RESOURCE_TYPES:
                self.reject("_type", f"_type {t!r} is not exported here (supported: {', '.join(RESOURCE_TYPES)})")
        if not known:
            raise RequestError("_type names no supported resource type", param="_type")
        return known

    def _elements(self, types: list[str]) -> list[str]:
        out = []
        for e in dict.fromkeys(self.lists["_elements"]):
            m = _ELEMENT.match(e)
            if not m:
                self.reject("_elements", f"_elements {e!r} is not [type.]element with a root element")
            elif m["type"] and m["type"] not in types:
                self.reject("_elements", f"_elements {e!r} names a type that is not exported")
            else:
                out.append(e)
        return out

    def _type_filters(self, types: list[str]) -> list[TypeFilter]:
        out = []
        for q in self.lists["_typeFilter"]:
            try:
                tf = _parse_type_filter(q, self.flavour)
            except RequestError as e:
                self.reject("_typeFilter", str(e))
                continue
            if tf.type not in types:
                self.reject("_typeFilter", f"_typeFilter {q!r} filters a type that is not exported")
                continue
            out.append(tf)
        return out


def _utc(t: _dt.datetime, param: str) -> _dt.datetime:
    """`t` in UTC; an instant whose offset moves it outside years 1-9999 is refused."""
    try:
        return t.astimezone(_dt.timezone.utc)
    except OverflowError:
        raise RequestError(f"{param} {t.isoformat()} is outside the years 0001-9999 once in UTC",
                           param=param) from None


def _iso(t: _dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _patient_id(ref: str) -> str:
    m = re.fullmatch(r"(?:Patient/)?([A-Za-z0-9\-.]{1,64})", ref)
    if not m:
        raise RequestError(f"patient {ref!r} is not a Patient reference", param="patient")
    return m[1]


def _parse_type_filter(query: str, flavour: str) -> TypeFilter:
    """`ExplanationOfBenefit?service-date=ge2023-01-01&_tag=<system>|<code>&outcome=partial`
    (the search parameters of `TYPE_FILTER_PARAMS` this flavour accepts)."""
    from urllib.parse import parse_qsl

    rtype, sep, rest = query.partition("?")
    if not sep or rtype not in TYPE_FILTER_PARAMS:
        raise RequestError(
            f"_typeFilter {query!r}: only ExplanationOfBenefit?<search> is supported", param="_typeFilter"
        )
    known = {p.name: p for p in TYPE_FILTER_PARAMS[rtype]}
    try:
        criteria = parse_qsl(rest, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise RequestError(f"_typeFilter {query!r} is not a query string", param="_typeFilter") from None
    tf = TypeFilter(type=rtype)
    for name, value in criteria:
        if name not in known:
            raise RequestError(f"_typeFilter search parameter {name!r} is not supported (supported: "
                               f"{', '.join(p for p in known if flavour in known[p].flavours)})", param="_typeFilter")
        if flavour not in known[name].flavours:
            raise RequestError(f"_typeFilter search parameter {name!r} is a BCDA {'/'.join(known[name].flavours)} "
                               f"filter, not supported at this {flavour} endpoint", param="_typeFilter")
        if name == "service-date":
            op, date = (value[:2], value[2:]) if value[:2] in _DATE_PREFIXES else ("eq", value)
            try:
                _dt.date.fromisoformat(date)
            except ValueError:
                raise RequestError(f"_typeFilter service-date {value!r} is not [prefix]YYYY-MM-DD", param="_typeFilter") from None
            tf.service_date.append(DateBound(op, date))
        elif name == "_tag":
            for token in value.split(","):
                _add_tag(tf, token.strip(), flavour)
        elif name == "outcome":
            for code in value.split(","):
                if code.strip() not in OUTCOMES:
                    raise RequestError(f"_typeFilter outcome {code.strip()!r} is not one of {', '.join(OUTCOMES)}",
                                       param="_typeFilter")
                tf.outcome.append(code.strip())
    if not (tf.service_date or tf.final_action or tf.system_type or tf.outcome):
        raise RequestError(f"_typeFilter {query!r} has no criteria", param="_typeFilter")
    return tf


def _add_tag(tf: TypeFilter, token: str, flavour: str) -> None:
    """One `_tag` token: the final-action tag, or (v3) a System-Type."""
    system, bar, code = token.rpartition("|")
    if (not bar or system in FINAL_ACTION_SYSTEMS) and code in FINAL_ACTION_CODES:
        tf.final_action.append(code)
        return
    if flavour == "v3" and (not bar or system == SYSTEM_TYPE_SYSTEM) and code in SYSTEM_TYPES:
        tf.system_type.append(code)
        return
    if flavour != "v3" and (system == SYSTEM_TYPE_SYSTEM or code in SYSTEM_TYPES):
        raise RequestError(f"_typeFilter _tag {token!r}: the System-Type tag is a BCDA v3 filter "
                           "(not supported at this v2 endpoint; use /api/v3)", param="_typeFilter")
    v3 = f", or {SYSTEM_TYPE_SYSTEM}|{' / '.join(SYSTEM_TYPES)}" if flavour == "v3" else ""
    raise RequestError(
        f"_typeFilter _tag {token!r}: only {FINAL_ACTION_SYSTEMS[0]}|FinalAction or NotFinalAction{v3} is supported",
        param="_typeFilter",
    )


def parse_query(items: Iterable[tuple[str, str]], now: _dt.datetime, *, kind: str, lenient: bool,
                flavour: str = "v2") -> ExportParams:
    """Validate GET query parameters (`patient` is POST-only) as the `flavour` API does."""
    c = _Collector(lenient, flavour)
    for name, value in items:
        if name == "patient":
            raise RequestError("patient is only accepted in a POST Parameters body", param="patient")
        c.add(name, value)
    return c.build(now, kind=kind)


_params_decoder = msgspec.json.Decoder(Parameters)


def parse_body(body: bytes, now: _dt.datetime, *, kind: str, lenient: bool, flavour: str = "v2") -> ExportParams:
    """Validate a POST `Parameters` body as the `flavour` API does; decode errors name the JSON
    path of the bad field."""
    try:
        doc = _params_decoder.decode(body)
    except msgspec.ValidationError as e:
        raise RequestError(f"Parameters body: {e}", param=_path_of(str(e))) from None
    except msgspec.DecodeError as e:
        raise RequestError(f"Parameters body is not JSON: {e}", param="body") from None
    c = _Collector(lenient, flavour)
    for i, p in enumerate(doc.parameter):
        v = p.value()
        where = f"Parameters.parameter[{i}] ({p.name})"
        if v is None:
            raise RequestError(f"{where} has no value[x]", param=p.name)
        if p.name == "patient":
            if not isinstance(v, Reference) or not v.reference:
                raise RequestError(f"{where} needs valueReference.reference", param="patient")
            c.add("patient", v.reference)
            continue
        if isinstance(v, Reference):
            raise RequestError(f"{where} must not be a valueReference", param=p.name)
        c.add(p.name, ("true" if v else "false") if isinstance(v, bool) else v)
    return c.build(now, kind=kind)


def _path_of(message: str) -> str:
    """The `$.x.y` path msgspec puts at the end of a validation message."""
    m = re.search(r"at `(\$[^`]*)`", message)
    return m[1] if m else "body"
