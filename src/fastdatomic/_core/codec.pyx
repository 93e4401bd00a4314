# cython: language_level=3
"""Order-preserving binary key codec: byte order of encoded keys == datom order.

An encoded value is one tag byte plus a body; tags order the value types against
each other (only tuples mix types). Keys of the four covering indexes are
concatenations of 8-byte ids (big-endian, sign bit flipped) and one tagged value,
and always end with ``tx`` (8 bytes) + ``added`` (1 byte)::

    EAVT  e a v tx added        AEVT  a e v tx added
    AVET  a v e tx added        VAET  v a e tx added   (v: 0x20 + 8-byte ref)

Every value encoding is self-delimiting and prefix-free, so a key prefix (for
example ``encode_id(a) + encode_value(vtype, v)`` for AVET) is a valid seek key.

>>> from fastdatomic._core.codec import encode_key, decode_key, INDEX_EAVT, TYPE_STRING
>>> k = encode_key(INDEX_EAVT, 17592186044417, 72, TYPE_STRING, "Ann", 13194139534313, True)
>>> len(k), decode_key(INDEX_EAVT, k)
(31, #datom [17592186044417 72 'Ann' 13194139534313 true])
>>> encode_key(INDEX_EAVT, 1, 72, TYPE_STRING, "Ann", 5, True) < encode_key(INDEX_EAVT, 1, 72, TYPE_STRING, "Bob", 2, True)
True
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_Check, PyBytes_CheckExact
from cpython.bytearray cimport PyByteArray_Check, PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.exc cimport PyErr_Clear
from cpython.float cimport PyFloat_Check, PyFloat_AS_DOUBLE, PyFloat_FromDouble
from cpython.long cimport PyLong_Check, PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.unicode cimport PyUnicode_Check
from cpython.tuple cimport PyTuple_Check
from cpython.list cimport PyList_Check, PyList_AsTuple
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject, Py_DECREF
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.datetime cimport (import_datetime, PyDateTime_Check, datetime_new, datetime_tzinfo,
                               datetime_year, datetime_month, datetime_day, datetime_hour,
                               datetime_minute, datetime_second, datetime_microsecond,
                               timedelta_days, timedelta_seconds, timedelta_microseconds)
from libc.string cimport memcpy, memchr, memcmp
from libc.stdint cimport uint64_t, uint32_t, int64_t

from fastdatomic._core.datom cimport Datom, make_datom

import uuid as _uuid_mod
from datetime import timezone as _timezone
from decimal import Decimal as _Decimal, InvalidOperation as _InvalidOperation

from fastdatomic.errors import WrongTypeError, InvalidValueError, InvalidIndexError
from fastdatomic.types import Keyword, Symbol, URI

cdef extern from "Python.h":
    # Raw (non-raising) declarations: we turn their errors into InvalidValueError.
    const char* _utf8_of "PyUnicode_AsUTF8AndSize"(object s, Py_ssize_t* size)
    PyObject* _decode_utf8_raw "PyUnicode_DecodeUTF8"(const char* s, Py_ssize_t n, const char* errors)
    long long _as_ll "PyLong_AsLongLongAndOverflow"(object o, int* overflow)
    bint PyBool_Check(object o)

import_datetime()

__all__ = [
    "encode_value", "decode_value", "value_size", "encode_id", "decode_id",
    "encode_key", "decode_key", "decode_keys", "encode_keys",
    "TYPE_BY_NAME", "TYPE_NAMES", "INDEX_BY_NAME", "INDEX_NAMES",
    "TYPE_BOOLEAN", "TYPE_LONG", "TYPE_DOUBLE", "TYPE_FLOAT", "TYPE_BIGINT", "TYPE_BIGDEC",
    "TYPE_INSTANT", "TYPE_STRING", "TYPE_KEYWORD", "TYPE_SYMBOL", "TYPE_UUID", "TYPE_URI",
    "TYPE_BYTES", "TYPE_REF", "TYPE_TUPLE",
    "INDEX_EAVT", "INDEX_AEVT", "INDEX_AVET", "INDEX_VAET",
]

TYPE_BY_NAME = {
    "boolean": TYPE_BOOLEAN, "long": TYPE_LONG, "double": TYPE_DOUBLE, "float": TYPE_FLOAT,
    "bigint": TYPE_BIGINT, "bigdec": TYPE_BIGDEC, "instant": TYPE_INSTANT,
    "string": TYPE_STRING, "keyword": TYPE_KEYWORD, "symbol": TYPE_SYMBOL, "uuid": TYPE_UUID,
    "uri": TYPE_URI, "bytes": TYPE_BYTES, "ref": TYPE_REF, "tuple": TYPE_TUPLE,
}
TYPE_NAMES = {code: name for name, code in TYPE_BY_NAME.items()}
INDEX_BY_NAME = {"eavt": INDEX_EAVT, "aevt": INDEX_AEVT, "avet": INDEX_AVET, "vaet": INDEX_VAET}
INDEX_NAMES = {code: name for name, code in INDEX_BY_NAME.items()}

cdef object _UTC = _timezone.utc
cdef object _UUID = _uuid_mod.UUID
cdef object _SAFE_UNKNOWN = _uuid_mod.SafeUUID.unknown
cdef object _obj_setattr = object.__setattr__
cdef dict _KW_TABLE = Keyword._table
cdef dict _SYM_TABLE = Symbol._table
cdef object _KEYWORD = Keyword
cdef object _SYMBOL = Symbol
cdef object _URI = URI

cdef enum:
    MAX_DEPTH = 64              # tuple nesting limit (encode and decode)
    MAX_TRAILING_ZEROS = 100000  # bigdec coefficient trailing zeros (bounds decode memory)
    SMALL_BUF = 256

cdef uint64_t SIGN64 = (<uint64_t>1) << 63
cdef uint32_t SIGN32 = (<uint32_t>1) << 31
cdef uint64_t NAN64 = 0x7FF8000000000000
cdef uint32_t NAN32 = 0x7FC00000

# datetime.min / datetime.max (taken as UTC) in microseconds since the epoch.
cdef long long MIN_US = -62135596800000000
cdef long long MAX_US = 253402300799999999
cdef long long US_PER_DAY = 86400000000


# ---------------------------------------------------------------------------
# errors

cdef str _type_name(int vtype):
    name = TYPE_NAMES.get(vtype)
    return f":db.type/{name}" if name is not None else f"<unknown type {vtype}>"


cdef object _wrong_type(int vtype, object v, str why=None):
    msg = f"value {v!r} ({type(v).__name__}) is not a {_type_name(vtype)}"
    if why:
        msg = f"{msg}: {why}"
    return WrongTypeError(msg, data={"value": v, "type": _type_name(vtype)})


cdef object _corrupt(str what, Py_ssize_t off, int tag):
    if tag >= 0:
        msg = f"malformed encoded key/value: {what} at offset {off} (tag 0x{tag:02x})"
    else:
        msg = f"malformed encoded key/value: {what} at offset {off}"
    return InvalidValueError(msg, data={"offset": off, "tag": tag})


cdef object _unknown_index(int index):
    return InvalidIndexError(f"unknown index code {index} (expected 0..3: EAVT, AEVT, AVET, VAET)",
                             data={"index": index})


# ---------------------------------------------------------------------------
# encoding primitives

cdef inline uint64_t _double_bits(double d) noexcept nogil:
    cdef uint64_t u = 0
    if d != d:
        return NAN64 ^ SIGN64
    memcpy(&u, &d, 8)
    if u & SIGN64:
        return ~u
    return u ^ SIGN64


cdef inline uint32_t _float_bits(float f) noexcept nogil:
    cdef uint32_t u = 0
    if f != f:
        return NAN32 ^ SIGN32
    memcpy(&u, &f, 4)
    if u & SIGN32:
        return ~u
    return u ^ SIGN32


cdef inline int _varint_ll(unsigned char* out, long long x, unsigned char mask) noexcept nogil:
    """Order-preserving variable-length signed int (int64 range); returns bytes written (1..9).

    Header 0x80 = zero; 0x80+L (L = magnitude bytes) for positives, then the
    magnitude big-endian; negatives: the positive form of |x| with every byte
    inverted. ``mask`` is XORed over everything (0xFF inverts the whole thing).
    """
    cdef uint64_t m
    cdef int L, i
    cdef unsigned char inv
    if x == 0:
        out[0] = 0x80 ^ mask
        return 1
    if x < 0:
        m = (<uint64_t>0) - <uint64_t>x
        inv = 0xFF ^ mask
    else:
        m = <uint64_t>x
        inv = mask
    L = 8
    while L > 1 and (m >> (8 * (L - 1))) == 0:
        L -= 1
    out[0] = <unsigned char>(0x80 + L) ^ inv
    for i in range(L):
        out[1 + i] = <unsigned char>(m >> (8 * (L - 1 - i))) ^ inv
    return L + 1


cdef inline Py_ssize_t _count_zeros(const char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t z = 0
    cdef const char* end = s + n
    cdef const char* q
    while s < end:
        q = <const char*>memchr(s, 0, end - s)
        if q == NULL:
            break
        z += 1
        s = q + 1
    return z


cdef inline unsigned char* _write_esc(unsigned char* out, const char* s, Py_ssize_t n) noexcept nogil:
    """Copy s[0:n] escaping 0x00 as 0x00 0xFF, then the terminator 0x00 0x00."""
    cdef const char* end = s + n
    cdef const char* q
    cdef Py_ssize_t k
    while True:
        q = <const char*>memchr(s, 0, end - s) if s < end else NULL
        if q == NULL:
            k = end - s
            memcpy(out, s, k)
            out += k
            break
        k = q - s + 1
        memcpy(out, s, k)
        out += k
        out[0] = 0xFF
        out += 1
        s = q + 1
    out[0] = 0
    out[1] = 0
    return out + 2


cdef inline long long _days_from_civil(long long y, long long m, long long d) noexcept nogil:
    # Howard Hinnant's algorithm; y >= 1 here so all divisions are on non-negatives.
    cdef long long era, yoe, doy, doe
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


# ---------------------------------------------------------------------------
# value preparation: one pass over the Python object computes the exact size
# and keeps pointers, a second pass writes into the final bytes object.

cdef enum:
    M_FIXED = 0     # tag + fix[0:fixlen]
    M_ESC = 1       # tag + escaped s1 + terminator
    M_NAMED = 2     # tag + marker + [escaped s1 + terminator] + escaped s2 + terminator
    M_RAW = 3       # s1[0:n1] verbatim (already includes the tag)

cdef struct Prep:
    Py_ssize_t size
    int mode
    unsigned char tag
    unsigned char marker
    Py_ssize_t fixlen
    unsigned char fix[24]
    const char* s1
    Py_ssize_t n1
    Py_ssize_t z1
    const char* s2
    Py_ssize_t n2
    Py_ssize_t z2


cdef inline unsigned char* _write_prep(unsigned char* out, const Prep* pr) noexcept nogil:
    if pr.mode == M_FIXED:
        out[0] = pr.tag
        memcpy(out + 1, pr.fix, pr.fixlen)
        return out + 1 + pr.fixlen
    if pr.mode == M_ESC:
        out[0] = pr.tag
        return _write_esc(out + 1, pr.s1, pr.n1)
    if pr.mode == M_NAMED:
        out[0] = pr.tag
        out[1] = pr.marker
        out += 2
        if pr.marker == 0x02:
            out = _write_esc(out, pr.s1, pr.n1)
        return _write_esc(out, pr.s2, pr.n2)
    memcpy(out, pr.s1, pr.n1)
    return out + pr.n1


cdef inline int _prep_str(Prep* pr, unsigned char tag, object s) except -1:
    cdef Py_ssize_t n = 0
    cdef const char* u = _utf8_of(s, &n)
    if u == NULL:
        PyErr_Clear()
        raise InvalidValueError(f"string {s!r} is not valid Unicode (lone surrogate?)",
                                data={"value": s})
    pr.mode = M_ESC
    pr.tag = tag
    pr.s1 = u
    pr.n1 = n
    pr.z1 = _count_zeros(u, n)
    pr.size = 1 + n + pr.z1 + 2
    return 0


cdef inline int _prep_named(Prep* pr, unsigned char tag, object full) except -1:
    # full is Keyword/Symbol._full: "ns/name" or "name"; the namespace is the text
    # before the first "/" when that slash is not at position 0 (types.py's parse).
    cdef Py_ssize_t n = 0, j
    cdef const char* u = _utf8_of(full, &n)
    cdef const char* q
    if u == NULL:
        PyErr_Clear()
        raise InvalidValueError(f"name {full!r} is not valid Unicode (lone surrogate?)",
                                data={"value": full})
    pr.mode = M_NAMED
    pr.tag = tag
    q = <const char*>memchr(u, 0x2F, n) if n > 1 else NULL
    if q != NULL and q != u:
        j = q - u
        pr.marker = 0x02
        pr.s1 = u
        pr.n1 = j
        pr.z1 = _count_zeros(u, j)
        pr.s2 = q + 1
        pr.n2 = n - j - 1
        pr.z2 = _count_zeros(q + 1, pr.n2)
        pr.size = 2 + (pr.n1 + pr.z1 + 2) + (pr.n2 + pr.z2 + 2)
    else:
        pr.marker = 0x01
        pr.s2 = u
        pr.n2 = n
        pr.z2 = _count_zeros(u, n)
        pr.size = 2 + pr.n2 + pr.z2 + 2
    return 0


cdef inline bint _is_int(object v):
    return PyLong_Check(v) and not PyBool_Check(v)


cdef int _prep_instant(Prep* pr, object v) except -1:
    cdef long long days, us, off_us
    cdef object tz, off
    days = _days_from_civil(datetime_year(v), datetime_month(v), datetime_day(v))
    us = ((days * 86400 + datetime_hour(v) * 3600 + datetime_minute(v) * 60
           + datetime_second(v)) * 1000000 + datetime_microsecond(v))
    tz = datetime_tzinfo(v)
    if tz is not None and tz is not _UTC:
        off = v.utcoffset()
        if off is not None:
            off_us = ((<long long>timedelta_days(off) * 86400 + timedelta_seconds(off)) * 1000000
                      + timedelta_microseconds(off))
            us -= off_us
    if us < MIN_US or us > MAX_US:
        raise InvalidValueError(f"instant {v!r} is outside datetime's range once converted to UTC",
                                data={"value": v})
    pr.mode = M_FIXED
    pr.tag = TAG_INSTANT
    pr.fixlen = 8
    put_u64(pr.fix, (<uint64_t>us) ^ SIGN64)
    pr.size = 9
    return 0


cdef object _prep(Prep* pr, int vtype, object v):
    """Fill ``pr`` for ``v`` as ``vtype``; returns an object that must stay alive
    until ``_write_prep`` ran (or None). Raises WrongTypeError / InvalidValueError."""
    cdef long long x
    cdef int ovf = 0
    cdef double d
    cdef object keep = None
    cdef Buf b

    if vtype == TYPE_LONG or vtype == TYPE_REF:
        if not _is_int(v):
            raise _wrong_type(vtype, v)
        x = _as_ll(v, &ovf)
        if ovf:
            raise _wrong_type(vtype, v, "outside the 64-bit range")
        pr.mode = M_FIXED
        pr.tag = TAG_LONG
        pr.fixlen = 8
        put_u64(pr.fix, (<uint64_t>x) ^ SIGN64)
        pr.size = 9
        return None
    if vtype == TYPE_STRING:
        if not PyUnicode_Check(v):
            raise _wrong_type(vtype, v)
        _prep_str(pr, TAG_STRING, v)
        return None
    if vtype == TYPE_KEYWORD:
        if type(v) is not _KEYWORD:
            raise _wrong_type(vtype, v)
        _prep_named(pr, TAG_KEYWORD, v._full)
        return v
    if vtype == TYPE_BOOLEAN:
        if not PyBool_Check(v):
            raise _wrong_type(vtype, v)
        pr.mode = M_FIXED
        pr.tag = TAG_BOOLEAN
        pr.fixlen = 1
        pr.fix[0] = 1 if v is True else 0
        pr.size = 2
        return None
    if vtype == TYPE_DOUBLE or vtype == TYPE_FLOAT:
        if PyFloat_Check(v):
            d = PyFloat_AS_DOUBLE(v)
        elif _is_int(v):
            try:
                d = float(v)
            except OverflowError:
                raise _wrong_type(vtype, v, "too large for a binary floating-point number") from None
        else:
            raise _wrong_type(vtype, v)
        pr.mode = M_FIXED
        if vtype == TYPE_DOUBLE:
            pr.tag = TAG_DOUBLE
            pr.fixlen = 8
            put_u64(pr.fix, _double_bits(d))
        else:
            pr.tag = TAG_FLOAT
            pr.fixlen = 4
            put_u64(pr.fix, (<uint64_t>_float_bits(<float>d)) << 32)
        pr.size = 1 + pr.fixlen
        return None
    if vtype == TYPE_INSTANT:
        if not PyDateTime_Check(v):
            raise _wrong_type(vtype, v)
        _prep_instant(pr, v)
        return None
    if vtype == TYPE_SYMBOL:
        if type(v) is not _SYMBOL:
            raise _wrong_type(vtype, v)
        _prep_named(pr, TAG_SYMBOL, v._full)
        return v
    if vtype == TYPE_URI:
        if type(v) is not _URI:
            raise _wrong_type(vtype, v)
        keep = v.value
        _prep_str(pr, TAG_URI, keep)
        return keep
    if vtype == TYPE_BYTES:
        if PyBytes_Check(v):
            keep = v
            pr.s1 = PyBytes_AS_STRING(v)
            pr.n1 = PyBytes_GET_SIZE(v)
        elif PyByteArray_Check(v):
            keep = v
            pr.s1 = PyByteArray_AS_STRING(v)
            pr.n1 = PyByteArray_GET_SIZE(v)
        elif isinstance(v, memoryview):
            keep = bytes(v)
            pr.s1 = PyBytes_AS_STRING(keep)
            pr.n1 = PyBytes_GET_SIZE(keep)
        else:
            raise _wrong_type(vtype, v)
        pr.mode = M_ESC
        pr.tag = TAG_BYTES
        pr.z1 = _count_zeros(pr.s1, pr.n1)
        pr.size = 1 + pr.n1 + pr.z1 + 2
        return keep
    if vtype == TYPE_UUID:
        if not isinstance(v, _UUID):
            raise _wrong_type(vtype, v)
        keep = v.bytes
        if PyBytes_GET_SIZE(keep) != 16:
            raise _wrong_type(vtype, v, "not 16 bytes")
        pr.mode = M_FIXED
        pr.tag = TAG_UUID
        pr.fixlen = 16
        memcpy(pr.fix, PyBytes_AS_STRING(keep), 16)
        pr.size = 17
        return None
    if vtype == TYPE_BIGINT:
        if not _is_int(v):
            raise _wrong_type(vtype, v)
        x = _as_ll(v, &ovf)
        pr.tag = TAG_BIGINT
        if not ovf:
            pr.mode = M_FIXED
            pr.fixlen = _varint_ll(pr.fix, x, 0)
            pr.size = 1 + pr.fixlen
            return None
        # fall through to the composite path
    elif vtype == TYPE_BIGDEC:
        if not (isinstance(v, _Decimal) or _is_int(v)):
            raise _wrong_type(vtype, v)
    elif vtype == TYPE_TUPLE:
        if not (PyTuple_Check(v) or PyList_Check(v)):
            raise _wrong_type(vtype, v)
    else:
        raise WrongTypeError(f"unknown value type code {vtype}", data={"type": vtype})

    # Composite values (big ints, decimals, tuples): build in a scratch buffer.
    cdef unsigned char stack[SMALL_BUF]
    _buf_init(&b, stack)
    try:
        if vtype == TYPE_BIGINT:
            _buf_put(&b, TAG_BIGINT)
            _buf_int(&b, v, 0)
        elif vtype == TYPE_BIGDEC:
            _buf_put(&b, TAG_BIGDEC)
            _buf_bigdec(&b, v)
        else:
            _buf_put(&b, TAG_TUPLE)
            _buf_tuple_body(&b, v, 1)
        keep = PyBytes_FromStringAndSize(<char*>b.data, b.len)
    finally:
        _buf_free(&b, stack)
    pr.mode = M_RAW
    pr.s1 = PyBytes_AS_STRING(keep)
    pr.n1 = PyBytes_GET_SIZE(keep)
    pr.size = pr.n1
    return keep


# ---------------------------------------------------------------------------
# scratch buffer for composite values

cdef struct Buf:
    unsigned char* data
    Py_ssize_t len
    Py_ssize_t cap


cdef inline void _buf_init(Buf* b, unsigned char* stack) noexcept:
    b.data = stack
    b.len = 0
    b.cap = SMALL_BUF


cdef inline void _buf_free(Buf* b, unsigned char* stack) noexcept:
    if b.data != stack:
        PyMem_Free(b.data)
    b.data = stack


cdef int _buf_grow(Buf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t need = b.len + extra
    cdef Py_ssize_t cap = b.cap * 2
    cdef unsigned char* nd
    if cap < need:
        cap = need
    if b.cap == SMALL_BUF:  # still on the caller's stack array
        nd = <unsigned char*>PyMem_Malloc(cap)
        if nd == NULL:
            raise MemoryError()
        memcpy(nd, b.data, b.len)
    else:
        nd = <unsigned char*>PyMem_Realloc(b.data, cap)
        if nd == NULL:
            raise MemoryError()
    b.data = nd
    b.cap = cap
    return 0


cdef inline int _buf_reserve(Buf* b, Py_ssize_t extra) except -1:
    if b.len + extra > b.cap:
        _buf_grow(b, extra)
    return 0


cdef inline int _buf_put(Buf* b, unsigned char c) except -1:
    if b.len + 1 > b.cap:
        _buf_grow(b, 1)
    b.data[b.len] = c
    b.len += 1
    return 0


cdef int _buf_int(Buf* b, object v, unsigned char mask) except -1:
    """Append the order-preserving varint of Python int ``v`` (any size), XORed with mask."""
    cdef int ovf = 0
    cdef long long x = _as_ll(v, &ovf)
    cdef Py_ssize_t L, i
    cdef unsigned char inv
    cdef const unsigned char* src
    if not ovf:
        _buf_reserve(b, 9)
        b.len += _varint_ll(b.data + b.len, x, mask)
        return 0
    neg = v < 0
    mag = -v if neg else v
    L = (mag.bit_length() + 7) // 8
    raw = mag.to_bytes(L, "big")
    inv = (0xFF if neg else 0) ^ mask
    _buf_reserve(b, 9 + L)
    if L <= 120:
        b.data[b.len] = <unsigned char>(0x80 + L) ^ inv
        b.len += 1
    else:
        b.data[b.len] = 0xFF ^ inv
        put_u64(b.data + b.len + 1, <uint64_t>L)
        for i in range(8):
            b.data[b.len + 1 + i] ^= inv
        b.len += 9
    src = <const unsigned char*>PyBytes_AS_STRING(raw)
    for i in range(L):
        b.data[b.len + i] = src[i] ^ inv
    b.len += L
    return 0


cdef int _buf_bigdec(Buf* b, object v) except -1:
    """class byte (0x01 neg, 0x02 zero, 0x03 pos), then for non-zero:
    varint(E) + digit pairs + 0x00 (both inverted for negatives) + varint(exponent);
    E is the scientific exponent (value = 0.d1d2... * 10**E, trailing zeros
    stripped), so bytes order by value; the plain exponent breaks ties (1.00 < 1.0 < 1).
    Zero: varint(exponent) + sign byte (0x00 for -0, 0x01 for +0)."""
    if not isinstance(v, _Decimal):
        v = _Decimal(v)
    t = v.as_tuple()
    exp = t.exponent
    if not isinstance(exp, int):
        raise InvalidValueError(f"bigdec {v!r} is not finite (NaN and Infinity cannot be stored)",
                                data={"value": v})
    digits = t.digits
    cdef Py_ssize_t k = len(digits), ks, i
    cdef bint neg = t.sign == 1
    cdef unsigned char mask, d1, d2
    if k == 1 and digits[0] == 0:
        _buf_put(b, 0x02)
        _buf_int(b, exp, 0)
        _buf_put(b, 0x00 if neg else 0x01)
        return 0
    ks = k
    while ks > 1 and digits[ks - 1] == 0:
        ks -= 1
    if k - ks > MAX_TRAILING_ZEROS:
        raise InvalidValueError(f"bigdec {v!r} has more than {MAX_TRAILING_ZEROS} trailing zeros",
                                data={"value": v})
    mask = 0xFF if neg else 0
    _buf_put(b, 0x01 if neg else 0x03)
    _buf_int(b, exp + k, mask)
    _buf_reserve(b, ks // 2 + 2)
    i = 0
    while i < ks:
        d1 = <unsigned char>(<int>digits[i])
        d2 = <unsigned char>(<int>digits[i + 1]) if i + 1 < ks else 0
        b.data[b.len] = (1 + 10 * d1 + d2) ^ mask
        b.len += 1
        i += 2
    b.data[b.len] = mask
    b.len += 1
    _buf_int(b, exp, 0)
    return 0


cdef int _buf_prep(Buf* b, int vtype, object x) except -1:
    cdef Prep pr
    keep = _prep(&pr, vtype, x)
    _buf_reserve(b, pr.size)
    _write_prep(b.data + b.len, &pr)
    b.len += pr.size
    return 0


cdef int _buf_tuple_body(Buf* b, object seq, int depth) except -1:
    if depth > MAX_DEPTH:
        raise InvalidValueError(f"tuple nested deeper than {MAX_DEPTH} levels", data={})
    for x in seq:
        if x is None:
            _buf_put(b, TAG_NIL)
        elif PyBool_Check(x):
            _buf_prep(b, TYPE_BOOLEAN, x)
        elif PyLong_Check(x):
            _buf_put(b, TAG_BIGINT)
            _buf_int(b, x, 0)
        elif PyFloat_Check(x):
            _buf_prep(b, TYPE_DOUBLE, x)
        elif PyUnicode_Check(x):
            _buf_prep(b, TYPE_STRING, x)
        elif type(x) is _KEYWORD:
            _buf_prep(b, TYPE_KEYWORD, x)
        elif PyTuple_Check(x) or PyList_Check(x):
            _buf_put(b, TAG_TUPLE)
            _buf_tuple_body(b, x, depth + 1)
        elif isinstance(x, _Decimal):
            _buf_put(b, TAG_BIGDEC)
            _buf_bigdec(b, x)
        elif PyDateTime_Check(x):
            _buf_prep(b, TYPE_INSTANT, x)
        elif type(x) is _SYMBOL:
            _buf_prep(b, TYPE_SYMBOL, x)
        elif isinstance(x, _UUID):
            _buf_prep(b, TYPE_UUID, x)
        elif type(x) is _URI:
            _buf_prep(b, TYPE_URI, x)
        elif PyBytes_Check(x) or PyByteArray_Check(x) or isinstance(x, memoryview):
            _buf_prep(b, TYPE_BYTES, x)
        else:
            raise WrongTypeError(f"tuple element {x!r} ({type(x).__name__}) has no value type",
                                 data={"value": x})
    _buf_put(b, TAG_END)
    return 0


# ---------------------------------------------------------------------------
# decoding. ``b`` is the start of the whole buffer (offsets in errors are
# relative to it), ``pos`` the read position, ``end`` the exclusive limit.

cdef inline object _steal(PyObject* r):
    cdef object o = <object>r
    Py_DECREF(o)
    return o


cdef Py_ssize_t _seg_end(const unsigned char* b, Py_ssize_t pos, Py_ssize_t end,
                         Py_ssize_t* nesc, int tag, Py_ssize_t tagpos) except -1:
    """Index of the 0x00 0x00 terminator of the escaped segment starting at pos."""
    cdef Py_ssize_t i = pos, j
    cdef Py_ssize_t z = 0
    cdef const unsigned char* q
    while True:
        q = <const unsigned char*>memchr(b + i, 0, end - i) if i < end else NULL
        if q == NULL or q + 1 >= b + end:
            raise _corrupt("unterminated string/bytes body", tagpos, tag)
        j = q - b
        if b[j + 1] == 0:
            nesc[0] = z
            return j
        if b[j + 1] != 0xFF:
            raise _corrupt(f"bad escape 0x00 0x{b[j + 1]:02x} at byte {j}", tagpos, tag)
        z += 1
        i = j + 2


cdef inline void _unescape(unsigned char* dst, const unsigned char* src, Py_ssize_t n) noexcept nogil:
    # src[0:n] contains only valid 0x00 0xFF escapes (checked by _seg_end)
    cdef const unsigned char* end = src + n
    cdef const unsigned char* q
    cdef Py_ssize_t k
    while src < end:
        q = <const unsigned char*>memchr(src, 0, end - src)
        if q == NULL:
            memcpy(dst, src, end - src)
            return
        k = q - src + 1
        memcpy(dst, src, k)
        dst += k
        src = q + 2


cdef object _utf8_str(const char* s, Py_ssize_t n, Py_ssize_t tagpos, int tag):
    cdef PyObject* r = _decode_utf8_raw(s, n, NULL)
    if r == NULL:
        PyErr_Clear()
        raise _corrupt("invalid UTF-8", tagpos, tag)
    return _steal(r)


cdef object _read_seg(const unsigned char* b, Py_ssize_t* pos, Py_ssize_t end, bint as_str,
                      int tag, Py_ssize_t tagpos):
    cdef Py_ssize_t z = 0, j, n
    cdef unsigned char* tmp
    j = _seg_end(b, pos[0], end, &z, tag, tagpos)
    n = j - pos[0]
    cdef const char* src = <const char*>(b + pos[0])
    pos[0] = j + 2
    if z == 0:
        if as_str:
            return _utf8_str(src, n, tagpos, tag)
        return PyBytes_FromStringAndSize(src, n)
    if not as_str:
        out = PyBytes_FromStringAndSize(NULL, n - z)
        _unescape(<unsigned char*>PyBytes_AS_STRING(out), <const unsigned char*>src, n)
        return out
    tmp = <unsigned char*>PyMem_Malloc(n - z + 1)
    if tmp == NULL:
        raise MemoryError()
    try:
        _unescape(tmp, <const unsigned char*>src, n)
        return _utf8_str(<const char*>tmp, n - z, tagpos, tag)
    finally:
        PyMem_Free(tmp)


cdef enum:
    NAMED_CACHE_SIZE = 1024     # power of two

cdef list _NC_KEYS = [None] * NAMED_CACHE_SIZE   # encoded keyword/symbol bytes (tag included)
cdef list _NC_VALS = [None] * NAMED_CACHE_SIZE   # the decoded Keyword/Symbol


cdef inline uint64_t _fnv1a(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ p[i]) * 1099511628211ULL
    return h ^ (h >> 29)


cdef object _read_named(const unsigned char* b, Py_ssize_t* pos, Py_ssize_t end,
                        int tag, Py_ssize_t tagpos):
    cdef Py_ssize_t p = pos[0], j1 = 0, z1 = 0, n1 = 0, j2, z2 = 0, n2, total
    cdef Py_ssize_t s1 = 0, s2
    cdef unsigned char marker
    cdef unsigned char stack[SMALL_BUF]
    cdef unsigned char* tmp
    cdef PyObject* found
    if p >= end:
        raise _corrupt("truncated keyword/symbol", tagpos, tag)
    marker = b[p]
    p += 1
    if marker == 0x02:
        s1 = p
        j1 = _seg_end(b, p, end, &z1, tag, tagpos)
        n1 = j1 - p
        if n1 - z1 == 0:
            raise _corrupt("empty namespace", tagpos, tag)
        p = j1 + 2
    elif marker != 0x01:
        raise _corrupt(f"bad namespace marker 0x{marker:02x}", tagpos, tag)
    s2 = p
    j2 = _seg_end(b, p, end, &z2, tag, tagpos)
    n2 = j2 - p
    pos[0] = j2 + 2
    # Keywords are few and hot (enum values, idents): a direct-mapped cache keyed
    # by the encoded bytes skips UTF-8 decoding and the intern-table lookup.
    cdef const unsigned char* span = b + tagpos
    cdef Py_ssize_t slen = j2 + 2 - tagpos
    cdef Py_ssize_t h = <Py_ssize_t>(_fnv1a(span, slen) & (NAMED_CACHE_SIZE - 1))
    cdef object ck = _NC_KEYS[h]
    if (ck is not None and PyBytes_GET_SIZE(ck) == slen
            and memcmp(PyBytes_AS_STRING(ck), span, slen) == 0):
        return _NC_VALS[h]
    if marker == 0x01 and z2 == 0:
        full = _utf8_str(<const char*>(b + s2), n2, tagpos, tag)
    else:
        total = (n1 - z1 + 1 if marker == 0x02 else 0) + n2 - z2
        if total <= SMALL_BUF:
            tmp = stack
        else:
            tmp = <unsigned char*>PyMem_Malloc(total)
            if tmp == NULL:
                raise MemoryError()
        try:
            if marker == 0x02:
                _unescape(tmp, b + s1, n1)
                tmp[n1 - z1] = 0x2F
                _unescape(tmp + n1 - z1 + 1, b + s2, n2)
            else:
                _unescape(tmp, b + s2, n2)
            full = _utf8_str(<const char*>tmp, total, tagpos, tag)
        finally:
            if tmp != stack:
                PyMem_Free(tmp)
    if not full:
        raise _corrupt("empty keyword/symbol", tagpos, tag)
    if tag == TAG_KEYWORD:
        found = PyDict_GetItem(_KW_TABLE, full)
        r = <object>found if found != NULL else _KEYWORD(":" + full)
    else:
        found = PyDict_GetItem(_SYM_TABLE, full)
        r = <object>found if found != NULL else _SYMBOL(full)
    _NC_KEYS[h] = PyBytes_FromStringAndSize(<const char*>span, slen)
    _NC_VALS[h] = r
    return r


cdef Py_ssize_t _int_header(const unsigned char* b, Py_ssize_t p, Py_ssize_t end,
                            unsigned char mask, int tag, Py_ssize_t tagpos,
                            Py_ssize_t* length, unsigned char* inv_out) except -1:
    """Parse the header of the varint written by _varint_ll/_buf_int (XORed with ``mask``).

    Returns the position of its magnitude bytes, checked to lie within ``end``; ``*length``
    receives their count (0 for zero) and ``*inv_out`` the XOR that restores them.
    """
    cdef unsigned char h, inv
    cdef uint64_t Lu
    cdef Py_ssize_t L
    cdef int i
    if p >= end:
        raise _corrupt("truncated integer", tagpos, tag)
    h = b[p] ^ mask
    p += 1
    if h == 0x80:
        length[0] = 0
        inv_out[0] = mask
        return p
    inv = (0xFF if h < 0x80 else 0) ^ mask
    h = b[p - 1] ^ inv
    if h == 0xFF:
        if p + 8 > end:
            raise _corrupt("truncated integer length", tagpos, tag)
        Lu = 0
        for i in range(8):
            Lu = (Lu << 8) | (b[p + i] ^ inv)
        p += 8
        if Lu <= 120 or Lu > <uint64_t>(end - p):
            raise _corrupt("bad or truncated integer length", tagpos, tag)
        L = <Py_ssize_t>Lu
    elif 0x81 <= h <= 0xF8:
        L = h - 0x80
    else:
        raise _corrupt(f"bad integer header 0x{b[p - 1]:02x}", tagpos, tag)
    if p + L > end:
        raise _corrupt("truncated integer", tagpos, tag)
    length[0] = L
    inv_out[0] = inv
    return p


cdef object _read_int(const unsigned char* b, Py_ssize_t* pos, Py_ssize_t end, unsigned char mask,
                      int tag, Py_ssize_t tagpos):
    """Read the varint written by _varint_ll/_buf_int (XORed with mask)."""
    cdef Py_ssize_t p, L, i
    cdef unsigned char inv
    cdef uint64_t m
    cdef bint neg
    p = _int_header(b, pos[0], end, mask, tag, tagpos, &L, &inv)
    if L == 0:
        pos[0] = p
        return 0
    neg = (inv ^ mask) == 0xFF
    if (b[p] ^ inv) == 0:
        raise _corrupt("non-canonical integer (leading zero byte)", tagpos, tag)
    pos[0] = p + L
    if L <= 8:
        m = 0
        for i in range(L):
            m = (m << 8) | (b[p + i] ^ inv)
        if not neg:
            return PyLong_FromUnsignedLongLong(m)
        if m <= SIGN64:
            return PyLong_FromLongLong(<long long>((<uint64_t>0) - m))
        return -PyLong_FromUnsignedLongLong(m)
    raw = PyBytes_FromStringAndSize(NULL, L)
    cdef unsigned char* w = <unsigned char*>PyBytes_AS_STRING(raw)
    for i in range(L):
        w[i] = b[p + i] ^ inv
    r = int.from_bytes(raw, "big")
    return -r if neg else r


cdef object _read_bigdec(const unsigned char* b, Py_ssize_t* pos, Py_ssize_t end, Py_ssize_t tagpos):
    cdef Py_ssize_t p = pos[0], ks
    cdef unsigned char c, mask, pb, d1, d2
    cdef bint neg
    if p >= end:
        raise _corrupt("truncated bigdec", tagpos, TAG_BIGDEC)
    c = b[p]
    p += 1
    if c == 0x02:
        exp = _read_int(b, &p, end, 0, TAG_BIGDEC, tagpos)
        if p >= end or b[p] > 1:
            raise _corrupt("bad bigdec zero sign", tagpos, TAG_BIGDEC)
        sign = 0 if b[p] == 1 else 1
        p += 1
        digits = (0,)
    elif c == 0x01 or c == 0x03:
        neg = c == 0x01
        mask = 0xFF if neg else 0
        E = _read_int(b, &p, end, mask, TAG_BIGDEC, tagpos)
        sig = []
        while True:
            if p >= end:
                raise _corrupt("truncated bigdec digits", tagpos, TAG_BIGDEC)
            pb = b[p] ^ mask
            p += 1
            if pb == 0:
                break
            if pb > 100:
                raise _corrupt("bad bigdec digit byte", tagpos, TAG_BIGDEC)
            d1 = (pb - 1) // 10
            d2 = (pb - 1) % 10
            sig.append(d1)
            sig.append(d2)
        if not sig:
            raise _corrupt("bigdec without digits", tagpos, TAG_BIGDEC)
        if sig[len(sig) - 1] == 0:
            sig.pop()
        ks = len(sig)
        if sig[0] == 0 or sig[ks - 1] == 0:
            raise _corrupt("non-canonical bigdec digits", tagpos, TAG_BIGDEC)
        exp = _read_int(b, &p, end, 0, TAG_BIGDEC, tagpos)
        tz = E - ks - exp
        if tz < 0 or tz > MAX_TRAILING_ZEROS:
            raise _corrupt("bigdec exponent mismatch", tagpos, TAG_BIGDEC)
        digits = tuple(sig) + (0,) * tz
        sign = 1 if neg else 0
    else:
        raise _corrupt(f"bad bigdec class 0x{c:02x}", tagpos, TAG_BIGDEC)
    try:
        r = _Decimal((sign, digits, exp))
    except (_InvalidOperation, ValueError, OverflowError):
        raise _corrupt("bigdec out of range", tagpos, TAG_BIGDEC) from None
    pos[0] = p
    return r


cdef object _instant_from_us(long long us, Py_ssize_t tagpos):
    if us < MIN_US or us > MAX_US:
        raise _corrupt("instant outside datetime's range", tagpos, TAG_INSTANT)
    return utc_from_us(us)


cdef object utc_from_us(long long us):
    """The aware UTC datetime ``us`` microseconds after the epoch (``us`` within datetime's range)."""
    cdef long long days, rem, z, era, doe, yoe, y, doy, mp, d, m, secs
    days = us // US_PER_DAY   # cdivision: truncates toward zero
    rem = us - days * US_PER_DAY
    if rem < 0:
        days -= 1
        rem += US_PER_DAY
    z = days + 719468         # >= 0 within datetime's range
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    secs = rem // 1000000
    return datetime_new(<int>y, <int>m, <int>d, <int>(secs // 3600), <int>((secs // 60) % 60),
                        <int>(secs % 60), <int>(rem % 1000000), _UTC)


cdef object _dec(const unsigned char* b, Py_ssize_t* pos, Py_ssize_t end, int depth, bint in_tuple):
    """Decode the tagged value at b[pos[0]:end], advancing pos[0]."""
    cdef Py_ssize_t p = pos[0]
    cdef Py_ssize_t tagpos = p
    cdef int tag
    cdef uint64_t u
    cdef uint32_t u32
    cdef double dv = 0
    cdef float fv = 0
    if p >= end:
        raise _corrupt("missing value", p, -1)
    tag = b[p]
    p += 1
    if tag == TAG_LONG:
        if p + 8 > end:
            raise _corrupt("truncated long", tagpos, tag)
        pos[0] = p + 8
        return PyLong_FromLongLong(read_id(b + p))
    if tag == TAG_STRING:
        pos[0] = p
        return _read_seg(b, pos, end, True, tag, tagpos)
    if tag == TAG_KEYWORD or tag == TAG_SYMBOL:
        pos[0] = p
        return _read_named(b, pos, end, tag, tagpos)
    if tag == TAG_BOOLEAN:
        if p >= end or b[p] > 1:
            raise _corrupt("bad boolean", tagpos, tag)
        pos[0] = p + 1
        return b[p] == 1
    if tag == TAG_DOUBLE:
        if p + 8 > end:
            raise _corrupt("truncated double", tagpos, tag)
        u = get_u64(b + p)
        u = (u ^ SIGN64) if (u & SIGN64) else ~u
        memcpy(&dv, &u, 8)
        pos[0] = p + 8
        return PyFloat_FromDouble(dv)
    if tag == TAG_FLOAT:
        if p + 4 > end:
            raise _corrupt("truncated float", tagpos, tag)
        u32 = ((<uint32_t>b[p] << 24) | (<uint32_t>b[p + 1] << 16) |
               (<uint32_t>b[p + 2] << 8) | <uint32_t>b[p + 3])
        u32 = (u32 ^ SIGN32) if (u32 & SIGN32) else ~u32
        memcpy(&fv, &u32, 4)
        pos[0] = p + 4
        return PyFloat_FromDouble(<double>fv)
    if tag == TAG_INSTANT:
        if p + 8 > end:
            raise _corrupt("truncated instant", tagpos, tag)
        pos[0] = p + 8
        return _instant_from_us(read_id(b + p), tagpos)
    if tag == TAG_BIGINT:
        pos[0] = p
        return _read_int(b, pos, end, 0, tag, tagpos)
    if tag == TAG_BIGDEC:
        pos[0] = p
        return _read_bigdec(b, pos, end, tagpos)
    if tag == TAG_URI:
        pos[0] = p
        return _URI(_read_seg(b, pos, end, True, tag, tagpos))
    if tag == TAG_BYTES:
        pos[0] = p
        return _read_seg(b, pos, end, False, tag, tagpos)
    if tag == TAG_UUID:
        if p + 16 > end:
            raise _corrupt("truncated uuid", tagpos, tag)
        pos[0] = p + 16
        u_obj = _UUID.__new__(_UUID)
        _obj_setattr(u_obj, "int", int.from_bytes(PyBytes_FromStringAndSize(<const char*>(b + p), 16), "big"))
        _obj_setattr(u_obj, "is_safe", _SAFE_UNKNOWN)
        return u_obj
    if tag == TAG_TUPLE:
        if depth >= MAX_DEPTH:
            raise _corrupt(f"tuple nested deeper than {MAX_DEPTH} levels", tagpos, tag)
        items = []
        while True:
            if p >= end:
                raise _corrupt("unterminated tuple", tagpos, tag)
            if b[p] == TAG_END:
                p += 1
                break
            items.append(_dec(b, &p, end, depth + 1, True))
        pos[0] = p
        return PyList_AsTuple(items)
    if tag == TAG_NIL and in_tuple:
        pos[0] = p
        return None
    raise _corrupt("unknown value tag" if tag != TAG_NIL and tag != TAG_END
                   else "nil/end marker outside a tuple", tagpos, tag)


cdef Py_ssize_t _skip_seg(const unsigned char* b, Py_ssize_t p, Py_ssize_t end, int tag,
                          Py_ssize_t tagpos) except -1:
    cdef Py_ssize_t z = 0
    return _seg_end(b, p, end, &z, tag, tagpos) + 2


cdef Py_ssize_t _skip_int(const unsigned char* b, Py_ssize_t p, Py_ssize_t end, unsigned char mask,
                          int tag, Py_ssize_t tagpos) except -1:
    cdef Py_ssize_t L
    cdef unsigned char inv
    p = _int_header(b, p, end, mask, tag, tagpos, &L, &inv)
    return p + L


cdef Py_ssize_t _skip(const unsigned char* b, Py_ssize_t p, Py_ssize_t end, int depth,
                      bint in_tuple) except -1:
    """Position just past the tagged value at b[p:end] (structure checked, content not decoded)."""
    cdef Py_ssize_t tagpos = p
    cdef int tag
    cdef unsigned char c, mask
    if p >= end:
        raise _corrupt("missing value", p, -1)
    tag = b[p]
    p += 1
    if tag == TAG_LONG or tag == TAG_DOUBLE or tag == TAG_INSTANT:
        if p + 8 > end:
            raise _corrupt("truncated value", tagpos, tag)
        return p + 8
    if tag == TAG_STRING or tag == TAG_URI or tag == TAG_BYTES:
        return _skip_seg(b, p, end, tag, tagpos)
    if tag == TAG_KEYWORD or tag == TAG_SYMBOL:
        if p >= end or (b[p] != 1 and b[p] != 2):
            raise _corrupt("bad namespace marker", tagpos, tag)
        if b[p] == 2:
            p = _skip_seg(b, p + 1, end, tag, tagpos)
        else:
            p += 1
        return _skip_seg(b, p, end, tag, tagpos)
    if tag == TAG_BOOLEAN:
        if p >= end:
            raise _corrupt("truncated boolean", tagpos, tag)
        return p + 1
    if tag == TAG_FLOAT:
        if p + 4 > end:
            raise _corrupt("truncated float", tagpos, tag)
        return p + 4
    if tag == TAG_UUID:
        if p + 16 > end:
            raise _corrupt("truncated uuid", tagpos, tag)
        return p + 16
    if tag == TAG_BIGINT:
        return _skip_int(b, p, end, 0, tag, tagpos)
    if tag == TAG_BIGDEC:
        if p >= end:
            raise _corrupt("truncated bigdec", tagpos, tag)
        c = b[p]
        p += 1
        if c == 0x02:
            p = _skip_int(b, p, end, 0, tag, tagpos)
            if p >= end:
                raise _corrupt("truncated bigdec", tagpos, tag)
            return p + 1
        if c != 0x01 and c != 0x03:
            raise _corrupt("bad bigdec class", tagpos, tag)
        mask = 0xFF if c == 0x01 else 0
        p = _skip_int(b, p, end, mask, tag, tagpos)
        while True:
            if p >= end:
                raise _corrupt("truncated bigdec digits", tagpos, tag)
            p += 1
            if b[p - 1] == mask:
                break
        return _skip_int(b, p, end, 0, tag, tagpos)
    if tag == TAG_TUPLE:
        if depth >= MAX_DEPTH:
            raise _corrupt(f"tuple nested deeper than {MAX_DEPTH} levels", tagpos, tag)
        while True:
            if p >= end:
                raise _corrupt("unterminated tuple", tagpos, tag)
            if b[p] == TAG_END:
                return p + 1
            p = _skip(b, p, end, depth + 1, True)
    if tag == TAG_NIL and in_tuple:
        return p
    raise _corrupt("unknown value tag", tagpos, tag)


# ---------------------------------------------------------------------------
# C-level API (declared in codec.pxd)

cdef object decode_value_ptr(const unsigned char* p, Py_ssize_t n, Py_ssize_t* consumed):
    cdef Py_ssize_t pos = 0
    v = _dec(p, &pos, n, 0, False)
    consumed[0] = pos
    return v


cdef Py_ssize_t value_size_ptr(const unsigned char* p, Py_ssize_t n) except -1:
    return _skip(p, 0, n, 0, False)


cdef Datom decode_key_ptr(int index, const unsigned char* p, Py_ssize_t n):
    cdef long long e, a, tx
    cdef Py_ssize_t pos, vend
    cdef unsigned char added
    cdef object v
    if n < 2 * ID_SIZE + 1 + KEY_SUFFIX:
        if index < INDEX_EAVT or index > INDEX_VAET:
            raise _unknown_index(index)
        raise _corrupt(f"key too short ({n} bytes)", 0, -1)
    vend = n - KEY_SUFFIX
    added = p[n - 1]
    if added > 1:
        raise _corrupt(f"bad added byte 0x{added:02x}", n - 1, -1)
    tx = read_id(p + vend)
    if index == INDEX_EAVT or index == INDEX_AEVT:
        pos = 2 * ID_SIZE
        v = _dec(p, &pos, vend, 0, False)
        if pos != vend:
            raise _corrupt("trailing bytes after value", pos, -1)
        if index == INDEX_EAVT:
            e = read_id(p)
            a = read_id(p + ID_SIZE)
        else:
            a = read_id(p)
            e = read_id(p + ID_SIZE)
    elif index == INDEX_AVET:
        pos = ID_SIZE
        v = _dec(p, &pos, vend - ID_SIZE, 0, False)
        if pos != vend - ID_SIZE:
            raise _corrupt("trailing bytes after value", pos, -1)
        a = read_id(p)
        e = read_id(p + pos)
    elif index == INDEX_VAET:
        if n != 1 + 3 * ID_SIZE + KEY_SUFFIX or p[0] != TAG_LONG:
            raise _corrupt("VAET key must hold a ref value (tag 0x20) and be 34 bytes", 0, p[0])
        v = PyLong_FromLongLong(read_id(p + 1))
        a = read_id(p + 1 + ID_SIZE)
        e = read_id(p + 1 + 2 * ID_SIZE)
    else:
        raise _unknown_index(index)
    return make_datom(e, a, v, tx, added)


cdef bytes encode_key_c(int index, long long e, long long a, int vtype, object v,
                        long long tx, bint added):
    cdef Prep pr
    cdef Py_ssize_t n
    cdef unsigned char* out
    if index < INDEX_EAVT or index > INDEX_VAET:
        raise _unknown_index(index)
    if index == INDEX_VAET and vtype != TYPE_REF:
        raise InvalidIndexError(f"VAET holds only ref attributes, got value type {_type_name(vtype)}",
                                data={"index": index, "type": vtype})
    keep = _prep(&pr, vtype, v)
    n = 2 * ID_SIZE + pr.size + KEY_SUFFIX
    cdef bytes key = PyBytes_FromStringAndSize(NULL, n)
    out = <unsigned char*>PyBytes_AS_STRING(key)
    if index == INDEX_EAVT:
        write_id(out, e)
        write_id(out + ID_SIZE, a)
        out = _write_prep(out + 2 * ID_SIZE, &pr)
    elif index == INDEX_AEVT:
        write_id(out, a)
        write_id(out + ID_SIZE, e)
        out = _write_prep(out + 2 * ID_SIZE, &pr)
    elif index == INDEX_AVET:
        write_id(out, a)
        out = _write_prep(out + ID_SIZE, &pr)
        write_id(out, e)
        out += ID_SIZE
    else:
        out = _write_prep(out, &pr)
        write_id(out, a)
        write_id(out + ID_SIZE, e)
        out += 2 * ID_SIZE
    write_id(out, tx)
    out[ID_SIZE] = 1 if added else 0
    return key


# ---------------------------------------------------------------------------
# Python API

cdef class _View:
    """Borrow a read-only contiguous buffer from any bytes-like object."""
    cdef Py_buffer view
    cdef bint held

    def __cinit__(self, obj):
        if PyObject_GetBuffer(obj, &self.view, PyBUF_SIMPLE) != 0:
            raise WrongTypeError(f"expected a bytes-like object, got {type(obj).__name__}")
        self.held = True

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.view)


cdef inline _View _view(object obj):
    try:
        return _View(obj)
    except TypeError as ex:
        if isinstance(ex, WrongTypeError):
            raise
        raise WrongTypeError(f"expected a bytes-like object, got {type(obj).__name__}: {obj!r}",
                             data={"value": obj}) from None


def encode_value(int vtype, object v):
    """Encode ``v`` as a value of type ``vtype``: one tag byte + an order-preserving body.

    Raises WrongTypeError when ``v`` does not fit the type and InvalidValueError
    when it fits but cannot be stored (NaN bigdec, lone surrogate, ...).

    >>> encode_value(TYPE_LONG, -1).hex()
    '207fffffffffffffff'
    >>> encode_value(TYPE_STRING, "a\\x00b")
    b'Pa\\x00\\xffb\\x00\\x00'
    >>> encode_value(TYPE_LONG, 1) < encode_value(TYPE_LONG, 2)
    True
    """
    cdef Prep pr
    keep = _prep(&pr, vtype, v)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, pr.size)
    _write_prep(<unsigned char*>PyBytes_AS_STRING(out), &pr)
    return out


def decode_value(b):
    """Decode one encoded value that fills all of ``b`` (bytes or any buffer).

    >>> decode_value(encode_value(TYPE_TUPLE, (1, None, "x")))
    (1, None, 'x')
    """
    cdef Py_ssize_t pos = 0
    cdef const unsigned char* p
    cdef Py_ssize_t n
    cdef _View vw = None
    if PyBytes_CheckExact(b):
        p = <const unsigned char*>PyBytes_AS_STRING(b)
        n = PyBytes_GET_SIZE(b)
    else:
        vw = _view(b)
        p = <const unsigned char*>vw.view.buf
        n = vw.view.len
    v = _dec(p, &pos, n, 0, False)
    if pos != n:
        raise _corrupt("trailing bytes after value", pos, -1)
    return v


def value_size(b, Py_ssize_t offset=0):
    """Length in bytes of the encoded value starting at ``offset`` in ``b``.

    >>> value_size(encode_value(TYPE_STRING, "abc") + b"rest")
    6
    """
    cdef _View vw = _view(b)
    if offset < 0 or offset > vw.view.len:
        raise IndexError(f"offset {offset} outside buffer of {vw.view.len} bytes")
    return _skip(<const unsigned char*>vw.view.buf, offset, vw.view.len, 0, False) - offset


def encode_id(long long x):
    """An entity/attribute/tx id as 8 bytes, big-endian, sign bit flipped.

    >>> encode_id(1).hex(), encode_id(-1) < encode_id(0) < encode_id(1)
    ('8000000000000001', True)
    """
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 8)
    write_id(<unsigned char*>PyBytes_AS_STRING(out), x)
    return out


def decode_id(b):
    """Inverse of :func:`encode_id` (exactly 8 bytes).

    >>> decode_id(encode_id(-42))
    -42
    """
    cdef _View vw = _view(b)
    if vw.view.len != 8:
        raise _corrupt(f"an id is 8 bytes, got {vw.view.len}", 0, -1)
    return read_id(<const unsigned char*>vw.view.buf)


def encode_key(int index, long long e, long long a, int vtype, object v, long long tx, bint added):
    """The key of datom ``(e, a, v, tx, added)`` in ``index`` (INDEX_EAVT..INDEX_VAET).

    >>> k = encode_key(INDEX_AVET, 5, 10, TYPE_KEYWORD, Keyword(":color/red"), 7, True)
    >>> k[8:9], decode_key(INDEX_AVET, k)
    (b'Q', #datom [5 10 Keyword('color/red') 7 true])
    """
    return encode_key_c(index, e, a, vtype, v, tx, added)


def decode_key(int index, key):
    """Decode a key of ``index`` back into a Datom (``key``: bytes or any buffer).

    Malformed keys raise InvalidValueError naming the offset and tag.

    >>> decode_key(INDEX_VAET, encode_key(INDEX_VAET, 1, 2, TYPE_REF, 3, 4, False))
    #datom [1 2 3 4 false]
    """
    if PyBytes_CheckExact(key):
        return decode_key_ptr(index, <const unsigned char*>PyBytes_AS_STRING(key),
                              PyBytes_GET_SIZE(key))
    cdef _View vw = _view(key)
    return decode_key_ptr(index, <const unsigned char*>vw.view.buf, vw.view.len)


def decode_keys(int index, keys):
    """Decode many keys of one index; returns a list of Datoms.

    >>> decode_keys(INDEX_EAVT, [encode_key(INDEX_EAVT, 1, 2, TYPE_LONG, 3, 4, True)])
    [#datom [1 2 3 4 true]]
    """
    cdef list out = []
    cdef _View vw
    for key in keys:
        if PyBytes_CheckExact(key):
            out.append(decode_key_ptr(index, <const unsigned char*>PyBytes_AS_STRING(key),
                                      PyBytes_GET_SIZE(key)))
        else:
            vw = _view(key)
            out.append(decode_key_ptr(index, <const unsigned char*>vw.view.buf, vw.view.len))
    return out


def encode_keys(int index, int vtype, rows):
    """Encode many datoms of one value type; ``rows`` yields ``(e, a, v, tx, added)``
    (Datoms or 5-tuples). Returns a list of keys.

    >>> encode_keys(INDEX_EAVT, TYPE_LONG, [(1, 2, 3, 4, True)]) == [encode_key(INDEX_EAVT, 1, 2, TYPE_LONG, 3, 4, True)]
    True
    """
    cdef list out = []
    cdef Datom d
    for row in rows:
        if type(row) is Datom:
            d = <Datom>row
            out.append(encode_key_c(index, d.e, d.a, vtype, d.v, d.tx, d.added))
        else:
            e, a, v, tx, added = row
            out.append(encode_key_c(index, e, a, vtype, v, tx, added))
    return out
