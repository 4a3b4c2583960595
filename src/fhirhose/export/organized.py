"""`organizeOutputBy=Patient` (Bulk Data v3): output files of resource blocks.

A block is a `Parameters` header naming `Patient/<id>`, the Patient, then the
beneficiary's resources that reference it (Coverage, ExplanationOfBenefit) in
`spec.types` order. A beneficiary with nothing to send gets no block; one with
claims or coverage updated since `_since` gets its Patient too, whatever its
last update (the IG lets a server add referenced resources). Files roll over
only between blocks, so a block is never split and `continuesInFile` is never
needed. Files hold several types, so their manifest items carry no `type`.

Rows are selected exactly as in the per-type export (`Exporter.rows_for`); the
writer renders each source's rows of a group of beneficiaries in one call, and
the lines are then interleaved per beneficiary.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import numpy as np
from msgspec import Struct

from ..errors import ExportError
from .files import FileInfo, RollingWriter
from .lines import render_lines, resource_ids

__all__ = ["ORGANIZE_BY", "export_organized", "header_line"]

# Resource types output can be organized by (the Patient compartment is what a claims store has).
ORGANIZE_BY = ("Patient",)


class _Reference(Struct):
    reference: str


class _HeaderParameter(Struct):
    name: str
    valueReference: _Reference


class _Header(Struct, tag_field="resourceType", tag="Parameters"):
    parameter: list[_HeaderParameter]


_encode = msgspec.json.Encoder().encode


def header_line(rtype: str, rid: str) -> bytes:
    """The block header: `{"resourceType":"Parameters","parameter":[{"name":"header",...}]}` + newline."""
    return _encode(_Header([_HeaderParameter("header", _Reference(f"{rtype}/{rid}"))])) + b"\n"


def export_organized(exporter, bene_rows: np.ndarray, spec, out_dir: str | os.PathLike, *, chunk: int = 0,
                     since_exempt: np.ndarray | None = None, claim_rule=None, block_benes: int = 256) -> list[FileInfo]:
    """Write one chunk's blocks (files `file_name("Patient", chunk, part)`); on error none is left."""
    spec.check()
    patients = [s for s in exporter.sources if s.rtype == "Patient"]
    if not patients:
        raise ExportError("organizeOutputBy=Patient: the exporter has no Patient source to head blocks with")
    others = [s for t in spec.types if t != "Patient" for s in exporter.sources if s.rtype == t]
    bene_rows = np.asarray(bene_rows, np.int64)
    roll = RollingWriter(Path(out_dir), "Patient", spec.compression, max_bytes=spec.max_file_bytes, chunk=chunk,
                         level=spec.level, ndjson_sha256=spec.ndjson_sha256, fsync=spec.fsync)
    try:
        for i in range(0, len(bene_rows), block_benes):
            _write_blocks(exporter, bene_rows[i : i + block_benes], spec, patients, others, roll, since_exempt,
                          claim_rule)
            exporter.release_pages()
        return roll.close()
    except BaseException:
        roll.abort()
        for f in roll.done:
            (Path(out_dir) / f.name).unlink(missing_ok=True)
        raise


def _write_blocks(exporter, benes, spec, patients, others, roll: RollingWriter, since_exempt, claim_rule) -> None:
    members: dict[int, list[bytes]] = {}
    for source in others:
        rows = exporter.rows_for(source, benes, spec, since_exempt, claim_rule)
        if len(rows):
            owners = rows if source.table == "bene" else exporter._owner(source.table, rows)
            for owner, line in zip(owners.tolist(), render_lines(exporter, source, rows, spec.elements), strict=True):
                members.setdefault(owner, []).append(line)
    heads = set(members)
    if "Patient" in spec.types:
        for source in patients:
            heads.update(exporter.rows_for(source, benes, spec, since_exempt, claim_rule).tolist())
    if not heads:
        return
    rows = np.array(sorted(heads), np.int64)
    ids = resource_ids(exporter, patients[0], rows)
    own = render_lines(exporter, patients[0], rows, spec.elements) if "Patient" in spec.types else None
    batch: list[bytes] = []
    count = size = 0
    for k, (bene, pid) in enumerate(zip(rows.tolist(), ids, strict=True)):
        block = [header_line("Patient", pid), *([own[k]] if own is not None else ()), *members.get(bene, ())]
        batch.extend(block)
        count += len(block)
        size += sum(map(len, block))
        if size >= spec.batch_bytes:  # whole blocks per write: rollover never splits one
            roll.write(b"".join(batch), count)
            batch, count, size = [], 0, 0
    if batch:
        roll.write(b"".join(batch), count)
