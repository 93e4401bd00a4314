# cython: language_level=3
"""Unsigned LEB128 varints for segment and log encodings (inline, no GIL)."""

from libc.stdint cimport uint64_t


cdef inline Py_ssize_t put_varint(unsigned char* p, uint64_t x) noexcept nogil:
    cdef Py_ssize_t i = 0
    while x >= 0x80:
        p[i] = <unsigned char>((x & 0x7F) | 0x80)
        x >>= 7
        i += 1
    p[i] = <unsigned char>x
    return i + 1


cdef inline Py_ssize_t get_varint(const unsigned char* p, Py_ssize_t left, uint64_t* out) noexcept nogil:
    # Returns bytes consumed, or -1 when the varint is truncated or longer than 10 bytes.
    cdef uint64_t x = 0
    cdef int shift = 0
    cdef Py_ssize_t i = 0
    while i < left and i < 10:
        x |= (<uint64_t>(p[i] & 0x7F)) << shift
        if not (p[i] & 0x80):
            out[0] = x
            return i + 1
        shift += 7
        i += 1
    return -1
