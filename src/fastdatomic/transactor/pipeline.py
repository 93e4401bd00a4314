"""The transaction pipeline: one writer at a time, group commit, background indexing, back-pressure.

Peers' transactions arrive on the event loop and queue here. The writer thread takes
everything pending (up to ``group-commit-max``), applies the transactions of each
database serially (each prepared against the previous one's result, Datomic's rules in
``db.tx``), and makes them durable in ONE fenced storage commit per database. Only then
are they published: novelty to every subscriber, in ``t`` order, then the acks
(ARCHITECTURE §4.1: ack means durable).

When the writer thread is idle and nothing is queued, the event loop does the same work
itself (``process_now``) with what every peer sent in one loop iteration: a lone
transaction then skips two thread hand-offs, to the writer and back (measured: 45-60 µs
of a 650 µs round trip). Bulk reads, catalog changes, and everything after a batch that
took more than a few milliseconds go to the writer thread, so a slow disk, transaction
function or database deletion never keeps the loop from serving peers for long. Either
way one lock (``writing``) admits one writer at a time, in arrival order.

When a database's memory index passes ``memory-index-threshold`` an indexing job builds
new segment trees on its own thread (the merge kernel releases the GIL) while
transactions go on; the writer adopts the result with a fenced root CAS. Past
``memory-index-max`` the writer holds that database's transactions back until the job is
done (back-pressure with an alarm), so memory stays bounded. A job that fails (alarm
``indexing-failed``) is tried again from a timer, after a back-off that doubles while
jobs keep failing (``catalog.index_retry_delay``); held-back transactions wait for it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from operator import itemgetter

from fastdatomic.db import catalog
from fastdatomic.db import tx as txmod
from fastdatomic.db.indexjobs import IndexJobs
from fastdatomic.transactor.txids import TxIds
from fastdatomic.db.segments import SegmentStore
from fastdatomic.errors import (
    DatabaseNotFoundError, FastDatomicError, FencedError, StorageError,
)

__all__ = ["Pipeline", "TxRequest", "Outcome"]

log = logging.getLogger("fastdatomic.transactor")

# ``process_now`` leaves bigger socket reads to the writer thread: preparing a bulk
# transaction takes milliseconds, during which the event loop would read no other peer.
INLINE_MAX_BYTES = 64 << 10
# ... and everything while the last batch took longer than this (a slow disk, a slow
# transaction function): the event loop then keeps serving peers during commits.
INLINE_MAX_SECONDS = 0.005


class TxRequest:
    """One queued request (``op``): ``tx`` a transaction, ``create``/``delete`` a catalog
    change, ``index`` a request_index; and the writer's own ``adopt`` (an indexing job's
    result) and ``retry-index`` (the next job after a failed one is due); these carry
    their database's state in ``tx_data``."""

    __slots__ = ("op", "db", "tx_data", "tx_id", "reply", "nbytes", "received", "db_id",
                 "fresh_id")

    def __init__(self, op, db, tx_data=None, tx_id=None, reply=None, nbytes=0, db_id=None,
                 fresh_id=False):
        self.op, self.db, self.tx_data, self.tx_id, self.reply = op, db, tx_data, tx_id, reply
        self.nbytes = nbytes
        self.db_id = db_id      # the database the peer connected to (None: whichever has the name)
        # The peer made tx_id for this request: it cannot be in the durable index (it is
        # still looked up among recent transactions, which costs a dict look-up).
        self.fresh_id = fresh_id
        self.received = time.perf_counter()


class Outcome:
    """What happened to one request: ``ok`` with a result dict, or ``error``."""

    __slots__ = ("request", "result", "error")

    def __init__(self, request, result=None, error=None):
        self.request, self.result, self.error = request, result, error


class _DbState:
    __slots__ = ("name", "writer", "jobs", "deferred", "tx_ids", "index_wanted")

    def __init__(self, name, writer, tx_ids: TxIds | None = None):
        self.name = name
        self.writer = writer
        self.jobs: IndexJobs | None = None     # set by Pipeline._open
        # request_index came while a job ran from an older value: run another after it
        self.index_wanted = False
        self.deferred = collections.deque()    # held back under back-pressure
        db = writer.db
        if tx_ids is not None and tx_ids.db_id == db.db_id and tx_ids.basis_t <= db.basis_t:
            self.tx_ids = tx_ids.follow(writer.storage, db)    # a warm standby's, caught up
        else:
            self.tx_ids = TxIds(db)


class Pipeline:
    """The single writer of every database in one storage.

    ``publish(name, log_entries, outcomes, event)`` is called (on the writer thread, or
    the event loop in ``process_now``) after each durable commit; the server delivers it
    on the event loop, in call order. ``fatal(reason)`` is called when storage refuses a
    fenced commit: this transactor was deposed and must stop.
    """

    def __init__(self, storage, fence, publish, fatal, *, metrics=None,
                 memory_index_threshold=32 << 20, memory_index_max=512 << 20,
                 group_commit_max=1000, object_cache_max=128 << 20, segs=None):
        self.storage = storage
        self.fence = fence
        self.publish = publish
        self.fatal = fatal
        self.metrics = metrics
        self.threshold = memory_index_threshold
        self.max = memory_index_max
        self.group_max = group_commit_max
        self.segs = segs or SegmentStore(storage, object_cache_max)
        self.dbs: dict[str, _DbState] = {}
        self.queue = collections.deque()
        self.cond = threading.Condition()
        # Held while a batch is processed, by the writer thread or by ``process_now``: one
        # writer at a time, and a batch taken from the queue is processed before any later one.
        self.writing = threading.Lock()
        self.slow = False           # the last batch took longer than INLINE_MAX_SECONDS
        self.stopping = False
        self.thread = None

    # --- set-up --------------------------------------------------------------

    def load(self, warm=None, warm_ids=None) -> int:
        """Open every database's writer (the basis the new active transactor serves).

        ``warm`` maps names to current values (a warm standby's): each writer then reads
        only the log records after them. Returns how many records that was.
        """
        warm, warm_ids = warm or {}, warm_ids or {}
        read = 0
        for name in catalog.list_databases(self.storage):
            before = warm.get(name)
            st = self._open(name, before, warm_ids.get(name))
            if before is not None and st.writer.db.db_id == before.db_id:
                read += st.writer.db.basis_t != before.basis_t
        return read

    def _open(self, name, warm=None, warm_ids=None):
        writer = catalog.DatabaseWriter(self.storage, name, segs=self.segs, fence=self.fence,
                                        warm=warm)
        st = self.dbs[name] = _DbState(name, writer, warm_ids)
        # The job's result and its retry reach the writer thread through the queue, with
        # this state: a job of a database deleted and re-created meanwhile is dropped.
        st.jobs = IndexJobs(name, built=lambda result, secs: self._job_built(
                                TxRequest("adopt", name, tx_data=(st, result, secs))),
                            due=lambda: self._queue_front(
                                TxRequest("retry-index", name, tx_data=st)))
        return st

    def start(self):
        self.thread = threading.Thread(target=self._run, name="fd-writer", daemon=True)
        self.thread.start()

    def stop(self, timeout=10.0):
        """Finish what is queued, then stop the writer thread."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        for st in list(self.dbs.values()):
            st.jobs.cancel()
        if self.thread is not None:
            self.thread.join(timeout)

    def submit(self, request: TxRequest):
        """Queue a request (any thread); its outcome comes back through ``publish``."""
        with self.cond:
            self.queue.append(request)
            self.cond.notify()

    def submit_many(self, requests):
        """Queue several requests with one wake-up of the writer (a socket read's worth)."""
        if requests:
            with self.cond:
                self.queue.extend(requests)
                self.cond.notify()

    def process_now(self, requests) -> bool:
        """Process ``requests`` on the calling thread (the event loop) if the writer thread
        is idle, nothing is queued, they are small transactions (``INLINE_MAX_BYTES`` of
        payload in all, no catalog change) and the last batch was quick
        (``INLINE_MAX_SECONDS``); otherwise do nothing and return False: the caller then
        submits them (``submit_many``). Their outcomes come through ``publish`` either way.

        Requests queued earlier are never overtaken: the queue is empty, and the writer
        thread takes its batches under the same ``writing`` lock.

        >>> from fastdatomic.storage import open_storage
        >>> st = open_storage("mem", name="doc-process-now")
        >>> _ = catalog.create_database(st, "orders")
        >>> answers = []
        >>> pipeline = Pipeline(st, fence=lambda: [], fatal=print,
        ...                     publish=lambda name, log, outcomes, event: answers.extend(outcomes))
        >>> pipeline.load()
        0
        >>> pipeline.process_now([TxRequest("tx", "orders", [[":db/add", "o", ":db/doc", "first"]])])
        True
        >>> answers[0].result["t"] > 0, answers[0].error
        (True, None)
        """
        if self.slow or sum(r.nbytes for r in requests) > INLINE_MAX_BYTES or \
                any(r.op != "tx" for r in requests):
            # Keep the loop reading other peers meanwhile: a bulk load, a slow disk or
            # transaction function, or a catalog change (deleting a database deletes its
            # whole log, one fsync'd chunk after another).
            return False
        with self.cond:
            if self.queue or self.stopping or not self.writing.acquire(blocking=False):
                return False
        try:
            self._process_guarded(list(requests))
        finally:
            self.writing.release()
        return True

    def memory_index_bytes(self) -> int:
        return sum(st.writer.db.memindex.nbytes for st in list(self.dbs.values())
                   if st.writer.db is not None)

    # --- the writer thread ------------------------------------------------------

    def _run(self):
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    self.cond.wait()
                if not self.queue and self.stopping:
                    return
            with self.writing:
                with self.cond:
                    batch = []
                    while self.queue and len(batch) < self.group_max:
                        batch.append(self.queue.popleft())
                if batch and not self._process_guarded(batch):
                    return

    def _process_guarded(self, batch) -> bool:
        """``_process`` that never fails silently: a bug stops the transactor (fatal)."""
        t0 = time.perf_counter()
        try:
            self._process(batch)
            self.slow = time.perf_counter() - t0 > INLINE_MAX_SECONDS
            return True
        except BaseException as e:   # never lose the writer silently
            log.exception("writer failed")
            self.fatal(f"writer failed: {e!r}")
            return False

    def _process(self, batch):
        groups: dict[str, list] = {}
        for req in batch:
            if req.op == "adopt":
                self._adopt(req)
                continue
            if req.op == "retry-index":
                self._retry_index(req)
                continue
            if req.op == "index":
                self._flush(groups)       # the job covers what was queued before the request
                groups = {}
                self._request_index(req)
                continue
            if req.op in ("create", "delete"):
                self._flush(groups)
                groups = {}
                self._catalog(req)
                continue
            groups.setdefault(req.db, []).append(req)
        self._flush(groups)

    def _flush(self, groups):
        for name, reqs in groups.items():
            st = self.dbs.get(name)
            if st is None:
                self._no_such_database(name, reqs)
                continue
            db_id = st.writer.db.db_id
            current = [r for r in reqs if r.db_id is None or r.db_id == db_id]
            if len(current) < len(reqs):
                # Sent on a connection to a database since deleted (and re-created): never
                # write into the namesake, as an in-process connection would not.
                err = DatabaseNotFoundError(f"cannot transact: database {name!r} was deleted",
                                            data={"name": name})
                self.publish(name, [], [Outcome(r, error=err) for r in reqs if r not in current], None)
                reqs = current
                if not reqs:
                    continue
            if st.deferred or st.writer.db.memindex.nbytes > self.max:
                # Back-pressure: hold this database's transactions until the index job lands.
                st.deferred.extend(reqs)
                if self.metrics:
                    self.metrics.alarm("back-pressure")
                self._maybe_index(st)
                continue
            self._commit(st, reqs)

    def _no_such_database(self, name, reqs):
        err = DatabaseNotFoundError(f"database {name!r} does not exist", data={"name": name})
        self.publish(name, [], [Outcome(r, error=err) for r in reqs], None)

    def _commit(self, st, reqs):
        writer = st.writer
        db = writer.db
        results, outcomes = [], []
        batch_ids = {}               # tx ids (uuid.int) prepared in this batch, not yet in st.tx_ids
        for req in reqs:
            try:
                if req.tx_id is not None:
                    done = batch_ids.get(req.tx_id.int) or st.tx_ids.lookup(
                        req.tx_id, durable=not req.fresh_id)
                    if done is not None:
                        outcomes.append(Outcome(req, {"t": done, "tempids": {}, "duplicate": True}))
                        continue
                # The id was just looked up (tx_ids + this batch): prepare need not ask again.
                r = txmod.prepare(db, req.tx_data, tx_uuid=req.tx_id, uuid_checked=True)
            except FastDatomicError as e:
                outcomes.append(Outcome(req, error=e))
                continue
            except Exception as e:       # a bug or a user tx fn blowing up: this tx fails alone
                log.exception("transaction failed unexpectedly")
                outcomes.append(Outcome(req, error=e))
                continue
            results.append(r)
            batch_ids[r.tx_uuid.int] = r.t
            outcomes.append(Outcome(req, r))
            db = r.db_after
        entries = []
        write_secs = 0.0
        if results:
            t1 = time.perf_counter()
            try:
                entries = writer.commit_prepared(results)
            except FencedError as e:
                log.critical("stale write rejected by storage: commit of %d transaction(s) to %r",
                             len(results), st.name)
                self.fatal(str(e))
                return
            except StorageError as e:
                # Storage refused before anything was written: the batch is not committed.
                log.error("storage commit failed: %s", e)
                for o in outcomes:
                    if o.error is None and not isinstance(o.result, dict):
                        o.result, o.error = None, e
                entries = []
                results = []
            write_secs = time.perf_counter() - t1
            for r in results:
                st.tx_ids.add(r.tx_uuid, r.t)
        for o in outcomes:
            if o.error is None and not isinstance(o.result, dict):
                r = o.result
                o.result = {"t": r.t, "tempids": r.tempids, "duplicate": False}
        self.publish(st.name, entries, outcomes, None)
        if self.metrics:            # after publishing: the acks need not wait for them
            if results:
                self.metrics.log_write(write_secs, len(results),
                                       sum(map(len, map(itemgetter(2), entries))),
                                       sum(len(r.keys) for r in results))
            now = time.perf_counter()
            self.metrics.transactions([now - req.received for req in reqs])
            self.metrics.memory_index(self.memory_index_bytes())
        if results:
            self._maybe_index(st)

    # --- catalog ----------------------------------------------------------------

    def _catalog(self, req):
        name = req.db
        try:
            if req.op == "create":
                created = catalog.create_database(self.storage, name, checks=self.fence())
                if created:
                    self._open(name)
                elif name not in self.dbs and catalog.read_root(self.storage, name):
                    self._open(name)
                result = {"created": created}
            else:
                deleted = catalog.delete_database(self.storage, name, checks=self.fence())
                st = self.dbs.pop(name, None)
                if st is not None:
                    st.jobs.cancel()
                    err = DatabaseNotFoundError(f"database {name!r} was deleted")
                    self.publish(name, [], [Outcome(r, error=err) for r in st.deferred], None)
                result = {"deleted": deleted}
            self.publish(name, [], [Outcome(req, result)], "deleted" if req.op == "delete" else None)
        except FastDatomicError as e:
            self.publish(name, [], [Outcome(req, error=e)], None)

    # --- indexing ---------------------------------------------------------------

    def _request_index(self, req):
        """``request_index``: an indexing job now, whatever the size of the novelty. While
        a job runs (from a value that may predate the requester's transactions) the wish
        waits, and the next ``_maybe_index`` after it lands starts another."""
        st = self.dbs.get(req.db)
        if st is None:
            self._no_such_database(req.db, [req])
            return
        st.index_wanted = True
        self._maybe_index(st)
        result = {"requested": st.jobs.busy, "basis_t": st.writer.db.basis_t}
        self.publish(st.name, [], [Outcome(req, result)], None)

    def _maybe_index(self, st):
        db = st.writer.db
        if st.jobs.busy or db is None:
            return
        wanted, st.index_wanted = st.index_wanted, False
        if db.memindex.nbytes > self.threshold or (wanted and db.memindex.datom_count):
            st.jobs.start(db)

    def _queue_front(self, req) -> bool:
        # From a job's or a timer's thread: the writer adopts before more novelty piles up.
        with self.cond:
            if self.stopping:
                return False
            self.queue.appendleft(req)
            self.cond.notify()
            return True

    def _job_built(self, req):
        # (If the writer stops and never adopts it, its pending record stays: gc-storage
        # collects the new trees.)
        self._queue_front(req)

    def _adopt(self, req):
        st, built, secs = req.tx_data
        if self.dbs.get(req.db) is not st:
            # Deleted (and maybe re-created) meanwhile: never adopted; its pending record
            # stays, and gc-storage collects the trees.
            st.jobs.end()
            return
        if isinstance(built, BaseException):
            self._index_failed(st, built)
            return
        try:
            st.writer.adopt_index(built)
        except FencedError as e:
            # Deposed: this transactor writes nothing more (the job's pending record
            # stays: gc-storage collects its trees).
            self.failed = True
            self.fatal(str(e))
            return
        except StorageError as e:
            # Refused before anything was written (storage full, say, or gc-storage
            # claimed the job's trees), as a commit can be: the job failed, its trees go
            # to gc-storage, and it is tried again.
            log.error("indexing job of %r could not be adopted: %s", st.name, e)
            self._index_failed(st, e)
            return
        st.jobs.landed()
        st.tx_ids.adopt_index(st.writer.db)   # the ids up to the new basis are in the trees
        if self.metrics:
            self.metrics.indexed(secs)
        log.info("indexed %s up to t=%d in %.3f s", st.name, built[1], secs)
        self.publish(st.name, [], [], ("indexed", built[1]))
        if st.deferred:
            reqs = list(st.deferred)
            st.deferred.clear()
            if st.writer.db.memindex.nbytes > self.max:
                st.deferred.extend(reqs)
                self._maybe_index(st)
            else:
                self._commit(st, reqs)
        else:
            self._maybe_index(st)

    def _index_failed(self, st, err):
        # Transactions held back by back-pressure stay held until the retry lands.
        if self.metrics:
            self.metrics.alarm("indexing-failed")
        st.jobs.failed(err)
        st.index_wanted = True      # the retry runs whatever the threshold says then

    def _retry_index(self, req):
        st = req.tx_data
        if self.dbs.get(req.db) is st:
            st.jobs.retry_now()
            self._maybe_index(st)
