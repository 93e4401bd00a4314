# cython: language_level=3
"""A byte-wise LSD radix sort of 64-bit keys, for sorting entity ids (idset.pyx, join.pyx).

Entity ids agree in their high bytes, so the passes over bytes every key shares are
skipped: a few linear passes instead of n log n comparisons. Keys sort as unsigned; flip
the sign bit of signed ids first. ``idx`` (may be NULL) is permuted along with the keys.
"""

from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.stdint cimport uint64_t
from libc.string cimport memset, memcpy


cdef inline int radix_sort(uint64_t* keys, Py_ssize_t* idx, Py_ssize_t n) except -1:
    cdef uint64_t* k2
    cdef Py_ssize_t* i2 = NULL
    cdef uint64_t* ka = keys
    cdef uint64_t* kb
    cdef Py_ssize_t* ia = idx
    cdef Py_ssize_t* ib = NULL
    cdef uint64_t* kt
    cdef Py_ssize_t* it
    cdef Py_ssize_t count[256]
    cdef Py_ssize_t i, total, c, dst
    cdef int shift, byte
    if n < 2:
        return 0
    k2 = <uint64_t*>PyMem_Malloc(n * sizeof(uint64_t))
    if idx != NULL:
        i2 = <Py_ssize_t*>PyMem_Malloc(n * sizeof(Py_ssize_t))
    if k2 == NULL or (idx != NULL and i2 == NULL):
        PyMem_Free(k2)
        PyMem_Free(i2)
        raise MemoryError()
    kb = k2
    ib = i2
    for shift in range(0, 64, 8):
        memset(count, 0, sizeof(count))
        for i in range(n):
            count[(ka[i] >> shift) & 0xFF] += 1
        if count[(ka[0] >> shift) & 0xFF] == n:
            continue                  # every key has this byte: nothing to reorder
        total = 0
        for byte in range(256):
            c = count[byte]
            count[byte] = total
            total += c
        for i in range(n):
            byte = (ka[i] >> shift) & 0xFF
            dst = count[byte]
            count[byte] += 1
            kb[dst] = ka[i]
            if ia != NULL:
                ib[dst] = ia[i]
        kt = ka
        ka = kb
        kb = kt
        it = ia
        ia = ib
        ib = it
    if ka != keys:
        memcpy(keys, ka, n * sizeof(uint64_t))
        if idx != NULL:
            memcpy(idx, ia, n * sizeof(Py_ssize_t))
    PyMem_Free(k2)
    PyMem_Free(i2)
    return 0
