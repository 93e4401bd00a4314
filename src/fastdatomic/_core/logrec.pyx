# cython: language_level=3
"""Log records and index-key derivation.

A transaction's datoms are encoded once, as EAVT keys; the AEVT, AVET and VAET
keys are byte shuffles of it (every key ends in tx + added, ids are 8 bytes):

    EAVT  e a v T      AEVT  a e v T      AVET  a v e T      VAET  v a e T

A log record holds one transaction (or one group-commit batch member):
``b"T" ver varint:t varint:next_n varint:n`` then per datom ``u8 flags, varint len, EAVT key``,
where flags say which optional indexes hold it (1 = AVET, 2 = VAET).

>>> from fastdatomic._core.codec import encode_key, TYPE_REF
>>> k = encode_key(0, 1, 2, TYPE_REF, 3, 4, True)
>>> rec = encode_log(7, 1000, [k], [FLAG_VAET])
>>> decode_log(rec) == (7, 1000, [k], [FLAG_VAET])
True
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcpy
from libc.stdint cimport uint64_t

from fastdatomic._core.varint cimport put_varint
from fastdatomic._core.codec cimport encode_key_c, read_id
from fastdatomic.errors import StorageCorruptError

cdef enum:
    F_AVET = 1
    F_VAET = 2

FLAG_AVET = F_AVET
FLAG_VAET = F_VAET
LOG_VERSION = 1


cdef inline bytes _aevt_of(const unsigned char* p, Py_ssize_t n):
    # the AEVT key of the EAVT key p[0:n]: a e v tx added
    cdef bytes d = PyBytes_FromStringAndSize(NULL, n)
    cdef unsigned char* q = <unsigned char*>PyBytes_AS_STRING(d)
    memcpy(q, p + 8, 8)
    memcpy(q + 8, p, 8)
    memcpy(q + 16, p + 16, n - 16)
    return d


cdef inline bytes _avet_of(const unsigned char* p, Py_ssize_t n):
    # a v e tx added
    cdef Py_ssize_t vlen = n - 16 - 9
    cdef bytes d = PyBytes_FromStringAndSize(NULL, n)
    cdef unsigned char* q = <unsigned char*>PyBytes_AS_STRING(d)
    memcpy(q, p + 8, 8)
    memcpy(q + 8, p + 16, vlen)
    memcpy(q + 8 + vlen, p, 8)
    memcpy(q + 16 + vlen, p + n - 9, 9)
    return d


cdef inline bytes _vaet_of(const unsigned char* p, Py_ssize_t n):
    # v a e tx added
    cdef Py_ssize_t vlen = n - 16 - 9
    cdef bytes d = PyBytes_FromStringAndSize(NULL, n)
    cdef unsigned char* q = <unsigned char*>PyBytes_AS_STRING(d)
    memcpy(q, p + 16, vlen)
    memcpy(q + vlen, p + 8, 8)
    memcpy(q + vlen + 8, p, 8)
    memcpy(q + vlen + 16, p + n - 9, 9)
    return d


cpdef tuple derive_keys(bytes eavt, int flags):
    """``(aevt, avet_or_None, vaet_or_None)`` from an EAVT key.

    >>> from fastdatomic._core.codec import encode_key, TYPE_LONG, decode_key
    >>> a, av, va = derive_keys(encode_key(0, 5, 6, TYPE_LONG, 7, 8, True), FLAG_AVET)
    >>> tuple(decode_key(2, av)) == (5, 6, 7, 8, True), va is None
    (True, True)
    """
    cdef Py_ssize_t n = PyBytes_GET_SIZE(eavt)
    if n < 16 + 1 + 9:
        raise ValueError(f"EAVT key of {n} bytes is too short")
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(eavt)
    return (_aevt_of(p, n), _avet_of(p, n) if flags & F_AVET else None,
            _vaet_of(p, n) if flags & F_VAET else None)


cdef uint64_t read_varint(const unsigned char* p, Py_ssize_t size, Py_ssize_t* pos) except? 0:
    cdef uint64_t x = 0
    cdef int shift = 0
    while True:
        if pos[0] >= size or shift > 63:
            raise StorageCorruptError(f"log record truncated at byte {pos[0]}")
        x |= (<uint64_t>(p[pos[0]] & 0x7F)) << shift
        pos[0] += 1
        if not (p[pos[0] - 1] & 0x80):
            return x
        shift += 7


def encode_log(uint64_t t, uint64_t next_n, list keys, list flags):
    """Encode one transaction's log record from its EAVT keys and index flags."""
    cdef Py_ssize_t n = len(keys), i, total = 32, w, ln
    for k in keys:
        total += PyBytes_GET_SIZE(k) + 11
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef unsigned char* q = <unsigned char*>PyBytes_AS_STRING(out)
    q[0] = b'T'
    q[1] = LOG_VERSION
    w = 2
    w += put_varint(q + w, t)
    w += put_varint(q + w, next_n)
    w += put_varint(q + w, n)
    for i in range(n):
        k = <bytes>keys[i]
        ln = PyBytes_GET_SIZE(k)
        q[w] = <unsigned char>(<int>flags[i])
        w += 1
        w += put_varint(q + w, ln)
        memcpy(q + w, PyBytes_AS_STRING(k), ln)
        w += ln
    return out[:w]


def decode_log(bytes rec):
    """``(t, next_n, eavt_keys, flags)`` from a log record; corrupt bytes raise ``StorageCorruptError``."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(rec)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(rec), pos = 2, i, ln
    if size < 2 or p[0] != b'T':
        raise StorageCorruptError("not a log record")
    if p[1] != LOG_VERSION:
        raise StorageCorruptError(f"log record version {p[1]} is not supported")
    t = read_varint(p, size, &pos)
    next_n = read_varint(p, size, &pos)
    cdef Py_ssize_t n = read_varint(p, size, &pos)
    cdef list keys = []
    cdef list flags = []
    for i in range(n):
        if pos >= size:
            raise StorageCorruptError(f"log record of t={t} truncated at datom {i}")
        flags.append(p[pos])
        pos += 1
        ln = read_varint(p, size, &pos)
        if ln > size - pos:
            raise StorageCorruptError(f"log record of t={t} truncated at datom {i}")
        keys.append(PyBytes_FromStringAndSize(<const char*>(p + pos), ln))
        pos += ln
    if pos != size:
        raise StorageCorruptError(f"log record of t={t} has {size - pos} trailing bytes")
    return (t, next_n, keys, flags)


cdef class KeySink:
    """Index keys of one transaction, in datom order (see logrec.pxd).

    >>> from fastdatomic._core.codec import TYPE_LONG
    >>> s = KeySink(); s.append(1, 2, TYPE_LONG, 3, 4, True, FLAG_AVET)
    >>> [len(x) for x in (s.eavt, s.aevt, s.avet, s.vaet)], s.run_nbytes()
    ([1, 1, 1, 0], 126)
    """

    def __cinit__(self):
        self.eavt = []
        self.aevt = []
        self.avet = []
        self.vaet = []
        self.flags = []

    cdef int add(self, long long e, long long a, int vtype, object v, long long tx,
                 bint added, int flags) except -1:
        return self.add_key(encode_key_c(0, e, a, vtype, v, tx, added), flags)

    cdef int add_key(self, bytes k, int flags) except -1:
        cdef Py_ssize_t n = PyBytes_GET_SIZE(k)
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(k)
        if n < 16 + 1 + 9:
            raise ValueError(f"EAVT key of {n} bytes is too short")
        self.eavt.append(k)
        self.aevt.append(_aevt_of(p, n))
        self.flags.append(flags)
        self.nbytes_eavt += n
        self.nbytes_aevt += n
        if flags & F_AVET:
            self.avet.append(_avet_of(p, n))
            self.nbytes_avet += n
        if flags & F_VAET:
            self.vaet.append(_vaet_of(p, n))
            self.nbytes_vaet += n
        return 0

    def append(self, long long e, long long a, int vtype, object v, long long tx, bint added,
               int flags):
        """Add one datom's keys (Python entry point of ``add``)."""
        self.add(e, a, vtype, v, tx, added, flags)

    def keys(self):
        """The four key lists, index order (what ``MemoryIndex.add`` takes)."""
        return (self.eavt, self.aevt, self.avet, self.vaet)

    def run_nbytes(self):
        """Bytes the memory index grows by: keys plus offsets of each non-empty run,
        as ``KeyBlock.nbytes`` counts them."""
        cdef Py_ssize_t total = 0
        if self.eavt:
            total += self.nbytes_eavt + 4 * (len(self.eavt) + 1)
        if self.aevt:
            total += self.nbytes_aevt + 4 * (len(self.aevt) + 1)
        if self.avet:
            total += self.nbytes_avet + 4 * (len(self.avet) + 1)
        if self.vaet:
            total += self.nbytes_vaet + 4 * (len(self.vaet) + 1)
        return total


def encode_tx(list datoms, dict vtypes, dict index_flags, frozenset schema_attrs, long long tx):
    """All index keys of one transaction's datoms ``[(e, a, v, added), ...]`` in one loop.

    Returns ``(sink, touches_schema)``: a ``KeySink`` holding the four key lists and the
    log flags. An attribute id missing from ``vtypes`` raises ``KeyError(a)``.

    >>> from fastdatomic._core.codec import TYPE_LONG
    >>> sink, touches = encode_tx([(1, 2, 3, True)], {2: TYPE_LONG}, {2: FLAG_AVET}, frozenset(), 4)
    >>> [len(x) for x in sink.keys()], sink.flags, touches
    ([1, 1, 1, 0], [1], False)
    """
    cdef KeySink sink = KeySink()
    cdef long long a
    cdef bint touches = False
    cdef tuple d
    for x in datoms:
        d = x if type(x) is tuple else tuple(x)
        a_obj = d[1]
        a = a_obj
        sink.add(d[0], a, vtypes[a_obj], d[2], tx, d[3], index_flags[a_obj])
        if not touches and a_obj in schema_attrs:
            touches = True
    return sink, touches


def sink_of_log(list eavt_keys, list flags, frozenset schema_attrs):
    """``(sink, touches_schema)`` for EAVT keys read from log records (replay): the
    ``KeySink`` holding them and their derived AEVT/AVET/VAET keys.

    >>> from fastdatomic._core.codec import encode_key, TYPE_LONG
    >>> k = encode_key(0, 1, 2, TYPE_LONG, 3, 4, True)
    >>> sink, touches = sink_of_log([k], [FLAG_AVET], frozenset({2}))
    >>> [len(x) for x in sink.keys()], touches
    ([1, 1, 1, 0], True)
    """
    cdef KeySink sink = KeySink()
    cdef Py_ssize_t i, n = len(eavt_keys)
    cdef bint touches = False
    cdef bytes k
    if len(flags) != n:
        raise ValueError(f"{n} keys but {len(flags)} flags")
    for i in range(n):
        k = eavt_keys[i]
        sink.add_key(k, flags[i])
        if not touches and read_id(<const unsigned char*>PyBytes_AS_STRING(k) + 8) in schema_attrs:
            touches = True
    return sink, touches
