"""What the client remembers on disk: one export's progress, and `_since` per organization.

`PullState` lives in the output folder (`.fhirhose-pull.json`): the status URL, every
manifest file seen and how far its download got, so `--resume` picks an interrupted
export up where it stopped (a partial file continues with `Range`/`If-Range`). It is
rewritten atomically whenever a fact changes that a restart would need.

`SinceState` maps an organization's export (server, client, kick-off path, types) to the
`transactionTime` of its last complete pull: the `_since` of the next incremental one.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from ..errors import ClientError

__all__ = ["FileState", "PullState", "SinceState", "STATE_NAME", "write_atomic"]

STATE_NAME = ".fhirhose-pull.json"


class FileState(msgspec.Struct, kw_only=True):
    """One manifest file and its download."""

    url: str
    kind: str  # output | error | deleted
    type: str | None
    name: str  # local file name, without the compression suffix
    count: int | None = None
    sha256: str | None = None  # hex, of the NDJSON (BCDA's checksum, when the manifest gives it)
    length: int | None = None  # NDJSON bytes (from the manifest, when it gives them)
    stored_encoding: str | None = None  # the coding the server stores the file in (manifest)
    stored_sha256: str | None = None  # hex, of the stored bytes (manifest)
    stored_length: int | None = None  # stored bytes (manifest)
    repr_digest: str | None = None  # hex, the download's Repr-Digest (sha-256) when it sent one
    checked: str | None = None  # what vouched for the content: digest | sha256 | count | none
    etag: str | None = None  # of the partial download's representation
    encoding: str | None = None  # content coding of the partial download (None: identity)
    path: str | None = None  # final local file once complete and verified
    lines: int | None = None
    ndjson_bytes: int | None = None
    stored_bytes: int | None = None  # as kept on disk
    encoded_bytes: int | None = None  # the representation as sent (compressed, when it was)

    @property
    def done(self) -> bool:
        return self.path is not None


class PullState(msgspec.Struct, kw_only=True):
    """One export as the client tracks it."""

    fhir_base: str
    status_url: str
    request: str | None = None  # kick-off URL
    transaction_time: str | None = None
    manifest: dict | None = None  # pages merged (output, error, deleted), once complete
    files: list[FileState] = []
    complete: bool = False  # every file downloaded and verified
    deleted: bool = False  # DELETE sent

    @classmethod
    def load(cls, out_dir: Path) -> PullState | None:
        path = Path(out_dir) / STATE_NAME
        try:
            return msgspec.json.decode(path.read_bytes(), type=cls)
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError) as e:
            raise ClientError(f"{path}: unreadable pull state ({e}); delete it to start over") from None

    def save(self, out_dir: Path) -> None:
        write_atomic(Path(out_dir) / STATE_NAME, msgspec.json.encode(self))


class _Since(msgspec.Struct):
    since: dict[str, str] = {}


class SinceState:
    """transactionTime of the last complete pull, per organization and export (a JSON file)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @staticmethod
    def key(fhir_base: str, who: str, kickoff_path: str, types: list[str] | None) -> str:
        return " ".join([fhir_base.rstrip("/"), who, kickoff_path, ",".join(sorted(types or ["*"]))])

    def _read(self) -> _Since:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=_Since)
        except FileNotFoundError:
            return _Since()
        except (OSError, msgspec.DecodeError) as e:
            raise ClientError(f"{self.path}: unreadable incremental state ({e})") from None

    def get(self, key: str) -> str | None:
        return self._read().since.get(key)

    def set(self, key: str, transaction_time: str) -> None:
        doc = self._read()
        doc.since[key] = transaction_time
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, msgspec.json.format(msgspec.json.encode(doc), indent=2))


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
