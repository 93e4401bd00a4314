"""Prometheus metrics of the transactor, named after Datomic's (ARCHITECTURE §7).

One registry per transactor. Datomic's CamelCase names map to snake case with a
``fastdatomic_`` prefix, so dashboards translate line by line:

=====================  ===========================================
Datomic                fastdatomic
=====================  ===========================================
HeartbeatMsec          fastdatomic_heartbeat_msec (histogram)
HeartMonitorMsec       fastdatomic_heart_monitor_msec (gauge)
TransactionMsec        fastdatomic_transaction_msec (histogram)
TransactionBatch       fastdatomic_transaction_batch (histogram)
TransactionDatoms      fastdatomic_transaction_datoms (histogram)
TransactionBytes       fastdatomic_transaction_bytes (histogram)
LogWriteMsec           fastdatomic_log_write_msec (histogram)
StoragePutMsec         fastdatomic_storage_put_msec (histogram)
StorageGetMsec         fastdatomic_storage_get_msec (histogram)
IndexWrites            fastdatomic_index_writes (counter)
CreateEntireIndexMsec  fastdatomic_create_entire_index_msec (histogram)
MemoryIndexMB          fastdatomic_memory_index_mb (gauge)
ObjectCache            fastdatomic_object_cache_hit_ratio (gauge)
RemotePeers            fastdatomic_remote_peers (gauge)
Alarm*                 fastdatomic_alarm_total{alarm=...} (counter)
=====================  ===========================================

>>> m = TransactorMetrics()
>>> m.transaction(0.002); m.alarm("back-pressure")
>>> b"fastdatomic_transaction_msec_count 1.0" in m.exposition()
True
"""

from __future__ import annotations

import time
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["TransactorMetrics", "TimedReads"]

_MS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


class TransactorMetrics:
    """The transactor's metrics in one registry (``exposition()`` is the scrape text)."""

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.heartbeat_msec = Histogram("fastdatomic_heartbeat_msec",
                                        "Time between successive heartbeats of the active (ms)",
                                        buckets=(250, 500, 900, 950, 990, 1000, 1010, 1050, 1100,
                                                 1250, 1500, 2000, 5000, 5050, 5500, 10000),
                                        registry=r)
        self.heart_monitor_msec = Gauge("fastdatomic_heart_monitor_msec",
                                        "Standby: ms since the active's heartbeat last moved",
                                        registry=r)
        self.transaction_msec = Histogram("fastdatomic_transaction_msec",
                                          "Transaction time in the transactor, queue to ack (ms)",
                                          buckets=_MS, registry=r)
        self.transaction_batch = Histogram("fastdatomic_transaction_batch",
                                           "Transactions per group commit", buckets=_COUNTS,
                                           registry=r)
        self.transaction_datoms = Histogram("fastdatomic_transaction_datoms",
                                            "Datoms per group commit", buckets=_COUNTS, registry=r)
        self.transaction_bytes = Histogram("fastdatomic_transaction_bytes",
                                           "Log bytes per group commit",
                                           buckets=tuple(b * 64 for b in _COUNTS), registry=r)
        self.log_write_msec = Histogram("fastdatomic_log_write_msec",
                                        "Durable log commit time (ms)", buckets=_MS, registry=r)
        self.storage_put_msec = Histogram("fastdatomic_storage_put_msec",
                                          "Storage write time (ms)", buckets=_MS, registry=r)
        self.storage_get_msec = Histogram("fastdatomic_storage_get_msec",
                                          "Storage read time (ms)", buckets=_MS, registry=r)
        self.index_writes = Counter("fastdatomic_index_writes", "Indexing jobs completed",
                                    registry=r)
        self.create_entire_index_msec = Histogram("fastdatomic_create_entire_index_msec",
                                                  "Indexing job duration (ms)",
                                                  buckets=tuple(x * 10 for x in _MS), registry=r)
        self.memory_index_mb = Gauge("fastdatomic_memory_index_mb",
                                     "Novelty held in memory (MB)", registry=r)
        self.object_cache_hit_ratio = Gauge("fastdatomic_object_cache_hit_ratio",
                                            "Segment cache hit ratio", registry=r)
        self.remote_peers = Gauge("fastdatomic_remote_peers", "Connected, authenticated peers",
                                  registry=r)
        self.alarms = Counter("fastdatomic_alarm", "Alarms raised, by kind", ["alarm"],
                              registry=r)
        self.active = Gauge("fastdatomic_active", "1 when this transactor is the active one",
                            registry=r)

    def transaction(self, seconds: float):
        """Record one transaction's time from arrival to durable commit."""
        self.transaction_msec.observe(seconds * 1000.0)

    def transactions(self, seconds):
        """Record the times of a group commit's transactions at once: what ``transaction``
        does for each, with one lock round per bucket they fall in rather than two per
        transaction (a group commit holds up to ``group-commit-max`` of them).

        >>> m = TransactorMetrics(); m.transactions([0.0004, 0.003, 0.003]); text = m.exposition()
        >>> b'fastdatomic_transaction_msec_bucket{le="0.5"} 1.0' in text, b'_msec_count 3.0' in text
        (True, True)
        """
        return _observe_many(self.transaction_msec, [s * 1000.0 for s in seconds])

    def log_write(self, seconds: float, batch: int, nbytes: int, datoms: int):
        """Record one group commit."""
        ms = seconds * 1000.0
        self.log_write_msec.observe(ms)
        self.storage_put_msec.observe(ms)
        self.transaction_batch.observe(batch)
        self.transaction_bytes.observe(nbytes)
        self.transaction_datoms.observe(datoms)

    def indexed(self, seconds: float):
        """Record one finished indexing job."""
        self.index_writes.inc()
        self.create_entire_index_msec.observe(seconds * 1000.0)

    def memory_index(self, nbytes: int):
        self.memory_index_mb.set(nbytes / (1 << 20))

    def alarm(self, kind: str):
        """Count an alarm (``back-pressure``, ``heartbeat-late``, ``auth-failed``, ...)."""
        self.alarms.labels(alarm=kind).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


def _observe_many(histogram, amounts):
    # Histogram.observe for each amount (the first bucket whose bound is >= it), tallied.
    try:
        bounds, buckets, total = histogram._upper_bounds, histogram._buckets, histogram._sum
    except AttributeError:         # another prometheus_client: the public way
        for a in amounts:
            histogram.observe(a)
        return
    tally = [0] * len(bounds)
    for a in amounts:
        tally[bisect_left(bounds, a)] += 1
    total.inc(sum(amounts))
    for i, n in enumerate(tally):
        if n:
            buckets[i].inc(n)


class TimedReads:
    """A storage wrapper that times segment reads into ``fastdatomic_storage_get_msec``
    (Datomic's StorageGetMsec); everything else passes through.

    >>> from fastdatomic.storage import open_storage
    >>> m = TransactorMetrics(); st = TimedReads(open_storage("mem"), m)
    >>> st.get(b"nothing") is None, b"fastdatomic_storage_get_msec_count 1.0" in m.exposition()
    (True, True)
    """

    def __init__(self, storage, metrics: TransactorMetrics):
        self._storage = storage
        self._observe = metrics.storage_get_msec.observe

    def get(self, key):
        t0 = time.perf_counter()
        try:
            return self._storage.get(key)
        finally:
            self._observe((time.perf_counter() - t0) * 1000.0)

    def get_many(self, keys):
        t0 = time.perf_counter()
        try:
            return self._storage.get_many(keys)
        finally:
            self._observe((time.perf_counter() - t0) * 1000.0)

    def __getattr__(self, name):
        return getattr(self._storage, name)
