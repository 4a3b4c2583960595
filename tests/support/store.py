"""Helpers for tests of the claims store's files."""

import os


def listing(root) -> list[tuple[str, int]]:
    """Every file under `root` as (relative path, size), sorted: a store's on-disk state."""
    out = []
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out.append((os.path.relpath(p, root), os.path.getsize(p)))
    return sorted(out)
