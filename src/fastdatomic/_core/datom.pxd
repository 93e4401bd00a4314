cdef class Datom:
    cdef readonly long long e
    cdef readonly long long a
    cdef readonly object v
    cdef readonly long long tx
    cdef readonly bint added


cdef Datom make_datom(long long e, long long a, object v, long long tx, bint added)
