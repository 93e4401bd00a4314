from libc.stdint cimport uint32_t, int64_t, uint64_t
from cpython.ref cimport PyObject
from libc.string cimport memcmp


cdef class KeyBlock:
    """An immutable sorted run of keys: one contiguous buffer plus n+1 offsets."""
    cdef readonly Py_ssize_t n
    cdef bytes _data
    cdef bytes _offs
    cdef const unsigned char* base
    cdef const uint32_t* offs
    # Decoded string values by key position (NULL until a scan decodes one), so a
    # query repeated over the same segment reuses the same str objects (no decode, the
    # hash already computed). A C array of owned references, not a list: strings hold
    # no references, so the garbage collector has nothing to look for in it.
    # ``vals_bytes`` (about what they take) stays within 3 x the key bytes; the
    # segment cache charges it against object-cache-max.
    cdef PyObject** vals
    cdef readonly Py_ssize_t vals_bytes


cdef class DirNode:
    """A decoded directory segment: children's first keys, ids and datom counts."""
    cdef readonly int level
    cdef readonly KeyBlock keys
    cdef bytes _ids
    cdef bytes _counts
    cdef const int64_t* counts_p


cdef KeyBlock make_block(bytes data, bytes offs, Py_ssize_t n)


cdef inline int cmp_bytes(const unsigned char* a, Py_ssize_t na,
                          const unsigned char* b, Py_ssize_t nb) noexcept nogil:
    # Unsigned lexicographic order, shorter prefix first: the order of Python bytes.
    cdef Py_ssize_t m = na if na < nb else nb
    cdef int c = memcmp(a, b, m) if m > 0 else 0
    if c != 0:
        return c
    return (na > nb) - (na < nb)


cdef inline uint64_t be64(const unsigned char* p) noexcept nogil:
    return ((<uint64_t>p[0] << 56) | (<uint64_t>p[1] << 48) | (<uint64_t>p[2] << 40) |
            (<uint64_t>p[3] << 32) | (<uint64_t>p[4] << 24) | (<uint64_t>p[5] << 16) |
            (<uint64_t>p[6] << 8) | <uint64_t>p[7])


cdef inline int cmp_keys(const unsigned char* a, Py_ssize_t na,
                         const unsigned char* b, Py_ssize_t nb) noexcept nogil:
    # cmp_bytes (same order, any bytes) for index keys: keys and seek prefixes start with
    # 8-byte words (ids, or a ref value) that compare as integers before memcmp runs.
    cdef uint64_t x, y
    if na < 8 or nb < 8:
        return cmp_bytes(a, na, b, nb)
    x = be64(a)
    y = be64(b)
    if x != y:
        return -1 if x < y else 1
    if na < 16 or nb < 16:
        return cmp_bytes(a + 8, na - 8, b + 8, nb - 8)
    x = be64(a + 8)
    y = be64(b + 8)
    if x != y:
        return -1 if x < y else 1
    return cmp_bytes(a + 16, na - 16, b + 16, nb - 16)


cdef Py_ssize_t lower_bound(const unsigned char* base, const uint32_t* offs,
                            Py_ssize_t lo, Py_ssize_t hi,
                            const unsigned char* k, Py_ssize_t kn) noexcept nogil

cdef Py_ssize_t upper_bound(const unsigned char* base, const uint32_t* offs,
                            Py_ssize_t lo, Py_ssize_t hi,
                            const unsigned char* k, Py_ssize_t kn) noexcept nogil
