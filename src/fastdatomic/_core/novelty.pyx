# cython: language_level=3
"""Sorting novelty keys into a run: the memory index's C kernel.

``MemoryIndex`` (``fastdatomic.db.memindex``) gathers the keys of the transactions
added since its last run and makes them ONE sorted, duplicate-free ``KeyBlock``.

The keys of a stream of transactions are a few interleaved ascending sequences
(new entity ids, the transaction entity's increasing t, one sequence per attribute
in AEVT), with some keys in no order (random uuids, updates of old entities). So the
sort first deals keys onto at most ``MAX_RUNS`` ascending runs, each key onto the run
whose last key is the greatest not above it (patience sorting; the runs' last keys
stay in order, so the search is short), keys fitting no run go to a rest that is
merge-sorted, and the runs are then merged pairwise. Each key is an entry holding its
first 16 bytes as two integers, so nearly every comparison is two integer compares.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.string cimport memcpy
from libc.stdint cimport uint64_t, uint32_t

from fastdatomic._core.segment cimport KeyBlock, make_block, cmp_bytes
from fastdatomic._core.codec cimport get_u64

__all__ = ["sort_keys"]

cdef Py_ssize_t MAX_BLOCK_BYTES = 0xFFFFFFFF

cdef struct Ent:
    uint64_t p0          # bytes 0..7 of the key, big-endian, zero padded
    uint64_t p1          # bytes 8..15
    const unsigned char* p
    Py_ssize_t n


cdef inline uint64_t _prefix(const unsigned char* p, Py_ssize_t n, Py_ssize_t off) noexcept nogil:
    # Zero padding keeps the order: where a padded prefix differs from another key's
    # real bytes, the shorter key is a prefix of the longer one up to zeros, so it sorts first.
    cdef uint64_t x = 0
    cdef Py_ssize_t i
    if n >= off + 8:
        return get_u64(p + off)
    for i in range(8):
        x <<= 8
        if off + i < n:
            x |= p[off + i]
    return x


cdef inline int _cmp(const Ent* a, const Ent* b) noexcept nogil:
    if a.p0 != b.p0:
        return -1 if a.p0 < b.p0 else 1
    if a.p1 != b.p1:
        return -1 if a.p1 < b.p1 else 1
    return cmp_bytes(a.p, a.n, b.p, b.n)


cdef void _msort(Ent* a, Ent* tmp, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j, k, m
    cdef Ent x
    if n <= 16:
        for i in range(1, n):
            if _cmp(&a[i - 1], &a[i]) <= 0:
                continue
            x = a[i]
            j = i
            while j > 0 and _cmp(&a[j - 1], &x) > 0:
                a[j] = a[j - 1]
                j -= 1
            a[j] = x
        return
    m = n // 2
    _msort(a, tmp, m)
    _msort(a + m, tmp, n - m)
    if _cmp(&a[m - 1], &a[m]) <= 0:
        return                                 # already in order: nothing to merge
    memcpy(tmp, a, m * sizeof(Ent))
    i = 0
    j = m
    k = 0
    while i < m and j < n:
        if _cmp(&a[j], &tmp[i]) < 0:
            a[k] = a[j]
            j += 1
        else:
            a[k] = tmp[i]
            i += 1
        k += 1
    while i < m:
        a[k] = tmp[i]
        i += 1
        k += 1


cdef enum:
    MAX_RUNS = 16
    REST = MAX_RUNS


cdef void _merge_pass(Ent* src, Ent* dst, Py_ssize_t* starts, Py_ssize_t* nseg) noexcept nogil:
    # Merge adjacent segment pairs of src into dst; starts[0..nseg] are segment bounds.
    cdef Py_ssize_t s, i, j, ie, je, k, out = 0
    s = 0
    while s < nseg[0]:
        i = starts[s]
        if s + 1 >= nseg[0]:
            memcpy(dst + i, src + i, (starts[s + 1] - i) * sizeof(Ent))
            starts[out] = i
            out += 1
            s += 1
            continue
        ie = starts[s + 1]
        j = ie
        je = starts[s + 2]
        k = i
        starts[out] = i
        out += 1
        if _cmp(&src[ie - 1], &src[j]) <= 0:
            memcpy(dst + i, src + i, (je - i) * sizeof(Ent))
        else:
            while i < ie and j < je:
                if _cmp(&src[j], &src[i]) < 0:
                    dst[k] = src[j]
                    j += 1
                else:
                    dst[k] = src[i]
                    i += 1
                k += 1
            if i < ie:
                memcpy(dst + k, src + i, (ie - i) * sizeof(Ent))
            if j < je:
                memcpy(dst + k, src + j, (je - j) * sizeof(Ent))
        s += 2
    starts[out] = starts[nseg[0]]
    nseg[0] = out


cdef Ent* _sort(Ent* a, Ent* b, Ent* c, unsigned char* rid, Py_ssize_t n) noexcept nogil:
    # Sort a[0:n]; b and c are scratch of n entries, rid of n bytes. Returns a, b or c.
    cdef Ent tails[MAX_RUNS]
    cdef int order[MAX_RUNS]          # run id of tails[r]; tails ascend
    cdef Py_ssize_t count[MAX_RUNS + 1]
    cdef Py_ssize_t starts[MAX_RUNS + 2]
    cdef Py_ssize_t fill[MAX_RUNS + 1]
    cdef int nr = 0, r, q
    cdef Py_ssize_t i, nseg
    cdef Ent* src
    cdef Ent* dst
    cdef Ent* t
    for r in range(MAX_RUNS + 1):
        count[r] = 0
    for i in range(n):
        r = nr - 1
        while r >= 0 and _cmp(&tails[r], &a[i]) > 0:
            r -= 1
        if r >= 0:
            tails[r] = a[i]
            rid[i] = <unsigned char>order[r]
        elif nr < MAX_RUNS:
            # Smaller than every run's last key: a new run, first in tail order.
            for q in range(nr, 0, -1):
                tails[q] = tails[q - 1]
                order[q] = order[q - 1]
            tails[0] = a[i]
            order[0] = nr
            rid[i] = <unsigned char>nr
            nr += 1
        else:
            rid[i] = REST
        count[rid[i]] += 1
    # Lay the runs out one after another in b (stable), then the rest.
    nseg = 0
    fill[0] = 0
    for r in range(nr):
        starts[nseg] = fill[r]
        nseg += 1
        fill[r + 1] = fill[r] + count[r]
    fill[REST] = fill[nr]
    for i in range(n):
        r = rid[i]
        b[fill[r]] = a[i]
        fill[r] += 1
    if count[REST]:
        starts[nseg] = n - count[REST]
        _msort(b + starts[nseg], a, count[REST])
        nseg += 1
    starts[nseg] = n
    src = b
    dst = c
    while nseg > 1:
        _merge_pass(src, dst, starts, &nseg)
        t = src
        src = dst
        dst = t
    return src


def sort_keys(list key_lists):
    """One sorted, duplicate-free ``KeyBlock`` of the ``bytes`` keys of every list in
    ``key_lists`` (``KeyBlock.from_keys`` of their concatenation).

    >>> sort_keys([[b"b", b"a"], [b"c", b"a"]]).keys()
    [b'a', b'b', b'c']
    """
    cdef Py_ssize_t n = 0, i = 0, total = 0, w, kept, ln
    cdef list keys
    cdef Ent* ents
    cdef Ent* out
    cdef unsigned char* rid
    cdef bytes data, offs
    cdef unsigned char* d
    cdef uint32_t* o
    cdef uint32_t pos = 0
    for keys in key_lists:
        n += len(keys)
    ents = <Ent*>PyMem_Malloc((3 * n + 1) * sizeof(Ent) + n + 1)
    if ents == NULL:
        raise MemoryError()
    rid = <unsigned char*>(ents + 3 * n + 1)
    try:
        for keys in key_lists:
            for k in keys:
                if type(k) is not bytes:
                    raise TypeError(f"keys must be bytes, got {type(k).__name__}")
                ents[i].p = <const unsigned char*>PyBytes_AS_STRING(k)
                ents[i].n = PyBytes_GET_SIZE(k)
                ents[i].p0 = _prefix(ents[i].p, ents[i].n, 0)
                ents[i].p1 = _prefix(ents[i].p, ents[i].n, 8)
                total += ents[i].n
                i += 1
        if total > MAX_BLOCK_BYTES:
            raise OverflowError(f"key block of {total} bytes exceeds 4 GiB")
        with nogil:
            out = _sort(ents, ents + n, ents + 2 * n, rid, n)
        data = PyBytes_FromStringAndSize(NULL, total)
        offs = PyBytes_FromStringAndSize(NULL, (n + 1) * 4)
        d = <unsigned char*>PyBytes_AS_STRING(data)
        o = <uint32_t*>PyBytes_AS_STRING(offs)
        kept = 0
        for w in range(n):
            if w > 0 and _cmp(&out[w - 1], &out[w]) == 0:
                continue
            ln = out[w].n
            o[kept] = pos
            memcpy(d + pos, out[w].p, ln)
            pos += <uint32_t>ln
            kept += 1
        o[kept] = pos
    finally:
        PyMem_Free(ents)
    if kept != n:
        data = data[:pos]
        offs = offs[:(kept + 1) * 4]
    return make_block(data, offs, kept)
