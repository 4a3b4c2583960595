"""`fhirhose export` over a real synthetic store: validity, manifest integrity, populations,
filters, compression, worker pools and errors."""

import collections
import datetime as dt
import fcntl
import gzip
import hashlib
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zstandard

import fhirhose
from fhirhose import synth
from fhirhose.cli import main
from fhirhose.export.cli import select_benes
from fhirhose.export.manifest import CHECKSUM_EXT, FILESIZE_EXT, STORED_EXT
from fhirhose.fhir import c4bb
from fhirhose.fhir.validate import validate_r4
from fhirhose.store import Store

BENES, SEED = 25, 2  # every EOB type occurs at this size and seed
TYPES = ("Patient", "Coverage", "ExplanationOfBenefit")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "store"
    synth.write(root, BENES, SEED)
    return root


@pytest.fixture(scope="module")
def tables(store):
    with Store.open(store) as snap:
        yield snap.tables


def export(store: Path, out: Path, *args: str) -> dict[str, list[bytes]]:
    """Run `fhirhose export` in-process; returns NDJSON lines per type (manifest checked)."""
    assert main(["export", "--store", str(store), "--out", str(out), "--quiet", *args]) == 0
    return read_export(out)


def _decode(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        return gzip.decompress(raw)
    if path.suffix == ".zst":
        return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    return raw


def read_export(out: Path) -> dict[str, list[bytes]]:
    """Lines per resource type, after checking every manifest entry against its file:
    count, the stored file's digest and length (BCDA's NDJSON checksum when given), url relative
    to OUTDIR, no unlisted files."""
    manifest = json.loads((out / "manifest.json").read_bytes())
    assert manifest["requiresAccessToken"] is False
    assert manifest["request"].startswith("fhirhose export --store ")
    dt.datetime.fromisoformat(manifest["transactionTime"])
    assert manifest["error"] == []
    lines: dict[str, list[bytes]] = collections.defaultdict(list)
    for item in manifest["output"]:
        data = _decode(out / item["url"])
        assert "/" not in item["url"] and item["url"].startswith(item["type"] + "-")
        assert data.endswith(b"\n")
        file_lines = data.splitlines()
        assert len(file_lines) == item["count"] > 0
        stored = (out / item["url"]).read_bytes()
        assert item["extension"][STORED_EXT]["sha256"] == hashlib.sha256(stored).hexdigest()
        assert item["extension"][STORED_EXT]["length"] == len(stored)
        assert item["extension"][STORED_EXT]["ndjsonLength"] == len(data)
        if CHECKSUM_EXT in item["extension"]:
            assert item["extension"][CHECKSUM_EXT] == "sha256:" + hashlib.sha256(data).hexdigest()
            assert item["extension"][FILESIZE_EXT] == len(data)
        lines[item["type"]].extend(file_lines)
    listed = {i["url"] for i in manifest["output"]} | {"manifest.json"}
    assert {p.name for p in out.iterdir()} == listed
    assert [TYPES.index(i["type"]) for i in manifest["output"]] == sorted(TYPES.index(i["type"]) for i in manifest["output"])
    return dict(lines)


def ids(lines: list[bytes]) -> list[str]:
    return sorted(json.loads(line)["id"] for line in lines)


def patient_of(resource: dict) -> str:
    ref = resource.get("patient") or resource.get("beneficiary")
    return ref["reference"].removeprefix("Patient/")


@pytest.fixture(scope="module")
def full(store, tmp_path_factory) -> dict[str, list[bytes]]:
    return export(store, tmp_path_factory.mktemp("full") / "out")


@pytest.mark.slow
def test_every_line_is_valid_r4_and_c4bb(full, tables):
    assert set(full) == set(TYPES)
    assert len(full["Patient"]) == tables["bene"].n == BENES
    eob_types = set()
    for rtype, lines in full.items():
        for line in lines:
            resource = json.loads(line)
            assert resource["resourceType"] == rtype
            validate_r4(resource)
            assert c4bb.check(resource) == [], resource["id"]
            if rtype == "ExplanationOfBenefit":
                eob_types.add(resource["id"].split("-")[0])
    assert eob_types == {"carrier", "dme", "hha", "hospice", "inpatient", "outpatient", "snf", "pde"}
    assert len(set(ids(full["ExplanationOfBenefit"]))) == len(full["ExplanationOfBenefit"])


def _roster_ids(tables, org: str, kind: str, year: int) -> list[str]:
    """Bene ids of a roster, read from the roster table directly (not through fhirhose.store.rosters)."""
    r = tables["roster"]
    kinds = [r["roster_kind"].labels[c] for c in r["roster_kind"].codes]
    rows = [int(b) for o, k, y, b in zip(r["org_id"].to_list(), kinds, r["performance_year"].values,
                                         r["bene_row"].values, strict=True) if o == org and k == kind and y == year]
    bene_ids = tables["bene"]["bene_id"].to_list()
    return sorted({bene_ids[b] for b in rows})


def _enrolled_ids(tables, contract: str, year: int) -> list[str]:
    e = tables["enroll"]
    rows = [int(b) for c, y, m, b in zip(e["cntrct_id"].to_list(), e["year"].values, e["month_mask"].values,
                                         e["bene_row"].values, strict=True) if c == contract and y == year and m]
    bene_ids = tables["bene"]["bene_id"].to_list()
    return sorted({bene_ids[b] for b in rows})


def _orgs(store: Path) -> dict[str, dict]:
    return {o["org_id"]: o for o in json.loads((store / "orgs.json").read_bytes())}


@pytest.mark.parametrize(
    "org, group, expected",
    [
        ("A1001", "all", lambda t: _roster_ids(t, "A1001", "Y", synth.AS_OF.year)),
        ("A1001", "runout", lambda t: _roster_ids(t, "A1001", "R", synth.AS_OF.year - 1)),
        ("D1001", "all", lambda t: _roster_ids(t, "D1001", "Y", synth.AS_OF.year)),
        ("S1001", "all", lambda t: _enrolled_ids(t, "S1001", synth.AS_OF.year)),
        ("S1002", "runout", lambda t: _enrolled_ids(t, "S1002", synth.AS_OF.year - 1)),
    ],
)
def test_org_exports_exactly_its_group(store, tables, full, tmp_path, org, group, expected):
    want = expected(tables)
    assert want  # the seed gives every one of these groups members
    if group == "all":
        assert len(want) == _orgs(store)[org]["roster_size"]  # synth's own count agrees
    got = export(store, tmp_path / "out", "--org", org, "--group", group)
    assert ids(got["Patient"]) == want
    # Every other type: exactly the full export's resources of those patients.
    for rtype in ("Coverage", "ExplanationOfBenefit"):
        mine = [line for line in full[rtype] if patient_of(json.loads(line)) in set(want)]
        assert sorted(got.get(rtype, [])) == sorted(mine)


def test_type_selects_files(store, full, tmp_path):
    got = export(store, tmp_path / "out", "--type", "Coverage, Patient,Coverage")
    assert set(got) == {"Patient", "Coverage"}
    for rtype in got:
        assert sorted(got[rtype]) == sorted(full[rtype])


def _updated_ms(line: bytes) -> int:
    return int(dt.datetime.fromisoformat(json.loads(line)["meta"]["lastUpdated"]).timestamp() * 1000)


@pytest.mark.parametrize("form", ["utc", "offset", "date"])
def test_since_keeps_resources_updated_at_or_after(store, full, tmp_path, form):
    stamps = sorted(_updated_ms(line) for line in full["ExplanationOfBenefit"])
    cut = dt.datetime.fromtimestamp(stamps[len(stamps) // 2] / 1000, dt.UTC)
    if form == "date":
        cut = dt.datetime(cut.year, cut.month, cut.day, tzinfo=dt.UTC)
        value = cut.date().isoformat()  # midnight UTC
    elif form == "offset":
        value = cut.astimezone(dt.timezone(dt.timedelta(hours=-5))).isoformat(timespec="milliseconds")
    else:
        value = cut.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    cut_ms = int(cut.timestamp() * 1000)
    got = export(store, tmp_path / "out", "--since", value)
    for rtype, lines in full.items():
        want = sorted(line for line in lines if _updated_ms(line) >= cut_ms)
        assert sorted(got.get(rtype, [])) == want
    assert 0 < len(got["ExplanationOfBenefit"]) < len(full["ExplanationOfBenefit"])


@pytest.mark.parametrize("compression, suffix", [("zstd", ".zst"), ("identity", ""), ("none", "")])  # none: old spelling
def test_compression_variants_and_rollover(store, full, tmp_path, compression, suffix):
    out = tmp_path / "out"
    got = export(store, out, "--compression", compression, "--max-file-mb", "0.5")
    eob_files = sorted(out.glob("ExplanationOfBenefit-*"))
    assert len(eob_files) > 1  # rolled over
    assert all(p.name.endswith(".ndjson" + suffix) for p in out.iterdir() if p.name != "manifest.json")
    for p in eob_files[:-1]:  # each closed file passed the limit on a line boundary
        assert len(_decode(p)) >= 0.5 * (1 << 20)
    assert {t: sorted(v) for t, v in got.items()} == {t: sorted(v) for t, v in full.items()}


def test_ndjson_sha256_option_adds_bcda_checksums(store, tmp_path):
    out = tmp_path / "out"
    export(store, out, "--type", "Patient", "--ndjson-sha256")
    items = json.loads((out / "manifest.json").read_bytes())["output"]
    assert items and all(CHECKSUM_EXT in i["extension"] for i in items)  # read_export checked their values
    plain = tmp_path / "plain"
    export(store, plain, "--type", "Patient")
    assert not any(CHECKSUM_EXT in i["extension"] for i in json.loads((plain / "manifest.json").read_bytes())["output"])


def test_two_workers_give_the_same_resources(store, full, tmp_path):
    out = tmp_path / "out"
    got = export(store, out, "--workers", "2", "--chunk-benes", "5")
    assert len(list(out.glob("Patient-*"))) == -(-BENES // 5)  # one file per chunk: the pool saw them all
    assert {t: collections.Counter(v) for t, v in got.items()} == {t: collections.Counter(v) for t, v in full.items()}


def _env() -> dict[str, str]:
    src = str(Path(fhirhose.__file__).parent.parent)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))


def test_subprocess_run(store, full, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fhirhose.cli", "export", "--store", str(store), "--out", str(out),
           "--org", "A1001", "--type", "Patient", "--compression", "zstd"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
    assert "(core cext)" in done.stdout  # the backend it ran on
    assert str(out / "manifest.json") in done.stdout and "Patient" in done.stdout
    got = read_export(out)
    assert ids(got["Patient"]) == _roster_ids_from_file(store)
    bad = subprocess.run(cmd[:-4] + ["--type", "Claim"], capture_output=True, text=True, env=_env(), timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Claim" in bad.stderr


def _stderr_on_a_terminal(cmd: list[str]) -> str:
    """Run `cmd` with stderr on a pseudo-terminal (80 columns); what it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(cmd, stderr=slave, stdout=subprocess.DEVNULL, env=_env())
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        out += data
    os.close(master)
    assert proc.wait(timeout=300) == 0
    return out.decode()


def test_progress_bar_on_a_terminal_only(store, tmp_path):
    base = [sys.executable, "-m", "fhirhose.cli", "export", "--store", str(store), "--type", "Patient"]
    shown = _stderr_on_a_terminal(base + ["--out", str(tmp_path / "a"), "--chunk-benes", "10"])
    assert "100%" in shown and f"{BENES}/{BENES}" in shown and "bene/s" in shown
    assert _stderr_on_a_terminal(base + ["--out", str(tmp_path / "b"), "--quiet"]).strip() == ""


def _roster_ids_from_file(store: Path) -> list[str]:
    with Store.open(store) as snap:
        return _roster_ids(snap.tables, "A1001", "Y", synth.AS_OF.year)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--org", "Z9999"], "--org Z9999: no such organization"),
        (["--org", "K1001"], "--org K1001 --group all: no roster"),  # an ACO this seed left empty
        (["--type", "Patient,Claim"], "Claim is not one of"),
        (["--since", "2999-01-01T00:00:00Z"], "in the future"),
        (["--since", "2024-01-01T00:00:00"], "is not a FHIR instant"),
        (["--since", "2024-02-30"], "is not a valid instant"),
        (["--workers", "0"], "--workers 0"),
        (["--max-file-mb", "0"], "--max-file-mb 0"),
        (["--chunk-benes", "0"], "--chunk-benes 0"),
    ],
)
def test_errors_are_one_line_exit_2(store, tmp_path, capsys, args, fragment):
    out = tmp_path / "out"
    assert main(["export", "--store", str(store), "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fhirhose export: ") and err.count("\n") == 1 and fragment in err, err
    assert not out.exists()


def test_missing_store_and_non_empty_out(store, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", "--store", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert main(["export", "--store", str(tmp_path / "plain"), "--out", str(out)]) == 2
    assert "not a store" in capsys.readouterr().err
    out.mkdir()
    (out / "old.ndjson").write_bytes(b"{}\n")
    assert main(["export", "--store", str(store), "--out", str(out)]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["old.ndjson"]


def test_org_kind_from_tables_without_orgs_json(store, tables, tmp_path):
    """A store without orgs.json (e.g. CCLF-loaded) finds the same populations from its tables."""
    for org, group in [("A1001", "all"), ("A1001", "runout"), ("S1001", "all"), ("S1002", "runout")]:
        assert np.array_equal(select_benes(tables, tmp_path, org, group), select_benes(tables, store, org, group))


def test_sponsor_with_several_contracts(tables, tmp_path):
    """orgs.json may give a sponsor several contracts: its population is their union."""
    (tmp_path / "orgs.json").write_bytes(msgspec.json.encode(
        [{"org_id": "SPONSOR", "kind": "pdp", "contract_ids": ["S1001", "S1002"]}]))
    both = select_benes(tables, tmp_path, "SPONSOR", "all")
    bene_ids = tables["bene"]["bene_id"].to_list()
    year = synth.AS_OF.year
    assert sorted(bene_ids[r] for r in both) == sorted(set(_enrolled_ids(tables, "S1001", year))
                                                       | set(_enrolled_ids(tables, "S1002", year)))


def test_benchmark_passes_write_what_the_export_writes(store, tmp_path):
    """bench_export's core passes cover exactly the export's records: same bytes, same sha256."""
    from fhirhose.bench.workloads import MemorySink, store_workload

    w = store_workload(store, BENES)
    sinks: list[MemorySink] = []

    def sink() -> MemorySink:
        sinks.append(MemorySink("gzip", sha=True))
        return sinks[-1]

    assert w.core_pass(sink, threads=2) == w.ndjson_bytes
    spec = msgspec.structs.replace(w.spec, ndjson_sha256=True)
    files = {f.type: f for f in w.exporter.export_chunk(w.benes, spec, tmp_path)}  # one file per type
    assert [s.sha.hexdigest() for s in sinks] == [files[t].sha256 for t in w.spec.types]
    assert sum(f.length for f in files.values()) == w.ndjson_bytes
    assert [s.total for s in sinks] == [f.stored for f in (files[t] for t in w.spec.types)]


def test_the_pure_python_twin_is_announced_loudly(store, tmp_path):
    """A user who runs the twin (no compiled core, or FHIRHOSE_PURE=1) is told on stderr, and the
    summary names the backend it ran on."""
    cmd = [sys.executable, "-m", "fhirhose.cli", "export", "--store", str(store), "--out", str(tmp_path / "out"),
           "--org", "A1001", "--type", "Patient"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**_env(), "FHIRHOSE_PURE": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "WARNING: fhirhose export runs on the pure-Python twin (FHIRHOSE_PURE=1)" in done.stderr
    assert "(core py)" in done.stdout
