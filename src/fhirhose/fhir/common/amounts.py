"""Amounts: adjudications, totals and payment of a claim and its lines, by C4BB category.

The categories are (system, code, display) tuples; each element also carries the Blue
Button adjudication coding of its CCW variable, as BFD writes it.
"""

from __future__ import annotations

from ...template import IfHas, Node, Obj
from .datatypes import bb_codeable, codeable, const_coding, extensions, money
from .systems import (
    BB_CS_ADJUDICATION,
    CS_ADJUDICATION,
    CS_ADJUDICATION_DISCRIMINATOR,
    CS_HL7_ADJUDICATION,
    CS_PAYER_ADJUDICATION_STATUS,
    bb_var,
)

__all__ = [
    "ADJ_SUBMITTED",
    "ADJ_ELIGIBLE",
    "ADJ_DEDUCTIBLE",
    "ADJ_BENEFIT",
    "ADJ_COPAY",
    "ADJ_PAID_TO_PROVIDER",
    "ADJ_PAID_TO_PATIENT",
    "ADJ_PAID_BY_PATIENT",
    "ADJ_PRIOR_PAYER_PAID",
    "ADJ_COINSURANCE",
    "ADJ_NONCOVERED",
    "ADJ_DISCOUNT",
    "ADJ_ADJUSTMENT_REASON",
    "adjudication",
    "adjudication_reason",
    "total",
    "payment",
    "benefit_payment_status",
]

def _category(c4bb: tuple[str, str, str] | None, var: str | None, key: str = "category") -> Node:
    codings = []
    if c4bb is not None:
        system, code, display = c4bb
        codings.append(const_coding(system, code, display))
    if var is not None:
        codings.append(const_coding(BB_CS_ADJUDICATION, bb_var(var)))
    return codeable(key, *codings)


# The C4BB adjudication categories BFD uses, as (system, code, display).
ADJ_SUBMITTED = (CS_HL7_ADJUDICATION, "submitted", "Submitted Amount")
ADJ_ELIGIBLE = (CS_HL7_ADJUDICATION, "eligible", "Eligible Amount")
ADJ_DEDUCTIBLE = (CS_HL7_ADJUDICATION, "deductible", "Deductible")
ADJ_BENEFIT = (CS_HL7_ADJUDICATION, "benefit", "Benefit Amount")
ADJ_COPAY = (CS_HL7_ADJUDICATION, "copay", "CoPay")
ADJ_PAID_TO_PROVIDER = (CS_ADJUDICATION, "paidtoprovider", "Paid to provider")
ADJ_PAID_TO_PATIENT = (CS_ADJUDICATION, "paidtopatient", "Paid to patient")
ADJ_PAID_BY_PATIENT = (CS_ADJUDICATION, "paidbypatient", "Paid by patient")
ADJ_PRIOR_PAYER_PAID = (CS_ADJUDICATION, "priorpayerpaid", "Prior payer paid")
ADJ_COINSURANCE = (CS_ADJUDICATION, "coinsurance", "Co-insurance")
ADJ_NONCOVERED = (CS_ADJUDICATION, "noncovered", "Noncovered")
ADJ_DISCOUNT = (CS_ADJUDICATION, "discount", "Discount")
# C4BB 2.x dropped 1.x's `denialreason`; reason codes sit in the `adjustmentreason` slice.
ADJ_ADJUSTMENT_REASON = (CS_ADJUDICATION_DISCRIMINATOR, "adjustmentreason", "Adjustment Reason")


def adjudication(col: str, var: str, c4bb: tuple[str, str, str] | None = None, *exts: Node) -> Node:
    """An adjudication element: category = C4BB code (if any) + Blue Button adjudication coding
    for `var`; amount from the money column `col`. Dropped when the amount is missing."""
    members: list[Node] = []
    if exts:
        members.append(extensions(*exts))
    members += [_category(c4bb, var), money("amount", col)]
    return IfHas(col, Obj(None, *members))


def adjudication_reason(col: str, var: str, c4bb: tuple[str, str, str] = ADJ_ADJUSTMENT_REASON) -> Node:
    """An adjudication element carrying a coded reason (e.g. denial reason) instead of an amount."""
    return IfHas(col, Obj(None, _category(c4bb, None), bb_codeable("reason", var, col)))


def total(col: str, var: str, c4bb: tuple[str, str, str]) -> Node:
    """A `total` element (C4BB requires its category from C4BBAdjudication/HL7 adjudication)."""
    return IfHas(col, Obj(None, _category(c4bb, var), money("amount", col)))


def payment(col: str) -> Node:
    """`payment.amount` from a money column."""
    return Obj("payment", money("amount", col))


def benefit_payment_status(code: str = "other", display: str = "Other") -> Node:
    """Header adjudication slice C4BB requires on institutional and pharmacy EOBs: category
    benefitpaymentstatus, reason from C4BBPayerAdjudicationStatus. Medicare claims do not say
    whether the provider was in network, hence "other" as idr-out writes."""
    return Obj(
        None,
        codeable("category", const_coding(CS_ADJUDICATION_DISCRIMINATOR, "benefitpaymentstatus", "Benefit Payment Status")),
        codeable("reason", const_coding(CS_PAYER_ADJUDICATION_STATUS, code, display)),
    )
