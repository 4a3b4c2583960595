"""Structural FHIR R4 validation through the `fhir.resources` R4B models (test-only dependency).

`fhir.resources` is imported lazily so the package never needs it at run time. R4B's
models are used because fhir.resources 8 ships no plain R4 set; ExplanationOfBenefit,
Patient and Coverage are unchanged between R4 and R4B.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..errors import InputError

__all__ = ["R4ValidationError", "validate_r4"]

# fhir.resources does not enforce required ValueSet bindings (a status of "bogus" parses),
# so the top-level codes our templates write are checked here against the R4 value sets.
_FINANCIAL_STATUS = frozenset({"active", "cancelled", "draft", "entered-in-error"})
_REQUIRED_CODES: dict[str, dict[str, frozenset[str]]] = {
    "ExplanationOfBenefit": {
        "status": _FINANCIAL_STATUS,
        "use": frozenset({"claim", "preauthorization", "predetermination"}),
        "outcome": frozenset({"queued", "complete", "error", "partial"}),
    },
    "Coverage": {"status": _FINANCIAL_STATUS},
    "Patient": {"gender": frozenset({"male", "female", "other", "unknown"})},
}


class R4ValidationError(InputError):
    """A resource is not valid FHIR R4; the message names the resource and the failing elements."""


@cache
def _model_class(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


def validate_r4(resource: dict) -> Any:
    """Parse ``resource`` with the fhir.resources R4B model for its resourceType and return the model.

    Raises `R4ValidationError` naming ``resourceType/id`` and the pydantic message when the
    resource does not parse, the type is unknown, or a top-level required-binding code
    (EOB status/use/outcome, Coverage status, Patient gender) is outside its R4 value set.
    """
    from pydantic import ValidationError

    rtype = resource.get("resourceType")
    where = f"{rtype or '<no resourceType>'}/{resource.get('id') or '?'}"
    if not isinstance(rtype, str):
        raise R4ValidationError(f"{where}: resourceType is missing")
    try:
        cls = _model_class(rtype)
    except ValueError as e:
        raise R4ValidationError(f"{where}: unknown resourceType ({e})") from None
    try:
        model = cls.model_validate(resource)
    except ValidationError as e:
        raise R4ValidationError(f"{where}: {e}") from None
    for field, allowed in _REQUIRED_CODES.get(rtype, {}).items():
        value = resource.get(field)
        if value is not None and value not in allowed:
            raise R4ValidationError(f"{where}: {field} {value!r} is not one of {sorted(allowed)}")
    return model
