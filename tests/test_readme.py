"""README's commands, run: what a user copies from it must work as written.

A fenced `sh` block right after `<!-- readme-test -->` runs as one bash script
(`set -euo pipefail`) in a fresh folder whose `./fhirhose-demo` holds a small sandbox
store, with `fhirhose serve --demo` running there (README's port 8080 becomes a free
one). After `<!-- readme-test: each line exits 2 -->` every command must be refused:
exit status 2, one line on stderr, containing the text its comment quotes (`...`
stands for the rest). The command table's flags must exist in each command's --help.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import fhirhose
import fhirhose.cli
from fhirhose.cli import build_parser

from .support.server import build_store

README = Path(__file__).resolve().parent.parent / "README.md"
SRC = str(Path(fhirhose.__file__).resolve().parent.parent)
BLOCK = re.compile(r"<!-- readme-test(?P<mode>: each line exits 2)? -->\n```sh\n(?P<body>.*?)```", re.DOTALL)


def blocks(mode: str | None) -> list[tuple[str, str]]:
    """(section title, script) of every marked block of this mode."""
    text = README.read_text()
    found = []
    for m in BLOCK.finditer(text):
        if (m["mode"] is not None) == (mode is not None):
            title = re.findall(r"^#+ (.*)$", text[: m.start()], re.MULTILINE)[-1]
            found.append((title, m["body"]))
    return found


def test_marked_blocks_cover_the_sections():
    assert {t for t, _ in blocks(None)} >= {"Try the demo", "Offline export (no server)"}
    assert [t for t, _ in blocks("exit 2")] == ["Errors and exit codes"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder with `fhirhose` and `python` on PATH as a user would have them."""
    root = tmp_path_factory.mktemp("readme")
    bin_dir = root / ".bin"
    bin_dir.mkdir()
    for name, target in (("fhirhose", f'"{sys.executable}" -m fhirhose.cli'), ("python", f'"{sys.executable}"')):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    return root, env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo(workspace):
    """`fhirhose serve --demo` on a small sandbox store in ./fhirhose-demo; its port."""
    root, env = workspace
    build_store(root / "fhirhose-demo" / "store")
    port = _free_port()
    proc = subprocess.Popen(["fhirhose", "serve", "--demo", "--port", str(port), "--loop", "asyncio"], cwd=root,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if " serving " in line:
            break
    else:
        proc.wait(timeout=30)
        pytest.fail("".join(lines))
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(blocks(None))))
def test_block_runs(index, workspace, demo):
    root, env = workspace
    title, script = blocks(None)[index]
    if "curl " in script and shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    script = script.replace("8080", str(demo))
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=root, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, f"README section {title!r}:\n{script}\n--- stderr:\n{p.stderr}"
    assert "Traceback" not in p.stderr


def _commands(script: str) -> list[tuple[str, list[str]]]:
    """(command, fragments its comment quotes) per line; `\\` continues a line."""
    out = []
    for line in script.replace("\\\n", " ").splitlines():
        command, _, comment = line.partition("  #")
        if command.strip():
            out.append((command.strip(), [f.strip() for f in comment.split("...") if f.strip()]))
    return out


@pytest.mark.parametrize("command, fragments", [c for _, s in blocks("exit 2") for c in _commands(s)])
def test_refusals_read_as_documented(command, fragments, workspace, tmp_path):
    _, env = workspace
    p = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, (command, p.returncode, p.stderr)
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("fhirhose "), p.stderr
    for f in fragments:
        assert f in p.stderr, (command, f, p.stderr)
    assert list(tmp_path.iterdir()) == []  # a refusal leaves nothing behind


def _table_usages() -> list[str]:
    """Every usage in the command table's first column (`fhirhose x ...` / `x ...`)."""
    text = README.read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]
    cells = re.findall(r"^\| (`.*?`) \|", text, re.MULTILINE)
    return [u if u.startswith("fhirhose ") else f"fhirhose {u}" for c in cells for u in re.findall(r"`([^`]*)`", c)]


def _help(path: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*path, "--help"])
    return out.getvalue()


def test_command_table_flags_exist():
    usages = _table_usages()
    assert {u.split()[1] for u in usages} == set(fhirhose.cli.COMMANDS)
    for usage in usages:
        path = []
        for w in usage.split()[1:]:  # the command path: words up to the first flag or placeholder
            if not re.fullmatch(r"[a-z][a-z-]*", w):
                break
            path.append(w)
        text = _help(path)
        for flag in re.findall(r"--[a-z][a-z-]*", usage):
            assert flag in text, (usage, flag)
