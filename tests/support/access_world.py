"""A small, fixed world for the access tests: a claims store, organizations and a clock.

Ten beneficiaries (rows 0-9), each with the same nine carrier claims (serviced
on CARRIER_DATES, loaded ten days later) and two Part D events (PDE_DATES);
bene 2's 2024-03-01 carrier claim is a substance-use-disorder claim. Claim ids
are "<bene>-<yyyymmdd>" so expected sets read like the rules.

Rosters, opt-outs and enrollment are described next to the tables below.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from fhirhose.access import AccessConfig, AccessDB, Actor
from fhirhose.fhir.source import Source
from fhirhose.store import schema
from fhirhose.template import K, Template, Val

UTC = dt.UTC
NOW = dt.datetime(2024, 6, 15, 12, tzinfo=UTC).timestamp()
DAY = 86400.0
N_BENES = 10
CARRIER_DATES = [
    "2013-05-01", "2020-02-01", "2021-06-01", "2022-01-10", "2023-03-15",
    "2023-12-20", "2024-01-05", "2024-03-01", "2024-05-20",
]
PDE_DATES = ["2023-06-01", "2024-04-10"]
SUD_CLAIM = "2-20240301"
BENE_UPDATED = dt.datetime(2024, 1, 1, tzinfo=UTC)

# roster: (org, kind Y/R, performance year, file date, bene rows)
ROSTERS = [
    ("A0001", "Y", 2024, "2024-02-01", [0, 1, 2]),  # older current-year roster
    ("A0001", "Y", 2024, "2024-05-01", [0, 1, 2, 3, 4]),  # latest: 3 and 4 are new
    ("A0001", "R", 2023, "2024-04-01", [5, 6]),  # runout of 2023
    ("D0001", "Y", 2024, "2024-06-01", [2, 3, 7]),  # REACH
    ("C0001", "Y", 2024, "2024-03-01", [1, 2]),  # KCC: stale (106 days at NOW)
    ("P0001", "Y", 0, "2024-05-01", [8, 9]),  # practice roster entries
    ("P0001", "Y", 0, "2024-01-01", [7]),  # expired (older than 90 days)
]
# optout: (bene, pref Y/N, effective date) — latest in effect wins
OPTOUTS = [
    (3, "Y", "2023-01-01"), (3, "N", "2024-01-01"),  # 3 opted out
    (4, "N", "2023-01-01"), (4, "Y", "2024-02-01"),  # 4 opted back in
    (1, "N", "2024-07-01"),  # not in effect yet
]
# enroll: (bene, contract, year, months enrolled)
ENROLL = [
    (5, "S1234", 2023, range(1, 13)),
    (5, "S1234", 2024, range(1, 7)),
    (6, "S1234", 2024, [3]),
    (9, "S5678", 2024, range(1, 13)),
    (0, "S9999", 2024, range(1, 13)),  # another sponsor's contract
]


def _d(iso: str) -> dt.date:
    return dt.date.fromisoformat(iso)


def claim_id(bene: int, iso: str) -> str:
    return f"{bene}-{iso.replace('-', '')}"


def carrier(benes, pred=lambda d: True) -> set[str]:
    """Ids of the carrier claims of `benes` serviced on dates `pred` accepts (never the SUD claim)."""
    return {claim_id(b, d) for b in benes for d in CARRIER_DATES if pred(d)} - {SUD_CLAIM}


def pde(benes, pred=lambda d: True) -> set[str]:
    """Ids of the Part D events of `benes` on dates `pred` accepts."""
    return {claim_id(b, d) for b in benes for d in PDE_DATES if pred(d)}


def build_store() -> dict:
    c = schema.column_for
    mbis = [f"{i}EG4TE5MK7{i}" for i in range(N_BENES)]
    carrier = [(b, d) for b in range(N_BENES) for d in CARRIER_DATES]
    pde = [(b, d) for b in range(N_BENES) for d in PDE_DATES]
    loaded = lambda iso: dt.datetime.combine(_d(iso) + dt.timedelta(days=10), dt.time(), UTC)  # noqa: E731
    bene = schema.complete(
        "bene",
        {
            "bene_id": c("str", [f"-{i}" for i in range(N_BENES)]),
            "bene_mbi_id": c("str", mbis),
            "last_updated": c("time", [BENE_UPDATED] * N_BENES),
        },
        N_BENES,
        links={
            "partb": np.arange(N_BENES + 1, dtype=np.int64) * len(CARRIER_DATES),
            "pde": np.arange(N_BENES + 1, dtype=np.int64) * len(PDE_DATES),
        },
    )
    partb = schema.complete(
        "partb",
        {
            "clm_id": c("str", [claim_id(b, d) for b, d in carrier]),
            "bene_id": c("str", [f"-{b}" for b, _ in carrier]),
            "last_updated": c("time", [loaded(d) for _, d in carrier]),
            "clm_from_dt": c("date", [d for _, d in carrier]),
            # One claim spans a month boundary (thru matters for the lookback).
            "clm_thru_dt": c("date", [d if d != "2023-12-20" else "2024-01-02" for _, d in carrier]),
            "final_action": c("cat", ["F"] * len(carrier)),
            "sud_ind": c("cat", ["Y" if claim_id(b, d) == SUD_CLAIM else "" for b, d in carrier]),
        },
        len(carrier),
    )
    pdet = schema.complete(
        "pde",
        {
            "clm_id": c("str", [claim_id(b, d) for b, d in pde]),
            "bene_id": c("str", [f"-{b}" for b, _ in pde]),
            "last_updated": c("time", [loaded(d) for _, d in pde]),
            "clm_line_from_dt": c("date", [d for _, d in pde]),
            "final_action": c("cat", ["F"] * len(pde)),
            "sud_ind": c("cat", [""] * len(pde)),
        },
        len(pde),
    )
    rrows = [(org, kind, py, fd, b) for org, kind, py, fd, benes in ROSTERS for b in benes]
    roster = schema.complete(
        "roster",
        {
            "org_id": c("str", [r[0] for r in rrows]),
            "bene_mbi_id": c("str", [mbis[r[4]] for r in rrows]),
            # Half the rows carry only the MBI: the rules must map those too.
            "bene_row": c("int", [r[4] if i % 2 else None for i, r in enumerate(rrows)]),
            "roster_kind": c("cat", [r[1] for r in rrows]),
            "performance_year": c("int", [r[2] for r in rrows]),
            "file_date": c("date", [r[3] for r in rrows]),
        },
        len(rrows),
    )
    optout = schema.complete(
        "optout",
        {
            "bene_mbi_id": c("str", [mbis[b] for b, _, _ in OPTOUTS]),
            "bene_row": c("int", [b for b, _, _ in OPTOUTS]),
            "pref_ind": c("cat", [p for _, p, _ in OPTOUTS]),
            "effective_dt": c("date", [e for _, _, e in OPTOUTS]),
        },
        len(OPTOUTS),
    )
    enroll = schema.complete(
        "enroll",
        {
            "bene_row": c("int", [b for b, _, _, _ in ENROLL]),
            "cntrct_id": c("str", [k for _, k, _, _ in ENROLL]),
            "year": c("int", [y for _, _, y, _ in ENROLL]),
            "month_mask": c("int", [sum(1 << (m - 1) for m in ms) for _, _, _, ms in ENROLL]),
        },
        len(ENROLL),
    )
    tables = {"bene": bene, "partb": partb, "pde": pdet, "roster": roster, "optout": optout, "enroll": enroll}
    for name in schema.TABLES:
        tables.setdefault(name, schema.complete(name, {}, 0))
    return tables


def sources() -> list[Source]:
    """One template per resource family; ids make every written row identifiable."""
    return [
        Source("Patient", Template("pat", "bene", K("resourceType", "Patient"), Val("id", "bene_id")), "bene"),
        Source(
            "Coverage",
            Template("cov", "bene", K("resourceType", "Coverage"), Val("id", "bene_id", prefix="part-a")),
            "bene",
        ),
        Source(
            "ExplanationOfBenefit",
            Template("carrier", "partb", K("resourceType", "ExplanationOfBenefit"), Val("id", "clm_id")),
            "partb",
            service_dates=("clm_from_dt", "clm_thru_dt"),
        ),
        Source(
            "ExplanationOfBenefit",
            Template("pde", "pde", K("resourceType", "ExplanationOfBenefit"), Val("id", "clm_id")),
            "pde",
            service_dates=("clm_line_from_dt", "clm_line_from_dt"),
        ),
    ]


def make_db(path, **config) -> AccessDB:
    """An access DB with the world's organizations (scrypt cost lowered for test speed)."""
    cfg = AccessConfig(scrypt_n=2**12, **config)
    db = AccessDB(path, cfg)
    op = Actor.system()
    t0 = NOW - 200 * DAY
    for org_id, kind, name in (
        ("A0001", "ssp", "Shared Savings ACO"),
        ("D0001", "reach", "REACH ACO"),
        ("C0001", "kcc", "Kidney ACO"),
        ("Z0001", "sponsor", "Part D Sponsor"),
        ("Z0002", "sponsor", "Other Sponsor"),
        ("P0001", "provider", "Practice"),
    ):
        db.orgs.create(op, org_id, kind, name, now=t0)
    db.orgs.add_contract(op, "Z0001", "S1234", now=t0)
    db.orgs.add_contract(op, "Z0001", "S5678", now=t0)
    db.orgs.add_contract(op, "Z0002", "S9999", now=t0)
    return db


def add_user(db, org_id: str, role: str, title: str = "", now: float = NOW - 150 * DAY):
    user, key = db.orgs.add_user(Actor.system(), org_id, f"{role} of {org_id}", f"{role}@{org_id}.example", role, title, now=now)
    return Actor.user(user.id), key


# -- the world behind a running server ------------------------------------------------------

_EXPORTER = None


def world_exporter(task, out_dir):
    """The server's `ChunkExporter` over this world (run in its worker processes): the real
    Exporter and the job's scope, as `store_exporter` does over a store. Held while the
    file `DATA/hold` exists (restart tests)."""
    import time
    from pathlib import Path

    from fhirhose.export.exporter import Exporter
    from fhirhose.server.worker import export_scoped

    global _EXPORTER
    if _EXPORTER is None:
        _EXPORTER = Exporter(build_store(), sources())
    data = Path(task.job_dir).parent.parent
    with open(data / "exports.log", "a") as log:
        log.write(f"{task.job_id} {task.seq}\n")
    while (data / "hold").exists():
        time.sleep(0.02)
    return export_scoped(task, out_dir, _EXPORTER)
