"""Professional claims (Part B carrier, CCLF5, and DME, CCLF6): one generator
for both, parameterized by a `Family`; `carrier` and `dme` add the columns
only they have."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..columns import AnyColumn, Num
from . import vocab as V
from .claims import (
    _BETOS,
    _HC_BETOS,
    _HC_FEE,
    _HC_NDC,
    _HC_TOS,
    _HC_UNITS,
    _TOS,
    _child_rows,
    _claim_cols,
    _const_cat,
    _dx_matrix,
    _dx_txt,
    _events,
    _first_load,
    _has_sud,
    _hcpcs_txt,
    _icn,
    _Lines,
    _modifier,
    _scaled,
    _versions,
    _zero_money,
)
from .kit import (
    Pools,
    Txt,
    blank,
    cat,
    choose,
    date,
    integer,
    money,
    qty,
    ragged,
    rng_for,
    take,
    to_str,
    year_of,
)
from .people import LOC_STATE, Pop
from .providers import Providers


class Family(NamedTuple):
    """What differs between the professional families."""

    table: str  # "partb" or "dme"
    profiles: _Prof
    rate: float  # claims per beneficiary-year (all_benes) or per FFS beneficiary-year
    all_benes: bool
    lag: float  # mean days from the thru date to the first load
    macs: Txt  # Medicare Administrative Contractor numbers
    type_p: float  # share of the first claim type code, else the second
    type_cd: tuple[int, int]  # indices into ("71", "72", "81", "82")
    near_line: int  # RIF record: 0 M (DME), 1 O (carrier)
    sud: tuple[int, int] | None  # (office, SUD treatment) profile indices: carrier only


class Drawn(NamedTuple):
    """The claims of a chunk: columns both families have, and what the
    family-specific columns are drawn from."""

    rng: np.random.Generator
    head: dict[str, AnyColumn]
    lines: dict[str, AnyColumn]
    m: int  # base claims
    b: np.ndarray  # base claim of each version row
    vb: np.ndarray  # beneficiary row of each version row
    L: _Lines
    lrow: np.ndarray  # base claim of each version line
    line_bene: np.ndarray
    hcpcs: np.ndarray
    allowed: np.ndarray
    units: np.ndarray
    prvdr: np.ndarray
    spec: np.ndarray
    lab: np.ndarray
    state: np.ndarray  # state index of each version line's beneficiary


class _Prof(NamedTuple):
    """Compiled professional profiles (carrier or DME)."""

    weights: np.ndarray
    spec: Pools
    place: Pools
    first: Pools
    rest: Pools
    modifier: Pools
    acute: Pools
    lo: np.ndarray
    hi: np.ndarray
    days: np.ndarray
    referred: np.ndarray
    pcp: np.ndarray  # billed by the beneficiary's primary care provider (mostly)


def _compile_prof(profiles: Sequence[V.Profile]) -> _Prof:
    return _Prof(
        weights=np.array([p.weight for p in profiles]),
        spec=Pools([p.specialties for p in profiles]),
        place=Pools([p.places for p in profiles]),
        first=Pools([p.first for p in profiles]),
        rest=Pools([p.rest or p.first for p in profiles]),
        modifier=Pools([p.modifier for p in profiles]),
        acute=Pools([p.acute or [-1] for p in profiles]),
        lo=np.array([p.lines[0] for p in profiles]),
        hi=np.array([p.lines[1] for p in profiles]),
        days=np.array([p.days for p in profiles]),
        referred=np.array([p.referred for p in profiles]),
        pcp=np.array([p.name in ("office", "wellness", "telehealth") for p in profiles]),
    )


_CARRIER = _compile_prof(V.CARRIER + [V.CARRIER_SUD])
_CARRIER_OFFICE, _CARRIER_SUD = 0, len(V.CARRIER)
_DME = _compile_prof(V.DME)


def draw(fam: Family, pop: Pop, prov: Providers, rows: np.ndarray, chunk: int) -> Drawn:
    """The claims of a chunk of one professional family: the columns both
    families have, and the arrays its own columns are built from."""
    rng = rng_for(pop.seed, fam.table, chunk)
    P = fam.profiles
    rate = fam.rate / pop.preset.ffs_share if fam.all_benes else fam.rate
    bene, day = _events(rng, pop, rows, rate, pop.ffs)
    m = len(bene)
    prof = choose(rng, P.weights, m)
    if fam.sud is not None:  # a third of office visits of people with a SUD are SUD treatment
        office, treatment = fam.sud
        sud_visit = pop.sud[bene] & (prof == office) & (rng.random(m) < 0.35)
        prof = np.where(sud_visit, treatment, prof)
    nl = P.lo[prof] + (rng.random(m) * (P.hi[prof] - P.lo[prof] + 1)).astype(np.int64)
    thru = np.minimum(day + (nl - 1) * P.days[prof], pop.end[bene])
    load0 = _first_load(rng, thru, pop.as_of, fam.lag)
    keep = load0 <= pop.as_of
    bene, day, prof, nl, thru, load0 = bene[keep], day[keep], prof[keep], nl[keep], thru[keep], load0[keep]
    m = len(bene)

    # lines of the base claims
    loff, lg, ln = ragged(nl)
    nlines = len(lg)
    hcpcs = np.where(ln == 0, P.first.draw(rng, prof[lg]), P.rest.draw(rng, prof[lg]))
    units = np.maximum(1, np.rint(_HC_UNITS[hcpcs] * rng.uniform(0.6, 1.4, nlines))).astype(np.int64)
    allowed = np.rint(_HC_FEE[hcpcs] * units * rng.lognormal(0, 0.08, nlines)).astype(np.int64)
    denied = choose(rng, (90, 3, 4, 3), m)  # pmt_dnl: 1 physician, 2 beneficiary, 0 denied, A
    line_denied = denied[lg] == 2
    allowed = np.where(line_denied, 0, allowed)
    deductible = rng.random(nlines) < 0.06
    paid = np.where(deductible, 0, np.rint(allowed * 0.8 * 0.98)).astype(np.int64)
    line_from = np.minimum(day[lg] + ln * P.days[prof[lg]], thru[lg])
    mod1 = P.modifier.draw(rng, prof[lg])
    mod2 = np.where(rng.random(nlines) < 0.03, V.md("59"), -1)
    spec = P.spec.draw(rng, prof)
    prvdr = prov.by_specialty(rng, spec)
    prvdr = np.where(P.pcp[prof] & (rng.random(m) < 0.75), pop.pcp[bene], prvdr)
    place = P.place.draw(rng, prof)
    acute = np.where(rng.random(m) < 0.55, P.acute.draw(rng, prof), -1)
    if fam.sud is not None:  # the SUD diagnosis is the beneficiary's last condition
        acute = np.where(prof == fam.sud[1], pop.dx[bene, pop.ndx[bene] - 1], acute)
    ndx = 1 + rng.binomial(4, 0.35, m) + np.where(rng.random(m) < 0.03, rng.integers(3, 8, m), 0)
    dxm = _dx_matrix(rng, pop, bene, acute, ndx)
    refer = np.where(P.referred[prof], pop.pcp[bene], -1)

    submitted = np.rint(allowed * rng.uniform(1.2, 3.0, nlines)).astype(np.int64)
    ded_amt = np.where(deductible, allowed, 0)
    coins = np.maximum(allowed - paid - ded_amt, 0)
    lab = np.isin(_HC_BETOS[hcpcs], [_BETOS.index(x) for x in _BETOS if x.startswith("T1")])
    assigned = rng.random(m) < 0.96
    processing = np.where(line_denied, 2, choose(rng, (96, 2, 0, 2), nlines))  # allowed, reprocessed, denied, ...

    v = _versions(rng, load0, pop.as_of)
    b = v.base
    L = _child_rows(loff, v)
    ls, lrow = L.src, lg[L.src]
    vb = bene[b]

    def head_sum(cents: np.ndarray) -> Num:
        scaled = _scaled(cents[ls], L.factor)
        return money(np.add.reduceat(scaled, L.offsets[:-1]) if len(b) else scaled[:0])

    macs = fam.macs
    pay_sum = np.add.reduceat(_scaled(paid[ls], L.factor), L.offsets[:-1]) if len(b) else np.zeros(0, np.int64)
    asg = assigned[b]
    head = _claim_cols(pop, fam.table, chunk, vb, day[b], v, _has_sud(dxm)[b])
    head.update(
        clm_type_cd=cat(("71", "72", "81", "82"), np.where(rng.random(m) < fam.type_p, *fam.type_cd)[b]),
        clm_from_dt=date(day[b]),
        clm_thru_dt=date(thru[b]),
        clm_carr_pmt_dnl_cd=cat(("1", "2", "0", "A"), denied[b]),
        # Carrier versions share the claim control number: it is their natural key.
        clm_cntl_num=to_str(_icn(day[b], chunk * 10**7 + b)),
        clm_disp_cd=cat(("01", "02", "03"), np.where(v.kind == 1, 2, np.where(v.kind == 2, 1, 0))),
        clm_pmt_amt=money(pay_sum),
        clm_alowd_chrg_amt=head_sum(allowed),
        **{f"clm_dgns_{k + 1}_cd": to_str(_dx_txt(dxm[b, k])) for k in range(min(12, dxm.shape[1]))},
        dgns_prcdr_icd_ind=_const_cat(("0", "9"), len(b)),
        clm_rfrg_prvdr_npi_num=to_str(blank(take(prov.individual, np.maximum(refer[b], 0)), refer[b] < 0)),
        clm_cntrctr_num=to_str(take(macs, pop.loc[vb] % len(macs))),
        # CCW (RIF) header fields
        nch_near_line_rec_ident_cd=cat(("M", "O"), np.full(len(b), fam.near_line)),
        carr_clm_entry_cd=cat(("1", "3", "5"), v.kind),
        carr_clm_prvdr_asgnmt_ind_sw=cat(("A", "N"), np.where(asg, 0, 1)),
        carr_clm_hcpcs_yr_cd=cat(tuple("0123456789"), year_of(day[b]) % 10),
        carr_clm_prmry_pyr_pd_amt=_zero_money(len(b)),
        nch_clm_prvdr_pmt_amt=money(np.where(asg, pay_sum, 0)),
        nch_clm_bene_pmt_amt=money(np.where(asg, 0, pay_sum)),
        nch_carr_clm_sbmtd_chrg_amt=head_sum(submitted),
        carr_clm_cash_ddctbl_apld_amt=head_sum(ded_amt),
    )
    line_bene = bene[lrow]
    line_paid = _scaled(paid[ls], L.factor)
    line_asg = assigned[lrow]
    lines: dict[str, AnyColumn] = {
        "clm_line_num": integer(ln[ls] + 1),
        "clm_pos_cd": cat(V.PLACE, place[lrow]),
        "clm_line_from_dt": date(line_from[ls]),
        "clm_line_thru_dt": date(line_from[ls]),
        "clm_line_hcpcs_cd": to_str(_hcpcs_txt(hcpcs[ls])),
        "clm_line_cvrd_pd_amt": money(line_paid),
        "clm_line_alowd_chrg_amt": money(_scaled(allowed[ls], L.factor)),
        "clm_line_srvc_unit_qty": qty(units[ls]),
        "hcpcs_1_mdfr_cd": _modifier(mod1[ls]),
        "hcpcs_2_mdfr_cd": _modifier(mod2[ls]),
        "hcpcs_betos_cd": cat(_BETOS, np.maximum(_HC_BETOS[hcpcs[ls]], 0), _HC_BETOS[hcpcs[ls]] < 0),
        "clm_fed_type_srvc_cd": cat(_TOS, _HC_TOS[hcpcs[ls]]),
        "clm_prcsg_ind_cd": cat(("A", "R", "D", "S"), processing[ls]),
        "clm_line_dgns_cd": to_str(_dx_txt(dxm[lrow, 0])),
        "clm_prvdr_spclty_cd": cat(tuple(V.SPECIALTY), spec[lrow]),
        "clm_rndrg_prvdr_tax_num": to_str(take(prov.tin, prvdr[lrow])),
        # CCW (RIF) line fields
        "prtcptng_ind_cd": cat(("1", "4"), (rng.random(len(ls)) < 0.04).astype(np.int64)),
        "line_pmt_80_100_cd": cat(("0", "1"), lab[ls].astype(np.int64)),
        "line_service_deductible": cat(("0", "1"), lab[ls].astype(np.int64)),
        "line_bene_pmt_amt": money(np.where(line_asg, 0, line_paid)),
        "line_prvdr_pmt_amt": money(np.where(line_asg, line_paid, 0)),
        "line_bene_ptb_ddctbl_amt": money(_scaled(ded_amt[ls], L.factor)),
        "line_bene_prmry_pyr_pd_amt": _zero_money(len(ls)),
        "line_coinsrnc_amt": money(_scaled(coins[ls], L.factor)),
        "line_sbmtd_chrg_amt": money(_scaled(submitted[ls], L.factor)),
        "line_ndc_cd": to_str(take(_HC_NDC, hcpcs[ls])),
    }
    state = LOC_STATE[pop.loc[line_bene]]
    return Drawn(rng, head, lines, m, b, vb, L, lrow, line_bene, hcpcs, allowed, units, prvdr, spec, lab, state)
