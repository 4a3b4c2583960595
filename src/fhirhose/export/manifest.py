"""The Bulk Data manifest (complete-status response body) as msgspec Structs, and the
integrity facts each output item carries (one shape offline and served)."""

from __future__ import annotations

import msgspec

from .files import FileInfo

__all__ = ["OutputItem", "Manifest", "CHECKSUM_EXT", "FILESIZE_EXT", "STORED_EXT", "SOURCE_EXT", "output_item",
           "integrity_extension"]

# The file as stored and sent with its Content-Encoding: {"contentEncoding", "sha256" (hex), "length"
# (stored bytes), "ndjsonLength"}. A client verifies the digest over the bytes as they arrive,
# before decoding; the codec's own check (gzip CRC32 + ISIZE, zstd content checksum) covers the NDJSON.
STORED_EXT = "urn:fhirhose:stored"
# Optional (off by default), as CMS BCDA's manifest gives it: "sha256:<hex>" and byte length of the
# uncompressed NDJSON.
CHECKSUM_EXT = "https://fhir.cms.gov/bulkdata/checksum"
FILESIZE_EXT = "https://fhir.cms.gov/bulkdata/fileSize"
# In a pulled copy's manifest.json: the URL a local file was downloaded from.
SOURCE_EXT = "urn:fhirhose:source-url"


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
    error: list[OutputItem]  # no default: present (as []) even when empty, as the server's
    deleted: list[OutputItem] = []
    extension: dict[str, object] | None = None


def integrity_extension(*, compression: str, digest: str, stored: int, length: int,
                        sha256: str | None = None) -> dict[str, object]:
    """An output item's integrity extensions: the stored representation always, BCDA's
    uncompressed checksum and size when `sha256` was computed."""
    ext: dict[str, object] = {
        STORED_EXT: {"contentEncoding": compression, "sha256": digest, "length": stored, "ndjsonLength": length}
    }
    if sha256:
        ext[CHECKSUM_EXT] = f"sha256:{sha256}"
        ext[FILESIZE_EXT] = length
    return ext


def output_item(info: FileInfo, url: str) -> OutputItem:
    return OutputItem(
        type=info.type,
        url=url,
        count=info.count,
        extension=integrity_extension(compression=info.compression, digest=info.digest, stored=info.stored,
                                      length=info.length, sha256=info.sha256),
    )
