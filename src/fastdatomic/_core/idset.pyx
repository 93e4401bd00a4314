# cython: language_level=3
"""``IdSet``: a set of entity ids a scan can test without touching Python objects.

The query engine joins a data pattern with entities it has already bound (``[?e :name
"Ivan"] [?e :age ?a]``). Rather than decoding every ``:age`` datom into Python and
hash-joining, the scan reads the entity id straight from the key bytes and skips keys
whose entity is not in this set: only matching datoms are ever decoded.

>>> s = IdSet.of_column([(3,), (17592186045418,), (-1,), (3,)], 0)
>>> len(s), 3 in s, 4 in s
(3, True, False)
>>> IdSet.of_column([(1,), ("x",)], 0) is None   # not all ids: the caller takes another path
True
"""

from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.long cimport PyLong_FromLongLong
from fastdatomic._core.rows cimport untrack_atomic
from libc.stdint cimport int64_t, uint64_t, INT64_MIN
from fastdatomic._core.radix cimport radix_sort


cdef class IdSet:

    def __cinit__(self):
        self.sorted_ids = NULL
        self.sorted_n = 0
        self.slots = NULL
        self.mask = 0
        self.n = 0
        self.has_empty_marker = False

    def __dealloc__(self):
        if self.slots != NULL:
            PyMem_Free(self.slots)
        if self.sorted_ids != NULL:
            PyMem_Free(self.sorted_ids)

    cdef int ensure_sorted(self) except -1:
        # A scan in entity order walks this array alongside its keys (and jumps over
        # keys between members) instead of probing the hash table at random.
        cdef Py_ssize_t i, k = 0
        if self.sorted_ids != NULL or self.n == 0:
            return 0
        self.sorted_ids = <int64_t*>PyMem_Malloc(self.n * sizeof(int64_t))
        if self.sorted_ids == NULL:
            raise MemoryError()
        if self.has_empty_marker:
            self.sorted_ids[k] = INT64_MIN
            k += 1
        for i in range(<Py_ssize_t>self.mask + 1):
            if self.slots[i] != INT64_MIN:
                self.sorted_ids[k] = self.slots[i]
                k += 1
        for i in range(k):   # signed order as unsigned, sorted, and back
            self.sorted_ids[i] = <int64_t>((<uint64_t>self.sorted_ids[i]) ^ (<uint64_t>1 << 63))
        radix_sort(<uint64_t*>self.sorted_ids, NULL, k)
        for i in range(k):
            self.sorted_ids[i] = <int64_t>((<uint64_t>self.sorted_ids[i]) ^ (<uint64_t>1 << 63))
        self.sorted_n = k
        return 0

    def sorted(self):
        """The members in ascending order.

        >>> IdSet.of_column([(5,), (-1,), (3,)], 0).sorted()
        [-1, 3, 5]
        """
        self.ensure_sorted()
        return [self.sorted_ids[i] for i in range(self.sorted_n)]

    @staticmethod
    def of_column(list rows, Py_ssize_t col):
        """An ``IdSet`` of column ``col`` of ``rows`` (tuples), or ``None`` when a value
        there is not an int that fits 64 bits: the distinct entities a relation binds.

        >>> len(IdSet.of_column([(1, "a"), (2, "b"), (1, "c")], 0))
        2
        """
        cdef Py_ssize_t want = len(rows), cap = 16, i, k = 0
        cdef IdSet s = IdSet.__new__(IdSet)
        cdef tuple row
        cdef int64_t x = 0    # set through as_entity_id
        cdef bint ascending = True
        while cap < 2 * want + 2:
            cap <<= 1
        s.slots = <int64_t*>PyMem_Malloc(cap * sizeof(int64_t))
        # relations out of an AEVT / EAVT scan come in entity order: keep that order
        # as the sorted members instead of sorting them again
        s.sorted_ids = <int64_t*>PyMem_Malloc((want if want else 1) * sizeof(int64_t))
        if s.slots == NULL or s.sorted_ids == NULL:
            raise MemoryError()
        for i in range(cap):
            s.slots[i] = INT64_MIN
        s.mask = <uint64_t>(cap - 1)
        for row in rows:
            if not as_entity_id(row[col], &x):
                return None
            s._add(x)
            if ascending:
                if k and x < s.sorted_ids[k - 1]:
                    ascending = False
                elif k == 0 or x != s.sorted_ids[k - 1]:
                    s.sorted_ids[k] = x
                    k += 1
        if ascending:
            s.sorted_n = k
        else:
            PyMem_Free(s.sorted_ids)
            s.sorted_ids = NULL
        return s

    cdef int _add(self, int64_t x) except -1:
        cdef uint64_t i
        if x == INT64_MIN:
            if not self.has_empty_marker:
                self.has_empty_marker = True
                self.n += 1
            return 0
        i = (id_hash(x) >> 20) & self.mask
        while True:
            if self.slots[i] == x:
                return 0
            if self.slots[i] == INT64_MIN:
                self.slots[i] = x
                self.n += 1
                return 0
            i = (i + 1) & self.mask

    def __len__(self):
        return self.n

    def __contains__(self, x):
        if type(x) is not int:
            return False
        try:
            return idset_has(self, <int64_t>x)
        except OverflowError:
            return False


cdef class IdList:
    """Entity ids a scan collects (``Scan.select(..., ids_out=)``), made into the rows of
    a one-variable relation in entity order at the end, each id once: no tuple per
    datom before the sort.

    >>> lst = IdList()
    >>> for x in (5, -2, 5, 9):
    ...     lst.append(x)
    >>> len(lst), lst.sorted_rows()
    (4, [(-2,), (5,), (9,)])
    """

    def __cinit__(self):
        self.ids = NULL
        self.n = 0
        self.cap = 0

    def __dealloc__(self):
        if self.ids != NULL:
            PyMem_Free(self.ids)

    cdef int push(self, int64_t x) except -1:
        cdef int64_t* grown
        if self.n == self.cap:
            self.cap = 1024 if self.cap == 0 else 2 * self.cap
            grown = <int64_t*>PyMem_Realloc(self.ids, self.cap * sizeof(int64_t))
            if grown == NULL:
                raise MemoryError()
            self.ids = grown
        self.ids[self.n] = x
        self.n += 1
        return 0

    def append(self, int64_t x):
        """Add one id (the scan's C code calls ``push``)."""
        self.push(x)

    def __len__(self):
        return self.n

    def sorted_rows(self):
        """``[(id,), ...]`` ascending, each id once (fresh tuples, in memory order)."""
        cdef Py_ssize_t i
        cdef list out = []
        cdef uint64_t flip = (<uint64_t>1) << 63
        cdef uint64_t* keys = <uint64_t*>self.ids
        for i in range(self.n):
            keys[i] ^= flip
        radix_sort(keys, NULL, self.n)
        for i in range(self.n):
            keys[i] ^= flip
        for i in range(self.n):
            if i and self.ids[i] == self.ids[i - 1]:
                continue
            out.append(untrack_atomic((<object>PyLong_FromLongLong(self.ids[i]),)))
        return out
