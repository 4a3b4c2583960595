"""Server pieces without HTTP: kick-off parameters, auth primitives, Range/encoding, groups."""

import datetime as dt
import json

import numpy as np
import pytest

from fhirhose.errors import AuthError, RequestError
from fhirhose.server import TablePopulation, TokenAuthenticator, hash_secret
from fhirhose.server.auth import scopes_cover, verify_secret
from fhirhose.server.files import accepts, parse_range
from fhirhose.server.models import ClientRecord
from fhirhose.server.params import DateBound, parse_body, parse_query

from .server_support import group_rows, identity, tables

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)


def q(*items, kind="group", lenient=False):
    return parse_query(list(items), NOW, kind=kind, lenient=lenient)


def body(*params, kind="group", lenient=False):
    doc = {"resourceType": "Parameters", "parameter": list(params)}
    return parse_body(json.dumps(doc).encode(), NOW, kind=kind, lenient=lenient)


def bad(fn, *args, **kw) -> RequestError:
    with pytest.raises(RequestError) as e:
        fn(*args, **kw)
    return e.value


def test_defaults_and_repeated_params_join():
    p = q()
    assert p.types == ["Patient", "Coverage", "ExplanationOfBenefit"] and not p.explicit_types
    p = q(("_type", "Patient"), ("_type", "ExplanationOfBenefit,Patient"), ("_elements", "id"),
          ("_elements", "Patient.name,meta"))
    assert p.types == ["Patient", "ExplanationOfBenefit"] and p.explicit_types
    assert p.elements == ["id", "Patient.name", "meta"]
    for fmt in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
        assert q(("_outputFormat", fmt)).output_format == fmt


def test_since_until():
    p = q(("_since", "2024-01-01T00:00:00Z"), ("_until", "2024-02-01T00:00:00.5+01:00"))
    assert p.since == "2024-01-01T00:00:00Z" and p.until == "2024-01-31T23:00:00.500000Z"
    assert q(("_since", "2024-03-04")).since == "2024-03-04T00:00:00Z"
    assert bad(q, ("_since", "2030-01-01T00:00:00Z")).param == "_since"  # future
    assert bad(q, ("_since", "yesterday")).param == "_since"
    assert bad(q, ("_since", "2024-01-01T10:00")).param == "_since"  # no zone
    assert bad(q, ("_since", "2024-02-30T00:00:00Z")).param == "_since"
    assert bad(q, ("_since", "2024-01-01"), ("_since", "2024-01-02")).param == "_since"  # 0..1
    assert bad(q, ("_since", "2024-02-01"), ("_until", "2024-01-01")).param == "_until"


@pytest.mark.parametrize(
    "items, param",
    [
        ((("_outputFormat", "text/csv"),), "_outputFormat"),
        ((("_type", "Observation"),), "_type"),
        ((("_type", "Patient,Observation"),), "_type"),
        ((("_elements", "Patient.name.given"),), "_elements"),
        ((("_elements", "Coverage.status"), ("_type", "Patient")), "_elements"),
        ((("_typeFilter", "Patient?gender=female"),), "_typeFilter"),
        ((("_typeFilter", "ExplanationOfBenefit?service-date=ge2024-13-01"),), "_typeFilter"),
        ((("_typeFilter", "ExplanationOfBenefit?_sort=date"),), "_typeFilter"),
        ((("_typeFilter", "ExplanationOfBenefit?_tag=http://x|FinalAction"),), "_typeFilter"),
        ((("_typeFilter", "ExplanationOfBenefit?service-date=ge2024-01-01"), ("_type", "Patient")), "_typeFilter"),
        ((("allowPartialManifests", "yes"),), "allowPartialManifests"),
        ((("organizeOutputBy", "Patient"),), "organizeOutputBy"),
        ((("includeAssociatedData", "LatestProvenanceResources"),), "includeAssociatedData"),
        ((("frobnicate", "1"),), "frobnicate"),
        ((("patient", "Patient/b1"),), "patient"),  # POST only
    ],
)
def test_bad_query_names_the_parameter(items, param):
    e = bad(q, *items)
    assert e.param == param and e.status == 400
    assert param in str(e) or param == "frobnicate"


def test_lenient_drops_with_warnings():
    p = q(("_type", "Patient,Observation"), ("frobnicate", "1"), ("organizeOutputBy", "Patient"), lenient=True)
    assert p.types == ["Patient"]
    assert sorted(w[0] for w in p.warnings) == ["_type", "frobnicate", "organizeOutputBy"]
    # lenient does not excuse a malformed value of a supported parameter
    assert bad(q, ("_since", "soon"), lenient=True).param == "_since"


def test_type_filters_or_and_and():
    p = q(
        ("_typeFilter", "ExplanationOfBenefit?service-date=ge2024-01-01&service-date=lt2024-07-01"),
        ("_typeFilter", "ExplanationOfBenefit?_tag=https://bluebutton.cms.gov/fhir/CodeSystem/Final-Action|FinalAction"),
    )
    assert len(p.type_filters) == 2  # two filters: OR
    assert p.type_filters[0].service_date == [DateBound("ge", "2024-01-01"), DateBound("lt", "2024-07-01")]
    assert p.type_filters[1].final_action == ["FinalAction"]
    assert q(("_typeFilter", "ExplanationOfBenefit?_tag=NotFinalAction")).type_filters[0].final_action == [
        "NotFinalAction"
    ]


def test_post_parameters_body():
    p = body(
        {"name": "_type", "valueString": "Patient,Coverage"},
        {"name": "_since", "valueInstant": "2024-01-01T00:00:00Z"},
        {"name": "allowPartialManifests", "valueBoolean": True},
        {"name": "patient", "valueReference": {"reference": "Patient/b3"}},
        {"name": "patient", "valueReference": {"reference": "Patient/b4"}},
    )
    assert p.types == ["Patient", "Coverage"] and p.allow_partial and p.patients == ["b3", "b4"]
    assert p.since == "2024-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "raw, where",
    [
        (b'{"resourceType": "Parameters", "parameter": [{"name": 7}]}', "$.parameter[0].name"),
        (b'{"resourceType": "Parameters", "parameter": [{"name": "_type", "valueFoo": "x"}]}', "$.parameter[0]"),
        (b'{"resourceType": "Bundle"}', "$.resourceType"),
        (b'{"resourceType": "Parameters", "parameter": {}}', "$.parameter"),
        (b"not json", "body"),
    ],
)
def test_post_body_decode_errors_name_the_field(raw, where):
    e = bad(parse_body, raw, NOW, kind="group", lenient=False)
    assert e.param == where, str(e)


def test_post_body_semantic_errors():
    assert bad(body, {"name": "patient", "valueString": "Patient/1"}).param == "patient"
    assert bad(body, {"name": "_type"}).param == "_type"
    assert bad(body, {"name": "patient", "valueReference": {"reference": "Patient/1"}}, kind="system").param == "patient"


def test_scrypt_secrets():
    h = hash_secret("hunter2")
    assert h.startswith("scrypt$") and "hunter2" not in h
    assert verify_secret("hunter2", h) and not verify_secret("hunter3", h)
    assert hash_secret("hunter2") != h  # salted
    assert not verify_secret("x", "md5$abc")


def test_tokens_verify_and_expire():
    now = [1_000_000.0]
    client = ClientRecord(client_id="c1", organization="A1", kind="aco", secret_hash=hash_secret("s"))
    auth = TokenAuthenticator({"c1": client}, b"k" * 32, token_ttl=60, clock=lambda: now[0])
    tok = auth.issue(client, ["system/*.read"])
    who = auth.verify(tok)
    assert (who.client_id, who.org_id, who.kind) == ("c1", "A1", "aco") and who.may_export("Coverage")
    head, payload, sig = tok.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    for t in (f"{head}.{forged}.{sig}", tok + "x", "abc", f"{head}.{payload}"):
        with pytest.raises(AuthError) as e:
            auth.verify(t)
        assert e.value.status == 401
    other = TokenAuthenticator({"c1": client}, b"z" * 32, clock=lambda: now[0])
    with pytest.raises(AuthError):
        other.verify(tok)
    now[0] += 61
    with pytest.raises(AuthError, match="expired"):
        auth.verify(tok)


def test_scopes():
    assert scopes_cover(["system/*.read"], "Patient")
    assert scopes_cover(["system/ExplanationOfBenefit.rs"], "ExplanationOfBenefit")
    assert not scopes_cover(["system/Patient.read"], "Coverage")
    assert not scopes_cover(["patient/*.read", "user/*.read"], "Patient")
    assert not scopes_cover(["system/*.c"], "Patient")


def test_accept_encoding_and_ranges():
    assert accepts("gzip, deflate", "gzip") and accepts("x-gzip", "gzip") and accepts("*", "zstd")
    assert not accepts("gzip;q=0", "gzip") and not accepts("identity", "gzip") and not accepts(None, "gzip")
    assert accepts("zstd;q=0.5, gzip", "zstd") and not accepts("*;q=0", "gzip")
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=50-500", 100) == (50, 99)
    assert parse_range("bytes=100-", 100) is False
    assert parse_range("bytes=-0", 100) is False
    for ignored in ("bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=-", None):
        assert parse_range(ignored, 100) is None


def test_groups_from_roster_and_enrollment():
    pop = TablePopulation(tables)
    def rows(org, group="all", kind="aco"):
        return pop.members(identity(org, kind), group).rows.tolist()

    assert rows("A0001") == group_rows("A0001")  # not the 2024 roster row
    assert rows("A0001", "runout") == group_rows("A0001", "runout")
    assert rows("S1234", kind="pdp") == group_rows("S1234")
    assert rows("S1234", "runout", "pdp") == group_rows("S1234", "runout")
    assert pop.members(identity("A0001"), "everyone") is None
    assert rows("A9999") == []
    everyone = pop.members(identity("CMS", "system"), "all")
    assert np.array_equal(everyone.rows, np.arange(tables()["bene"].n)) and everyone.generation is None
    a = group_rows("A0001")
    m = pop.members(identity("A0001"), "all", [f"b{a[3]}", "nope", f"b{a[1]}", f"b{group_rows('A0002')[0]}"])
    assert m.rows.tolist() == [a[1], a[3]] and m.unknown == ["nope", f"b{group_rows('A0002')[0]}"]
