# cython: language_level=3
"""The datom: ``(e, a, v, tx, added)``, immutable, tuple-like.

>>> d = Datom(17592186044417, 10, "Ann", 13194139534313, True)
>>> e, a, v, tx, added = d
>>> d.v, d[2], len(d)
('Ann', 'Ann', 5)
"""

from cpython.object cimport PyObject

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void* op)


cdef class Datom:
    """One fact: entity ``e`` has value ``v`` for attribute ``a``, asserted
    (``added``) or retracted in transaction ``tx``.

    >>> Datom(1, 2, 3, 4, False).added
    False
    """

    def __init__(self, long long e, long long a, object v, long long tx, bint added=True):
        self.e = e
        self.a = a
        self.v = v
        self.tx = tx
        self.added = added

    def __len__(self):
        return 5

    def __getitem__(self, i):
        if i < 0:
            i += 5
        if not 0 <= i < 5:
            raise IndexError("datom index out of range")
        return datom_field(self, i)

    def __iter__(self):
        return iter((self.e, self.a, self.v, self.tx, self.added))

    def as_tuple(self):
        """The datom as a plain tuple ``(e, a, v, tx, added)``."""
        return (self.e, self.a, self.v, self.tx, self.added)

    def __richcmp__(self, other, int op):
        if not isinstance(other, Datom):
            if op == 2:
                return False
            if op == 3:
                return True
            return NotImplemented
        cdef Datom o = <Datom>other
        if op == 2:
            return (self.e == o.e and self.a == o.a and self.tx == o.tx
                    and self.added == o.added and self.v == o.v)
        if op == 3:
            return not (self.e == o.e and self.a == o.a and self.tx == o.tx
                        and self.added == o.added and self.v == o.v)
        return NotImplemented

    def __hash__(self):
        return hash((self.e, self.a, self.v, self.tx, self.added))

    def __reduce__(self):
        return (Datom, (self.e, self.a, self.v, self.tx, self.added))

    def __repr__(self):
        return f"#datom [{self.e} {self.a} {self.v!r} {self.tx} {'true' if self.added else 'false'}]"


cdef Datom make_datom(long long e, long long a, object v, long long tx, bint added):
    # Skips __init__ argument parsing: this is the decode hot path.
    cdef Datom d = Datom.__new__(Datom)
    d.e = e
    d.a = a
    d.v = v
    d.tx = tx
    d.added = added
    # A datom can never be part of a reference cycle (nothing it holds can hold it),
    # so the cyclic GC need not see it: untracked, materialising millions of datoms
    # stays linear instead of triggering full collections over an ever-growing heap.
    PyObject_GC_UnTrack(<void*>d)
    return d
