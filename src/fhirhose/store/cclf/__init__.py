"""CCLF ingest: Claim and Claim Line Feed files, as ACOs receive them, into the store.

Input: plain files or zip archives (zips may hold zips) named like
`P.A1234.ACO.ZC1Y24.D240115.T1234567` (`T.` for test files; BCDA's archives
put a system name first: `T.BCD.A0001.ZC0Y18.D181120.T1000011`), or bare
`ZC0`..`ZCB` names (BCDA's synthetic sets: give `org_id` and `year`). `ZC<n>`
names the file (0–9, A, B), `Y<yy>`/`R<yy>` a performance year or its runout,
`D<yymmdd>` the delivery date. Files of one delivery share ACO, kind, year and
date; each delivery needs its CCLF0, whose record counts and lengths are checked.

Every record must be exactly CCLF0's record length and every field must parse by
its picture (see `fixed`); `trimmed=True` accepts BCDA's synthetic sets, whose
lines lost their trailing blanks, and cannot then detect a truncated record.

Rules beyond the layouts (CCLF Information Packet v36), stated here because a
reader of the data should know them:
- A delivery with any claim file must have every file its CCLF0 lists. A
  delivery with no claim files at all (BCDA ships only CCLF0, 8 and 9) loads
  its beneficiary files; CCLF8 and CCLF9 are required when listed.
- CCLF8 records that do not reach BENE_DOB carry only an MBI (BCDA's synthetic
  rosters): they load into the roster only.
- CCLFA is folded into its CCLF1 header (1:1 by CUR_CLM_UNIQ_ID). CCLFB (Part B
  demonstration codes) is validated, but the schema has no columns for it.
- CCLF5/6 header fields come from a claim's first line; `clm_pmt_amt` and
  `clm_alowd_chrg_amt` are the sums over its lines.
- Every error names the file, line and field; a delivery loads whole or not at all.

Modules, in the order data flows: `files` (paths and zips → buffers),
`delivery` (which files form one delivery; its CCLF0), `fixed` (fixed-width
records → checked columns), `tables` (records → the store's tables, and
`read_cclf`), `prefs` (1-800-MEDICARE preference files).
"""

from .fixed import Field, layout
from .prefs import PREFS_LAYOUT, ingest_prefs, read_prefs
from .tables import ingest_cclf, read_cclf

__all__ = ["read_cclf", "ingest_cclf", "read_prefs", "ingest_prefs", "layout", "Field", "PREFS_LAYOUT"]
