"""`Source`: one template feeding one resource type — what the exporter walks.

It lives below both the registry (which builds the sources fhirhose emits) and
the exporter (which writes them), so neither imports the other for it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..columns import Table
from ..template import Template

__all__ = ["Source"]


class Source(NamedTuple):
    """One template feeding one resource type, over one root table.

    `select(table, rows) -> rows` narrows candidate rows (claim type, coverage
    part); `service_dates` names the (from, thru) date columns `_typeFilter`
    service-date tests; claim sources are those whose table links from `bene`.
    `system_type` is the claims' System-Type (`SharedSystem`, `NationalClaimsHistory`,
    `DDPS`; None for Patient and Coverage) and `outcome` the column holding each claim's
    adjudication outcome (None: every claim is `complete`), what BCDA v3's `_tag` and
    `outcome` filters test.
    """

    rtype: str
    template: Template
    table: str
    select: Callable[[Table, np.ndarray], np.ndarray] | None = None
    service_dates: tuple[str, str] | None = None
    system_type: str | None = None
    outcome: str | None = None
