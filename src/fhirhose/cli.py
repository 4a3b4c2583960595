"""`fhirhose` command line: serve | worker | db | synth | ingest | export | pull | bench | admin.

Each subcommand lives beside the code it drives (`<package>/cli.py` with
`add_parser(subparsers)` that sets `func`); this module only wires them, so a
missing optional part never breaks the others.

It is also the one place errors become what a user reads: a bad argument, an
error fhirhose raises on purpose (`FhirhoseError`) or one the operating system
reports (`OSError`: a missing folder, a full disk) is one line on stderr,
`fhirhose <command>: <message>`, and exit status 2; Ctrl-C is a line and 130.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterable
from typing import NoReturn

from . import __version__
from .errors import FhirhoseError
from .log import configure

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "UsageError", "build_parser", "main"]

EXIT_ERROR = 2  # bad arguments, bad input, or an operation that failed and changed nothing
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it

# subcommand → module providing add_parser(subparsers)
COMMANDS = {
    "serve": "fhirhose.server.cli",
    "synth": "fhirhose.synth.cli",
    "ingest": "fhirhose.store.ingest_cli",
    "export": "fhirhose.export.cli",
    "pull": "fhirhose.client.cli",
    "bench": "fhirhose.bench.cli",
    "admin": "fhirhose.access.admin_cli",
    "worker": "fhirhose.server.worker_cli",
    "db": "fhirhose.server.db_cli",
}


class UsageError(Exception):
    """An argument the parser refused; `prog` names the (sub)command, e.g. `fhirhose serve`."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, except that a refused argument raises instead of printing usage and exiting,
    so `main` reports it like every other error (subparsers inherit this class)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser of `commands` (default: every subcommand). Each subcommand's module is
    imported to add its parser, so a run that names its command builds only that one."""
    parser = _Parser(prog="fhirhose", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fhirhose {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: one JSON object per line, with the job id of lines about a job")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (COMMANDS[c] for c in (COMMANDS if commands is None else commands)):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # not part of this build yet
        mod.add_parser(sub)
    return parser


def _command(argv: list[str]) -> str | None:
    """The subcommand `argv` names (the first argument that is not a top-level option), if any."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def _say(prog: str, message: str) -> None:
    """One line on stderr: a multi-line message is folded, so the format never changes."""
    print(f"{prog}: {' '.join(str(message).split())}", file=sys.stderr)


def _os_message(e: OSError) -> str:
    """`path: reason` for an OSError (what the user can act on), without errno noise."""
    reason = e.strerror or str(e) or type(e).__name__
    where = ": ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
    return f"{where}: {reason}" if where else reason


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 error, 130 interrupted)."""
    # Only the named command's module is imported (the server's alone costs ~0.2 s, every
    # command's ~0.7 CPU s); `fhirhose --help` or a mistyped command builds them all.
    command = _command(sys.argv[1:] if argv is None else argv)
    parser = build_parser(None if command is None else [command])
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named after the command they were given to, not the top level
            raise UsageError(f"fhirhose {args.command}", f"unrecognized arguments: {' '.join(extra)}")
    except UsageError as e:
        _say(e.prog, f"{e} (see {e.prog} --help)")
        return EXIT_ERROR
    configure(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    prog = f"fhirhose {args.command}"
    try:
        return int(args.func(args) or 0)
    except UsageError as e:  # a command's own late argument check
        _say(e.prog, str(e))
    except FhirhoseError as e:
        _say(prog, str(e))
    except OSError as e:
        _say(prog, _os_message(e))
    except KeyboardInterrupt as e:  # a command may say what was kept and how to go on
        _say(prog, f"interrupted; {e}" if str(e) else "interrupted")
        return EXIT_INTERRUPTED
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
