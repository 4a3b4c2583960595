"""FHIR datatypes from columns: Coding, CodeableConcept, extensions, Period, Money.

The building blocks of every other piece; a code or value from a column is dropped with
its column's missing value (see `fhirhose.template`).
"""

from __future__ import annotations

from ...template import Arr, K, Node, Obj, Val
from .systems import CS_DATA_ABSENT, EXT_DATA_ABSENT, bb_var

__all__ = [
    "coding",
    "const_coding",
    "bb_coding",
    "codeable",
    "bb_codeable",
    "ext_coding",
    "bb_ext_coding",
    "bb_ext_identifier",
    "bb_ext_quantity",
    "bb_ext_date",
    "extensions",
    "period",
    "money",
    "bb_ext_money",
    "data_absent",
    "DATA_ABSENT_NOT_APPLICABLE",
]

def coding(system: str, col: str, display: str | None = None) -> Node:
    """A Coding whose code is a column; the system (weak) goes with it or not at all."""
    members: list[Node] = [K("system", system, weak=True), Val("code", col)]
    if display is not None:
        members.append(K("display", display, weak=True))
    return Obj(None, *members)


def const_coding(system: str, code: str, display: str | None = None, *, weak: bool = False) -> Node:
    """A constant Coding (strong unless `weak`: then it only decorates values beside it)."""
    members = [K("system", system, weak=weak), K("code", code, weak=weak)]
    if display is not None:
        members.append(K("display", display, weak=weak))
    return Obj(None, *members)


def bb_coding(var: str, col: str) -> Node:
    """A Coding in the Blue Button variable system of `var`, code from `col`."""
    return coding(bb_var(var), col)


def codeable(key: str | None, *codings: Node) -> Node:
    """A CodeableConcept `{"coding": [...]}` under `key`."""
    return Obj(key, Arr("coding", *codings))


def bb_codeable(key: str | None, var: str, col: str) -> Node:
    """A CodeableConcept with one Blue Button variable coding."""
    return codeable(key, bb_coding(var, col))


def ext_coding(url: str, col: str, system: str | None = None) -> Node:
    """An extension element `{url, valueCoding{system, code}}`; dropped when `col` is missing."""
    return Obj(None, K("url", url, weak=True), Obj("valueCoding", K("system", system or url, weak=True), Val("code", col)))


def bb_ext_coding(var: str, col: str) -> Node:
    """Blue Button variable extension with a valueCoding (url = system = the variable URL)."""
    return ext_coding(bb_var(var), col)


def bb_ext_identifier(var: str, col: str) -> Node:
    """Blue Button variable extension with a valueIdentifier."""
    url = bb_var(var)
    return Obj(None, K("url", url, weak=True), Obj("valueIdentifier", K("system", url, weak=True), Val("value", col)))


def bb_ext_quantity(var: str, col: str) -> Node:
    """Blue Button variable extension with a valueQuantity (a Num column)."""
    return Obj(None, K("url", bb_var(var), weak=True), Obj("valueQuantity", Val("value", col)))


def bb_ext_date(var: str, col: str) -> Node:
    """Blue Button variable extension with a valueDate."""
    return Obj(None, K("url", bb_var(var), weak=True), Val("valueDate", col))


def extensions(*exts: Node) -> Node:
    """The `extension` array (dropped when every element is)."""
    return Arr("extension", *exts)


def period(key: str, start_col: str, end_col: str) -> Node:
    """A Period from two date columns."""
    return Obj(key, Val("start", start_col), Val("end", end_col))


def money(key: str | None, col: str) -> Node:
    """A Money `{value, currency: USD}`; dropped with its value."""
    return Obj(key, Val("value", col), K("currency", "USD", weak=True))


def bb_ext_money(var: str, col: str) -> Node:
    """Blue Button variable extension with a valueMoney."""
    return Obj(None, K("url", bb_var(var), weak=True), money("valueMoney", col))


def data_absent(key: str, reason: str = "unknown") -> Node:
    """`{key: {"extension": [data-absent-reason]}}`: a required complex element whose source
    value is missing (pair with `IfMissing`)."""
    return Obj(key, Arr("extension", Obj(None, K("url", EXT_DATA_ABSENT), K("valueCode", reason))))


# productOrService is 1..1: lines without a procedure code say so (idr-out does the same).
DATA_ABSENT_NOT_APPLICABLE = const_coding(CS_DATA_ABSENT, "not-applicable", "Not Applicable")
