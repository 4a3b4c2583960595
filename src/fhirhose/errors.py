"""One error tree for fhirhose.

Every error the project raises on purpose derives from `FhirhoseError`. Errors
caused by bad input also derive from `ValueError`, so callers that only know
the standard library can still catch them. Messages name the fact and the place
("CCLF1 line 118: CLM_FROM_DT '2023-13-01' is not a date").
"""

from __future__ import annotations

__all__ = [
    "FhirhoseError",
    "InputError",
    "BatchError",
    "TemplateError",
    "IngestError",
    "StoreError",
    "ExportError",
    "RequestError",
    "AuthError",
    "ClientError",
]


class FhirhoseError(Exception):
    """Root of every error fhirhose raises on purpose."""


class InputError(FhirhoseError, ValueError):
    """Bad input: a value, file or request that does not meet the contract."""


class BatchError(InputError):
    """A columnar batch is inconsistent (lengths, offsets, categories)."""


class TemplateError(FhirhoseError):
    """A resource template is malformed or does not fit the tables bound to it."""


class IngestError(InputError):
    """A source file (CCLF, preference file) cannot be loaded; names file, line and field."""


class StoreError(FhirhoseError):
    """The store on disk is missing, corrupt or of an unknown format version."""


class ExportError(FhirhoseError):
    """An export job could not be planned or completed."""


class RequestError(InputError):
    """A Bulk Data request is malformed; names the parameter."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param


class AuthError(FhirhoseError):
    """Authentication or authorization failed (401/403)."""

    def __init__(self, message: str, *, status: int = 401, oauth_error: str | None = None):
        super().__init__(message)
        self.status = status
        self.oauth_error = oauth_error


class ClientError(FhirhoseError):
    """The bulk client could not complete an export (carries the server's text)."""
