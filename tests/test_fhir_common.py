"""fhir.common: the shared template pieces behave as documented (both backends)."""

from __future__ import annotations

import datetime as dt

import pytest

from fhirhose.fhir import common as c
from fhirhose.store import schema
from fhirhose.template import Arr, IfHas, IfMissing, K, Template

from .support.fhir import write_all

_TS = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)


def _partb(**cols):
    n = len(next(iter(cols.values())))
    spec = schema.kinds("partb")
    return {"partb": schema.complete("partb", {k: schema.column_for(spec[k], v) for k, v in cols.items()}, n),
            "partb_line": schema.complete("partb_line", {}, 0)}


def _run(tables, *members):
    return write_all(Template("t", "partb", *members), tables)


def test_status_and_final_action_tag():
    docs = _run(_partb(final_action=["F", "N", None, "X"]), *c.status(), c.meta(c.PROFILE_EOB_PROFESSIONAL, c.final_action_tag()))
    assert [d["status"] for d in docs] == ["active", "cancelled", "cancelled", "cancelled"]
    assert [d["meta"].get("tag") for d in docs] == [
        [{"system": c.BB_CS_FINAL_ACTION, "code": "FinalAction"}],
        [{"system": c.BB_CS_FINAL_ACTION, "code": "NotFinalAction"}],
        None,
        None,
    ]
    assert all(d["meta"]["profile"] == [c.PROFILE_EOB_PROFESSIONAL + "|2.2.0"] for d in docs)


@pytest.mark.parametrize("ind,system", [("9", c.SYS_ICD9CM), ("0", c.SYS_ICD10CM), (None, c.SYS_ICD10CM), ("U", c.SYS_ICD10CM)])
def test_diagnosis_system_follows_the_icd_indicator(ind, system):
    (doc,) = _run(_partb(clm_dgns_1_cd=["A01"], dgns_prcdr_icd_ind=[ind]),
                  Arr("diagnosis", c.diagnosis_slot("clm_dgns_1_cd", "dgns_prcdr_icd_ind", c.DX_PRINCIPAL)))
    assert doc["diagnosis"] == [
        {
            "sequence": 1,
            "diagnosisCodeableConcept": {"coding": [{"system": system, "code": "A01"}]},
            "type": [{"coding": [{"system": c.CS_DIAGNOSIS_TYPE, "code": "principal", "display": "Principal Diagnosis"}]}],
        }
    ]


def test_missing_values_drop_their_whole_element():
    members = (
        Arr("identifier", c.uc_identifier(), c.claim_group_identifier()),
        Arr("adjudication", c.adjudication("clm_pmt_amt", "clm_pmt_amt", c.ADJ_BENEFIT)),
        Arr("careTeam", c.care_team_member("clm_rfrg_prvdr_npi_num", c.ROLE_REFERRING)),
        Arr("supportingInfo", c.info_date("nch_wkly_proc_dt", "clm_efctv_dt", "clmrecvddate")),
        c.npi_ref("referral", "clm_rfrg_prvdr_npi_num"),
        K("resourceType", "X"),
    )
    (empty,) = _run(_partb(clm_id=[None]), *members)
    assert empty == {"resourceType": "X"}
    (full,) = _run(
        _partb(clm_id=["1"], clm_grp_id=["g"], clm_pmt_amt=["-0.05"], clm_rfrg_prvdr_npi_num=["123"], clm_efctv_dt=["2020-02-29"]),
        *members,
    )
    assert full["identifier"][0]["type"]["coding"][0]["code"] == "uc"
    assert full["adjudication"][0]["amount"] == {"value": -0.05, "currency": "USD"}
    assert full["careTeam"][0]["sequence"] == 1
    assert full["careTeam"][0]["provider"]["identifier"]["system"] == c.SYS_NPI
    assert full["supportingInfo"][0]["timingDate"] == "2020-02-29"
    assert full["referral"]["identifier"]["value"] == "123"


def test_created_and_provider_fallbacks():
    members = (
        *c.created("clm_idr_ld_dt"),
        IfHas("clm_blg_prvdr_npi_num", c.npi_ref("provider", "clm_blg_prvdr_npi_num")),
        IfMissing("clm_blg_prvdr_npi_num", c.data_absent("provider")),
    )
    a, b = _run(_partb(clm_idr_ld_dt=["2021-01-02", None], last_updated=[_TS, _TS], clm_blg_prvdr_npi_num=["9", None]), *members)
    assert a["created"] == "2021-01-02" and a["provider"]["identifier"]["value"] == "9"
    assert b["created"] == "2024-05-06T07:08:09.000+00:00"
    assert b["provider"] == {"extension": [{"url": c.EXT_DATA_ABSENT, "valueCode": "unknown"}]}


def test_insurance_and_references():
    (doc,) = _run(_partb(bene_id=["42"]), c.insurance("D"), c.patient_ref(), c.insurer(), Arr("contained", c.cms_organization()))
    assert doc["insurance"] == [{"focal": True, "coverage": {"reference": "Coverage/part-d-42"}}]
    assert doc["patient"] == {"reference": "Patient/42"}
    assert doc["insurer"] == {"reference": "#" + doc["contained"][0]["id"]}
    with pytest.raises(ValueError, match="Medicare part"):
        c.insurance("e")


def test_eob_type_codings():
    (doc,) = _run(_partb(clm_type_cd=["72"]), c.eob_type("professional", "CARRIER"))
    assert doc["type"]["coding"] == [
        {"system": c.CS_CLAIM_TYPE, "code": "professional"},
        {"system": c.BB_CS_EOB_TYPE, "code": "CARRIER"},
        {"system": c.bb_var("nch_clm_type_cd"), "code": "72"},
    ]
