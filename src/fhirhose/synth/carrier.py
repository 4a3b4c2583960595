"""Carrier claims (CCLF5): Part B physician, supplier, ambulance and lab
services, with SUD treatment visits for beneficiaries with a substance use
disorder."""

from __future__ import annotations

import numpy as np

from . import vocab as V
from .claims import _MAC_B, RATES, _const_cat
from .kit import (
    blank,
    cat,
    concat,
    digits,
    qty,
    take,
    to_str,
)
from .people import LOC_TXT, STATE_FIPS, Pop
from .professional import Family, _compile_prof, draw
from .providers import Providers

_OFFICE, _SUD_TREATMENT = 0, len(V.CARRIER)
FAMILY = Family("partb", _compile_prof(V.CARRIER + [V.CARRIER_SUD]), RATES["carrier"], True, 12.0, _MAC_B,
                0.98, (0, 1), 1, (_OFFICE, _SUD_TREATMENT))


def carrier(pop: Pop, prov: Providers, rows: np.ndarray, chunk: int):
    """Carrier claims of a chunk: header columns, line columns (`partb_line`)
    and the beneficiary row of each claim."""
    d = draw(FAMILY, pop, prov, rows, chunk)
    rng, head, lines, m, b, vb, L, lrow, line_bene, hcpcs, allowed, units, prvdr, spec, lab, state = d
    ls = L.src
    line_prvdr = prvdr[lrow]
    npi_col = to_str(take(prov.individual, line_prvdr))
    head["clm_blg_prvdr_npi_num"] = to_str(take(prov.individual, prvdr[b]))
    spec_l = spec[lrow]
    miles = hcpcs[ls] == V.HCPCS_INDEX["A0425"]
    # group (0) or solo physician (1); ambulance supplier (2); independent lab (4)
    solo = (rng.random(len(ls)) < 0.7).astype(np.int64)
    prvdr_type = np.where(spec_l == V.SPECIALTY.index("69"), 3, np.where(spec_l == V.SPECIALTY.index("59"), 2, solo))
    clia = concat(digits(state % 100, 2), "D", digits(line_prvdr % 10**7, 7))
    lines.update(
        rndrg_prvdr_type_cd=cat(("0", "1", "2", "4"), prvdr_type),
        rndrg_prvdr_fips_st_cd=cat(STATE_FIPS, state),
        clm_line_prmry_pyr_cd=_const_cat(("A", "B", "E"), len(ls), missing=rng.random(len(ls)) > 0.02),
        rndrg_prvdr_npi_num=npi_col,
        clm_rndrg_prvdr_npi_num=npi_col,
        org_npi_num=to_str(take(prov.group, line_prvdr // 6)),
        carr_line_rdcd_pmt_phys_astn_c=_const_cat(("0",), len(ls)),
        carr_line_prcng_lclty_cd=cat(tuple(f"{k:02d}" for k in range(len(V.LOCATIONS))), pop.loc[line_bene]),
        prvdr_zip=to_str(concat(take(LOC_TXT["zip3"], pop.loc[line_bene]), digits(line_prvdr % 10**6, 6))),
        carr_line_clia_lab_num=to_str(blank(clia, ~lab[ls])),
        carr_line_mtus_cnt=qty(units[ls]),
        carr_line_mtus_cd=cat(("1", "3"), np.where(miles, 0, 1)),
    )
    return head, {"partb_line": (lines, L.offsets)}, vb


