"""The organizations a synthetic dataset serves and their tables: ACOs with
attribution rosters (BCDA), Part D sponsor contracts with monthly enrollment
(AB2D), and 1-800-MEDICARE data-sharing preferences (opt-outs)."""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import msgspec
import numpy as np

from ..columns import EPOCH, Table, date_to_days
from ..errors import InputError
from ..store import schema
from .kit import (
    cat,
    choose,
    concat,
    date,
    digits,
    integer,
    jan1_of,
    month_of,
    ragged,
    rng_for,
    take,
    to_str,
    vocab,
    year_of,
    ymd,
)
from .people import Pop


class SynthOrg(msgspec.Struct, frozen=True, kw_only=True):
    """An organization the synthetic data serves: an ACO (kind "aco") or a
    Part D sponsor contract (kind "pdp")."""

    org_id: str
    kind: str
    name: str
    program: str
    contract_ids: tuple[str, ...]
    attestation_date: dt.date | None = None
    roster_size: int = 0





def _assign(pop: Pop) -> tuple[np.ndarray, np.ndarray]:
    """ACO of each beneficiary (-1 none) in the current performance year and
    the prior one: attributed beneficiaries are FFS and alive on January 1;
    about 85 % of a prior-year roster stays with its ACO."""
    rng = rng_for(pop.seed, "orgs", "assign")
    py = int(year_of(np.array([pop.as_of]))[0])
    acos = pop.preset.acos
    y_org, r_org = np.full(pop.n, -1), np.full(pop.n, -1)
    perm = rng.permutation(pop.n)
    for k, (year, out) in enumerate(((py, y_org), (py - 1, r_org))):
        jan1 = int(jan1_of(np.array([year]))[0])
        elig = pop.ffs & (pop.start <= jan1) & (pop.end >= jan1)
        sizes = [int(round(a.size * elig.sum())) if a.size < 1 else int(a.size) for a in acos]
        if k == 0 and sum(sizes) > elig.sum():
            raise InputError(
                f"the ACOs need {sum(sizes)} attributable beneficiaries, "
                f"but {pop.n} beneficiaries give {int(elig.sum())}"
            )
        if k == 1:
            stay = elig & (y_org >= 0) & (rng.random(pop.n) < 0.85)
            out[stay] = y_org[stay]
            sizes = [int(round(s * rng.uniform(0.92, 1.02))) for s in sizes]
        free = perm[elig[perm] & (out[perm] < 0) & (y_org[perm] < 0)]
        at = 0
        for i, size in enumerate(sizes):  # per ACO
            need = max(0, min(size - int((out == i).sum()), len(free) - at))
            out[free[at : at + need]] = i
            at += need
    return y_org, r_org


def _org_tables(pop: Pop) -> tuple[dict[str, Table], list[SynthOrg]]:
    rng = rng_for(pop.seed, "orgs", "tables")
    py = int(year_of(np.array([pop.as_of]))[0])
    y_org, r_org = _assign(pop)
    acos = pop.preset.acos
    file_dates = {0: date_to_days(dt.date(py, 1, 15)), 1: date_to_days(dt.date(py, 4, 15))}
    parts = []
    for kind, org_of in ((0, y_org), (1, r_org)):
        for i in range(len(acos)):  # per ACO
            rows = np.nonzero(org_of == i)[0]
            parts.append((np.full(len(rows), i), rows, kind))
    org_i = np.concatenate([p[0] for p in parts])
    rrows = np.concatenate([p[1] for p in parts])
    kinds = np.concatenate([np.full(len(p[1]), p[2]) for p in parts])
    fdate = np.where(kinds == 0, file_dates[0], file_dates[1])
    roster = schema.complete("roster", {
        "org_id": to_str(take(vocab([a.org_id for a in acos] or [""]), org_i)),
        "bene_mbi_id": to_str(pop.mbi_at(rrows, fdate)),
        "bene_row": integer(rrows),
        "roster_kind": cat(("Y", "R"), kinds),
        "performance_year": integer(py - kinds),
        "file_date": date(fdate),
    }, len(rrows))

    # Data-sharing preferences: a few percent opt out; some change their mind.
    n = pop.n
    who = np.nonzero(rng.random(n) < 0.05)[0]
    pattern = choose(rng, (60, 25, 15), len(who))  # N; Y; N then Y
    nrec = np.where(pattern == 2, 2, 1)
    _, g, j = ragged(nrec)
    prow = who[g]
    pref = np.where(pattern[g] == 0, 1, np.where(pattern[g] == 1, 0, np.where(j == 0, 1, 0)))
    span = pop.as_of - pop.start[prow]
    eff = pop.start[prow] + (span * (rng.random(len(prow)) * 0.5 + 0.5 * j)).astype(np.int64)
    eff = eff - (eff - pop.as_of) % 7  # weekly preference files
    y, mo, d = ymd(eff)
    fname = concat("P#EFT.ON.ACO.NGD1800.DPRF.D", digits((y % 100) * 10_000 + mo * 100 + d, 6), ".T0100000")
    optout = schema.complete("optout", {
        "bene_mbi_id": to_str(pop.mbi_at(prow, eff)),
        "bene_row": integer(prow),
        "pref_ind": cat(("Y", "N"), pref),
        "effective_dt": date(eff),
        "source_file": to_str(fname),
    }, len(prow))

    # Part D enrollment: one row per beneficiary, contract and year.
    dbene = np.nonzero(pop.ptd >= 0)[0]
    y0, y1 = year_of(pop.start[dbene]), year_of(pop.end[dbene])
    _, g, j = ragged(y1 - y0 + 1)
    erow, year = dbene[g], y0[g] + j
    m0 = np.where(year == y0[g], month_of(pop.start[erow]) % 12 + 1, 1)
    m1 = np.where(year == y1[g], month_of(pop.end[erow]) % 12 + 1, 12)
    mask = ((1 << m1) - 1) ^ ((1 << (m0 - 1)) - 1)
    contract = np.where(year < pop.switch_year[erow], pop.ptd_prev[erow], pop.ptd[erow])
    enroll = schema.complete("enroll", {
        "bene_row": integer(erow),
        "cntrct_id": to_str(take(vocab(pop.contracts()), contract)),
        "year": integer(year),
        "month_mask": integer(mask),
    }, len(erow))

    attest = date_to_days(dt.date(py - 1, 1, 1)) + rng.integers(0, 300, len(pop.contracts()))
    orgs = [
        SynthOrg(org_id=a.org_id, kind="aco", name=a.name, program=a.program, contract_ids=(a.org_id,),
                 roster_size=int((y_org == i).sum()))
        for i, a in enumerate(acos)
    ]
    for ci, c in enumerate(pop.preset.pdp + pop.preset.ma):
        if c.org:
            members = np.unique(erow[(contract == ci) & (year == py)])
            orgs.append(SynthOrg(org_id=c.contract_id, kind="pdp", name=c.name, program="Part D",
                                 contract_ids=(c.contract_id,),
                                 attestation_date=EPOCH + dt.timedelta(days=int(attest[ci])),
                                 roster_size=len(members)))
    return {"roster": roster, "optout": optout, "enroll": enroll}, orgs



def write_orgs(path, orgs: Sequence[SynthOrg]) -> None:
    """`orgs.json`: the organizations as a JSON array."""
    with open(path, "wb") as f:
        f.write(msgspec.json.format(msgspec.json.encode(list(orgs)), indent=2))


