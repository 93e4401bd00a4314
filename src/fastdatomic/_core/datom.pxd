cdef class Datom:
    cdef readonly long long e
    cdef readonly long long a
    cdef readonly object v
    cdef readonly long long tx
    cdef readonly bint added


cdef Datom make_datom(long long e, long long a, object v, long long tx, bint added)


cdef inline object datom_field(Datom d, int i):
    # Field i of (e, a, v, tx, added); the caller has checked 0 <= i < 5.
    if i == 0:
        return d.e
    if i == 1:
        return d.a
    if i == 2:
        return d.v
    if i == 3:
        return d.tx
    return d.added
