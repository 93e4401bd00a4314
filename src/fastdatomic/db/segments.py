"""The segment store: decoded index segments by id, behind an LRU bounded in bytes.

Peers and transactors read immutable segments straight from storage; decoding a
leaf costs more than a lookup, so decoded nodes are cached (``object-cache-max``).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from fastdatomic._core.segment import decode_dir, decode_leaf, KeyBlock, DirNode
from fastdatomic.errors import StorageCorruptError

__all__ = ["SegmentStore", "new_segment_id", "DEFAULT_CACHE_BYTES"]

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
# What a cached segment costs against ``object-cache-max``: twice its encoded size (the
# decoded keys and offsets), plus the string values queries have decoded from a leaf
# and it keeps for the next query (``KeyBlock.vals_bytes``, counted when the leaf is
# next fetched).
CHARGE = 2


def new_segment_id() -> bytes:
    """A fresh 16-byte segment id (random: segments are written once, by one writer).

    >>> len(new_segment_id())
    16
    """
    return os.urandom(16)


class SegmentStore:
    """Decoded segments by id: an LRU of ``KeyBlock`` leaves and ``DirNode`` directories.

    >>> from fastdatomic.storage import open_storage
    >>> from fastdatomic._core.segment import encode_leaf
    >>> st = open_storage("mem", name="doc-segments")
    >>> st.put_blobs([(b"L" * 16, encode_leaf(KeyBlock.from_keys([b"k"])))])
    >>> SegmentStore(st).leaf(b"L" * 16).keys()
    [b'k']
    """

    def __init__(self, storage, cache_max_bytes: int = DEFAULT_CACHE_BYTES):
        self.storage = storage
        self.cache_max_bytes = cache_max_bytes
        self._cache: OrderedDict[bytes, object] = OrderedDict()
        self._sizes: dict[bytes, int] = {}
        self._vals: dict[bytes, int] = {}    # value-cache bytes charged per leaf
        self.cached_bytes = 0
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def _get(self, seg_id: bytes, decode):
        node = self._cache.get(seg_id)
        if node is not None:
            self.hits += 1
            try:
                self._cache.move_to_end(seg_id)
            except KeyError:  # evicted by another thread in between: harmless
                pass
            if type(node) is KeyBlock and node.vals_bytes != self._vals.get(seg_id, 0):
                self._charge_values(seg_id, node.vals_bytes)
            return node
        self.misses += 1
        raw = self.storage.get(seg_id)
        if raw is None:
            raise StorageCorruptError(
                f"segment {seg_id.hex()} is referenced by an index root but missing from storage",
                hint="the storage was changed outside fastdatomic, or gc-storage ran with a too-recent cutoff",
            )
        node = decode(raw)
        self._remember(seg_id, node, len(raw) * CHARGE)
        return node

    def _remember(self, seg_id: bytes, node, size: int):
        with self._lock:
            if seg_id in self._cache:
                return
            self._cache[seg_id] = node
            self._sizes[seg_id] = size
            self.cached_bytes += size
            self._evict()

    def _charge_values(self, seg_id: bytes, vals_bytes: int):
        # a leaf's value cache grew since it was last charged
        with self._lock:
            if seg_id not in self._sizes:
                return
            self.cached_bytes += vals_bytes - self._vals.get(seg_id, 0)
            self._vals[seg_id] = vals_bytes
            self._evict()

    def _evict(self):
        # the lock is held
        while self.cached_bytes > self.cache_max_bytes and len(self._cache) > 1:
            old, _ = self._cache.popitem(last=False)
            self.cached_bytes -= self._sizes.pop(old) + self._vals.pop(old, 0)

    def leaf(self, seg_id: bytes) -> KeyBlock:
        """The decoded leaf segment ``seg_id``."""
        return self._get(seg_id, decode_leaf)

    def dir(self, seg_id: bytes) -> DirNode:
        """The decoded directory segment ``seg_id``."""
        return self._get(seg_id, decode_dir)

    def add_written(self, seg_id: bytes, node, size: int):
        """Cache a segment this process has just written (saves a read-back)."""
        self._remember(seg_id, node, size * CHARGE)

    @property
    def hit_ratio(self) -> float:
        """Cache hits over lookups (ObjectCache metric)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
