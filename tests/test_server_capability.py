"""The CapabilityStatement is built from what the server serves: the registry's resource
types, the kick-off parser's parameter table, the access configuration and the start time.
Each claim the statement makes is checked against the component that honours it."""

import datetime as dt
import json

import pytest

from fhirhose.errors import RequestError
from fhirhose.fhir.registry import SOURCES
from fhirhose.fhir.validate import validate_r4
from fhirhose.server.capability import KICKOFF_PARAM_EXT, capability_statement, kickoff_parameters
from fhirhose.server.models import encode
from fhirhose.server.params import KICKOFF_PARAMS, parse_body, parse_query

from .support.server import Clock, async_test, running

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
REGISTRY_TYPES = {s.rtype for s in SOURCES}
# One valid value per kick-off parameter, to show the parser accepts what the statement lists.
VALID = {
    "_outputFormat": "application/fhir+ndjson",
    "_since": "2024-01-01T00:00:00Z",
    "_until": "2025-01-01T00:00:00Z",
    "_type": "Patient",
    "_elements": "id",
    "_typeFilter": "ExplanationOfBenefit?service-date=ge2024-01-01",
    "allowPartialManifests": "true",
    "patient": "Patient/1",
    "organizeOutputBy": "Patient",
    "includeAssociatedData": "LatestProvenanceResources",
}


def _statement() -> dict:
    return json.loads(encode(capability_statement("http://h/api/v2", NOW.timestamp())))


def _body(name: str, value: str) -> bytes:
    v = {"valueReference": {"reference": value}} if name == "patient" else {"valueString": value}
    return json.dumps({"resourceType": "Parameters", "parameter": [{"name": name, **v}]}).encode()


def _accepts(kind: str, name: str) -> bool:
    """Whether the kick-off parser takes `name` strictly (POST body: every parameter can go there)."""
    try:
        params = parse_body(_body(name, VALID[name]), NOW, kind=kind, lenient=False)
    except RequestError as e:
        assert e.param == name, e  # a rejection names the parameter
        return False
    return not params.warnings


def test_statement_lists_exactly_the_registry_types():
    cap = _statement()
    validate_r4(cap)
    resources = cap["rest"][0]["resource"]
    served = {r["type"] for r in resources if r["type"] != "Group"}
    assert served == REGISTRY_TYPES
    # Group is listed only for its export operation (no Group resources are emitted).
    assert [r.get("operation") for r in resources if r["type"] == "Group"] == [
        [o for o in cap["rest"][0]["operation"] if o["name"] == "group-export"]]
    # The kick-off handler exports those types by default and accepts each in _type.
    assert set(parse_query([], NOW, kind="system", lenient=False).types) == REGISTRY_TYPES
    for t in REGISTRY_TYPES:
        assert parse_query([("_type", t)], NOW, kind="system", lenient=False).types == [t]


@pytest.mark.parametrize("op,kind", [("export", "system"), ("patient-export", "patient"),
                                     ("group-export", "group")])
def test_operation_parameters_are_what_the_parser_accepts(op, kind):
    ops = {o["name"]: o for o in _statement()["rest"][0]["operation"]}
    listed = [e["valueCode"] for e in ops[op]["extension"] if e["url"] == KICKOFF_PARAM_EXT]
    assert listed == kickoff_parameters(kind)
    assert set(VALID) == {p.name for p in KICKOFF_PARAMS}
    for name in VALID:
        assert _accepts(kind, name) == (name in listed), name
    assert "patient" in listed if kind != "system" else "patient" not in listed
    with pytest.raises(RequestError) as e:
        parse_query([("_count", "10")], NOW, kind=kind, lenient=False)
    assert e.value.param == "_count"


def test_type_filter_search_parameters_are_accepted():
    eob = [r for r in _statement()["rest"][0]["resource"] if r["type"] == "ExplanationOfBenefit"][0]
    values = {"service-date": "ge2024-01-01", "_tag": "FinalAction"}
    assert {p["name"] for p in eob["searchParam"]} == set(values)
    for p in eob["searchParam"]:
        q = [("_typeFilter", f"ExplanationOfBenefit?{p['name']}={values[p['name']]}")]
        assert parse_query(q, NOW, kind="system", lenient=False).type_filters, p


@async_test
async def test_served_statement_uses_the_base_url_start_time_and_version(tmp_path):
    import fhirhose

    clock = Clock()
    before = clock()
    async with running(tmp_path / "d", clock=clock) as h:
        clock.advance(86400 * 3)  # the statement's date is the server's start, not the time of the request
        r = await h.session.get(f"{h.base}/metadata")
        cap = await r.json(content_type=None)
    date = dt.datetime.fromisoformat(cap["date"].replace("Z", "+00:00")).timestamp()
    assert before - 1 <= date < clock() - 86400 * 2
    assert cap["implementation"]["url"] == h.base
    assert cap["software"] == {"name": "fhirhose", "version": fhirhose.__version__}
    token = cap["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"]
    assert token == f"{h.base}/auth/token"
