"""The memory index (novelty): datoms newer than the durable index, per index.

Each transaction adds one sorted run per index; runs of similar size are merged
(a logarithmic method), so a read merges O(log n) runs with the tree. A
``MemoryIndex`` is immutable: adding returns a new one sharing the old runs, so
every older database value keeps reading exactly what it saw.
"""

from __future__ import annotations

from fastdatomic._core.codec import INDEX_EAVT, INDEX_AEVT, INDEX_AVET, INDEX_VAET
from fastdatomic._core.segment import KeyBlock, merge_blocks, push_run
from fastdatomic._core.scan import keys_after_tx

__all__ = ["MemoryIndex", "INDEXES"]

INDEXES = (INDEX_EAVT, INDEX_AEVT, INDEX_AVET, INDEX_VAET)
_EMPTY_RUNS = ((), (), (), ())


class MemoryIndex:
    """Sorted runs of novelty keys for the four indexes.

    >>> from fastdatomic._core.codec import encode_key, TYPE_LONG
    >>> k = encode_key(INDEX_EAVT, 1, 2, TYPE_LONG, 3, 4, True)
    >>> mi = MemoryIndex.empty().add([[k], [], [], []])
    >>> mi.datom_count, len(MemoryIndex.empty().runs[0])
    (1, 0)
    """

    __slots__ = ("runs", "datom_count", "nbytes")

    def __init__(self, runs: tuple, datom_count: int, nbytes: int):
        self.runs = runs
        self.datom_count = datom_count
        self.nbytes = nbytes

    @staticmethod
    def empty() -> "MemoryIndex":
        """A memory index holding nothing."""
        return MemoryIndex(_EMPTY_RUNS, 0, 0)

    def add(self, keys_by_index) -> "MemoryIndex":
        """A new memory index with one transaction's keys added (4 lists of keys, index order)."""
        runs = list(self.runs)
        nbytes = self.nbytes
        for i, keys in enumerate(keys_by_index):
            if keys:
                runs[i], added = push_run(runs[i], keys)
                nbytes += added
        return MemoryIndex(tuple(runs), self.datom_count + len(keys_by_index[0]), nbytes)

    def merged(self, index: int) -> KeyBlock:
        """All novelty of one index as a single sorted block (input of the indexing job)."""
        runs = self.runs[index]
        if not runs:
            return KeyBlock.empty()
        out = runs[0]
        for r in runs[1:]:
            out = merge_blocks(out, r)
        return out

    def after(self, tx: int) -> "MemoryIndex":
        """Only the keys with a tx greater than ``tx`` (what a new durable index lacks)."""
        runs = []
        count = nbytes = 0
        for i in range(4):
            block = keys_after_tx(self.merged(i), tx)
            runs.append((block,) if len(block) else ())
            nbytes += block.nbytes
            if i == INDEX_EAVT:
                count = len(block)
        return MemoryIndex(tuple(runs), count, nbytes)
