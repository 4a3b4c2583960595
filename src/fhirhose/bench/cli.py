"""`fhirhose bench`: measure the core against its baselines in one run, print the table.

`--guard` exits non-zero when a ratio falls below its floor (CI);
`--readme FILE` rewrites the table between the benchmark markers in FILE.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError

# Floors for --guard, in-run ratios of one-thread CPU times (steady on a shared, noisy
# 2-core machine): the compiled writer against its baselines, well under the figures
# measured when they were set (43-63x twin, 56-118x dict+orjson on carrier EOBs), and
# the one-core pipeline with the default integrity (writer → gzip → digest of the gzip
# bytes) against ISA-L alone over the same bytes: 0.59-0.61x measured; hashing the NDJSON
# on the default path again would drop it to ~0.30x. Overlapped ratios are reported, not
# guarded: they depend on a second free core, which a shared CI machine does not promise.
FLOORS = {
    "compiled/twin": 15.0,
    "compiled/orjson": 20.0,
    # The hand-written carrier builder (dict literals over pre-converted columns + orjson):
    # 17.2-18.6x measured (`--benes 1500`, after the fused plan and the one-switch
    # interpreter), the issue's >= 15x goal; guarded well under it, as CI machines are noisy.
    "compiled/hand-written orjson": 10.0,
    "gzip pipeline/gzip alone, one core": 0.42,
}
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure the writer and compression pipelines (ratios to baselines)")
    p.add_argument("--benes", type=int, default=3000, help="synthetic beneficiaries (default 3000)")
    p.add_argument("--guard", action="store_true", help="fail when a ratio falls below its floor")
    p.add_argument("--readme", type=Path, help="rewrite the benchmark table in this README")
    p.set_defaults(func=run)


MAX_BENES = 1_000_000  # a bench run holds its workload in memory


def _check(args) -> None:
    """Refuse bad arguments before minutes of measuring, not after."""
    if not 1 <= args.benes <= MAX_BENES:
        raise InputError(f"--benes {args.benes}: from 1 to {MAX_BENES:,}")
    if args.readme is not None:
        try:
            text = args.readme.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"--readme {args.readme}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
        if BEGIN not in text or END not in text:
            raise InputError(f"--readme {args.readme}: no {BEGIN} ... {END} markers to replace")


def run(args) -> int:
    _check(args)
    try:
        import orjson  # noqa: F401  (the baseline encoder)
    except ImportError:
        raise InputError("fhirhose bench needs orjson for its baseline: pip install 'fhirhose[test]'") from None
    from .._backend import announce_backend
    from .workloads import carrier_workload, measure_all, ratio_table

    backend = announce_backend("bench")
    got = measure_all(carrier_workload(args.benes))
    table = [f"core backend: {backend}; one-thread rows in CPU time, two-thread rows in wall time", "",
             *ratio_table()]
    print("\n".join(table))
    if args.readme:
        text = args.readme.read_text()
        if BEGIN not in text or END not in text:
            raise InputError(f"{args.readme}: no {BEGIN} ... {END} markers to replace")
        body = "\n".join([BEGIN, f"(`fhirhose bench --benes {args.benes}`, carrier EOBs)", "", *table, END])
        args.readme.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: body, text, flags=re.S))
    if args.guard:
        failed = [f"{k}: {got[k]:.2f}x < floor {v}x" for k, v in FLOORS.items() if got[k] < v]
        for f in failed:
            print("GUARD FAILED", f)
        print("throughput guard:", "FAILED" if failed else "ok")
        return 1 if failed else 0
    return 0
