"""The Bulk Data manifest (complete-status response body) as msgspec Structs."""

from __future__ import annotations

import msgspec

from .files import FileInfo

__all__ = ["OutputItem", "Manifest", "CHECKSUM_EXT", "FILESIZE_EXT", "output_item"]

# Where each file's integrity facts go (as CMS BCDA's manifest extension does):
# sha256 and byte length of the uncompressed NDJSON.
CHECKSUM_EXT = "https://fhir.cms.gov/bulkdata/checksum"
FILESIZE_EXT = "https://fhir.cms.gov/bulkdata/fileSize"


class OutputItem(msgspec.Struct, omit_defaults=True):
    type: str
    url: str
    count: int | None = None
    extension: dict[str, object] | None = None


class Manifest(msgspec.Struct, omit_defaults=True):
    transactionTime: str
    request: str
    requiresAccessToken: bool
    output: list[OutputItem]
    error: list[OutputItem] = []
    deleted: list[OutputItem] = []
    extension: dict[str, object] | None = None


def output_item(info: FileInfo, url: str) -> OutputItem:
    return OutputItem(
        type=info.type,
        url=url,
        count=info.count,
        extension={CHECKSUM_EXT: f"sha256:{info.sha256}", FILESIZE_EXT: info.length},
    )
