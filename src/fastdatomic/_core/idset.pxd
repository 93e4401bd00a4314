# cython: language_level=3
from libc.stdint cimport int64_t, uint64_t, INT64_MIN


cdef class IdSet:
    """A set of 64-bit entity ids (open addressing) that a scan tests in C."""
    cdef int64_t* slots
    cdef uint64_t mask
    cdef readonly Py_ssize_t n
    cdef bint has_empty_marker     # INT64_MIN itself is a member
    cdef int64_t* sorted_ids       # the members ascending, built on first use
    cdef Py_ssize_t sorted_n

    cdef int _add(self, int64_t x) except -1
    cdef int ensure_sorted(self) except -1


cdef inline bint as_entity_id(object v, int64_t* out):
    # ``v`` as an entity id: an ``int`` that fits 64 bits. False for anything else, and the
    # caller takes its general path (a relation column may hold any value).
    if type(v) is not int:
        return False
    try:
        out[0] = <int64_t>v
    except OverflowError:
        return False
    return True


cdef inline uint64_t id_hash(int64_t x) noexcept nogil:
    # Fibonacci hashing; entity ids are dense in their low bits, the multiply spreads them.
    return (<uint64_t>x) * <uint64_t>0x9E3779B97F4A7C15ULL


cdef inline bint idset_has(IdSet s, int64_t x) noexcept nogil:
    cdef uint64_t i
    cdef int64_t y
    if x == INT64_MIN:
        return s.has_empty_marker
    i = (id_hash(x) >> 20) & s.mask
    while True:
        y = s.slots[i]
        if y == x:
            return True
        if y == INT64_MIN:
            return False
        i = (i + 1) & s.mask


cdef class IdList:
    """A growable array of entity ids (a scan collects into it; ``sorted_rows`` ends it)."""
    cdef int64_t* ids
    cdef Py_ssize_t n
    cdef Py_ssize_t cap

    cdef int push(self, int64_t x) except -1
