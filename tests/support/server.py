"""Test harness for the Bulk Data server: real app on 127.0.0.1, real HTTP, real files.

Clients are real sandbox credentials in the server's access database
(`DATA/access.sqlite`), registered by `register_clients`; the harness looks their
ids and secrets up by the names in CLIENTS.

`fixture_exporter` is a `ChunkExporter` the tests own: it writes real gzip/zstd NDJSON of
real C4BB-shaped resources (the idr_out fixtures, re-identified per beneficiary row),
rolling over every `ROLL` lines. It logs each chunk start to `DATA/exports.log` and can
be held at a chunk (file `DATA/hold` holding the first seq to hold) so tests can observe
a chunk mid-flight without timing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime as dt
import functools
import json
import os
import time
from pathlib import Path

import aiohttp
import msgspec
from aiohttp import web

from fhirhose.access import AccessConfig, AccessDB, Actor, Scope
from fhirhose.columns import Str
from fhirhose.export.compress import SUFFIX as STORED_SUFFIX
from fhirhose.export.files import write_ndjson
from fhirhose.server import ChunkFile, ChunkTask, ServerConfig, TablePopulation, create_app
from fhirhose.store.schema import column_for, complete

from . import FIXTURES

IDR_OUT = FIXTURES / "idr_out"
ROLL = 40
# Test speed: scrypt at a lower cost than production's 2**14.
ACCESS = AccessConfig(scrypt_n=2**12)
# (client name, organization, kind, beneficiaries in group all, in runout)
CLIENTS = (
    ("small-aco", "A0001", "aco", 30, 5),
    ("big-aco", "A0002", "aco", 130, 0),
    ("sponsor", "S1234", "pdp", 20, 3),
    ("narrow", "A0003", "aco", 4, 0),  # asks for scope system/Patient.read only
)
SCOPES = {"narrow": "system/Patient.read"}


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def day_ts(d: dt.date) -> float:
    return dt.datetime.combine(d, dt.time(), dt.UTC).timestamp()


# Set by the `server_engine` fixture (conftest) while a test runs on PostgreSQL:
# `name -> URL of a fresh database`. None: the SQLite files in DATA (the default layout).
DATABASE_HOOK = None


def database_url(data: Path) -> str | None:
    """The database of the server over `data`, kept in DATA/database-url so a server in a
    subprocess finds the same one; None: the default SQLite files."""
    f = data / "database-url"
    if f.exists():
        return f.read_text()
    if DATABASE_HOOK is None:
        return None
    url = str(DATABASE_HOOK(str(data)))
    data.mkdir(parents=True, exist_ok=True)
    f.write_text(url)
    return url


def register_clients(data: Path, orgs, *, config: AccessConfig = ACCESS) -> dict[str, dict]:
    """Register organizations `(name, org, kind, attested day or None)` in DATA/access.sqlite,
    each with a sandbox credential (secret), and save name → {client_id, secret, org} in
    DATA/test-clients.json. Sponsors (kind pdp) hold contract `org` and an attestor (CEO)
    who attested on the given day."""
    data.mkdir(parents=True, exist_ok=True)
    db = AccessDB(database_url(data) or data / "access.sqlite", config)
    op = Actor.system("tests")
    out = {}
    for name, org, kind, attested in orgs:
        if org not in {o.id for o in db.orgs.list()}:
            db.orgs.create(op, org, "sponsor" if kind == "pdp" else "ssp", f"Test {org}")
            if kind == "pdp":
                db.orgs.add_contract(op, org, org)
                ceo, _ = db.orgs.add_user(op, org, "CEO", f"ceo@{org.lower()}.example", "attestor", "CEO")
                db.orgs.attest(Actor.user(ceo.id), org, org, now=day_ts(attested))
        ops, _ = db.orgs.add_user(op, org, "Ops", f"ops-{name}@{org.lower()}.example", "data_ops")
        cred, secret = db.credentials.issue(Actor.user(ops.id), org, label=name)
        out[name] = {"client_id": cred.client_id, "secret": secret, "org": org, "credential": cred.id}
    db.close()
    (data / "test-clients.json").write_text(json.dumps(out))
    return out


def clients_of(data: Path) -> dict[str, dict]:
    return json.loads((data / "test-clients.json").read_text())


def basic_authorization(user: str, password: str) -> str:
    """The value of an HTTP Basic `Authorization` header (aiohttp's BasicAuth helper is deprecated)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def basic(user: str, password: str) -> dict[str, str]:
    """HTTP Basic `Authorization` header as a headers dict."""
    return {"Authorization": basic_authorization(user, password)}


def async_test(fn):
    """Run an async test function to completion on a fresh event loop."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


# --- the exporter the tests own ---------------------------------------------------------


@functools.cache
async def until(cond, what: str, deadline: float = 60.0, every: float = 0.05):
    """Await `cond()` until it returns something true (returned) or `deadline` seconds pass
    (an AssertionError naming `what`)."""
    end = time.monotonic() + deadline
    while True:
        got = await cond()
        if got:
            return got
        assert time.monotonic() < end, what
        await asyncio.sleep(every)


def _template(rtype: str) -> dict:
    name = {"Patient": "Patient.json", "Coverage": "Coverage-PartD.json",
            "ExplanationOfBenefit": "ExplanationOfBenefit-Carrier.json"}[rtype]
    return json.loads((IDR_OUT / name).read_text())


def resource(rtype: str, row: int) -> bytes:
    """One real resource for a beneficiary row (ids carry the row so tests can count them)."""
    r = copy.deepcopy(_template(rtype))
    if rtype == "Patient":
        r["id"] = f"b{row}"
    elif rtype == "Coverage":
        r["id"] = f"part-d-b{row}"
        r["beneficiary"] = {"reference": f"Patient/b{row}"}
    else:
        r["id"] = f"carrier-{row}"
        r["patient"] = {"reference": f"Patient/b{row}"}
    return json.dumps(r, separators=(",", ":")).encode()


def _data_dir(task: ChunkTask) -> Path:
    return Path(task.job_dir).parent.parent


def _held(data: Path, seq: int) -> bool:
    try:
        return seq >= int((data / "hold").read_text())
    except (FileNotFoundError, ValueError):
        return False


def fixture_exporter(task: ChunkTask, out_dir: Path) -> list[ChunkFile]:
    data = _data_dir(task)
    with open(data / "exports.log", "a") as log:
        log.write(f"{task.job_id} {task.seq}\n")
    (data / f"task-{task.job_id}-{task.seq}.json").write_bytes(msgspec.json.encode(task))
    files = []
    # Rows outside the scope (a chunk of beneficiaries who left it: only deletions) get nothing.
    in_scope = set(Scope.from_bytes(task.scope).bene_rows.tolist())
    rows = [r for r in task.rows.tolist() if r in in_scope]
    for rtype in task.types:
        lines = [resource(rtype, r) for r in rows]
        for k in range(0, max(len(lines), 1), ROLL):
            part = lines[k : k + ROLL]
            if not part:
                break
            name = f"{rtype}.{k // ROLL}.ndjson{STORED_SUFFIX[task.compression]}"
            info = write_ndjson(out_dir / name, part, task.compression, task.level,
                                ndjson_sha256=task.ndjson_sha256)
            files.append(ChunkFile(name=name, type=rtype, count=info.count, length=info.length,
                                   compression=task.compression, digest=info.digest, sha256=info.sha256 or ""))
        if _held(data, task.seq):
            # A half-written file, as a crash mid-chunk leaves it; it must never be listed.
            (out_dir / f"{rtype}.partial").write_bytes(b'{"resourceType":')
            while _held(data, task.seq):
                time.sleep(0.02)
    return files


def failing_exporter(task: ChunkTask, out_dir: Path) -> list[ChunkFile]:
    (out_dir / "Patient.0.ndjson.gz").write_bytes(b"garbage")
    raise RuntimeError(f"store row {int(task.rows[0])}: simulated exporter failure")


# --- the population the tests own --------------------------------------------------------


def tables(clients=CLIENTS) -> dict:
    """bene / roster / enroll / opt-out tables for `clients` (rows of each org are disjoint):
    ACO rosters of this performance year (runout: last year's) delivered yesterday;
    sponsors enrolled all year, this year (group all) or last year only (runout)."""
    n = sum(c[3] + c[4] for c in clients)
    year = today().year
    bene = complete("bene", {"bene_id": Str.from_list([f"b{i}" for i in range(n)])}, n)
    roster_cols: dict[str, list] = {"org_id": [], "bene_row": [], "roster_kind": [], "performance_year": [],
                                    "file_date": []}
    enroll_cols: dict[str, list] = {"bene_row": [], "cntrct_id": [], "year": [], "month_mask": []}
    row = 0
    for _, org, kind, n_all, n_runout in clients:
        for i in range(n_all + n_runout):
            if kind == "aco":
                roster_cols["org_id"].append(org)
                roster_cols["bene_row"].append(row)
                roster_cols["roster_kind"].append("Y" if i < n_all else "R")
                roster_cols["performance_year"].append(year if i < n_all else year - 1)
                roster_cols["file_date"].append(today() - dt.timedelta(days=1))
            else:
                enroll_cols["bene_row"].append(row)
                enroll_cols["cntrct_id"].append(org)
                enroll_cols["year"].append(year if i < n_all else year - 1)
                enroll_cols["month_mask"].append(0xFFF)
            row += 1
    # An older performance year of the small ACO, which group `all` must not include.
    roster_cols["org_id"].append("A0001")
    roster_cols["bene_row"].append(n - 1)
    roster_cols["roster_kind"].append("Y")
    roster_cols["performance_year"].append(year - 1)
    roster_cols["file_date"].append(today() - dt.timedelta(days=300))

    def build(name, cols):
        kinds = {"org_id": "str", "cntrct_id": "str", "roster_kind": "cat", "file_date": "date"}
        return complete(name, {k: column_for(kinds.get(k, "int"), v) for k, v in cols.items()},
                        len(next(iter(cols.values()))))

    return {"bene": bene, "roster": build("roster", roster_cols), "enroll": build("enroll", enroll_cols),
            "optout": complete("optout", {}, 0)}


def group_rows(org: str, group: str = "all", clients=CLIENTS) -> list[int]:
    """Rows a group gives. A sponsor's `all` covers every month since its attestation
    (last year's enrollees too); its `runout` only last year's."""
    row = 0
    for _, o, kind, n_all, n_runout in clients:
        if o == org:
            if group == "all":
                return list(range(row, row + n_all + (n_runout if kind == "pdp" else 0)))
            return list(range(row + n_all, row + n_all + n_runout))
        row += n_all + n_runout
    raise KeyError(org)


def register_harness_clients(data: Path) -> dict[str, dict]:
    """CLIENTS in the access DB; the sponsor attested on Jan 1 of last year."""
    attested = dt.date(today().year - 1, 1, 1)
    return register_clients(data, [(name, org, kind, attested) for name, org, kind, *_ in CLIENTS])


# --- running servers ---------------------------------------------------------------------


class Clock:
    """Injectable wall clock, moved forward only by the tests: real time plus a manual
    offset, or pinned at `start` (a POSIX timestamp) when one is given."""

    def __init__(self, start: float | None = None):
        self.start = start
        self.offset = 0.0

    def __call__(self) -> float:
        return (time.time() if self.start is None else self.start) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def config(data: Path, **kw) -> ServerConfig:
    data.mkdir(parents=True, exist_ok=True)
    if not (data / "test-clients.json").exists():
        register_harness_clients(data)
    # warm_workers off: most tests never export, and each would start a worker process for nothing
    opts = dict(workers=1, chunk_size=50, retry_after=3, exporter="tests.support.server:fixture_exporter",
                database_url=database_url(data), warm_workers=False)
    opts.update(kw)
    return ServerConfig(data_dir=str(data), **opts)


class Harness:
    """An HTTP client session against one running server; clients are named as in
    `DATA/test-clients.json` (see `register_clients`)."""

    def __init__(self, base: str, session: aiohttp.ClientSession, clock: Clock, app: web.Application | None,
                 clients: dict[str, dict]):
        self.base = base
        self.session = session
        self.clock = clock
        self.app = app
        self.clients = clients
        self._tokens: dict[str, str] = {}

    def basic(self, name: str, secret: str | None = None) -> dict[str, str]:
        c = self.clients[name]
        return basic(c["client_id"], c["secret"] if secret is None else secret)

    async def token(self, name: str, *, fresh: bool = False) -> str:
        if fresh or name not in self._tokens:
            form = {"grant_type": "client_credentials"}
            if name in SCOPES:
                form["scope"] = SCOPES[name]
            async with self.session.post(f"{self.base}/auth/token", data=form, headers=self.basic(name)) as r:
                assert r.status == 200, await r.text()
                self._tokens[name] = (await r.json())["access_token"]
        return self._tokens[name]

    async def headers(self, client_id: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(client_id)}", **extra}

    async def kickoff(self, client_id: str, path: str = "/Group/all/$export", *, params=None, json_body=None,
                      prefer: str = "respond-async") -> aiohttp.ClientResponse:
        h = await self.headers(client_id, Accept="application/fhir+json", Prefer=prefer)
        if json_body is not None:
            h["Content-Type"] = "application/fhir+json"
            r = await self.session.post(self.base + path, data=json.dumps(json_body), headers=h)
        else:
            r = await self.session.get(self.base + path, params=params, headers=h)
        await r.read()
        return r

    async def wait(self, client_id: str, status_url: str, *, deadline: float = 120.0) -> aiohttp.ClientResponse:
        """Poll, honouring Retry-After on the injected clock, until the job leaves 202."""
        end = time.monotonic() + deadline
        while True:
            self.clock.advance(3)
            r = await self.session.get(status_url, headers=await self.headers(client_id, Accept="application/json"))
            await r.read()
            if r.status != 202:
                return r
            assert time.monotonic() < end, f"job still running after {deadline} s"
            await asyncio.sleep(0.05)

    async def fetch(self, client_id: str, url: str, **headers: str) -> aiohttp.ClientResponse:
        r = await self.session.get(url, headers=await self.headers(client_id, **headers), auto_decompress=False)
        await r.read()
        return r


@contextlib.asynccontextmanager
async def running(data: Path, *, clock: Clock | None = None, population=None, **kw):
    """A server on 127.0.0.1 (ephemeral port) over `data`, with the tests' population."""
    clock = clock or Clock()
    app = create_app(config(data, **kw), access=ACCESS, clock=clock, population=population or TablePopulation(tables))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            yield Harness(f"http://127.0.0.1:{port}/api/v2", session, clock, app, clients_of(data))
    finally:
        await runner.cleanup()


def serve_main(data: str, port: int) -> None:
    """Entry point of a server subprocess (restart tests): tests' population and exporter."""
    import uvloop

    async def main():
        app = create_app(config(Path(data), workers=1, chunk_size=10, retry_after=0), access=ACCESS,
                         population=TablePopulation(tables))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        (Path(data) / "ready").write_text(str(os.getpid()))
        await asyncio.Event().wait()

    uvloop.run(main())


# --- a real store, exported by the real exporter ----------------------------------------

# Store-backed sandbox: (organization, kind, beneficiaries); each beneficiary gets
# `CLAIMS` carrier claims, the last of which is an earlier (not final) version.
STORE_ORGS = (("A0001", "aco", 12), ("S1234", "pdp", 7))
CLAIMS = 3


def store_sources():
    """The template registry when the templates are part of the build; else small R4 shapes."""
    try:
        from fhirhose.fhir.registry import SOURCES

        return SOURCES
    except ImportError:
        pass
    from fhirhose.fhir.source import Source
    from fhirhose.template import Arr, K, Obj, Template, Val

    return [
        Source("Patient", Template("pat", "bene", K("resourceType", "Patient"), Val("id", "bene_id"),
                                   Obj("meta", Val("lastUpdated", "last_updated")),
                                   K("identifier", [{"system": "http://hl7.org/fhir/sid/us-mbi", "value": "x"}]),
                                   Arr("name", Obj(None, Val("family", "bene_last_name"))), K("gender", "unknown")), "bene"),
        Source("Coverage", Template("cov", "bene", K("resourceType", "Coverage"), Val("id", "bene_id", prefix="part-a-"),
                                    K("status", "active"), Obj("beneficiary", Val("reference", "bene_id", prefix="Patient/")),
                                    K("payor", [{"identifier": {"value": "CMS"}}])), "bene"),
        Source("ExplanationOfBenefit", Template(
            "eob", "partb", K("resourceType", "ExplanationOfBenefit"), Val("id", "clm_id", prefix="carrier-"),
            Obj("meta", Val("lastUpdated", "last_updated")), K("status", "active"),
            K("type", {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]}),
            K("use", "claim"), Obj("patient", Val("reference", "bene_id", prefix="Patient/")),
            Obj("billablePeriod", Val("start", "clm_from_dt"), Val("end", "clm_thru_dt")),
            K("created", "2024-06-01"), K("insurer", {"display": "CMS"}), K("provider", {"display": "unknown"}),
            K("outcome", "complete"), K("insurance", [{"focal": True, "coverage": {"reference": "Coverage/x"}}]),
        ), "partb", service_dates=("clm_from_dt", "clm_thru_dt")),
    ]


_SOURCES = None


def store_test_exporter(task: ChunkTask, out_dir: Path) -> list[ChunkFile]:
    global _SOURCES
    from fhirhose.server.worker import export_from_store

    data = _data_dir(task)
    with open(data / "exports.log", "a") as log:
        log.write(f"{task.job_id} {task.seq}\n")
    if _SOURCES is None:
        _SOURCES = store_sources()
    files = export_from_store(task, out_dir, _SOURCES)
    if _held(data, task.seq):
        (out_dir / "Patient.partial").write_bytes(b'{"resourceType":')
        while _held(data, task.seq):
            time.sleep(0.02)
    return files


def build_store(path: Path) -> None:
    """A real store: beneficiaries, an ACO roster of this performance year delivered
    yesterday, Part D enrollment in 2024 (every month), carrier claims of 2024 with versions."""
    from fhirhose.store import Store

    c = column_for
    mbis, orgs = [], []
    for org, kind, n in STORE_ORGS:
        for _ in range(n):
            mbis.append(f"{len(mbis) + 1}EG4TE5MK{len(mbis):02d}")
            orgs.append((org, kind))
    n = len(mbis)
    # Part B entitlement only: one Coverage per beneficiary.
    bene = complete("bene", {"bene_mbi_id": c("str", mbis),
                             "bene_last_name": c("str", [f"Doe{i}" for i in range(n)]),
                             "bene_part_b_enrlmt_bgn_dt": c("date", [dt.date(2015, 1, 1)] * n)}, n)
    aco = [i for i, (_, k) in enumerate(orgs) if k == "aco"]
    pdp = [i for i, (_, k) in enumerate(orgs) if k == "pdp"]
    roster = complete("roster", {
        "org_id": c("str", [orgs[i][0] for i in aco]), "bene_mbi_id": c("str", [mbis[i] for i in aco]),
        "roster_kind": c("cat", ["Y"] * len(aco)), "performance_year": c("int", [today().year] * len(aco)),
        "file_date": c("date", [today() - dt.timedelta(days=1)] * len(aco)),
    }, len(aco))
    enroll = complete("enroll", {
        "bene_row": c("int", pdp), "cntrct_id": c("str", [orgs[i][0] for i in pdp]),
        "year": c("int", [2024] * len(pdp)), "month_mask": c("int", [0xFFF] * len(pdp)),
    }, len(pdp))
    claims = {k: [] for k in ("bene_mbi_id", "cur_clm_uniq_id", "clm_cntl_num", "clm_from_dt", "clm_thru_dt",
                              "clm_efctv_dt", "clm_type_cd")}
    for i, mbi in enumerate(mbis):
        for k in range(CLAIMS):
            claims["bene_mbi_id"].append(mbi)
            claims["cur_clm_uniq_id"].append(f"{i * 10 + k + 1000}")
            # The last claim re-delivers the first one's control number: an older version of it.
            claims["clm_cntl_num"].append(f"cn{i}-{0 if k == CLAIMS - 1 else k}")
            claims["clm_from_dt"].append(dt.date(2024, 1 + 3 * k, 5))
            claims["clm_thru_dt"].append(dt.date(2024, 1 + 3 * k, 6))
            claims["clm_efctv_dt"].append(dt.date(2024, 1 + 3 * k, 10) if k < CLAIMS - 1 else dt.date(2023, 12, 1))
            claims["clm_type_cd"].append("71")
    kinds = {"clm_from_dt": "date", "clm_thru_dt": "date", "clm_efctv_dt": "date", "clm_type_cd": "cat"}
    partb = complete("partb", {k: c(kinds.get(k, "str"), v) for k, v in claims.items()}, len(mbis) * CLAIMS)
    store = Store.create(path)
    store.load({"bene": bene, "roster": roster, "enroll": enroll, "partb": partb}, "test",
               now=dt.datetime(2025, 1, 2, tzinfo=dt.UTC))


def register_store_clients(data: Path) -> dict[str, dict]:
    """One client `client-<org>` per STORE_ORGS organization; the sponsor attested 2024-01-01."""
    return register_clients(data, [(f"client-{org}", org, kind, dt.date(2024, 1, 1)) for org, kind, _ in STORE_ORGS])
