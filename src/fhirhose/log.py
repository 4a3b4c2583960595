"""Loggers: one per module, named from `__name__`, all under the one root `fhirhose`.

Configuring `logging.getLogger("fhirhose")` (or the root logger, as `fhirhose` the CLI
does) reaches every one of them; names never need typing by hand.
"""

from __future__ import annotations

import logging

__all__ = ["ROOT", "get_logger"]

ROOT = "fhirhose"

# A library stays silent unless the application configures logging.
logging.getLogger(ROOT).addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """The logger for module `name` (pass `__name__`, e.g. `fhirhose.server.runner`);
    a name outside the package (a script's `__main__`) becomes a child of the root."""
    if name != ROOT and not name.startswith(ROOT + "."):
        name = ROOT if name == "__main__" else f"{ROOT}.{name}"
    return logging.getLogger(name)
