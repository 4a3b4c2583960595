"""End to end, as a user sees it: `fhirhose serve` + `fhirhose pull` of a Group/all export.

    python benchmarks/e2e.py --benes 1000,10000 [--keep-compressed] [--ndjson-sha256] [--profile]

For each size N: synthesize a store whose one ACO (A9001) has N attributed beneficiaries
(cached under --work), start `fhirhose serve` on 127.0.0.1 as a subprocess, run
`fhirhose pull --json` as another subprocess, and sample /proc every 0.2 s meanwhile:
resident memory of each process tree (server with its export workers; client), CPU time
of each tree, and per-core busy time from /proc/stat. Reports kick-off-to-last-byte
seconds, resources/s, NDJSON and wire MB/s, peak RSS and CPU use; merges the rows into
benchmarks/results/e2e.json, plots benchmarks/results/e2e.png and prints a markdown
table. `--profile` records the server tree with py-spy (pip install py-spy) and prints
where its time goes.

What runs is what a user runs: the package importable from this checkout's `src/` when
it has an in-place build, else the installed package; with neither compiled (a fresh
clone), `src/` is built in place first. The backend (compiled core or pure-Python twin)
is printed and recorded in every result, and the twin is refused unless `--allow-twin`.

Targets (issue 12) are checked in the table's last column; the `floor` column is the
one-core CPU cost of writer + compressor on the run's own data divided over the
machine's cores, plus the client's gunzip when it decodes.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ORG = "A9001"
TICK = 0.2
BEGIN, END = "<!-- e2e:begin -->", "<!-- e2e:end -->"
PAGE = os.sysconf("SC_PAGE_SIZE")
CLK = os.sysconf("SC_CLK_TCK")


# --- the dataset ------------------------------------------------------------------------------


def synthesize(path: Path, benes: int, seed: int, as_of: dt.date, years: int) -> int:
    """A store in which ACO A9001 has exactly `benes` beneficiaries; returns the population size.

    ACOs attribute living fee-for-service beneficiaries only (about 62 % of a synthetic
    population), so the population is drawn larger and grown until the roster fits. The
    history runs through `as_of` (yesterday: this performance year's rosters, and no load
    stamped after the kick-off's transaction time). Each beneficiary has `years` years of
    claims: one year at the DE-SynPUF rates is ~37 claims, the issue's "100,000
    beneficiaries, about 3.3 M EOBs"."""
    from fhirhose import synth
    from fhirhose.errors import InputError

    demo = synth.PRESETS["demo"]
    aco = type(demo.acos[0])(ORG, "End-to-end benchmark ACO", "Shared Savings", benes)
    population = math.ceil(benes * 1.7) + 50
    while True:
        synth.PRESETS["e2e"] = synth.Preset(population, (aco,), demo.pdp, demo.ma,
                                              history_years=(years, years))
        try:
            shutil.rmtree(path, ignore_errors=True)
            synth.write(path, population, seed, preset="e2e", as_of=as_of, progress=True)
            return population
        except InputError as e:
            if "attributable" not in str(e):
                raise
            population = int(population * 1.25)


def dataset(work: Path, benes: int, seed: int, years: int) -> Path:
    as_of = dt.date.today() - dt.timedelta(days=1)
    data = work / f"aco-{benes}-seed{seed}-{years}y-{as_of}"
    if not (data / "store" / "orgs.json").exists():
        t = time.perf_counter()
        population = synthesize(data / "store", benes, seed, as_of, years)
        print(f"synthesized {population:,} beneficiaries ({benes:,} in {ORG}) in {time.perf_counter() - t:.0f} s",
              file=sys.stderr)
    for stale in ("jobs", "jobs.sqlite", "credentials.json", "clients.json", "access.sqlite", "operator.key"):
        p = data / stale
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    return data


# --- /proc sampling ---------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = collections.defaultdict(list)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids[ppid].append(int(d))
    return kids


def tree(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float | None:
    got = _cpu_split(pid)
    return None if got is None else got[0] + got[1]


def _cpu_split(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of one process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLK, int(fields[12]) / CLK  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


def _cores() -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies per core from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *v = line.split()
                v = [int(x) for x in v]
                idle = v[3] + v[4]
                out[name] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def _role(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return f"pid {pid}"
    if "resource_tracker" in cmd:
        return "resource tracker"
    return "export worker" if "multiprocessing" in cmd else "main"


class Sampler:
    """Peak memory and CPU time of process trees, sampled while they run."""

    def __init__(self, roots: dict[str, int]):
        self.roots = roots
        self.hwm: dict[str, dict[int, int]] = {k: {} for k in roots}  # VmHWM kB per pid
        self.peak_rss: dict[str, int] = {k: 0 for k in roots}  # max over samples of the tree's VmRSS sum
        self.peak_anon: dict[str, int] = {k: 0 for k in roots}  # same, anonymous memory only (no mapped files)
        self.cpu: dict[str, dict[int, float]] = {k: {} for k in roots}
        self.split: dict[str, dict[int, tuple[float, float]]] = {k: {} for k in roots}  # (user, system) per pid
        kids = _children()
        self.split0 = {p: got for r in roots.values() for p in tree(r, kids) if (got := _cpu_split(p)) is not None}
        self.cpu0 = {k: sum(u + s for p, (u, s) in self.split0.items() if p in tree(r, kids)) for k, r in roots.items()}
        self.cores0 = _cores()
        self.procs: dict[str, int] = {k: 1 for k in roots}
        self.roles: dict[int, str] = {}

    def sample(self) -> None:
        kids = _children()
        for name, root in self.roots.items():
            pids = tree(root, kids)
            self.procs[name] = max(self.procs[name], len(pids))
            rss = anon = 0
            for p in pids:
                rss += _status_kb(p, "VmRSS:")
                anon += _status_kb(p, "RssAnon:")
                hwm = _status_kb(p, "VmHWM:")
                if hwm:
                    if p not in self.hwm[name]:
                        self.roles[p] = _role(p)
                    self.hwm[name][p] = max(self.hwm[name].get(p, 0), hwm)
                cpu = _cpu_split(p)
                if cpu is not None:
                    self.cpu[name][p] = cpu[0] + cpu[1]
                    self.split[name][p] = cpu
                    if p not in self.roles:
                        self.roles[p] = _role(p)
            self.peak_rss[name] = max(self.peak_rss[name], rss)
            self.peak_anon[name] = max(self.peak_anon[name], anon)

    def report(self, seconds: float) -> dict:
        cores1 = _cores()
        busy = {c: round(100 * (cores1[c][0] - b0) / max(1, cores1[c][1] - t0), 1)
                for c, (b0, t0) in self.cores0.items()}
        out = {"cores_busy_pct": busy}
        for name in self.roots:
            out[f"{name}_peak_rss_mb"] = round(self.peak_rss[name] / 1024, 1)
            out[f"{name}_hwm_sum_mb"] = round(sum(self.hwm[name].values()) / 1024, 1)
            out[f"{name}_peak_anon_mb"] = round(self.peak_anon[name] / 1024, 1)
            cpu = sum(self.cpu[name].values()) - self.cpu0[name]
            out[f"{name}_cpu_s"] = round(cpu, 2)
            out[f"{name}_cores"] = round(cpu / seconds, 2) if seconds else None
            out[f"{name}_processes"] = self.procs[name]
            # Where the CPU went: user and system seconds by role (the server's main process and
            # its export workers), the system part being mostly page faults, copies and fsync.
            by_role: dict[str, list[float]] = {}
            for p, (user, system) in self.split[name].items():
                user0, system0 = self.split0.get(p, (0.0, 0.0))
                acc = by_role.setdefault(self.roles.get(p, "main"), [0.0, 0.0])
                acc[0] += user - user0
                acc[1] += system - system0
            out[f"{name}_cpu_user_sys_by_role"] = {k: [round(u, 2), round(s, 2)] for k, (u, s) in by_role.items()}
            out[f"{name}_hwm_by_process_mb"] = sorted(
                ([self.roles[p], round(kb / 1024, 1)] for p, kb in self.hwm[name].items()), key=lambda x: -x[1])
        return out


# --- one run ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SRC_FIRST = True  # set by which_fhirhose(): whether the subprocesses import ./src or the installed package


def _env() -> dict[str, str]:
    env = dict(os.environ)
    if _SRC_FIRST:
        env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    return env


def _probe(src_first: bool) -> tuple[str, str] | None:
    """(fhirhose.__file__, backend) as a subprocess with that path sees it; None when not importable."""
    env = dict(os.environ)
    if src_first:
        env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    else:
        env.pop("PYTHONPATH", None)
    got = subprocess.run([sys.executable, "-c", "import fhirhose; print(fhirhose.__file__); print(fhirhose.backend)"],
                         env=env, capture_output=True, text=True, cwd="/")
    if got.returncode != 0:
        return None
    path, backend = got.stdout.split()
    return path, backend


def which_fhirhose(allow_twin: bool) -> tuple[str, str]:
    """Pick the fhirhose the server and client run (see module doc); (path, backend)."""
    global _SRC_FIRST
    src = _probe(True)
    if src is None or src[1] != "cext":
        installed = _probe(False)
        if installed is not None and installed[1] == "cext" and not installed[0].startswith(str(ROOT / "src")):
            _SRC_FIRST = False
            return installed
        if (ROOT / "setup.py").exists() and os.environ.get("FHIRHOSE_PURE") != "1":
            print("e2e: no compiled core in src/ and none installed: building in place "
                  "(python setup.py build_ext --inplace, ~1 min)", file=sys.stderr)
            subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=ROOT, check=True)
            src = _probe(True)
    _SRC_FIRST = True
    if src is None:
        raise SystemExit("e2e: fhirhose is not importable from src/ (nor installed)")
    if src[1] != "cext" and not allow_twin:
        raise SystemExit(f"e2e: {src[0]} runs on the pure-Python twin (backend {src[1]!r}), ~10x slower than the "
                         f"compiled core: refusing to measure it (pass --allow-twin to measure the twin on purpose)")
    return src


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fhirhose.cli", *args]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer {url} within {timeout:.0f} s")


def run_once(work: Path, benes: int, args: argparse.Namespace) -> dict:
    data = dataset(work, benes, args.seed, args.history_years)
    port = _free_port()
    base = f"http://127.0.0.1:{port}/api/v2"
    log = open(data / "server.log", "w")
    server = subprocess.Popen(
        _cli("serve", "--demo", "--data", str(data), "--port", str(port), "--workers", str(args.workers),
             "--chunk-size", str(args.chunk_size), "--retry-after", str(args.retry_after),
             *(["--ndjson-sha256"] if args.ndjson_sha256 else [])),
        env=_env(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    out = work / f"out-{benes}"
    shutil.rmtree(out, ignore_errors=True)
    spy = None
    try:
        _wait_ready(f"{base}/metadata", server)
        if args.profile:
            # --native pauses the process per sample (it cannot be --nonblocking): slower, but it
            # splits the time inside the compiled writer, compression and hashing.
            how = ["--native"] if args.native else ["--nonblocking"]
            spy = subprocess.Popen(["py-spy", "record", "--subprocesses", *how, "--format", "raw", "--rate", "50",
                                    "-o", str(work / f"profile-{benes}.txt"), "--pid", str(server.pid)],
                                   stdout=subprocess.DEVNULL, stderr=open(work / "py-spy.log", "w"))
            time.sleep(1.0)
        pull = _cli("pull", "--credentials", str(data / "credentials.json"), "--org", ORG, "--out", str(out),
                    "--json", "--quiet", "--concurrency", str(args.concurrency))
        if args.keep_compressed:
            pull.append("--keep-compressed")
        t0 = time.monotonic()
        result_file = open(work / "pull-result.json", "w+b")
        client = subprocess.Popen(pull, env=_env(), stdout=result_file, stderr=subprocess.PIPE, cwd=ROOT)
        sampler = Sampler({"server": server.pid, "client": client.pid})
        while client.poll() is None:
            sampler.sample()
            time.sleep(TICK)
        wall = time.monotonic() - t0
        _, stderr = client.communicate()
        result_file.seek(0)
        stdout = result_file.read()
        result_file.close()
        if client.returncode != 0:
            raise SystemExit(f"fhirhose pull failed ({client.returncode}):\n{stderr.decode()}")
        usage = sampler.report(wall)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    r = json.loads(stdout)
    plain_write_s = plain_beside = None
    if not args.keep_compressed and args.plain_write:
        # Beside the pulled files when the disk has room: written over memory just freed (the
        # pull's files deleted first) the page cache is ~2x cheaper on this VM than over fresh
        # pages, as the pull had them — then the reference flatters the disk.
        plain_beside = shutil.disk_usage(out).free > 1.1 * r["ndjson_bytes"] + (2 << 30)
        if not plain_beside:
            shutil.rmtree(out, ignore_errors=True)  # make room: the same bytes go to the same disk
        plain_write_s = round(plain_write(out / "plain", r["ndjson_bytes"]), 2)
    with sqlite3.connect(data / "jobs.sqlite") as db:
        created, completed = db.execute("SELECT created, completed FROM jobs ORDER BY created DESC").fetchone()
    resources = sum(r["resources"].values())
    secs = r["seconds"]
    row = {
        "benes": benes, "history_years": args.history_years, "mode": mode_of(args), "resources": resources,
        "backend": args.backend, "plain_write_s": plain_write_s, "plain_write_beside": plain_beside,
        "by_type": r["resources"], "files": len(r["files"]), "seconds": round(secs, 2),
        "verified_s": round(r["total_seconds"], 2),
        "client_wall_s": round(wall, 2), "server_export_s": round(completed - created, 2) if completed else None,
        "resources_per_s": round(resources / secs),
        "ndjson_mb": round(r["ndjson_bytes"] / 1e6, 1), "wire_mb": round(r["wire_bytes"] / 1e6, 1),
        "ndjson_mb_s": round(r["ndjson_bytes"] / 1e6 / secs, 1), "wire_mb_s": round(r["wire_bytes"] / 1e6 / secs, 1),
        "workers": args.workers, "chunk_size": args.chunk_size, "concurrency": args.concurrency,
        "retry_after": args.retry_after, **usage,
        "machine": f"{platform.machine()} {os.cpu_count()} cores", "load_before": round(os.getloadavg()[0], 2),
    }
    shutil.rmtree(out, ignore_errors=True)
    prim = primitives(data / "store")
    row["primitives"] = prim
    gb, sp = r["ndjson_bytes"] / 1e9, prim["gb_s"]
    floor = gb * (1 / sp["writer"] + 1 / sp["gzip"]) / (os.cpu_count() or 1)
    if not args.keep_compressed:
        floor += gb / sp["gunzip"]
    row["floor_s"] = round(floor, 2)
    if args.profile:
        row["profile"] = summarize_profile(work / f"profile-{benes}.txt")
    return row


# --- primitives -------------------------------------------------------------------------------


def mode_of(args: argparse.Namespace) -> str:
    mode = "gzip kept" if args.keep_compressed else "NDJSON"
    return mode + (" + NDJSON sha256" if args.ndjson_sha256 else "")


def plain_write(out: Path, nbytes: int, block: int = 4 << 20) -> float:
    """Seconds to write `nbytes` (4 MiB writes, as the client's) to a file in `out`, then delete it:
    what the disk alone needs for the NDJSON the pull wrote."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "plain-write.bin"
    buf = os.urandom(block)
    t0 = time.monotonic()
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            left -= f.write(buf[: min(block, left)])
    took = time.monotonic() - t0
    path.unlink()
    return took


def primitives(store: Path, benes: int = 400, reps: int = 3) -> dict:
    """One-core speeds (GB/s of NDJSON, best of `reps`, CPU time) of the steps every byte of
    the export passes through, on this run's own data: the compiled writer (EOBs of the
    first `benes` beneficiaries), ISA-L gzip-1 and streaming gunzip (sha256 too, the cost of
    the optional BCDA checksum). Writer + gzip over the cores (+ gunzip when the client
    decodes) is the floor any implementation of the default integrity path has."""
    import hashlib
    import io

    from isal import igzip, isal_zlib

    from fhirhose._backend import core
    from fhirhose.export.exporter import Exporter, ExportSpec
    from fhirhose.fhir.registry import SOURCES
    from fhirhose.store import Store

    def best(f) -> float:
        times = []
        for _ in range(reps):
            t = time.process_time()
            f()
            times.append(time.process_time() - t)
        return max(min(times), 1e-9)

    snap = Store(store).snapshot()
    try:
        ex = Exporter(snap.tables, SOURCES)
        rows = np.arange(min(benes, snap.tables["bene"].n), dtype=np.int64)
        work = [(ex.writer(s.template, s.rtype), ex.rows_for(s, rows, ExportSpec()))
                for s in ex.sources if s.rtype == "ExplanationOfBenefit"]
        out = core.OutBuffer(1 << 24)

        def render() -> None:
            out.clear()
            for w, r in work:
                w.write(r, out)

        writer_s = best(render)
        data = out.getvalue()
    finally:
        snap.close()
    piece = 2 << 20

    def gzip_it() -> bytes:
        c = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
        return b"".join([c.compress(data[i:i + piece]) for i in range(0, len(data), piece)] + [c.flush()])

    gz = gzip_it()

    def gunzip() -> None:
        with igzip.open(io.BytesIO(gz), "rb") as f:
            while f.read(4 << 20):
                pass

    gb = len(data) / 1e9
    speeds = {"writer": gb / writer_s, "sha256": gb / best(lambda: hashlib.sha256(data).digest()),
              "gzip": gb / best(gzip_it), "gunzip": gb / best(gunzip)}
    return {"gb_s": {k: round(v, 2) for k, v in speeds.items()}, "sample_mb": round(len(data) / 1e6, 1)}


# --- profile ----------------------------------------------------------------------------------


def _frame(f: str) -> tuple[str, str]:
    """(function, file or library) of one py-spy frame: `name (path:line)` or `0xaddr (lib.so)`."""
    name, _, where = f.partition(" (")
    where = where.rstrip(")").split(":")[0].rsplit("/", 1)[-1]
    return (f"[{where}]" if name.startswith("0x") else name), where or "?"


def summarize_profile(path: Path, top: int = 15) -> dict:
    """Sample shares from py-spy's collapsed stacks: by leaf function (self), by the file or
    library the leaf is in, and inclusive by function."""
    by_fn: collections.Counter = collections.Counter()
    by_file: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";") if not f.startswith("process ")]
        if not n.isdigit() or not frames:
            continue
        n = int(n)
        total += n
        fn, where = frames[-1]
        by_fn[f"{fn} ({where})" if not fn.startswith("[") else fn] += n
        by_file[where] += n
        for f in {f"{a} ({b})" for a, b in frames}:
            incl[f] += n
    pct = lambda c: [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)]  # noqa: E731
    return {"samples": total, "self": pct(by_fn), "self_by_file": pct(by_file), "inclusive": pct(incl)}


# --- output -----------------------------------------------------------------------------------


def merge(rows: list[dict]) -> list[dict]:
    path = RESULTS / "e2e.json"
    old = json.loads(path.read_text())["runs"] if path.exists() else []
    # Runs without a recorded backend predate issue 12 (NDJSON hashed twice on the default
    # path, backend unchecked): not comparable, dropped.
    old = [r for r in old if "backend" in r]
    key = lambda r: (r["benes"], r["mode"], r.get("history_years"), r.get("backend"))  # noqa: E731
    keys = {key(r) for r in rows}
    runs = sorted([r for r in old if key(r) not in keys] + rows, key=lambda r: (r["mode"], r["benes"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs}, indent=2, ensure_ascii=False) + "\n")
    return runs


def plot(runs: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in sorted({r["mode"] for r in runs}):
        rs = [r for r in runs if r["mode"] == mode]
        x = [r["benes"] for r in rs]
        a.plot(x, [r.get("verified_s") or r["seconds"] for r in rs], "o-", label=mode)
        b.plot(x, [r["resources_per_s"] for r in rs], "o-", label=mode)
    for (n, kept), t in TARGET_S.items():
        a.plot([n], [t], marker="_", ms=18, color="grey")
        a.annotate(f"target {'kept' if kept else 'NDJSON'} {t:g} s", (n, t), textcoords="offset points",
                   xytext=(-70, 4 if kept else -10), fontsize=7, color="grey")
    a.set(xscale="log", yscale="log", xlabel="beneficiaries in the ACO", ylabel="kick-off to last verified byte (s)",
          title="Group/all export, serve + pull over loopback")
    b.set(xscale="log", xlabel="beneficiaries in the ACO", ylabel="resources / s", title="throughput")
    b.set_ylim(bottom=0)
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = RESULTS / "e2e.png"
    fig.savefig(out, dpi=110)
    return out


def derived(r: dict) -> dict:
    """Figures that separate this run from the machine it shared: the CPU-bound floor (our
    CPU seconds spread over every core) and the cores other processes kept busy."""
    ours = r["server_cpu_s"] + r["client_cpu_s"]
    busy = sum(r["cores_busy_pct"].values()) / 100
    return {"cpu_s": ours, "floor_s": ours / len(r["cores_busy_pct"]),
            "others_cores": max(0.0, busy - r["server_cores"] - r["client_cores"])}


def _num(v, unit: str = "") -> str:
    return "–" if v is None else f"{v:,.0f}{unit}"


# Issue 12's targets: seconds kick-off → last verified byte by (beneficiaries, kept compressed).
TARGET_S = {(10_000, True): 4.0, (10_000, False): 6.0, (100_000, True): 40.0}
RSS_MB = 500
FLOOR_X = 1.5  # kept-compressed runs within this of the floor
PLAIN_X = 1.2  # NDJSON runs at 100,000: within this of a plain write of the same bytes


def verdict(r: dict) -> str:
    """The targets that apply to a run, each met (✓) or missed (✗)."""
    kept = r["mode"].startswith("gzip kept")
    out = []
    secs = r.get("verified_s") or r["seconds"]
    if "sha256" not in r["mode"] and (r["benes"], kept) in TARGET_S:
        t = TARGET_S[(r["benes"], kept)]
        out.append(f"≤ {t:g} s {'✓' if secs <= t else '✗'}")
    if not kept and r.get("plain_write_s"):
        # The target is at 100,000 (72 GB); 50,000 stands in where the disk cannot hold that twice.
        x = secs / r["plain_write_s"]
        mark = (" ✓" if x <= PLAIN_X else " ✗") if r["benes"] >= 50_000 else ""
        out.append(f"{x:.2f}x plain write{mark}")
    if kept and r.get("floor_s"):
        x = secs / r["floor_s"]
        out.append(f"{x:.1f}x floor {'✓' if x <= FLOOR_X else '✗'}")
    out.append(f"RSS {'✓' if r['server_peak_rss_mb'] <= RSS_MB else '✗'}")
    return ", ".join(out)


def table(runs: list[dict]) -> str:
    head = ("| beneficiaries | output | core | resources | kick-off → last verified byte | resources/s | NDJSON MB/s "
            "| wire MB/s | floor | plain write "
            "| CPU s server + client | other load (cores) "
            "| server peak RSS (anon) "
            "| client peak RSS | targets |")
    lines = [head, "|" + "---:|" * (head.count("|") - 1)]
    for r in runs:
        d = derived(r)
        lines.append(
            f"| {r['benes']:,} | {r['mode']} | {r.get('backend', '?')} | {r['resources']:,} "
            f"| {r.get('verified_s', r['seconds']):.1f} s{_of(r)} | {r['resources_per_s']:,} "
            f"| {r['ndjson_mb_s']:,.0f} | {r['wire_mb_s']:,.1f} | {_num1(r.get('floor_s'), ' s')} "
            f"| {_num1(r.get('plain_write_s'), ' s')}{' over freed pages' if r.get('plain_write_beside') is False else ''} "
            f"| {r['server_cpu_s']:.0f} + {r['client_cpu_s']:.0f} | {d['others_cores']:.1f} "
            f"| {r['server_peak_rss_mb']:,.0f} MB ({r['server_peak_anon_mb']:,.0f} MB) | {r['client_peak_rss_mb']:.0f} MB "
            f"| {verdict(r)} |")
    return "\n".join(lines)


def _of(r: dict) -> str:
    runs = r.get("verified_s_runs")
    return f" (median of {len(runs)})" if runs else ""


def _num1(v, unit: str = "") -> str:
    return "–" if v is None else f"{v:,.1f}{unit}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benes", default="1000,10000", help="comma-separated ACO sizes (default 1000,10000)")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fhirhose-e2e",
                   help="stores (cached per size), server data and pulled files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history-years", type=int, default=1,
                   help="years of claims per beneficiary (default 1: ~37 claims each, the issue's "
                        "3.3 M EOBs per 100,000 beneficiaries)")
    p.add_argument("--workers", type=int, default=2, help="server export worker processes (default 2)")
    p.add_argument("--chunk-size", type=int, default=1000, help="beneficiaries per export chunk (default 1000)")
    p.add_argument("--retry-after", type=int, default=1, help="server poll pacing in seconds (default 1)")
    p.add_argument("--concurrency", type=int, default=4, help="parallel downloads (default 4)")
    p.add_argument("--keep-compressed", action="store_true", help="pull keeps gzip files (no NDJSON written)")
    p.add_argument("--ndjson-sha256", action="store_true",
                   help="server also computes BCDA's checksum of the uncompressed NDJSON (its cost as its own row)")
    p.add_argument("--plain-write", action=argparse.BooleanOptionalAction, default=None,
                   help="after an NDJSON pull, time a plain write of the same bytes to the same disk "
                        "(default: at 100,000 beneficiaries and more)")
    p.add_argument("--allow-twin", action="store_true", help="measure the pure-Python twin if that is what runs")
    p.add_argument("--profile", action="store_true", help="py-spy the server tree and print where time goes")
    p.add_argument("--native", action="store_true", help="with --profile: include native frames (C, Cython)")
    p.add_argument("--repeat", type=int, default=1, help="runs per size; the median one is recorded (default 1)")
    p.add_argument("--no-save", action="store_true", help="print only; leave results/ alone")
    p.add_argument("--readme", type=Path, help="also rewrite the table between the e2e markers in this file")
    args = p.parse_args(argv)
    where, args.backend = which_fhirhose(args.allow_twin)
    print(f"e2e: fhirhose from {Path(where).parent}, core backend {args.backend}"
          + ("  <-- THE PURE-PYTHON TWIN (--allow-twin): ~10x slower than users run" if args.backend != "cext" else ""),
          file=sys.stderr)
    if _SRC_FIRST:
        sys.path.insert(0, str(ROOT / "src"))
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    sizes = [int(x.replace("_", "")) for x in args.benes.split(",")]
    plain = args.plain_write
    for n in sizes:
        args.plain_write = plain if plain is not None else n >= 100_000
        runs = [run_once(args.work, n, args) for _ in range(max(1, args.repeat))]
        # The median run by kick-off → last verified byte stands for the size; every run's time is kept.
        row = sorted(runs, key=lambda r: r["verified_s"])[len(runs) // 2]
        if len(runs) > 1:
            row["verified_s_runs"] = [r["verified_s"] for r in runs]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "profile"}), file=sys.stderr)
        if "profile" in row:
            print(json.dumps(row["profile"], indent=1), file=sys.stderr)
    runs = rows if args.no_save else merge(rows)
    if not args.no_save:
        print(f"wrote {RESULTS / 'e2e.json'} and {plot(runs)}", file=sys.stderr)
    print(table(runs))
    if args.readme:
        text = args.readme.read_text()
        head, sep, rest = text.partition(BEGIN)
        _, sep2, tail = rest.partition(END)
        if not (sep and sep2):
            raise SystemExit(f"{args.readme}: no {BEGIN} ... {END} markers")
        args.readme.write_text(f"{head}{BEGIN}\n{table(runs)}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
