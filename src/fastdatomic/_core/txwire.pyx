# cython: language_level=3
r"""Binary tx-data on the wire: the TRANSACT_BIN request the peer writes and the transactor reads.

EDN text costs the peer a printer and the transactor a parser, one Python object per
token. This encoding is one tagged walk of the Python tx-data the user passed, and the
transactor's decoder builds the objects ``prepare`` takes directly, **exactly** what
``edn.loads(edn.dumps(x))`` gives (tuples arrive as EDN lists (``Form``), sets as
``frozenset``, ``bytearray`` as ``bytes``, naive datetimes as UTC, as the EDN path of
the peer sends them). What it does not know for sure (a subclass of a supported type, a
``Fraction``, a keyword with no EDN form, nesting past ``MAX_DEPTH``, a string that is
not valid Unicode, ...) it does not encode: ``transact_payload`` returns ``None`` and
the peer sends the EDN text instead, in the same request (flag ``EDN``). This module is
``_core``: no I/O, no EDN; the caller passes EDN's list type and its name check.

A request payload, integers big-endian unless said::

    version  u8      FORMAT_VERSION
    flags    u8      1 EDN: tx-data is EDN text (UTF-8)   2: a tx id follows   4: a db id follows
                     8 FRESH_TX_ID: the peer made the tx id for this request and never sent it
                       before, so it cannot be committed already (the transactor skips its
                       look-up in the durable index; a peer that sets it on a retry loses that
                       retry's idempotency, no one else's)
    db       varint length, UTF-8 database name
    tx id    16 bytes (flag 2)
    db id    varint length, UTF-8 (flag 4)
    tx-data  the rest: one value (below), or EDN text (flag 1)

A value is a tag byte, then::

    0x00 nil   0x01 false   0x02 true
    0x03 INT      zigzag varint (64-bit)          0x04 BIGINT   varint n, n bytes two's complement
    0x05 FLOAT    8 bytes IEEE 754, little-endian
    0x06 STR      varint n, n bytes UTF-8         0x07 KEYWORD  like STR (name without ':')
    0x08 SYMBOL   like STR                        0x09 UUID     16 bytes
    0x0A INST     u16 year, u8 month day hour minute second, u32 microsecond, i16 UTC offset minutes
    0x0B DECIMAL  like STR, ASCII, finite         0x0C BYTES    varint n, n bytes
    0x0D URI      like STR
    0x0E VECTOR   varint count, values (list)     0x0F LIST     varint count, values (EDN list)
    0x10 MAP      varint count, key value pairs   0x11 SET      varint count, values (frozenset)
    0x12 REF      varint i: the i-th entry of the name table

The name table makes repeated attribute names cost two bytes: every KEYWORD (anywhere)
and every STR in map-key position is appended to it, on both sides, in stream order.

>>> from fastdatomic.types import Keyword
>>> wire = TxWire(tuple, str)
>>> p = wire.transact_payload("people", None, None, [{":person/name": "Ann"}, {":person/name": "Bo"}])
>>> wire.decode_transact(p)
('people', None, None, [{':person/name': 'Ann'}, {':person/name': 'Bo'}], 0)
>>> wire.transact_payload("people", None, None, [1 + 2j]) is None     # no binary form: send EDN
True
"""

cimport cython
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE,
                            PyBytes_CheckExact)
from cpython.bytearray cimport PyByteArray_CheckExact, PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_FromDouble
from cpython.long cimport PyLong_FromLongLong
from cpython.ref cimport PyObject
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.datetime cimport (import_datetime, PyDateTime_CheckExact, datetime_new, datetime_tzinfo,
                               datetime_year, datetime_month, datetime_day, datetime_hour,
                               datetime_minute, datetime_second, datetime_microsecond,
                               timedelta_days, timedelta_seconds, timedelta_microseconds)
from libc.string cimport memcpy
from libc.stdint cimport uint64_t, int64_t, uint32_t

from fastdatomic._core.varint cimport put_varint, get_varint

import uuid as _uuid_mod
from datetime import timezone as _timezone, timedelta as _timedelta
from decimal import Decimal as _Decimal

from fastdatomic.errors import ProtocolError
from fastdatomic.types import Keyword, Symbol, URI

cdef extern from "Python.h":
    const char* _utf8_of "PyUnicode_AsUTF8AndSize"(object s, Py_ssize_t* size)
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t n, const char* errors)
    long long _as_ll "PyLong_AsLongLongAndOverflow"(object o, int* overflow) except? -1
    void PyErr_Clear()

import_datetime()

__all__ = ["TxWire", "FORMAT_VERSION", "MAX_DEPTH", "EDN", "HAS_TX_ID", "HAS_DB_ID", "FRESH_TX_ID"]

#: The payload's first byte; a transactor refuses versions it does not know.
FORMAT_VERSION = 1
#: Deepest nesting of collections encoded (deeper tx-data goes as EDN text).
MAX_DEPTH = 512
EDN = 1
HAS_TX_ID = 2
HAS_DB_ID = 4
FRESH_TX_ID = 8

cdef enum:
    T_NIL = 0x00
    T_FALSE = 0x01
    T_TRUE = 0x02
    T_INT = 0x03
    T_BIGINT = 0x04
    T_FLOAT = 0x05
    T_STR = 0x06
    T_KEYWORD = 0x07
    T_SYMBOL = 0x08
    T_UUID = 0x09
    T_INST = 0x0A
    T_DECIMAL = 0x0B
    T_BYTES = 0x0C
    T_URI = 0x0D
    T_VECTOR = 0x0E
    T_LIST = 0x0F
    T_MAP = 0x10
    T_SET = 0x11
    T_REF = 0x12
    INST_BYTES = 13
    BIGINT_MAX_BITS = 8192        # far below int()'s 4300-digit text limit, so EDN reads it too
    NAMED_CACHE_MAX = 100000

cdef object _KEYWORD = Keyword
cdef object _SYMBOL = Symbol
cdef object _URI = URI
cdef object _UUID = _uuid_mod.UUID
cdef object _SAFE_UNKNOWN = _uuid_mod.SafeUUID.unknown
cdef object _DECIMAL = _Decimal
cdef object _UTC = _timezone.utc
cdef object _obj_setattr = object.__setattr__
cdef object _from_bytes = int.from_bytes
cdef dict _KW_TABLE = Keyword._table
cdef dict _SYM_TABLE = Symbol._table
cdef dict _TZ = {}                 # UTC offset minutes -> timezone, as EDN's reader makes them

# Keywords and symbols whose EDN form was checked (shared by every TxWire: the check is
# EDN's, and a name's answer never changes).
cdef dict _named_ok = {}

# Encoder answers: written, or "no binary form, send EDN".
cdef enum:
    DONE = 0
    NO_BINARY = 1


# ---------------------------------------------------------------------------
# the output buffer

@cython.final
@cython.auto_pickle(False)
cdef class _Out:
    """One encoding's growing buffer and name table (one per call: threads share a TxWire)."""
    cdef unsigned char* p
    cdef Py_ssize_t n
    cdef Py_ssize_t cap
    cdef dict names            # str/Keyword -> index in the name table
    cdef Py_ssize_t nnames

    def __cinit__(self, Py_ssize_t cap):
        self.p = <unsigned char*>PyMem_Malloc(cap)
        if self.p == NULL:
            raise MemoryError()
        self.cap = cap
        self.names = {}

    def __dealloc__(self):
        PyMem_Free(self.p)

    cdef int grow(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap = self.cap * 2
        cdef unsigned char* q
        if cap < self.n + need:
            cap = self.n + need + 64
        q = <unsigned char*>PyMem_Realloc(self.p, cap)
        if q == NULL:
            raise MemoryError()
        self.p = q
        self.cap = cap
        return 0

    cdef inline unsigned char* room(self, Py_ssize_t need) except NULL:
        if self.n + need > self.cap:
            self.grow(need)
        return self.p + self.n

    cdef inline int byte(self, unsigned char b) except -1:
        self.room(1)[0] = b
        self.n += 1
        return 0

    cdef inline int varint(self, uint64_t x) except -1:
        self.n += put_varint(self.room(10), x)
        return 0

    cdef inline int tagged_varint(self, unsigned char tag, uint64_t x) except -1:
        cdef unsigned char* o = self.room(11)
        o[0] = tag
        self.n += 1 + put_varint(o + 1, x)
        return 0

    cdef int raw(self, unsigned char tag, const char* s, Py_ssize_t n) except -1:
        # tag, varint n, n bytes
        cdef unsigned char* o = self.room(11 + n)
        cdef Py_ssize_t k
        o[0] = tag
        k = 1 + put_varint(o + 1, <uint64_t>n)
        memcpy(o + k, s, n)
        self.n += k + n
        return 0

    cdef int tagged_text(self, unsigned char tag, object x) except -1:
        # tag, varint byte length, x's UTF-8 bytes; NO_BINARY (nothing written) when x has
        # no UTF-8 form (a lone surrogate): EDN text carries such a value instead
        cdef Py_ssize_t n
        cdef const char* s = _utf8_of(x, &n)
        if s == NULL:
            PyErr_Clear()
            return NO_BINARY
        self.raw(tag, s, n)
        return DONE

    cdef int text(self, object x, str what) except -1:
        # varint byte length, then x's UTF-8 bytes; ValueError naming ``what`` when x
        # has no UTF-8 form (a lone surrogate)
        cdef Py_ssize_t n
        cdef const char* s = _utf8_of(x, &n)
        if s == NULL:
            PyErr_Clear()
            raise ValueError(f"{what} is not valid Unicode")
        self.varint(<uint64_t>n)
        memcpy(self.room(n), s, n)
        self.n += n
        return 0

    cdef bytes result(self):
        return PyBytes_FromStringAndSize(<char*>self.p, self.n)


cdef inline void put_u16(unsigned char* o, unsigned int x) noexcept nogil:
    o[0] = <unsigned char>(x >> 8)
    o[1] = <unsigned char>x


cdef inline void put_u32(unsigned char* o, uint32_t x) noexcept nogil:
    o[0] = <unsigned char>(x >> 24)
    o[1] = <unsigned char>(x >> 16)
    o[2] = <unsigned char>(x >> 8)
    o[3] = <unsigned char>x


cdef inline unsigned int get_u16(const unsigned char* p) noexcept nogil:
    return (<unsigned int>p[0] << 8) | p[1]


cdef inline uint32_t get_u32(const unsigned char* p) noexcept nogil:
    return ((<uint32_t>p[0]) << 24) | ((<uint32_t>p[1]) << 16) | ((<uint32_t>p[2]) << 8) | p[3]


# ---------------------------------------------------------------------------
# decoding state

@cython.final
@cython.auto_pickle(False)
cdef class _In:
    """One decoding: the bytes, where we are, the name table."""
    cdef const unsigned char* base
    cdef Py_ssize_t pos
    cdef Py_ssize_t end
    cdef list names
    cdef object form

    cdef object fail(self, str what):
        raise ProtocolError(f"malformed TRANSACT_BIN payload at byte {self.pos}: {what}",
                            data={"reason": "txwire", "offset": self.pos,
                                  "outcome": "not-committed"})

    cdef inline const unsigned char* take(self, Py_ssize_t n) except NULL:
        cdef const unsigned char* p
        if n < 0 or n > self.end - self.pos:
            self.fail(f"{n} bytes needed, {self.end - self.pos} left")
        p = self.base + self.pos
        self.pos += n
        return p

    cdef inline uint64_t varint(self) except? 0xFFFFFFFFFFFFFFFF:
        cdef uint64_t x = 0
        cdef Py_ssize_t k = get_varint(self.base + self.pos, self.end - self.pos, &x)
        if k < 0:
            self.fail("truncated or overlong varint")
        self.pos += k
        return x

    cdef inline Py_ssize_t length(self) except -1:
        # A byte count or item count: never more than the bytes left (each item takes one).
        cdef uint64_t n = self.varint()
        if n > <uint64_t>(self.end - self.pos):
            self.fail(f"length {n} exceeds the {self.end - self.pos} bytes left")
        return <Py_ssize_t>n

    cdef object text(self):
        cdef Py_ssize_t n = self.length()
        cdef const unsigned char* p = self.take(n)
        try:
            return PyUnicode_DecodeUTF8(<const char*>p, n, NULL)
        except UnicodeDecodeError:
            self.pos -= n
            self.fail("text is not UTF-8")


cdef object _tz(int minutes):
    tz = _TZ.get(minutes)
    if tz is None:
        tz = _TZ[minutes] = _timezone(_timedelta(minutes=minutes))
    return tz


cdef object _value(_In r, int depth, bint key):
    cdef const unsigned char* p
    cdef unsigned char tag
    cdef uint64_t u
    cdef int64_t i
    cdef double d
    cdef Py_ssize_t n, k, start
    cdef int off
    cdef object x, y
    cdef list items
    cdef dict m
    start = r.pos
    tag = r.take(1)[0]
    if tag == T_STR:
        x = r.text()
        if key:
            r.names.append(x)
        return x
    if tag == T_REF:
        u = r.varint()
        if u >= <uint64_t>len(r.names):
            r.pos = start
            r.fail(f"name reference {u} beyond the {len(r.names)} names so far")
        return r.names[u]
    if tag == T_INT:
        u = r.varint()
        i = <int64_t>(u >> 1) ^ -(<int64_t>(u & 1))
        return PyLong_FromLongLong(i)
    if tag == T_KEYWORD or tag == T_SYMBOL:
        x = r.text()
        y = (_KW_TABLE if tag == T_KEYWORD else _SYM_TABLE).get(x)
        if y is None:
            if not x:
                r.pos = start
                r.fail("empty keyword or symbol")
            y = _KEYWORD(x) if tag == T_KEYWORD else _SYMBOL(x)
        if tag == T_KEYWORD:
            r.names.append(y)
        return y
    if tag == T_MAP:
        n = r.length()
        if depth >= MAX_DEPTH:
            r.pos = start
            r.fail(f"nesting deeper than {MAX_DEPTH}")
        m = {}
        for k in range(n):
            x = _value(r, depth + 1, True)
            y = _value(r, depth + 1, False)
            try:
                m[x] = y
            except TypeError:
                r.fail(f"map key of unhashable type {type(x).__name__}")
        return m
    if tag == T_VECTOR or tag == T_LIST or tag == T_SET:
        n = r.length()
        if depth >= MAX_DEPTH:
            r.pos = start
            r.fail(f"nesting deeper than {MAX_DEPTH}")
        items = []
        for k in range(n):
            items.append(_value(r, depth + 1, False))
        if tag == T_VECTOR:
            return items
        if tag == T_LIST:
            return r.form(items)
        try:
            return frozenset(items)
        except TypeError:
            r.fail("set element of an unhashable type")
    if tag == T_NIL:
        return None
    if tag == T_TRUE:
        return True
    if tag == T_FALSE:
        return False
    if tag == T_FLOAT:
        p = r.take(8)
        u = 0
        for k in range(8):
            u |= (<uint64_t>p[k]) << (8 * k)
        memcpy(&d, &u, 8)
        return PyFloat_FromDouble(d)
    if tag == T_UUID:
        p = r.take(16)
        x = _UUID.__new__(_UUID)
        _obj_setattr(x, "int", _from_bytes(PyBytes_FromStringAndSize(<const char*>p, 16), "big"))
        _obj_setattr(x, "is_safe", _SAFE_UNKNOWN)
        return x
    if tag == T_INST:
        p = r.take(INST_BYTES)
        off = <short>get_u16(p + 11)
        try:
            return datetime_new(get_u16(p), p[2], p[3], p[4], p[5], p[6], get_u32(p + 7),
                                _UTC if off == 0 else _tz(off))
        except (ValueError, OverflowError) as e:
            r.pos = start
            r.fail(f"invalid instant: {e}")
    if tag == T_URI:
        return _URI(r.text())
    if tag == T_BYTES:
        n = r.length()
        p = r.take(n)
        return PyBytes_FromStringAndSize(<const char*>p, n)
    if tag == T_DECIMAL:
        x = r.text()
        try:
            y = _DECIMAL(x)
            if y.is_finite() and x.isascii():
                return y
        except Exception:
            pass
        r.pos = start
        r.fail(f"invalid decimal {x[:40]!r}")
    if tag == T_BIGINT:
        n = r.length()
        if n == 0 or n > BIGINT_MAX_BITS // 8 + 1:
            r.pos = start
            r.fail(f"big integer of {n} bytes")
        p = r.take(n)
        return _from_bytes(PyBytes_FromStringAndSize(<const char*>p, n), "big", signed=True)
    r.pos = start
    r.fail(f"unknown tag 0x{tag:02x}")


# ---------------------------------------------------------------------------
# the codec

@cython.final
@cython.auto_pickle(False)
cdef class TxWire:
    r"""Encoder and decoder of TRANSACT_BIN payloads.

    ``form_type`` is the type EDN lists read as (``edn.Form``: tuples are decoded as
    that); ``check_name(keyword_or_symbol)`` raises ``ValueError`` when the name has no
    EDN form (``edn.dumps`` does), so that binary and EDN refuse the same names. One
    instance is shared by every thread of a process.

    >>> from fastdatomic.types import Keyword
    >>> import uuid
    >>> w = TxWire(tuple, str)
    >>> tid = uuid.UUID(int=7)
    >>> p = w.transact_payload("db", tid, "db-id-1", [[Keyword("db/add"), "t", ":a/b", (1, 2)]])
    >>> w.decode_transact(p)
    ('db', UUID('00000000-0000-0000-0000-000000000007'), 'db-id-1', [[Keyword('db/add'), 't', ':a/b', (1, 2)]], 6)
    """

    cdef object form
    cdef object check_name

    def __init__(self, form_type, check_name):
        self.form = form_type
        self.check_name = check_name

    # --- encoding -------------------------------------------------------------------

    def encode(self, tx_data):
        r"""The binary value of ``tx_data``, or ``None`` when it has none (send EDN text).

        >>> TxWire(tuple, str).encode([None, True, 1, -1])
        b'\x0e\x04\x00\x02\x03\x02\x03\x01'
        """
        cdef _Out out = _Out(256)
        if self._value(out, tx_data, 0) != DONE:
            return None
        return out.result()

    def decode(self, data):
        r"""The tx-data of a binary value (``ProtocolError`` if it is malformed).

        >>> w = TxWire(tuple, str)
        >>> w.decode(w.encode({":a/b": [1.5, "x", b"\x00"]}))
        {':a/b': [1.5, 'x', b'\x00']}
        """
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self._decode_all(<const unsigned char*>view.buf, 0, view.len)
        finally:
            PyBuffer_Release(&view)

    def transact_payload(self, str db, tx_id, db_id, tx_data, bint fresh=False):
        r"""A TRANSACT_BIN payload with ``tx_data`` in binary, or ``None`` when it has no
        binary form (then send ``transact_payload_edn`` with its EDN text). ``fresh``: the
        caller made ``tx_id`` for this request (flag ``FRESH_TX_ID``).

        >>> TxWire(tuple, str).transact_payload("db", None, None, [])
        b'\x01\x00\x02db\x0e\x00'
        """
        cdef _Out out = _Out(256)
        self._header(out, db, tx_id, db_id, FRESH_TX_ID if fresh else 0)
        if self._value(out, tx_data, 0) != DONE:
            return None
        return out.result()

    def transact_payload_edn(self, str db, tx_id, db_id, str text, bint fresh=False):
        r"""A TRANSACT_BIN payload carrying tx-data as EDN text (flag ``EDN``).

        >>> w = TxWire(tuple, str)
        >>> w.decode_transact(w.transact_payload_edn("db", None, None, "[]"))
        ('db', None, None, '[]', 1)
        """
        cdef _Out out = _Out(64)
        cdef Py_ssize_t n
        cdef const char* s = _utf8_of(text, &n)
        if s == NULL:
            PyErr_Clear()
            raise ValueError("tx-data text is not valid Unicode (a lone surrogate?)")
        self._header(out, db, tx_id, db_id, EDN | (FRESH_TX_ID if fresh else 0))
        memcpy(out.room(n), s, n)
        out.n += n
        return out.result()

    cdef int _header(self, _Out out, str db, tx_id, db_id, int flags) except -1:
        cdef bytes raw
        if tx_id is not None:
            flags |= HAS_TX_ID
        else:
            flags &= ~FRESH_TX_ID
        if db_id is not None:
            flags |= HAS_DB_ID
        out.byte(FORMAT_VERSION)
        out.byte(flags)
        out.text(db, "database name")
        if tx_id is not None:
            if type(tx_id) is not _UUID:
                raise TypeError(f"tx_id must be a uuid.UUID, got {type(tx_id).__name__}")
            raw = (<object>tx_id).int.to_bytes(16, "big")
            memcpy(out.room(16), PyBytes_AS_STRING(raw), 16)
            out.n += 16
        if db_id is not None:
            out.text(db_id, "db id")
        return 0

    cdef int _named(self, _Out out, object x, unsigned char tag) except -1:
        # A keyword or symbol: only one EDN can print (so both paths refuse the same names).
        if PyDict_GetItem(_named_ok, x) == NULL:
            try:
                self.check_name(x)
            except ValueError:
                return NO_BINARY
            if len(_named_ok) >= NAMED_CACHE_MAX:
                _named_ok.clear()
            _named_ok[x] = True
        return out.tagged_text(tag, x.full_name)

    cdef int _name(self, _Out out, object x) except -1:
        # A keyword, or a string in map-key position: through the name table.
        cdef PyObject* idx = PyDict_GetItem(out.names, x)
        if idx != NULL:
            out.tagged_varint(T_REF, <uint64_t>(<object>idx))
            return DONE
        if type(x) is str:
            if out.tagged_text(T_STR, x) != DONE:
                return NO_BINARY
        elif self._named(out, x, T_KEYWORD) != DONE:
            return NO_BINARY
        out.names[x] = out.nnames
        out.nnames += 1
        return DONE

    cdef int _value(self, _Out out, object x, int depth) except -1:
        cdef object t = type(x)
        cdef Py_ssize_t n, pos
        cdef int overflow = 0
        cdef long long v
        cdef PyObject* k
        cdef PyObject* val
        cdef bytes raw
        cdef double d
        cdef uint64_t u
        cdef unsigned char* o
        if t is str:
            return out.tagged_text(T_STR, x)
        if t is int:
            v = _as_ll(x, &overflow)
            if not overflow:
                out.tagged_varint(T_INT, (<uint64_t>v << 1) ^ <uint64_t>(v >> 63))
                return DONE
            n = x.bit_length()
            if n > BIGINT_MAX_BITS:
                return NO_BINARY
            raw = x.to_bytes(n // 8 + 1, "big", signed=True)
            out.raw(T_BIGINT, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
            return DONE
        if t is dict:
            if depth >= MAX_DEPTH:
                return NO_BINARY
            out.tagged_varint(T_MAP, <uint64_t>len(<dict>x))
            pos = 0
            while PyDict_Next(x, &pos, &k, &val):
                if type(<object>k) is str or type(<object>k) is _KEYWORD:
                    if self._name(out, <object>k) != DONE:
                        return NO_BINARY
                elif self._value(out, <object>k, depth + 1) != DONE:
                    return NO_BINARY
                if self._value(out, <object>val, depth + 1) != DONE:
                    return NO_BINARY
            return DONE
        if t is list or t is tuple or t is self.form:
            if depth >= MAX_DEPTH:
                return NO_BINARY
            out.tagged_varint(T_VECTOR if t is list else T_LIST, <uint64_t>len(x))
            for item in x:
                if self._value(out, item, depth + 1) != DONE:
                    return NO_BINARY
            return DONE
        if t is _KEYWORD:
            return self._name(out, x)
        if x is None:
            return out.byte(T_NIL)
        if x is True:
            return out.byte(T_TRUE)
        if x is False:
            return out.byte(T_FALSE)
        if t is float:
            d = PyFloat_AS_DOUBLE(x)
            memcpy(&u, &d, 8)
            o = out.room(9)
            o[0] = T_FLOAT
            for n in range(8):
                o[1 + n] = <unsigned char>(u >> (8 * n))
            out.n += 9
            return DONE
        if t is _UUID:
            raw = x.int.to_bytes(16, "big")
            o = out.room(17)
            o[0] = T_UUID
            memcpy(o + 1, PyBytes_AS_STRING(raw), 16)
            out.n += 17
            return DONE
        if PyDateTime_CheckExact(x):
            return self._inst(out, x)
        if t is _SYMBOL:
            return self._named(out, x, T_SYMBOL)
        if t is _DECIMAL:
            if not x.is_finite():
                return NO_BINARY
            raw = str(x).encode("ascii")
            out.raw(T_DECIMAL, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
            return DONE
        if PyBytes_CheckExact(x):
            out.raw(T_BYTES, PyBytes_AS_STRING(x), PyBytes_GET_SIZE(x))
            return DONE
        if PyByteArray_CheckExact(x):
            out.raw(T_BYTES, PyByteArray_AS_STRING(x), PyByteArray_GET_SIZE(x))
            return DONE
        if t is _URI:
            value = x.value
            if type(value) is not str:
                return NO_BINARY
            return out.tagged_text(T_URI, value)
        if t is set or t is frozenset:
            if depth >= MAX_DEPTH:
                return NO_BINARY
            out.tagged_varint(T_SET, <uint64_t>len(x))
            for item in x:
                if self._value(out, item, depth + 1) != DONE:
                    return NO_BINARY
            return DONE
        return NO_BINARY

    cdef int _inst(self, _Out out, object x) except -1:
        # EDN's path: a naive datetime is sent as UTC (same fields); an offset of whole
        # minutes is kept; any other offset EDN writes in UTC: leave that to EDN.
        cdef int minutes = 0
        cdef unsigned char* o
        tz = datetime_tzinfo(x)
        if tz is not None and tz is not _UTC:
            off = x.utcoffset()
            if off is not None:
                if timedelta_microseconds(off) or timedelta_seconds(off) % 60:
                    return NO_BINARY
                minutes = timedelta_days(off) * 1440 + timedelta_seconds(off) // 60
        o = out.room(1 + INST_BYTES)
        o[0] = T_INST
        put_u16(o + 1, datetime_year(x))
        o[3] = datetime_month(x)
        o[4] = datetime_day(x)
        o[5] = datetime_hour(x)
        o[6] = datetime_minute(x)
        o[7] = datetime_second(x)
        put_u32(o + 8, datetime_microsecond(x))
        put_u16(o + 12, <unsigned int>(<unsigned short>(<short>minutes)))
        out.n += 1 + INST_BYTES
        return DONE

    # --- decoding -------------------------------------------------------------------

    def decode_transact(self, payload):
        r"""``(db, tx_id or None, db_id or None, tx_data, flags)`` of a TRANSACT_BIN payload,
        ``flags`` its flags byte: ``tx_data`` is the decoded value, or the EDN text when
        ``flags & EDN``. A malformed payload raises ``ProtocolError`` naming the byte offset
        (``data["reason"] == "txwire"``).

        >>> TxWire(tuple, str).decode_transact(b"\x09")
        Traceback (most recent call last):
          ...
        fastdatomic.errors.ProtocolError: malformed TRANSACT_BIN payload at byte 0: format version 9 is not supported (this side reads 1)
        """
        cdef Py_buffer view
        cdef _In r = _In.__new__(_In)
        cdef int flags
        cdef const unsigned char* p
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            r.base = <const unsigned char*>view.buf
            r.end = view.len
            r.pos = 0
            r.names = []
            r.form = self.form
            version = r.take(1)[0]
            if version != FORMAT_VERSION:
                r.pos = 0
                r.fail(f"format version {version} is not supported (this side reads {FORMAT_VERSION})")
            flags = r.take(1)[0]
            if flags & ~(EDN | HAS_TX_ID | HAS_DB_ID | FRESH_TX_ID) or \
                    (flags & FRESH_TX_ID and not flags & HAS_TX_ID):
                r.pos = 1
                r.fail(f"unknown flags 0x{flags:02x}")
            db = r.text()
            tx_id = db_id = None
            if flags & HAS_TX_ID:
                p = r.take(16)
                tx_id = _UUID.__new__(_UUID)
                _obj_setattr(tx_id, "int", _from_bytes(PyBytes_FromStringAndSize(<const char*>p, 16), "big"))
                _obj_setattr(tx_id, "is_safe", _SAFE_UNKNOWN)
            if flags & HAS_DB_ID:
                db_id = r.text()
            if flags & EDN:
                try:
                    text = PyUnicode_DecodeUTF8(<const char*>r.base + r.pos, r.end - r.pos, NULL)
                except UnicodeDecodeError:
                    r.fail("EDN text is not UTF-8")
                return db, tx_id, db_id, text, flags
            return db, tx_id, db_id, self._decode_all(r.base, r.pos, r.end), flags
        finally:
            PyBuffer_Release(&view)

    cdef object _decode_all(self, const unsigned char* base, Py_ssize_t pos, Py_ssize_t end):
        cdef _In r = _In.__new__(_In)
        r.base = base
        r.pos = pos
        r.end = end
        r.names = []
        r.form = self.form
        value = _value(r, 0, False)
        if r.pos != r.end:
            r.fail(f"{r.end - r.pos} bytes after the tx-data")
        return value
