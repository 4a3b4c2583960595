# cython: language_level=3
"""Compiled core of fhirhose: the template interpreter that writes NDJSON.

Hub file only: the parts are `include`d so calls between them stay C calls.
Pure-Python twin: src/fhirhose/_core_py.py (same names, bytes and errors).
"""

include "buffer.pxi"
include "interp.pxi"
include "scan.pxi"
