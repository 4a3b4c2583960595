"""CMS data-sharing rules, applied when an export job is planned.

`plan_scope` turns (organization, group, `_since`, now) into a `Scope`: the
beneficiary rows an organization may get, the limits the exporter applies
(`ExportSpec` fields) and a readable list of the rules that produced them (for
the job manifest). `ScopedExporter` is an Exporter that cannot step outside a
Scope, including the per-month enrollment test of Part D sponsors.

Population by organization kind (see config.KINDS for the per-kind rules):

- ACOs (SSP, REACH, KCC): latest CCLF8 roster of the current performance
  year (`Group/all`) or the prior year's runout roster (`Group/runout`, claims
  serviced through the runout cut-off); stale rosters are refused (404).
- Part D sponsors: beneficiaries enrolled in an attested contract, claims only
  for enrolled months and from the attestation date; no attestor, no data (403).
  `Group/<contract>` narrows to one contract; `Group/runout` (a fhirhose
  extension, like an ACO's runout) to the prior calendar year's enrolled
  months, claims serviced through its Dec 31.
- Provider practices: patients on the practice roster within its lifetime.

Then: claims lookback, 1-800-MEDICARE opt-outs, shared-system (partially
adjudicated) claims only for the model entities that get them (not GUIDE, nor
sponsors and practices: `Scope.system_types`), and substance-use-disorder
claims always excluded (42 CFR Part 2).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterable, Mapping

import msgspec
import numpy as np

from ..columns import NO_DATE, Table, date_to_days, days_to_date
from ..errors import AuthError, RequestError
from ..export.exporter import DEFAULT_SYSTEM_TYPES, Exporter, ExportSpec
from ..fhir.source import Source
from ..store.rosters import Roster, bene_rows, cat_eq, latest_file, roster_benes, roster_entries, str_eq, unique_rows
from .actors import now_s

if TYPE_CHECKING:
    from .db import AccessDB
    from .orgs import Org
    from .tokens import Principal

__all__ = ["Scope", "EnrollmentFilter", "ScopedExporter", "plan_scope", "attribution_status"]

_YEAR_KEY = 10_000  # (bene_row, year) → bene_row * 10_000 + year


@dataclass(frozen=True)
class EnrollmentFilter:
    """Per contract: sorted (bene_row, year) keys, allowed-month masks and the first day
    (attestation) claims may be serviced. A claim passes if some contract allows
    its service month for its beneficiary and its service ends on or after that day.

    It is the exporter's `ClaimRule` for Part D sponsors."""

    contracts: tuple[tuple[str, np.ndarray, np.ndarray, int], ...]

    def allows(self, owners: np.ndarray, from_days: np.ndarray, thru_days: np.ndarray) -> np.ndarray:
        ok = np.zeros(len(owners), bool)
        known = from_days != NO_DATE
        d = from_days.astype("datetime64[D]")
        years = d.astype("datetime64[Y]").astype(np.int64) + 1970
        months = d.astype("datetime64[M]").astype(np.int64) % 12
        keys = owners.astype(np.int64) * _YEAR_KEY + years
        for _, ckeys, cmasks, start in self.contracts:
            if not len(ckeys):
                continue
            pos = np.minimum(np.searchsorted(ckeys, keys), len(ckeys) - 1)
            hit = (ckeys[pos] == keys) & ((cmasks[pos] >> months) & 1).astype(bool)
            ok |= known & hit & (thru_days >= start)
        return ok

    def for_benes(self, bene_rows: np.ndarray) -> "EnrollmentFilter":
        """Only the keys of these beneficiaries (what one chunk needs)."""
        out = []
        for c, keys, masks, start in self.contracts:
            keep = np.isin(keys // _YEAR_KEY, bene_rows)
            out.append((c, keys[keep], masks[keep], start))
        return EnrollmentFilter(tuple(out))


class _ContractRecord(msgspec.Struct, array_like=True):
    contract: str
    keys: bytes  # int64
    masks: bytes  # int64
    start: int


class _ScopeRecord(msgspec.Struct, array_like=True):
    """The persisted form of a Scope (msgpack; numpy arrays as raw int64 bytes)."""

    org_id: str
    group: str
    bene_rows: bytes
    since_exempt: bytes
    types: list[str]
    since_ms: int | None
    claims_from: int | None
    claims_through: int | None
    enrollment: list[_ContractRecord] | None
    rules: list[str]
    removed: bytes = b""
    system_types: list[str] | None = None  # last, defaulted: scopes persisted before it still decode


def _i64(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, np.int64).copy()


@dataclass(frozen=True)
class Scope:
    """What one organization may receive for one request."""

    org_id: str
    group: str
    bene_rows: np.ndarray  # int64, sorted, unique
    since_exempt: np.ndarray  # bene rows that get full history despite `_since`
    types: tuple[str, ...]
    since_ms: int | None
    claims_from: int | None  # days
    claims_through: int | None  # days
    enrollment: EnrollmentFilter | None
    rules: tuple[str, ...]
    # Bene rows that left the population since `_since` (opted out, dropped from the
    # roster): not exported, their resources are listed as deleted (Bulk Data v3).
    removed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    system_types: tuple[str, ...] | None = None  # claim System-Types allowed (None: all)

    def spec(self, **options) -> ExportSpec:
        """An ExportSpec within this scope; `options` set the output knobs
        (compression, level, max_file_bytes, batch_rows, until_ms, claim_filters)
        and may narrow `types` or `since_ms` but never widen them."""
        return self.narrow(ExportSpec(**options))

    def narrow(self, spec: ExportSpec) -> ExportSpec:
        """`spec` tightened to this scope (types ∩, latest since, narrowest claim window, SUD excluded)."""
        return msgspec.structs.replace(
            spec,
            types=tuple(t for t in spec.types if t in self.types),
            since_ms=_latest(spec.since_ms, self.since_ms),
            claims_from=_latest(spec.claims_from, self.claims_from),
            claims_through=_earliest(spec.claims_through, self.claims_through),
            exclude_sud=True,
            allowed_system_types=_allowed(spec.allowed_system_types, self.system_types),
        )

    def for_benes(self, bene_rows: np.ndarray) -> "Scope":
        """This scope narrowed to some of its beneficiaries (a `patient` list, a chunk)."""
        rows = np.intersect1d(np.asarray(bene_rows, np.int64), self.bene_rows)
        removed = np.intersect1d(self.removed, np.asarray(bene_rows, np.int64))
        return replace(
            self,
            bene_rows=rows,
            since_exempt=np.intersect1d(self.since_exempt, rows),
            removed=removed,
            enrollment=None if self.enrollment is None else self.enrollment.for_benes(np.union1d(rows, removed)),
        )

    def export_chunk(self, exporter: Exporter, bene_rows: np.ndarray, spec: ExportSpec, out_dir, **kw):
        """`exporter.export_chunk` within this scope: beneficiaries, spec, since
        exemptions and the enrollment rule all come from the scope (a plain, cached
        Exporter serves many scopes)."""
        rows = np.asarray(bene_rows, np.int64)
        return exporter.export_chunk(
            rows[np.isin(rows, self.bene_rows)], self.narrow(spec), out_dir,
            since_exempt=self.since_exempt, claim_rule=self.enrollment, **kw,
        )

    def to_bytes(self) -> bytes:
        """A compact, self-contained encoding (jobs persist it; chunk tasks carry it)."""
        enrollment = None
        if self.enrollment is not None:
            enrollment = [
                _ContractRecord(c, np.ascontiguousarray(k, np.int64).tobytes(), np.ascontiguousarray(m, np.int64).tobytes(), int(s))
                for c, k, m, s in self.enrollment.contracts
            ]
        return msgspec.msgpack.encode(_ScopeRecord(
            self.org_id, self.group, np.ascontiguousarray(self.bene_rows, np.int64).tobytes(),
            np.ascontiguousarray(self.since_exempt, np.int64).tobytes(), list(self.types), self.since_ms,
            self.claims_from, self.claims_through, enrollment, list(self.rules),
            np.ascontiguousarray(self.removed, np.int64).tobytes(),
            None if self.system_types is None else list(self.system_types),
        ))

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Scope":
        r = msgspec.msgpack.decode(raw, type=_ScopeRecord)
        enrollment = None
        if r.enrollment is not None:
            enrollment = EnrollmentFilter(tuple((c.contract, _i64(c.keys), _i64(c.masks), c.start) for c in r.enrollment))
        return cls(r.org_id, r.group, _i64(r.bene_rows), _i64(r.since_exempt), tuple(r.types), r.since_ms,
                   r.claims_from, r.claims_through, enrollment, tuple(r.rules), _i64(r.removed),
                   None if r.system_types is None else tuple(r.system_types))


def _latest(a, b):
    return b if a is None else a if b is None else max(a, b)


def _earliest(a, b):
    return b if a is None else a if b is None else min(a, b)


def _allowed(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Both allow-lists at once (None allows everything)."""
    return b if a is None else a if b is None else tuple(x for x in a if x in b)


class ScopedExporter(Exporter):
    """An Exporter bound to a Scope: whatever spec or beneficiaries it is handed,
    it writes only rows the scope allows."""

    def __init__(self, tables: dict[str, Table], scope: Scope, sources: Iterable[Source], core=None):
        super().__init__(tables, list(sources), core)
        self.scope = scope

    def rows_for(self, source: Source, bene_rows: np.ndarray, spec: ExportSpec, since_exempt=None,
                 claim_rule=None) -> np.ndarray:
        scope = self.scope
        if source.rtype not in scope.types:
            return np.zeros(0, np.int64)
        bene_rows = np.asarray(bene_rows, np.int64)
        bene_rows = bene_rows[np.isin(bene_rows, scope.bene_rows)]
        exempt = scope.since_exempt if since_exempt is None else np.intersect1d(since_exempt, scope.since_exempt)
        rules = [r for r in (scope.enrollment, claim_rule) if r is not None]
        rule = _AllOf(tuple(rules)) if len(rules) > 1 else rules[0] if rules else None
        return super().rows_for(source, bene_rows, scope.narrow(spec), exempt, rule)


@dataclass(frozen=True)
class _AllOf:
    """Claim rules that must all allow a claim."""

    rules: tuple

    def allows(self, owners, from_days, thru_days) -> np.ndarray:
        ok = np.ones(len(owners), bool)
        for r in self.rules:
            ok &= r.allows(owners, from_days, thru_days)
        return ok


# -- column helpers --------------------------------------------------------------------


def _day(days: int | None) -> str:
    return "—" if days is None else days_to_date(days).isoformat()


def _utc_date(t: float) -> dt.date:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).date()


def _as_seconds(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise RequestError("_since: a time zone is required", param="_since")
        return value.timestamp()
    return float(value)


def _perf_year(today: dt.date, start: tuple[int, int]) -> int:
    return today.year if (today.month, today.day) >= start else today.year - 1


def _months_back(d: dt.date, months: int) -> dt.date:
    y, m = divmod(d.year * 12 + d.month - 1 - months, 12)
    m += 1
    last = (dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(y, m, min(d.day, last))


# -- rosters -----------------------------------------------------------------------------


def attribution_status(db: "AccessDB", tables: Mapping[str, Table], org: "Org | str", now: float | None = None) -> dict:
    """`GET /attribution_status`: load dates of the current roster and of the runout roster."""
    org = db.orgs.get(org) if isinstance(org, str) else org
    today = _utc_date(now_s(now))
    py = _perf_year(today, db.config.perf_year_start)
    out = []
    for label, kind, year in (("default", "Y", py), ("runout", "R", py - 1)):
        if label == "runout" and not db.config.rules(org.kind).runout:
            continue
        found = latest_file(tables, roster_entries(tables, org.id, kind, year))
        if found is not None:
            out.append({"type": label, "timestamp": days_to_date(found.file_date).isoformat(), "performance_year": year})
    return {"ingestion_dates": out}


# -- planning -----------------------------------------------------------------------------


def plan_scope(
    db: "AccessDB",
    store_tables: Mapping[str, Table],
    principal: "Principal",
    group: str | None,
    since,
    now=None,
    *,
    types: Iterable[str] | None = None,
) -> Scope:
    """The Scope of one export request.

    `group` is "all", "runout" or (sponsors) a contract id; None means the
    `/Patient` endpoint (same population as "all", no new-beneficiary rule).
    `since` is an aware datetime or epoch seconds; `types` the requested
    `_type` (default: all the token allows). Raises AuthError 403 (no right,
    no attestor, suspended) or RequestError 404 (unknown group, missing or
    stale roster)."""
    t = now_s(_as_seconds(now))
    since_s = _as_seconds(since)
    org = db.orgs.get(principal.org_id)
    if not org.active:
        raise AuthError(f"organization {org.id} is suspended", status=403)
    rules = db.config.rules(org.kind)
    wanted = tuple(types) if types is not None else principal.types
    principal.require_types(wanted)
    wanted = tuple(x for x in wanted if x in rules.types)
    today = _utc_date(t)
    today_days = date_to_days(today)
    plan = _Plan(db, store_tables, org, rules, today, since_s)
    applied = [f"organization {org.id}: {rules.title} ({principal.env})"]
    if rules.population == "aco_roster":
        plan.aco(group or "all", explicit_group=group is not None)
    elif rules.population == "enrollment":
        plan.enrollment(group or "all", t)
    else:
        plan.provider(group or "all")
    applied += plan.notes
    claims_from = plan.claims_from
    if rules.lookback_years:
        m, d = db.config.perf_year_start
        start = dt.date(_perf_year(today, (m, d)) - rules.lookback_years, m, d)
        claims_from = _latest(claims_from, date_to_days(start))
        applied.append(f"lookback: {rules.lookback_years} years, claims serviced from {start.isoformat()}")
    if rules.lookback_months:
        start = _months_back(today, rules.lookback_months)
        claims_from = _latest(claims_from, date_to_days(start))
        applied.append(f"lookback: {rules.lookback_months} months, claims serviced from {start.isoformat()}")
    if not rules.lookback_years and not rules.lookback_months and rules.population == "aco_roster":
        applied.append("lookback: none (all claims on file)")
    benes = plan.benes
    removed = plan.dropped
    if rules.apply_optout:
        opted = _opted_out(store_tables, today_days)
        dropped = int(np.isin(benes, opted).sum())
        if since_s is not None:
            since_day = date_to_days(_utc_date(since_s))
            removed = np.union1d(removed, benes[np.isin(benes, _opted_out(store_tables, today_days, since_day))])
        benes = benes[~np.isin(benes, opted)]
        applied.append(f"opt-out: {dropped} beneficiaries declined data sharing (1-800-MEDICARE) and are excluded")
    if len(removed):
        applied.append(f"deleted: {len(removed)} beneficiaries left the population since _since (opt-out, roster); "
                       "their resources are listed as deleted")
    exempt = plan.exempt[np.isin(plan.exempt, benes)]
    system_types = None
    if not rules.shared_system:
        system_types = DEFAULT_SYSTEM_TYPES
        applied.append(f"shared-system (partially adjudicated) claims: not available to {rules.title}")
    elif rules.population == "aco_roster":
        applied.append("shared-system (partially adjudicated) claims: on request (_typeFilter _tag SharedSystem)")
    applied.append("42 CFR Part 2: substance-use-disorder claims are never exported")
    applied.append(f"resource types: {', '.join(wanted) or 'none'}")
    applied.append(f"{len(benes)} beneficiaries in scope")
    return Scope(
        org_id=org.id,
        group=group or "all",
        bene_rows=benes,
        since_exempt=exempt,
        types=wanted,
        since_ms=None if plan.since_s is None else int(plan.since_s * 1000),
        claims_from=claims_from,
        claims_through=plan.claims_through,
        enrollment=plan.enrollment_filter,
        rules=tuple(applied),
        removed=np.asarray(removed, np.int64),
        system_types=system_types,
    )


def _opted_out(tables, today_days: int, since_day: int | None = None) -> np.ndarray:
    """Bene rows whose latest preference in effect today is N (do not share); with
    `since_day`, only those whose opt-out took effect on or after that day."""
    t = tables["optout"]
    if not t.n:
        return np.zeros(0, np.int64)
    eff = t["effective_dt"].values.astype(np.int64)
    rows = np.flatnonzero((eff != NO_DATE) & (eff <= today_days))
    benes = bene_rows(tables, t, rows)
    rows, benes = rows[benes >= 0], benes[benes >= 0]
    # Latest per beneficiary: sort by (bene, effective date, file order) and keep each bene's last.
    order = np.lexsort((rows, eff[rows], benes))
    rows, benes = rows[order], benes[order]
    last = np.r_[benes[1:] != benes[:-1], True]
    no = cat_eq(t["pref_ind"], "N")[rows[last]]
    if since_day is not None:
        no &= eff[rows[last]] >= since_day
    return np.unique(benes[last][no])


class _Plan:
    """Population rules of one request; fills benes, exempt, limits and notes."""

    def __init__(self, db, tables, org, rules, today: dt.date, since_s):
        self.db, self.tables, self.org, self.rules, self.today = db, tables, org, rules, today
        self.cfg = db.config
        self.since_s = since_s
        self.benes = np.zeros(0, np.int64)
        self.exempt = np.zeros(0, np.int64)
        self.dropped = np.zeros(0, np.int64)  # on the roster in effect at _since, not on today's
        self.claims_from: int | None = None
        self.claims_through: int | None = None
        self.enrollment_filter: EnrollmentFilter | None = None
        self.notes: list[str] = []

    def _no_group(self, group: str):
        raise RequestError(f"Group/{group[:64]} is not a group of organization {self.org.id}", status=404, param="group")

    def aco(self, group: str, explicit_group: bool) -> None:
        if group not in ("all", "runout") or (group == "runout" and not self.rules.runout):
            self._no_group(group)
        py = _perf_year(self.today, self.cfg.perf_year_start)
        runout = group == "runout"
        year, kind = (py - 1, "R") if runout else (py, "Y")
        max_age = self.cfg.runout_cutoff_days if runout else self.cfg.stale_roster_days
        what = "runout roster" if runout else "roster"
        roster = latest_file(self.tables, roster_entries(self.tables, self.org.id, kind, year))
        if roster is None:
            raise RequestError(
                f"no {what} (CCLF8) for performance year {year} has been loaded for {self.org.id}", status=404, param="group"
            )
        age = date_to_days(self.today) - roster.file_date
        if age > max_age:
            raise RequestError(
                f"the {what} for {self.org.id} loaded {_day(roster.file_date)} is {age} days old, "
                f"past the {max_age}-day limit; no data until a newer one is loaded",
                status=404,
                param="group",
            )
        self.benes = roster_benes(self.tables, roster)
        self.notes.append(
            f"attribution: {what} (CCLF8) for performance year {year} loaded {_day(roster.file_date)}: "
            f"{len(self.benes)} beneficiaries"
        )
        if runout:
            through = self.cfg.runout_claims_through or dt.date(year, 12, 31)
            self.claims_through = date_to_days(through)
            self.notes.append(f"runout: claims serviced through {through.isoformat()}")
        elif self.since_s is not None:
            self._since_roster(roster, exempt_new=explicit_group)

    def _since_roster(self, roster: Roster, exempt_new: bool) -> None:
        """The roster in effect at `_since` against today's: beneficiaries it lacked get full
        history (BCDA, `Group/all` only: `exempt_new`); those it had and today's lacks left
        the population (listed as deleted)."""
        since_day = date_to_days(_utc_date(self.since_s))
        if roster.file_date < since_day:
            if exempt_new:
                self.notes.append("_since: roster unchanged since _since; all beneficiaries get updates only")
            return
        older = latest_file(self.tables, roster_entries(self.tables, self.org.id, "Y", None), before=since_day)
        old = np.zeros(0, np.int64) if older is None else roster_benes(self.tables, older)
        self.dropped = np.setdiff1d(old, self.benes)
        if exempt_new:
            self.exempt = self.benes[~np.isin(self.benes, old)]
            base = "no earlier roster" if older is None else f"roster loaded {_day(older.file_date)}"
            self.notes.append(f"_since: {len(self.exempt)} beneficiaries new since {base} get their full history")

    def provider(self, group: str) -> None:
        if group != "all":
            self._no_group(group)
        days = self.cfg.provider_roster_days
        rows = roster_entries(self.tables, self.org.id, None, None)
        dates = self.tables["roster"]["file_date"].values[rows].astype(np.int64)
        rows = rows[dates >= date_to_days(self.today) - days]
        if not len(rows):
            raise RequestError(f"no patients were attributed to {self.org.id} in the last {days} days", status=404, param="group")
        self.benes = unique_rows(bene_rows(self.tables, self.tables["roster"], rows))
        self.notes.append(f"attribution: practice roster entries of the last {days} days: {len(self.benes)} patients")

    def enrollment(self, group: str, t: float) -> None:
        contracts = self.db.orgs.contracts(self.org.id)
        if group not in ("all", "runout") and group not in contracts:
            self._no_group(group)
        chosen = contracts if group in ("all", "runout") else [group]
        attested = self.db.orgs.attested_contracts(self.org.id, t)
        starts = {c: attested[c] for c in chosen if c in attested}
        missing = [c for c in chosen if c not in starts]
        if not starts:
            raise AuthError(
                f"{self.org.id}: no attestor is in place for contract {', '.join(chosen) or '(none)'}; "
                "data resumes from the date a CEO, CFO or COO attests again",
                status=403,
            )
        if missing:
            self.notes.append(f"attestation: contract {', '.join(missing)} not attested; excluded")
        enroll = self.tables["enroll"]
        cur_year, cur_month = self.today.year, self.today.month
        parts, populations = [], []
        for c in sorted(starts):
            start = _utc_date(starts[c])
            rows = np.flatnonzero(str_eq(enroll["cntrct_id"], c))
            benes = bene_rows(self.tables, enroll, rows)
            years = enroll["year"].values[rows].astype(np.int64)
            masks = enroll["month_mask"].values[rows].astype(np.int64) & 0xFFF
            # Months before the attestation month, and months still to come, carry no data.
            masks = np.where(years < start.year, 0, masks)
            masks = np.where(years == start.year, masks & ~((1 << (start.month - 1)) - 1), masks)
            masks = np.where(years > cur_year, 0, masks)
            masks = np.where(years == cur_year, masks & ((1 << cur_month) - 1), masks)
            if group == "runout":
                masks = np.where(years == cur_year - 1, masks, 0)
            keep = (benes >= 0) & (masks != 0)
            keys = benes[keep] * _YEAR_KEY + years[keep]
            order = np.argsort(keys, kind="stable")
            keys, masks = keys[order], masks[keep][order]
            ukeys, first = np.unique(keys, return_index=True)
            umasks = np.bitwise_or.reduceat(masks, first) if len(keys) else masks
            parts.append((c, ukeys, umasks, date_to_days(start)))
            populations.append(ukeys // _YEAR_KEY)
            self.notes.append(
                f"attestation: contract {c} attested {start.isoformat()}; claims only for months enrolled "
                f"in {c} from then on ({len(np.unique(populations[-1]))} enrollees)"
            )
        self.benes = np.unique(np.concatenate(populations)).astype(np.int64)
        self.enrollment_filter = EnrollmentFilter(tuple(parts))
        self.claims_from = min(p[3] for p in parts)
        if group == "runout":
            through = dt.date(cur_year - 1, 12, 31)
            self.claims_through = date_to_days(through)
            self.notes.append(f"runout: months enrolled in {cur_year - 1} only, claims serviced through {through.isoformat()}")
        floor_s = min(starts.values())
        if self.rules.since_floor:
            floor_s = max(floor_s, date_to_days(self.rules.since_floor) * 86400.0)
        if self.since_s is None or self.since_s < floor_s:
            when = dt.datetime.fromtimestamp(floor_s, dt.timezone.utc).isoformat(timespec="seconds")
            self.notes.append(f"_since: raised to {when} (nothing updated before the attestation or 2020-01-01)")
            self.since_s = floor_s
