"""The exporter: row selection, compression round trips, rollover, manifest integrity."""

import datetime as dt
import gzip
import hashlib
import json

import msgspec
import numpy as np
import pytest
import zstandard

from fhirhose import ExportError, InputError
from fhirhose.columns import date_to_days
from fhirhose.export.exporter import ClaimFilter, Exporter, ExportSpec, claim_rows
from fhirhose.export.files import NdjsonFile
from fhirhose.export.manifest import CHECKSUM_EXT, FILESIZE_EXT, STORED_EXT
from fhirhose.fhir.source import Source
from fhirhose.store import schema
from fhirhose.template import K, Template, Val

DAY_MS = 86_400_000


def _ms(iso):
    return int(dt.datetime.fromisoformat(iso).replace(tzinfo=dt.UTC).timestamp() * 1000)


def small_store():
    """3 beneficiaries; claims per bene: 2, 0, 3 (one SUD, one not final)."""
    c = schema.column_for
    bene = schema.complete(
        "bene",
        {
            "bene_id": c("str", ["-1", "-2", "-3"]),
            "bene_mbi_id": c("str", ["1EG4TE5MK73", "2EG4TE5MK74", "3EG4TE5MK75"]),
            "last_updated": c("time", [dt.datetime(2024, 1, d, tzinfo=dt.UTC) for d in (1, 5, 9)]),
        },
        3,
        links={"partb": np.array([0, 2, 2, 5])},
    )
    t = [dt.datetime(2024, 2, d, tzinfo=dt.UTC) for d in (1, 2, 3, 4, 5)]
    partb = schema.complete(
        "partb",
        {
            "clm_id": c("str", ["10", "11", "30", "31", "32"]),
            "bene_id": c("str", ["-1", "-1", "-3", "-3", "-3"]),
            "last_updated": c("time", t),
            "clm_from_dt": c("date", ["2023-01-10", "2023-06-01", "2023-03-01", "2023-09-01", "2024-01-01"]),
            "clm_thru_dt": c("date", ["2023-01-11", None, "2023-03-02", "2023-09-01", "2024-01-02"]),
            "final_action": c("cat", ["F", "F", "F", "N", "F"]),
            "sud_ind": c("cat", ["", "", "Y", "", ""]),
        },
        5,
    )
    tables = {"bene": bene, "partb": partb}
    for name in schema.TABLES:
        if name not in tables:
            tables[name] = schema.complete(name, {}, 0)
    sources = [
        Source("Patient", Template("pat", "bene", K("resourceType", "Patient"), Val("id", "bene_id")), "bene"),
        Source(
            "ExplanationOfBenefit",
            Template(
                "eob", "partb", K("resourceType", "ExplanationOfBenefit"), Val("id", "clm_id", prefix="carrier-")
            ),
            "partb",
            service_dates=("clm_from_dt", "clm_thru_dt"),
        ),
    ]
    return tables, sources


def ids(files, out_dir):
    got = []
    for f in files:
        raw = (out_dir / f.name).read_bytes()
        if f.compression == "gzip":
            raw = gzip.decompress(raw)
        elif f.compression == "zstd":
            raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        got += [json.loads(x)["id"] for x in raw.splitlines()]
    return got


def test_claim_rows_expands_ranges():
    tables, _ = small_store()
    assert claim_rows(tables["bene"], "partb", np.array([0, 1, 2])).tolist() == [0, 1, 2, 3, 4]
    assert claim_rows(tables["bene"], "partb", np.array([2])).tolist() == [2, 3, 4]
    assert claim_rows(tables["bene"], "partb", np.array([1])).tolist() == []


@pytest.mark.parametrize("ndjson_sha256", [False, True])
@pytest.mark.parametrize("compression", ["gzip", "zstd", "identity"])
def test_round_trip_and_integrity(tmp_path, core, compression, ndjson_sha256):
    tables, sources = small_store()
    ex = Exporter(tables, sources, core=core)
    res = ex.export(np.arange(3), ExportSpec(compression=compression, ndjson_sha256=ndjson_sha256), tmp_path,
                    chunk_benes=2)
    # SUD claim 30 never leaves.
    assert sorted(ids(res.files, tmp_path)) == sorted(["-1", "-2", "-3", "carrier-10", "carrier-11", "carrier-31", "carrier-32"])
    manifest = json.loads((tmp_path / "manifest.json").read_bytes())
    assert [o["type"] for o in manifest["output"]] == ["Patient", "Patient", "ExplanationOfBenefit", "ExplanationOfBenefit"]
    assert manifest["error"] == []  # present even when empty, as in the server's manifest
    for item in manifest["output"]:
        stored = raw = (tmp_path / item["url"]).read_bytes()
        if compression == "gzip":
            raw = gzip.decompress(raw)
        elif compression == "zstd":
            raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
            # Every frame carries its content checksum: the decoder verifies the NDJSON.
            assert zstandard.get_frame_parameters(stored).has_checksum
        # The digest covers the bytes as stored and sent.
        assert item["extension"][STORED_EXT] == {"contentEncoding": compression, "length": len(stored),
                                                 "sha256": hashlib.sha256(stored).hexdigest(),
                                                 "ndjsonLength": len(raw)}
        if ndjson_sha256:
            assert item["extension"][CHECKSUM_EXT] == "sha256:" + hashlib.sha256(raw).hexdigest()
            assert item["extension"][FILESIZE_EXT] == len(raw)
        else:
            assert CHECKSUM_EXT not in item["extension"] and FILESIZE_EXT not in item["extension"]
        assert item["count"] == raw.count(b"\n")
    assert not list(tmp_path.glob("*.part"))


def test_filters(tmp_path):
    tables, sources = small_store()
    ex = Exporter(tables, sources)
    every = np.arange(3)
    runs = iter(range(100))

    def exported(spec, since_exempt=None):
        out = tmp_path / str(next(runs))
        out.mkdir()
        return sorted(ids(ex.export_chunk(every, spec, out, since_exempt=since_exempt), out))

    eob = ("ExplanationOfBenefit",)
    assert exported(ExportSpec(types=eob, since_ms=_ms("2024-02-04"))) == ["carrier-31", "carrier-32"]
    assert exported(ExportSpec(types=eob, claim_filters=(ClaimFilter(final_action="N"),))) == ["carrier-31"]
    either = (ClaimFilter(service_ge=date_to_days("2023-12-01")), ClaimFilter(service_le=date_to_days("2023-02-01")))
    assert exported(ExportSpec(types=eob, claim_filters=either)) == ["carrier-10", "carrier-32"]
    lookback = ExportSpec(types=eob, claims_from=date_to_days("2023-06-01"), exclude_sud=False)
    assert exported(lookback) == ["carrier-11", "carrier-31", "carrier-32"]
    # A beneficiary new to the roster gets full history despite _since.
    spec = ExportSpec(types=eob + ("Patient",), since_ms=_ms("2024-02-04"))
    assert exported(spec, np.array([0])) == ["-1", "carrier-10", "carrier-11", "carrier-31", "carrier-32"]


def test_rollover_keeps_line_boundaries(tmp_path, core):
    tables, sources = small_store()
    spec = ExportSpec(types=("ExplanationOfBenefit",), max_file_bytes=1, batch_rows=1, compression="identity")
    files = Exporter(tables, sources, core=core).export_chunk(np.arange(3), spec, tmp_path, chunk=7)
    assert [f.count for f in files] == [1, 1, 1, 1]
    assert [f.name for f in files][:2] == [  # the server's names too (its URLs drop the coding suffix)
        "ExplanationOfBenefit-00007-001.ndjson",
        "ExplanationOfBenefit-00007-002.ndjson",
    ]
    for f in files:
        assert (tmp_path / f.name).read_bytes().endswith(b"}\n")


def test_failure_and_cancel_leave_no_files(tmp_path):
    tables, sources = small_store()
    ex = Exporter(tables, sources)
    with pytest.raises(ExportError, match="cancelled"):
        ex.export_chunk(np.arange(3), ExportSpec(batch_rows=1), tmp_path, cancelled=lambda: True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="_type"):
        ex.export_chunk(np.arange(3), ExportSpec(types=("Observation",)), tmp_path)


def test_unpublished_file_is_invisible(tmp_path):
    f = NdjsonFile(tmp_path, "Patient.000.ndjson.gz", "Patient", "gzip")
    f.write(b'{"a":1}\n', 1)
    assert [p.name for p in tmp_path.iterdir()] == ["Patient.000.ndjson.gz.part"]
    info = f.close()
    assert [p.name for p in tmp_path.iterdir()] == ["Patient.000.ndjson.gz"]
    assert gzip.decompress((tmp_path / info.name).read_bytes()) == b'{"a":1}\n'
    assert msgspec.json.decode(msgspec.json.encode(info))["count"] == 1


def test_elements_subset_keeps_mandatory_and_tags(tmp_path, core):
    """`_elements` through the real templates: requested + mandatory elements, SUBSETTED tag, valid R4."""
    from fhirhose import synth
    from fhirhose.fhir.elements import SUBSETTED_TAG
    from fhirhose.fhir.registry import SOURCES
    from fhirhose.fhir.validate import validate_r4

    tables = synth.generate(20, seed=3).tables
    ex = Exporter(tables, SOURCES, core=core)
    spec = ExportSpec(elements=("ExplanationOfBenefit.billablePeriod", "Patient.name"), compression="identity")
    files = ex.export_chunk(np.arange(tables["bene"].n), spec, tmp_path)
    seen = set()
    for f in files:
        for line in (tmp_path / f.name).read_bytes().splitlines():
            doc = json.loads(line)
            validate_r4(doc)
            seen.add(doc["resourceType"])
            if doc["resourceType"] == "ExplanationOfBenefit":
                assert set(doc) <= {"resourceType", "id", "meta", "contained", "status", "type", "use", "patient",
                                    "created", "insurer", "provider", "outcome", "insurance", "billablePeriod"}
                assert "billablePeriod" in doc and "item" not in doc
                assert SUBSETTED_TAG in doc["meta"]["tag"]
            elif doc["resourceType"] == "Patient":
                assert set(doc) <= {"resourceType", "id", "meta", "name"}
                assert SUBSETTED_TAG in doc["meta"]["tag"]
            else:  # Coverage: no element asked of it, whole resources
                assert "SUBSETTED" not in json.dumps(doc.get("meta", {}))
    assert seen == {"Patient", "Coverage", "ExplanationOfBenefit"}


def test_release_pages_drops_mapped_pages_and_keeps_data(tmp_path, core):
    """After a chunk the exporter releases its memory-mapped pages; later chunks still read right."""
    from fhirhose import synth
    from fhirhose.fhir.registry import SOURCES
    from fhirhose.store import Store

    synth.write(tmp_path / "store", 30, seed=5)
    outs = []
    with Store.open(tmp_path / "store") as snap:
        ex = Exporter(snap.tables, SOURCES, core=core)
        for run in ("a", "b"):
            (tmp_path / run).mkdir()
            files = ex.export_chunk(np.arange(snap.tables["bene"].n), ExportSpec(compression="identity"), tmp_path / run)
            outs.append(sorted((f.name, f.sha256) for f in files))
        assert ex.release_pages() > 0  # memory-mapped store columns were bound
    assert outs[0] == outs[1]
