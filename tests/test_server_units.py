"""Server pieces without HTTP: kick-off parameters, client addresses, Range/encoding, groups."""

import datetime as dt
import json

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from fhirhose.errors import InputError, RequestError
from fhirhose.server.auth import client_address
from fhirhose.server.files import accepts, parse_range
from fhirhose.server.params import DateBound, parse_body, parse_query

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


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
        ((("organizeOutputBy", "Encounter"),), "organizeOutputBy"),
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
    p = q(("_type", "Patient,Observation"), ("frobnicate", "1"), ("organizeOutputBy", "Group"), lenient=True)
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


class _Transport:
    """The one thing make_mocked_request needs to report a peer address."""

    def __init__(self, peer):
        self.peer = peer

    def get_extra_info(self, name, default=None):
        return (self.peer, 4711) if name == "peername" else default


def _request(peer: str, *forwarded: str):
    headers = [("X-Forwarded-For", f) for f in forwarded]
    from multidict import CIMultiDict

    return make_mocked_request("GET", "/", headers=CIMultiDict(headers), transport=_Transport(peer))


def test_client_address_trusts_forwarded_for_only_from_trusted_proxies():
    direct = client_address()
    assert direct(_request("203.0.113.9", "198.51.100.1")) == "203.0.113.9"  # no proxies: the peer
    proxied = client_address(["127.0.0.1", "10.0.0.0/8"])
    assert proxied(_request("127.0.0.1", "198.51.100.1")) == "198.51.100.1"
    # The right-most untrusted hop: the client cannot inject an address left of it.
    assert proxied(_request("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3")) == "198.51.100.1"
    assert proxied(_request("127.0.0.1", "6.6.6.6", "198.51.100.1")) == "198.51.100.1"  # repeated headers
    assert proxied(_request("198.51.100.7", "127.0.0.1")) == "198.51.100.7"  # untrusted peer: header ignored
    assert proxied(_request("127.0.0.1")) == "127.0.0.1"
    assert proxied(_request("127.0.0.1", "10.0.0.1")) == "127.0.0.1"  # only proxies: the peer
    assert proxied(_request("127.0.0.1", "not-an-ip")) == "not-an-ip"  # matches no allowlist
    assert proxied(_request("::ffff:127.0.0.1", "192.0.2.1")) == "192.0.2.1"
    with pytest.raises(InputError, match="trusted proxy"):
        client_address(["localhost"])


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


def test_serve_flags_default_to_server_config(tmp_path):
    # `fhirhose serve` with no tuning flags builds the same config as ServerConfig's defaults
    from fhirhose.cli import build_parser
    from fhirhose.server.cli import config_from_args
    from fhirhose.server.config import ServerConfig

    args = build_parser().parse_args(["serve", "--data", str(tmp_path)])
    got = config_from_args(args, 8080)
    want = ServerConfig(data_dir=str(tmp_path.resolve()), public_url="http://127.0.0.1:8080")
    assert got == want
    moved = config_from_args(build_parser().parse_args(["serve", "--data", str(tmp_path), "--admin-port", "0",
                                                         "--compression", "zstd", "--ttl-hours", "2"]), 8080)
    assert (moved.admin_prefix, moved.compression, moved.file_ttl) == (None, "zstd", 7200)
    bcda = config_from_args(build_parser().parse_args(["serve", "--data", str(tmp_path), "--ndjson-sha256"]), 8080)
    assert bcda.ndjson_sha256 and not want.ndjson_sha256


def test_retry_after_follows_the_job():
    from fhirhose.server.web_status import poll_wait

    assert poll_wait(0.3, 0, 1, 5) == 1  # a small job just kicked off: poll again in a second
    assert poll_wait(4.0, 3, 4, 5) == 1  # one chunk of four left at 1.3 s a chunk
    assert poll_wait(60.0, 1, 10, 5) == 5  # ~9 min left: the longest wait, no more
    assert poll_wait(6.0, 2, 4, 5) == 3  # 6 s left: told half of it
    assert poll_wait(8.0, 0, 4, 5) == 4  # nothing done yet after 8 s: assume as long again
    assert poll_wait(8.0, 0, 4, 0) == 0  # pacing off


def test_chunks_fill_every_worker_to_the_last_round():
    from fhirhose.server.runner import plan_chunks

    assert plan_chunks(6000, 3000, 2) == [(0, 3000), (3000, 6000)]  # one round: no ramp
    got = plan_chunks(10_000, 3000, 2)  # a first round of quarter chunks, then 4 of 2,125, not 3,000 + 3,000 + 2,500
    assert got == [(0, 750), (750, 1500), (1500, 3625), (3625, 5750), (5750, 7875), (7875, 10_000)]
    got = plan_chunks(1001, 100, 2)
    assert got[:2] == [(0, 25), (25, 50)] and len(got) == 12
    assert {hi - lo for lo, hi in got[2:]} <= {95, 96} and got[-1][1] == 1001
    assert plan_chunks(3, 50, 2) == [(0, 2), (2, 3)] and plan_chunks(1, 50, 4) == [(0, 1)]
    assert plan_chunks(0, 50, 2) == []
    assert plan_chunks(120, 50, 1) == [(0, 50), (50, 100), (100, 120)]  # chunks of 12 would only add files
    assert plan_chunks(250, 100, 1) == [(0, 25), (25, 125), (125, 225), (225, 250)]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 5000), st.integers(1, 600), st.integers(1, 8))
def test_chunks_cover_every_beneficiary_once(n, size, workers):
    """Contiguous non-empty ranges over [0, n); an export of two rounds or more starts with a
    round of quarter-size chunks (of 25 or more); the rest are at most `size`, and with several workers a
    multiple of them (one each when there are fewer beneficiaries left) of equal size ±1."""
    from fhirhose.server.runner import plan_chunks

    got = plan_chunks(n, size, workers)
    assert [lo for lo, _ in got] == ([0] + [hi for _, hi in got[:-1]] if n else [])
    assert not got or got[-1][1] == n
    assert all(hi > lo for lo, hi in got)
    first = size // 4
    ramped = n > size * workers and first >= 25
    head, rest = (got[:workers], got[workers:]) if ramped else ([], got)
    assert all(hi - lo == first for lo, hi in head)
    assert all(hi - lo <= size for lo, hi in rest)
    if workers > 1 and rest:
        assert len(rest) % workers == 0 or len(rest) == n - first * len(head)
        assert max(hi - lo for lo, hi in rest) - min(hi - lo for lo, hi in rest) <= 1
