# cython: language_level=3
"""Helpers for the row tuples the query kernels build (scan.pyx, join.pyx).

A query builds tens of thousands of result tuples. Tuples are tracked by Python's
cyclic garbage collector until a collection finds that they hold only atomic values
(ints, strings, ...), and the tuples that survive long enough feed the full
collections that walk the whole heap. ``untrack_atomic`` does at birth what the
collector would do later (CPython's own rule, ``_PyTuple_MaybeUntrack``): a tuple none
of whose items is tracked can never be part of a reference cycle.
"""

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
