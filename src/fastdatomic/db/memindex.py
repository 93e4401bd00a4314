"""The memory index (novelty): datoms newer than the durable index, per index.

Novelty is kept as sorted runs per index; runs of similar size are merged (a
logarithmic method), so a read merges O(log n) runs with the tree. A
``MemoryIndex`` is immutable: adding returns a new one sharing the old runs, so
every older database value keeps reading exactly what it saw.

Runs are built lazily: ``add`` only links the transaction's keys to the previous
memory index, and the first read of ``runs`` sorts all keys added since the nearest
ancestor that has runs into ONE new run. A writer that is not read between
transactions (a bulk load, a stream of small transactions) so sorts and merges
once per many transactions instead of once per transaction; a value read after
every transaction costs what an eager run per transaction cost. Past ``FOLD_KEYS``
pending keys ``add`` builds the runs itself, which bounds the unsorted tail.
"""

from __future__ import annotations

from fastdatomic._core.codec import INDEX_EAVT, INDEX_AEVT, INDEX_AVET, INDEX_VAET
from fastdatomic._core.novelty import sort_keys
from fastdatomic._core.segment import KeyBlock, merge_blocks
from fastdatomic._core.scan import keys_after_tx

__all__ = ["MemoryIndex", "INDEXES", "FOLD_KEYS"]

INDEXES = (INDEX_EAVT, INDEX_AEVT, INDEX_AVET, INDEX_VAET)
_EMPTY_RUNS = ((), (), (), ())
FOLD_KEYS = 1 << 13        # pending EAVT keys past which add() builds the runs


def _run_nbytes(keys) -> int:
    # What KeyBlock.nbytes says of a run made of these (distinct) keys.
    return sum(map(len, keys)) + 4 * (len(keys) + 1)


def _push_run(runs: tuple, block: KeyBlock) -> tuple:
    # Append a run, merging while the previous one is at most twice as long: the number
    # of runs a read merges stays logarithmic.
    out = list(runs)
    out.append(block)
    n = len(out)
    while n >= 2 and len(out[n - 2]) <= 2 * len(out[n - 1]):
        out[n - 2:n] = [merge_blocks(out[n - 2], out[n - 1])]
        n -= 1
    return tuple(out)


class MemoryIndex:
    """Sorted runs of novelty keys for the four indexes.

    >>> from fastdatomic._core.codec import encode_key, TYPE_LONG
    >>> k = encode_key(INDEX_EAVT, 1, 2, TYPE_LONG, 3, 4, True)
    >>> mi = MemoryIndex.empty().add([[k], [], [], []])
    >>> mi.datom_count, len(MemoryIndex.empty().runs[0]), len(mi.runs[0])
    (1, 0, 1)
    """

    # _link is None once _runs is set; else (parent MemoryIndex, this add's 4 key lists).
    # Readers look at _link first and the builder sets _runs before clearing _link, so a
    # value read from two threads at once is built twice at worst, never seen half-built.
    __slots__ = ("_runs", "_link", "_pending", "datom_count", "nbytes")

    def __init__(self, runs: tuple, datom_count: int, nbytes: int):
        self._runs = runs
        self._link = None
        self._pending = 0
        self.datom_count = datom_count
        self.nbytes = nbytes

    @staticmethod
    def empty() -> "MemoryIndex":
        """A memory index holding nothing."""
        return MemoryIndex(_EMPTY_RUNS, 0, 0)

    def add(self, keys_by_index, nbytes: int | None = None) -> "MemoryIndex":
        """A new memory index with one transaction's keys added (4 lists of keys, index order).

        ``nbytes``, when the caller knows it, is what the new runs weigh
        (``KeySink.run_nbytes``); otherwise it is computed from the keys.
        """
        if nbytes is None:
            nbytes = sum(_run_nbytes(keys) for keys in keys_by_index if keys)
        new = MemoryIndex.__new__(MemoryIndex)
        new._runs = None
        new._link = (self, keys_by_index)
        new._pending = (self._pending if self._link is not None else 0) + len(keys_by_index[0])
        new.datom_count = self.datom_count + len(keys_by_index[0])
        new.nbytes = self.nbytes + nbytes
        if new._pending > FOLD_KEYS:
            new._build()
        return new

    @property
    def runs(self) -> tuple:
        """Per index, the tuple of sorted ``KeyBlock`` runs (built on first read)."""
        runs = self._runs
        if runs is None:
            runs = self._build()
        return runs

    def _build(self) -> tuple:
        pending = []
        node = self
        while True:
            link = node._link
            if link is None:
                base = node._runs
                break
            pending.append(link[1])
            node = link[0]
        pending.reverse()
        runs = list(base)
        for i in range(4):
            lists = [p[i] for p in pending if p[i]]
            if lists:
                runs[i] = _push_run(runs[i], sort_keys(lists))
        runs = tuple(runs)
        self._runs = runs
        self._link = None
        return runs

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
            if len(block):
                runs.append((block,))
                nbytes += block.nbytes
            else:
                runs.append(())     # no run, no bytes: an empty memory index weighs 0
            if i == INDEX_EAVT:
                count = len(block)
        return MemoryIndex(tuple(runs), count, nbytes)
