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

__all__ = ["core", "backend", "announce_backend"]


def announce_backend(command: str, quiet: bool = False) -> str:
    """Log which core `command` runs on (unless `quiet`: the command says it elsewhere); on the
    pure-Python twin always warn loudly on stderr (it is ~10x slower: a benchmark or a server on
    it measures the wrong thing)."""
    import sys

    from .log import get_logger

    if not quiet:
        get_logger(__name__).info("%s: core backend %s", command, backend)
    if backend != "cext":
        why = "FHIRHOSE_PURE=1" if os.environ.get("FHIRHOSE_PURE") == "1" else "fhirhose._core is not built"
        print(f"WARNING: fhirhose {command} runs on the pure-Python twin ({why}): about 10x slower than the "
              f"compiled core. Build it (`python setup.py build_ext --inplace`) or install the package.",
              file=sys.stderr, flush=True)
    return backend
