"""Resources one by one: rows rendered to separate NDJSON lines, and their ids.

The streaming path (`Exporter.write_rows`) never splits the writer's output; the
Bulk Data v3 outputs do — blocks per patient interleave resources of several
sources, and deleted-resource bundles need the ids the templates emit. Both are
off the hot path (an option the client asks for; a few removed resources).
"""

from __future__ import annotations

import msgspec
import numpy as np

from ..fhir.source import Source

__all__ = ["render_lines", "resource_ids"]

_ID_ONLY = ("id",)


class _Id(msgspec.Struct):
    id: str


_ids = msgspec.json.Decoder(_Id)


def render_lines(exporter, source: Source, rows: np.ndarray, elements: tuple[str, ...] = (),
                 batch_rows: int = 256) -> list[bytes]:
    """One NDJSON line (newline included) per row of `source`, in row order.

    The writer emits exactly one line per row (JSON strings escape newlines), so
    splitting its output at newlines recovers the resources."""
    w = exporter.writer(source.template, source.rtype, elements)
    out = exporter.core.OutBuffer(1 << 20)
    lines: list[bytes] = []
    for i in range(0, len(rows), batch_rows):
        out.clear()
        w.write(np.ascontiguousarray(rows[i : i + batch_rows], np.int64), out)
        data = out.getvalue()
        lines.extend(line + b"\n" for line in data.split(b"\n")[:-1])
    return lines


def resource_ids(exporter, source: Source, rows: np.ndarray) -> list[str]:
    """The `id` each row of `source` gets, as its template writes it (rendered cut to
    `_elements=id`, so the id cannot drift from the resource's)."""
    return [_ids.decode(line).id for line in render_lines(exporter, source, rows, _ID_ONLY)]
