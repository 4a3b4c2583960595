"""Part A institutional claims (CCLF1-4): inpatient stays (MS-DRG), outpatient
visits, SNF stays and hospice periods billed monthly, home health 30-day
periods; with revenue center lines, diagnoses and procedures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..columns import NO_DATE, NO_NUM, Num
from . import vocab as V
from .claims import (
    _APC,
    _BETOS,
    _HC_BETOS,
    _HC_FEE,
    _HC_UNITS,
    _MAC_A,
    FFS_RATES,
    RATES,
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
    _modifier,
    _pick_txt,
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
    hashed_uniform,
    integer,
    money,
    month_of,
    month_start,
    qty,
    ragged,
    rng_for,
    take,
    to_str,
    vocab,
    year_of,
)
from .people import LOC_STATE, STATE_FIPS, Pop
from .providers import Providers


def _by_year(table: Mapping[int, float], days: np.ndarray) -> np.ndarray:
    """A per-year dollar figure (deductibles, coinsurance) in cents for each day."""
    years = np.array(sorted(table))
    y = np.clip(year_of(days), years[0], years[-1])
    return np.rint(np.array([table[k] for k in years])[y - years[0]] * 100).astype(np.int64)


# Medicare Part A/B beneficiary cost sharing (CMS annual announcements).
_IP_DEDUCTIBLE = {2021: 1484, 2022: 1556, 2023: 1600, 2024: 1632, 2025: 1676}
_SNF_COINS = {2021: 185.5, 2022: 194.5, 2023: 200.0, 2024: 204.0, 2025: 209.5}
_B_DEDUCTIBLE = {2021: 203, 2022: 233, 2023: 226, 2024: 240, 2025: 257}



_INST = V.INPATIENT + V.OUTPATIENT + [V.SNF, V.HHA, V.HOSPICE]
_OP0 = len(V.INPATIENT)
_SNF_P, _HHA_P, _HOSPICE_P = len(_INST) - 3, len(_INST) - 2, len(_INST) - 1
_LINE_KINDS = sorted({(ln.rev, ln.hcpcs[0]) for p in _INST for ln in p.first + p.rest})
_KIND_INDEX = {k: i for i, k in enumerate(_LINE_KINDS)}
_LK_REV = np.array([k[0] for k in _LINE_KINDS])
_LK_HCPCS = np.array([k[1] for k in _LINE_KINDS])


def _line_pool(lines: Sequence[V.Line]) -> list[int]:
    return [_KIND_INDEX[(ln.rev, ln.hcpcs[0])] for ln in lines]


_I_FIRST = Pools([_line_pool(p.first) for p in _INST])
_I_REST = Pools([_line_pool(p.rest or p.first) for p in _INST])
_I_LO = np.array([p.lines[0] for p in _INST])
_I_HI = np.array([p.lines[1] for p in _INST])
_I_DX = Pools([p.dx or [-1] for p in _INST])
_DRG_RW = np.array([d[1] for d in V.DRGS])  # relative (payment) weight
_DRG_LOS = np.array([d[2] for d in V.DRGS])
_DRG_SURG = np.array([d[5] for d in V.DRGS])
_DRG_DX = Pools([d[3] for d in V.DRGS])
_DRG_PX = Pools([d[4] for d in V.DRGS])
_PCS_TXT = vocab(V.PCS)
_REV_DAYS = np.isin(np.arange(len(V.REV)), V.DAY_REV)
_SNF_HIPPS, _HHA_HIPPS = vocab(V.SNF_HIPPS), vocab(V.HHA_HIPPS)

# claim kinds: inpatient, outpatient, SNF, home health, hospice
_TYPE_LABELS = ("10", "20", "40", "50", "60")
_T_CODE = np.array([4, 2, 1, 0, 3])
_T_FAC = np.array([0, 0, 1, 2, 3])  # facility kind: hospital, SNF, HHA, hospice
_FAC_KINDS = ("hospital", "snf", "hha", "hospice")
_BILL_FAC, _BILL_CLS = ("1", "2", "3", "8"), ("1", "2", "3")
_T_BILL_FAC = np.array([0, 0, 1, 2, 3])  # bill types 11x, 13x, 21x, 32x, 81x
_T_BILL_CLS = np.array([0, 2, 0, 1, 0])
_T_LAG = np.array([20.0, 14.0, 20.0, 20.0, 15.0])  # mean days from thru date to first load
_BILL_FREQ = ("1", "2", "3", "4", "7", "8", "9")
# NUBC type of bill ("0" + facility + classification + frequency) of each kind and frequency.
_BILL_TYPES = tuple(
    f"0{_BILL_FAC[f]}{_BILL_CLS[c]}{q}" for f, c in zip(_T_BILL_FAC, _T_BILL_CLS, strict=True) for q in _BILL_FREQ
)
_T_NEAR_LINE = np.array([1, 2, 1, 0, 1])  # RIF record: V Part A, W Part B, U both (home health)
_OPPS_STATUS = ("N", "A", "S", "V")  # packaged, lab fee schedule, procedure, visit


def _monthly(bene: np.ndarray, s: np.ndarray, e: np.ndarray):
    """Split stays into calendar-month claims (SNF and hospice bill monthly):
    bene, from, thru, segment (0 only, 1 first, 2 middle, 3 last), stay start."""
    ms = month_of(s)
    months = month_of(e) - ms + 1
    _, g, j = ragged(months)
    frm = np.maximum(s[g], month_start(ms[g] + j))
    thru = np.minimum(e[g], month_start(ms[g] + j + 1) - 1)
    seg = np.where(months[g] == 1, 0, np.where(j == 0, 1, np.where(j == months[g] - 1, 3, 2)))
    return bene[g], frm, thru, seg, s[g]


def _inst_stays(rng: np.random.Generator, pop: Pop, prov: Providers, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Base institutional claims of all five kinds with their facility, sorted by
    (beneficiary, from)."""
    ffs = pop.ffs
    out = []

    def add(typ, bene, frm, thru, prof, seg=None, stay=None, drg=None):
        m = len(bene)
        out.append(dict(
            typ=np.full(m, typ), bene=bene, frm=frm, thru=thru, prof=prof,
            seg=np.zeros(m, np.int64) if seg is None else seg,
            stay=frm if stay is None else stay,
            drg=np.full(m, -1) if drg is None else drg,
        ))

    bene, day = _events(rng, pop, rows, RATES["inpatient"] / pop.preset.ffs_share, ffs)
    drg = choose(rng, V.DRG_W, len(bene))
    los = np.maximum(1, np.rint(rng.gamma(2.0, _DRG_LOS[drg] / 2))).astype(np.int64)
    add(0, bene, day, np.minimum(day + los, pop.end[bene]), _DRG_SURG[drg].astype(np.int64), drg=drg)

    bene, day = _events(rng, pop, rows, RATES["outpatient"] / pop.preset.ffs_share, ffs)
    add(1, bene, day, day, _OP0 + choose(rng, [p.weight for p in V.OUTPATIENT], len(bene)))

    bene, day = _events(rng, pop, rows, FFS_RATES["snf_stays"], ffs)
    los = np.clip(np.rint(rng.gamma(1.5, 18.0, len(bene))), 1, 100).astype(np.int64)
    b, frm, thru, seg, stay = _monthly(bene, day, np.minimum(day + los - 1, pop.end[bene]))
    add(2, b, frm, thru, np.full(len(b), _SNF_P), seg, stay)

    # Home health: admissions of one to three 30-day periods (two on average).
    bene, day = _events(rng, pop, rows, FFS_RATES["hha"] / 2, ffs)
    _, g, j = ragged(rng.integers(1, 4, len(bene)))
    frm = day[g] + 30 * j
    ok = frm <= pop.end[bene[g]]
    g, j, frm = g[ok], j[ok], frm[ok]
    add(3, bene[g], frm, np.minimum(frm + 29, pop.end[bene[g]]), np.full(len(g), _HHA_P), stay=day[g])

    h0, h1 = pop.hospice[0][rows], pop.hospice[1][rows]
    has = h0 != NO_DATE
    b, frm, thru, seg, stay = _monthly(rows[has], h0[has], h1[has])
    add(4, b, frm, thru, np.full(len(b), _HOSPICE_P), seg, stay)

    c = {k: np.concatenate([o[k] for o in out]) for k in out[0]}
    # The facility: the same for every monthly claim of a stay.
    c["fkind"] = _T_FAC[c["typ"]]
    c["fidx"] = np.zeros(len(c["typ"]), np.int64)
    u_stay = hashed_uniform(c["bene"], c["stay"], c["typ"])
    loc = pop.loc[c["bene"]]
    for k, kind in enumerate(_FAC_KINDS):  # per facility kind
        sel = c["fkind"] == k
        c["fidx"][sel] = prov.local(kind, loc[sel], u_stay[sel])
    # (beneficiary, facility, from, thru) is the natural key of Part A versions:
    # distinct claims must not share it (two visits to one hospital on one day).
    key = ("bene", "frm", "thru", "fkind", "fidx")
    order = np.lexsort(tuple(c[k] for k in reversed(key)))
    s = {k: v[order] for k, v in c.items()}
    dup = np.zeros(len(order), bool)
    if len(order) > 1:
        dup[1:] = np.logical_and.reduce([s[k][1:] == s[k][:-1] for k in key])
    s = {k: v[~dup] for k, v in s.items()}
    order = np.lexsort((s["typ"], s["frm"], s["bene"]))
    return {k: v[order] for k, v in s.items()}


def parta(pop: Pop, prov: Providers, rows: np.ndarray, chunk: int):
    rng = rng_for(pop.seed, "parta", chunk)
    c = _inst_stays(rng, pop, prov, rows)
    load0 = _first_load(rng, c["thru"], pop.as_of, _T_LAG[c["typ"]])
    keep = load0 <= pop.as_of
    load0 = load0[keep]
    typ, bene, frm, thru, prof, seg, stay, drg, fkind, fidx = (
        c[k][keep] for k in ("typ", "bene", "frm", "thru", "prof", "seg", "stay", "drg", "fkind", "fidx")
    )
    m = len(typ)
    ip, op, snf, hha, hos = (typ == t for t in range(5))
    days = np.where(ip, np.maximum(thru - frm, 1), np.where(op, 1, thru - frm + 1))
    loc = pop.loc[bene]

    # providers
    fac_npi = _pick_txt([prov.facility[k] for k in _FAC_KINDS], fkind, fidx)
    ccn = _pick_txt([prov.ccn[k] for k in _FAC_KINDS], fkind, fidx)
    er = prof == _OP0  # outpatient emergency profile
    att_spec = np.where(ip, V.SPECIALTY.index("11"), V.SPECIALTY.index("93"))
    attending = np.where(ip | er, prov.by_specialty(rng, att_spec), pop.pcp[bene])
    surgical = (prof == 1) | (prof == _OP0 + 7)
    operating = np.where(surgical, prov.by_specialty(rng, np.full(m, V.SPECIALTY.index("20"))), -1)
    other = np.where(rng.random(m) < 0.15, prov.by_specialty(rng, np.full(m, V.SPECIALTY.index("11"))), -1)

    # diagnoses and procedures
    pdx = np.where(ip, _DRG_DX.draw(rng, np.maximum(drg, 0)), _I_DX.draw(hashed_uniform(bene, stay, 7), prof))
    pdx = np.where(ip | (rng.random(m) < 0.6), pdx, -1)
    ndx = np.where(ip, rng.integers(4, 13, m), np.where(op, rng.integers(1, 5, m), rng.integers(2, 7, m)))
    dxm = _dx_matrix(rng, pop, bene, pdx, ndx)
    admit = np.where(ip, np.array(V.ADMIT_DX)[(rng.random(m) * len(V.ADMIT_DX)).astype(np.int64)], -1)
    all_dx = np.concatenate([dxm[:, :1], admit[:, None], dxm[:, 1:]], axis=1)
    dx_kind = np.array([0, 1] + [2] * (dxm.shape[1] - 1))  # P principal, A admitting, D other
    valid = all_dx >= 0
    dx_off, dx_g, dx_j = ragged(valid.sum(axis=1))
    dx_code = all_dx[valid]
    dx_type = np.broadcast_to(dx_kind, all_dx.shape)[valid]
    npx = np.where(ip, np.where(_DRG_SURG[np.maximum(drg, 0)], rng.integers(1, 3, m), (rng.random(m) < 0.4) * 1), 0)
    px_off, px_g, px_j = ragged(npx)
    px_code = _DRG_PX.draw(rng, drg[px_g])
    px_day = frm[px_g] + np.minimum(rng.integers(0, 3, len(px_g)), days[px_g] - 1)

    # revenue center lines
    nl = _I_LO[prof] + (rng.random(m) * (_I_HI[prof] - _I_LO[prof] + 1)).astype(np.int64)
    loff, lg, ln = ragged(nl)
    nlines = len(lg)
    kind = np.where(ln == 0, _I_FIRST.draw(rng, prof[lg]), _I_REST.draw(rng, prof[lg]))
    rev, hcpcs = _LK_REV[kind], _LK_HCPCS[kind]
    has_hc = hcpcs >= 0
    hc0 = np.maximum(hcpcs, 0)
    hc_units = np.maximum(1, np.rint(_HC_UNITS[hc0] * rng.uniform(0.6, 1.4, nlines)))
    units = np.where(_REV_DAYS[rev], days[lg], np.where(has_hc, hc_units, rng.integers(1, 6, nlines))).astype(np.int64)
    opps = np.rint(_HC_FEE[hc0] * np.where(_HC_UNITS[hc0] > 1, units, 1) * rng.lognormal(0, 0.1, nlines))
    hospice_day = 21_800  # routine home care per diem, cents
    line_pay = np.where(op[lg] & has_hc, opps, np.where(rev == V.REV.index("0651"), units * hospice_day, 0))
    line_pay = line_pay.astype(np.int64)
    rev_day = np.where(op[lg], frm[lg], frm[lg] + (rng.random(nlines) * days[lg]).astype(np.int64))
    hipps = np.where(rev == V.REV.index("0022"), 1, np.where(rev == V.REV.index("0023"), 2, 0))
    hipps_i = (hashed_uniform(bene[lg], stay[lg]) * 8).astype(np.int64)
    apc_txt = take(_APC, hc0)
    apc = Txt(
        np.where((hipps == 1)[:, None], _pad_to(take(_SNF_HIPPS, hipps_i), 5).mat,
                 np.where((hipps == 2)[:, None], _pad_to(take(_HHA_HIPPS, hipps_i), 5).mat, _pad_to(apc_txt, 5).mat)),
        np.where(hipps > 0, 5, np.where(op[lg] & has_hc, apc_txt.lens, 0)),
    )
    em = np.isin(hc0, V.hc("99284", "99285", "G0463")) & has_hc
    mod1 = np.where(em & (rng.random(nlines) < 0.25), V.md("25"), -1)

    # header amounts (cents), by claim kind
    yr_ded = _by_year(_IP_DEDUCTIBLE, frm)
    gross_ip = np.rint(_DRG_RW[np.maximum(drg, 0)] * 690_000 * rng.lognormal(0, 0.08, m)).astype(np.int64)
    ded_ip = np.where(ip & (rng.random(m) < 0.85), yr_ded, 0)
    teaching, dsh_hosp = fidx % 3 == 0, fidx % 2 == 0
    ime = np.where(ip & teaching, gross_ip * 8 // 100, 0)
    dsh = np.where(ip & dsh_hosp, gross_ip * 5 // 100, 0)
    outlier = np.where(ip & (rng.random(m) < 0.03), gross_ip // 2, 0)
    line_sum = np.add.reduceat(line_pay, loff[:-1]) if m else line_pay[:0]
    coins_days = np.maximum(0, np.minimum(frm - stay + days, 100) - np.maximum(frm - stay, 20))
    gross_snf = np.rint(days * 62_000 * rng.lognormal(0, 0.1, m)).astype(np.int64)
    snf_coins = np.where(snf, coins_days * _by_year(_SNF_COINS, frm), 0)
    gross_hha = np.rint(200_000 * rng.lognormal(0, 0.25, m)).astype(np.int64)
    pay = np.select(
        [ip, op, snf, hha],
        [
            np.maximum(gross_ip - ded_ip, 0) + ime + dsh + outlier,
            line_sum,
            np.maximum(gross_snf - snf_coins, 0),
            gross_hha,
        ],
        line_sum,
    )
    op_allowed = np.rint(line_sum / 0.8).astype(np.int64)
    coins = np.where(op, op_allowed - line_sum, snf_coins)
    b_ded = np.where(op & (rng.random(m) < 0.08), np.minimum(_by_year(_B_DEDUCTIBLE, frm), op_allowed // 3), 0)
    charges = np.rint(
        np.select([ip, op, snf, hha], [gross_ip * rng.uniform(3.5, 6, m), op_allowed * rng.uniform(2.5, 4.5, m),
                                       gross_snf * rng.uniform(1.3, 2, m), gross_hha * rng.uniform(1.2, 1.8, m)],
                  pay * rng.uniform(1.1, 1.5, m))
    ).astype(np.int64)
    npmt = rng.random(m) < 0.01
    pay = np.where(npmt, 0, pay)
    # Line charges: the header's total charges shared out over its lines.
    share = rng.random(nlines) + 0.2
    share_sum = np.add.reduceat(share, loff[:-1])[lg] if m else share
    line_chrg = np.rint(charges[lg] * share / share_sum).astype(np.int64)
    visits = np.add.reduceat(np.where(ln > 0, units, 0), loff[:-1]) if m else np.zeros(0, np.int64)
    lab_line = np.isin(_HC_BETOS[hc0], [_BETOS.index(x) for x in _BETOS if x.startswith("T1")]) & has_hc
    visit_line = np.isin(_HC_BETOS[hc0], [_BETOS.index(x) for x in _BETOS if x.startswith("M")]) & has_hc
    opps_status = np.where(~has_hc, 0, np.where(lab_line, 1, np.where(visit_line, 3, 2)))  # N, A, S, V

    # codes
    died = (pop.death[bene] >= frm) & (pop.death[bene] <= thru)
    last_seg = (seg == 0) | (seg == 3)
    st = V.STATUS.index
    status = np.select(
        [ip & died, ip, op, (snf | hos | hha) & ~last_seg, (snf | hha) & died, snf | hha, hos & died],
        [st("20"), choose(rng, V.IP_STATUS_W, m), st("01"), st("30"), st("20"),
         np.where(rng.random(m) < 0.7, st("01"), st("06")), np.where(rng.random(m) < 0.6, st("40"), st("41"))],
        st("01"),
    )
    freq = np.where(hha, 6, np.where(seg > 0, seg, 0))  # 1, 2 first, 3 middle, 4 last, 9 home health
    elective = np.where(_DRG_SURG[np.maximum(drg, 0)], 0.7, 0.1)
    admsn_type = np.where(rng.random(m) < elective, 2, np.where(rng.random(m) < 0.8, 0, 1))
    admsn_src = np.where(snf, 2, choose(rng, (75, 8, 8, 2, 2, 2, 1, 2), m))
    first_seg = seg <= 1
    ded_any = (ded_ip > 0) | (b_ded > 0)

    v = _versions(rng, load0, pop.as_of)
    freq_v = np.where(v.kind == 1, 5, np.where(v.kind == 2, 4, freq[v.base]))
    b = v.base
    vb = bene[b]
    nv = len(b)
    icn = _icn(frm[b], chunk * 10**7 + np.arange(nv))
    orig = np.arange(nv) - v.num
    f = v.factor

    def amt(cents: np.ndarray, where: np.ndarray | None = None) -> Num:
        a = _scaled(cents[b], f)
        return money(a if where is None else np.where(where[b], a, NO_NUM))

    head = _claim_cols(pop, "parta", chunk, vb, frm[b], v, _has_sud(all_dx)[b])
    ipb, opb, adm = ip[b], op[b], (ip | (snf & first_seg))[b]
    head.update(
        prvdr_oscar_num=to_str(take(ccn, b)),
        clm_type_cd=cat(_TYPE_LABELS, _T_CODE[typ[b]]),
        clm_from_dt=date(frm[b]),
        clm_thru_dt=date(thru[b]),
        clm_bill_fac_type_cd=cat(_BILL_FAC, _T_BILL_FAC[typ[b]]),
        clm_bill_clsfctn_cd=cat(_BILL_CLS, _T_BILL_CLS[typ[b]]),
        clm_bill_freq_cd=cat(_BILL_FREQ, freq_v),
        prncpl_dgns_cd=to_str(_dx_txt(dxm[b, 0])),
        admtg_dgns_cd=to_str(_dx_txt(admit[b])),
        clm_mdcr_npmt_rsn_cd=cat(V.NPMT_RSN, (rng.random(nv) * 4).astype(np.int64), ~npmt[b]),
        clm_pmt_amt=amt(pay),
        clm_nch_prmry_pyr_cd=cat(V.PRMRY_PYR, choose(rng, (4, 2, 1, 1, 1, 1, 1), nv), rng.random(nv) > 0.03),
        prvdr_fac_fips_st_cd=cat(STATE_FIPS, LOC_STATE[loc[b]]),
        bene_ptnt_stus_cd=cat(V.STATUS, status[b]),
        dgns_drg_cd=cat(V.DRG_CODES, np.maximum(drg[b], 0), ~ipb),
        clm_op_srvc_type_cd=cat(("1", "3"), np.where(er[b], 0, 1), ~opb),
        fac_prvdr_npi_num=to_str(take(fac_npi, b)),
        clm_blg_prvdr_npi_num=to_str(take(fac_npi, b)),
        clm_blg_prvdr_oscar_num=to_str(take(ccn, b)),
        clm_admsn_type_cd=cat(V.ADMSN_TYPE, admsn_type[b], ~adm),
        clm_admsn_src_cd=cat(V.ADMSN_SRC, admsn_src[b], ~adm),
        clm_query_cd=cat(("0", "3", "5"), np.where(v.kind == 1, 0, np.where(v.kind == 2, 2, 1))),
        dgns_prcdr_icd_ind=_const_cat(("0", "9"), nv),
        clm_mdcr_instnl_tot_chrg_amt=amt(charges),
        clm_mdcr_ip_pps_cptl_ime_amt=amt(ime * 6 // 80, ip),
        clm_oprtnl_ime_amt=amt(ime, ip),
        clm_mdcr_ip_pps_dsprprtnt_amt=amt(dsh, ip),
        clm_hipps_uncompd_care_amt=amt(dsh // 2, ip),
        clm_oprtnl_dsprprtnt_amt=amt(dsh, ip),
        clm_cntl_num=to_str(icn),
        clm_org_cntl_num=to_str(blank(take(icn, orig), v.num == 0)),
        clm_cntrctr_num=to_str(take(_MAC_A, loc[b] % len(V.MAC_A))),
        clm_actv_care_from_dt=date(stay[b], ~adm),
        clm_instnl_per_diem_amt=amt(pay // days, ip),
        clm_mdcr_ip_bene_ddctbl_amt=amt(ded_ip, ip),
        clm_mdcr_coinsrnc_amt=amt(coins, op | snf),
        clm_blood_lblty_amt=amt(np.zeros(m, np.int64), ip),
        clm_ncvrd_chrg_amt=amt(np.where(rng.random(m) < 0.1, charges // 20, 0)),
        clm_mdcr_ddctbl_amt=amt(b_ded, op),
        clm_oprtnl_outlr_amt=amt(outlier, ip),
        clm_sqstrtn_rdctn_amt=amt(pay * 2 // 100),
        clm_1_rev_cntr_ansi_grp_cd=cat(V.ANSI_GRP, np.where((coins > 0) | ded_any, 1, 0)[b]),
        clm_1_rev_cntr_ansi_rsn_cd=cat(V.ANSI_RSN, np.where(ded_any, 0, np.where(coins > 0, 1, 2))[b]),
        clm_bill_type_cd=cat(_BILL_TYPES, typ[b] * len(_BILL_FREQ) + freq_v),
        # CCW (RIF) institutional fields
        nch_near_line_rec_ident_cd=cat(("U", "V", "W"), _T_NEAR_LINE[typ[b]]),
        fi_num=cat(tuple(V.MAC_A), loc[b] % len(V.MAC_A)),
        fi_clm_proc_dt=date(v.efctv),
        fi_clm_actn_cd=cat(("1", "5", "8"), v.kind),
        clm_mco_pd_sw=_const_cat(("0",), nv),
        nch_ptnt_status_ind_cd=cat(("A", "B", "C"), np.where(died, 1, np.where(last_seg, 0, 2))[b], ~ipb),
        clm_pps_ind_cd=_const_cat(("2",), nv, missing=~(ip | snf)[b]),
        nch_blood_pnts_frnshd_qty=Num(np.where(ipb, 0, NO_NUM), 0),
        nch_bene_dschrg_dt=date(thru[b], ~((ip | snf) & last_seg)[b]),
        nch_qlfyd_stay_from_dt=date(stay[b] - 4, ~(snf & first_seg)[b]),
        nch_qlfyd_stay_thru_dt=date(stay[b] - 1, ~(snf & first_seg)[b]),
        clm_hha_lupa_ind_cd=_const_cat(("L",), nv, missing=~(hha & (nl <= 2))[b]),
        clm_hha_rfrl_cd=_const_cat(("1", "2"), nv, missing=~hha[b]),
        clm_hha_tot_visit_cnt=Num(np.where(hha, visits, NO_NUM)[b], 0),
        bene_hospc_prd_cnt=Num(np.where(hos, 1, NO_NUM)[b], 0),
        nch_prmry_pyr_clm_pd_amt=_zero_money(nv),
        clm_utlztn_day_cnt=Num(np.where(ip | snf, days, NO_NUM)[b], 0),
        bene_tot_coinsrnc_days_cnt=Num(np.where(ip | snf, np.where(snf, coins_days, 0), NO_NUM)[b], 0),
        clm_non_utlztn_days_cnt=Num(np.where(ip | snf, 0, NO_NUM)[b], 0),
        bene_lrd_used_cnt=Num(np.where(ip, 0, NO_NUM)[b], 0),
        clm_tot_pps_cptl_amt=amt(gross_ip * 7 // 100, ip),
        clm_pps_cptl_fsp_amt=amt(gross_ip * 7 // 100, ip),
        clm_pps_cptl_outlier_amt=amt(np.zeros(m, np.int64), ip),
        clm_pps_cptl_excptn_amt=amt(np.zeros(m, np.int64), ip),
        clm_pps_old_cptl_hld_hrmls_amt=amt(np.zeros(m, np.int64), ip),
        nch_drg_outlier_aprvd_pmt_amt=amt(outlier, ip),
        nch_ip_tot_ddctn_amt=amt(ded_ip, ip),
        clm_op_prvdr_pmt_amt=amt(pay, op),
        clm_op_bene_pmt_amt=amt(np.zeros(m, np.int64), op),
    )
    for col, who in (("atndg", attending), ("oprtg", operating), ("othr", other)):
        t = to_str(blank(take(prov.individual, np.maximum(who[b], 0)), who[b] < 0))
        head[f"{col}_prvdr_npi_num"] = t
        head[f"clm_{col}_prvdr_npi_num"] = t

    L = _child_rows(loff, v)
    ls = L.src
    lrow = lg[ls]
    rev_cols = {
        "clm_line_num": integer(ln[ls] + 1),
        "clm_line_from_dt": date(frm[lrow]),
        "clm_line_thru_dt": date(np.where(op[lrow], frm[lrow], thru[lrow])),
        "clm_line_prod_rev_ctr_cd": cat(tuple(V.REV), rev[ls]),
        "clm_line_instnl_rev_ctr_dt": date(rev_day[ls]),
        "clm_line_hcpcs_cd": to_str(_hcpcs_txt(hcpcs[ls])),
        "clm_line_srvc_unit_qty": qty(units[ls]),
        "clm_line_cvrd_pd_amt": money(_scaled(line_pay[ls], L.factor)),
        "hcpcs_1_mdfr_cd": _modifier(mod1[ls]),
        "clm_rev_apc_hipps_cd": to_str(take(apc, ls)),
        "clm_fac_prvdr_oscar_num": to_str(take(ccn, lrow)),
        # CCW (RIF) revenue center fields
        "rev_cntr_tot_chrg_amt": money(_scaled(line_chrg[ls], L.factor)),
        "rev_cntr_rate_amt": money(_scaled(line_chrg[ls] // np.maximum(units[ls], 1), L.factor)),
        "rev_cntr_ncvrd_chrg_amt": _zero_money(len(ls)),
        "rev_cntr_pmt_amt_amt": money(_scaled(line_pay[ls], L.factor)),
        "rev_cntr_bene_pmt_amt": _zero_money(len(ls)),
        "rev_cntr_ptnt_rspnsblty_pmt": money(_scaled(np.where(op[lg], line_pay // 4, 0)[ls], L.factor)),
        "rev_cntr_cash_ddctbl_amt": _zero_money(len(ls)),
        "rev_cntr_blood_ddctbl_amt": _zero_money(len(ls)),
        "rev_cntr_coinsrnc_wge_adjstd_c": money(_scaled(np.where(op[lg], line_pay // 4, 0)[ls], L.factor)),
        "rev_cntr_rdcd_coinsrnc_amt": _zero_money(len(ls)),
        "rev_cntr_1st_msp_pd_amt": _zero_money(len(ls)),
        "rev_cntr_2nd_msp_pd_amt": _zero_money(len(ls)),
        "rev_cntr_ddctbl_coinsrnc_cd": cat(("0", "3"), (~has_hc).astype(np.int64)[ls]),
        "rev_cntr_stus_ind_cd": cat(_OPPS_STATUS, opps_status[ls], ~op[lrow]),
    }
    D = _child_rows(dx_off, v)
    poa = np.where(ip[dx_g] & (dx_type != 1), choose(rng, (90, 5, 3, 2, 0), len(dx_g)), -1)
    dx_cols = {
        "clm_prod_type_cd": cat(("P", "A", "D"), dx_type[D.src]),
        "clm_val_sqnc_num": integer(dx_j[D.src] + 1),
        "clm_dgns_cd": to_str(_dx_txt(dx_code[D.src])),
        "clm_poa_ind": to_str(blank(take(vocab(V.POA), np.maximum(poa[D.src], 0)), poa[D.src] < 0)),
        "dgns_prcdr_icd_ind": _const_cat(("0", "9"), len(D.src)),
    }
    X = _child_rows(px_off, v)
    px_cols = {
        "clm_val_sqnc_num": integer(px_j[X.src] + 1),
        "clm_prcdr_cd": to_str(take(_PCS_TXT, px_code[X.src])),
        "clm_prcdr_prfrm_dt": date(px_day[X.src]),
        "dgns_prcdr_icd_ind": _const_cat(("0", "9"), len(X.src)),
    }
    children = {
        "parta_rev": (rev_cols, L.offsets),
        "parta_px": (px_cols, X.offsets),
        "parta_dx": (dx_cols, D.offsets),
    }
    return head, children, vb



def _pad_to(t: Txt, width: int) -> Txt:
    mat = np.zeros((len(t), width), np.uint8)
    w = min(width, t.mat.shape[1])
    mat[:, :w] = t.mat[:, :w]
    return Txt(mat, np.minimum(t.lens, width))


