"""Scale-out: the chunk queue's lease semantics (both engines) and shared state across API
nodes on one PostgreSQL database (several servers over one data folder and one database).

Tests that need more than one node run on PostgreSQL only: SQLite is the engine of one
machine (its `serve` node resets running chunks at start, as the sole node)."""

from __future__ import annotations

import json
import threading
import time
import uuid

import jwt
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fhirhose.access import ASSERTION_TYPE, AccessDB, Actor, TokenError, TokenRequest, TokenService, jws
from fhirhose.server.app import API
from fhirhose.server.db import FileRow, Job, JobDB
from fhirhose.sql import open_database

from .support.access_world import add_user, make_db
from .support.server import Clock, async_test, basic_authorization, clients_of, group_rows, running

FORM = "application/x-www-form-urlencoded"


# -- the queue, on both engines ---------------------------------------------------------------


def _jobdb(location) -> JobDB:
    db = JobDB(open_database(location))
    db.migrate()
    return db


def _job(db: JobDB, job_id: str, org: str, chunks: int, created: float) -> None:
    job = Job(job_id, f"client-{org}", org, "group", "all", "all", "http://x/Group/all/$export", b"{}", "queued",
              None, chunks, 0, created, created, None, None, None)
    db.run(JobDB.insert_job, job, np.arange(chunks * 10, dtype=np.int64),
           [(i * 10, i * 10 + 10) for i in range(chunks)], [], b"scope")


def _row(job_id: str, seq: int) -> FileRow:
    return FileRow(job_id, f"Patient-{seq:05d}-001.ndjson", f"Patient-{seq:05d}-001.ndjson.gz", seq, "output",
                   "Patient", 10, "0" * 64, 100, 40, "gzip", 0.0)


def test_claims_are_fair_across_organizations(database):
    db = _jobdb(database("q"))
    _job(db, "big", "A", 4, 100.0)
    _job(db, "small", "B", 1, 200.0)
    _job(db, "big2", "A", 2, 150.0)
    now = time.time()
    first = db.run(JobDB.claim, "w1", now, 30.0)
    second = db.run(JobDB.claim, "w1", now, 30.0)
    third = db.run(JobDB.claim, "w1", now, 30.0)
    # A's oldest job first; then B (no chunk in flight) before a second chunk of A;
    # then A's other job (fewer in flight than A's first job).
    assert [(c.job_id, c.seq) for c in (first, second, third)] == [("big", 0), ("small", 0), ("big2", 0)]
    assert db.run(JobDB.get_job, "big").status == "running"
    db.sql.close()


def test_a_dead_owners_chunk_is_redone_and_committed_once(database):
    db = _jobdb(database("q"))
    _job(db, "j", "A", 2, 100.0)
    now = time.time()
    dead = db.run(JobDB.claim, "dead-node", now, 10.0)
    live = db.run(JobDB.claim, "live-node", now + 5, 10.0)
    assert (dead.seq, live.seq) == (0, 1)
    assert db.run(JobDB.claim, "live-node", now + 9, 10.0) is None  # the dead node's lease still holds
    assert db.run(JobDB.renew, [("j", 1)], "live-node", now + 20) == []
    redo = db.run(JobDB.claim, "live-node", now + 11, 10.0)  # its lease ran out
    assert (redo.job_id, redo.seq, redo.attempts) == ("j", 0, 2)
    # The dead node wakes up and tries to commit: refused, nothing listed.
    assert db.run(JobDB.finish_chunk, "j", 0, "dead-node", [_row("j", 0)], now, 60.0) == ("lost", None)
    assert db.run(JobDB.renew, [("j", 0)], "dead-node", now + 30) == [("j", 0)]
    outcome, job = db.run(JobDB.finish_chunk, "j", 0, "live-node", [_row("j", 0)], now, 60.0)
    assert outcome == "done" and job.status == "running"
    outcome, job = db.run(JobDB.finish_chunk, "j", 1, "live-node", [_row("j", 1)], now, 60.0)
    assert outcome == "done" and job.status == "done" and job.chunks_done == 2
    assert [f.name for f in db.run(JobDB.files_of, "j")] == ["Patient-00000-001.ndjson", "Patient-00001-001.ndjson"]
    # A late second commit of a done chunk changes nothing.
    assert db.run(JobDB.finish_chunk, "j", 0, "live-node", [_row("j", 0)], now, 60.0) == ("inactive", None)
    db.sql.close()


def test_failed_chunk_goes_back_and_a_cancelled_job_refuses_commits(database):
    db = _jobdb(database("q"))
    _job(db, "j", "A", 1, 100.0)
    now = time.time()
    c = db.run(JobDB.claim, "w", now, 30.0)
    assert db.run(JobDB.retry_chunk, "j", c.seq, "other") == 0  # not its chunk
    assert db.run(JobDB.retry_chunk, "j", c.seq, "w") == 1
    c = db.run(JobDB.claim, "w", now, 30.0)
    assert c.attempts == 2
    db.run(JobDB.set_status, "j", "cancelled")  # on another node
    assert db.run(JobDB.finish_chunk, "j", 0, "w", [_row("j", 0)], now, 60.0) == ("inactive", None)
    assert db.run(JobDB.fail, "j", "boom", now, 60.0) is False  # a cancelled job stays cancelled
    assert db.run(JobDB.get_job, "j").status == "cancelled"
    db.sql.close()


def test_concurrent_claimers_never_share_a_chunk(database):
    location = database("q")
    db = _jobdb(location)
    for k in range(4):
        _job(db, f"j{k}", f"O{k % 2}", 10, 100.0 + k)
    got: list[tuple[str, int]] = []
    lock = threading.Lock()

    def claimer(owner: str):
        while (c := db.run(JobDB.claim, owner, time.time(), 60.0)) is not None:
            with lock:
                got.append((c.job_id, c.seq))

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 40 and len(set(got)) == 40
    db.sql.close()


def test_poll_pacing_is_one_clock_for_every_node(database):
    db = _jobdb(database("q"))
    _job(db, "j", "A", 1, 100.0)
    assert db.run(JobDB.take_poll, "j", 1000.0, 2.7) == (False, None, None)  # the first poll
    assert db.run(JobDB.take_poll, "j", 1001.0, 2.7) == (True, 1000.0, 2.7)  # too soon, whichever node asks
    assert db.run(JobDB.take_poll, "j", 1003.0, 1.0) == (False, 1000.0, 2.7)  # and when the one before was
    assert db.run(JobDB.take_poll, "j", 1004.0, 1.0) == (False, 1003.0, 1.0)
    db.sql.close()


def test_db_upgrade_command_applies_migrations_once(database, capsys):
    from fhirhose.cli import main

    location = str(database("up"))
    assert main(["db", "upgrade", "--database", location]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["applied_now"]["jobs"] == [1, 2] and first["versions"] == {"access": [1, 2, 3], "jobs": [1, 2]}
    assert main(["db", "upgrade", "--database", location]) == 0
    assert json.loads(capsys.readouterr().out)["applied_now"]["jobs"] == []


# -- shared access state: two nodes = two AccessDB objects on one database -------------------------


def test_rate_limit_and_jti_hold_across_nodes(pg_cluster):
    """Two nodes: PostgreSQL only (SQLite serves one machine)."""
    db_name, url = pg_cluster.create_database()
    node1 = make_db(url, rate_burst=3, rate_per_minute=0.001, token_url="http://api/auth/token")
    node2 = AccessDB(url, node1.config)
    ops = add_user(node1, "A0001", "data_ops")[0]
    key = ec.generate_private_key(ec.SECP384R1())
    pub = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    cred, secret = node1.credentials.issue(ops, "A0001", jwks={"keys": [{**pub, "kid": "k1"}]}, ips=["203.0.113.7"])
    t1, t2 = TokenService(node1), TokenService(node2)
    now = time.time()

    def basic_req():
        return TokenRequest.parse(b"grant_type=client_credentials", FORM, basic_authorization(cred.client_id, secret))

    def assertion_req(jti):
        claims = {"iss": cred.client_id, "sub": cred.client_id, "aud": "http://api/auth/token", "exp": int(now) + 120,
                  "jti": jti}
        token = jws.sign("ES384", key, {"kid": "k1", "typ": "JWT"}, claims)
        body = f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={token}"
        return TokenRequest.parse(body.encode(), FORM, None)

    jti = str(uuid.uuid4())
    t1.issue(assertion_req(jti), "203.0.113.7", now=now)  # bucket 3 -> 2
    with pytest.raises(TokenError, match="jti was already used"):
        t2.issue(assertion_req(jti), "203.0.113.7", now=now)  # the other node knows the jti
    t2.issue(basic_req(), "203.0.113.7", now=now)  # 2 -> 1
    t1.issue(basic_req(), "203.0.113.7", now=now)  # 1 -> 0
    with pytest.raises(TokenError) as e:
        t2.issue(basic_req(), "203.0.113.7", now=now)  # one bucket for both nodes
    assert e.value.status == 429
    node1.close()
    node2.close()
    pg_cluster.drop_database(db_name)


# -- two API nodes over HTTP ----------------------------------------------------------------------


@async_test
async def test_two_api_nodes_share_jobs_pacing_files_and_revocation(tmp_path, pg_servers):
    """Two API nodes: PostgreSQL only (SQLite serves one machine)."""
    data = tmp_path / "d"
    (data).mkdir()
    (data / "hold").write_text("0")  # every chunk waits until the test lets go
    clock = Clock()
    async with running(data, workers=0, clock=clock) as n1, running(data, workers=1, clock=clock) as n2:
        r = await n1.kickoff("small-aco", params={"_type": "Patient"})
        assert r.status == 202, await r.text()
        on1 = r.headers["Content-Location"]
        on2 = on1.replace(n1.base, n2.base)
        hd1 = await n1.headers("small-aco", Accept="application/json")
        hd2 = await n2.headers("small-aco", Accept="application/json")
        r = await n1.session.get(on1, headers=hd1)
        assert r.status == 202
        r = await n2.session.get(on2, headers=hd2)  # the other node paces the same job
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        (data / "hold").unlink()
        r = await n2.wait("small-aco", on2)  # exported by node 2's runner, kicked off on node 1
        assert r.status == 200, await r.text()
        manifest = await r.json()
        assert sum(o["count"] for o in manifest["output"]) == len(group_rows("A0001"))
        for item in manifest["output"]:
            a = await n1.fetch("small-aco", item["url"].replace(n2.base, n1.base), **{"Accept-Encoding": "identity"})
            b = await n2.fetch("small-aco", item["url"], **{"Accept-Encoding": "identity"})
            assert a.status == b.status == 200 and await a.read() == await b.read()
        # A second job, kicked off on node 2, cancelled on node 1: gone on both.
        (data / "hold").write_text("0")
        r = await n2.kickoff("small-aco", params={"_type": "Coverage"})
        job2 = r.headers["Content-Location"]
        r = await n1.session.delete(job2.replace(n2.base, n1.base), headers=hd1)
        assert r.status == 202
        r = await n2.session.get(job2, headers=hd2)
        assert r.status == 404
        (data / "hold").unlink()
        # Revoked through node 1: node 2 refuses the token it issued, at once.
        cred = clients_of(data)["small-aco"]["credential"]
        n1.app[API].access.credentials.revoke(Actor.system(), cred)
        r = await n2.session.get(on2, headers=hd2)
        assert r.status == 401


def test_json_logs_name_the_job_on_every_line_about_it(capsys):
    import asyncio
    import logging

    from fhirhose.log import JOB_ID, configure, get_logger

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []  # configure() replaces handlers; pytest's own are put back below
    configure(logging.INFO, "json")
    log = get_logger("fhirhose.server.runner")

    async def chunk(job: str):
        JOB_ID.set(job)
        await asyncio.sleep(0)
        log.info("chunk of %s", job)

    async def both():
        await asyncio.gather(chunk("job-a"), chunk("job-b"))
        log.info("no job here")

    asyncio.run(both())
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    root.handlers = saved[0]
    root.setLevel(saved[1])
    assert [(x.get("job_id"), x["msg"]) for x in lines] == [
        ("job-a", "chunk of job-a"), ("job-b", "chunk of job-b"), (None, "no job here")]
    assert all(x["level"] == "info" and x["logger"] == "fhirhose.server.runner" for x in lines)


@async_test
async def test_health_readiness_and_metrics(tmp_path, server_engine):
    data = tmp_path / "d"
    async with running(data) as h:
        origin = h.base.removesuffix("/api/v2")
        r = await h.session.get(origin + "/healthz")
        assert r.status == 200
        r = await h.session.get(origin + "/readyz")
        assert r.status == 200 and (await r.json())["engine"] == server_engine
        r = await h.session.get(h.base + "/jobs", headers={"Authorization": "Bearer nope"})
        assert r.status == 401
        r = await h.kickoff("small-aco", params={"_type": "Patient"})
        assert (await h.wait("small-aco", r.headers["Content-Location"])).status == 200
        text = await (await h.session.get(origin + "/metrics")).text()
    metrics = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert metrics['fhirhose_jobs{state="done"}'] == 1
    assert metrics["fhirhose_chunks_claimed_total"] == metrics["fhirhose_chunks_done_total"] >= 1
    assert metrics['fhirhose_resources_written_total{type="Patient"}'] == len(group_rows("A0001"))
    assert metrics["fhirhose_bytes_written_total"] > 0
    assert metrics["fhirhose_queue_depth"] == 0
    assert metrics['fhirhose_auth_failures_total{endpoint="api",status="401"}'] == 1
    assert any(k.startswith("fhirhose_request_seconds_count{") and 'route="job"' in k for k in metrics)


def test_a_kickoff_on_one_node_wakes_idle_workers_on_another(pg_cluster):
    """NOTIFY from one node's kick-off reaches a LISTENing runner on another (PostgreSQL only:
    SQLite has one node, woken in process)."""
    from fhirhose.server.runner import WAKE_CHANNEL, _notify

    name, url = pg_cluster.create_database()
    listener, notifier = open_database(url), open_database(url)
    woke = threading.Event()
    try:
        listener.listen(WAKE_CHANNEL, woke.set)
        notifier.run(_notify)
        assert woke.wait(30)
    finally:
        listener.close()
        notifier.close()
        pg_cluster.drop_database(name)


def test_an_unreachable_database_is_a_clear_error_without_the_password(tmp_path):
    from fhirhose.errors import StoreError

    url = f"postgresql://fhirhose:s3cret@/nope?host={tmp_path}&port=1"
    db = open_database(url)
    try:
        assert db.ping() is False
    finally:
        db.close()
    with pytest.raises(StoreError) as e:
        AccessDB(url)
    assert "PostgreSQL postgresql://fhirhose:***@/nope" in str(e.value) and "s3cret" not in str(e.value)
