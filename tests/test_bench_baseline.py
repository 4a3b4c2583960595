"""The benchmark's honest baseline builds exactly what the compiled writer writes."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("orjson")

from fhirhose.bench.carrier_baseline import CarrierBuilder  # noqa: E402
from fhirhose.bench.workloads import carrier_workload  # noqa: E402


def test_hand_written_carrier_builder_equals_the_writer():
    w = carrier_workload(120)
    lines = w.sample.splitlines()
    built = CarrierBuilder(w.tables).dumps(w.rows.tolist()).splitlines()
    assert len(built) == len(lines) > 100
    # The same documents (key order aside: JSON objects are unordered), numbers of the same kind.
    assert [json.loads(b) for b in built] == [json.loads(line) for line in lines]
    assert abs(sum(map(len, built)) - sum(map(len, lines))) < 0.02 * sum(map(len, lines))
