# cython: language_level=3
"""C-level interface of the order-preserving key codec (see codec.pyx).

Other Cython modules (segments, scans) ``cimport`` from here to read keys
without Python overhead::

    from fastdatomic._core.codec cimport decode_key_ptr, key_tx, read_id, INDEX_EAVT
"""

from libc.stdint cimport uint64_t
from fastdatomic._core.datom cimport Datom


# Value types (Datomic's :db.type/* set). cpdef: also module-level Python ints.
cpdef enum:
    TYPE_BOOLEAN = 1
    TYPE_LONG = 2
    TYPE_DOUBLE = 3
    TYPE_FLOAT = 4
    TYPE_BIGINT = 5
    TYPE_BIGDEC = 6
    TYPE_INSTANT = 7
    TYPE_STRING = 8
    TYPE_KEYWORD = 9
    TYPE_SYMBOL = 10
    TYPE_UUID = 11
    TYPE_URI = 12
    TYPE_BYTES = 13
    TYPE_REF = 14
    TYPE_TUPLE = 15

# Index codes.
cpdef enum:
    INDEX_EAVT = 0
    INDEX_AEVT = 1
    INDEX_AVET = 2
    INDEX_VAET = 3

# Tag bytes of encoded values; cross-type order is tag order.
cpdef enum:
    TAG_END = 0x01      # tuple end marker (inside tuples only)
    TAG_NIL = 0x02      # None (inside tuples only)
    TAG_BOOLEAN = 0x10
    TAG_LONG = 0x20     # long and ref
    TAG_BIGINT = 0x21
    TAG_DOUBLE = 0x30
    TAG_FLOAT = 0x31
    TAG_BIGDEC = 0x38
    TAG_INSTANT = 0x40
    TAG_STRING = 0x50
    TAG_KEYWORD = 0x51
    TAG_SYMBOL = 0x52
    TAG_UUID = 0x60
    TAG_URI = 0x61
    TAG_BYTES = 0x70
    TAG_TUPLE = 0x80

# Every key ends with tx (8 bytes) + added (1 byte).
cdef enum:
    KEY_SUFFIX = 9
    ID_SIZE = 8


cdef inline uint64_t get_u64(const unsigned char* p) noexcept nogil:
    """8 bytes big-endian (no bounds check)."""
    return ((<uint64_t>p[0] << 56) | (<uint64_t>p[1] << 48) | (<uint64_t>p[2] << 40) |
            (<uint64_t>p[3] << 32) | (<uint64_t>p[4] << 24) | (<uint64_t>p[5] << 16) |
            (<uint64_t>p[6] << 8) | <uint64_t>p[7])


cdef inline void put_u64(unsigned char* p, uint64_t u) noexcept nogil:
    """Write ``u`` as 8 bytes big-endian (no bounds check)."""
    p[0] = <unsigned char>(u >> 56)
    p[1] = <unsigned char>(u >> 48)
    p[2] = <unsigned char>(u >> 40)
    p[3] = <unsigned char>(u >> 32)
    p[4] = <unsigned char>(u >> 24)
    p[5] = <unsigned char>(u >> 16)
    p[6] = <unsigned char>(u >> 8)
    p[7] = <unsigned char>u


cdef inline long long read_id(const unsigned char* p) noexcept nogil:
    """Read an 8-byte big-endian id with the sign bit flipped (no bounds check)."""
    return <long long>(get_u64(p) ^ (<uint64_t>1 << 63))


cdef inline void write_id(unsigned char* p, long long x) noexcept nogil:
    """Write ``x`` as 8 bytes big-endian with the sign bit flipped (no bounds check)."""
    put_u64(p, (<uint64_t>x) ^ (<uint64_t>1 << 63))


cdef inline long long key_tx(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """The tx of a key of length ``n`` (caller guarantees n >= 9)."""
    return read_id(p + n - KEY_SUFFIX)


cdef inline bint key_added(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """The added flag of a key of length ``n`` (caller guarantees n >= 1)."""
    return p[n - 1] != 0


# Decode one tagged value from p[0:n]; *consumed receives its encoded length.
cdef object decode_value_ptr(const unsigned char* p, Py_ssize_t n, Py_ssize_t* consumed)

# Encoded length of the tagged value at p[0:n] without building it.
cdef Py_ssize_t value_size_ptr(const unsigned char* p, Py_ssize_t n) except -1

# Decode a full index key p[0:n] into a Datom (bounds-checked, raises InvalidValueError).
cdef Datom decode_key_ptr(int index, const unsigned char* p, Py_ssize_t n)

# Encode a full index key (same as the Python encode_key, callable without arg parsing).
cdef bytes encode_key_c(int index, long long e, long long a, int vtype, object v,
                        long long tx, bint added)

cdef object utc_from_us(long long us)
