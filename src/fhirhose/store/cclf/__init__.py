"""CCLF and preference-file ingest (being split into modules)."""

from .fixed import *  # noqa: F403
from .fixed import __all__  # noqa: F401
from .fixed import _parse_dates, _parse_decimal  # noqa: F401
