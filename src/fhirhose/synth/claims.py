"""What every claim family shares: event days, claim versions (original,
adjustment, cancel + replacement) and their child rows, the columns every
claim table has, diagnoses, HCPCS lookups. The families: `institutional`
(Part A, CCLF1-4), `carrier` and `dme` (Part B, CCLF5/6, both drawn by
`professional`) and `pde` (Part D, CCLF7). Rates and their sources: see
`fhirhose.synth`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..columns import AnyColumn, Cat, Num, Time
from . import vocab as V
from .kit import (
    DAY_MS,
    Txt,
    blank,
    cat,
    date,
    digits,
    jan1_of,
    money,
    ragged,
    ragged_take,
    take,
    to_str,
    vocab,
    ymd,
)
from .people import Pop

# Claims per beneficiary-year over all beneficiaries (DE-SynPUF), and per
# FFS beneficiary-year for the post-acute and DME lines (sources: `fhirhose.synth`).
RATES = {"carrier": 14.0, "outpatient": 2.3, "inpatient": 0.2, "pde": 16.0}
FFS_RATES = {"snf_stays": 0.06, "hha": 0.17, "dme": 1.4}
ADJUST_P, CANCEL_P = 0.06, 0.02


# ---- claim machinery ------------------------------------------------------------------


def _events(
    rng: np.random.Generator, pop: Pop, rows: np.ndarray, rate: float, eligible: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Event days per beneficiary: Poisson(rate x years x frailty), uniform over
    the beneficiary's history, sorted by (beneficiary, day)."""
    years = (pop.end[rows] - pop.start[rows] + 1) / 365.25
    lam = rate * years * pop.frail[rows] * eligible[rows]
    k = rng.poisson(lam)
    bene = np.repeat(rows, k)
    span = pop.end[bene] - pop.start[bene] + 1
    day = pop.start[bene] + np.floor(rng.random(len(bene)) * span).astype(np.int64)
    order = np.lexsort((day, bene))
    return bene[order], day[order]


def _first_load(rng: np.random.Generator, thru: np.ndarray, as_of: int, mean_lag) -> np.ndarray:
    """The weekly load (on the as-of weekday) after the claim was processed."""
    ready = thru + 2 + rng.gamma(2.0, mean_lag / 2, len(thru)).astype(np.int64)
    return ready + (as_of - ready) % 7


class _Versions(NamedTuple):
    base: np.ndarray  # base claim of each version row
    num: np.ndarray  # 0 = original
    last: np.ndarray  # final action
    kind: np.ndarray  # 0 original, 1 cancel, 2 adjustment
    factor: np.ndarray  # amount multiplier
    load: np.ndarray  # IDR load day
    efctv: np.ndarray
    updated: np.ndarray  # ms


def _versions(rng: np.random.Generator, first_load: np.ndarray, as_of: int) -> _Versions:
    """Versions of each base claim: an original, and for some an adjustment
    or a cancel followed by a replacement, each loaded weeks later. Versions
    not loaded by the as-of date do not exist yet."""
    m = len(first_load)
    u = rng.random(m)
    nv = 1 + (u < ADJUST_P + CANCEL_P) + (u < CANCEL_P)
    off, base, num = ragged(nv)
    gap = np.where(num == 0, 0, 7 * rng.integers(1, 10, len(base)))
    cs = np.cumsum(gap)
    load = first_load[base] + cs - cs[off[:-1]][base]
    keep = load <= as_of
    base, num, load = base[keep], num[keep], load[keep]
    kept = np.bincount(base, minlength=m)
    kind = np.where(num == 0, 0, np.where((nv[base] == 3) & (num == 1), 1, 2))
    nr = len(base)
    factor = np.where(kind == 0, 1.0, np.where(kind == 1, -1.0, rng.uniform(0.85, 1.1, nr)))
    return _Versions(
        base=base,
        num=num,
        last=num == kept[base] - 1,
        kind=kind,
        factor=factor,
        load=load,
        efctv=load - rng.integers(1, 6, nr),
        updated=load * DAY_MS + rng.integers(2 * 3_600_000, 14 * 3_600_000, nr),
    )


def _icn(day: np.ndarray, seq: np.ndarray) -> Txt:
    """Claim control numbers: year, Julian day of receipt and a unique sequence."""
    y, _, _ = ymd(day)
    julian = day - jan1_of(y) + 1
    return digits(((y % 100) * 1_000 + julian) * 10**11 + seq, 16)


def _const_cat(labels: Sequence[str], n: int, index: int = 0, missing: np.ndarray | None = None) -> Cat:
    """One label on every row (missing where `missing`)."""
    return cat(labels, np.full(n, index, np.int64), missing)


def _zero_money(n: int) -> Num:
    return money(np.zeros(n, np.int64))


def _scaled(cents: np.ndarray, factor: np.ndarray) -> np.ndarray:
    return np.rint(cents * factor).astype(np.int64)


_TABLE_CODE = {"parta": 1, "partb": 2, "dme": 3, "pde": 4}


def _claim_cols(
    pop: Pop, table: str, chunk: int, bene: np.ndarray, day: np.ndarray, v: _Versions, sud: np.ndarray
) -> dict[str, AnyColumn]:
    """The store-derived and version columns every claim table has."""
    code = _TABLE_CODE[table]
    uniq = to_str(digits(code * 10**12 + chunk * 10**8 + np.arange(len(v.base)), 13))
    cols: dict[str, AnyColumn] = {
        "clm_id": uniq,
        "cur_clm_uniq_id": uniq,
        "bene_id": to_str(take(pop.bene_id, bene)),
        "bene_mbi_id": to_str(pop.mbi_at(bene, day)),
        "bene_hic_num": to_str(take(pop.hic, bene)),
        "last_updated": Time(v.updated),
        "final_action": cat(("F", "N"), np.where(v.last, 0, 1)),
        "clm_grp_id": to_str(digits((code + 5) * 10**12 + chunk * 10**8 + v.base, 13)),
        "sud_ind": cat(("N", "Y"), sud.astype(np.int64)),
        "clm_adjsmt_type_cd": cat(("0", "1", "2"), v.kind),
        "clm_efctv_dt": date(v.efctv),
        "clm_idr_ld_dt": date(v.load),
    }
    if table != "pde":
        cols["bene_eqtbl_bic_hicn_num"] = cols["bene_hic_num"]
    return cols


def _dx_matrix(
    rng: np.random.Generator, pop: Pop, bene: np.ndarray, first: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """(m, max count) diagnosis indices, -1 padded: `first` (or a chronic
    condition where first < 0) then distinct chronic conditions."""
    m = len(bene)
    ndx = pop.ndx[bene]
    s0 = (rng.random(m) * ndx).astype(np.int64)
    j = np.arange(int(count.max()) if m else 1)[None, :]
    slots = (s0[:, None] + j - (first >= 0)[:, None]) % ndx[:, None]
    out = pop.dx[bene[:, None], slots]
    out[:, 0] = np.where(first >= 0, first, out[:, 0])
    limit = np.minimum(count, ndx + (first >= 0))
    return np.where(j < limit[:, None], out, -1)


_DX_TXT = vocab(V.DX_CODES)
_DX_SUD = np.array(V.DX_SUD)


def _dx_txt(idx: np.ndarray) -> Txt:
    return blank(take(_DX_TXT, np.maximum(idx, 0)), idx < 0)


def _has_sud(dxm: np.ndarray) -> np.ndarray:
    return (_DX_SUD[np.maximum(dxm, 0)] & (dxm >= 0)).any(axis=1)



_HC_FEE = np.array([h.fee for h in V.HCPCS])
_HC_UNITS = np.array([h.units for h in V.HCPCS])
_HC_TXT = vocab([h.code for h in V.HCPCS])
_BETOS = tuple(sorted({h.betos for h in V.HCPCS if h.betos}))
_HC_BETOS = np.array([_BETOS.index(h.betos) if h.betos else -1 for h in V.HCPCS])
_TOS = tuple(sorted({h.tos for h in V.HCPCS}))
_HC_TOS = np.array([_TOS.index(h.tos) for h in V.HCPCS])
_APC = vocab([h.apc for h in V.HCPCS])
_HC_NDC = vocab([V.HCPCS_NDC.get(h.code, "") for h in V.HCPCS])
_MAC_A, _MAC_B, _MAC_DME = vocab(V.MAC_A), vocab(V.MAC_B), vocab(V.MAC_DME)


def _hcpcs_txt(idx: np.ndarray) -> Txt:
    return blank(take(_HC_TXT, np.maximum(idx, 0)), idx < 0)


def _modifier(idx: np.ndarray) -> Cat:
    return cat(V.MODIFIERS, np.maximum(idx, 0), idx < 0)


class _Lines(NamedTuple):
    """Child rows of the versions: which base row each copies, and groups."""

    src: np.ndarray  # base child row per version child row
    offsets: np.ndarray  # per version row (n+1)
    factor: np.ndarray  # amount multiplier per child row


def _child_rows(base_off: np.ndarray, v: _Versions) -> _Lines:
    counts = np.diff(base_off)[v.base]
    off, group, _ = ragged(counts)
    return _Lines(ragged_take(base_off[:-1][v.base], counts), off, v.factor[group])


def _pick_txt(txts: Sequence[Txt], which: np.ndarray, idx: np.ndarray) -> Txt:
    """Row i from txts[which[i]] at idx[i] (equal widths)."""
    w = txts[0].mat.shape[1]
    mat = np.zeros((len(which), w), np.uint8)
    for k, t in enumerate(txts):  # per facility kind
        sel = which == k
        mat[sel] = t.mat[idx[sel]]
    return Txt(mat, np.full(len(which), w, np.int64))


