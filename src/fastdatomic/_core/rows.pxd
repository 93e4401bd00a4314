# cython: language_level=3
"""Helpers for the row tuples the query kernels build (scan.pyx, join.pyx).

A query builds tens of thousands of result tuples. Tuples are tracked by Python's
cyclic garbage collector until a collection finds that they hold only atomic values
(ints, strings, ...), and the tuples that survive long enough feed the full
collections that walk the whole heap. ``untrack_atomic`` does at birth what the
collector would do later (CPython's own rule, ``_PyTuple_MaybeUntrack``): a tuple none
of whose items is tracked can never be part of a reference cycle.
"""

from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_SET_ITEM

cdef extern from "Python.h":
    int PyObject_GC_IsTracked(object o)
    void PyObject_GC_UnTrack(void* o)
    void PyObject_GC_Track(void* o)
    Py_ssize_t PyTuple_GET_SIZE(object p)
    void* PyTuple_GET_ITEM(object p, Py_ssize_t pos)


cdef inline tuple untrack_atomic(tuple t):
    cdef Py_ssize_t i
    for i in range(PyTuple_GET_SIZE(t)):
        if PyObject_GC_IsTracked(<object>PyTuple_GET_ITEM(t, i)):
            return t
    PyObject_GC_UnTrack(<void*>t)
    return t


cdef inline Py_ssize_t put_items(tuple t, Py_ssize_t at, tuple src):
    # src's items into the new tuple t from position ``at`` (new references); returns
    # the position after them
    cdef Py_ssize_t i, n = PyTuple_GET_SIZE(src)
    cdef object x
    for i in range(n):
        x = <object>PyTuple_GET_ITEM(src, i)
        Py_INCREF(x)
        PyTuple_SET_ITEM(t, at + i, x)
    return at + n
