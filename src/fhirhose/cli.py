"""`fhirhose` command line: serve | worker | db | synth | ingest | export | pull | bench | admin.

Each subcommand lives beside the code it drives (`<package>/cli.py` with
`add_parser(subparsers)` that sets `func`); this module only wires them, so a
missing optional part never breaks the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import FhirhoseError
from .log import configure

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhirhose", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: one JSON object per line, with the job id of lines about a job")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # not part of this build yet
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    try:
        return int(args.func(args) or 0)
    except FhirhoseError as e:
        print(f"fhirhose {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
