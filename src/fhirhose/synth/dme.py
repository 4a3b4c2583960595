"""DME claims (CCLF6): durable medical equipment, prosthetics, orthotics and
supplies, billed by national suppliers and ordered by the beneficiary's
primary care provider."""

from __future__ import annotations

import numpy as np

from . import vocab as V
from .claims import _HC_TOS, _MAC_DME, _TOS, FFS_RATES, _const_cat, _scaled, _zero_money
from .kit import (
    cat,
    digits,
    money,
    qty,
    take,
    to_str,
)
from .people import LOC_USPS, STATE_FIPS, USPS, Pop
from .professional import Family, _compile_prof, draw
from .providers import NATIONAL, Providers

FAMILY = Family("dme", _compile_prof(V.DME), FFS_RATES["dme"], False, 14.0, _MAC_DME, 0.9, (3, 2), 0, None)


def dme(pop: Pop, prov: Providers, rows: np.ndarray, chunk: int):
    """DME claims of a chunk: header columns, line columns (`dme_line`) and
    the beneficiary row of each claim."""
    d = draw(FAMILY, pop, prov, rows, chunk)
    rng, head, lines, m, b, vb, L, lrow, line_bene, hcpcs, allowed, units, prvdr, spec, lab, state = d
    ls = L.src
    supplier = (rng.random(m) ** 1.5 * NATIONAL["dme"]).astype(np.int64)
    head.update(
        clm_blg_prvdr_npi_num=to_str(take(prov.facility["dme"], supplier[b])),
        clm_rfrg_prvdr_npi_num=to_str(take(prov.individual, pop.pcp[vb])),
    )
    purchase = np.isin(_HC_TOS[hcpcs], [_TOS.index("P")])
    lines.update(
        clm_prmry_pyr_cd=_const_cat(("A", "B", "E"), len(ls), missing=rng.random(len(ls)) > 0.02),
        payto_prvdr_npi_num=to_str(take(prov.facility["dme"], supplier[lrow])),
        ordrg_prvdr_npi_num=to_str(take(prov.individual, pop.pcp[line_bene])),
        prvdr_state_cd=cat(STATE_FIPS, state),
        line_prmry_alowd_chrg_amt=_zero_money(len(ls)),
        line_dme_prchs_price_amt=money(_scaled(np.where(purchase, allowed, 0)[ls], L.factor)),
        prvdr_num=to_str(digits(10**9 + supplier[lrow] * 7_919, 10)),
        dmerc_line_prcng_state_cd=cat(USPS, LOC_USPS[pop.loc[line_bene]]),
        dmerc_line_supplr_type_cd=_const_cat(("0", "1", "3"), len(ls)),
        dmerc_line_scrn_svgs_amt=_zero_money(len(ls)),
        dmerc_line_mtus_cnt=qty(units[ls]),
        dmerc_line_mtus_cd=_const_cat(("3",), len(ls)),
    )
    return head, {"dme_line": (lines, L.offsets)}, vb
