"""Access-control configuration: organization kinds and their data rules.

The per-kind rules follow what CMS documents for its bulk APIs:

- BCDA (Shared Savings Program, ACO REACH, Kidney Care Choices): roster from
  the latest CCLF8 of the current performance year; a roster older than
  `stale_roster_days` (BCDA's CCLF_CUTOFF_DATE_DAYS, 50) is not served; runout
  rosters (prior year) for `runout_cutoff_days` (RUNOUT_CUTOFF_DATE_DAYS, 180)
  with claims through Dec 31 of the prior year. Lookback: claims from the
  start of the performance year `lookback_years` back (REACH 3, KCC 2); SSP
  has none ("data as early as 2014").
- AB2D (Part D sponsors): data only while an attestor is in place and from the
  attestation date on; `_since` no earlier than 2020-01-01 or the attestation
  date; claims only for months the beneficiary was enrolled in the contract.
- DPC (provider practices): patients on the practice roster (attributions last
  90 days), claims from the last 18 months.

BCDA's model entities are one table (`KINDS`, the rows with an `id_pattern`): the
organization id says the model (SSP `A####`, REACH `D####`, CKCC `C####`, KCF `K####`,
and the newer models), and each row carries the model's lookback and data rules,
which the access rules (`rules.plan_scope`), the admin API (ids are checked against
the pattern) and the demo read. Shared-system (partially adjudicated) claims go to
every BCDA model entity except GUIDE participants (BCDA v3 guide). Lookbacks: SSP none
("as far back as 2014"), REACH 3 years, KCC 2 years (BCDA v3 "Comparison of BCDA v3 and
CCLF files"); KCF 2 years (BCDA's model configuration); GUIDE, IOTA and ACCESS 2 years
(the guide: "the previous 2 or more performance years, depending on your model"). The
id patterns of the newer models (GUIDE, IOTA, ACCESS) are fhirhose's: the guide does
not publish them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace

from ..fhir.registry import RESOURCE_TYPES

__all__ = ["KindRules", "AccessConfig", "KINDS", "ORG_KINDS", "ALL_TYPES", "MODEL_ENTITY_KINDS", "kind_for_id"]

ALL_TYPES = RESOURCE_TYPES  # every kind below may read every type fhirhose emits


@dataclass(frozen=True)
class KindRules:
    """What one organization kind may get, and how its population is found."""

    kind: str
    title: str
    types: tuple[str, ...]
    population: str  # "aco_roster" | "enrollment" | "provider_roster"
    lookback_years: int | None = None  # from the performance-year start, `lookback_years` back
    lookback_months: int | None = None  # rolling window ending today
    data_from_attestation: bool = False  # no claims serviced / updated before the attestation
    needs_active_attestor: bool = False  # no data at all while nobody attests
    since_floor: dt.date | None = None  # earliest `_since` honoured
    apply_optout: bool = True  # 1-800-MEDICARE data-sharing preferences
    runout: bool = False  # `Group/runout` offered
    id_pattern: str | None = None  # BCDA model entities: the organization ids of the model
    shared_system: bool = False  # shared-system (partially adjudicated) claims, BCDA v3 `_tag`

    def matches_id(self, org_id: str) -> bool:
        """Whether `org_id` is an id of this model (always, for kinds without a pattern)."""
        return self.id_pattern is None or re.fullmatch(self.id_pattern, org_id) is not None


KINDS: dict[str, KindRules] = {
    k.kind: k
    for k in (
        # BCDA model entities (attribution rosters, CCLF8).
        KindRules("ssp", "Shared Savings Program ACO", ALL_TYPES, "aco_roster", runout=True,
                  id_pattern=r"A\d{4}", shared_system=True),
        KindRules("reach", "ACO REACH", ALL_TYPES, "aco_roster", lookback_years=3, runout=True,
                  id_pattern=r"D\d{4}", shared_system=True),
        KindRules("kcc", "Kidney Care Choices (CKCC)", ALL_TYPES, "aco_roster", lookback_years=2, runout=True,
                  id_pattern=r"C\d{4}", shared_system=True),
        KindRules("kcf", "Kidney Care First", ALL_TYPES, "aco_roster", lookback_years=2, runout=True,
                  id_pattern=r"K\d{4}", shared_system=True),
        KindRules("guide", "GUIDE (Guiding an Improved Dementia Experience)", ALL_TYPES, "aco_roster",
                  lookback_years=2, runout=True, id_pattern=r"GUIDE-\d{5}", shared_system=False),
        KindRules("iota", "Increasing Organ Transplant Access (IOTA)", ALL_TYPES, "aco_roster", lookback_years=2,
                  runout=True, id_pattern=r"IOTA\d{3}", shared_system=True),
        KindRules("access", "ACCESS (Advancing Chronic Care with Effective, Scalable Solutions)", ALL_TYPES,
                  "aco_roster", lookback_years=2, runout=True, id_pattern=r"ACCESS\d{4}", shared_system=True),
        KindRules(
            "sponsor",
            "Part D sponsor contract",
            ("ExplanationOfBenefit",),
            "enrollment",
            data_from_attestation=True,
            needs_active_attestor=True,
            since_floor=dt.date(2020, 1, 1),
        ),
        KindRules("provider", "Provider practice", ALL_TYPES, "provider_roster", lookback_months=18),
    )
}
ORG_KINDS = tuple(KINDS)
MODEL_ENTITY_KINDS = tuple(k for k, r in KINDS.items() if r.id_pattern is not None)


def kind_for_id(org_id: str, kinds: dict[str, KindRules] = KINDS) -> str | None:
    """The BCDA model entity kind whose id pattern `org_id` matches (None: no model's)."""
    return next((k for k, r in kinds.items() if r.id_pattern is not None and r.matches_id(org_id)), None)


@dataclass(frozen=True)
class AccessConfig:
    """Every tunable of the access layer; pass one to AccessDB and the services."""

    kinds: dict[str, KindRules] = field(default_factory=lambda: dict(KINDS))
    secret_days: int = 90  # client secrets expire (BCDA/AB2D rotate every 90 days)
    max_ips: int = 8
    allow_loopback: bool = False  # test mode: 127.0.0.0/8 and ::1 pass every allowlist
    scrypt_n: int = 2**14
    scrypt_r: int = 8
    scrypt_p: int = 1
    # tokens
    issuer: str = "fhirhose"
    token_url: str = "http://127.0.0.1/auth/token"
    basic_token_seconds: int = 1200  # BCDA bearer tokens last 20 minutes
    smart_token_seconds: int = 300  # SMART backend services: at most 5 minutes
    assertion_max_seconds: int = 300  # client assertion exp at most 5 minutes ahead
    clock_skew_seconds: int = 30
    assertion_algs: tuple[str, ...] = ("RS384", "ES384")
    token_alg: str = "HS256"  # access tokens: HS256 with the server key, or ES256
    rate_per_minute: float = 30.0  # token requests per organization
    # Lock out repeated failed client authentication (`access.throttle`); off only in
    # fuzz tests that send thousands of bad requests on purpose.
    throttle_failures: bool = True
    rate_burst: int = 10
    # attestation
    attestor_titles: tuple[str, ...] = ("CEO", "CFO", "COO")
    attestation_grace_days: int = 0  # data keeps flowing this long after the last attestor leaves
    # rosters
    stale_roster_days: int = 50
    runout_cutoff_days: int = 180
    runout_claims_through: dt.date | None = None  # default: Dec 31 of the prior year
    provider_roster_days: int = 90
    perf_year_start: tuple[int, int] = (1, 1)  # (month, day) the performance year turns over

    def rules(self, kind: str) -> KindRules:
        return self.kinds[kind]

    def with_(self, **kw) -> "AccessConfig":
        return replace(self, **kw)
