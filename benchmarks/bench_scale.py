"""Scale-out measurements: one export on 1 -> 2 worker processes and 1 -> 2 worker nodes
(PostgreSQL queue), the queue's cost per chunk, and PostgreSQL vs SQLite on the API's hot
paths (token verification, status poll).

    PYTHONPATH=src python benchmarks/bench_scale.py --benes 3000 [--chunk-size 250]

Starts a throwaway PostgreSQL cluster (tests/support/postgres.py; as root it runs as the
`postgres` user), synthesizes (and caches) the e2e benchmark store, and for each layout
runs `fhirhose serve --demo` (+ `fhirhose worker` nodes) as subprocesses on 127.0.0.1,
kicks off a Group/all export of the benchmark ACO and times it from the job rows (created
-> completed), so client downloads are not part of the figure. Prints a markdown table and
writes benchmarks/results/scale.json. On a 2-core machine two processes are the ceiling:
the point is that the per-core rate holds when the work is spread over nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "benchmarks")]


def _env() -> dict:
    """The nodes' environment: the fhirhose e2e.which_fhirhose picked (./src or installed)."""
    import e2e

    env = e2e._env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(ROOT)]))
    return env


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", "fhirhose.cli", *args], env=_env(), cwd=ROOT,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=f)


def _stop(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def _http(method: str, url: str, headers: dict, body: bytes | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def export_once(data: Path, database: str | None, processes: int, worker_nodes: int, chunk: int) -> dict:
    """One Group/all export of the benchmark ACO; seconds from the job row."""
    from e2e import ORG

    from fhirhose.sql import open_database

    for stale in ("jobs", "jobs.sqlite", "access.sqlite", "credentials.json", "operator.key"):
        p = data / stale
        subprocess.run(["rm", "-rf", str(p)], check=True)
        for extra in data.glob(stale + "-*"):
            extra.unlink()
    port = _port()
    db = ["--database", database] if database else []
    api_workers = processes if worker_nodes == 0 else 0
    logs = data.parent / "bench-scale-logs"
    logs.mkdir(exist_ok=True)
    procs = [_spawn(["serve", "--demo", "--data", str(data), *db, "--port", str(port), "--workers", str(api_workers),
                     "--chunk-size", str(chunk), "--retry-after", "0"], logs / "api.log")]
    try:
        base = f"http://127.0.0.1:{port}/api/v2"
        end = time.monotonic() + 600
        while not (data / "credentials.json").exists() or _try(base) is None:
            if time.monotonic() > end or procs[0].poll() is not None:
                raise SystemExit(f"server did not start; see {logs / 'api.log'}")
            time.sleep(0.2)
        for k in range(worker_nodes):
            procs.append(_spawn(["worker", "--data", str(data), "--database", database, "--processes",
                                 str(processes)], logs / f"worker-{k}.log"))
        creds = json.loads((data / "credentials.json").read_text())
        client = next(c for c in creds["clients"] if c["organization"] == ORG)
        import base64

        basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
        st, _, body = _http("POST", f"{base}/auth/token", {"Authorization": f"Basic {basic}",
                            "Content-Type": "application/x-www-form-urlencoded"}, b"grant_type=client_credentials")
        assert st == 200, body
        hd = {"Authorization": f"Bearer {json.loads(body)['access_token']}", "Accept": "application/fhir+json",
              "Prefer": "respond-async"}
        if worker_nodes:
            time.sleep(3)  # worker nodes up (spawn + import) before the kick-off: time the export, not start-up
        cpu0 = sum(_tree_cpu(p.pid) for p in procs)
        st, h, body = _http("GET", f"{base}/Group/all/$export", hd)
        assert st == 202, body
        url = h["Content-Location"]
        while True:
            st, h, body = _http("GET", url, hd)
            if st != 202:
                break
            time.sleep(0.2)
        assert st == 200, body
        manifest = json.loads(body)
        sql = open_database(database or data / "jobs.sqlite")
        created, completed, chunks = sql.conn.execute(
            "SELECT created, completed, chunks_total FROM jobs ORDER BY created DESC LIMIT 1").fetchone()
        sql.close()
        cpu = sum(_tree_cpu(p.pid) for p in procs) - cpu0  # (export processes still alive: counted)
    finally:
        for p in procs:
            _stop(p)
    resources = sum(o["count"] for o in manifest["output"])
    secs = completed - created
    return {"resources": resources, "chunks": chunks, "seconds": round(secs, 2),
            "resources_per_s": round(resources / secs), "cpu_s": round(cpu, 1),
            "resources_per_cpu_s": round(resources / cpu) if cpu else None, "load": os.getloadavg()[0]}


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants, from /proc."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    kids.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(d))
            except (OSError, IndexError, ValueError):
                continue
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, ()))
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return total


def _try(base: str):
    try:
        with urllib.request.urlopen(f"{base}/metadata", timeout=5) as r:
            return r.status
    except OSError:
        return None


def queue_overhead(location: str, chunks: int = 400) -> float:
    """Microseconds of claim + renew + commit (one file row) per chunk, one claimer."""
    from fhirhose.server.db import FileRow, Job, JobDB
    from fhirhose.sql import open_database

    db = JobDB(open_database(location))
    db.migrate()
    job = Job("bench", "c", "O", "group", "all", "k", "u", b"{}", "queued", None, chunks, 0, 1.0, 1.0, None, None, None)
    db.run(JobDB.insert_job, job, np.arange(chunks, dtype=np.int64), [(i, i + 1) for i in range(chunks)], [], b"s")
    t = time.perf_counter()
    for _ in range(chunks):
        c = db.run(JobDB.claim, "w", time.time(), 30.0)
        db.run(JobDB.renew, [(c.job_id, c.seq)], "w", time.time() + 30)
        row = FileRow("bench", f"P-{c.seq}", f"P-{c.seq}.gz", c.seq, "output", "Patient", 1, "0" * 64, 1, 1, "gzip", 0.0)
        db.run(JobDB.finish_chunk, c.job_id, c.seq, "w", [row], time.time(), 60.0)
    us = (time.perf_counter() - t) / chunks * 1e6
    db.sql.close()
    return us


def hot_paths(location: str, n: int = 400) -> dict:
    """Microseconds per token verification (every API request) and per status-poll DB
    work (job row + shared poll pacing), from one thread and from 8 threads at once."""
    from fhirhose.access import AccessConfig, AccessDB, Actor, TokenRequest, TokenService
    from fhirhose.server.db import Job, JobDB

    db = AccessDB(location, AccessConfig(scrypt_n=2**12, rate_burst=10**9, rate_per_minute=1e9))
    op = Actor.system()
    db.orgs.create(op, "A0001", "ssp", "ACO")
    user, _ = db.orgs.add_user(op, "A0001", "Ops", "ops@a.example", "data_ops")
    cred, secret = db.credentials.issue(Actor.user(user.id), "A0001")
    svc = TokenService(db)
    import base64

    basic = "Basic " + base64.b64encode(f"{cred.client_id}:{secret}".encode()).decode()
    tok = svc.issue(TokenRequest.parse(b"grant_type=client_credentials", "application/x-www-form-urlencoded", basic),
                    "127.0.0.1").access_token
    jobs = JobDB(db.sql)
    jobs.migrate()
    job = Job("poll", "c", "A0001", "group", "all", "k", "u", b"{}", "running", None, 1, 0, 1.0, 1.0, None, None, None)
    jobs.run(JobDB.insert_job, job, np.arange(1, dtype=np.int64), [(0, 1)], [], b"s")

    def verify():
        svc.verify_access_token(tok, "127.0.0.1")

    def poll():  # the job row; shared nodes also record the poll (a sole SQLite node keeps that in memory)
        jobs.run(JobDB.get_job, "poll")
        if jobs.engine == "postgresql":
            jobs.run(JobDB.take_poll, "poll", time.time(), 0.0)

    out = {}
    for name, fn in (("token_verify", verify), ("status_poll_db", poll)):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out[f"{name}_us"] = round((time.perf_counter() - t) / n * 1e6)

        def many(fn=fn):
            for _ in range(n // 8):
                fn()

        threads = [threading.Thread(target=many) for _ in range(8)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        out[f"{name}_per_s_8_threads"] = round(8 * (n // 8) / (time.perf_counter() - t))
    db.close()
    db.sql.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benes", type=int, default=3000, help="beneficiaries of the exported ACO (default 3000)")
    p.add_argument("--chunk-size", type=int, default=250, help="beneficiaries per chunk (default 250)")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fhirhose-e2e")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--allow-twin", action="store_true", help="measure the pure-Python twin if that is what runs")
    args = p.parse_args(argv)
    from e2e import dataset, which_fhirhose

    where, backend = which_fhirhose(args.allow_twin)  # never the twin by accident (issue 12)
    print(f"bench_scale: fhirhose from {where}, backend {backend}", file=sys.stderr)

    from tests.support.postgres import MISSING, Cluster, pg_bin

    bin_dir = pg_bin()
    if bin_dir is None:
        raise SystemExit(MISSING)
    args.work.mkdir(parents=True, exist_ok=True)
    data = dataset(args.work, args.benes, args.seed, 1)
    cluster = Cluster(bin_dir)
    rows = []
    try:
        layouts = [("sqlite", 1, 0), ("sqlite", 2, 0), ("postgresql", 1, 0), ("postgresql", 2, 0),
                   ("postgresql", 1, 1), ("postgresql", 1, 2)]
        for engine, procs, nodes in layouts:
            url = cluster.create_database()[1] if engine == "postgresql" else None
            r = export_once(data, url, procs, nodes, args.chunk_size)
            layout = f"{nodes} worker node(s) x {procs} process" if nodes else f"API node, {procs} process(es)"
            rows.append({"kind": "export", "engine": engine, "layout": layout, "backend": backend, **r})
            print(json.dumps(rows[-1]), file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            for engine in ("sqlite", "postgresql"):
                loc = cluster.create_database()[1] if engine == "postgresql" else str(Path(tmp) / f"q-{engine}.db")
                rows.append({"kind": "queue", "engine": engine, "claim_renew_commit_us_per_chunk":
                             round(queue_overhead(loc))})
                loc = cluster.create_database()[1] if engine == "postgresql" else str(Path(tmp) / f"h-{engine}.db")
                rows.append({"kind": "hot", "engine": engine, **hot_paths(loc)})
                print(json.dumps(rows[-2:]), file=sys.stderr)
    finally:
        cluster.stop()
    print("| export | engine | resources | chunks | seconds | resources/s | CPU s | resources/CPU s | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["kind"] == "export":
            print(f"| {r['layout']} | {r['engine']} | {r['resources']:,} | {r['chunks']} | {r['seconds']} | "
                  f"{r['resources_per_s']:,} | {r['cpu_s']} | {r['resources_per_cpu_s']:,} | {r['load']:.1f} |")
    print("\n| engine | queue: claim+renew+commit per chunk | token verify | 8 threads | status poll DB | 8 threads |")
    print("|---|---:|---:|---:|---:|---:|")
    for engine in ("sqlite", "postgresql"):
        q = next(r for r in rows if r["kind"] == "queue" and r["engine"] == engine)
        h = next(r for r in rows if r["kind"] == "hot" and r["engine"] == engine)
        print(f"| {engine} | {q['claim_renew_commit_us_per_chunk']} µs | {h['token_verify_us']} µs | "
              f"{h['token_verify_per_s_8_threads']:,}/s | {h['status_poll_db_us']} µs | "
              f"{h['status_poll_db_per_s_8_threads']:,}/s |")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "scale.json").write_text(json.dumps({"benes": args.benes, "backend": backend, "chunk_size": args.chunk_size,
                                                        "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
