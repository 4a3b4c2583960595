"""The command line, fuzzed: argument vectors built from the parsers' own options (argparse
introspected, so a new option is fuzzed the day it is added) with hostile values — missing,
wrong-type and unreadable paths, out-of-range and malformed numbers, empty strings, unicode.

Whatever the vector, the answer is one line on stderr (`fhirhose ...: ...`) and exit status 2,
or 0 for --help and for a `serve` whose arguments were all fine (it stops at the documented
hook: `fhirhose.server.cli.run`, replaced here, is the only thing that would start serving).
Never a traceback. Every vector carries at least one value its command must refuse (see
POISON), so no example does real work: the fuzzer stays bounded for CI.

Most examples run in-process through `main(argv)` (a fresh hostile folder each, as the
working directory); a sample runs as real processes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fhirhose
from fhirhose import cli
from fhirhose.server import cli as serve_cli

from .support.server import build_store

SRC = str(Path(fhirhose.__file__).resolve().parent.parent)
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
pytestmark = pytest.mark.slow  # a minute or so: quick loops leave it out, CI runs it

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Paths as tokens, made real in each example's own folder (`_world`): commands that create
# things cannot change what the next example sees.
MISSING, MISSING_PARENT, A_FILE, A_FOLDER, EMPTY_FOLDER, BINARY, PROC, DATA = (
    "@missing", "@no/such/dir/x", "@file.txt", "@folder", "@empty", "@binary.zip", "/proc/nope/x", "@data")
PATHS = [MISSING, MISSING_PARENT, A_FILE, A_FOLDER, EMPTY_FOLDER, BINARY, PROC, "", ".", "é🙂"]
NUMBERS = ["-1", "0", "99999", "-99999", "1e309", "nan", "-inf", "18446744073709551617", "x", "١٢", "0x10", "1.5"]
TEXT = ["", " ", "é", "\u202e", "a" * 300, "-", "💥", "2024-13-45T00:00:00Z", "A0001", "all", "zstd,zstd"]
URLS = ["http://127.0.0.1:1/api/v2", "https://127.0.0.1:1/api/v2", "ftp://x/api", "http://[::1", "not a url",
        "http://é.invalid:99999/x", "", "http://127.0.0.1:99999/x"]
HOSTS = ["", "999.1.1.1", "é.invalid", "127.0.0.1", "-1"]
HOSTILE = PATHS + NUMBERS + TEXT

# Per command, options whose value is always one the command must refuse before doing any
# work (a store that is not one, an unreachable server, an access database that is not one).
POISON: dict[str, dict[str, list[str]]] = {
    "synth": {"out": [A_FILE, A_FOLDER, PROC, BINARY]},
    "export": {"store": [MISSING, A_FILE, A_FOLDER, EMPTY_FOLDER, PROC, ""]},
    "ingest": {"paths": [MISSING, A_FILE, A_FOLDER, EMPTY_FOLDER, BINARY, PROC]},
    "pull": {"fhir_base": URLS},
    "bench": {"benes": ["-1", "0", "x", "", "10000000000", "nan"]},
    "admin": {"db": [A_FOLDER, A_FILE, BINARY, MISSING_PARENT, PROC, ""]},
    "serve": {"data": PATHS + [DATA]},  # DATA is a real data folder: then the run hook must be reached
    "worker": {"data": [MISSING, A_FILE, EMPTY_FOLDER, PROC, ""]},  # no store there: refused before any work
    "db": {"database": [A_FOLDER, A_FILE, BINARY, MISSING_PARENT, PROC, ""]},
}
# Options not fuzzed, and why.
SKIP = {
    ("serve", "demo"),  # generates a 12,000-beneficiary store; tests/test_cli_errors.py covers --demo
    ("serve", "exporter"),  # hidden: tests name an exporter module there
    ("worker", "exporter"),  # hidden, as for serve
}


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parsers from the top level down) for every runnable command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, [parser]
        return
    for name, child in subs[0].choices.items():
        for p, chain in _leaves(child, path + (name,)):
            yield p, [parser, *chain]


LEAVES = dict(_leaves(cli.build_parser()))


def _value(draw, command: str, action: argparse.Action) -> str:
    poison = POISON.get(command, {}).get(action.dest)
    if poison:
        return draw(st.sampled_from(poison))
    if action.dest in ("host", "admin_host"):
        return draw(st.sampled_from(HOSTS))  # never a wildcard address: tests bind 127.0.0.1 only
    # Hostile values of the option's kind most of the time, its own default or choices
    # otherwise, so that vectors get past argparse to the commands' own checks.
    kind = {int: NUMBERS + ["1", "2"], float: NUMBERS + ["0.5", "2"], Path: PATHS}.get(action.type, HOSTILE)
    options = [st.sampled_from(kind), st.sampled_from(HOSTILE)]
    if action.choices:
        options.append(st.sampled_from(sorted(map(str, action.choices))))
    if action.default not in (None, False, True) and not isinstance(action.default, list):
        options.append(st.just(str(action.default)))
    return draw(st.one_of(options))


def _level(draw, command: str, parser: argparse.ArgumentParser, sparse: bool) -> list[str]:
    argv: list[str] = []
    positionals: list[str] = []
    for a in parser._actions:
        if isinstance(a, (argparse._SubParsersAction, argparse._HelpAction, argparse._VersionAction)):
            continue
        if (command, a.dest) in SKIP:
            continue
        if not a.option_strings:
            n = {None: 1, "?": 1, "*": draw(st.integers(0, 2)), "+": draw(st.integers(1, 2))}.get(a.nargs, 1)
            positionals += [_value(draw, command, a) for _ in range(n)]
            continue
        forced = a.required or a.dest in POISON.get(command, {})
        if not forced and draw(st.integers(0, 5)) >= (1 if sparse else 3):
            continue
        flag = draw(st.sampled_from(a.option_strings))
        if a.nargs == 0:
            argv.append(flag)
            continue
        values = [_value(draw, command, a) for _ in range(draw(st.integers(1, 2)) if a.nargs in ("*", "+") else 1)]
        if len(values) == 1 and values[0].startswith("-"):  # `--flag=-1`, as a user must write it
            argv.append(f"{max(a.option_strings, key=len)}={values[0]}")
        else:
            argv += [flag, *values]
    # Positionals that look like options go after `--`, as a user would have to write them.
    if any(p.startswith("-") for p in positionals):
        return argv + ["--", *positionals]
    return argv + positionals


@st.composite
def vectors(draw, path: tuple[str, ...]) -> list[str]:
    command = path[0]
    chain = LEAVES[path]
    argv: list[str] = []
    # Sparse vectors (few options besides the poison) get past the early checks to the deep ones.
    sparse = draw(st.booleans())
    for depth, parser in enumerate(chain[1:], 1):
        argv.append(path[depth - 1])
        level = _level(draw, command, parser, sparse)
        if depth < len(chain) - 1 and "--" in level:  # `--` would end the options of the levels below too
            level = [a for a in level if a != "--"]
        argv += level
    if draw(st.integers(0, 19)) == 0:
        argv.insert(draw(st.integers(1, len(argv))), "--help")
    return argv


def _world(root: Path) -> None:
    (root / "file.txt").write_text("not what anyone asked for\n")
    (root / "folder").mkdir()
    (root / "folder" / "inside.txt").write_text("x\n")
    (root / "empty").mkdir()
    (root / "binary.zip").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)


def _resolve(argv: list[str], root: Path, data: Path) -> list[str]:
    out = []
    for a in argv:
        flag, eq, value = a.partition("=") if a.startswith("--") and "=" in a else ("", "", a)
        value = str(data) if value == DATA else str(root / value[1:]) if value.startswith("@") else value
        out.append(f"{flag}={value}" if eq else value)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-serve") / "data"
    build_store(root / "store")
    return root


class _Served(Exception):
    """Raised by the stand-in for `fhirhose.server.cli.run`: validation passed."""


def _refuse_to_serve(*args, **kw):
    raise _Served


def run_in_process(argv: list[str], data: Path, monkeypatch) -> tuple[int, str, bool]:
    """(exit status, stderr, whether serve reached its run hook) of `fhirhose ARGV`."""
    monkeypatch.setattr(serve_cli, "run", _refuse_to_serve)
    err, out = io.StringIO(), io.StringIO()
    served = False
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _world(root)
        os.chdir(root)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                try:
                    code = cli.main(_resolve(argv, root, data))
                except SystemExit as e:  # --help and --version exit from argparse
                    code = e.code
                except _Served:
                    code, served = 0, True
        finally:
            os.chdir(cwd)
            shutil.rmtree(data / "jobs", ignore_errors=True)
    return code, err.getvalue(), served


def check(argv: list[str], code: int, err: str, served: bool) -> None:
    assert "Traceback" not in err, (argv, err)
    if "--help" in argv or "-h" in argv:
        assert code in (0, 2), (argv, code, err)
    elif served:
        assert argv[0] == "serve" and code == 0, (argv, err)
    else:
        assert code == 2, (argv, code, err)
    if code == 2:
        assert err.startswith("fhirhose") and err.count("\n") == 1, (argv, err)


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_fuzz_in_process(path, data, monkeypatch):
    @settings(FUZZ, max_examples=max(20, settings.default.max_examples // 3))
    @given(vectors(path))
    def fuzz(argv):
        check(argv, *run_in_process(argv, data, monkeypatch))

    fuzz()


def test_every_command_is_fuzzed():
    """A command added to fhirhose/cli.py is fuzzed with a poison that stops it early."""
    assert {p[0] for p in LEAVES} == set(cli.COMMANDS) == set(POISON)


@settings(FUZZ, max_examples=max(8, settings.default.max_examples // 20))
@given(st.sampled_from(sorted(p for p in LEAVES if p[0] != "serve")).flatmap(vectors))
def test_fuzz_as_processes(argv):
    """A sample as real processes: the exit status and stderr the shell sees (no serve here:
    the run hook only exists in-process)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _world(root)
        p = subprocess.run([sys.executable, "-m", "fhirhose.cli", *_resolve(argv, root, root)], cwd=root,
                           capture_output=True, text=True, env=ENV, timeout=120)
    check(argv, p.returncode, p.stderr, False)
