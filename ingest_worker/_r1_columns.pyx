# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The durable log's ``"r1"`` records straight into Arrow columns (optional, compiled).

The flush process spends most of its time turning each logged row into Python objects
(``orjson.loads``), transposing them into columns and handing the columns back to Arrow.
:func:`r1_columns` reads the records' bytes once, in C, into the Arrow buffers of the
columns: no Python object per value.

It is strict on purpose.  It reads only what ``orjson.dumps(["r1", values])`` writes for the
row values the request path logs, each column of one kind:

* ``T`` -- an integer (the event timestamp, ms), never null;
* ``S`` -- a string or null (null becomes ``""``, as the row encoder makes of it);
* ``N`` -- a number or null (float64, null becomes NaN; an integer of at most 15 digits,
  so that its float64 is exact and formats to the same digits).

Anything else -- another layout, a boolean, a nested value, a long integer, a lone
surrogate escape, invalid UTF-8, a column over 2 GiB -- makes it give up and say why; the
caller then flushes the records the Python way (``orjson``), which decides what each of
them is.  So this path never decides anything the Python path would decide differently: it
only does the usual case faster (property-tested against it, value for value and byte for
byte of the Parquet files).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_Clear, PyErr_Occurred
from libc.math cimport isinf, NAN
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy

import pyarrow as pa

cdef extern from "float.h":
    int LDBL_MANT_DIG

cdef extern from "Python.h":
    double PyOS_string_to_double(const char *s, char **endptr, void *overflow_exception) noexcept

ctypedef const unsigned char* cptr

cdef enum:
    MAX_NUMBER_CHARS = 63
    INT32_LIMIT = 2147483647


cdef struct StrCol:
    unsigned char *data
    Py_ssize_t size
    Py_ssize_t cap
    int32_t *offsets


cdef inline bint _reserve(StrCol *col, Py_ssize_t more) noexcept nogil:
    cdef Py_ssize_t need = col.size + more
    cdef Py_ssize_t cap
    cdef unsigned char *grown
    if need <= col.cap:
        return True
    if need > INT32_LIMIT:
        return False
    cap = col.cap * 2 if col.cap else 4096
    while cap < need:
        cap *= 2
    grown = <unsigned char *> realloc(col.data, cap)
    if grown == NULL:
        return False
    col.data = grown
    col.cap = cap
    return True


cdef inline bint _append(StrCol *col, cptr src, Py_ssize_t n) noexcept nogil:
    if not _reserve(col, n):
        return False
    memcpy(col.data + col.size, src, n)
    col.size += n
    return True


# --- decimal -> double, correctly rounded -------------------------------------------------
# Python's own strtod (PyOS_string_to_double) is exact but slow: it switches the x87 control
# word and runs big-number arithmetic for the 17-digit scores, most of this reader's time.
# The usual number goes a faster exact way: its significand w (at most 19 digits, so exact
# in the 64-bit mantissa of x87's long double) times or over an exact power of ten (10**k,
# k <= 27: 5**27 < 2**64) is ONE correctly rounded long double operation; rounding that to
# double is then the correct rounding of the decimal unless the long double lies within one
# of its units of a double's halfway point (low 11 of its 64 mantissa bits 0x3FF..0x401),
# and those rare numbers -- and every number on a machine without x87 long doubles -- go to
# PyOS_string_to_double.
cdef long double _POW10[28]
cdef bint _FAST_DOUBLES = False


cdef bint _init_pow10() noexcept:
    """The exact powers of ten; True when long double arithmetic really runs with a 64-bit
    mantissa (x87 extended precision, not switched to 53 bits)."""
    cdef int i
    cdef volatile long double one = 1.0
    cdef volatile long double tiny = 1.0
    for i in range(60):
        tiny = tiny / 2.0
    _POW10[0] = 1.0
    for i in range(1, 28):
        _POW10[i] = _POW10[i - 1] * 10.0
    return LDBL_MANT_DIG == 64 and one + tiny != one


_FAST_DOUBLES = _init_pow10()


cdef inline bint _fast_double(unsigned long long w, int k, bint negative, double *out) noexcept nogil:
    """``(-1)**negative * w * 10**k`` as a correctly rounded double (w < 10**19); False when
    it is not one the fast way takes."""
    cdef long double q
    cdef unsigned long long bits
    if not _FAST_DOUBLES or k < -27 or k > 27:
        return False
    if w == 0:
        out[0] = -0.0 if negative else 0.0
        return True
    q = <long double> w
    if k < 0:
        q = q / _POW10[-k]
    elif k > 0:
        q = q * _POW10[k]
    memcpy(&bits, &q, 8)  # x87 extended: the 64-bit mantissa comes first
    if 0x3FF <= (bits & 0x7FF) <= 0x401:
        return False
    out[0] = <double> (-q if negative else q)
    return True


cdef inline cptr _ws(cptr p, cptr end) noexcept nogil:
    while p < end and (p[0] == 32 or p[0] == 9 or p[0] == 10 or p[0] == 13):
        p += 1
    return p


cdef inline int _hex4(cptr p) noexcept nogil:
    """The value of 4 hex digits at p, or -1."""
    cdef int v = 0, i, c
    for i in range(4):
        c = p[i]
        if 48 <= c <= 57:
            v = v * 16 + (c - 48)
        elif 97 <= c <= 102:
            v = v * 16 + (c - 87)
        elif 65 <= c <= 70:
            v = v * 16 + (c - 55)
        else:
            return -1
    return v


cdef inline int _utf8_len(cptr p, cptr end) noexcept nogil:
    """Length of the valid UTF-8 sequence starting with a byte >= 0x80 at p, or 0."""
    cdef int c = p[0], n, i
    cdef int lo = 0x80, hi = 0xBF
    if 0xC2 <= c <= 0xDF:
        n = 2
    elif 0xE0 <= c <= 0xEF:
        n = 3
        if c == 0xE0:
            lo = 0xA0
        elif c == 0xED:  # no surrogates
            hi = 0x9F
    elif 0xF0 <= c <= 0xF4:
        n = 4
        if c == 0xF0:
            lo = 0x90
        elif c == 0xF4:
            hi = 0x8F
    else:
        return 0
    if p + n > end:
        return 0
    if not (lo <= p[1] <= hi):
        return 0
    for i in range(2, n):
        if not (0x80 <= p[i] <= 0xBF):
            return 0
    return n


cdef inline bint _append_code_point(StrCol *col, int cp) noexcept nogil:
    cdef unsigned char buf[4]
    if cp < 0x80:
        buf[0] = cp
        return _append(col, buf, 1)
    if cp < 0x800:
        buf[0] = 0xC0 | (cp >> 6)
        buf[1] = 0x80 | (cp & 0x3F)
        return _append(col, buf, 2)
    if cp < 0x10000:
        buf[0] = 0xE0 | (cp >> 12)
        buf[1] = 0x80 | ((cp >> 6) & 0x3F)
        buf[2] = 0x80 | (cp & 0x3F)
        return _append(col, buf, 3)
    buf[0] = 0xF0 | (cp >> 18)
    buf[1] = 0x80 | ((cp >> 12) & 0x3F)
    buf[2] = 0x80 | ((cp >> 6) & 0x3F)
    buf[3] = 0x80 | (cp & 0x3F)
    return _append(col, buf, 4)


cdef cptr _string(cptr p, cptr end, StrCol *col) noexcept nogil:
    """The JSON string at p (p[0] is the opening quote), unescaped into col; the position
    after its closing quote, or NULL."""
    cdef cptr run
    cdef int c, cp, lo, n
    p += 1
    while True:
        run = p
        while p < end and p[0] != 34 and p[0] != 92 and 0x20 <= p[0] < 0x80:
            p += 1
        if p > run and not _append(col, run, p - run):
            return NULL
        if p >= end:
            return NULL
        c = p[0]
        if c == 34:  # the closing quote
            return p + 1
        if c == 92:  # an escape
            if p + 1 >= end:
                return NULL
            c = p[1]
            if c == 117:  # \uXXXX
                if p + 6 > end:
                    return NULL
                cp = _hex4(p + 2)
                if cp < 0:
                    return NULL
                p += 6
                if 0xD800 <= cp <= 0xDBFF:  # a surrogate pair, or give up
                    if p + 6 > end or p[0] != 92 or p[1] != 117:
                        return NULL
                    lo = _hex4(p + 2)
                    if not (0xDC00 <= lo <= 0xDFFF):
                        return NULL
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                    p += 6
                elif 0xDC00 <= cp <= 0xDFFF:
                    return NULL
                if not _append_code_point(col, cp):
                    return NULL
                continue
            if c == 34 or c == 92 or c == 47:
                cp = c
            elif c == 98:
                cp = 8
            elif c == 102:
                cp = 12
            elif c == 110:
                cp = 10
            elif c == 114:
                cp = 13
            elif c == 116:
                cp = 9
            else:
                return NULL
            if not _append_code_point(col, cp):
                return NULL
            p += 2
            continue
        if c < 0x20:  # a raw control character: not JSON
            return NULL
        n = _utf8_len(p, end)
        if n == 0 or not _append(col, p, n):
            return NULL
        p += n


cdef cptr _number(cptr p, cptr end, bint timestamp, double *out_d, int64_t *out_i) noexcept:
    """The JSON number at p, read in one pass: an integer into out_i and out_d (at most 18
    digits for the timestamp, 15 otherwise, so that its double is exact), any other number
    into out_d; the position after it, or NULL."""
    cdef cptr start = p
    cdef bint negative = False, integral = True, exact = True
    cdef unsigned long long w = 0
    cdef int digits = 0, k = 0, exp_sign = 1, exp_value = 0, d
    cdef char buf[MAX_NUMBER_CHARS + 1]
    cdef char *parsed_end
    cdef Py_ssize_t n, i
    cdef double value
    if p < end and p[0] == 45:
        negative = True
        p += 1
    if p >= end or not (48 <= p[0] <= 57):
        return NULL
    if p[0] == 48:  # a leading zero stands alone
        p += 1
    else:
        while p < end and 48 <= p[0] <= 57:
            if digits < 19:
                w = w * 10 + (p[0] - 48)
                digits += 1
            else:
                exact = False
            p += 1
    if p < end and p[0] == 46:  # fraction
        integral = False
        p += 1
        if p >= end or not (48 <= p[0] <= 57):
            return NULL
        while p < end and 48 <= p[0] <= 57:
            d = p[0] - 48
            if w or d:
                if digits < 19:
                    w = w * 10 + d
                    digits += 1
                    k -= 1
                else:
                    exact = False
            else:  # a leading zero of the fraction
                k -= 1
            p += 1
    if p < end and (p[0] == 101 or p[0] == 69):  # exponent
        integral = False
        p += 1
        if p < end and (p[0] == 43 or p[0] == 45):
            exp_sign = -1 if p[0] == 45 else 1
            p += 1
        if p >= end or not (48 <= p[0] <= 57):
            return NULL
        while p < end and 48 <= p[0] <= 57:
            if exp_value < 100000:
                exp_value = exp_value * 10 + (p[0] - 48)
            else:  # an exponent this long is not read exactly: refused below
                exact = False
            p += 1
        k += exp_sign * exp_value
    if p - start > MAX_NUMBER_CHARS:  # orjson writes at most ~25; a long one is refused
        return NULL
    if integral:
        if not exact or digits > (18 if timestamp else 15):
            return NULL
        out_i[0] = -<int64_t> w if negative else <int64_t> w
        out_d[0] = <double> out_i[0]
        return p
    if timestamp:
        return NULL
    if exact and _fast_double(w, k, negative, out_d):
        return p
    n = p - start  # the rare number: Python's own exact strtod
    for i in range(n):
        buf[i] = <char> start[i]
    buf[n] = 0
    value = PyOS_string_to_double(buf, &parsed_end, NULL)  # the grammar is checked: cannot fail
    if value == -1.0 and PyErr_Occurred() != NULL:
        PyErr_Clear()
        return NULL
    if parsed_end != buf + n or isinf(value):
        return NULL
    out_d[0] = value
    return p


cdef cptr _record(cptr p, cptr end, const unsigned char *kinds, int ncols, Py_ssize_t row,
                  StrCol *strs, int *str_of, double **nums, int *num_of, int64_t *stamps) noexcept:
    """One ``["r1",[...]]`` record into the columns; the end position, or NULL."""
    cdef int c, k
    cdef double d
    cdef int64_t iv
    p = _ws(p, end)
    if p + 6 > end or p[0] != 91:
        return NULL
    p = _ws(p + 1, end)
    if p + 4 > end or p[0] != 34 or p[1] != 114 or p[2] != 49 or p[3] != 34:  # "r1"
        return NULL
    p = _ws(p + 4, end)
    if p >= end or p[0] != 44:
        return NULL
    p = _ws(p + 1, end)
    if p >= end or p[0] != 91:
        return NULL
    p += 1
    for c in range(ncols):
        p = _ws(p, end)
        if p >= end:
            return NULL
        k = kinds[c]
        if k == 83:  # S: a string or null
            if p[0] == 34:
                p = _string(p, end, &strs[str_of[c]])
                if p == NULL:
                    return NULL
            elif p + 4 <= end and p[0] == 110 and p[1] == 117 and p[2] == 108 and p[3] == 108:
                p += 4
            else:
                return NULL
            strs[str_of[c]].offsets[row + 1] = <int32_t> strs[str_of[c]].size
        elif k == 78:  # N: a number or null
            if p + 4 <= end and p[0] == 110 and p[1] == 117 and p[2] == 108 and p[3] == 108:
                p += 4
                nums[num_of[c]][row] = NAN
            else:
                p = _number(p, end, False, &d, &iv)
                if p == NULL:
                    return NULL
                nums[num_of[c]][row] = d
        else:  # T: an integer
            p = _number(p, end, True, &d, &iv)
            if p == NULL:
                return NULL
            stamps[row] = iv
        p = _ws(p, end)
        if p >= end or p[0] != (93 if c == ncols - 1 else 44):
            return NULL
        p += 1
    p = _ws(p, end)
    if p >= end or p[0] != 93:
        return NULL
    return _ws(p + 1, end)


def r1_columns(list payloads, bytes kinds):
    """``(columns, None)``: the values of the ``"r1"`` records ``payloads`` as Arrow arrays,
    one per letter of ``kinds`` (``T`` int64, ``S`` string, ``N`` float64); or
    ``(None, why)`` when a record is not one this reader takes (see the module)."""
    cdef Py_ssize_t n = len(payloads), row, i
    cdef int ncols = len(kinds), c, nstr = 0, nnum = 0, nts = 0, total_str = 0, total_num = 0
    cdef const unsigned char *kind_chars = <const unsigned char *> PyBytes_AS_STRING(kinds)
    cdef StrCol *strs = NULL
    cdef double **nums = NULL
    cdef int64_t *stamps = NULL
    cdef int *str_of = NULL
    cdef int *num_of = NULL
    cdef cptr p
    cdef cptr end
    cdef cptr done
    cdef bytes payload
    for c in range(ncols):
        if kind_chars[c] == 83:
            nstr += 1
        elif kind_chars[c] == 78:
            nnum += 1
        elif kind_chars[c] == 84:
            nts += 1
        else:
            raise ValueError(f"unknown column kind {chr(kind_chars[c])!r}")
    if nts != 1:
        raise ValueError("exactly one T column (the timestamp)")
    total_str, total_num = nstr, nnum
    try:
        str_of = <int *> malloc(sizeof(int) * (ncols + 1))
        num_of = <int *> malloc(sizeof(int) * (ncols + 1))
        strs = <StrCol *> calloc(nstr + 1, sizeof(StrCol))  # zeroed: NULL buffers
        nums = <double **> calloc(nnum + 1, sizeof(double *))
        stamps = <int64_t *> malloc(sizeof(int64_t) * (n + 1))
        if str_of == NULL or num_of == NULL or strs == NULL or nums == NULL or stamps == NULL:
            raise MemoryError()
        nstr = 0
        nnum = 0
        for c in range(ncols):
            if kind_chars[c] == 83:
                str_of[c] = nstr
                strs[nstr].offsets = <int32_t *> malloc(sizeof(int32_t) * (n + 1))
                if strs[nstr].offsets == NULL:
                    raise MemoryError()
                strs[nstr].offsets[0] = 0
                nstr += 1
            elif kind_chars[c] == 78:
                num_of[c] = nnum
                nums[nnum] = <double *> malloc(sizeof(double) * (n + 1))
                if nums[nnum] == NULL:
                    raise MemoryError()
                nnum += 1
        for row in range(n):
            obj = payloads[row]
            if type(obj) is not bytes:
                raise TypeError(f"record {row} is {type(obj).__name__}, not bytes")
            payload = <bytes> obj
            p = <cptr> PyBytes_AS_STRING(payload)
            end = p + PyBytes_GET_SIZE(payload)
            done = _record(p, end, kind_chars, ncols, row, strs, str_of, nums, num_of, stamps)
            if done == NULL or done != end:
                return None, f"record {row} is not a plain r1 record of {ncols} values"
        columns = []
        nstr = 0
        nnum = 0
        for c in range(ncols):
            if kind_chars[c] == 83:
                data = PyBytes_FromStringAndSize(<char *> strs[nstr].data, strs[nstr].size) if strs[nstr].size else b""
                offsets = PyBytes_FromStringAndSize(<char *> strs[nstr].offsets, sizeof(int32_t) * (n + 1))
                columns.append(pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]))
                nstr += 1
            elif kind_chars[c] == 78:
                values = PyBytes_FromStringAndSize(<char *> nums[nnum], sizeof(double) * n)
                columns.append(pa.Array.from_buffers(pa.float64(), n, [None, pa.py_buffer(values)]))
                nnum += 1
            else:
                values = PyBytes_FromStringAndSize(<char *> stamps, sizeof(int64_t) * n)
                columns.append(pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(values)]))
        return columns, None
    finally:
        if strs != NULL:
            for i in range(total_str):
                free(strs[i].data)
                free(strs[i].offsets)
            free(strs)
        if nums != NULL:
            for i in range(total_num):
                free(nums[i])
            free(nums)
        free(stamps)
        free(str_of)
        free(num_of)
