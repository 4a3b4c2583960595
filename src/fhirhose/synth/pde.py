"""Part D prescription drug events (CCLF7): maintenance regimens with refills
(30- or 90-day, retail or mail order) and acute fills."""

from __future__ import annotations

import numpy as np

from . import vocab as V
from .claims import (
    RATES,
    _claim_cols,
    _const_cat,
    _events,
    _first_load,
    _pick_txt,
    _scaled,
    _versions,
    _zero_money,
)
from .kit import (
    cat,
    choose,
    date,
    digits,
    hashed_uniform,
    integer,
    money,
    number,
    qty,
    rng_for,
    take,
    to_str,
    vocab,
)
from .people import PBP_TXT, Pop
from .providers import NATIONAL, Providers

_DRUG_TXT = vocab([d[0] for d in V.DRUGS])
_DRUG_COST = np.array([d[2] for d in V.DRUGS])
_DRUG_PER_DAY = np.array([d[3] for d in V.DRUGS])
_DRUG_BRAND = np.array([d[4] for d in V.DRUGS])
_DRUG_SUD = np.array([d[5] for d in V.DRUGS])
_DRUG_W = np.array([d[6] for d in V.DRUGS])
_SLOTS = 8


def _regimens(pop: Pop, rows: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per beneficiary: up to 8 distinct maintenance drugs (Gumbel top-k over
    use weights), how many are taken, and which are filled for 90 days."""
    rr = rng_for(pop.seed, "pde_regimen", chunk)
    nr = len(rows)
    keys = np.log(np.where(_DRUG_W > 0, _DRUG_W, 1e-300))[None, :] + rr.gumbel(size=(nr, len(_DRUG_W)))
    regimen = np.argsort(-keys, axis=1)[:, :_SLOTS]
    sud_drug = np.array(V.DRUG_SUD)[(rr.random(nr) * len(V.DRUG_SUD)).astype(np.int64)]
    regimen[:, 0] = np.where(pop.sud[rows] & (rr.random(nr) < 0.5), sud_drug, regimen[:, 0])
    return regimen, 1 + rr.binomial(_SLOTS - 1, 0.35, nr), rr.random((nr, _SLOTS)) < 0.3


def pde(pop: Pop, prov: Providers, rows: np.ndarray, chunk: int):
    rng = rng_for(pop.seed, "pde", chunk)
    bene, day = _events(rng, pop, rows, RATES["pde"] / pop.preset.partd_share, pop.ptd >= 0)
    m = len(bene)
    regimen, nslots, ninety = _regimens(pop, rows, chunk)
    local = bene - rows[0]
    acute = rng.random(m) < 0.1
    slot = np.where(acute, _SLOTS, (rng.random(m) * nslots[local]).astype(np.int64))
    maint = np.minimum(slot, _SLOTS - 1)
    drug = np.where(acute, np.array(V.DRUG_ACUTE)[(rng.random(m) * len(V.DRUG_ACUTE)).astype(np.int64)],
                    regimen[local, maint])
    supply = np.where(acute, np.array([5, 7, 10, 14])[rng.integers(0, 4, m)],
                      np.where(ninety[local, maint], 90, 30))
    load0 = _first_load(rng, day, pop.as_of, 10.0)
    keep = load0 <= pop.as_of
    bene, day, local, acute, slot, drug, supply, load0 = (
        a[keep] for a in (bene, day, local, acute, slot, drug, supply, load0)
    )
    m = len(bene)
    units = np.rint(supply * _DRUG_PER_DAY[drug] * 100) / 100
    cost = np.rint(_DRUG_COST[drug] * supply / 30 * rng.lognormal(0, 0.05, m)).astype(np.int64)
    copay = np.where(_DRUG_BRAND[drug], cost // 4, np.minimum(cost, rng.integers(0, 11, m) * 100))
    dispensing = np.where(rng.random(m) < 0.02, (rng.random(m) * 2).astype(np.int64), -1)  # part of the natural key

    # Refills of one prescription share its number and count up in date order.
    key = np.where(acute, -1 - np.arange(m), local * (_SLOTS + 1) + slot)
    order = np.lexsort((np.arange(m), key))
    ks = key[order]
    starts = np.r_[True, ks[1:] != ks[:-1]]
    run_start = np.maximum.accumulate(np.where(starts, np.arange(m), 0))
    fill = np.empty(m, np.int64)
    fill[order] = np.arange(m) - run_start
    rx = np.where(acute, 2 * 10**11 + chunk * 10**7 + np.arange(m), 10**11 + bene * (_SLOTS + 1) + slot)

    loc = pop.loc[bene]
    mail = ~acute & (supply == 90) & (rng.random(m) < 0.5)
    pharmacy = np.where(mail, (rng.random(m) * NATIONAL["mail"]).astype(np.int64),
                        prov.local("pharmacy", loc, hashed_uniform(bene, 11)))
    ph_npi = _pick_txt([prov.facility["pharmacy"], prov.facility["mail"]], mail.astype(np.int64), pharmacy)
    ph_type = np.where(mail, 2, np.where(rng.random(m) < 0.03, 1, 0))
    spec = np.array(V.sp("01", "08", "11", "06", "93", "26"))[choose(rng, (2, 2, 2, 2, 1, 1), m)]
    prescriber = np.where(~acute & (rng.random(m) < 0.7), pop.pcp[bene], prov.by_specialty(rng, spec))
    contracts = vocab(pop.contracts())

    v = _versions(rng, load0, pop.as_of)
    b = v.base
    vb = bene[b]
    nv = len(b)
    head = _claim_cols(pop, "pde", chunk, vb, day[b], v, _DRUG_SUD[drug[b]])
    head.update(
        clm_line_ndc_cd=to_str(take(_DRUG_TXT, drug[b])),
        clm_type_cd=_const_cat(("01",), nv),
        clm_line_from_dt=date(day[b]),
        prvdr_srvc_id_qlfyr_cd=_const_cat(("01",), nv),
        clm_srvc_prvdr_gnrc_id_num=to_str(take(ph_npi, b)),
        clm_dspnsng_stus_cd=cat(V.DISPENSING, np.maximum(dispensing[b], 0), dispensing[b] < 0),
        clm_daw_prod_slctn_cd=cat(V.DAW, choose(rng, V.DAW_W, nv)),
        clm_line_srvc_unit_qty=qty(units[b]),
        clm_line_days_suply_qty=qty(supply[b]),
        prvdr_prsbng_id_qlfyr_cd=_const_cat(("01",), nv),
        clm_prsbng_prvdr_gnrc_id_num=to_str(take(prov.individual, prescriber[b])),
        clm_line_bene_pmt_amt=money(_scaled(copay[b], v.factor)),
        clm_line_rx_srvc_rfrnc_num=to_str(digits(rx[b], 12)),
        clm_line_rx_fill_num=to_str(number(fill[b], 3)),
        clm_phrmcy_srvc_type_cd=cat(V.PHARMACY_TYPE, ph_type[b]),
        # CCW (RIF) PDE fields
        fill_num=integer(fill[b]),
        plan_pbp_rec_num=to_str(take(PBP_TXT, pop.pbp[vb])),
        pd_dt=date(np.minimum(day + rng.integers(1, 15, m), load0)[b]),
        cmpnd_cd=_const_cat(("1", "2"), nv),
        drug_cvrg_stus_cd=_const_cat(("C", "E", "O"), nv),
        adjstmt_dltn_cd=cat(("A", "D"), (v.kind == 1).astype(np.int64), v.kind == 0),
        rx_orgn_cd=cat(("1", "2", "3", "4"), choose(rng, (10, 8, 75, 7), nv)),
        brnd_gnrc_cd=cat(("B", "G"), np.where(_DRUG_BRAND[drug[b]], 0, 1)),
        ptnt_rsdnc_cd=cat(("01", "03"), (ph_type[b] == 1).astype(np.int64)),
        submsn_clr_cd=_const_cat(("05",), nv, missing=ph_type[b] != 1),
        ctstrphc_cvrg_cd=_const_cat(("A", "C"), nv, 1, missing=~(_DRUG_BRAND[drug[b]] & (rng.random(nv) < 0.05))),
        nstd_frmt_cd=_const_cat(("B", "X"), nv, 1, missing=rng.random(nv) > 0.02),
        prcng_excptn_cd=_const_cat(("M", "O"), nv, 1, missing=rng.random(nv) > 0.01),
        cvrd_d_plan_pd_amt=money(_scaled((cost - copay)[b], v.factor)),
        gdc_blw_oopt_amt=money(_scaled(cost[b], v.factor)),
        gdc_abv_oopt_amt=_zero_money(nv),
        othr_troop_amt=_zero_money(nv),
        lics_amt=_zero_money(nv),
        plro_amt=_zero_money(nv),
        tot_rx_cst_amt=money(_scaled(cost[b], v.factor)),
        rptd_gap_dscnt_num=_zero_money(nv),
        ptd_cntrct_id=to_str(take(contracts, pop.contract_at(vb, day[b]))),
    )
    return head, {}, vb

