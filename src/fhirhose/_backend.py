"""Pick the compiled core or its pure-Python twin, and say which (`backend`)."""

from __future__ import annotations

import os

if os.environ.get("FHIRHOSE_PURE") == "1":
    from . import _core_py as core

    backend = "py"
else:
    try:
        from . import _core as core  # type: ignore[no-redef]

        backend = "cext"
    except ImportError:  # not built (pure install): the twin serves
        from . import _core_py as core

        backend = "py"

__all__ = ["core", "backend"]
