"""Resources removed since `_since`: the Bulk Data v3 manifest's `deleted` files.

An incremental export that only adds would leave a client holding claims that are
gone. With `_since` = S and the export's cut-off U (the earlier of `_until` and
the transaction time), a resource is listed as deleted when the client could have
received it before S and it is no longer current at U:

- a claim version superseded in [S, U): replaced by a newer version under another
  id, or cancelled (the newer version is a cancel, `clm_adjsmt_type_cd` 1);
  `store.versions.superseded_between` decides from the stored versions;
- every resource of a beneficiary who left the population since S (opted out of
  data sharing, dropped from the roster): the access rules hand their rows in as
  `removed`.

"Could have received" is the export's own row selection (access limits, SUD
exclusion, `_typeFilter` service dates) over what was loaded before S, so a
withheld claim never shows up here, not even by id. Beneficiaries who get their
full history despite `_since` (new to a roster) are skipped: they hold nothing
older. Nothing listed here is in the same export's output (that holds only
versions loaded in [S, U)).

Each line is a transaction Bundle of one beneficiary's removed resources, each
entry `request: {method: DELETE, url: Type/id}`.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import numpy as np
from msgspec import Struct

from ..fhir.source import Source
from ..store.versions import superseded_between
from .files import FileInfo, NdjsonFile, file_name
from .lines import resource_ids

__all__ = ["DELETED_TYPE", "DeletedBundle", "deleted_rows", "export_deleted"]

DELETED_TYPE = "Bundle"


class BundleRequest(Struct):
    method: str
    url: str


class BundleEntry(Struct):
    request: BundleRequest


class DeletedBundle(Struct, tag_field="resourceType", tag="Bundle"):
    """One line of a deleted file: a transaction of DELETE entries."""

    type: str
    entry: list[BundleEntry]


_encode = msgspec.json.Encoder().encode


def _any_version(spec):
    """`spec` without final-action criteria: a superseded version was final when the client got it."""
    filters = tuple(msgspec.structs.replace(f, final_action=None) for f in spec.claim_filters)
    return msgspec.structs.replace(spec, since_ms=None, claim_filters=filters)


def deleted_rows(exporter, bene_rows: np.ndarray, removed: np.ndarray, spec, since_ms: int, until_ms: int | None, *,
                 since_exempt: np.ndarray | None = None, claim_rule=None) -> list[tuple[Source, np.ndarray]]:
    """(source, rows) of what to list as deleted, in `spec.types` order (see the module doc).

    `bene_rows` are the chunk's beneficiaries in scope, `removed` those that left it;
    `spec` is the export's spec already narrowed to the scope."""
    bene_rows = np.asarray(bene_rows, np.int64)
    removed = np.asarray(removed, np.int64)
    if since_exempt is not None and len(since_exempt):
        bene_rows = bene_rows[~np.isin(bene_rows, since_exempt)]
    loaded_before = msgspec.structs.replace(_any_version(spec), until_ms=since_ms)
    anything = msgspec.structs.replace(_any_version(spec), until_ms=until_ms)
    links = exporter.tables["bene"].links
    out = []
    for rtype in spec.types:
        for source in exporter.sources:
            if source.rtype != rtype:
                continue
            parts = []
            if source.table != "bene" and len(bene_rows):
                cand = exporter.rows_for(source, bene_rows, loaded_before, None, claim_rule)
                if len(cand):
                    stop = int(links[source.table][int(bene_rows.max()) + 1])
                    parts.append(cand[superseded_between(exporter.tables[source.table], cand, since_ms, until_ms, stop)])
            if len(removed):
                parts.append(exporter.rows_for(source, removed, anything, None, claim_rule))
            rows = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
            if len(rows):
                out.append((source, rows))
    return out


def export_deleted(exporter, bene_rows: np.ndarray, removed: np.ndarray, spec, since_ms: int, until_ms: int | None,
                   out_dir: str | os.PathLike, *, chunk: int = 0, since_exempt: np.ndarray | None = None,
                   claim_rule=None) -> list[FileInfo]:
    """Write the chunk's deleted file (`file_name("Bundle", chunk, 1)`); [] when nothing was removed."""
    found = deleted_rows(exporter, bene_rows, removed, spec, since_ms, until_ms,
                         since_exempt=since_exempt, claim_rule=claim_rule)
    by_bene: dict[int, list[BundleEntry]] = {}
    for source, rows in found:
        owners = rows if source.table == "bene" else exporter._owner(source.table, rows)
        for owner, rid in zip(owners.tolist(), resource_ids(exporter, source, rows), strict=True):
            by_bene.setdefault(owner, []).append(BundleEntry(BundleRequest("DELETE", f"{source.rtype}/{rid}")))
    if not by_bene:
        return []
    f = NdjsonFile(Path(out_dir), file_name(DELETED_TYPE, chunk, 1, spec.compression), DELETED_TYPE,
                   spec.compression, spec.level, ndjson_sha256=spec.ndjson_sha256, fsync=spec.fsync)
    try:
        for bene in sorted(by_bene):
            f.write(_encode(DeletedBundle("transaction", by_bene[bene])) + b"\n", 1)
    except BaseException:
        f.abort()
        raise
    return [f.close()]
