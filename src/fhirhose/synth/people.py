"""The synthetic population: beneficiaries (demographics, entitlement,
coverage, conditions, history window, MBIs) and their beneficiary table.
Drawn once per seed for all beneficiaries; the claim families
(`institutional`, `carrier`, `dme`, `pde`) draw their claims from these arrays."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from ..columns import NO_DATE, AnyColumn, Table, Time, date_to_days
from ..store import schema
from . import vocab as V
from .kit import (
    DAY_MS,
    Txt,
    blank,
    cat,
    choose,
    concat,
    const,
    date,
    digits,
    integer,
    mbi,
    month_of,
    month_start,
    number,
    rng_for,
    take,
    to_str,
    vocab,
    year_of,
)
from .presets import MAPD_SHARE, PDP_SHARE, Preset
from .providers import PER_SPECIALTY

# ---- population ------------------------------------------------------------------


@dataclass
class Pop:
    """Beneficiary-level arrays (all n), drawn once per seed."""

    n: int
    seed: int
    as_of: int
    preset: Preset
    sex: np.ndarray
    dob: np.ndarray
    group: np.ndarray  # 0 aged, 1 disabled, 2 ESRD
    start: np.ndarray
    end: np.ndarray
    death: np.ndarray
    loc: np.ndarray
    ma: np.ndarray  # Part C contract index or -1
    ptd: np.ndarray  # Part D contract index into preset.pdp + preset.ma, or -1
    ptd_prev: np.ndarray
    switch_year: np.ndarray
    pbp: np.ndarray  # plan benefit package index
    frail: np.ndarray
    sud: np.ndarray
    dx: np.ndarray  # (n, 6) chronic diagnosis indices
    ndx: np.ndarray
    pcp: np.ndarray
    hospice: tuple[np.ndarray, np.ndarray]
    mbi: Txt
    prev_mbi: Txt
    mbi_change: np.ndarray  # NO_DATE when the MBI never changed
    hic: Txt
    bene_id: Txt
    _mbis: Txt | None = None

    @property
    def ffs(self) -> np.ndarray:
        return self.ma < 0

    @property
    def years(self) -> np.ndarray:
        return (self.end - self.start + 1) / 365.25

    def contracts(self) -> list[str]:
        return [c.contract_id for c in self.preset.pdp + self.preset.ma]

    def contract_at(self, rows: np.ndarray, days: np.ndarray) -> np.ndarray:
        return np.where(year_of(days) < self.switch_year[rows], self.ptd_prev[rows], self.ptd[rows])

    def mbi_at(self, rows: np.ndarray, days: np.ndarray) -> Txt:
        """The MBI in use on a date: the previous one before a change."""
        if self._mbis is None:
            self._mbis = Txt(np.concatenate([self.mbi.mat, self.prev_mbi.mat]), np.full(2 * self.n, 11, np.int64))
        return take(self._mbis, rows + self.n * (days < self.mbi_change[rows]))


def population(n: int, seed: int, preset: Preset, as_of: dt.date) -> Pop:
    aod = date_to_days(as_of)

    def r(name: str) -> np.random.Generator:
        return rng_for(seed, "bene", name)

    rg = r("status")
    group = choose(rg, (85.0, 14.0, 1.0), n)
    age = np.where(
        group == 0,
        65.2 + np.minimum(rg.gamma(1.6, 6.5, n), 38.0),
        np.where(group == 1, rg.uniform(25, 64.9, n), rg.uniform(40, 80, n)),
    )
    dob = aod - np.floor(age * 365.25).astype(np.int64)
    at65 = month_start(month_of(dob) + 65 * 12)
    entitled = np.where(
        group == 0,
        at65,
        aod - np.floor(rg.uniform(0.2, 1, n) * np.minimum(age - 20, 12) * 365.25).astype(np.int64),
    )
    lo, hi = preset.history_years
    if not 1 <= lo <= hi:
        raise ValueError(f"synth preset: history_years must be 1 <= low <= high, got {preset.history_years}")
    hist_years = rg.integers(lo, hi + 1, n)
    start = np.maximum(aod - np.floor(hist_years * 365.25).astype(np.int64) + 1, entitled)
    window = (aod - start + 1) / 365.25
    hazard = np.where(group == 0, 0.0125 * np.exp(0.085 * (age - 65)), np.where(group == 1, 0.02, 0.15))
    dies = rg.random(n) < 1 - np.exp(-hazard * window)
    death = np.where(dies, start + np.floor(rg.random(n) * (aod - start + 1)).astype(np.int64), NO_DATE)
    end = np.where(dies, death, aod)

    rc = r("coverage")
    ma_all = list(preset.ma)
    is_ma = rc.random(n) < preset.ma_share
    npdp = len(preset.pdp)
    ma = np.where(is_ma, choose(rc, [c.weight for c in ma_all], n), -1)
    has_pdp = ~is_ma & (rc.random(n) < PDP_SHARE)
    mapd = is_ma & (rc.random(n) < MAPD_SHARE)
    pdp = choose(rc, [c.weight for c in preset.pdp], n)
    ptd = np.where(mapd, npdp + ma, np.where(has_pdp, pdp, -1))
    # Some PDP enrollees changed plans at a January within their history.
    y0, y1 = year_of(start), year_of(end)
    switch = has_pdp & (npdp > 1) & (y1 > y0) & (rc.random(n) < 0.12)
    switch_year = np.where(switch, y0 + 1 + (rc.random(n) * (y1 - y0)).astype(np.int64), 0)
    ptd_prev = np.where(switch, (pdp + 1 + (rc.random(n) * (npdp - 1)).astype(np.int64)) % max(npdp, 1), ptd)

    rf = r("frailty")
    frail = rf.gamma(2.0, 0.5, n) * np.where(dies, 1.8, 1.0)
    years = (end - start + 1) / 365.25
    frail /= (frail * years).sum() / years.sum()  # exposure-weighted mean 1: rates hit their targets

    rd = r("conditions")
    sud = rd.random(n) < np.where(group == 1, 0.08, 0.025)
    chronic_w = np.array(V.DX_CHRONIC_W)
    ndx = 1 + rd.binomial(5, 0.5, n)
    keys = np.log(np.where(chronic_w > 0, chronic_w, 1e-300))[None, :] + rd.gumbel(size=(n, len(chronic_w)))
    dxm = np.argsort(-keys, axis=1)[:, :6]
    sud_dx = np.array(V.SUD_CODES)[choose(rd, (50, 30, 5, 6, 4, 5, 0, 0), n)]
    dxm[np.arange(n), ndx - 1] = np.where(sud, sud_dx, dxm[np.arange(n), ndx - 1])

    rh = r("hospice")
    los = np.minimum(np.exp(rh.normal(np.log(18), 1.8, n)), 720).astype(np.int64) + 1
    enters = (dies & (rh.random(n) < 0.5)) | (~dies & (rh.random(n) < 0.003 * window))
    live_end = start + np.floor(rh.random(n) * (aod - start + 1)).astype(np.int64)
    h_end = np.where(dies, death, live_end)
    h_start = np.maximum(start, h_end - los)
    hospice = (np.where(enters, h_start, NO_DATE), np.where(enters, h_end, NO_DATE))

    rm = r("mbi")
    rows = np.arange(n)
    changed = (rm.random(n) < 0.03) & (end - start > 90)
    change = np.where(changed, start + 30 + np.floor(rm.random(n) * (end - start - 60)).astype(np.int64), NO_DATE)
    hic_suffix = vocab(["A", "B", "D", "C1"])
    hic = concat("9", digits(rm.integers(0, 100_000_000, n), 8), take(hic_suffix, choose(rm, (80, 12, 7, 1), n)))

    pcp_spec = np.array(V.sp("01", "08", "11", "50", "97"))[choose(r("pcp"), (30, 35, 25, 6, 4), n)]
    pcp = pcp_spec * PER_SPECIALTY + (r("pcp_i").random(n) * PER_SPECIALTY).astype(np.int64)
    return Pop(
        n=n,
        seed=seed,
        as_of=aod,
        preset=preset,
        sex=np.where(rg.random(n) < 0.55, 2, 1),
        dob=dob,
        group=group,
        start=start,
        end=end,
        death=death,
        loc=choose(r("place"), [loc[6] for loc in V.LOCATIONS], n),
        ma=ma,
        ptd=ptd,
        ptd_prev=ptd_prev,
        switch_year=switch_year,
        pbp=(rc.random(n) * 3).astype(np.int64),
        frail=frail,
        sud=sud,
        dx=dxm,
        ndx=ndx,
        pcp=pcp,
        hospice=hospice,
        mbi=mbi(rows, seed),
        prev_mbi=mbi(rows + (1 << 40), seed),
        mbi_change=change,
        hic=hic,
        # Patient ids: negative numbers, as BFD gives synthetic beneficiaries.
        bene_id=concat("-", digits(10**13 + rows + 1, 14)),
    )


LOC_TXT = {
    name: vocab([str(loc[i]) for loc in V.LOCATIONS]) for name, i in (("usps", 0), ("city", 4), ("zip3", 5))
}
_FIRST_F, _FIRST_M, _LAST, _MIDDLE = vocab(V.FIRST_F), vocab(V.FIRST_M), vocab(V.LAST), vocab(V.MIDDLE)
_STREETS, _LINE2 = vocab(V.STREETS), vocab(V.LINE2)
STATE_FIPS = tuple(sorted({loc[1] for loc in V.LOCATIONS}))
_CNTY_FIPS = tuple(sorted({loc[2] for loc in V.LOCATIONS}))
USPS = tuple(sorted({loc[0] for loc in V.LOCATIONS}))
LOC_STATE = np.array([STATE_FIPS.index(loc[1]) for loc in V.LOCATIONS])
_LOC_CNTY = np.array([_CNTY_FIPS.index(loc[2]) for loc in V.LOCATIONS])
LOC_USPS = np.array([USPS.index(loc[0]) for loc in V.LOCATIONS])
PBP_TXT = vocab(("001", "002", "003"))


def bene_table(pop: Pop, links: dict[str, np.ndarray]) -> Table:
    n, r = pop.n, (lambda name: rng_for(pop.seed, "bene_cols", name))
    rn = r("names")
    female = pop.sex == 2
    f_idx = (rn.random(n) * len(_FIRST_F)).astype(np.int64)
    m_idx = (rn.random(n) * len(_FIRST_M)).astype(np.int64)
    w = max(_FIRST_F.mat.shape[1], _FIRST_M.mat.shape[1])
    fm = np.zeros((n, w), np.uint8)
    fm[female, : _FIRST_F.mat.shape[1]] = _FIRST_F.mat[f_idx[female]]
    fm[~female, : _FIRST_M.mat.shape[1]] = _FIRST_M.mat[m_idx[~female]]
    first = Txt(fm, np.where(female, _FIRST_F.lens[f_idx], _FIRST_M.lens[m_idx]))
    last = take(_LAST, (rn.random(n) ** 1.3 * len(_LAST)).astype(np.int64))
    middle = take(_MIDDLE, (rn.random(n) * len(_MIDDLE)).astype(np.int64))

    ra = r("address")
    street_no = number(ra.integers(1, 9_999, n), 4)
    line1 = concat(street_no, " ", take(_STREETS, (ra.random(n) * len(_STREETS)).astype(np.int64)))
    line2 = blank(
        concat(take(_LINE2, (ra.random(n) * len(_LINE2)).astype(np.int64)), " ", number(ra.integers(1, 450, n), 3)),
        ra.random(n) > 0.3,
    )
    zip5 = concat(take(LOC_TXT["zip3"], pop.loc), digits(ra.integers(0, 100, n), 2))

    rs = r("status")
    aged, disabled, esrd = pop.group == 0, pop.group == 1, pop.group == 2
    age_end = ((pop.end - pop.dob) / 365.25).astype(np.int64)
    old = age_end >= 65
    stus = np.where(aged, 0, np.where(disabled, 2, np.where(old, 1, np.where(rs.random(n) < 0.5, 3, 4))))
    was_disabled = aged & (rs.random(n) < 0.2)
    orig = np.where(aged, np.where(was_disabled, 1, 0), np.where(disabled, 1, np.where(rs.random(n) < 0.8, 2, 3)))
    crec = np.where(aged, 0, np.where(disabled, 1, 2))
    dual_p = np.where(disabled, 0.4, 0.15)
    dual = np.where(rs.random(n) < dual_p, 1 + choose(rs, V.DUAL_W[1:], n), 0)
    full_dual = np.isin(np.array(V.DUAL)[dual], list(V.DUAL_FULL))
    buyin = np.where(dual == 0, 3, np.where(full_dual, 6, 5))
    at65 = month_start(month_of(pop.dob) + 65 * 12)
    part_a = np.where(aged & ~was_disabled, at65, pop.start - rs.integers(0, 2000, n))
    part_a = np.minimum(part_a, pop.start)
    part_b = np.where(rs.random(n) < 0.9, part_a, month_start(month_of(part_a) + rs.integers(1, 36, n)))
    part_b = np.minimum(part_b, pop.start)

    contracts = pop.contracts()
    ptd_txt = vocab(contracts)
    has_c, has_d = pop.ma >= 0, pop.ptd >= 0
    npdp = len(pop.preset.pdp)
    ptc = blank(take(ptd_txt, np.where(has_c, npdp + pop.ma, 0)), ~has_c)
    ptd = blank(take(ptd_txt, np.maximum(pop.ptd, 0)), ~has_d)
    pbp_d = take(PBP_TXT, pop.pbp)

    dead = pop.death != NO_DATE
    ru = r("updated")
    upd_day = pop.start + np.floor(ru.random(n) * (pop.as_of - pop.start + 1)).astype(np.int64)
    upd_day = np.where(pop.mbi_change != NO_DATE, np.maximum(upd_day, pop.mbi_change), upd_day)
    updated = upd_day * DAY_MS + ru.integers(3_600_000, 20 * 3_600_000, n)

    cols: dict[str, AnyColumn] = {
        "bene_id": to_str(pop.bene_id),
        "bene_mbi_id": to_str(pop.mbi),
        "bene_hic_num": to_str(pop.hic),
        "bene_fips_state_cd": cat(STATE_FIPS, LOC_STATE[pop.loc]),
        "bene_fips_cnty_cd": cat(_CNTY_FIPS, _LOC_CNTY[pop.loc]),
        "bene_zip_cd": to_str(zip5),
        "bene_dob": date(pop.dob),
        "bene_sex_cd": cat(V.SEX, pop.sex),
        "bene_race_cd": cat(V.RACE, choose(r("race"), V.RACE_W, n)),
        "bene_age": integer(age_end),
        "bene_mdcr_stus_cd": cat(V.MDCR_STUS, stus),
        "bene_dual_stus_cd": cat(V.DUAL, dual),
        "bene_death_dt": date(pop.death),
        "bene_rng_bgn_dt": date(pop.hospice[0]),
        "bene_rng_end_dt": date(pop.hospice[1]),
        "bene_1st_name": to_str(first),
        "bene_midl_name": to_str(middle),
        "bene_last_name": to_str(last),
        "bene_orgnl_entlmt_rsn_cd": cat(V.ENTLMT_RSN, orig),
        "bene_entlmt_buyin_ind": cat(V.BUYIN, buyin),
        "bene_part_a_enrlmt_bgn_dt": date(part_a),
        "bene_part_b_enrlmt_bgn_dt": date(part_b),
        "bene_line_1_adr": to_str(line1),
        "bene_line_2_adr": to_str(line2),
        "geo_zip_plc_name": to_str(take(LOC_TXT["city"], pop.loc)),
        "geo_usps_state_cd": cat(USPS, LOC_USPS[pop.loc]),
        "geo_zip5_cd": to_str(zip5),
        "geo_zip4_cd": to_str(digits(ra.integers(1, 10_000, n), 4)),
        "ptc_cntrct_id": to_str(ptc),
        "ptc_pbp_id": to_str(blank(pbp_d, ~has_c)),
        "ptd_cntrct_id": to_str(ptd),
        "ptd_pbp_id": to_str(blank(pbp_d, ~has_d)),
        "bene_crec_cd": cat(V.ENTLMT_RSN, crec),
        "bene_esrd_ind": cat(V.ESRD, esrd.astype(np.int64)),
        "last_updated": Time(updated),
        # CCW (RIF) beneficiary fields: entitlement ends at death; Part D from the history start.
        "bene_pta_trmntn_cd": cat(("0", "1"), dead.astype(np.int64)),
        "bene_ptb_trmntn_cd": cat(("0", "1"), dead.astype(np.int64)),
        "pta_cvrg_end_dt": date(pop.death),
        "ptb_cvrg_end_dt": date(pop.death),
        "ptd_cvrg_strt_dt": date(pop.start, ~has_d),
        "ptd_cvrg_end_dt": date(pop.death, ~has_d),
        "ptd_sgmt_id": to_str(blank(const("000", n), ~has_d)),
        "rfrnc_yr": integer(year_of(pop.end)),
        "mbi_efctv_bgn_dt": date(np.where(pop.mbi_change != NO_DATE, pop.mbi_change,
                                          np.maximum(part_a, date_to_days(dt.date(2018, 4, 1)) + rs.integers(0, 630, n)))),
    }
    return schema.complete("bene", cols, n, links)
