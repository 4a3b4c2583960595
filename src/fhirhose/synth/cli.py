"""`fhirhose synth`: generate a synthetic dataset into a new store."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from .. import synth
from ..errors import InputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate synthetic beneficiaries, claims and organizations into a new store",
        description=(
            "Generate a deterministic synthetic Medicare dataset (Parts A, B and D claims with "
            "adjustments, ACO rosters, opt-outs, Part D enrollment) into a new store at --out, "
            "with the organizations in --out/orgs.json."
        ),
    )
    p.add_argument("--benes", type=int, default=None,
                   help="beneficiaries (default: the preset's size, "
                        + " / ".join(f"{k} {v.benes:,}" for k, v in synth.PRESETS.items()) + ")")
    p.add_argument("--out", required=True, help="store directory to create (must not exist or be empty)")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same data (default 0)")
    p.add_argument("--preset", choices=sorted(synth.PRESETS), default="default",
                   help="organizations to generate (demo: a 100- and a 10,000-beneficiary ACO and a Part D sponsor)")
    p.add_argument("--as-of", type=dt.date.fromisoformat, default=synth.AS_OF,
                   help=f"last load date of the history (default {synth.AS_OF})")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def _check_out(out: Path) -> None:
    """Refuse an --out that cannot become a new store before generating anything."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if (out / "CURRENT").is_file():
        raise InputError(f"--out {out}: already a store (synth makes a new one)")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"--out {out}: exists and is not empty (synth makes a new store)")


MAX_BENES = 100_000_000  # the population's arrays are held in memory while it is generated


def run(args: argparse.Namespace) -> int:
    if args.benes is not None and not 1 <= args.benes <= MAX_BENES:
        raise InputError(f"--benes {args.benes}: from 1 to {MAX_BENES:,}")
    if args.seed < 0:
        raise InputError(f"--seed {args.seed}: must be 0 or more")
    _check_out(Path(args.out))
    orgs = synth.write(args.out, args.benes, args.seed, preset=args.preset, as_of=args.as_of,
                       progress=not args.quiet)
    for o in orgs:
        print(f"{o.kind:4} {o.org_id:6} {o.roster_size:>9,}  {o.name}")
    return 0
