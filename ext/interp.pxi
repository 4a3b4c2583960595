# The template interpreter: executes a bound Plan (fhirhose.template) over
# raw column pointers. No Python object is touched per row.
cimport cython
import numpy as np
from cpython.bytes cimport PyBytes_AS_STRING

from fhirhose.errors import TemplateError

cdef enum:
    MAX_COUNTERS = 8
    MAX_DEPTH = 64
    MAX_SLOTS = 32

cdef enum:
    OP_END = 0
    OP_RAW = 1
    OP_CONST = 2
    OP_STR = 3
    OP_CAT = 4
    OP_DATE = 5
    OP_NUM = 6
    OP_TIME = 7
    OP_MAP = 8
    OP_OPEN = 9
    OP_CLOSE = 10
    OP_IFCAT = 11
    OP_IFHAS = 12
    OP_EACH = 13
    OP_NEXT = 14
    OP_SEQ = 15
    OP_SEQ_STRONG = 16
    OP_TICK = 17
    OP_IFMISSING = 18

cdef enum:
    K_STR = 1
    K_CAT = 2
    K_DATE = 3
    K_NUM = 4
    K_TIME = 5

cdef int32_t NO_DATE_C = -2147483648
cdef int64_t NO_NUM_C = -9223372036854775807 - 1


cdef struct ColC:
    int kind
    int slot
    int scale
    bint trim
    int label_base
    int nlabels              # cat: codes index labels, maps and sets below this
    const int64_t* offsets   # str
    const uint8_t* data      # str
    const uint8_t* data_end  # str: end of `data` (short strings are read as whole words)
    const uint16_t* codes    # cat
    const int32_t* days      # date
    const int64_t* i64       # num, time


cdef struct LinkC:
    int parent_slot
    int child_slot
    const int64_t* offsets


cdef struct Frame:
    Py_ssize_t pos
    int64_t strong
    int saved


def _straight_span(name, ops, frag_lens, max_frag):
    """Most bytes the ops can write on one pass without a loop, not counting escaped
    string values: every jump but NEXT's goes forward, so between two room checks (the
    start of a resource, each NEXT back to its loop body, each string value) an op runs
    at most once, and one check for this many bytes covers them all."""
    lens = [int(n) for n in frag_lens]
    total = 0
    for i, (op, a, b, c) in enumerate(np.asarray(ops).reshape(-1, 4).tolist()):
        def frag(f):
            if not 0 <= f < len(lens):
                raise TemplateError(f"{name}: op {i} names fragment {f}, not among its {len(lens)}")
            return lens[f]
        if op == OP_RAW or op == OP_CLOSE:
            total += frag(a)
        elif op == OP_CONST or op == OP_OPEN:
            total += 1 + frag(a)
        elif op == OP_STR:
            total += 1 + frag(b) + frag(c)
        elif op == OP_CAT:
            total += 1 + frag(b) + max_frag + frag(c)
        elif op == OP_NUM or op == OP_DATE or op == OP_TIME or op == OP_SEQ or op == OP_SEQ_STRONG:
            total += 1 + frag(b) + 32 + frag(c)  # a number, date or instant: < 32 bytes
        elif op == OP_MAP:
            total += 1 + max_frag
    return total


cdef inline char* sep_at(Buf* out) noexcept nogil:
    # Where the next member or element goes: after a "," unless the output is empty
    # or has just opened an object or array.
    cdef char* w = out.data + out.size
    cdef char last = out.data[out.size - 1] if out.size else 123
    if last != 123 and last != 91:
        w[0] = 44
        w += 1
    return w


@cython.final
cdef class Writer:
    """Runs a bound `Plan`: `write(rows, out)` appends one NDJSON line per root row."""
    cdef readonly object plan
    cdef list _keep          # numpy arrays / bytes whose memory the pointers use
    cdef const int32_t* ops
    cdef Py_ssize_t nops
    cdef const char* blob
    cdef const int64_t* foff
    cdef const int32_t* maps
    cdef const uint8_t* sets
    cdef ColC* cols
    cdef LinkC* links
    cdef int nslots
    cdef int64_t root_n
    cdef Py_ssize_t max_frag
    cdef Py_ssize_t span      # most bytes the ops between two room checks can write

    def __cinit__(self):
        self.cols = NULL
        self.links = NULL

    def __dealloc__(self):
        PyMem_Free(self.cols)
        PyMem_Free(self.links)

    def __init__(self, plan):
        cdef Py_ssize_t i
        cdef ColC* c
        cdef const int32_t[::1] ops_v
        cdef const int64_t[::1] foff_v
        cdef const int32_t[::1] maps_v
        cdef const uint8_t[::1] sets_v
        cdef const int64_t[::1] i64_v
        cdef const int32_t[::1] i32_v
        cdef const uint16_t[::1] u16_v
        cdef const uint8_t[::1] u8_v
        if len(plan.ops) % 4:
            raise TemplateError(f"{plan.name}: op array length {len(plan.ops)} is not a multiple of 4")
        if len(plan.tables) > MAX_SLOTS:
            raise TemplateError(f"{plan.name}: more than {MAX_SLOTS} tables")
        self.plan = plan
        self._keep = []
        ops = np.ascontiguousarray(plan.ops, dtype=np.int32)
        foff = np.ascontiguousarray(plan.frag_offsets, dtype=np.int64)
        maps = np.ascontiguousarray(plan.maps, dtype=np.int32)
        sets = np.ascontiguousarray(plan.sets, dtype=np.uint8)
        blob = bytes(plan.frag_blob) + bytes(SLACK)  # see put_frag
        self._keep += [ops, foff, maps, sets, blob]
        ops_v = ops
        foff_v = foff
        maps_v = maps
        sets_v = sets
        self.ops = &ops_v[0]
        self.nops = ops.shape[0] // 4
        self.foff = &foff_v[0]
        self.maps = &maps_v[0]
        self.sets = &sets_v[0]
        self.blob = PyBytes_AS_STRING(blob)
        self.max_frag = int(np.max(np.diff(foff))) if len(foff) > 1 else 0
        self.span = _straight_span(plan.name, ops, np.diff(foff), self.max_frag)
        self.nslots = len(plan.tables)
        self.root_n = plan.tables[0].n

        self.cols = <ColC*>PyMem_Malloc(max(1, len(plan.columns)) * sizeof(ColC))
        if self.cols == NULL:
            raise MemoryError()
        for i, ref in enumerate(plan.columns):
            c = &self.cols[i]
            c.kind = ref.kind
            c.slot = ref.slot
            c.scale = 0
            c.trim = 0
            c.label_base = ref.label_base
            c.nlabels = len(ref.column.labels) if ref.kind == K_CAT else 0
            c.offsets = NULL
            c.data = NULL
            c.data_end = NULL
            c.codes = NULL
            c.days = NULL
            c.i64 = NULL
            col = ref.column
            if ref.kind == K_STR:
                off = np.ascontiguousarray(col.offsets, dtype=np.int64)
                dat = np.ascontiguousarray(col.data, dtype=np.uint8)
                if dat.shape[0] == 0:
                    dat = np.zeros(1, dtype=np.uint8)
                self._keep += [off, dat]
                i64_v = off
                u8_v = dat
                c.offsets = &i64_v[0]
                c.data = &u8_v[0]
                c.data_end = c.data + u8_v.shape[0]
            elif ref.kind == K_CAT:
                cod = np.ascontiguousarray(col.codes, dtype=np.uint16)
                if cod.shape[0] == 0:
                    cod = np.zeros(1, dtype=np.uint16)
                self._keep.append(cod)
                u16_v = cod
                c.codes = &u16_v[0]
            elif ref.kind == K_DATE:
                val = np.ascontiguousarray(col.values, dtype=np.int32)
                if val.shape[0] == 0:
                    val = np.zeros(1, dtype=np.int32)
                self._keep.append(val)
                i32_v = val
                c.days = &i32_v[0]
            else:
                val = np.ascontiguousarray(col.values, dtype=np.int64)
                if val.shape[0] == 0:
                    val = np.zeros(1, dtype=np.int64)
                self._keep.append(val)
                i64_v = val
                c.i64 = &i64_v[0]
                if ref.kind == K_NUM:
                    c.scale = col.scale
                    c.trim = col.trim

        self.links = <LinkC*>PyMem_Malloc(max(1, len(plan.links)) * sizeof(LinkC))
        if self.links == NULL:
            raise MemoryError()
        for i, lk in enumerate(plan.links):
            off = np.ascontiguousarray(lk.offsets, dtype=np.int64)
            self._keep.append(off)
            i64_v = off
            self.links[i].parent_slot = lk.parent_slot
            self.links[i].child_slot = lk.child_slot
            self.links[i].offsets = &i64_v[0]

    @property
    def name(self):
        """The bound template's name."""
        return self.plan.name

    def write(self, rows, OutBuffer out):
        """Append the resources of root `rows` (int64 row numbers) to `out`; returns the count."""
        cdef const int64_t[::1] rv = np.ascontiguousarray(rows, dtype=np.int64)
        cdef Py_ssize_t n = rv.shape[0], i
        cdef Py_ssize_t before
        cdef int rc = 0
        cdef Buf buf
        if n == 0:
            return 0
        if out.exports:
            raise BufferError("OutBuffer is exported; release its views first")
        for i in range(n):
            if rv[i] < 0 or rv[i] >= self.root_n:
                raise IndexError(f"{self.plan.name}: row numbers must be within 0..{self.root_n - 1}")
        buf.data = out.data
        buf.size = out.size
        buf.cap = out.cap
        # The loop touches only C data: other threads (compression, the event loop) run meanwhile.
        with nogil:
            for i in range(n):
                before = buf.size
                rc = self._one(rv[i], &buf)
                if rc != 0:
                    buf.size = before  # never leave half a resource behind
                    break
        out.data = buf.data
        out.size = buf.size
        out.cap = buf.cap
        if rc == -1:
            raise MemoryError()
        if rc == -2:
            raise TemplateError(f"{self.plan.name}: nesting deeper than {MAX_DEPTH}")
        if rc == -3:
            raise TemplateError(f"{self.plan.name}: bad op")
        if rc == -4:
            raise TemplateError(f"{self.plan.name}: a Cat code past its column's labels (a damaged table?)")
        return n

    def write_range(self, Py_ssize_t start, Py_ssize_t stop, OutBuffer out):
        """Append root rows start..stop-1."""
        return self.write(np.arange(start, stop, dtype=np.int64), out)

    cdef inline bint missing(self, const ColC* c, const int64_t* row) noexcept nogil:
        cdef int64_t r = row[c.slot]
        if c.kind == K_STR:
            return c.offsets[r] == c.offsets[r + 1]
        if c.kind == K_CAT:
            return c.codes[r] == 0
        if c.kind == K_DATE:
            return c.days[r] == NO_DATE_C
        return c.i64[r] == NO_NUM_C

    cdef int _one(self, int64_t root_row, Buf* out) noexcept nogil:
        # One resource. Returns 0, or -1 out of memory, -2 too deep, -3 bad op, -4 code past labels.
        # One `if op == ...` per op code: Cython turns the chain into a single C switch.
        cdef int64_t row[MAX_SLOTS]
        cdef int64_t end[MAX_SLOTS]
        cdef int64_t counters[MAX_COUNTERS]
        cdef int64_t saved[MAX_DEPTH][MAX_COUNTERS]
        cdef Frame stack[MAX_DEPTH]
        cdef int sp = 0, k
        cdef int64_t strong = 0
        cdef Py_ssize_t pc = 0, flen, hlen, tlen, slen
        cdef int32_t op, a, b, cc
        cdef const ColC* col
        cdef const LinkC* lk
        cdef int64_t r, lo, hi
        cdef int32_t fid
        cdef char* w
        # Locals, not attribute loads, in the loop.
        cdef const int32_t* ops = self.ops
        cdef const int64_t* foff = self.foff
        cdef const char* blob = self.blob
        cdef const ColC* cols = self.cols
        cdef const LinkC* links = self.links
        cdef const int32_t* maps = self.maps
        cdef const uint8_t* sets = self.sets
        cdef Py_ssize_t span = self.span
        for k in range(MAX_COUNTERS):
            counters[k] = 0
        row[0] = root_row
        # Room checks: here, at each loop turn and each string value (see _straight_span).
        if room(out, span) < 0:
            return -1
        while True:
            op = ops[pc * 4]
            a = ops[pc * 4 + 1]
            b = ops[pc * 4 + 2]
            cc = ops[pc * 4 + 3]
            pc += 1
            if op == OP_IFHAS:
                if self.missing(&cols[a], row):
                    pc = b
            elif op == OP_CONST:
                if b:
                    strong += 1
                flen = foff[a + 1] - foff[a]
                w = put_frag(sep_at(out), blob + foff[a], flen)
                out.size = w - out.data
            elif op == OP_OPEN:
                if sp >= MAX_DEPTH:
                    return -2
                stack[sp].pos = out.size
                stack[sp].strong = strong
                stack[sp].saved = b
                if b:
                    memcpy(&saved[sp][0], &counters[0], sizeof(counters))
                sp += 1
                strong += cc
                flen = foff[a + 1] - foff[a]
                w = put_frag(sep_at(out), blob + foff[a], flen)
                out.size = w - out.data
            elif op == OP_CLOSE:
                sp -= 1
                if strong == stack[sp].strong:
                    out.size = stack[sp].pos
                    if stack[sp].saved:
                        memcpy(&counters[0], &saved[sp][0], sizeof(counters))
                else:
                    flen = foff[a + 1] - foff[a]
                    out.size = put_frag(out.data + out.size, blob + foff[a], flen) - out.data
            elif op == OP_RAW:
                flen = foff[a + 1] - foff[a]
                out.size = put_frag(out.data + out.size, blob + foff[a], flen) - out.data
            elif op == OP_CAT:
                col = &cols[a]
                r = row[col.slot]
                if col.codes[r] == 0:
                    continue
                if col.codes[r] >= col.nlabels:
                    return -4
                fid = col.label_base + col.codes[r]
                slen = foff[fid + 1] - foff[fid]
                hlen = foff[b + 1] - foff[b]
                tlen = foff[cc + 1] - foff[cc]
                w = put_frag(sep_at(out), blob + foff[b], hlen)
                w = put_frag(w, blob + foff[fid], slen)
                out.size = put_frag(w, blob + foff[cc], tlen) - out.data
                strong += 1
            elif op == OP_STR:
                col = &cols[a]
                r = row[col.slot]
                slen = col.offsets[r + 1] - col.offsets[r]
                if slen == 0:
                    continue
                hlen = foff[b + 1] - foff[b]
                tlen = foff[cc + 1] - foff[cc]
                if room(out, slen * 6 + span) < 0:
                    return -1
                w = put_frag(sep_at(out), blob + foff[b], hlen)
                w += str_into(w, col.data + col.offsets[r], slen, col.data_end)
                out.size = put_frag(w, blob + foff[cc], tlen) - out.data
                strong += 1
            elif op == OP_NUM or op == OP_DATE or op == OP_TIME:
                col = &cols[a]
                r = row[col.slot]
                if op == OP_DATE:
                    if col.days[r] == NO_DATE_C:
                        continue
                elif col.i64[r] == NO_NUM_C:
                    continue
                hlen = foff[b + 1] - foff[b]
                tlen = foff[cc + 1] - foff[cc]
                w = put_frag(sep_at(out), blob + foff[b], hlen)
                if op == OP_NUM:
                    w += num_into(w, col.i64[r], col.scale, col.trim)
                elif op == OP_DATE:
                    w += date_into(w, col.days[r])
                else:
                    w += time_into(w, col.i64[r])
                out.size = put_frag(w, blob + foff[cc], tlen) - out.data
                strong += 1
            elif op == OP_MAP:
                col = &cols[a]
                if col.codes[row[col.slot]] >= col.nlabels:
                    return -4
                fid = maps[b + col.codes[row[col.slot]]]
                if fid >= 0:
                    flen = foff[fid + 1] - foff[fid]
                    out.size = put_frag(sep_at(out), blob + foff[fid], flen) - out.data
                    strong += 1
            elif op == OP_IFCAT:
                col = &cols[a]
                if col.codes[row[col.slot]] >= col.nlabels:
                    return -4
                if not sets[b + col.codes[row[col.slot]]]:
                    pc = cc
            elif op == OP_IFMISSING:
                if not self.missing(&cols[a], row):
                    pc = b
            elif op == OP_EACH:
                lk = &links[a]
                r = row[lk.parent_slot]
                lo = lk.offsets[r]
                hi = lk.offsets[r + 1]
                if lo >= hi:
                    pc = b
                else:
                    row[lk.child_slot] = lo
                    end[lk.child_slot] = hi
            elif op == OP_NEXT:
                lk = &links[a]
                row[lk.child_slot] += 1
                if row[lk.child_slot] < end[lk.child_slot]:
                    pc = b
                    if room(out, span) < 0:
                        return -1
            elif op == OP_SEQ or op == OP_SEQ_STRONG:
                counters[a] += 1
                if op == OP_SEQ_STRONG:
                    strong += 1
                hlen = foff[b + 1] - foff[b]
                tlen = foff[cc + 1] - foff[cc]
                w = put_frag(sep_at(out), blob + foff[b], hlen)
                w += num_into(w, counters[a], 0, 0)
                out.size = put_frag(w, blob + foff[cc], tlen) - out.data
            elif op == OP_TICK:
                counters[a] += 1
            elif op == OP_END:
                return 0
            else:
                return -3
