"""The command line off the happy path, as a user meets it: real processes, real files, real
servers on 127.0.0.1. Every refusal is one line on stderr (`fhirhose <command>: ...`), exit
status 2, no traceback, and leaves nothing behind; Ctrl-C is one line and 130, and what it
prints to continue works as printed."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import fhirhose
from fhirhose import synth
from fhirhose.cli import main
from fhirhose.client import BulkClient
from fhirhose.errors import ClientError

from .support.server import async_test, build_store
from .test_client import HOLD_EXPORTER, ORG, serving

SRC = str(Path(fhirhose.__file__).resolve().parent.parent)
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
FHIRHOSE = [sys.executable, "-m", "fhirhose.cli"]


@pytest.fixture(scope="module")
def client_store(tmp_path_factory) -> Path:
    """The client tests' store: 300 synthetic beneficiaries, seed 0 (ORG has 10 of them)."""
    path = tmp_path_factory.mktemp("synth") / "store"
    synth.write(path, 300, seed=0)
    return path


def fh(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*FHIRHOSE, *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=timeout)


def refused(p: subprocess.CompletedProcess, command: str, *fragments: str) -> str:
    """The one-line refusal: exit 2, `fhirhose <command>: ...`, each fragment in it."""
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"fhirhose {command}: "), p.stderr
    for f in fragments:
        assert f in p.stderr, (f, p.stderr)
    return p.stderr


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A data folder as `fhirhose serve --data` wants it: the store in DATA/store."""
    root = tmp_path_factory.mktemp("serve") / "data"
    build_store(root / "store")
    return root


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "README.md"
    path.write_text("# not a folder\n")
    return path


# --- serve ------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, fragment", [
    (["--port", "99999"], "--port 99999: a TCP port is 0..65535"),
    (["--port", "-1"], "--port -1: a TCP port"),
    (["--port", "0", "--host", "999.1.1.1"], "cannot listen on '999.1.1.1'"),
    (["--port", "0", "--admin-port", "70000"], "--admin-port 70000"),
    (["--port", "0", "--workers", "-1"], "--workers -1"),  # 0 is an API node only (issue 14)
    (["--port", "x"], "argument --port: invalid int value: 'x'"),
])
def test_serve_bad_listen_arguments(data, args, fragment):
    before = listing(data)
    refused(fh("serve", "--data", str(data), *args), "serve", fragment)
    assert listing(data) == before  # nothing bound, nothing written


def test_serve_data_folders(data, tmp_path, a_file):
    nowhere = tmp_path / "nonexistent"
    refused(fh("serve", "--data", str(nowhere), "--port", "0"), "serve", "no such folder",
            f"fhirhose synth --out {nowhere / 'store'}", "ingest cclf --create")
    assert not nowhere.exists()  # no folder created without --demo
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(fh("serve", "--data", str(empty), "--port", "0"), "serve", f"no store in {empty / 'store'}",
            "fhirhose synth --out", "--create")
    assert listing(empty) == {}
    store = data / "store"
    before = listing(store)
    refused(fh("serve", "--data", str(store), "--port", "0"), "serve", "is a store", f"--store {store}")
    refused(fh("serve", "--demo", "--data", str(store), "--port", "0"), "serve", "is a store")
    assert listing(store) == before  # no access.sqlite, jobs/ or operator.key in the store
    refused(fh("serve", "--data", str(a_file), "--port", "0"), "serve", "exists and is not a folder")
    refused(fh("serve", "--data", str(empty), "--store", str(empty), "--port", "0"), "serve", "not a store")


def _start(*args: str) -> tuple[subprocess.Popen, str]:
    """`fhirhose serve ...` in the background; (process, its FHIR base URL) once it listens."""
    proc = subprocess.Popen([*FHIRHOSE, "serve", "--port", "0", "--loop", "asyncio", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if " serving " in line:
            proc.drain = threading.Thread(target=proc.stderr.read, daemon=True)  # keep the pipe drained
            proc.drain.start()
            return proc, line.split(" serving ", 1)[1].split()[0]
    proc.wait(timeout=30)
    proc.stderr.close()
    raise AssertionError("".join(lines))


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    proc.drain.join(timeout=10)
    proc.stderr.close()


@pytest.mark.slow  # a real server or a process interrupted mid-work
def test_serve_keeps_its_state_beside_the_store_and_holds_the_folder(data):
    store_before = listing(data / "store")
    proc, base = _start("--data", str(data))
    try:
        assert {"access.sqlite", "jobs.sqlite", "operator.key", "server.lock"} <= {p.name for p in data.iterdir()}
        assert listing(data / "store") == store_before
        # A second server on the same folder would take over the first one's running jobs.
        refused(fh("serve", "--data", str(data), "--port", "0"), "serve", "is in use by the server at " + base)
    finally:
        _stop(proc)
    assert listing(data / "store") == store_before


@pytest.mark.slow  # a real server or a process interrupted mid-work
def test_second_demo_server_does_not_rewrite_credentials(tmp_path):
    demo = tmp_path / "demo"
    build_store(demo / "store")
    proc, base = _start("--demo", "--data", str(demo))
    try:
        creds = (demo / "credentials.json").read_bytes()
        assert json.loads(creds)["fhir_base"] == base
        second = fh("serve", "--demo", "--data", str(demo), "--port", str(free_port()))
        refused(second, "serve", "in use by the server at " + base)
        assert (demo / "credentials.json").read_bytes() == creds  # still names the running server
    finally:
        _stop(proc)


# --- synth, admin, ingest, --version ------------------------------------------------------------


def test_synth_out_and_benes(tmp_path, a_file):
    refused(fh("synth", "--out", str(a_file)), "synth", f"--out {a_file}: exists and is not a folder")
    refused(fh("synth", "--out", "/proc/nope/s"), "synth", "/proc/nope")
    err = refused(fh("synth", "--benes", "-5", "--out", str(tmp_path / "s")), "synth", "--benes -5: from 1 to")
    assert "synth: synth:" not in err
    assert not (tmp_path / "s").exists()
    assert "12,000" in fh("synth", "--help").stdout  # the demo preset's real size


def test_admin_db(tmp_path, a_file):
    missing = tmp_path / "acess.sqlite"  # a typo
    refused(fh("admin", "--db", str(missing), "org-list"), "admin", "no such access database", "init")
    assert not missing.exists()  # never silently created
    refused(fh("admin", "--db", "/nonexistent/dir/x.db", "org-list"), "admin", "no such access database")
    refused(fh("admin", "--db", "/nonexistent/dir/x.db", "init"), "admin", "no such folder")
    refused(fh("admin", "--db", str(tmp_path), "org-list"), "admin", "is a folder")
    refused(fh("admin", "--db", str(a_file), "org-list"), "admin", "not an access database")
    refused(fh("admin", "--db", str(a_file), "init"), "admin", "not an access database")
    assert a_file.read_text() == "# not a folder\n"
    made = fh("admin", "--db", str(missing), "init")
    assert made.returncode == 0 and json.loads(made.stdout)["created"] is True
    listed = fh("admin", "--db", str(missing), "org-list")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_store_hints_name_commands(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cclf = tmp_path / "x.txt"
    cclf.write_text("")
    for p in (fh("ingest", "cclf", "--store", str(empty), str(cclf)),
              fh("export", "--store", str(empty), "--out", str(tmp_path / "out"))):
        err = refused(p, p.args[3], "not a store", "--create", "fhirhose synth --out")
        assert "Store.create" not in err


def test_version_and_help():
    p = fh("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"fhirhose {fhirhose.__version__}"
    text = fh("pull", "--help").stdout
    assert "--encoding CODINGS" in text and "zstd,zstd" not in text and "{gzip" not in text
    refused(fh("pull", "--encoding", "zstd,zstd", "--out", "x"), "pull", "--encoding")


def test_unknown_arguments_are_one_line():
    refused(fh("export", "--store", "x", "--out", "y", "--nope"), "export", "unrecognized arguments: --nope")
    p = fh("nope")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("fhirhose: "), p.stderr


# --- pull ---------------------------------------------------------------------------------------


def test_pull_unreachable_servers(tmp_path, a_file):
    out = tmp_path / "out"
    port = free_port()  # nothing listens there
    refused(fh("pull", f"http://127.0.0.1:{port}/api/v2", "--no-auth", "--out", str(out)), "pull",
            f"http://127.0.0.1:{port}/api/v2: cannot connect to 127.0.0.1:{port}")
    refused(fh("pull", "http://fhirhose.invalid/api/v2", "--no-auth", "--out", str(out)), "pull",
            "http://fhirhose.invalid/api/v2: cannot connect")
    refused(fh("pull", "ftp://x/api", "--no-auth", "--out", str(out)), "pull", "not an http(s) URL")
    refused(fh("pull", "http://[::1", "--no-auth", "--out", str(out)), "pull", "Invalid IPv6 URL")
    refused(fh("pull", "http://127.0.0.1:99999/x", "--no-auth", "--out", str(out)), "pull", "out of range")
    assert not out.exists()  # the kick-off failed: no folder left behind
    refused(fh("pull", f"http://127.0.0.1:{port}/x", "--no-auth", "--out", str(a_file)), "pull",
            "exists and is not a folder")


def test_pull_tls_failure_is_one_line(tmp_path):
    """https:// to a server that speaks plain HTTP: the TLS handshake fails."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)

        def answer():
            for _ in range(4):
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        threading.Thread(target=answer, daemon=True).start()
        base = f"https://127.0.0.1:{srv.getsockname()[1]}/api/v2"
        refused(fh("pull", base, "--no-auth", "--out", str(tmp_path / "out")), "pull", base + ": ")
    assert not (tmp_path / "out").exists()


@async_test
async def test_pull_timeout_names_the_server(tmp_path):
    """A server that accepts and never answers: the read timeout, as a ClientError naming it."""
    held = []

    async def accept(reader, writer):
        held.append(writer)  # hold the connection open, answer nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/v2"
    try:
        async with BulkClient(base, None, timeout=0.3) as c:
            with pytest.raises(ClientError, match=f"^{base}: no answer in time"):
                await c.export("group", out_dir=tmp_path / "out")
    finally:
        for w in held:
            w.close()
        server.close()
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a real server or a process interrupted mid-work
@async_test
async def test_pull_interrupted_continues_as_printed(tmp_path, client_store):
    """Ctrl-C while the server holds the export: one line naming the command to continue,
    which then works exactly as printed (it recalls the credentials file and organization)."""
    async with serving(tmp_path, client_store, exporter=HOLD_EXPORTER) as srv:
        creds = tmp_path / "credentials.json"
        creds.write_text(json.dumps({"fhir_base": srv.base, "clients": [
            {"organization": ORG, "client_id": srv.client_id, "client_secret": srv.secret}]}))
        out = tmp_path / "export"
        srv.hold(1)  # chunk 0 is served, chunk 1 waits
        proc = await asyncio.create_subprocess_exec(
            *FHIRHOSE, "pull", "--credentials", str(creds), "--org", ORG, "--out", str(out), "--quiet",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV, cwd=tmp_path)
        deadline = time.monotonic() + 120
        while not any(f.get("path") for f in _pull_state(out).get("files", [])):
            assert time.monotonic() < deadline and proc.returncode is None
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = await proc.communicate()
        err = stderr.decode()
        assert proc.returncode == 130, err
        assert err.count("\n") == 1 and err.startswith("fhirhose pull: interrupted"), err
        printed = err.split("continue with: ", 1)[1].strip()
        assert printed == f"fhirhose pull --resume --out {out}"
        assert srv.secret not in (out / ".fhirhose-pull-auth.json").read_text()  # paths and names only

        srv.hold(None)
        argv = shlex.split(printed)
        proc = await asyncio.create_subprocess_exec(
            *FHIRHOSE, *argv[1:], "--quiet", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=ENV, cwd=tmp_path)
        _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
        assert _pull_state(out)["complete"] is True
        assert (out / "manifest.json").is_file()


def _pull_state(out: Path) -> dict:
    try:
        return json.loads((out / ".fhirhose-pull.json").read_bytes())
    except (FileNotFoundError, ValueError):
        return {}


# --- export -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export") / "store"
    synth.write(root, 120, 1)
    return root


@pytest.mark.slow  # a real server or a process interrupted mid-work
def test_export_interrupted_leaves_nothing_and_reruns(export_store, tmp_path):
    out = tmp_path / "out"
    cmd = [*FHIRHOSE, "export", "--store", str(export_store), "--out", str(out), "--chunk-benes", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not any(any(p.iterdir()) for p in tmp_path.glob(".out.partial-*")):  # files are being written
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()  # a hung export must not outlive the test (nor leave its pipes to the next)
        proc.communicate()
        raise AssertionError("the interrupted export did not exit within 120 s") from None
    assert proc.returncode == 130, stderr
    assert stderr == f"fhirhose export: interrupted; nothing was written to {out}; run the same command again\n"
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))
    again = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert again.returncode == 0, again.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert {p.name for p in out.iterdir()} == {"manifest.json"} | {o["url"] for o in manifest["output"]}
    assert not list(tmp_path.glob(".out.partial-*"))


def test_export_into_an_empty_folder_and_bad_out(export_store, tmp_path, a_file):
    out = tmp_path / "out"
    out.mkdir()
    assert main(["export", "--store", str(export_store), "--out", str(out), "--type", "Patient", "--quiet"]) == 0
    assert (out / "manifest.json").is_file()
    refused(fh("export", "--store", str(export_store), "--out", str(a_file)), "export", "not an empty directory")
    refused(fh("export", "--store", str(export_store), "--out", str(tmp_path / "no" / "out")), "export",
            "no such folder")


def test_export_progress_moves_within_a_chunk(export_store, tmp_path, monkeypatch):
    """One chunk (the default 5,000 beneficiaries holds them all): the bar still moves as it is written."""
    import tqdm

    positions: list[int] = []

    class Bar(tqdm.tqdm):
        def update(self, n=1):
            positions.append((positions[-1] if positions else 0) + n)
            return super().update(n)

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    assert main(["export", "--store", str(export_store), "--out", str(tmp_path / "out")]) == 0
    steps = sorted(set(positions))
    assert steps[-1] == 120 and len([p for p in steps if 0 < p < 120]) >= 5, steps


def test_a_command_imports_only_its_own_module():
    """`fhirhose export` must not pay for the server and client (aiohttp, the console) at start;
    `fhirhose --help` still lists every command."""
    probe = ("import sys\nfrom fhirhose.cli import main\n"
             "status = main(['export', '--store', '/nonexistent-store', '--out', '/tmp/never'])\n"
             "print(status, sorted(m for m in ('aiohttp', 'fhirhose.server.app', 'fhirhose.client.cli') "
             "if m in sys.modules))")
    got = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=120)
    assert got.stdout.split() == ["2", "[]"], got.stdout + got.stderr
    assert "/nonexistent-store" in got.stderr
    listed = fh("--help")
    assert listed.returncode == 0
    assert all(c in listed.stdout for c in ("serve", "synth", "ingest", "export", "pull", "bench", "admin"))
