"""CI throughput guard: fails when the compiled writer's speed relative to its
baselines, measured in this same run, falls below a floor set well under
today's figures. Ratios only — never an absolute time.

    python benchmarks/guard.py [--benes N]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from workloads import carrier_workload, measure_all, ratio_table  # noqa: E402

# Floors, well under the figures measured when they were set (see README table).
FLOORS = {
    "compiled/twin": 20.0,
    "compiled/orjson": 5.0,
    "gzip pipeline/gzip alone": 0.5,
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--benes", type=int, default=1500)
    args = ap.parse_args()
    got = measure_all(carrier_workload(args.benes))
    print("\n".join(ratio_table()))
    failed = [f"{k}: {got[k]:.2f}x < floor {v}x" for k, v in FLOORS.items() if got[k] < v]
    for f in failed:
        print("GUARD FAILED", f)
    print("throughput guard:", "FAILED" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
