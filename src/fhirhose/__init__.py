"""fhirhose: bulk FHIR export of Medicare claims from a columnar store.

Public API (everything else is private):
- columns: `Table`, `Str`, `Date`, `Num`, `Time`, `Cat`, `NO_DATE`, `NO_NUM`
- writing: `Writer`, `OutBuffer`, `Template`; `backend` is "cext" or "py"
- errors: `FhirhoseError` and its subclasses
"""

from . import errors
from ._backend import backend, core
from .columns import NO_DATE, NO_NUM, Cat, Date, Num, Str, Table, Time
from .errors import (
    AuthError,
    BatchError,
    ClientError,
    ExportError,
    FhirhoseError,
    IngestError,
    InputError,
    RequestError,
    StoreError,
    TemplateError,
)
from .template import Template

Writer = core.Writer
OutBuffer = core.OutBuffer

__version__ = "0.1.0"

__all__ = [
    "backend",
    "Writer",
    "OutBuffer",
    "Template",
    "Table",
    "Str",
    "Date",
    "Num",
    "Time",
    "Cat",
    "NO_DATE",
    "NO_NUM",
    *errors.__all__,
    "__version__",
]
