"""Data rules: which beneficiaries and claims each organization gets, counted from
the files the real exporter writes for the planned scope."""

import base64
import datetime as dt
import gzip
import json

import numpy as np
import pytest

from fhirhose import AuthError, RequestError
from fhirhose.access import Actor, Scope, ScopedExporter, TokenRequest, TokenService, attribution_status, plan_scope
from fhirhose.export.exporter import Exporter, ExportSpec
from fhirhose.store import schema

from .support.access_world import DAY, NOW, SUD_CLAIM, UTC, add_user, build_store, carrier, make_db, pde, sources


@pytest.fixture(scope="module")
def tables():
    return build_store()


@pytest.fixture
def db(tmp_path):
    return make_db(tmp_path / "access.db")


def principal(db, org_id, scope=None, now=NOW):
    """A real principal: sandbox credential → Basic token request → verified token."""
    ops, _ = add_user(db, org_id, "data_ops")
    cred, secret = db.credentials.issue(ops, org_id, now=now - DAY)
    svc = TokenService(db)
    body = "grant_type=client_credentials" + (f"&scope={scope}" if scope else "")
    auth = "Basic " + base64.b64encode(f"{cred.client_id}:{secret}".encode()).decode()
    tok = svc.issue(TokenRequest.parse(body.encode(), "application/x-www-form-urlencoded", auth), "127.0.0.1", now=now)
    return svc.verify_access_token(tok.access_token, "127.0.0.1", now=now)


def exported(tables, scope, tmp_path, spec=None):
    """rtype → sorted ids, read back from the NDJSON files the scoped exporter wrote."""
    ex = ScopedExporter(tables, scope, sources())
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    files = ex.export_chunk(scope.bene_rows, spec or scope.spec(), out)
    got = {}
    for f in files:
        for line in gzip.decompress((out / f.name).read_bytes()).splitlines():
            got.setdefault(f.type, []).append(json.loads(line)["id"])
    return {k: sorted(v) for k, v in got.items()}


def eob_ids(got):
    return set(got.get("ExplanationOfBenefit", []))


# -- ACOs -------------------------------------------------------------------------------


def test_ssp_group_all_gets_latest_roster_minus_optouts_all_history(db, tables, tmp_path):
    p = principal(db, "A0001")
    scope = plan_scope(db, tables, p, "all", None, NOW)
    TokenService(db).audit_request(p, "export.kickoff", "127.0.0.1", now=NOW, group="all", benes=len(scope.bene_rows))
    last = db.audit.recent(p.credential_id, 1)[0]
    assert (last.action, last.ip, last.org_id, last.detail) == ("export.kickoff", "127.0.0.1", "A0001", {"group": "all", "benes": 4})
    assert scope.bene_rows.tolist() == [0, 1, 2, 4]  # 3 opted out; 1's opt-out is not in effect yet
    got = exported(tables, scope, tmp_path)
    assert got["Patient"] == ["-0", "-1", "-2", "-4"]
    assert got["Coverage"] == ["part-a-0", "part-a-1", "part-a-2", "part-a-4"]
    assert eob_ids(got) == carrier([0, 1, 2, 4]) | pde([0, 1, 2, 4])
    assert len(eob_ids(got)) == 4 * 9 - 1 + 4 * 2  # SSP: no lookback; SUD claim withheld
    assert SUD_CLAIM not in eob_ids(got)
    assert any("opt-out: 1 " in r for r in scope.rules) and any("42 CFR Part 2" in r for r in scope.rules)


def test_reach_three_year_lookback_from_performance_year(db, tables, tmp_path):
    scope = plan_scope(db, tables, principal(db, "D0001"), "all", None, NOW)
    assert scope.bene_rows.tolist() == [2, 7]
    got = exported(tables, scope, tmp_path)
    assert eob_ids(got) == carrier([2, 7], lambda d: d >= "2021-01-01") | pde([2, 7])
    assert len(eob_ids(got)) == 6 + 7 + 4
    assert any("3 years, claims serviced from 2021-01-01" in r for r in scope.rules)


def test_kcc_stale_roster_is_404_naming_the_date(db, tables):
    with pytest.raises(RequestError) as e:
        plan_scope(db, tables, principal(db, "C0001"), "all", None, NOW)
    assert e.value.status == 404 and "2024-03-01" in str(e.value) and "50-day" in str(e.value)


def test_kcc_two_year_lookback_when_roster_fresh(tmp_path, tables):
    db = make_db(tmp_path / "a.db", stale_roster_days=120)
    scope = plan_scope(db, tables, principal(db, "C0001"), "all", None, NOW)
    got = exported(tables, scope, tmp_path)
    assert scope.bene_rows.tolist() == [1, 2]
    assert eob_ids(got) == carrier([1, 2], lambda d: d >= "2022-01-01") | pde([1, 2])


def test_runout_prior_year_roster_claims_through_cutoff(db, tables, tmp_path):
    scope = plan_scope(db, tables, principal(db, "A0001"), "runout", None, NOW)
    assert scope.bene_rows.tolist() == [5, 6]
    got = exported(tables, scope, tmp_path)
    assert eob_ids(got) == carrier([5, 6], lambda d: d <= "2023-12-31") | pde([5, 6], lambda d: d <= "2023-12-31")
    assert len(eob_ids(got)) == 12 + 2
    assert got["Patient"] == ["-5", "-6"]


def test_runout_roster_past_cutoff_and_runout_for_non_aco(tmp_path, tables):
    db = make_db(tmp_path / "a.db", runout_cutoff_days=30)
    with pytest.raises(RequestError, match="runout roster .* 75 days old") as e:
        plan_scope(db, tables, principal(db, "A0001"), "runout", None, NOW)
    assert e.value.status == 404
    with pytest.raises(RequestError) as e:
        plan_scope(db, tables, principal(db, "P0001"), "runout", None, NOW)
    assert e.value.status == 404


def test_group_all_since_gives_new_beneficiaries_full_history(db, tables, tmp_path):
    since = dt.datetime(2024, 3, 1, tzinfo=UTC)
    scope = plan_scope(db, tables, principal(db, "A0001"), "all", since, NOW)
    assert scope.since_exempt.tolist() == [4]  # 3 is new too, but opted out
    got = exported(tables, scope, tmp_path)
    recent = lambda d: d >= "2024-02-20"  # noqa: E731 - loaded 10 days after service
    assert eob_ids(got) == carrier([0, 1, 2], recent) | pde([0, 1, 2], recent) | carrier([4]) | pde([4])
    assert got["Patient"] == ["-4"]  # Patients were updated 2024-01-01: only the new one comes


def test_patient_endpoint_since_has_no_new_beneficiary_rule(db, tables, tmp_path):
    since = dt.datetime(2024, 3, 1, tzinfo=UTC)
    scope = plan_scope(db, tables, principal(db, "A0001"), None, since, NOW)
    assert scope.since_exempt.tolist() == []
    got = exported(tables, scope, tmp_path)
    assert "Patient" not in got
    assert eob_ids(got) == carrier([0, 1, 2, 4], lambda d: d >= "2024-02-20") | pde([0, 1, 2, 4], lambda d: d >= "2024-02-20")


def test_since_after_latest_roster_means_nobody_is_new(db, tables):
    scope = plan_scope(db, tables, principal(db, "A0001"), "all", dt.datetime(2024, 5, 2, tzinfo=UTC), NOW)
    assert scope.since_exempt.tolist() == []


def test_no_current_year_roster_is_404(db, tables):
    next_year = dt.datetime(2025, 1, 10, tzinfo=UTC).timestamp()
    p = principal(db, "A0001", now=next_year)
    with pytest.raises(RequestError, match="performance year 2025") as e:
        plan_scope(db, tables, p, "all", None, next_year)
    assert e.value.status == 404


def test_unknown_group_is_404(db, tables):
    with pytest.raises(RequestError) as e:
        plan_scope(db, tables, principal(db, "A0001"), "D0001", None, NOW)
    assert e.value.status == 404


# -- providers ------------------------------------------------------------------------------


def test_provider_recent_roster_and_18_month_lookback(db, tables, tmp_path):
    scope = plan_scope(db, tables, principal(db, "P0001"), "all", None, NOW)
    assert scope.bene_rows.tolist() == [8, 9]  # 7's attribution is older than 90 days
    got = exported(tables, scope, tmp_path)
    assert eob_ids(got) == carrier([8, 9], lambda d: d >= "2022-12-15") | pde([8, 9])
    assert any("18 months, claims serviced from 2022-12-15" in r for r in scope.rules)


# -- Part D sponsors ---------------------------------------------------------------------------


def attest(db, org_id, contract, when, title="CEO"):
    who, _ = add_user(db, org_id, "attestor", title, now=when - DAY)
    db.orgs.attest(who, org_id, contract, now=when)
    return who


FEB10 = dt.datetime(2024, 2, 10, tzinfo=UTC).timestamp()


def test_sponsor_enrolled_months_after_attestation_only(db, tables, tmp_path):
    attest(db, "Z0001", "S1234", FEB10)
    p = principal(db, "Z0001")
    assert p.types == ("ExplanationOfBenefit",)
    scope = plan_scope(db, tables, p, "all", None, NOW)
    assert scope.bene_rows.tolist() == [5, 6]  # 9 is in S5678, not attested
    got = exported(tables, scope, tmp_path)
    assert set(got) == {"ExplanationOfBenefit"}
    # 5: enrolled Jan-Jun 2024 (Jan is before the attestation); 6: March only.
    assert eob_ids(got) == {"5-20240301", "5-20240520", "5-20240410", "6-20240301"}
    assert scope.since_ms == int(FEB10 * 1000)
    assert any("S5678 not attested" in r for r in scope.rules)


def test_sponsor_claims_before_attestation_are_withheld_even_when_enrolled(db, tables, tmp_path):
    attest(db, "Z0001", "S1234", dt.datetime(2024, 3, 5, tzinfo=UTC).timestamp())
    scope = plan_scope(db, tables, principal(db, "Z0001"), "S1234", dt.datetime(2020, 1, 1, tzinfo=UTC), NOW)
    got = exported(tables, scope, tmp_path)
    # 2024-03-01 is in an enrolled month (March) but before the 2024-03-05 attestation.
    assert eob_ids(got) == {"5-20240520", "5-20240410"}


def test_sponsor_two_contracts_each_from_its_own_attestation(db, tables, tmp_path):
    attest(db, "Z0001", "S1234", FEB10)
    attest(db, "Z0001", "S5678", dt.datetime(2024, 4, 15, tzinfo=UTC).timestamp())
    scope = plan_scope(db, tables, principal(db, "Z0001"), "all", None, NOW)
    assert scope.bene_rows.tolist() == [5, 6, 9]
    got = exported(tables, scope, tmp_path)
    # 9: S5678 from 2024-04-15 — its 2024-04-10 event predates that attestation.
    assert eob_ids(got) == {"5-20240301", "5-20240520", "5-20240410", "6-20240301", "9-20240520"}


def test_sponsor_without_active_attestor_gets_403_then_data_from_new_attestation(db, tables, tmp_path):
    ceo = attest(db, "Z0001", "S1234", FEB10)
    p = principal(db, "Z0001")
    db.orgs.remove_user(Actor.system(), ceo.user_id, now=NOW - 10 * DAY)
    with pytest.raises(AuthError, match="no attestor is in place") as e:
        plan_scope(db, tables, p, "all", None, NOW)
    assert e.value.status == 403
    attest(db, "Z0001", "S1234", NOW - 2 * DAY, title="CFO")
    scope = plan_scope(db, tables, p, "all", None, NOW)
    assert scope.since_ms == int((NOW - 2 * DAY) * 1000)
    assert exported(tables, scope, tmp_path) == {}  # nothing serviced or loaded since 2024-06-13


def test_sponsor_grace_period_keeps_data_flowing(tmp_path, tables):
    db = make_db(tmp_path / "a.db", attestation_grace_days=30)
    ceo = attest(db, "Z0001", "S1234", FEB10)
    db.orgs.remove_user(Actor.system(), ceo.user_id, now=NOW - 10 * DAY)
    scope = plan_scope(db, tables, principal(db, "Z0001"), "all", None, NOW)
    assert scope.since_ms == int(FEB10 * 1000)
    with pytest.raises(AuthError):
        plan_scope(db, tables, principal(db, "Z0001", now=NOW + 25 * DAY), "all", None, NOW + 25 * DAY)


def test_sponsor_other_sponsors_contract_is_not_a_group(db, tables):
    attest(db, "Z0001", "S1234", FEB10)
    with pytest.raises(RequestError) as e:
        plan_scope(db, tables, principal(db, "Z0001"), "S9999", None, NOW)
    assert e.value.status == 404


def test_sponsor_cannot_ask_for_patient_resources(db, tables):
    attest(db, "Z0001", "S1234", FEB10)
    with pytest.raises(AuthError) as e:
        plan_scope(db, tables, principal(db, "Z0001"), "all", None, NOW, types=["Patient"])
    assert e.value.status == 403


# -- isolation and exporter guard ---------------------------------------------------------------


def test_each_principal_only_sees_its_own_organization(db, tables, tmp_path):
    a, d = principal(db, "A0001"), principal(db, "D0001")
    sa, sd = plan_scope(db, tables, a, "all", None, NOW), plan_scope(db, tables, d, "all", None, NOW)
    assert 7 not in sa.bene_rows and 7 in sd.bene_rows
    # Handing A's exporter D's beneficiaries writes nothing for those not in A's scope.
    ex = ScopedExporter(tables, sa, sources())
    rows = ex.rows_for(sources()[0], np.array([2, 7]), ExportSpec())
    assert rows.tolist() == [2]
    assert set(eob_ids(exported(tables, sa, tmp_path))).isdisjoint(carrier([7]) | pde([7]))


def test_scoped_exporter_cannot_be_widened_by_a_spec(db, tables, tmp_path):
    scope = plan_scope(db, tables, principal(db, "D0001"), "all", None, NOW)
    wide = ExportSpec(claims_from=None, exclude_sud=False, types=("Patient", "Coverage", "ExplanationOfBenefit"))
    got = exported(tables, scope, tmp_path, spec=wide)
    assert SUD_CLAIM not in eob_ids(got)
    assert min(eob_ids(got) - pde([2, 7])) >= "2-20210601"
    assert scope.spec(compression="zstd").exclude_sud is True
    # The unscoped exporter with the same wide spec would have written them.
    plain = Exporter(tables, sources()).rows_for(sources()[2], scope.bene_rows, wide)
    assert len(plain) == 18


def test_attribution_status_reports_roster_and_runout_dates(db, tables):
    assert attribution_status(db, tables, "A0001", NOW) == {
        "ingestion_dates": [
            {"type": "default", "timestamp": "2024-05-01", "performance_year": 2024},
            {"type": "runout", "timestamp": "2024-04-01", "performance_year": 2023},
        ]
    }
    assert attribution_status(db, tables, "P0001", NOW) == {"ingestion_dates": []}


def test_suspended_organization_gets_no_scope(db, tables):
    p = principal(db, "A0001")
    db.orgs.set_active(Actor.system(), "A0001", False, now=NOW)
    with pytest.raises(AuthError) as e:
        plan_scope(db, tables, p, "all", None, NOW)
    assert e.value.status == 403


def test_sponsor_runout_is_the_prior_years_enrolled_months(db, tables, tmp_path):
    attest(db, "Z0001", "S1234", dt.datetime(2023, 3, 1, tzinfo=UTC).timestamp())
    scope = plan_scope(db, tables, principal(db, "Z0001"), "runout", None, NOW)
    assert scope.bene_rows.tolist() == [5]  # 6 was enrolled in 2024 only
    assert scope.claims_through == (dt.date(2023, 12, 31) - dt.date(1970, 1, 1)).days
    # 2023 from the March attestation on; 5-20231220 ends in 2024 but was serviced in December.
    assert eob_ids(exported(tables, scope, tmp_path)) == {"5-20230315", "5-20231220", "5-20230601"}


def test_scope_survives_bytes_and_narrows_to_some_beneficiaries(db, tables, tmp_path):
    attest(db, "Z0001", "S1234", FEB10)
    attest(db, "Z0001", "S5678", FEB10)
    scope = plan_scope(db, tables, principal(db, "Z0001"), "all", None, NOW)
    again = Scope.from_bytes(scope.to_bytes())
    assert (again.org_id, again.group, again.types, again.rules) == (scope.org_id, scope.group, scope.types, scope.rules)
    assert (again.since_ms, again.claims_from, again.claims_through) == (scope.since_ms, scope.claims_from, scope.claims_through)
    assert again.bene_rows.tolist() == [5, 6, 9] and exported(tables, again, tmp_path) == exported(tables, scope, tmp_path)
    part = again.for_benes(np.array([6, 9, 0]))  # 0 is not in scope: never added
    assert part.bene_rows.tolist() == [6, 9]
    assert [sorted(set(k // 10_000)) for _, k, _, _ in part.enrollment.contracts] == [[6], [9]]
    assert eob_ids(exported(tables, part, tmp_path)) == {"6-20240301", "9-20240301", "9-20240410", "9-20240520"}


def test_roster_rows_known_only_by_a_historic_or_unknown_mbi(db, tables):
    """Rows without bene_row are matched by MBI, current or historic (CCLF9), vectorized;
    an MBI nobody has adds nobody."""
    c = schema.column_for
    bene = tables["bene"]
    # Bene 8 had MBI "OLD8" before its current one.
    counts = np.zeros(bene.n, np.int64)
    counts[8] = 1
    links = {**bene.links, "bene_mbi": np.r_[0, np.cumsum(counts)]}
    world = {**tables,
             "bene": schema.complete("bene", dict(bene.columns), bene.n, links),
             "bene_mbi": schema.complete("bene_mbi", {"prvs_num": c("str", ["OLD8"]), "crnt_num": c("str", ["x"])}, 1)}
    mbis = ["OLD8", "NOBODY1", bene["bene_mbi_id"].get(4), ""]
    world["roster"] = schema.complete("roster", {
        "org_id": c("str", ["A0001"] * 4), "bene_mbi_id": c("str", mbis), "bene_row": c("int", [None] * 4),
        "roster_kind": c("cat", ["Y"] * 4), "performance_year": c("int", [2024] * 4),
        "file_date": c("date", ["2024-06-01"] * 4)}, 4)
    scope = plan_scope(db, world, principal(db, "A0001"), "all", None, NOW)
    assert scope.bene_rows.tolist() == [4, 8]
