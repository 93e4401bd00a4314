# cython: language_level=3
"""Relational kernels of the query engine: hash join and product over rows of tuples.

A relation is a list of equal-length tuples (one column per variable). Joining two of
them on their shared variables is where a multi-clause query spends its time, so the
loop lives here: the build side goes into a dict keyed by the join value (one column:
the value itself, several: a tuple), the probe side looks each row up, and every
output row is made in one allocation from the two input rows, with no intermediate
tuples.

>>> hash_join([(1, "a"), (2, "b")], (0,), [(2, 20), (3, 30), (2, 21)], (0,), (1,))
[(2, 'b', 20), (2, 'b', 21)]
>>> product([(1,), (2,)], [("x",)])
[(1, 'x'), (2, 'x')]
>>> semi_join([(1, "a"), (2, "b")], (0,), [(2,)], False)    # anti-join: not
[(1, 'a')]
"""

from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_New, PyList_Append
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.ref cimport PyObject, Py_INCREF
from cpython.long cimport PyLong_AsLongLong, PyLong_FromLongLong
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.stdint cimport int64_t, uint64_t
from fastdatomic._core.radix cimport radix_sort

from fastdatomic._core.rows cimport untrack_atomic, put_items

DEF CHECK_EVERY = 65536


cdef inline object _key(tuple row, tuple idx, Py_ssize_t nk):
    cdef Py_ssize_t k
    cdef tuple t
    if nk == 1:
        return <object>PyTuple_GET_ITEM(row, <Py_ssize_t>idx[0])
    t = PyTuple_New(nk)
    for k in range(nk):
        v = <object>PyTuple_GET_ITEM(row, <Py_ssize_t>idx[k])
        Py_INCREF(v)
        PyTuple_SET_ITEM(t, k, v)
    return t


cdef inline tuple _concat(tuple a, tuple b, Py_ssize_t* rest, Py_ssize_t nr):
    # a's columns, then b's columns at positions rest[0..nr)
    cdef Py_ssize_t na = PyTuple_GET_SIZE(a), i
    cdef tuple t = PyTuple_New(na + nr)
    cdef object v
    put_items(t, 0, a)
    for i in range(nr):
        v = <object>PyTuple_GET_ITEM(b, rest[i])
        Py_INCREF(v)
        PyTuple_SET_ITEM(t, na + i, v)
    return untrack_atomic(t)


def hash_join(list a_rows, tuple a_key, list b_rows, tuple b_key, tuple b_rest, check=None):
    """Rows ``a + b[b_rest]`` for every pair of rows with ``a[a_key] == b[b_key]``.

    ``a`` is the build side (pass the smaller relation); output rows follow ``b``'s
    order. ``check`` (when given) is called every 65536 probes: the query timeout.

    >>> hash_join([(1,)], (0,), [(1, "x"), (1, "y")], (0,), (1,))
    [(1, 'x'), (1, 'y')]
    """
    cdef dict table = {}
    cdef Py_ssize_t nk = len(a_key), nr = len(b_rest), i, j, m
    cdef Py_ssize_t rest[64]
    cdef PyObject* hit
    cdef list out = []
    cdef list many
    cdef tuple row, arow
    if nk != len(b_key) or nk == 0:
        raise ValueError("join keys must be non-empty and of equal length")
    if nr > 64:
        raise ValueError("at most 64 columns")
    for i in range(nr):
        rest[i] = b_rest[i]
    for row in a_rows:
        k = _key(row, a_key, nk)
        hit = PyDict_GetItem(table, k)
        if hit == NULL:
            PyDict_SetItem(table, k, row)
        elif type(<object>hit) is list:
            (<list>hit).append(row)
        else:
            PyDict_SetItem(table, k, [<object>hit, row])
    i = 0
    for row in b_rows:
        i += 1
        if check is not None and i % CHECK_EVERY == 0:
            check()
        hit = PyDict_GetItem(table, _key(row, b_key, nk))
        if hit == NULL:
            continue
        if type(<object>hit) is list:
            many = <list>hit
            m = len(many)
            for j in range(m):
                out.append(_concat(<tuple>many[j], row, rest, nr))
        else:
            out.append(_concat(<tuple>hit, row, rest, nr))
    return out


def product(list a_rows, list b_rows, check=None):
    """Every ``a + b`` (a relation product), in ``a``-major order.

    >>> product([(1,)], [(2,), (3,)])
    [(1, 2), (1, 3)]
    """
    cdef list out = []
    cdef tuple x, y
    cdef Py_ssize_t nb = len(b_rows), i = 0, j
    cdef Py_ssize_t rest[64]
    if not a_rows or not b_rows:
        return out
    nr = PyTuple_GET_SIZE(<tuple>b_rows[0])
    if nr > 64:
        raise ValueError("at most 64 columns")
    for j in range(nr):
        rest[j] = j
    for x in a_rows:
        i += nb
        if check is not None and i >= CHECK_EVERY:
            i = 0
            check()
        for y in b_rows:
            out.append(_concat(x, y, rest, nr))
    return out


def semi_join(list rows, tuple key, list other, bint keep, check=None):
    """The rows whose ``key`` columns appear (``keep``) or do not appear (``not keep``,
    an anti-join: ``not`` / ``not-join``) among the tuples of ``other``.

    >>> semi_join([(1, "a"), (2, "b"), (3, "c")], (0,), [(1,), (3,)], True)
    [(1, 'a'), (3, 'c')]
    """
    cdef Py_ssize_t nk = len(key), i = 0
    cdef set present
    cdef list out = []
    cdef tuple row, t
    if nk == 0:
        return list(rows) if (bool(other) == keep) else []
    if nk == 1:
        present = {t[0] for t in other}
    else:
        present = set(other)
    for row in rows:
        i += 1
        if check is not None and i % CHECK_EVERY == 0:
            check()
        if (_key(row, key, nk) in present) == keep:
            out.append(row)
    return out


def group_by(list rows, tuple key):
    """``{key values: [rows]}`` in first-seen order: the groups an aggregate runs over
    (one column keys by the value itself, several by a tuple, none: one group).

    >>> group_by([(1, "a"), (2, "b"), (1, "c")], (0,))
    {1: [(1, 'a'), (1, 'c')], 2: [(2, 'b')]}
    """
    cdef dict groups = {}
    cdef Py_ssize_t nk = len(key)
    cdef tuple row
    cdef PyObject* hit
    if nk == 0:
        return {(): list(rows)} if rows else {}
    for row in rows:
        k = _key(row, key, nk)
        hit = PyDict_GetItem(groups, k)
        if hit == NULL:
            PyDict_SetItem(groups, k, [row])
        else:
            (<list>hit).append(row)
    return groups


def column(list rows, Py_ssize_t i):
    """Column ``i`` of ``rows`` as a list: an aggregate's values.

    >>> column([(1, "a"), (2, "b")], 1)
    ['a', 'b']
    """
    cdef list out = []
    cdef tuple row
    for row in rows:
        out.append(row[i])
    return out


cdef inline bint _id_at(tuple row, Py_ssize_t col, int64_t* out) except -1:
    v = <object>PyTuple_GET_ITEM(row, col)
    if type(v) is not int:
        return False
    try:
        out[0] = PyLong_AsLongLong(v)
    except OverflowError:
        return False
    return True


def merge_join(list a_rows, Py_ssize_t a_col, list b_rows, Py_ssize_t b_col, tuple b_rest,
               check=None):
    """``hash_join`` on one entity column when both sides are already in ascending
    order of it (relations straight out of AEVT / EAVT scans): a walk of the two lists,
    no table. Output rows come in key order. ``None`` when a key is not an int or the
    order does not hold (the caller then hash-joins).

    >>> merge_join([(1, "a"), (3, "c")], 0, [(1, 10), (2, 20), (3, 30), (3, 31)], 0, (1,))
    [(1, 'a', 10), (3, 'c', 30), (3, 'c', 31)]
    """
    cdef Py_ssize_t na = len(a_rows), nb = len(b_rows), i = 0, j = 0, i2, j2, x, y
    cdef Py_ssize_t nr = len(b_rest), steps = 0
    cdef Py_ssize_t rest[64]
    cdef int64_t ka, kb, prev_a, prev_b, k2
    cdef list out = []
    if nr > 64:
        raise ValueError("at most 64 columns")
    for x in range(nr):
        rest[x] = b_rest[x]
    if na == 0 or nb == 0:
        return out
    if not _id_at(<tuple>a_rows[0], a_col, &ka) or not _id_at(<tuple>b_rows[0], b_col, &kb):
        return None
    prev_a = ka
    prev_b = kb
    while i < na and j < nb:
        steps += 1
        if check is not None and steps % CHECK_EVERY == 0:
            check()
        if ka < kb:
            i += 1
            if i < na:
                if not _id_at(<tuple>a_rows[i], a_col, &ka) or ka < prev_a:
                    return None
                prev_a = ka
        elif ka > kb:
            j += 1
            if j < nb:
                if not _id_at(<tuple>b_rows[j], b_col, &kb) or kb < prev_b:
                    return None
                prev_b = kb
        else:
            # the runs of equal keys on both sides
            i2 = i + 1
            while i2 < na:
                if not _id_at(<tuple>a_rows[i2], a_col, &k2) or k2 < ka:
                    return None
                if k2 != ka:
                    break
                i2 += 1
            j2 = j + 1
            while j2 < nb:
                if not _id_at(<tuple>b_rows[j2], b_col, &k2) or k2 < kb:
                    return None
                if k2 != kb:
                    break
                j2 += 1
            for x in range(i, i2):
                for y in range(j, j2):
                    out.append(_concat(<tuple>a_rows[x], <tuple>b_rows[y], rest, nr))
            i = i2
            j = j2
            if i < na:
                if not _id_at(<tuple>a_rows[i], a_col, &ka) or ka < prev_a:
                    return None
                prev_a = ka
            if j < nb:
                if not _id_at(<tuple>b_rows[j], b_col, &kb) or kb < prev_b:
                    return None
                prev_b = kb
    return out


def sort_on(list rows, Py_ssize_t col, bint dedup=False):
    """``rows`` in ascending order of the int in column ``col`` (stable), the same
    tuple objects in a new list; with ``dedup``, one row per key (for rows of that one
    column). ``None`` when a value there is not an int that fits 64 bits.

    A radix sort (``_core/radix.pxd``): a relation put in entity order, for scan.extend_many
    and merge_join.

    >>> sort_on([(3, "c"), (1, "a"), (2, "b"), (1, "z")], 0)
    [(1, 'a'), (1, 'z'), (2, 'b'), (3, 'c')]
    >>> sort_on([(5,), (2,), (5,)], 0, True)
    [(2,), (5,)]
    """
    cdef Py_ssize_t n = len(rows), i
    cdef uint64_t* keys
    cdef Py_ssize_t* idx
    cdef int64_t x
    cdef list out
    cdef uint64_t flip = (<uint64_t>1) << 63
    if n == 0:
        return []
    keys = <uint64_t*>PyMem_Malloc(n * sizeof(uint64_t))
    idx = <Py_ssize_t*>PyMem_Malloc(n * sizeof(Py_ssize_t))
    if keys == NULL or idx == NULL:
        PyMem_Free(keys)
        PyMem_Free(idx)
        raise MemoryError()
    try:
        for i in range(n):
            if not _id_at(<tuple>rows[i], col, &x):
                return None
            keys[i] = (<uint64_t>x) ^ flip     # signed order as unsigned
            idx[i] = i
        radix_sort(keys, idx, n)             # stable: equal keys keep row order
        out = []
        if dedup:
            # One-column rows are made afresh, in order: reordered old tuples would sit
            # all over the heap, and every later walk over them would miss the cache.
            for i in range(n):
                if i and keys[i] == keys[i - 1]:
                    continue
                out.append(untrack_atomic((<object>PyLong_FromLongLong(<int64_t>(keys[i] ^ flip)),)))
            return out
        for i in range(n):
            out.append(rows[idx[i]])
        return out
    finally:
        PyMem_Free(keys)
        PyMem_Free(idx)
