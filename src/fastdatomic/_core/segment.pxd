from libc.stdint cimport uint32_t, int64_t, uint64_t
from libc.string cimport memcmp


cdef class KeyBlock:
    """An immutable sorted run of keys: one contiguous buffer plus n+1 offsets."""
    cdef readonly Py_ssize_t n
    cdef bytes _data
    cdef bytes _offs
    cdef const unsigned char* base
    cdef const uint32_t* offs


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


cdef Py_ssize_t lower_bound(const unsigned char* base, const uint32_t* offs,
                            Py_ssize_t lo, Py_ssize_t hi,
                            const unsigned char* k, Py_ssize_t kn) noexcept nogil

cdef Py_ssize_t upper_bound(const unsigned char* base, const uint32_t* offs,
                            Py_ssize_t lo, Py_ssize_t hi,
                            const unsigned char* k, Py_ssize_t kn) noexcept nogil
