# cython: language_level=3
"""Index segments: sorted key blocks, leaf and directory encodings, the merge kernel.

Keys are opaque, order-preserving byte strings (see ``codec``); this module only
orders, stores and merges them. Three shapes:

- ``KeyBlock``: an immutable sorted run of keys in one buffer (a decoded leaf, a
  novelty run). Binary search and merges work on raw pointers, GIL released.
- leaf segment bytes: ``b"L" ver u32:n`` then per key ``varint shared, varint
  suffix_len, suffix`` (prefix compression: keys of one entity share 16+ bytes).
- directory segment bytes: ``b"D" ver u8:level u32:n`` then per child ``varint
  shared, varint suffix_len, suffix (first key), 16-byte id, varint count``.

>>> kb = KeyBlock.from_keys([b"b", b"a", b"c", b"a"])
>>> list(kb), kb.lower_bound(b"b")
([b'a', b'b', b'c'], 1)
>>> decode_leaf(encode_leaf(kb)).keys() == kb.keys()
True
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdlib cimport malloc, calloc, free
from cpython.ref cimport Py_XDECREF
from libc.string cimport memcpy, memcmp
from libc.stdint cimport uint32_t, int64_t, uint64_t, uint8_t

from fastdatomic._core.varint cimport put_varint, get_varint
from fastdatomic.errors import StorageCorruptError

LEAF_MAX = 4096      # datoms per leaf segment ("a few thousand")
DIR_MAX = 1024       # children per directory segment (wide nodes, shallow trees)
SEGMENT_VERSION = 1
ID_SIZE = 16

cdef Py_ssize_t MAX_BLOCK_BYTES = 0xFFFFFFFF


cdef KeyBlock make_block(bytes data, bytes offs, Py_ssize_t n):
    cdef KeyBlock kb = KeyBlock.__new__(KeyBlock)
    kb._data = data
    kb._offs = offs
    kb.n = n
    kb.base = <const unsigned char*>PyBytes_AS_STRING(data)
    kb.offs = <const uint32_t*>PyBytes_AS_STRING(offs)
    return kb


cdef Py_ssize_t lower_bound(const unsigned char* base, const uint32_t* offs,
                            Py_ssize_t lo, Py_ssize_t hi,
                            const unsigned char* k, Py_ssize_t kn) noexcept nogil:
    # First index in [lo, hi) whose key is >= k.
    cdef Py_ssize_t mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if cmp_keys(base + offs[mid], offs[mid + 1] - offs[mid], k, kn) < 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef Py_ssize_t upper_bound(const unsigned char* base, const uint32_t* offs,
                            Py_ssize_t lo, Py_ssize_t hi,
                            const unsigned char* k, Py_ssize_t kn) noexcept nogil:
    # First index in [lo, hi) whose key is > k.
    cdef Py_ssize_t mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if cmp_keys(base + offs[mid], offs[mid + 1] - offs[mid], k, kn) <= 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef KeyBlock _pack_sorted(list keys):
    cdef Py_ssize_t n = len(keys), i, total = 0, ln
    cdef bytes k
    for k in keys:
        total += PyBytes_GET_SIZE(k)
    if total > MAX_BLOCK_BYTES:
        raise OverflowError(f"key block of {total} bytes exceeds 4 GiB")
    cdef bytes data = PyBytes_FromStringAndSize(NULL, total)
    cdef bytes offs = PyBytes_FromStringAndSize(NULL, (n + 1) * 4)
    cdef unsigned char* d = <unsigned char*>PyBytes_AS_STRING(data)
    cdef uint32_t* o = <uint32_t*>PyBytes_AS_STRING(offs)
    cdef uint32_t pos = 0
    for i in range(n):
        k = <bytes>keys[i]
        ln = PyBytes_GET_SIZE(k)
        o[i] = pos
        memcpy(d + pos, PyBytes_AS_STRING(k), ln)
        pos += <uint32_t>ln
    o[n] = pos
    return make_block(data, offs, n)


EMPTY = None


cdef class KeyBlock:
    """An immutable, sorted, duplicate-free run of keys.

    >>> kb = KeyBlock.from_keys([b"k2", b"k1"])
    >>> len(kb), kb[0], kb.upper_bound(b"k1")
    (2, b'k1', 1)
    """

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.vals != NULL:
            for i in range(self.n):
                Py_XDECREF(self.vals[i])
            free(self.vals)
            self.vals = NULL

    @staticmethod
    def from_keys(keys):
        """Sort and de-duplicate any iterable of ``bytes`` keys into a block.

        >>> KeyBlock.from_keys([b"z", b"a", b"z"]).keys()
        [b'a', b'z']
        """
        cdef list ks = sorted(keys)
        cdef list out = []
        cdef object prev = None
        for k in ks:
            if type(k) is not bytes:
                raise TypeError(f"keys must be bytes, got {type(k).__name__}")
            if k != prev:
                out.append(k)
                prev = k
        return _pack_sorted(out)

    @staticmethod
    def from_sorted(list keys):
        """Pack keys that are already strictly ascending (checked).

        >>> len(KeyBlock.from_sorted([b"a", b"b"]))
        2
        """
        cdef Py_ssize_t i
        for i in range(1, len(keys)):
            if not (keys[i - 1] < keys[i]):
                raise ValueError(f"keys not strictly ascending at position {i}")
        return _pack_sorted(keys)

    @staticmethod
    def empty():
        """The empty block.

        >>> len(KeyBlock.empty())
        0
        """
        return _pack_sorted([])

    def __len__(self):
        return self.n

    def __getitem__(self, Py_ssize_t i):
        if i < 0:
            i += self.n
        if i < 0 or i >= self.n:
            raise IndexError("key block index out of range")
        return PyBytes_FromStringAndSize(<const char*>(self.base + self.offs[i]),
                                         self.offs[i + 1] - self.offs[i])

    def __iter__(self):
        cdef Py_ssize_t i
        for i in range(self.n):
            yield PyBytes_FromStringAndSize(<const char*>(self.base + self.offs[i]),
                                            self.offs[i + 1] - self.offs[i])

    def keys(self):
        """All keys as a list of ``bytes``."""
        return list(self)

    @property
    def nbytes(self):
        """Bytes of this block's keys plus offsets (a view counts only its own part)."""
        if self.n == 0:
            return 4
        return (self.offs[self.n] - self.offs[0]) + (self.n + 1) * 4

    def lower_bound(self, bytes k, Py_ssize_t lo=0, Py_ssize_t hi=-1):
        """First position in ``[lo, hi)`` whose key is ``>= k``."""
        if hi < 0 or hi > self.n:
            hi = self.n
        return lower_bound(self.base, self.offs, lo, hi,
                           <const unsigned char*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k))

    def upper_bound(self, bytes k, Py_ssize_t lo=0, Py_ssize_t hi=-1):
        """First position in ``[lo, hi)`` whose key is ``> k``."""
        if hi < 0 or hi > self.n:
            hi = self.n
        return upper_bound(self.base, self.offs, lo, hi,
                           <const unsigned char*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k))

    def slice(self, Py_ssize_t i, Py_ssize_t j):
        """A copy of keys ``[i, j)`` as a new block."""
        return slice_block(self, i, j)

    def __reduce__(self):
        return (KeyBlock.from_sorted, (self.keys(),))

    def __repr__(self):
        return f"<KeyBlock n={self.n} bytes={(self.offs[self.n] - self.offs[0]) if self.n else 0}>"


cpdef KeyBlock slice_block(KeyBlock kb, Py_ssize_t i, Py_ssize_t j):
    """Keys ``[i, j)`` of ``kb`` copied into a new block (offsets rebased).

    >>> slice_block(KeyBlock.from_keys([b"a", b"b", b"c"]), 1, 3).keys()
    [b'b', b'c']
    """
    if i < 0:
        i = 0
    if j > kb.n:
        j = kb.n
    if j < i:
        j = i
    cdef Py_ssize_t n = j - i, x
    cdef uint32_t start = kb.offs[i] if n else 0
    cdef Py_ssize_t total = (kb.offs[j] - start) if n else 0
    cdef bytes data = PyBytes_FromStringAndSize(<const char*>(kb.base + start), total)
    cdef bytes offs = PyBytes_FromStringAndSize(NULL, (n + 1) * 4)
    cdef uint32_t* o = <uint32_t*>PyBytes_AS_STRING(offs)
    with nogil:
        for x in range(n + 1):
            o[x] = kb.offs[i + x] - start if n else 0
    return make_block(data, offs, n)


cpdef KeyBlock merge_blocks(KeyBlock a, KeyBlock b,
                            Py_ssize_t alo=0, Py_ssize_t ahi=-1,
                            Py_ssize_t blo=0, Py_ssize_t bhi=-1):
    """Merge ``a[alo:ahi]`` and ``b[blo:bhi]`` into one sorted block (equal keys kept once).

    The copy loop runs without the GIL: this is the indexing job's inner loop.

    >>> merge_blocks(KeyBlock.from_keys([b"a", b"c"]), KeyBlock.from_keys([b"b", b"c"])).keys()
    [b'a', b'b', b'c']
    """
    if ahi < 0 or ahi > a.n:
        ahi = a.n
    if bhi < 0 or bhi > b.n:
        bhi = b.n
    if alo > ahi:
        alo = ahi
    if blo > bhi:
        blo = bhi
    cdef Py_ssize_t na = ahi - alo, nb = bhi - blo
    cdef Py_ssize_t abytes = (a.offs[ahi] - a.offs[alo]) if na else 0
    cdef Py_ssize_t bbytes = (b.offs[bhi] - b.offs[blo]) if nb else 0
    if abytes + bbytes > MAX_BLOCK_BYTES:
        raise OverflowError("merged key block exceeds 4 GiB")
    cdef bytes data = PyBytes_FromStringAndSize(NULL, abytes + bbytes)
    cdef bytes offs = PyBytes_FromStringAndSize(NULL, (na + nb + 1) * 4)
    cdef unsigned char* d = <unsigned char*>PyBytes_AS_STRING(data)
    cdef uint32_t* o = <uint32_t*>PyBytes_AS_STRING(offs)
    cdef const unsigned char* ab = a.base
    cdef const unsigned char* bb = b.base
    cdef const uint32_t* ao = a.offs
    cdef const uint32_t* bo = b.offs
    cdef Py_ssize_t i = alo, j = blo, n = 0, ln, stop, x
    cdef uint32_t pos = 0, src0
    cdef int c
    with nogil:
        if nb * 16 < na:
            # Galloping: few novelty keys into a big leaf. Copy each run of `a` keys before
            # the next `b` key with one memcpy and rebase its offsets.
            while j < bhi:
                stop = lower_bound(ab, ao, i, ahi, bb + bo[j], bo[j + 1] - bo[j])
                if stop > i:
                    src0 = ao[i]
                    memcpy(d + pos, ab + src0, ao[stop] - src0)
                    for x in range(i, stop):
                        o[n] = pos + (ao[x] - src0)
                        n += 1
                    pos += ao[stop] - src0
                    i = stop
                if i < ahi and cmp_bytes(ab + ao[i], ao[i + 1] - ao[i], bb + bo[j], bo[j + 1] - bo[j]) == 0:
                    i += 1   # the same key in both: keep one
                ln = bo[j + 1] - bo[j]
                o[n] = pos
                memcpy(d + pos, bb + bo[j], ln)
                pos += <uint32_t>ln
                n += 1
                j += 1
        while i < ahi and j < bhi:
            c = cmp_bytes(ab + ao[i], ao[i + 1] - ao[i], bb + bo[j], bo[j + 1] - bo[j])
            o[n] = pos
            if c <= 0:
                ln = ao[i + 1] - ao[i]
                memcpy(d + pos, ab + ao[i], ln)
                i += 1
                if c == 0:
                    j += 1
            else:
                ln = bo[j + 1] - bo[j]
                memcpy(d + pos, bb + bo[j], ln)
                j += 1
            pos += <uint32_t>ln
            n += 1
        while i < ahi:
            ln = ao[i + 1] - ao[i]
            o[n] = pos
            memcpy(d + pos, ab + ao[i], ln)
            pos += <uint32_t>ln
            i += 1
            n += 1
        while j < bhi:
            ln = bo[j + 1] - bo[j]
            o[n] = pos
            memcpy(d + pos, bb + bo[j], ln)
            pos += <uint32_t>ln
            j += 1
            n += 1
        o[n] = pos
    if n != na + nb:  # duplicates were dropped: trim the buffers
        data = data[:pos]
        offs = offs[:(n + 1) * 4]
    return make_block(data, offs, n)


cdef KeyBlock view_block(KeyBlock kb, Py_ssize_t i, Py_ssize_t j):
    # Keys [i, j) without copying: offsets are absolute positions in the shared buffer,
    # so a view is the parent's buffers with its offset pointer moved to i.
    cdef KeyBlock v = KeyBlock.__new__(KeyBlock)
    v._data = kb._data
    v._offs = kb._offs
    v.base = kb.base
    v.offs = kb.offs + i
    v.n = j - i
    return v


def split_block(KeyBlock kb, Py_ssize_t max_n):
    """Cut a block into near-equal consecutive blocks of at most ``max_n`` keys.

    The parts are zero-copy views sharing ``kb``'s buffers (the indexing job splits every
    overfull leaf, so a copy here would double its memory traffic).

    >>> [len(b) for b in split_block(KeyBlock.from_keys([bytes([i]) for i in range(10)]), 4)]
    [4, 3, 3]
    """
    if kb.n <= max_n:
        return [kb]
    cdef Py_ssize_t parts = (kb.n + max_n - 1) // max_n
    cdef Py_ssize_t base = kb.n // parts, extra = kb.n % parts, start = 0, size, p
    out = []
    for p in range(parts):
        size = base + (1 if p < extra else 0)
        out.append(view_block(kb, start, start + size))
        start += size
    return out


# --- segment encodings ---------------------------------------------------------

cdef inline Py_ssize_t shared_prefix(const unsigned char* a, Py_ssize_t na,
                                     const unsigned char* b, Py_ssize_t nb) noexcept nogil:
    # 8 bytes at a time first: neighbouring keys usually share 16+ bytes (e and a).
    cdef Py_ssize_t m = na if na < nb else nb, i = 0
    cdef uint64_t wa, wb
    while i + 8 <= m:
        memcpy(&wa, a + i, 8)
        memcpy(&wb, b + i, 8)
        if wa != wb:
            break
        i += 8
    while i < m and a[i] == b[i]:
        i += 1
    return i


cdef Py_ssize_t _write_keys(unsigned char* out, const unsigned char* base, const uint32_t* offs,
                            Py_ssize_t n) noexcept nogil:
    # Prefix-compressed keys; returns bytes written.
    cdef Py_ssize_t i, w = 0, ln, sh, pln = 0
    cdef const unsigned char* prev = NULL
    cdef const unsigned char* k
    for i in range(n):
        k = base + offs[i]
        ln = offs[i + 1] - offs[i]
        sh = shared_prefix(prev, pln, k, ln) if prev != NULL else 0
        w += put_varint(out + w, sh)
        w += put_varint(out + w, ln - sh)
        memcpy(out + w, k + sh, ln - sh)
        w += ln - sh
        prev = k
        pln = ln
    return w


def encode_leaf(KeyBlock kb):
    """Encode a block as leaf-segment bytes (prefix-compressed).

    >>> encode_leaf(KeyBlock.from_keys([b"ab", b"ac"]))[:2]
    b'L\\x01'
    """
    cdef Py_ssize_t bound = 6 + kb.n * 20 + ((kb.offs[kb.n] - kb.offs[0]) if kb.n else 0), w
    cdef unsigned char* buf = <unsigned char*>malloc(bound)
    if buf == NULL:
        raise MemoryError()
    try:
        buf[0] = b'L'
        buf[1] = SEGMENT_VERSION
        (<uint32_t*>(buf + 2))[0] = <uint32_t>kb.n
        with nogil:
            w = 6 + _write_keys(buf + 6, kb.base, kb.offs, kb.n)
        return PyBytes_FromStringAndSize(<const char*>buf, w)
    finally:
        free(buf)


cdef Py_ssize_t _scan_keys(const unsigned char* p, Py_ssize_t left, Py_ssize_t n,
                           Py_ssize_t* total, Py_ssize_t* consumed) noexcept nogil:
    # First pass over prefix-compressed keys: validate and size. 0 ok, else error code.
    cdef Py_ssize_t i, r, pos = 0, pln = 0
    cdef uint64_t sh, sl
    total[0] = 0
    for i in range(n):
        r = get_varint(p + pos, left - pos, &sh)
        if r < 0:
            return 1
        pos += r
        r = get_varint(p + pos, left - pos, &sl)
        if r < 0:
            return 1
        pos += r
        if sh > <uint64_t>pln or sl > <uint64_t>(left - pos):
            return 2
        pos += sl
        pln = sh + sl
        total[0] += pln
    consumed[0] = pos
    return 0


cdef void _fill_keys(const unsigned char* p, Py_ssize_t n, unsigned char* d, uint32_t* o,
                     Py_ssize_t stride, unsigned char* ids, int64_t* counts) noexcept nogil:
    # Second pass: expand prefixes into d/o. Directory entries carry an id and a count.
    cdef Py_ssize_t i, pos = 0, w = 0, pln = 0, r
    cdef uint64_t sh = 0, sl = 0, cnt = 0
    for i in range(n):
        pos += get_varint(p + pos, 10, &sh)
        pos += get_varint(p + pos, 10, &sl)
        o[i] = <uint32_t>w
        if sh:
            memcpy(d + w, d + w - pln, sh)
        memcpy(d + w + sh, p + pos, sl)
        pos += sl
        pln = sh + sl
        w += pln
        if stride:
            memcpy(ids + i * 16, p + pos, 16)
            pos += 16
            pos += get_varint(p + pos, 10, &cnt)
            counts[i] = <int64_t>cnt
    o[n] = <uint32_t>w


def decode_leaf(bytes seg):
    """Decode leaf-segment bytes into a ``KeyBlock``; corrupt bytes raise ``StorageCorruptError``.

    >>> decode_leaf(encode_leaf(KeyBlock.from_keys([b"x"]))).keys()
    [b'x']
    """
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(seg)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(seg), n, total, consumed
    cdef int err
    if size < 6 or p[0] != b'L':
        raise StorageCorruptError(f"not a leaf segment ({size} bytes, tag {p[0] if size else None!r})")
    if p[1] != SEGMENT_VERSION:
        raise StorageCorruptError(f"leaf segment version {p[1]} is not supported (expected {SEGMENT_VERSION})")
    n = (<const uint32_t*>(p + 2))[0]
    with nogil:
        err = _scan_keys(p + 6, size - 6, n, &total, &consumed)
    if err or consumed != size - 6:
        raise StorageCorruptError(f"leaf segment of {n} keys is truncated or malformed")
    cdef bytes data = PyBytes_FromStringAndSize(NULL, total)
    cdef bytes offs = PyBytes_FromStringAndSize(NULL, (n + 1) * 4)
    cdef unsigned char* dp = <unsigned char*>PyBytes_AS_STRING(data)
    cdef uint32_t* op = <uint32_t*>PyBytes_AS_STRING(offs)
    with nogil:
        _fill_keys(p + 6, n, dp, op, 0, NULL, NULL)
    return make_block(data, offs, n)


def encode_dir(int level, list entries):
    """Encode a directory segment from ``[(first_key, child_id, datom_count), ...]``.

    ``level`` 1 means the children are leaves.

    >>> d = decode_dir(encode_dir(1, [(b"a", bytes(16), 3), (b"b", bytes(16), 4)]))
    >>> d.level, len(d), d.total, d.child_for(b"az")
    (1, 2, 7, 0)
    """
    cdef Py_ssize_t n = len(entries), i, total = 0, w
    for e in entries:
        if len(e[1]) != ID_SIZE:
            raise ValueError("segment ids are 16 bytes")
    keys = _pack_sorted([e[0] for e in entries])
    cdef KeyBlock kb = <KeyBlock>keys
    cdef Py_ssize_t bound = 7 + n * 40 + (kb.offs[n] if n else 0)
    cdef unsigned char* buf = <unsigned char*>malloc(bound)
    if buf == NULL:
        raise MemoryError()
    cdef const unsigned char* prev = NULL
    cdef const unsigned char* k
    cdef Py_ssize_t ln, sh, pln = 0
    try:
        buf[0] = b'D'
        buf[1] = SEGMENT_VERSION
        buf[2] = <unsigned char>level
        (<uint32_t*>(buf + 3))[0] = <uint32_t>n
        w = 7
        for i in range(n):
            k = kb.base + kb.offs[i]
            ln = kb.offs[i + 1] - kb.offs[i]
            sh = shared_prefix(prev, pln, k, ln) if prev != NULL else 0
            w += put_varint(buf + w, sh)
            w += put_varint(buf + w, ln - sh)
            memcpy(buf + w, k + sh, ln - sh)
            w += ln - sh
            memcpy(buf + w, PyBytes_AS_STRING(entries[i][1]), 16)
            w += 16
            w += put_varint(buf + w, <uint64_t>entries[i][2])
            prev = k
            pln = ln
        return PyBytes_FromStringAndSize(<const char*>buf, w)
    finally:
        free(buf)


cdef Py_ssize_t _scan_dir(const unsigned char* p, Py_ssize_t left, Py_ssize_t n,
                          Py_ssize_t* total) noexcept nogil:
    cdef Py_ssize_t i, r, pos = 0, pln = 0
    cdef uint64_t sh = 0, sl = 0, cnt = 0
    total[0] = 0
    for i in range(n):
        r = get_varint(p + pos, left - pos, &sh)
        if r < 0:
            return -1
        pos += r
        r = get_varint(p + pos, left - pos, &sl)
        if r < 0:
            return -1
        pos += r
        if sh > <uint64_t>pln or sl + 16 > <uint64_t>(left - pos):
            return -1
        pos += sl + 16
        r = get_varint(p + pos, left - pos, &cnt)
        if r < 0:
            return -1
        pos += r
        pln = sh + sl
        total[0] += pln
    return pos


def decode_dir(bytes seg):
    """Decode directory-segment bytes into a ``DirNode``.

    >>> decode_dir(encode_dir(2, [(b"k", b"i" * 16, 9)])).child_id(0)
    b'iiiiiiiiiiiiiiii'
    """
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(seg)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(seg), n, total, consumed
    if size < 7 or p[0] != b'D':
        raise StorageCorruptError(f"not a directory segment ({size} bytes)")
    if p[1] != SEGMENT_VERSION:
        raise StorageCorruptError(f"directory segment version {p[1]} is not supported")
    n = (<const uint32_t*>(p + 3))[0]
    with nogil:
        consumed = _scan_dir(p + 7, size - 7, n, &total)
    if consumed != size - 7:
        raise StorageCorruptError(f"directory segment of {n} entries is truncated or malformed")
    cdef bytes data = PyBytes_FromStringAndSize(NULL, total)
    cdef bytes offs = PyBytes_FromStringAndSize(NULL, (n + 1) * 4)
    cdef bytes ids = PyBytes_FromStringAndSize(NULL, n * 16)
    cdef bytes counts = PyBytes_FromStringAndSize(NULL, n * 8)
    cdef unsigned char* dp = <unsigned char*>PyBytes_AS_STRING(data)
    cdef uint32_t* op = <uint32_t*>PyBytes_AS_STRING(offs)
    cdef unsigned char* ip = <unsigned char*>PyBytes_AS_STRING(ids)
    cdef int64_t* cp = <int64_t*>PyBytes_AS_STRING(counts)
    with nogil:
        _fill_keys(p + 7, n, dp, op, 16, ip, cp)
    cdef DirNode node = DirNode.__new__(DirNode)
    node.level = p[2]
    node.keys = make_block(data, offs, n)
    node._ids = ids
    node._counts = counts
    node.counts_p = <const int64_t*>PyBytes_AS_STRING(counts)
    return node


def segment_kind(bytes seg):
    """``"leaf"`` or ``"dir"`` from a segment's first byte (``None`` if neither)."""
    if seg[:1] == b"L":
        return "leaf"
    if seg[:1] == b"D":
        return "dir"
    return None


cdef class DirNode:
    """A directory segment: child ``i`` covers keys from ``first_key(i)`` up to ``first_key(i+1)``.

    >>> d = decode_dir(encode_dir(1, [(b"a", bytes(16), 1), (b"m", bytes(16), 2)]))
    >>> d.child_for(b"zz"), d.child_for(b"0"), d.first_key(1)
    (1, 0, b'm')
    """

    def __len__(self):
        return self.keys.n

    def child_for(self, bytes k):
        """Index of the child whose range holds ``k`` (keys before the first go to child 0)."""
        cdef Py_ssize_t i = upper_bound(self.keys.base, self.keys.offs, 0, self.keys.n,
                                        <const unsigned char*>PyBytes_AS_STRING(k),
                                        PyBytes_GET_SIZE(k)) - 1
        return i if i > 0 else 0

    def first_key(self, Py_ssize_t i):
        """The first key of child ``i``."""
        return self.keys[i]

    def child_id(self, Py_ssize_t i):
        """The 16-byte segment id of child ``i``."""
        if i < 0 or i >= self.keys.n:
            raise IndexError("directory index out of range")
        return self._ids[i * 16:(i + 1) * 16]

    def child_count(self, Py_ssize_t i):
        """Datoms under child ``i``."""
        if i < 0 or i >= self.keys.n:
            raise IndexError("directory index out of range")
        return self.counts_p[i]

    def count_range(self, Py_ssize_t i, Py_ssize_t j):
        """Datoms under children ``[i, j)`` (a cheap cardinality estimate for the planner)."""
        cdef int64_t s = 0
        cdef Py_ssize_t x
        if i < 0:
            i = 0
        if j > self.keys.n:
            j = self.keys.n
        for x in range(i, j):
            s += self.counts_p[x]
        return s

    @property
    def total(self):
        """Datoms under the whole node."""
        return self.count_range(0, self.keys.n)

    def entries(self):
        """``[(first_key, child_id, count), ...]`` as Python objects."""
        return [(self.keys[i], self.child_id(i), self.counts_p[i]) for i in range(self.keys.n)]

    def __repr__(self):
        return f"<DirNode level={self.level} children={self.keys.n}>"


def push_run(tuple runs, list keys):
    """``(runs, nbytes)``: ``runs`` with a new sorted run made of ``keys`` appended, merging
    while the previous run is at most twice as long (keeps the number of runs logarithmic);
    ``nbytes`` is the new run's size.

    >>> r, _ = push_run((), [b"b", b"a"]); r, n = push_run(r, [b"c"])
    >>> [x.keys() for x in r], n
    ([[b'a', b'b', b'c']], 9)
    """
    cdef KeyBlock block = KeyBlock.from_keys(keys)
    cdef list out = list(runs)
    cdef Py_ssize_t n
    cdef object nbytes = block.nbytes
    out.append(block)
    # Explicit indices: this module is compiled with wraparound=False.
    n = len(out)
    while n >= 2 and (<KeyBlock>out[n - 2]).n <= 2 * (<KeyBlock>out[n - 1]).n:
        block = merge_blocks(<KeyBlock>out[n - 2], <KeyBlock>out[n - 1])
        del out[n - 2:n]
        out.append(block)
        n = len(out)
    return tuple(out), nbytes
