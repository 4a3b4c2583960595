"""Loggers: one per module, named from `__name__`, all under the one root `fhirhose`.

Configuring `logging.getLogger("fhirhose")` (or the root logger, as `fhirhose` the CLI
does) reaches every one of them; names never need typing by hand.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

__all__ = ["ROOT", "get_logger", "JOB_ID", "JsonFormatter", "configure"]

ROOT = "fhirhose"

# A library stays silent unless the application configures logging.
logging.getLogger(ROOT).addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """The logger for module `name` (pass `__name__`, e.g. `fhirhose.server.runner`);
    a name outside the package (a script's `__main__`) becomes a child of the root."""
    if name != ROOT and not name.startswith(ROOT + "."):
        name = ROOT if name == "__main__" else f"{ROOT}.{name}"
    return logging.getLogger(name)


# The job a log line is about: set where a job is handled (a chunk task, a request on a
# job URL); contextvars follow asyncio tasks, so concurrent jobs never mix their ids.
JOB_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("fhirhose_job_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the job id (when there is
    one) and the exception text; for log shippers on many nodes."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        job = JOB_ID.get()
        if job is not None:
            doc["job_id"] = job
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


def configure(level: int, fmt: str = "text") -> None:
    """Root logging for the CLI: `text` (human) or `json` (one object per line, UTC)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        formatter = JsonFormatter()
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
