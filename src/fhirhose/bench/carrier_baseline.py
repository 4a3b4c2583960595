"""The honest baseline: a hand-written carrier EOB builder, as a good Python server writes one.

Dict literals and comprehensions over column values converted to Python lists once
(strings, dates as ISO text, money as float), then orjson. No template, no
interpretation: every element of `fhir.eob_professional.EOB_CARRIER` spelled out by
hand, with the same drop-when-missing rules, so it builds the same documents as the
compiled writer (tests/test_bench.py compares them). `fhirhose bench` quotes the
writer's speed against this.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..fhir import common as c
from .baseline import _values

__all__ = ["CarrierBuilder"]

_V = c.BB_VARIABLES
_NPI_TYPE = {"coding": [{"system": c.CS_V2_0203, "code": "NPI", "display": "National provider identifier"}]}
_CONTAINED = [{"resourceType": "Organization", "id": c.CMS_ORG_ID,
               "meta": {"profile": [c.versioned(c.PROFILE_ORGANIZATION)]}, "active": True, "name": c.CMS_NAME}]
_PROFILE = [c.versioned(c.PROFILE_EOB_PROFESSIONAL)]
_NCH = {"system": "https://bluebutton.cms.gov/fhir/CodeSystem/System-Type", "code": "NationalClaimsHistory"}
_TAG = {"F": [_NCH, {"system": c.BB_CS_FINAL_ACTION, "code": "FinalAction"}],
        "N": [_NCH, {"system": c.BB_CS_FINAL_ACTION, "code": "NotFinalAction"}]}
_UC_TYPE = {"coding": [{"system": c.CS_IDENTIFIER_TYPE, "code": "uc", "display": "Unique Claim ID"}]}
_ABSENT = {"extension": [{"url": c.EXT_DATA_ABSENT, "valueCode": "unknown"}]}
_UNKNOWN = {"system": c.CS_DATA_ABSENT, "code": "unknown", "display": "Unknown"}
_ROLE = {k: {"coding": [{"system": s, "code": code, "display": d}]} for k, (s, code, d) in
         (("rendering", c.ROLE_RENDERING), ("primary", c.ROLE_PRIMARY), ("referring", c.ROLE_REFERRING))}
_PRINCIPAL = [{"coding": [dict(zip(("system", "code", "display"), c.DX_PRINCIPAL, strict=True))]}]
_SECONDARY = [{"coding": [dict(zip(("system", "code", "display"), c.DX_SECONDARY, strict=True))]}]
_INFO = {"coding": [{"system": c.CS_SUPPORTING_INFO, "code": "clmrecvddate"},
                    {"system": c.BB_CS_INFORMATION, "code": _V + "nch_wkly_proc_dt"}]}


def _cat(c4bb, var: str | None) -> dict:
    codings = [] if c4bb is None else [dict(zip(("system", "code", "display"), c4bb, strict=True))]
    if var is not None:
        codings.append({"system": c.BB_CS_ADJUDICATION, "code": _V + var})
    return {"coding": codings}


_TOTALS = [(col, _cat(adj, var)) for col, var, adj in (
    ("clm_pmt_amt", "clm_pmt_amt", c.ADJ_BENEFIT),
    ("nch_carr_clm_sbmtd_chrg_amt", "nch_carr_clm_sbmtd_chrg_amt", c.ADJ_SUBMITTED),
    ("clm_alowd_chrg_amt", "nch_carr_clm_alowd_amt", c.ADJ_ELIGIBLE),
    ("nch_clm_prvdr_pmt_amt", "nch_clm_prvdr_pmt_amt", c.ADJ_PAID_TO_PROVIDER),
    ("nch_clm_bene_pmt_amt", "nch_clm_bene_pmt_amt", c.ADJ_PAID_TO_PATIENT),
    ("carr_clm_cash_ddctbl_apld_amt", "carr_clm_cash_ddctbl_apld_amt", c.ADJ_DEDUCTIBLE),
    ("carr_clm_prmry_pyr_pd_amt", "carr_clm_prmry_pyr_pd_amt", c.ADJ_PRIOR_PAYER_PAID),
)]
_LINE_ADJ = [(col, _cat(adj, var)) for col, var, adj in (
    ("clm_line_cvrd_pd_amt", "line_nch_pmt_amt", c.ADJ_BENEFIT),
    ("line_bene_pmt_amt", "line_bene_pmt_amt", c.ADJ_PAID_TO_PATIENT),
    ("line_prvdr_pmt_amt", "line_prvdr_pmt_amt", c.ADJ_PAID_TO_PROVIDER),
    ("line_bene_ptb_ddctbl_amt", "line_bene_ptb_ddctbl_amt", c.ADJ_DEDUCTIBLE),
    ("line_bene_prmry_pyr_pd_amt", "line_bene_prmry_pyr_pd_amt", c.ADJ_PRIOR_PAYER_PAID),
    ("line_coinsrnc_amt", "line_coinsrnc_amt", c.ADJ_COINSURANCE),
    ("line_sbmtd_chrg_amt", "line_sbmtd_chrg_amt", c.ADJ_SUBMITTED),
    ("clm_line_alowd_chrg_amt", "line_alowd_chrg_amt", c.ADJ_ELIGIBLE),
)]
_REASON = _cat(c.ADJ_ADJUSTMENT_REASON, None)
_PAYMENT_STATUS = {
    "category": {"coding": [{"system": c.CS_ADJUDICATION_DISCRIMINATOR, "code": "benefitpaymentstatus",
                             "display": "Benefit Payment Status"}]},
    "reason": {"coding": [{"system": c.CS_PAYER_ADJUDICATION_STATUS, "code": "other", "display": "Other"}]},
}
_HEADER_EXT = (("nch_near_line_rec_ident_cd", "nch_near_line_rec_ident_cd", "valueCoding"),
               ("carr_num", "clm_cntrctr_num", "valueIdentifier"),
               ("carr_clm_cntl_num", "clm_cntl_num", "valueIdentifier"),
               ("carr_clm_pmt_dnl_cd", "clm_carr_pmt_dnl_cd", "valueCoding"),
               ("asgmntcd", "carr_clm_prvdr_asgnmt_ind_sw", "valueCoding"),
               ("clm_clncl_tril_num", "clm_clncl_tril_num", "valueIdentifier"),
               ("carr_clm_entry_cd", "carr_clm_entry_cd", "valueCoding"))
_LINE_EXT = (("betos_cd", "hcpcs_betos_cd"), ("line_bene_prmry_pyr_cd", "clm_line_prmry_pyr_cd"),
             ("line_prcsg_ind_cd", "clm_prcsg_ind_cd"), ("line_service_deductible", "line_service_deductible"),
             ("tax_num", "clm_rndrg_prvdr_tax_num"))
_DX = tuple(f"clm_dgns_{k}_cd" for k in range(1, 13))
_MODS = tuple(f"hcpcs_{k}_mdfr_cd" for k in range(1, 6))


def _ext(var: str, kind: str, v) -> dict:
    url = _V + var
    return {"url": url, kind: {"system": url, "code" if kind == "valueCoding" else "value": v}}


def _column(col) -> list:
    """Python values of a column; trimmed decimals that are whole numbers as ints (JSON `1`, as
    written; money keeps its cents: `0.00`)."""
    values = _values(col)
    if col.kind == "num" and col.scale and getattr(col, "trim", False):
        values = [int(v) if v is not None and v.is_integer() else v for v in values]
    return values


def _npi(v) -> dict:
    return {"type": _NPI_TYPE, "system": c.SYS_NPI, "value": v}


def _money(v) -> dict:
    return {"value": v, "currency": "USD"}


class CarrierBuilder:
    """`dumps(rows)`: NDJSON of carrier EOBs (rows of `partb`), hand-written dicts + orjson."""

    def __init__(self, tables: dict):
        self.h = {name: _column(col) for name, col in tables["partb"].columns.items()}
        self.l = {name: _column(col) for name, col in tables["partb_line"].columns.items()}
        self.off = tables["partb"].links["partb_line"].tolist()

    def build(self, r: int) -> dict:
        h, L = self.h, self.l
        lines = range(self.off[r], self.off[r + 1])
        icd = c.SYS_ICD9CM if h["dgns_prcdr_icd_ind"][r] == "9" else c.SYS_ICD10CM
        # careTeam: each line's rendering then organization NPI, then the header's referring NPI
        team, line_seqs, seq = [], [], 0
        for i in lines:
            refs = []
            npi = L["rndrg_prvdr_npi_num"][i]
            if npi:
                seq += 1
                refs.append(seq)
                e = {"sequence": seq, "provider": {"identifier": _npi(npi)}, "role": _ROLE["rendering"]}
                ext = [_ext(var, "valueCoding", v) for var, v in (
                    ("carr_line_prvdr_type_cd", L["rndrg_prvdr_type_cd"][i]),
                    ("prtcptng_ind_cd", L["prtcptng_ind_cd"][i])) if v]
                if ext:
                    e["extension"] = ext
                e["responsible"] = True
                if sp := L["clm_prvdr_spclty_cd"][i]:
                    e["qualification"] = {"coding": [{"system": _V + "prvdr_spclty", "code": sp}]}
                team.append(e)
            npi = L["org_npi_num"][i]
            if npi:
                seq += 1
                refs.append(seq)
                team.append({"sequence": seq, "provider": {"identifier": _npi(npi)}, "role": _ROLE["primary"]})
            line_seqs.append(refs)
        if npi := h["clm_rfrg_prvdr_npi_num"][r]:
            team.append({"sequence": seq + 1, "provider": {"identifier": _npi(npi)}, "role": _ROLE["referring"]})
        # diagnosis: the header's twelve (the principal one data-absent when blank), then one
        # per line that has one
        present = [(col, v) for col in _DX if (v := h[col][r])]
        if not h[_DX[0]][r]:
            present.insert(0, (_DX[0], None))
        diagnosis = [{"sequence": k, "diagnosisCodeableConcept": {"coding": [
                          {"system": icd, "code": v} if v else _UNKNOWN]},
                      "type": _PRINCIPAL if col == _DX[0] else _SECONDARY}
                     for k, (col, v) in enumerate(present, 1)]
        line_dx, k = [], len(present)
        for i in lines:
            if v := L["clm_line_dgns_cd"][i]:
                k += 1
                diagnosis.append({"sequence": k, "diagnosisCodeableConcept": {"coding": [{"system": icd, "code": v}]},
                                  "type": _SECONDARY})
                line_dx.append([k])
            else:
                line_dx.append([])
        yr = h["carr_clm_hcpcs_yr_cd"][r]
        items = [self._item(i, line_seqs[n], line_dx[n], yr) for n, i in enumerate(lines)]

        d: dict[str, Any] = {"resourceType": "ExplanationOfBenefit", "id": f"carrier-{h['clm_id'][r]}"}
        meta: dict[str, Any] = {"lastUpdated": h["last_updated"][r], "profile": _PROFILE}
        if tag := _TAG.get(h["final_action"][r]):
            meta["tag"] = tag
        d["meta"] = meta
        d["contained"] = _CONTAINED
        ext = [_ext(var, kind, v) for var, col, kind in _HEADER_EXT if (v := h[col][r])]
        if ext:
            d["extension"] = ext
        ident = [{"type": _UC_TYPE, "system": _V + "clm_id", "value": h["clm_id"][r]}] if h["clm_id"][r] else []
        if g := h["clm_grp_id"][r]:
            ident.append({"system": c.BB_ID_CLAIM_GROUP, "value": g})
        if cn := h["clm_cntl_num"][r]:
            ident.append({"system": "https://bluebutton.cms.gov/identifiers/CLM-CNTL-NUM", "value": cn})
        if ident:
            d["identifier"] = ident
        d["status"] = "active" if h["final_action"][r] == "F" else "cancelled"
        typ = [{"system": c.CS_CLAIM_TYPE, "code": "professional"}, {"system": c.BB_CS_EOB_TYPE, "code": "CARRIER"}]
        if t := h["clm_type_cd"][r]:
            typ.append({"system": _V + "nch_clm_type_cd", "code": t})
        d["type"] = {"coding": typ}
        d["use"] = "claim"
        d["patient"] = {"reference": f"Patient/{h['bene_id'][r]}"}
        period = {k: v for k, v in (("start", h["clm_from_dt"][r]), ("end", h["clm_thru_dt"][r])) if v}
        if period:
            d["billablePeriod"] = period
        d["created"] = h["clm_idr_ld_dt"][r] or h["last_updated"][r]
        d["insurer"] = {"reference": "#" + c.CMS_ORG_ID}
        blg = h["clm_blg_prvdr_npi_num"][r]
        d["provider"] = {"identifier": _npi(blg)} if blg else _ABSENT
        if ref := h["clm_rfrg_prvdr_npi_num"][r]:
            d["referral"] = {"identifier": _npi(ref)}
        d["outcome"] = "complete"
        if disp := h["clm_disp_cd"][r]:
            d["disposition"] = disp
        if team:
            d["careTeam"] = team
        if eff := h["clm_efctv_dt"][r]:
            d["supportingInfo"] = [{"sequence": 1, "category": _INFO, "timingDate": eff}]
        if diagnosis:
            d["diagnosis"] = diagnosis
        d["insurance"] = [{"focal": True, "coverage": {"reference": f"Coverage/part-b-{h['bene_id'][r]}"}}]
        if items:
            d["item"] = items
        totals = [{"category": cat, "amount": _money(v)} for col, cat in _TOTALS if (v := h[col][r]) is not None]
        if totals:
            d["total"] = totals
        if (pay := h["clm_pmt_amt"][r]) is not None:
            d["payment"] = {"amount": _money(pay)}
        return d

    def _item(self, i: int, team: list, dx: list, yr) -> dict:
        L = self.l
        ext = []
        if (v := L["carr_line_mtus_cnt"][i]) is not None:
            ext.append({"url": _V + "carr_line_mtus_cnt", "valueQuantity": {"value": v}})
        if v := L["carr_line_mtus_cd"][i]:
            ext.append(_ext("carr_line_mtus_cd", "valueCoding", v))
        ext += [_ext(var, "valueCoding", v) for var, col in _LINE_EXT if (v := L[col][i])]
        item: dict = {"extension": ext} if ext else {}
        if (n := L["clm_line_num"][i]) is not None:
            item["sequence"] = n
        if team:
            item["careTeamSequence"] = team
        if dx:
            item["diagnosisSequence"] = dx
        if v := L["clm_fed_type_srvc_cd"][i]:
            item["category"] = {"coding": [{"system": _V + "line_cms_type_srvc_cd", "code": v}]}
        hcpcs = L["clm_line_hcpcs_cd"][i]
        product: dict = {}
        if ndc := L["line_ndc_cd"][i]:
            product["extension"] = [{"url": c.SYS_NDC, "valueCoding": {"system": c.SYS_NDC, "code": ndc}}]
        product["coding"] = [{"system": c.BB_CS_HCPCS, "code": hcpcs} if hcpcs else _UNKNOWN]
        item["productOrService"] = product
        mods = [{"coding": [{"system": c.BB_CS_HCPCS, "version": yr, "code": v} if yr else
                            {"system": c.BB_CS_HCPCS, "code": v}]} for col in _MODS if (v := L[col][i])]
        if mods:
            item["modifier"] = mods
        period = {k: v for k, v in (("start", L["clm_line_from_dt"][i]), ("end", L["clm_line_thru_dt"][i])) if v}
        if period:
            item["servicedPeriod"] = period
        loc_ext = [_ext(var, kind, v) for var, col, kind in (
            ("prvdr_state_cd", "rndrg_prvdr_fips_st_cd", "valueCoding"), ("prvdr_zip", "prvdr_zip", "valueCoding"),
            ("carr_line_prcng_lclty_cd", "carr_line_prcng_lclty_cd", "valueCoding"),
            ("carr_line_clia_lab_num", "carr_line_clia_lab_num", "valueIdentifier")) if (v := L[col][i])]
        pos = L["clm_pos_cd"][i]
        loc: dict = {"extension": loc_ext} if loc_ext else {}
        loc["coding"] = ([{"system": _V + "line_place_of_srvc_cd", "code": pos}, {"system": c.SYS_POS, "code": pos}]
                         if pos else [_UNKNOWN])
        item["locationCodeableConcept"] = loc
        if (q := L["clm_line_srvc_unit_qty"][i]) is not None:
            item["quantity"] = {"value": q}
        adj = []
        for n, (col, cat) in enumerate(_LINE_ADJ):
            if (v := L[col][i]) is None:
                continue
            a: dict[str, Any] = {"category": cat, "amount": _money(v)}
            if n == 0 and (p := L["line_pmt_80_100_cd"][i]):
                a = {"extension": [_ext("line_pmt_80_100_cd", "valueCoding", p)], **a}
            adj.append(a)
        if rsn := L["carr_line_rdcd_pmt_phys_astn_c"][i]:
            adj.append({"category": _REASON,
                        "reason": {"coding": [{"system": _V + "carr_line_rdcd_pmt_phys_astn_c", "code": rsn}]}})
        adj.append(_PAYMENT_STATUS)
        item["adjudication"] = adj
        return item

    def dumps(self, rows) -> bytes:
        dumps, build = orjson.dumps, self.build
        return b"".join([dumps(build(r)) + b"\n" for r in rows])
