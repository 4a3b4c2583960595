"""Test helper: writes fixed-width CCLF files from the packaged v36 layouts.

`record(fid, values)` lays out one record: text fields left-aligned, numbers
and amounts right-aligned, every field checked to fit. `write_delivery`
writes a delivery's files plus its CCLF0 under standard CCLF names.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from fhirhose.store.cclf import layout

DESCRIPTIONS = {
    "1": "Part A Claims Header File", "2": "Part A Claims Revenue Center Detail File",
    "3": "Part A Procedure Code File", "4": "Part A Diagnosis Code File", "5": "Part B Physicians File",
    "6": "Part B DME File", "7": "Part D File", "8": "Beneficiary Demographics File", "9": "BENE XREF File",
    "A": "Part A BE and Demo Codes File", "B": "Part B BE and Demo Codes File",
}


def reclen(fid: str) -> int:
    return max(f.end for f in layout(fid))


def record(fid: str, values: Mapping[str, object], length: int | None = None) -> bytes:
    fields = {f.name: f for f in layout(fid)}
    out = bytearray(b" " * (length or reclen(fid)))
    for name, value in values.items():
        f = fields[name]
        if f.end > len(out):
            continue  # an older, shorter record: the field does not exist
        text = str(value).encode("ascii")
        width = f.end - f.start
        assert len(text) <= width, (fid, name, value)
        right = f.fmt.startswith(("9", "-9"))
        out[f.start : f.end] = text.rjust(width) if right else text.ljust(width)
    return bytes(out)


def file_name(fid: str, aco="A1234", kind="Y", yy="24", date="240115", env="P") -> str:
    return f"{env}.{aco}.ACO.ZC{fid}{kind}{yy}.D{date}.T1234567"


def cclf0(rows: Mapping[str, tuple[int, int]]) -> bytes:
    lines = ["File Number  |File Description    |Total Records Count |Record Length"]
    for fid, (count, length) in rows.items():
        lines.append(f"CCLF{fid:<3}|{DESCRIPTIONS[fid]:<43}|{count:>11}|{length:>5}")
    return ("\n".join(lines) + "\n").encode()


def write_delivery(
    directory: Path,
    files: Mapping[str, Sequence[Mapping[str, object]]],
    *,
    lengths: Mapping[str, int] | None = None,
    counts: Mapping[str, int] | None = None,
    listed: Sequence[str] | None = None,
    zip_name: str | None = None,
    **name,
) -> list[Path]:
    """Write the files of one delivery (+ CCLF0) and return their paths (or the zip's)."""
    directory.mkdir(parents=True, exist_ok=True)
    lengths, counts = dict(lengths or {}), dict(counts or {})
    blobs = {}
    for fid, recs in files.items():
        n = lengths.get(fid, reclen(fid))
        blobs[fid] = b"".join(record(fid, r, n) + b"\n" for r in recs)
    zero = {fid: (counts.get(fid, len(files.get(fid, ()))), lengths.get(fid, reclen(fid)))
            for fid in (listed or list(files))}
    blobs["0"] = cclf0(zero)
    paths = []
    for fid, data in blobs.items():
        p = directory / file_name(fid, **name)
        p.write_bytes(data)
        paths.append(p)
    if zip_name:
        z = directory / zip_name
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in paths:
                zf.write(p, p.name)
                p.unlink()
        return [z]
    return paths
