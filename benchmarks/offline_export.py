"""Offline export as a user runs it, against ISA-L gzip level 1 alone over the same bytes.

    python benchmarks/offline_export.py --store STORE [--org A9001] [--workers 1] [--reps 3]

Runs `fhirhose export --store STORE --org ORG --workers N --compression gzip --quiet` as a
subprocess (wall seconds, and its CPU seconds from the kernel's child accounting), then
times ISA-L level 1 alone, on one thread, compressing the very NDJSON that export wrote
(each file decoded into memory first, untimed; compressed in 2 MiB pieces as the exporter
feeds it). The ratio `ISA-L alone wall / export wall` is issue 12's offline target
(>= 0.9x, default integrity: gzip + the SHA-256 of the gzip bytes). Medians of `--reps`,
after `--warmup` untimed exports (default 1: the store in the page cache, as for every
export after the first; this VM's first run after other work is often 10-25 % slower);
the machine's load average is printed beside them, since a second busy core is what the
export's second thread needs. Results merge into benchmarks/results/offline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PIECE = 2 << 20


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_export(store: Path, out: Path, org: str | None, workers: int) -> tuple[float, float, str]:
    """(wall s, CPU s, summary line) of one `fhirhose export` subprocess."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "fhirhose.cli", "export", "--store", str(store), "--out", str(out),
           "--workers", str(workers), "--compression", "gzip", "--quiet", *(["--org", org] if org else [])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    c0, w0 = _children_cpu(), time.perf_counter()
    got = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - w0, _children_cpu() - c0
    if got.returncode != 0:
        raise SystemExit(f"fhirhose export failed ({got.returncode}): {got.stderr}")
    return wall, cpu, got.stdout.strip()


def isal_alone(out: Path) -> tuple[float, float, int]:
    """(wall s, CPU s, NDJSON bytes) of ISA-L level 1 over the NDJSON of every file in `out`."""
    from isal import igzip, isal_zlib

    wall = cpu = 0.0
    total = 0
    for path in sorted(out.glob("*.ndjson.gz")):
        with igzip.open(path, "rb") as f:
            data = f.read()
        total += len(data)
        view = memoryview(data)
        w0, c0 = time.perf_counter(), time.process_time()
        c = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
        for i in range(0, len(data), PIECE):
            c.compress(view[i:i + PIECE])
        c.flush()
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        view.release()
    return wall, cpu, total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--org", default="A9001", help="organization whose roster is exported ('' = every beneficiary)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed exports first")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fhirhose-offline")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.work / "out"
    exports, alone = [], []
    load = []
    for _ in range(args.warmup):
        run_export(args.store, out, args.org or None, args.workers)
    for _ in range(args.reps):
        load.append(os.getloadavg()[0])
        exports.append(run_export(args.store, out, args.org or None, args.workers))
        wall, cpu, nbytes = isal_alone(out)
        alone.append((wall, cpu))
    shutil.rmtree(out, ignore_errors=True)
    ex_wall = statistics.median(w for w, _, _ in exports)
    ex_cpu = statistics.median(c for _, c, _ in exports)
    gz_wall = statistics.median(w for w, _ in alone)
    gz_cpu = statistics.median(c for _, c in alone)
    row = {
        "store": args.store.name if args.store.name != "store" else args.store.parent.name, "org": args.org,
        "workers": args.workers, "ndjson_mb": round(nbytes / 1e6, 1), "reps": args.reps, "warmup": args.warmup,
        "export_wall_s": round(ex_wall, 2), "export_cpu_s": round(ex_cpu, 2),
        "isal_wall_s": round(gz_wall, 2), "isal_cpu_s": round(gz_cpu, 2),
        "ratio_wall": round(gz_wall / ex_wall, 2), "ratio_cpu": round(gz_cpu / ex_cpu, 2),
        "export_walls": [round(w, 2) for w, _, _ in exports], "load_before": [round(x, 2) for x in load],
        "machine_cores": os.cpu_count(), "summary": exports[-1][2],
    }
    print(json.dumps(row, indent=1))
    print(f"| {row['ndjson_mb'] / 1000:,.2f} GB NDJSON, --workers {args.workers} | export {ex_wall:.2f} s wall, "
          f"{ex_cpu:.2f} CPU s | ISA-L alone {gz_wall:.2f} s wall, {gz_cpu:.2f} CPU s | "
          f"**{row['ratio_wall']:.2f}x** (CPU {row['ratio_cpu']:.2f}x) | load {statistics.median(load):.1f} |")
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / "offline.json"
        runs = json.loads(path.read_text())["runs"] if path.exists() else []
        runs = [r for r in runs if (r["store"], r["org"], r["workers"]) != (row["store"], row["org"], row["workers"])]
        path.write_text(json.dumps({"runs": [*runs, row]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
