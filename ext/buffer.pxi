# Growable output buffer, JSON string escaping, number/date/instant formatting.
from cpython.buffer cimport PyBuffer_FillInfo
from cpython.mem cimport PyMem_Malloc, PyMem_Free, PyMem_RawMalloc, PyMem_RawRealloc, PyMem_RawFree
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint64_t
from libc.string cimport memcpy

cdef extern from *:
    """
    /* Escape class per byte: 0 = copy, otherwise the second char of a short
       escape, or 'u' for \\u00XX. */
    static const char FH_ESC[256] = {
      'u','u','u','u','u','u','u','u','b','t','n','u','f','r','u','u',
      'u','u','u','u','u','u','u','u','u','u','u','u','u','u','u','u',
      0,0,'"',0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
      0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,'\\\\',0,0,0,
    };
    static const char FH_HEX[] = "0123456789abcdef";
    /* "00".."99": two decimal digits per lookup. */
    static const char FH_DIG2[201] =
      "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
      "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
      "8081828384858687888990919293949596979899";
    /* 16 x 0xff then 16 x 0: 16 bytes loaded at FH_KEEP + 16 - n keep the first n. */
    static const unsigned char FH_KEEP[32] = {
      255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,
      0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    };
    """
    const char FH_ESC[256]
    const char FH_HEX[]
    const char FH_DIG2[201]
    const unsigned char FH_KEEP[32]


cdef struct Buf:
    # The writer's view of an OutBuffer while the GIL is released.
    char* data
    Py_ssize_t size
    Py_ssize_t cap


cdef enum:
    # Bytes past every write the output keeps free, and past the last fragment the
    # fragment blob is padded with: a short copy is then one fixed-size move (no libc call).
    SLACK = 64


cdef inline char* put_frag(char* w, const char* s, Py_ssize_t n) noexcept nogil:
    # Copy n bytes (s readable and w writable SLACK bytes beyond n); returns the end.
    # Most fragments are a few bytes, where a libc memcpy call costs more than the copy.
    if n <= 16:
        memcpy(w, s, 16)
    elif n <= 32:
        memcpy(w, s, 32)
    else:
        memcpy(w, s, n)
    return w + n


cdef inline int room(Buf* o, Py_ssize_t need) noexcept nogil:
    # Room for `need` more bytes plus SLACK; -1 out of memory.
    if o.size + need + SLACK <= o.cap:
        return 0
    return reserve(o, need + SLACK)


cdef int reserve(Buf* o, Py_ssize_t need) noexcept nogil:
    # Room for `need` more bytes (raw allocator: callable without the GIL); -1 out of memory.
    cdef Py_ssize_t cap = o.cap
    cdef char* p
    if o.size + need <= cap:
        return 0
    while cap < o.size + need:
        cap *= 2
    p = <char*>PyMem_RawRealloc(o.data, cap)
    if p == NULL:
        return -1
    o.data = p
    o.cap = cap
    return 0


cdef class OutBuffer:
    """Growable output buffer, reused across batches (supports the buffer protocol)."""
    cdef char* data
    cdef Py_ssize_t size
    cdef Py_ssize_t cap
    cdef int exports

    def __cinit__(self, Py_ssize_t capacity=1 << 20):
        if capacity < 64:
            capacity = 64
        self.data = <char*>PyMem_RawMalloc(capacity)
        if self.data == NULL:
            raise MemoryError()
        self.cap = capacity
        self.size = 0
        self.exports = 0

    def __dealloc__(self):
        PyMem_RawFree(self.data)

    def clear(self):
        """Forget the content, keep the memory; BufferError while a view is exported."""
        if self.exports:
            raise BufferError("OutBuffer is exported; release its views first")
        self.size = 0

    def __len__(self):
        return self.size

    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self.data, self.size, 1, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer* view):
        self.exports -= 1

    def getvalue(self):
        """A copy of the bytes written so far."""
        return self.data[:self.size]

    def view(self):
        """A zero-copy view of the bytes written so far (release it before `clear`)."""
        return memoryview(self)


cdef inline uint64_t needs_escape8(uint64_t x) noexcept nogil:
    # Per byte of x, the high bit set exactly when that byte needs escaping (a control
    # byte, '"' or '\\'). Exact per byte (no borrow crosses bytes), so it can be masked.
    cdef uint64_t low7 = 0x7f7f7f7f7f7f7f7f
    cdef uint64_t ones = 0x0101010101010101
    cdef uint64_t quote = x ^ (ones * 0x22)
    cdef uint64_t bslash = x ^ (ones * 0x5c)
    cdef uint64_t ctrl = ~(((x & low7) + ones * 0x60) | x)        # byte < 0x20
    quote = ~(((quote & low7) + low7) | quote)                       # byte == '"'
    bslash = ~(((bslash & low7) + low7) | bslash)                    # byte == '\\'
    return (ctrl | quote | bslash) & (ones * 0x80)


cdef inline Py_ssize_t escape_into(char* dst, const unsigned char* src, Py_ssize_t n) noexcept nogil:
    # JSON string content; room for 6*n bytes must exist. Non-ASCII UTF-8 is copied.
    # Eight bytes at a time while none needs escaping, then byte by byte to the word's end.
    cdef Py_ssize_t i = 0, o = 0, stop
    cdef unsigned char ch
    cdef char e
    cdef uint64_t x
    while i < n:
        stop = n
        if i + 8 <= n:
            memcpy(&x, src + i, 8)
            if not needs_escape8(x):
                memcpy(dst + o, &x, 8)
                i += 8
                o += 8
                continue
            stop = i + 8
        while i < stop:
            ch = src[i]
            e = FH_ESC[ch]
            if e == 0:
                dst[o] = ch
                o += 1
            elif e == 117:  # 'u'
                dst[o] = 92  # backslash
                dst[o + 1] = 117
                dst[o + 2] = 48
                dst[o + 3] = 48
                dst[o + 4] = FH_HEX[ch >> 4]
                dst[o + 5] = FH_HEX[ch & 15]
                o += 6
            else:
                dst[o] = 92
                dst[o + 1] = e
                o += 2
            i += 1
    return o


cdef inline Py_ssize_t str_into(char* dst, const unsigned char* src, Py_ssize_t n,
                                const unsigned char* src_end) noexcept nogil:
    # escape_into for a string inside a column buffer ending at src_end. A short string
    # with 16 readable bytes is checked and copied as two words (most are codes and ids).
    cdef uint64_t x0, x1, k0, k1
    if n <= 16 and src + 16 <= src_end:
        memcpy(&x0, src, 8)
        memcpy(&x1, src + 8, 8)
        memcpy(&k0, FH_KEEP + 16 - n, 8)
        memcpy(&k1, FH_KEEP + 24 - n, 8)
        if not ((needs_escape8(x0) & k0) | (needs_escape8(x1) & k1)):
            memcpy(dst, src, 16)  # the caller's SLACK covers the bytes past n
            return n
    return escape_into(dst, src, n)


cdef inline void civil_from_days(int64_t z, int64_t* y, int* m, int* d) noexcept nogil:
    # H. Hinnant's civil_from_days, floor division made explicit.
    cdef int64_t era, doe, yoe, doy, mp
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d[0] = <int>(doy - (153 * mp + 2) // 5 + 1)
    m[0] = <int>(mp + 3 if mp < 10 else mp - 9)
    y[0] = yoe + era * 400 + (1 if m[0] <= 2 else 0)


cdef inline void put2(char* p, int v) noexcept nogil:
    # Two digits of 0 <= v <= 99.
    memcpy(p, FH_DIG2 + 2 * v, 2)


cdef inline Py_ssize_t date_into(char* p, int64_t days) noexcept nogil:
    cdef int64_t y
    cdef int m, d
    civil_from_days(days, &y, &m, &d)
    if 0 <= y <= 9999:
        put2(p, <int>(y // 100))
        put2(p + 2, <int>(y % 100))
        p[4] = 45
        put2(p + 5, m)
        p[7] = 45
        put2(p + 8, d)
        return 10
    p[0] = 48 + <int>(y // 1000) % 10
    p[1] = 48 + <int>(y // 100) % 10
    p[2] = 48 + <int>(y // 10) % 10
    p[3] = 48 + <int>y % 10
    p[4] = 45
    put2(p + 5, m)
    p[7] = 45
    put2(p + 8, d)
    return 10


cdef inline Py_ssize_t time_into(char* p, int64_t ms) noexcept nogil:
    # YYYY-MM-DDThh:mm:ss.sss+00:00 (29 bytes), floor division for pre-1970.
    cdef int64_t days = ms // 86400000
    cdef int64_t rem = ms - days * 86400000
    if rem < 0:
        days -= 1
        rem += 86400000
    cdef int secs = <int>(rem // 1000)
    cdef int milli = <int>(rem % 1000)
    date_into(p, days)
    p[10] = 84  # T
    put2(p + 11, secs // 3600)
    p[13] = 58
    put2(p + 14, (secs // 60) % 60)
    p[16] = 58
    put2(p + 17, secs % 60)
    p[19] = 46
    p[20] = 48 + milli // 100
    p[21] = 48 + (milli // 10) % 10
    p[22] = 48 + milli % 10
    memcpy(p + 23, b"+00:00", 6)
    return 29


cdef inline Py_ssize_t num_into(char* p, int64_t v, int scale, bint trim) noexcept nogil:
    # Exact decimal of a scaled int64 (0 <= scale <= 18); at most 21 bytes, and p must
    # have 24 writable. `trim` drops trailing fractional zeros (and the point when
    # nothing is left). Digits are built right to left, two per step.
    cdef char tmp[64]
    cdef char* e = tmp + 40
    cdef char* q = e
    cdef int k = scale
    cdef uint64_t mag
    if v < 0:
        mag = <uint64_t>(-(v + 1)) + 1
    else:
        mag = <uint64_t>v
    if scale > 0:
        while k >= 2:
            q -= 2
            memcpy(q, FH_DIG2 + 2 * (mag % 100), 2)
            mag //= 100
            k -= 2
        if k:
            q -= 1
            q[0] = 48 + <int>(mag % 10)
            mag //= 10
        q -= 1
        q[0] = 46  # '.'
        if trim:
            while (e - 1)[0] == 48:
                e -= 1
            if (e - 1)[0] == 46:
                e -= 1
    while mag >= 100:
        q -= 2
        memcpy(q, FH_DIG2 + 2 * (mag % 100), 2)
        mag //= 100
    if mag >= 10:
        q -= 2
        memcpy(q, FH_DIG2 + 2 * mag, 2)
    else:
        q -= 1
        q[0] = 48 + <int>mag
    if v < 0:
        q -= 1
        q[0] = 45  # '-'
    memcpy(p, q, 24)  # one fixed move; the length is what counts
    return e - q


def format_date(int64_t days):
    """YYYY-MM-DD for days since the epoch."""
    cdef char p[16]
    cdef Py_ssize_t n = date_into(p, days)
    return p[:n]


def format_time(int64_t ms):
    """FHIR instant, UTC, millisecond precision: YYYY-MM-DDThh:mm:ss.sss+00:00."""
    cdef char p[32]
    cdef Py_ssize_t n = time_into(p, ms)
    return p[:n]


def format_num(int64_t v, int scale, bint trim=False):
    """An exact decimal from a scaled int64: (12345, 2) → b'123.45';
    with `trim`, trailing fractional zeros go: (12500, 3, True) → b'12.5'."""
    cdef char p[48]
    cdef Py_ssize_t n = num_into(p, v, scale, trim)
    return p[:n]


def escape_utf8(const unsigned char[::1] raw):
    """JSON string content for UTF-8 bytes: escape '"', '\\' and controls; keep the rest."""
    cdef Py_ssize_t n = raw.shape[0]
    cdef bytearray out = bytearray(n * 6 + 1)
    cdef char* dst = out
    cdef Py_ssize_t m = 0
    if n:
        m = escape_into(dst, &raw[0], n)
    return bytes(out[:m])
