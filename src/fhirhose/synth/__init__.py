"""Synthetic Medicare claims: realistic, deterministic per seed, vectorized.

`generate(n, seed)` builds every store table (schema-complete, sorted by
beneficiary, links filled) plus the organizations that read them: ACOs with
attribution rosters (BCDA), Part D sponsor contracts with monthly enrollment
(AB2D), and 1-800-MEDICARE data-sharing preferences.

Utilization per beneficiary-year (sources):
- carrier 14, outpatient 2.3, inpatient 0.2, Part D events 16: CMS 2008-2010
  DE-SynPUF record counts per beneficiary-year ("Number of Records" table,
  cms.gov .../SynPUFs/DE_Syn_PUF). DE-SynPUF counts every beneficiary,
  Medicare Advantage enrollees included (they have no FFS claims), so the
  generator gives FFS enrollees RATE/FFS share and Part D enrollees
  RATE/Part D share, which keeps the all-beneficiary rates above.
- SNF 0.06 stays per FFS beneficiary-year, billed monthly (~0.09 claims):
  MedPAC March 2019 report ch. 8, 2.3 million covered stays for 1.6 million
  of ~38 million FFS beneficiaries in 2018.
- hospice: about half of decedents (MedPAC March 2019 ch. 12: 1.5 million
  users in 2017, "more than half of decedents"), median stay 18 days and
  mean ~90 (same chapter), billed monthly.
- home health 0.17 claims per FFS beneficiary-year: MedPAC March 2019
  ch. 9, ~3.4 million users and 6.3 million 60-day episodes in 2017 (one
  claim per episode; 30-day periods since 2020 double the claims per user).
- DME 1.4 claims per FFS beneficiary-year: GAO-11-337R, 10.6 million of
  46.3 million beneficiaries used DMEPOS in 2009 (23 %), at roughly six
  supply/rental claims per user and year.
- deaths ~4.5 % a year (age-dependent hazard); ~8 % of claims carry a later
  adjustment or a cancel + rebill (CCLF Information Packet §5.1.2 versions).

Everything is whole-array numpy: a Python loop runs per table, column,
profile or organization, never per claim or beneficiary. Beneficiary-level
arrays are drawn once (`people`, `providers`); claims are drawn per chunk of
`CHUNK` beneficiaries by one module per claim family (`institutional`,
`carrier`, `dme` (both through `professional`), `pde`; shared machinery in
`claims`) from random streams keyed by (seed, table, chunk), so `generate`
(in memory, `dataset`) and `write` (streamed into a store, memory bounded by
one chunk, `writer`) give the same data for the same seed. Organizations:
`orgs`; their presets: `presets`; string and sampling kit: `kit`; codes and
their weights: `vocab`.
"""

from .claims import FFS_RATES, RATES
from .dataset import CHUNK, SynthData, chunks, generate, organizations
from .orgs import SynthOrg, write_orgs
from .presets import AS_OF, PRESETS, Preset
from .writer import write

__all__ = [
    "SynthOrg", "SynthData", "Preset", "PRESETS", "AS_OF", "CHUNK", "RATES", "FFS_RATES",
    "generate", "organizations", "chunks", "write", "write_orgs",
]
