# cython: language_level=3
"""Index scans: one sorted stream out of the durable tree's leaves and the novelty runs.

A database value reads an index as ``tree ⊕ novelty``. Every source is sorted; the
scan merges them (k is small: one tree plus O(log n) novelty runs) and then, per
``(e, a, v)`` group — keys whose bytes agree up to the last 9 (tx + added) — decides
what the database value sees:

- ``MODE_CURRENT``: the last datom of the group with ``tx <= max_tx`` is in effect;
  it is emitted if it is an assertion with ``tx > min_tx`` (``since``).
- ``MODE_HISTORY``: every datom with ``min_tx < tx <= max_tx``.

Leaves of the tree are pulled one at a time from a Python ``cursor`` object with a
``next_leaf() -> KeyBlock | None`` method, so storage I/O stays in Python while the
per-datom loop stays in C.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcmp
from libc.stdint cimport uint32_t, int64_t, uint64_t

from fastdatomic._core.segment cimport KeyBlock, DirNode, cmp_bytes, cmp_keys, lower_bound, upper_bound
from fastdatomic._core.datom cimport Datom
from fastdatomic._core.codec cimport decode_key_ptr, decode_value_ptr, key_tx, read_id, write_id, get_u64
from fastdatomic._core.idset cimport IdSet, IdList, idset_has, as_entity_id
from cpython.long cimport PyLong_FromLongLong
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.ref cimport Py_INCREF
from cpython.ref cimport PyObject, Py_XDECREF
from libc.stdlib cimport calloc
from fastdatomic._core.rows cimport (untrack_atomic, put_items, PyObject_GC_IsTracked,
                                     PyObject_GC_UnTrack, PyObject_GC_Track)
from fastdatomic._core.segment cimport make_block
from libc.string cimport memcpy

MODE_CURRENT = 0
MODE_HISTORY = 1

DEF MAX_SOURCES = 96


cdef class TreeCursor:
    """Walks the leaves of an index tree in key order, from the leaf holding ``start``.

    ``segs`` is the segment store (``.dir(id)``, ``.leaf(id)``); the scan pulls leaves with
    ``next_leaf()``. Lives here, in C, because every point lookup builds one.
    """

    cdef object dir_of
    cdef object leaf_of
    cdef DirNode root
    cdef list nodes      # DirNode per level, root first
    cdef list nexts      # next child index per level

    def __init__(self, segs, bytes root_id, bytes start):
        self.dir_of = segs.dir
        self.leaf_of = segs.leaf
        self.root = segs.dir(root_id)
        self._descend(start)

    def seek(self, bytes start):
        """Restart at the leaf holding ``start`` and return it (``next_leaf`` goes on
        from there): a scan jumping ahead without walking the leaves between."""
        self._descend(start)
        return self.next_leaf()

    cdef _descend(self, bytes start):
        cdef DirNode node = self.root
        cdef const unsigned char* sp = <const unsigned char*>PyBytes_AS_STRING(start)
        cdef Py_ssize_t sn = PyBytes_GET_SIZE(start), i
        self.nodes = []
        self.nexts = []
        while True:
            i = upper_bound(node.keys.base, node.keys.offs, 0, node.keys.n, sp, sn) - 1
            if i < 0:
                i = 0
            self.nodes.append(node)
            if node.level == 1:
                self.nexts.append(i)
                return
            self.nexts.append(i + 1)
            node = self.dir_of(_child_id(node, i))

    def next_leaf(self):
        """The next leaf ``KeyBlock`` in key order, or ``None`` past the last."""
        cdef DirNode node
        cdef Py_ssize_t i, top
        while self.nodes:
            top = len(self.nodes) - 1
            node = <DirNode>self.nodes[top]
            i = self.nexts[top]
            if i < node.keys.n:
                self.nexts[top] = i + 1
                if node.level == 1:
                    return self.leaf_of(_child_id(node, i))
                self.nodes.append(self.dir_of(_child_id(node, i)))
                self.nexts.append(0)
            else:
                del self.nodes[top]
                del self.nexts[top]
        return None


cdef inline bytes _child_id(DirNode node, Py_ssize_t i):
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(node._ids) + i * 16, 16)


cdef inline Py_ssize_t gallop_lower_bound(const unsigned char* base, const uint32_t* offs,
                                          Py_ssize_t lo, Py_ssize_t hi,
                                          const unsigned char* k, Py_ssize_t kn) noexcept nogil:
    # lower_bound for a key at or a little after ``lo``: steps 1, 2, 4, ... then a binary
    # search in the last step, so nearby keys cost few (and cache-warm) comparisons.
    cdef Py_ssize_t step = 1, prev = lo
    if lo >= hi or cmp_keys(base + offs[lo], offs[lo + 1] - offs[lo], k, kn) >= 0:
        return lo
    while lo + step < hi and \
            cmp_keys(base + offs[lo + step], offs[lo + step + 1] - offs[lo + step], k, kn) < 0:
        prev = lo + step
        step <<= 1
    return lower_bound(base, offs, prev + 1, lo + step if lo + step < hi else hi, k, kn)


cdef inline bint same_group(const unsigned char* a, Py_ssize_t na,
                            const unsigned char* b, Py_ssize_t nb) noexcept nogil:
    # same (e a v): equal up to the tx and added bytes
    if na != nb:
        return False
    if na < 25:
        return memcmp(a, b, na - 9) == 0
    return get_u64(a + 8) == get_u64(b + 8) and get_u64(a) == get_u64(b) and \
        memcmp(a + 16, b + 16, na - 25) == 0


cdef object _key_field(int index, const unsigned char* p, Py_ssize_t n, Py_ssize_t es,
                       Py_ssize_t vs, Py_ssize_t ve, int f):
    # Field f (0 e, 1 a, 2 v, 3 tx, 4 added) of a key of ``index``; es/vs/ve locate e and v.
    cdef Py_ssize_t used
    if f == 0:
        return PyLong_FromLongLong(read_id(p + es))
    if f == 2:
        if index == 3:
            return PyLong_FromLongLong(read_id(p + 1))
        v = decode_value_ptr(p + vs, ve - vs, &used)
        if used != ve - vs:
            raise ValueError("corrupt key: trailing bytes after the value")
        return v
    if f == 1:
        return PyLong_FromLongLong(read_id(p + (8 if index == 0 else (9 if index == 3 else 0))))
    if f == 3:
        return PyLong_FromLongLong(key_tx(p, n))
    return p[n - 1] != 0


cdef struct ValueFilter:
    # a scan's value tests on encoded bytes (NULL: no test); the bytes objects they
    # point into belong to the caller's arguments
    const unsigned char* eqp
    Py_ssize_t eqn
    const unsigned char* lop
    Py_ssize_t lon
    bint lo_incl
    const unsigned char* hip
    Py_ssize_t hin
    bint hi_incl


cdef inline void _value_filter(ValueFilter* vf, bytes v_eq, bytes v_lo, bint lo_incl,
                               bytes v_hi, bint hi_incl):
    vf.eqp = vf.lop = vf.hip = NULL
    vf.eqn = vf.lon = vf.hin = 0
    vf.lo_incl = lo_incl
    vf.hi_incl = hi_incl
    if v_eq is not None:
        vf.eqp = <const unsigned char*>PyBytes_AS_STRING(v_eq)
        vf.eqn = PyBytes_GET_SIZE(v_eq)
    if v_lo is not None:
        vf.lop = <const unsigned char*>PyBytes_AS_STRING(v_lo)
        vf.lon = PyBytes_GET_SIZE(v_lo)
    if v_hi is not None:
        vf.hip = <const unsigned char*>PyBytes_AS_STRING(v_hi)
        vf.hin = PyBytes_GET_SIZE(v_hi)


cdef inline bint _value_passes(const ValueFilter* vf, const unsigned char* v,
                               Py_ssize_t vn) noexcept nogil:
    cdef int r
    if vf.eqp != NULL and (vn != vf.eqn or memcmp(v, vf.eqp, vn) != 0):
        return False
    if vf.lop != NULL:
        r = cmp_bytes(v, vn, vf.lop, vf.lon)
        if r < 0 or (r == 0 and not vf.lo_incl):
            return False
    if vf.hip != NULL:
        r = cmp_bytes(v, vn, vf.hip, vf.hin)
        if r > 0 or (r == 0 and not vf.hi_incl):
            return False
    return True


cdef Py_ssize_t _parse_fields(fields, int* f) except -1:
    cdef Py_ssize_t nf = len(fields), k
    if nf > 5:
        raise ValueError("at most 5 fields")
    for k in range(nf):
        f[k] = fields[k]
        if not 0 <= f[k] < 5:
            raise ValueError(f"datom field {f[k]} is not 0..4 (e a v tx added)")
    return nf


cdef struct EntityWalk:
    # sorted entity ids a scan in entity order walks alongside its keys
    const int64_t* ids
    Py_ssize_t n
    Py_ssize_t i
    int64_t attr        # AEVT: the attribute whose entities are being walked


cdef struct Matches:
    # the datoms one scan of ``extend_many`` matched: the position of each one's entity
    # among the walked ids, ascending, and its fields (``vals``: owned references, nf
    # per match). C arrays rather than lists, so the garbage collector, which runs
    # several times while a query builds its rows, has no long young list to traverse.
    Py_ssize_t* at
    Py_ssize_t n
    Py_ssize_t cap
    PyObject** vals
    Py_ssize_t nv
    Py_ssize_t vcap


cdef int _matches_push(Matches* m, Py_ssize_t j) except -1:
    cdef Py_ssize_t cap
    cdef Py_ssize_t* grown
    if m.n == m.cap:
        cap = m.cap * 2 if m.cap else 1024
        grown = <Py_ssize_t*>PyMem_Realloc(m.at, cap * sizeof(Py_ssize_t))
        if grown == NULL:
            raise MemoryError()
        m.at = grown
        m.cap = cap
    m.at[m.n] = j
    m.n += 1
    return 0


cdef int _matches_value(Matches* m, object v) except -1:
    cdef Py_ssize_t cap
    cdef PyObject** grown
    if m.nv == m.vcap:
        cap = m.vcap * 2 if m.vcap else 1024
        grown = <PyObject**>PyMem_Realloc(m.vals, cap * sizeof(PyObject*))
        if grown == NULL:
            raise MemoryError()
        m.vals = grown
        m.vcap = cap
    Py_INCREF(v)
    m.vals[m.nv] = <PyObject*>v
    m.nv += 1
    return 0


cdef void _matches_free(Matches* m):
    cdef Py_ssize_t i
    for i in range(m.nv):
        Py_XDECREF(m.vals[i])
    PyMem_Free(m.vals)
    PyMem_Free(m.at)
    m.vals = NULL
    m.at = NULL
    m.n = m.nv = m.cap = m.vcap = 0


DEF MAX_EXTEND = 16     # scans one extend_many joins at once


cdef class Scan:
    """An iterator of datoms over one index of one database value.

    Built by the database layer (``fastdatomic.db``), not by users.
    ``next()`` yields ``Datom``; ``count()`` consumes and counts; ``keys()`` yields raw keys.
    """

    cdef int index
    cdef int mode
    cdef int64_t max_tx
    cdef int64_t min_tx
    cdef bytes end
    cdef bint has_end
    cdef const unsigned char* end_p
    cdef Py_ssize_t end_n
    cdef object cursor          # tree leaf supplier or None
    cdef list blocks            # KeyBlock per source (keeps buffers alive)
    cdef int nsrc
    cdef const unsigned char* base[MAX_SOURCES]
    cdef const uint32_t* offs[MAX_SOURCES]
    cdef Py_ssize_t pos[MAX_SOURCES]
    cdef Py_ssize_t lim[MAX_SOURCES]
    cdef Py_ssize_t size[MAX_SOURCES]   # keys in the block (lim: clipped at the end key)
    cdef Py_ssize_t seek_lo[MAX_SOURCES]  # keys before it are below the last seek's start
    cdef bint has_tree
    cdef bint check_end         # after a seek: compare heads with the end key (short ranges)
    cdef bytes last_start       # the last seek's start key
    cdef bint tree_src          # source 0 is the tree cursor
    cdef bint tree_last         # the tree's current leaf reaches the end key
    cdef list held              # tree leaves left behind during the current group
    cdef readonly bint done     # advance() has found the end
    # the key found by advance(), and where: key out_k of source out_src
    cdef const unsigned char* out_p
    cdef Py_ssize_t out_n
    cdef int out_src
    cdef Py_ssize_t out_k
    # history mode de-duplication (a datom present in two sources)
    cdef bytes last_key
    # _min_source's memo: the source that was smallest, and the smallest other head
    cdef int cur
    cdef const unsigned char* bound_p
    cdef Py_ssize_t bound_n

    def __init__(self, int index, cursor, tuple runs, bytes start, end, int mode,
                 int64_t max_tx, int64_t min_tx):
        cdef KeyBlock kb
        cdef const unsigned char* sp = <const unsigned char*>PyBytes_AS_STRING(start)
        cdef Py_ssize_t sn = PyBytes_GET_SIZE(start)
        if len(runs) + 1 > MAX_SOURCES:
            raise ValueError(f"too many novelty runs ({len(runs)})")
        self.index = index
        self.mode = mode
        self.max_tx = max_tx
        self.min_tx = min_tx
        self.has_end = end is not None
        self.end = end if end is not None else b""
        self.end_p = <const unsigned char*>PyBytes_AS_STRING(self.end)
        self.end_n = PyBytes_GET_SIZE(self.end)
        self.cursor = cursor
        self.blocks = []
        self.nsrc = 0
        self.tree_src = cursor is not None
        self.has_tree = self.tree_src
        self.check_end = False
        self.done = False
        self.last_start = None
        self.tree_last = False
        self.held = None
        self.last_key = None
        self.cur = -1
        self.bound_p = NULL
        self.bound_n = 0
        if cursor is not None:
            kb = cursor.next_leaf()
            self._set_source(0, kb if kb is not None else KeyBlock.empty())
            self.pos[0] = lower_bound(self.base[0], self.offs[0], 0, self.lim[0], sp, sn)
        for run in runs:
            kb = <KeyBlock>run
            if kb.n == 0:
                continue
            self._set_source(self.nsrc, kb)
            self.pos[self.nsrc - 1] = lower_bound(kb.base, kb.offs, 0, kb.n, sp, sn)
        if not self.tree_src and self.nsrc == 0:
            self._set_source(0, KeyBlock.empty())

    cdef void _set_source(self, int i, KeyBlock kb):
        if i < len(self.blocks):
            self.blocks[i] = kb
        else:
            self.blocks.append(kb)
            self.nsrc += 1
        self.base[i] = kb.base
        self.offs[i] = kb.offs
        self.pos[i] = 0
        self.lim[i] = kb.n
        self.size[i] = kb.n
        self.seek_lo[i] = 0
        if self.has_end:
            # Clip each source at the end key once, so the merge never compares a key
            # with the end; a tree leaf clipped short is the tree's last.
            self.lim[i] = lower_bound(kb.base, kb.offs, 0, kb.n, self.end_p, self.end_n)
            if i == 0 and self.tree_src and self.lim[i] < kb.n:
                self.tree_last = True

    cdef int _refill(self) except -1:
        # The tree source ran off its leaf: pull the next one (Python, rare). The leaf
        # left behind may hold the current group's keys: keep it until the group ends.
        cdef KeyBlock kb
        while True:
            nxt = None if self.tree_last else self.cursor.next_leaf()
            if nxt is None:
                self.tree_src = False
                self.lim[0] = 0
                self.pos[0] = 0
                return 0
            if self.held is None:
                self.held = [self.blocks[0]]
            else:
                self.held.append(self.blocks[0])
            kb = <KeyBlock>nxt
            self._set_source(0, kb)
            if self.lim[0] > 0:
                return 1

    cdef inline int _min_source(self) except -2:
        # Index of the source with the smallest head key, -1 when all are done.
        #
        # Sources rarely interleave key by key (novelty runs hold different entities,
        # or later versions of a few), so the source that was smallest usually stays
        # smallest for a long stretch. While its head stays below ``bound`` (the
        # smallest head among the other sources, which cannot change meanwhile), it
        # is the answer without looking at the others: one comparison per key
        # instead of one per source.
        cdef int i, best = -1, cur = self.cur
        cdef const unsigned char* bp = NULL
        cdef Py_ssize_t bn = 0
        cdef const unsigned char* sp = NULL
        cdef Py_ssize_t sn = 0
        cdef const unsigned char* p
        cdef Py_ssize_t n
        if cur >= 0 and self.pos[cur] < self.lim[cur]:
            p = self.base[cur] + self.offs[cur][self.pos[cur]]
            n = self.offs[cur][self.pos[cur] + 1] - self.offs[cur][self.pos[cur]]
            if self.bound_p == NULL or cmp_keys(p, n, self.bound_p, self.bound_n) < 0:
                if self.check_end and cmp_bytes(p, n, self.end_p, self.end_n) >= 0:
                    return -1
                return cur
        if self.tree_src and self.pos[0] >= self.lim[0]:
            self._refill()
        for i in range(self.nsrc):
            if self.pos[i] < self.lim[i]:
                p = self.base[i] + self.offs[i][self.pos[i]]
                n = self.offs[i][self.pos[i] + 1] - self.offs[i][self.pos[i]]
                if best < 0 or cmp_keys(p, n, bp, bn) < 0:
                    if best >= 0:
                        sp = bp
                        sn = bn
                    best = i
                    bp = p
                    bn = n
                elif sp == NULL or cmp_keys(p, n, sp, sn) < 0:
                    sp = p
                    sn = n
        self.cur = best
        self.bound_p = sp
        self.bound_n = sn
        if best >= 0 and self.check_end and cmp_bytes(bp, bn, self.end_p, self.end_n) >= 0:
            return -1
        return best

    cdef int advance(self) except -1:
        """Find the next visible key; 1 when found (out_p/out_n, valid until the next
        call), 0 at the end."""
        cdef int s
        cdef const unsigned char* p
        cdef Py_ssize_t n
        cdef const unsigned char* gp
        cdef Py_ssize_t gn
        cdef int64_t tx
        cdef const unsigned char* best_p = NULL
        cdef Py_ssize_t best_n = 0
        cdef int best_s = 0
        cdef Py_ssize_t best_k = 0
        if self.mode == 1:
            if self.held is not None:
                self.held = None
            while True:
                s = self._min_source()
                if s < 0:
                    self.done = True
                    return 0
                p = self.base[s] + self.offs[s][self.pos[s]]
                n = self.offs[s][self.pos[s] + 1] - self.offs[s][self.pos[s]]
                self.out_src = s
                self.out_k = self.pos[s]
                self.pos[s] += 1
                tx = key_tx(p, n)
                if tx <= self.min_tx or tx > self.max_tx:
                    continue
                if self.nsrc > 1:
                    if self.last_key is not None and PyBytes_GET_SIZE(self.last_key) == n and \
                            memcmp(PyBytes_AS_STRING(self.last_key), p, n) == 0:
                        continue
                    self.last_key = PyBytes_FromStringAndSize(<const char*>p, n)
                self.out_p = p
                self.out_n = n
                return 1
        while True:
            s = self._min_source()
            if s < 0:
                self.done = True
                return 0
            if self.held is not None:
                self.held = None      # the previous group's leaves are done with
            gp = self.base[s] + self.offs[s][self.pos[s]]
            gn = self.offs[s][self.pos[s] + 1] - self.offs[s][self.pos[s]]
            best_p = NULL
            p = gp
            n = gn
            while True:
                # p is in the group (e a v): the last version with tx <= max_tx counts
                tx = key_tx(p, n)
                if tx <= self.max_tx:
                    best_p = p
                    best_n = n
                    best_s = s
                    best_k = self.pos[s]
                self.pos[s] += 1
                s = self._min_source()
                if s < 0:
                    break
                p = self.base[s] + self.offs[s][self.pos[s]]
                n = self.offs[s][self.pos[s] + 1] - self.offs[s][self.pos[s]]
                if not same_group(gp, gn, p, n):
                    break
            if best_p != NULL and best_p[best_n - 1] == 1 and key_tx(best_p, best_n) > self.min_tx:
                self.out_p = best_p
                self.out_n = best_n
                self.out_src = best_s
                self.out_k = best_k
                return 1

    cdef object _field(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t es,
                       Py_ssize_t vs, Py_ssize_t ve, int f):
        # _key_field of the key advance() found, string values through its block's cache
        cdef KeyBlock kb
        cdef object v
        cdef Py_ssize_t k = self.out_k, cap
        if f != 2 or self.index == 3:
            return _key_field(self.index, p, n, es, vs, ve, f)
        kb = <KeyBlock>self.blocks[self.out_src]
        # the tree's source block may have moved on to the next leaf within a group
        if k >= kb.n or kb.base + kb.offs[k] != p:
            return _key_field(self.index, p, n, es, vs, ve, f)
        if kb.vals != NULL and kb.vals[k] != NULL:
            return <object>kb.vals[k]
        v = _key_field(self.index, p, n, es, vs, ve, f)
        if type(v) is str:
            cap = 3 * kb.offs[kb.n]
            if kb.vals_bytes + 56 + (ve - vs) <= cap:
                if kb.vals == NULL:
                    kb.vals = <PyObject**>calloc(kb.n, sizeof(PyObject*))
                    if kb.vals == NULL:
                        return v
                    kb.vals_bytes = 8 * kb.n       # the slots
                Py_INCREF(v)
                kb.vals[k] = <PyObject*>v
                kb.vals_bytes += 56 + (ve - vs)    # a compact str of that many bytes
        return v

    cdef int _seek(self, bytes start, bytes end) except -1:
        # Reposition every source on [start, end): a new scan without rebuilding one.
        # Seeks usually come in ascending order (pull of sorted entities), so each
        # source gallops forward from where the last seek found its start; the end is
        # compared per key (the ranges are short) instead of binary-searched.
        cdef const unsigned char* sp = <const unsigned char*>PyBytes_AS_STRING(start)
        cdef Py_ssize_t sn = PyBytes_GET_SIZE(start), i, n
        cdef KeyBlock kb
        cdef bint in_leaf, forward
        forward = self.last_start is not None and \
            cmp_bytes(sp, sn, <const unsigned char*>PyBytes_AS_STRING(self.last_start),
                      PyBytes_GET_SIZE(self.last_start)) >= 0
        self.last_start = start
        self.end = end
        self.has_end = False       # blocks the tree hands over are not clipped...
        self.check_end = True      # ...the merge compares heads with the end instead
        self.end_p = <const unsigned char*>PyBytes_AS_STRING(end)
        self.end_n = PyBytes_GET_SIZE(end)
        self.cur = -1
        self.bound_p = NULL
        self.held = None
        self.last_key = None
        self.done = False
        if self.has_tree:
            # Stay in the current leaf when it holds start, else descend from the root.
            kb = <KeyBlock>self.blocks[0]
            n = self.size[0]
            in_leaf = n > 0 and \
                cmp_bytes(sp, sn, kb.base + kb.offs[0], kb.offs[1] - kb.offs[0]) >= 0 and \
                cmp_bytes(sp, sn, kb.base + kb.offs[n - 1], kb.offs[n] - kb.offs[n - 1]) <= 0
            self.tree_src = True
            self.tree_last = False
            if not in_leaf:
                nxt = self.cursor.seek(start)
                self._set_source(0, nxt if nxt is not None else KeyBlock.empty())
                if nxt is None:
                    self.tree_src = False
        for i in range(self.nsrc):
            n = self.size[i]
            self.lim[i] = n
            self.pos[i] = gallop_lower_bound(self.base[i], self.offs[i],
                                             self.seek_lo[i] if forward else 0, n, sp, sn)
            self.seek_lo[i] = self.pos[i]
        return 0

    cdef int _skip_to(self, const unsigned char* k, Py_ssize_t kn) except -1:
        # Move every source forward to its first key >= k (between groups: nothing to
        # keep alive). Each source gallops from where it is; the tree jumps leaves.
        cdef Py_ssize_t i, n0
        cdef KeyBlock kb
        for i in range(self.nsrc):
            if i == 0 and self.has_tree:
                if not self.tree_src:
                    continue
                kb = <KeyBlock>self.blocks[0]
                n0 = self.lim[0]
                if n0 > 0 and cmp_bytes(k, kn, kb.base + kb.offs[n0 - 1],
                                        kb.offs[n0] - kb.offs[n0 - 1]) <= 0:
                    self.pos[0] = gallop_lower_bound(kb.base, kb.offs, self.pos[0], n0, k, kn)
                elif self.tree_last or self.check_end:
                    self.pos[0] = n0      # the merge refills (or stops) from here
                else:
                    nxt = self.cursor.seek(PyBytes_FromStringAndSize(<const char*>k, kn))
                    self._set_source(0, nxt if nxt is not None else KeyBlock.empty())
                    if nxt is None:
                        self.tree_src = False
                    self.pos[0] = lower_bound(self.base[0], self.offs[0], 0, self.lim[0], k, kn)
                continue
            self.pos[i] = gallop_lower_bound(self.base[i], self.offs[i], self.pos[i],
                                             self.lim[i], k, kn)
        self.cur = -1
        self.bound_p = NULL
        return 0

    cdef int _walk(self, EntityWalk* w, const unsigned char* p) except -2:
        # Where the key at p stands against the walked entities: 1 its entity is the
        # current one; 0 it is not, and the scan has jumped to the next one (or, on
        # AEVT, to the next attribute); -1 none is left (EAVT: nothing more matches).
        cdef int64_t e, a
        cdef unsigned char skip[16]
        if self.index == 1:
            e = read_id(p + 8)
            a = read_id(p)
            if a != w.attr:           # a new attribute: entities start over
                w.attr = a
                w.i = 0
        else:
            e = read_id(p)
        while w.i < w.n and w.ids[w.i] < e:
            w.i += 1
        if w.i == w.n:
            if self.index == 0:
                return -1
            write_id(skip, w.attr + 1)
            self._skip_to(skip, 8)
            return 0
        if w.ids[w.i] == e:
            return 1
        if self.index == 0:
            write_id(skip, w.ids[w.i])
            self._skip_to(skip, 8)
        else:
            memcpy(skip, p, 8)
            write_id(skip + 8, w.ids[w.i])
            self._skip_to(skip, 16)
        return 0

    def entity_values(self, bytes start, bytes end):
        """``{a: [v, ...]}`` of the visible EAVT datoms in ``[start, end)`` (one entity's
        key range, say), the scan repositioned there first: pull reads each entity
        this way, from one scan, with no per-entity scan set-up and no ``Datom``.

        >>> from fastdatomic._core.codec import encode_key, encode_id, INDEX_EAVT, TYPE_LONG
        >>> from fastdatomic._core.segment import KeyBlock
        >>> keys = [encode_key(INDEX_EAVT, e, a, TYPE_LONG, e + a, 5, True)
        ...         for e in (1, 2) for a in (72, 73)]
        >>> sc = Scan(INDEX_EAVT, None, (KeyBlock.from_keys(keys),), b"", None, MODE_CURRENT, 9, -1)
        >>> sc.entity_values(encode_id(2), encode_id(3))
        {72: [74], 73: [75]}
        """
        cdef dict out = {}
        cdef list vs = None
        cdef long long a, cur_a = 0
        cdef const unsigned char* p
        cdef Py_ssize_t n
        if self.index != 0:
            raise ValueError("entity_values reads the EAVT index")
        self._seek(start, end)
        while self.advance():
            p = self.out_p
            n = self.out_n
            a = read_id(p + 8)
            if vs is None or a != cur_a:
                cur_a = a
                key = PyLong_FromLongLong(a)
                vs = out.get(key)
                if vs is None:
                    vs = out[key] = []
            vs.append(self._field(p, n, 0, 16, n - 9, 2))   # strings via the block's cache
        return out

    def entity_maps(self, list eids, list specs, missing):
        """One dict per entity id of ``eids`` (``None`` when it has none of the
        attributes), for a pull pattern of plain attributes: ``specs`` is a list of
        ``(attribute id or None for :db/id, key, many, limit, default)``, ``default``
        being ``missing`` when there is none. Reads EAVT entity by entity from this
        scan, decoding only the attributes asked for.

        >>> from fastdatomic._core.codec import encode_key, INDEX_EAVT, TYPE_LONG
        >>> from fastdatomic._core.segment import KeyBlock
        >>> keys = [encode_key(INDEX_EAVT, e, a, TYPE_LONG, e + a, 5, True)
        ...         for e in (1, 2) for a in (72, 73)]
        >>> sc = Scan(INDEX_EAVT, None, (KeyBlock.from_keys(keys),), b"", None, MODE_CURRENT, 9, -1)
        >>> none = object()
        >>> sc.entity_maps([2, 7], [(None, "id", False, None, none), (73, "b", False, None, none),
        ...                         (74, "c", True, None, 0)], none)
        [{'id': 2, 'b': 75, 'c': 0}, {'id': 7, 'c': 0}]
        >>> sc.entity_maps([7], [(73, "b", False, None, none)], none)
        [None]
        """
        cdef Py_ssize_t ns = len(specs), k, n, m
        cdef int64_t aids[64]
        cdef bint is_id[64]
        cdef list out = []
        cdef list vals
        cdef dict d
        cdef const unsigned char* p
        cdef long long e, a
        cdef unsigned char kb[8]
        if self.index != 0:
            raise ValueError("entity_maps reads the EAVT index")
        if ns > 64:
            raise ValueError("at most 64 attributes")
        for k in range(ns):
            aid = specs[k][0]
            is_id[k] = aid is None
            aids[k] = -1 if aid is None else <int64_t>aid
        for eid in eids:
            e = eid
            write_id(kb, e)
            start = PyBytes_FromStringAndSize(<const char*>kb, 8)
            write_id(kb, e + 1)
            self._seek(start, PyBytes_FromStringAndSize(<const char*>kb, 8))
            vals = [None] * ns       # per spec: last value (one) or list (many)
            while self.advance():
                p = self.out_p
                n = self.out_n
                a = read_id(p + 8)
                for k in range(ns):
                    if aids[k] == a:
                        break
                else:
                    continue         # an attribute the pattern does not name
                v = self._field(p, n, 0, 16, n - 9, 2)     # strings via the block's cache
                if specs[k][2]:
                    if vals[k] is None:
                        vals[k] = [v]
                    else:
                        (<list>vals[k]).append(v)
                else:
                    vals[k] = (v,)   # boxed, so "no value yet" (None) stays distinct
            d = {}
            for k in range(ns):
                spec = <tuple>specs[k]
                if is_id[k]:
                    d[spec[1]] = eid
                elif vals[k] is not None:
                    if spec[2]:
                        lim = spec[3]
                        m = len(<list>vals[k])
                        d[spec[1]] = vals[k] if lim is None or m <= lim else (<list>vals[k])[:lim]
                    else:
                        d[spec[1]] = (<tuple>vals[k])[0]
                elif spec[4] is not missing:
                    d[spec[1]] = spec[4]
            out.append(d if d else None)
        return out

    def __iter__(self):
        return self

    def __next__(self):
        if self.advance():
            return decode_key_ptr(self.index, self.out_p, self.out_n)
        raise StopIteration

    def next_key(self):
        """The next visible raw key, or ``None`` at the end."""
        if self.advance():
            return PyBytes_FromStringAndSize(<const char*>self.out_p, self.out_n)
        return None

    def count(self, Py_ssize_t limit=-1):
        """Consume the scan and return how many datoms it holds (up to ``limit``)."""
        cdef Py_ssize_t c = 0
        while (limit < 0 or c < limit) and self.advance():
            c += 1
        return c

    def select(self, fields, Py_ssize_t limit=-1, IdSet e_in=None, bytes v_eq=None,
               bytes v_lo=None, bint lo_incl=True, bytes v_hi=None, bint hi_incl=True,
               Py_ssize_t budget=-1, IdList ids_out=None):
        """Up to ``limit`` visible datoms that pass the filters, as tuples of ``fields``
        (0 e, 1 a, 2 v, 3 tx, 4 added; an empty ``fields`` gives ``()`` per datom).

        The filters read the key bytes, so a datom that fails one is never decoded:
        ``e_in`` keeps datoms whose entity is in the set; ``v_eq`` those whose encoded
        value equals it; ``v_lo``/``v_hi`` bound the encoded value (inclusive unless
        ``lo_incl``/``hi_incl`` is false). Encoded values sort as the values do within
        one type, so a bound on a same-typed constant is a comparison predicate.
        Only the fields asked for are decoded (a string value of an ``[?e :a _]``
        pattern is never built). ``budget`` bounds the visible datoms examined in this
        call, matching or not, so a caller can check a timeout between calls even when
        nothing matches; ``done`` says whether the scan has reached its end. With
        ``ids_out``, the entities of the datoms that pass go there instead, and no row
        is made.

        >>> from fastdatomic._core.codec import encode_key, INDEX_AEVT, TYPE_LONG
        >>> from fastdatomic._core.segment import KeyBlock
        >>> from fastdatomic._core.idset import IdSet
        >>> keys = [encode_key(INDEX_AEVT, e, 72, TYPE_LONG, e * 10, 5, True) for e in (1, 2, 3)]
        >>> sc = Scan(INDEX_AEVT, None, (KeyBlock.from_keys(keys),), b"", None, MODE_CURRENT, 99, -1)
        >>> sc.select((0, 2), -1, e_in=IdSet.of_column([(2,), (3,)], 0))
        [(2, 20), (3, 30)]
        """
        cdef list out = []
        cdef Py_ssize_t c = 0, nf, k, vs, ve, es, seen = 0
        cdef int f[5]
        cdef const unsigned char* p
        cdef Py_ssize_t n
        cdef ValueFilter vf
        cdef tuple row
        cdef int index = self.index
        cdef int w
        # entity filter on EAVT / AEVT: keys come in entity order, so walk the sorted
        # members alongside and jump the scan over keys of entities in between
        cdef bint merge = e_in is not None and (index == 0 or index == 1)
        cdef EntityWalk walk
        nf = _parse_fields(fields, f)
        _value_filter(&vf, v_eq, v_lo, lo_incl, v_hi, hi_incl)
        if merge:
            e_in.ensure_sorted()
            walk.ids = e_in.sorted_ids
            walk.n = e_in.sorted_n
            walk.i = 0
            walk.attr = 0
        while (limit < 0 or c < limit) and (budget < 0 or seen < budget) and self.advance():
            seen += 1
            p = self.out_p
            n = self.out_n
            # where e and v sit in this index's key (see codec.pyx)
            if index == 0 or index == 1:
                es = 0 if index == 0 else 8
                vs = 16
                ve = n - 9
            elif index == 2:
                es = n - 17
                vs = 8
                ve = n - 17
            else:
                es = 17
                vs = 0
                ve = 9
            if merge:
                w = self._walk(&walk, p)
                if w < 0:
                    self.done = True      # no member left: nothing more can match
                    break
                if w == 0:
                    continue
            elif e_in is not None and not idset_has(e_in, read_id(p + es)):
                continue
            if not _value_passes(&vf, p + vs, ve - vs):
                continue
            c += 1
            if ids_out is not None:
                ids_out.push(read_id(p + es))
                continue
            if nf == 0:
                out.append(())
                continue
            if nf == 1:
                row = (self._field(p, n, es, vs, ve, f[0]),)
            elif nf == 2:
                row = (self._field(p, n, es, vs, ve, f[0]),
                       self._field(p, n, es, vs, ve, f[1]))
            elif nf == 3:
                row = (self._field(p, n, es, vs, ve, f[0]),
                       self._field(p, n, es, vs, ve, f[1]),
                       self._field(p, n, es, vs, ve, f[2]))
            else:
                row = tuple([self._field(p, n, es, vs, ve, f[k]) for k in range(nf)])
            out.append(untrack_atomic(row))
        return out

    cdef int _match(self, EntityWalk* walk, Py_ssize_t nf, const int* f,
                    const ValueFilter* vf, object check, Matches* m) except -1:
        # Walk this scan along ``walk``'s sorted entity ids: every visible datom of one of
        # them that passes ``vf`` is recorded as its id's position (in ``m``) and its
        # ``nf`` fields (in ``m.vals``).
        cdef Py_ssize_t seen = 0, n, k
        cdef Py_ssize_t es = 0 if self.index == 0 else 8
        cdef const unsigned char* p
        cdef int w
        if self.index != 0 and self.index != 1:
            raise ValueError("extend reads the EAVT or AEVT index")
        while self.advance():
            seen += 1
            if check is not None and seen % 65536 == 0:
                check()
            p = self.out_p
            n = self.out_n
            w = self._walk(walk, p)
            if w < 0:
                break
            if w == 0:
                continue
            # the value sits between the two 8-byte ids and the 9-byte tx/added tail
            if not _value_passes(vf, p + 16, n - 25):
                continue
            _matches_push(m, walk.i)
            for k in range(nf):
                _matches_value(m, self._field(p, n, es, 16, n - 9, f[k]))
        return 0

    def take(self, Py_ssize_t limit=-1):
        """Up to ``limit`` datoms (all when negative) as a list."""
        cdef list out = []
        cdef Py_ssize_t c = 0
        while (limit < 0 or c < limit) and self.advance():
            out.append(decode_key_ptr(self.index, self.out_p, self.out_n))
            c += 1
        return out


def extend_many(list rows, Py_ssize_t col, list specs, check=None):
    """Join ``rows`` (ascending on the int entity id at ``col``) with several EAVT/AEVT
    scans at once: a row comes back for each combination of its entity's matching datoms,
    one from every scan, extended by each datom's fields in ``specs`` order. ``None`` when
    the rows are not ascending ints.

    The scans and the rows are all in entity order, so this walks them together and
    jumps each scan over entities no row holds: patterns joined with what is bound, with
    no intermediate relation. ``[?e :a ?x] [?e :b ?y]`` on an ``?e`` relation in entity
    order is one call: each row is built once, with both values, instead of once per
    pattern. ``specs`` holds ``(scan, fields, v_eq, v_lo, lo_incl, v_hi, hi_incl)`` per
    scan (the value filters as in ``Scan.select``). With several scans, each reads one
    attribute; one scan keeps its own order (an AEVT scan of several attributes walks the
    entities once per attribute).

    >>> from fastdatomic._core.codec import encode_key, INDEX_AEVT, TYPE_LONG
    >>> from fastdatomic._core.segment import KeyBlock
    >>> def scan(a, es):
    ...     keys = [encode_key(INDEX_AEVT, e, a, TYPE_LONG, e * a, 5, True) for e in es]
    ...     return Scan(INDEX_AEVT, None, (KeyBlock.from_keys(keys),), b"", None, MODE_CURRENT, 9, -1)
    >>> spec = lambda sc: (sc, (2,), None, None, True, None, True)
    >>> extend_many([(1,), (2,), (3,)], 0, [spec(scan(10, (1, 2, 3))), spec(scan(20, (1, 3)))])
    [(1, 10, 20), (3, 30, 60)]
    """
    cdef Py_ssize_t nrows = len(rows), nu = 0, i, j, k, s, nspec = len(specs), width, rj, c
    cdef int64_t x = 0    # set through as_entity_id
    cdef int64_t* ids = NULL        # each distinct entity once, ascending
    cdef Py_ssize_t* first = NULL   # ids[j]'s rows: rows[first[j]:first[j + 1]]
    cdef Matches m[MAX_EXTEND]
    cdef ValueFilter vf[MAX_EXTEND]
    cdef int f[MAX_EXTEND][5]
    cdef Py_ssize_t nf[MAX_EXTEND]
    cdef Py_ssize_t lo[MAX_EXTEND]   # scan s's matches of ids[j]: m[s].at[lo[s]:hi[s]]
    cdef Py_ssize_t hi[MAX_EXTEND]
    cdef Py_ssize_t cur[MAX_EXTEND]  # the combination being emitted
    cdef EntityWalk walk
    cdef list out = []
    cdef tuple row, t
    cdef Scan sc
    cdef bint extra
    if nspec < 1 or nspec > MAX_EXTEND:
        raise ValueError(f"extend_many joins 1 to {MAX_EXTEND} scans, not {nspec}")
    if nrows == 0:
        return out
    for s in range(nspec):
        m[s].at = NULL
        m[s].vals = NULL
        m[s].n = m[s].cap = m[s].nv = m[s].vcap = 0
    # Out of the collector's sight while it grows (every collection meanwhile would walk
    # it); its rows cannot reach it, and it is tracked again before anyone else has it.
    PyObject_GC_UnTrack(<void*>out)
    ids = <int64_t*>PyMem_Malloc(nrows * sizeof(int64_t))
    first = <Py_ssize_t*>PyMem_Malloc((nrows + 1) * sizeof(Py_ssize_t))
    try:
        if ids == NULL or first == NULL:
            raise MemoryError()
        for i in range(nrows):
            if not as_entity_id((<tuple>rows[i])[col], &x):
                return None
            if nu and x == ids[nu - 1]:
                continue
            if nu and x < ids[nu - 1]:
                return None
            ids[nu] = x
            first[nu] = i
            nu += 1
        first[nu] = nrows
        extra = False
        for s in range(nspec):
            sc, fields, v_eq, v_lo, lo_incl, v_hi, hi_incl = specs[s]
            nf[s] = _parse_fields(fields, f[s])
            extra = extra or nf[s] > 0
            # the filter points into the bytes in ``specs``, alive until we return
            _value_filter(&vf[s], v_eq, v_lo, lo_incl, v_hi, hi_incl)
            walk.ids = ids
            walk.n = nu
            walk.i = 0
            walk.attr = 0
            sc._match(&walk, nf[s], f[s], &vf[s], check, &m[s])
        width = 0
        for s in range(nspec):
            lo[s] = hi[s] = 0
            width += nf[s]
        if nspec == 1:
            # one scan: rows in the scan's order (an AEVT scan of several attributes
            # walks the entities once per attribute)
            for k in range(m[0].n):
                j = m[0].at[k]
                cur[0] = k
                for rj in range(first[j], first[j + 1]):
                    row = <tuple>rows[rj]
                    out.append(untrack_atomic(_extended(row, width, 1, nf, cur, m))
                               if extra else row)
            return out
        for s in range(nspec):
            for k in range(1, m[s].n):
                if m[s].at[k] < m[s].at[k - 1]:
                    raise ValueError("extend_many: each scan must read one attribute "
                                     "in entity order")
        for j in range(nu):
            # each scan's run of matches for ids[j]; none in one scan: the entity drops
            c = 1
            for s in range(nspec):
                k = hi[s]
                while k < m[s].n and m[s].at[k] < j:
                    k += 1
                lo[s] = k
                while k < m[s].n and m[s].at[k] == j:
                    k += 1
                hi[s] = k
                if k == lo[s]:
                    c = 0
            if c == 0:
                continue
            for rj in range(first[j], first[j + 1]):
                row = <tuple>rows[rj]
                if not extra:
                    # existence only: the row itself, once per combination of datoms
                    c = 1
                    for s in range(nspec):
                        c *= hi[s] - lo[s]
                    for k in range(c):
                        out.append(row)
                    continue
                for s in range(nspec):
                    cur[s] = lo[s]
                while True:
                    t = _extended(row, width, nspec, nf, cur, m)
                    out.append(untrack_atomic(t))
                    # the next combination, last scan fastest
                    s = nspec - 1
                    while s >= 0:
                        cur[s] += 1
                        if cur[s] < hi[s]:
                            break
                        cur[s] = lo[s]
                        s -= 1
                    if s < 0:
                        break
        return out
    finally:
        PyMem_Free(ids)
        PyMem_Free(first)
        for s in range(nspec):
            _matches_free(&m[s])
        if not PyObject_GC_IsTracked(out):
            PyObject_GC_Track(<void*>out)


cdef tuple _extended(tuple row, Py_ssize_t width, Py_ssize_t nspec, const Py_ssize_t* nf,
                     const Py_ssize_t* cur, const Matches* m):
    # row + the fields of datom cur[s] of every scan s, in one allocation
    cdef Py_ssize_t s, k
    cdef tuple t = PyTuple_New(PyTuple_GET_SIZE(row) + width)
    cdef Py_ssize_t at = put_items(t, 0, row)
    cdef object x
    for s in range(nspec):
        for k in range(nf[s]):
            x = <object>m[s].vals[cur[s] * nf[s] + k]
            Py_INCREF(x)
            PyTuple_SET_ITEM(t, at, x)
            at += 1
    return t


def keys_after_tx(KeyBlock kb, int64_t tx):
    """The keys of ``kb`` whose tx is greater than ``tx``, as a new block.

    After an indexing job, novelty keeps only what the new durable index lacks.
    """
    cdef Py_ssize_t i, n = 0, total = 0, ln
    cdef const unsigned char* p
    with nogil:
        for i in range(kb.n):
            p = kb.base + kb.offs[i]
            ln = kb.offs[i + 1] - kb.offs[i]
            if key_tx(p, ln) > tx:
                n += 1
                total += ln
    if n == kb.n:
        return kb
    cdef bytes data = PyBytes_FromStringAndSize(NULL, total)
    cdef bytes offs = PyBytes_FromStringAndSize(NULL, (n + 1) * 4)
    cdef unsigned char* d = <unsigned char*>PyBytes_AS_STRING(data)
    cdef uint32_t* o = <uint32_t*>PyBytes_AS_STRING(offs)
    cdef uint32_t pos = 0
    cdef Py_ssize_t j = 0
    with nogil:
        for i in range(kb.n):
            p = kb.base + kb.offs[i]
            ln = kb.offs[i + 1] - kb.offs[i]
            if key_tx(p, ln) > tx:
                o[j] = pos
                memcpy(d + pos, p, ln)
                pos += <uint32_t>ln
                j += 1
        o[j] = pos
    return make_block(data, offs, n)
