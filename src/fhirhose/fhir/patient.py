"""Patient template: CCLF8 beneficiary (`bene`) with CCLF9 historic MBIs (`bene_mbi`).

C4BB Patient. Identifiers follow C4BB 2.x (type MB, system us-mbi) and keep BFD
v2's identifier-currency extension (current / historic) and its `MC` coding,
so clients of either find the MBI. Where CCLF8 carries a field BFD v2 spreads
over months (dual status), the current code is written with idr-out's
extension.
"""

from __future__ import annotations

from ..template import Arr, Each, IfHas, IfMissing, K, Map, Node, Obj, Template, Val
from . import common as c

__all__ = ["PATIENT", "EXT_DUAL_STATUS", "EXT_US_CORE_SEX", "mbi_identifier"]

EXT_US_CORE_SEX = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-sex"
# idr-out (C4BB 2.2.0) extension for the current dual-eligibility status code.
EXT_DUAL_STATUS = "https://bluebutton.cms.gov/fhir/StructureDefinition/BENE-DUAL-STUS-CD"
CS_DUAL_STATUS = "https://bluebutton.cms.gov/fhir/CodeSystem/BENE-DUAL-STUS-CD"

# CCW BENE_SEX_IDENT_CD: 0 unknown, 1 male, 2 female; us-core-sex takes SNOMED CT codes.
_GENDER = {"0": "unknown", "1": "male", "2": "female"}
_SNOMED_SEX = {"1": "248153007", "2": "248152002"}


def mbi_identifier(col: str, currency: str, start: str | None = None, end: str | None = None) -> Node:
    """An MBI identifier element (type MB and v2's MC, system us-mbi) with the Blue Button
    identifier-currency extension (`current` or `historic`) and an optional validity period."""
    currency_ext = c.extensions(
        Obj(
            None,
            K("url", c.BB_CS_IDENTIFIER_CURRENCY),
            Obj(
                "valueCoding",
                K("system", c.BB_CS_IDENTIFIER_CURRENCY),
                K("code", currency),
                K("display", currency.capitalize()),
            ),
        )
    )
    codings = [
        Obj(None, currency_ext, K("system", c.CS_V2_0203), K("code", "MB"), K("display", "Member Number")),
        Obj(None, currency_ext, K("system", c.CS_V2_0203), K("code", "MC"), K("display", "Patient's Medicare number")),
    ]
    members = [c.codeable("type", *codings), K("system", c.SYS_MBI), Val("value", col)]
    if start or end:
        members.append(Obj("period", *(Val(k, v) for k, v in (("start", start), ("end", end)) if v)))
    return IfHas(col, Obj(None, *members))


PATIENT = Template(
    "patient",
    "bene",
    K("resourceType", "Patient"),
    Val("id", "bene_id"),
    c.meta(c.PROFILE_PATIENT),
    c.extensions(
        Map("bene_sex_cd", {k: Obj(None, K("url", EXT_US_CORE_SEX), K("valueCode", v)) for k, v in _SNOMED_SEX.items()}),
        c.bb_ext_coding("race", "bene_race_cd"),
        Obj(None, K("url", c.bb_var("rfrnc_yr"), weak=True), Val("valueDate", "rfrnc_yr", quote=True)),
        c.ext_coding(EXT_DUAL_STATUS, "bene_dual_stus_cd", CS_DUAL_STATUS),
    ),
    Arr(
        "identifier",
        mbi_identifier("bene_mbi_id", "current", start="mbi_efctv_bgn_dt"),
        Each("bene_mbi", mbi_identifier("prvs_num", "historic", "prvs_id_efctv_dt", "prvs_id_obslt_dt")),
        # BFD v2 also identifies the beneficiary by its CCW id.
        IfHas(
            "bene_id",
            Obj(
                None,
                c.codeable("type", c.const_coding(c.CS_V2_0203, "MB", "Member Number")),
                K("system", c.bb_var("bene_id")),
                Val("value", "bene_id"),
            ),
        ),
    ),
    Arr(
        "name",
        Obj(
            None,
            K("use", "usual", weak=True),
            Val("family", "bene_last_name"),
            Arr("given", Val(None, "bene_1st_name"), Val(None, "bene_midl_name")),
        ),
    ),
    Map("bene_sex_cd", {k: K("gender", v) for k, v in _GENDER.items()}, default=K("gender", "unknown")),
    Val("birthDate", "bene_dob"),
    Val("deceasedDateTime", "bene_death_dt"),
    Arr(
        "address",
        Obj(
            None,
            Arr("line", *(Val(None, f"bene_line_{k}_adr") for k in range(1, 7))),
            Val("city", "geo_zip_plc_name"),
            # USPS state code when CCLF8 has it, else the FIPS state code (both map to state).
            Val("state", "geo_usps_state_cd"),
            IfMissing("geo_usps_state_cd", Val("state", "bene_fips_state_cd")),
            Val("postalCode", "bene_zip_cd"),
            IfMissing("bene_zip_cd", Val("postalCode", "geo_zip5_cd")),
        ),
    ),
)
"""Patient per beneficiary row of `bene` (historic MBIs from the linked `bene_mbi` rows)."""
