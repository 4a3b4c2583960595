"""Presets: the organizations of a synthetic dataset (ACOs, Part D sponsor and
Medicare Advantage contracts), its default size, Medicare Advantage share and
history length; and the default as-of date."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

AS_OF = dt.date(2025, 6, 30)

# Part D coverage: MA enrollees with drug coverage (MA-PD), FFS enrollees with a PDP.
MAPD_SHARE = 0.90
PDP_SHARE = 0.70


class Aco(NamedTuple):
    """An ACO of a preset: BCDA client with an attribution roster."""

    org_id: str
    name: str
    program: str
    size: float  # < 1: share of eligible FFS beneficiaries; >= 1: count


class Contract(NamedTuple):
    """A Part D sponsor or Medicare Advantage contract of a preset; `weight` is its share of enrollees."""

    contract_id: str
    name: str
    weight: float
    org: bool  # served as an organization (AB2D client)


class Preset(NamedTuple):
    """Default population size, the organizations of a dataset and the share
    of beneficiaries in Medicare Advantage (who have no FFS claims)."""

    benes: int
    acos: tuple[Aco, ...]
    pdp: tuple[Contract, ...]
    ma: tuple[Contract, ...]
    ma_share: float = 0.30
    # Years of claims history per beneficiary, drawn uniformly from this inclusive range
    # (fewer for those entitled later). (1, 1) is one year: ~37 claims per beneficiary.
    history_years: tuple[int, int] = (1, 3)

    @property
    def ffs_share(self) -> float:
        return 1 - self.ma_share

    @property
    def partd_share(self) -> float:
        return self.ma_share * MAPD_SHARE + self.ffs_share * PDP_SHARE


PRESETS: dict[str, Preset] = {
    "default": Preset(
        10_000,
        (
            Aco("A1001", "Cascadia Shared Savings ACO", "Shared Savings", 0.20),
            Aco("A1002", "Piñon Valley Health Partners", "Shared Savings", 0.05),
            Aco("D1001", "Lakeshore REACH ACO", "REACH", 0.08),
            Aco("K1001", "Riverside Kidney Care Choices", "KCC", 0.01),
        ),
        (
            Contract("S1001", "Evergreen Rx Part D", 0.45, True),
            Contract("S1002", "Bahía Prescription Plan", 0.30, True),
            Contract("S2001", "Northwind PDP", 0.25, False),
        ),
        (
            Contract("H1001", "Summit Medicare Advantage (MA-PD)", 0.6, True),
            Contract("H2001", "Coastal Health Advantage", 0.4, False),
        ),
    ),
    # `fhirhose serve --demo`: a small and a large ACO and one Part D sponsor,
    # everyone in FFS (so the ACOs can attribute most of the population).
    "demo": Preset(
        12_000,
        (
            Aco("A0001", "Demo Small ACO", "Shared Savings", 100),
            Aco("A0002", "Demo Large ACO", "Shared Savings", 10_000),
            # Model entities with other rules: REACH (3-year lookback), GUIDE (no shared-system claims).
            Aco("D0001", "Demo REACH ACO", "REACH", 200),
            Aco("GUIDE-00001", "Demo GUIDE Program", "GUIDE", 100),
        ),
        (Contract("S0001", "Demo Part D Sponsor", 1.0, True),),
        (Contract("H0001", "Demo Medicare Advantage", 1.0, False),),
        ma_share=0.0,
    ),
    # One organization per BCDA model entity kind with rules of its own (SSP no lookback,
    # REACH 3 years, CKCC 2 years, GUIDE no shared-system claims) and a Part D sponsor,
    # over 3-5 years of history so the lookbacks cut something: BCDA v3's rules side by side.
    "models": Preset(
        800,
        (
            Aco("A0101", "Models Shared Savings ACO", "Shared Savings", 80),
            Aco("D0101", "Models REACH ACO", "REACH", 80),
            Aco("C0101", "Models CKCC Kidney ACO", "KCC", 60),
            Aco("GUIDE-00101", "Models GUIDE Program", "GUIDE", 60),
        ),
        (Contract("S0101", "Models Part D Sponsor", 1.0, True),),
        (Contract("H0101", "Models Medicare Advantage", 1.0, False),),
        ma_share=0.0,
        history_years=(3, 5),
    ),
}
