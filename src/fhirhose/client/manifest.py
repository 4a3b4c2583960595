"""The manifest as the client reads it and as it writes it for the local files.

A server's manifest items say what each file holds (`count`) and how to check it: BCDA's
checksum and size of the NDJSON, fhirhose's digest of the stored (compressed) bytes.
`integrity` reads those into `FileState` fields; `local_name` gives each file a name that
stays inside the output folder; `local_manifest` is the manifest as pulled, its urls
pointing at the local files and each item keeping its source URL in an extension.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from ..export.manifest import CHECKSUM_EXT, FILESIZE_EXT, SOURCE_EXT, STORED_EXT
from .files import safe_name
from .state import PullState, write_atomic

__all__ = ["KINDS", "integrity", "local_name", "local_manifest", "write_manifest"]

KINDS = ("output", "error", "deleted")


def _hex64(value: object) -> str | None:
    text = str(value)
    algo, _, hexd = text.rpartition(":")
    if algo in ("", "sha256") and len(hexd) == 64 and all(c in "0123456789abcdefABCDEF" for c in hexd):
        return hexd.lower()
    return None


def integrity(item: dict) -> dict:
    """FileState integrity fields from an output item's extensions, as far as the server gives them:
    BCDA's NDJSON checksum and size, fhirhose's stored representation."""
    ext = item.get("extension")
    out: dict = {}
    if not isinstance(ext, dict):
        return out
    for key, value in ext.items():
        tail = key.rstrip("/").rsplit("/", 1)[-1].lower()
        if key == STORED_EXT and isinstance(value, dict):
            enc, sha = value.get("contentEncoding"), _hex64(value.get("sha256", ""))
            if enc in ("gzip", "zstd", "identity") and sha:
                out.update(stored_encoding=enc, stored_sha256=sha)
                if isinstance(value.get("length"), int):
                    out["stored_length"] = value["length"]
            if isinstance(value.get("ndjsonLength"), int):
                out.setdefault("length", value["ndjsonLength"])
        elif key == CHECKSUM_EXT or tail in ("checksum", "sha256"):
            if sha := _hex64(value):
                out["sha256"] = sha
        elif (key == FILESIZE_EXT or tail in ("filesize", "length")) and isinstance(value, int):
            out["length"] = value
    return out


def local_name(url: str, rtype: str | None, taken: set[str]) -> str:
    """A local NDJSON file name for `url` that no other file of the pull has (`taken`, which
    it joins); the file's own name when it is safe and free, else `<type>-<n>.ndjson`."""
    base = safe_name(unquote(urlsplit(url).path.rsplit("/", 1)[-1]))
    for suffix in (".gz", ".zst"):
        base = base.removesuffix(suffix)
    if not base.endswith(".ndjson"):
        base += ".ndjson"
    n = 1
    while base in taken or base == "manifest.json":
        base = f"{safe_name(rtype or 'file')}-{n}.ndjson"
        n += 1
    taken.add(base)
    return base


def local_manifest(manifest: dict, state: PullState) -> dict:
    """The manifest as pulled, its urls pointing at the local files (relative to the folder);
    each item keeps the URL it came from in an extension."""
    local = {f.url: f.path for f in state.files if f.path}
    doc = dict(manifest)
    for kind in KINDS:
        items = []
        for item in manifest.get(kind) or []:
            url = urljoin(state.status_url, item.get("url", ""))
            ext = dict(item.get("extension") or {})
            ext[SOURCE_EXT] = url
            items.append({**item, "url": local.get(url, item.get("url")), "extension": ext})
        doc[kind] = items
    return doc


def write_manifest(path: Path, manifest: dict) -> None:
    write_atomic(path, json.dumps(manifest, indent=2).encode() + b"\n")
