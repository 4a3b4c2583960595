"""The core backends every writer test runs on: the pure-Python twin, and the compiled
core when it is built."""

from fhirhose import _core_py

try:
    from fhirhose import _core as cext
except ImportError:  # pure build: only the twin runs
    cext = None

BACKENDS = [_core_py] + ([cext] if cext is not None else [])
