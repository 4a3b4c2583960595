"""FHIR instants (`_since`, `_until`, `--since`): one grammar for the server and the CLI."""

from __future__ import annotations

import datetime as _dt
import re

from ..errors import RequestError

__all__ = ["parse_instant"]

# FHIR instant: seconds required, zone required (a date alone is accepted as midnight UTC).
_INSTANT = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2}))?$"
)


def parse_instant(value: str, param: str) -> _dt.datetime:
    """A FHIR instant (or a plain date) as an aware datetime; RequestError naming `param`."""
    if not _INSTANT.match(value):
        raise RequestError(f"{param} {value!r} is not a FHIR instant (e.g. 2024-01-31T00:00:00Z)", param=param)
    try:
        if len(value) == 10:
            return _dt.datetime.fromisoformat(value).replace(tzinfo=_dt.UTC)
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(f"{param} {value!r} is not a valid instant", param=param) from None
