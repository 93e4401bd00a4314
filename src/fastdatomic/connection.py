"""Connections: ``db()``, ``transact``, report queues and the log, for the in-process system.

The ``mem`` protocol runs storage and the transactor inside this process (like
``datomic:mem``); every connection to one database shares one writer, so
transactions are applied serially and every connection sees them in order.
The networked peer (``dev``/``sql`` through a transactor) offers the same API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
import uuid as uuid_mod
from _thread import allocate_lock as _allocate_lock
from concurrent.futures._base import (CANCELLED as _CANCELLED, CANCELLED_AND_NOTIFIED as
                                      _CANCELLED_AND_NOTIFIED, FINISHED as _FINISHED,
                                      PENDING as _PENDING, RUNNING as _RUNNING)

from fastdatomic._core.logrec import decode_log
from fastdatomic._core.codec import INDEX_EAVT, decode_key
from fastdatomic.db import tx as txmod
from fastdatomic.db.catalog import DatabaseWriter, build_index
from fastdatomic.db.indexjobs import IndexJobs
from fastdatomic.db.database import Database
from fastdatomic.db.report import TxReport, lookup_tx, report_for_existing
from fastdatomic.errors import (InvalidTxDataError, InvalidValueError, DatabaseNotFoundError,
                                FencedError, IndexCollectedError, SyncTimeoutError,
                                TransactTimeoutError)
from fastdatomic.ids import tx_to_t

__all__ = ["Connection", "TxReport", "TxReportQueue", "Log", "TxFuture"]

_futures_log = logging.getLogger("concurrent.futures")
log = logging.getLogger("fastdatomic.connection")


class TxReportQueue(queue.Queue):
    """A bounded queue of ``TxReport``s for one subscriber.

    Overflow policy: when full, the *oldest* report is dropped to make room and
    ``dropped`` counts it, so a slow consumer never blocks transactions and can tell
    that it missed reports (then read ``conn.log()`` to catch up).

    >>> q = TxReportQueue(maxsize=1)
    >>> q.offer("r1"); q.offer("r2"); q.get_nowait(), q.dropped
    ('r2', 1)
    """

    def __init__(self, maxsize=10_000):
        super().__init__(maxsize)
        self.dropped = 0

    def offer(self, report):
        """Enqueue ``report``, dropping (and counting) the oldest one when full."""
        while True:
            try:
                self.put_nowait(report)
                return
            except queue.Full:
                try:
                    self.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass


class TxFuture(concurrent.futures.Future):
    """A future of a ``TxReport``: ``.result(timeout)`` blocks, ``await`` works in asyncio.

    A ``concurrent.futures.Future`` in every respect (``add_done_callback``,
    ``concurrent.futures.wait`` and ``as_completed``, ``asyncio.wrap_future``), made for
    one per transaction: a ``threading.Condition`` (a Python object of its own) per
    future cost more than the rest of a small transaction's trip through the peer, so
    state changes take one C lock and waiters wait on a second one (a latch, released
    once when the future is done); the ``_condition`` the stdlib helpers use is made on
    first use, around the same lock.

    >>> import asyncio
    >>> async def main():
    ...     return (await conn.transact_async([{":person/name": "Awaited"}])).t > 0
    >>> asyncio.run(main())
    True
    >>> f = TxFuture(); f.set_running_or_notify_cancel(); f.set_result(3)
    True
    >>> f.result(), f.done(), concurrent.futures.wait([f]).done == {f}
    (3, True, True)
    """

    def __init__(self):    # the base's state, without its Condition
        self._lock = _allocate_lock()
        self._latch = _allocate_lock()
        self._latch.acquire()
        self._state = _PENDING
        self._result = None
        self._exception = None
        # _waiters (stdlib wait/as_completed) and _done_callbacks are made when first used.

    @property
    def _condition(self):
        # For the stdlib's wait()/as_completed() and the base class's __repr__: they lock
        # it and register waiters, which set_result/set_exception tell under that lock.
        cond = self.__dict__.get("_cond")
        if cond is None:
            cond = self.__dict__.setdefault("_cond", threading.Condition(self._lock))
        return cond

    @property
    def _waiters(self):
        waiters = self.__dict__.get("_wl")
        return waiters if waiters is not None else self.__dict__.setdefault("_wl", [])

    @property
    def _done_callbacks(self):
        callbacks = self.__dict__.get("_cbs")
        return callbacks if callbacks is not None else self.__dict__.setdefault("_cbs", [])

    def _invoke_callbacks(self):
        for callback in self.__dict__.get("_cbs", ()):
            try:
                callback(self)
            except Exception:
                _futures_log.exception("exception calling callback for %r", self)

    def cancel(self):
        with self._lock:
            state = self._state
            if state == _RUNNING or state == _FINISHED:
                return False
            if state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED:
                return True
            self._state = _CANCELLED
        self._latch.release()
        self._invoke_callbacks()
        return True

    def cancelled(self):
        return self._state == _CANCELLED or self._state == _CANCELLED_AND_NOTIFIED

    def running(self):
        return self._state == _RUNNING

    def done(self):
        s = self._state
        return s == _FINISHED or s == _CANCELLED or s == _CANCELLED_AND_NOTIFIED

    def add_done_callback(self, fn):
        with self._lock:
            if not self.done():
                self._done_callbacks.append(fn)
                return
        try:
            fn(self)
        except Exception:
            _futures_log.exception("exception calling callback for %r", self)

    def _wait(self, timeout):
        if not self.done():
            if self._latch.acquire(True, -1 if timeout is None else max(timeout, 0)):
                self._latch.release()    # let the other waiters through
        state = self._state
        if state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED:
            raise concurrent.futures.CancelledError()
        if state != _FINISHED:
            raise concurrent.futures.TimeoutError()

    def result(self, timeout=None):
        self._wait(timeout)
        if self._exception is not None:
            try:
                raise self._exception
            finally:
                self = None      # no reference cycle through the traceback
        return self._result

    def exception(self, timeout=None):
        self._wait(timeout)
        return self._exception

    def set_running_or_notify_cancel(self):
        with self._lock:
            if self._state == _CANCELLED:
                self._state = _CANCELLED_AND_NOTIFIED
                for waiter in self.__dict__.get("_wl", ()):
                    waiter.add_cancelled(self)
                return False
            if self._state == _PENDING:
                self._state = _RUNNING
                return True
        raise RuntimeError(f"Future in unexpected state: {self!r}")

    def _finish(self, result, exception):
        with self._lock:
            state = self._state
            if state != _FINISHED and state != _CANCELLED and state != _CANCELLED_AND_NOTIFIED:
                self._result, self._exception = result, exception
                self._state = _FINISHED
                for waiter in self.__dict__.get("_wl", ()):
                    if exception is None:
                        waiter.add_result(self)
                    else:
                        waiter.add_exception(self)
        if state == _FINISHED or state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED:
            raise concurrent.futures.InvalidStateError(f"{state}: {self!r}")
        self._latch.release()
        if "_cbs" in self.__dict__:
            self._invoke_callbacks()

    def set_result(self, result):
        self._finish(result, None)

    def set_exception(self, exception):
        self._finish(None, exception)

    def __await__(self):
        return asyncio.wrap_future(self).__await__()


class Log:
    """The transaction log of a database, as a value: ``tx_range(start, end)`` over ``t``.

    Like Datomic's log it is immutable: it holds the transactions up to the basis it was
    taken at. Each transaction comes as ``{"t": t, "data": [Datom, ...]}``.
    """

    def __init__(self, storage, db_id, basis_t):
        self.storage = storage
        self.db_id = db_id
        self.basis_t = basis_t

    def tx_range(self, start=None, end=None):
        """Transactions with ``start <= t < end`` (t or tx ids; ``None`` leaves a side open).

        >>> r = conn.transact([{":person/name": "Logged"}])
        >>> [len(tx["data"]) for tx in conn.log().tx_range(r.t, r.t + 1)]
        [3]
        """
        start = tx_to_t(start) if start is not None else None
        end = tx_to_t(end) if end is not None else None
        end = self.basis_t + 1 if end is None else min(end, self.basis_t + 1)
        for t, rec in self.storage.log_range(self.db_id, start, end):
            _, _, keys, _ = decode_log(rec)
            yield {"t": t, "data": [decode_key(INDEX_EAVT, k) for k in keys]}


MEMORY_INDEX_THRESHOLD = 32 * 1024 * 1024   # bytes of novelty (Datomic's default 32m)
MEMORY_INDEX_MAX = 512 * 1024 * 1024        # ... past which transactions wait for the job (512m)
# request_index runs a job this many more times when gc-storage collects its trees
# before it lands (a cutoff younger than the job).
COLLECTED_RETRIES = 3


class _LocalTransactor:
    """The in-process single writer of one database (the ``mem`` system's transactor).

    Like a transactor it runs the indexing job once novelty passes
    ``memory_index_threshold`` bytes, so reads keep merging few novelty runs and memory
    stays bounded. The job builds the new trees on its own thread from a snapshot (an
    immutable value) while transactions go on; only adopting the result (a root CAS)
    takes the writer's lock. Past ``memory_index_max`` transactions wait for the job
    (back-pressure), so memory stays bounded when writes outrun indexing. A job that
    fails is tried again from a timer (``catalog.index_retry_delay``); transactions held
    back wait for that one.
    """

    def __init__(self, storage, name, memory_index_threshold=MEMORY_INDEX_THRESHOLD,
                 memory_index_max=MEMORY_INDEX_MAX):
        self.name = name
        self.memory_index_threshold = memory_index_threshold
        self.memory_index_max = memory_index_max
        self.writer = DatabaseWriter(storage, name)
        self.last_db = self.writer.db
        self.lock = threading.Lock()
        # On self.lock: notified when an indexing job ends (landed or failed), when a
        # failed one's retry is due, and on close.
        self.job_done = threading.Condition(self.lock)
        # Background jobs and request_index's; their state is read and changed under
        # self.lock.
        self.jobs = IndexJobs(name, built=self._built, due=self._retry_due)
        # Notified after an indexing job lands in last_db: sync_index waits on it.
        self.index_landed = threading.Condition(threading.Lock())
        self.queues: list[TxReportQueue] = []
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"tx-{name}")
        self.pending = 0             # queued async transactions not yet applied
        self.lock_pending = threading.Lock()
        self.closed = None           # reason, once the database is gone

    def close(self, reason):
        self.closed = reason
        self.executor.shutdown(wait=False)
        self.jobs.cancel()
        # Transactions held back by the job give up now rather than when it ends. Never
        # block for the lock: close runs under the registry lock, maybe on a thread that
        # holds this writer (a transaction function deleting its own database).
        if self.lock.acquire(blocking=False):
            try:
                self.job_done.notify_all()
            finally:
                self.lock.release()
        self._notify_indexed()      # a sync_index waiting here learns the database is gone

    def transact(self, tx_data, tx_id, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.lock.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            raise TransactTimeoutError(
                f"transaction not started within {timeout} s: the writer of {self.name!r} is busy; "
                "it was not committed and may be retried", data={"outcome": "not-committed"})
        try:
            if self.jobs.busy:
                self._hold_back(deadline, timeout)
            if self.closed:
                raise DatabaseNotFoundError(f"cannot transact: {self.closed}")
            db = self.writer.db
            if tx_id is not None:
                done = lookup_tx(db, tx_id)
                if done is not None:
                    return report_for_existing(self.writer.storage, db, done, tx_id)
            result = txmod.prepare(db, tx_data, tx_uuid=tx_id)
            try:
                self.writer.commit_prepared([result])
            except FencedError:
                self._deleted()
                raise DatabaseNotFoundError(f"cannot transact: {self.closed}",
                                            data={"outcome": "not-committed"}) from None
            report = TxReport(result.db_before, result.db_after, result.datoms,
                              result.tempids, result.t, result.tx_uuid)
            self.last_db = result.db_after
            self._maybe_index()
            for q in tuple(self.queues):   # a snapshot: removal may happen meanwhile
                q.offer(report)
            return report
        finally:
            self.lock.release()

    def _hold_back(self, deadline, timeout):
        """Back-pressure (lock held): past ``memory_index_max`` wait for the running job
        (or the one a failed job's retry starts)."""
        while self.jobs.busy and not self.closed and \
                self.writer.db.memindex.nbytes > self.memory_index_max:
            left = None if deadline is None else deadline - time.monotonic()
            if (left is not None and left <= 0) or not self.job_done.wait(left):
                job = ("its indexing job is still running" if self.jobs.building else
                       "its last indexing job failed and the next attempt is pending")
                raise TransactTimeoutError(
                    f"transaction not started within {timeout} s: the memory index of "
                    f"{self.name!r} is past memory_index_max and {job}; it was not "
                    "committed and may be retried", data={"outcome": "not-committed"})

    def _maybe_index(self):
        # Lock held. One job at a time, once the novelty passes the threshold. The snapshot
        # is immutable: the job reads it while transactions go on.
        mi = self.writer.db.memindex
        if not self.jobs.busy and mi.datom_count and mi.nbytes > self.memory_index_threshold:
            self.jobs.start(self.writer.db)

    def _built(self, built, secs):
        # On the job's thread: adopt under the writer's lock.
        with self.lock:
            try:
                landed = self._land(None if isinstance(built, BaseException) else built)
            except DatabaseNotFoundError:
                return                           # deleted meanwhile
            except Exception as e:       # (storage full, say) nothing was written
                # Its pending record stays: gc-storage collects the trees.
                log.exception("indexing job of %r could not be adopted", self.name)
                built, landed = e, False
            if landed:
                # Transactions went on meanwhile: their novelty may be past the threshold
                # already.
                self._maybe_index()
            elif not self.closed:
                self.jobs.failed(built)   # held-back transactions wait for the retry

    def _retry_due(self):
        # On the retry timer's thread.
        with self.lock:
            self.jobs.retry_now()
            if not self.closed:
                self._maybe_index()
            self.job_done.notify_all()   # held back with no job started: they go on

    def _land(self, built) -> bool:
        """End the running job (lock held): adopt ``built``, the job's new trees
        (None: the build failed), and wake whoever waits for the job. True if
        the new trees are now the database's. If the database is gone (``close``d, or
        deleted in storage a moment before), they are left to gc-storage (their pending
        record stays) and ``DatabaseNotFoundError`` says so."""
        try:
            if built is None:
                return False
            if self.closed or self.writer.poisoned:
                raise FencedError(f"database {self.name!r} was deleted")
            # No transaction is between prepare and commit: the lock is ours.
            self.last_db = self.writer.adopt_index(built)
            self.jobs.landed()
            self._notify_indexed()
            return True
        except FencedError:
            self._deleted()
            raise DatabaseNotFoundError(f"cannot index: {self.closed}") from None
        finally:
            self.jobs.end()
            self.job_done.notify_all()

    def request_index(self) -> bool:
        """Run the indexing job now, on the caller's thread, and return once it landed;
        False if there was no novelty to index. Transactions go on meanwhile; a job
        already running is waited for first (ours then covers what it did not). A job
        whose trees gc-storage collected before it landed runs again (a few times)."""
        for attempt in range(COLLECTED_RETRIES, -1, -1):
            with self.lock:
                while self.jobs.building and not self.closed:
                    self.job_done.wait()
                if self.closed:
                    raise DatabaseNotFoundError(f"cannot index: {self.closed}")
                if not self.writer.db.memindex.datom_count:
                    return False
                self.jobs.begin()
                snapshot = self.writer.db
            try:
                return self._index_from(snapshot)
            except IndexCollectedError:
                if not attempt:
                    raise

    def _index_from(self, snapshot) -> bool:
        built = None
        try:
            built = build_index(snapshot)
        finally:
            with self.lock:
                self._land(built)   # (a failed build: the job ends, its error goes on)
        return True

    def _deleted(self):
        # Lock held. delete_database removes the root before it closes this writer; a
        # CAS in between fails (one writer per database in this process: nothing else
        # changes its root) and poisons the writer. From then on it is closed.
        if not self.closed:
            self.closed = f"database {self.name!r} was deleted"
        self.jobs.cancel()
        self.job_done.notify_all()
        self._notify_indexed()

    def _notify_indexed(self):
        # Called after last_db (or closed) is assigned. No wake-up is lost: wait_indexed
        # re-checks under this condition's lock, which we get only once its wait() has
        # released it.
        with self.index_landed:
            self.index_landed.notify_all()

    def wait_indexed(self, t, secs):
        """Wait up to ``secs`` (None: no limit) for a value indexed through ``t``, or
        for this database to be gone."""
        with self.index_landed:
            self.index_landed.wait_for(
                lambda: self.last_db.index_basis_t >= t or self.closed, secs)


def _tx_data(tx_data):
    if isinstance(tx_data, str):
        from fastdatomic import edn
        return edn.loads(tx_data)
    return tx_data


def _check_tx_id(tx_id):
    if tx_id is not None and not isinstance(tx_id, uuid_mod.UUID):
        raise InvalidTxDataError(f"tx_id must be a uuid.UUID, got {tx_id!r}")
    return tx_id


class _ConnectionCommon:
    """What every connection does the same way, in-process or networked: outcomes by tx
    id, report queues, the log value. Subclasses give ``db``, ``sync``, ``storage`` and
    ``_report_queues`` (the list their writer or novelty feed offers reports to)."""

    def tx_outcome(self, tx_id) -> int | None:
        """The ``t`` of the committed transaction with ``tx_id``, or ``None`` if none committed.

        >>> import uuid
        >>> conn.tx_outcome(uuid.uuid4()) is None
        True
        """
        return lookup_tx(self.sync(), tx_id)

    def tx_report_queue(self, maxsize=10_000) -> TxReportQueue:
        """A new bounded queue receiving the report of every later transaction.

        >>> q = conn.tx_report_queue(); r = conn.transact([{":person/name": "Queued"}])
        >>> q.get(timeout=5).t == r.t
        True
        >>> conn.remove_tx_report_queue(q)
        """
        q = TxReportQueue(maxsize)
        self._report_queues.append(q)
        return q

    def remove_tx_report_queue(self, q):
        """Stop feeding ``q``."""
        if q in self._report_queues:
            self._report_queues.remove(q)

    def sync_index(self, t: int, timeout: float | None = None) -> Database:
        """A database value whose durable index covers ``t`` (``index_basis_t >= t``),
        once an indexing job has reached it. Blocks until then, or raises
        ``SyncTimeoutError`` after ``timeout`` seconds (``None``: no limit). Indexing
        jobs start when novelty passes ``memory-index-threshold``, or on ``request_index``.

        >>> r = conn.transact([{":person/name": "Indexed"}]); conn.request_index()
        True
        >>> conn.sync_index(r.t, timeout=30).index_basis_t >= r.t
        True
        """
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise InvalidValueError(f"sync_index needs a t (a non-negative int), got {t!r}",
                                    data={"t": repr(t)})
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            db = self._indexed_value(t)
            if db is not None:
                return db
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                db = self.db()
                raise SyncTimeoutError(
                    f"no durable index of {db.name!r} covers t={t} within {timeout} s "
                    f"(index basis t={db.index_basis_t})",
                    data={"t": t, "index_basis_t": db.index_basis_t})
            self._await_index(t, left)

    def log(self) -> Log:
        """The database's transaction log, as a value at the current basis.

        >>> conn.log().basis_t == conn.db().basis_t
        True
        """
        db = self.db()
        return Log(self.storage, db.db_id, db.basis_t)


class Connection(_ConnectionCommon):
    """A connection to one database.

    >>> import fastdatomic
    >>> fastdatomic.create_database("fastdatomic:mem://doc-conn")
    True
    >>> conn = fastdatomic.connect("fastdatomic:mem://doc-conn")
    >>> r = conn.transact([{":db/ident": fastdatomic.Keyword("color/red")}])
    >>> conn.db().entid(":color/red") is not None, r.db_after.basis_t == conn.db().basis_t
    (True, True)
    """

    def __init__(self, uri, storage, transactor: _LocalTransactor):
        self.uri = uri
        self.storage = storage
        self._tx = transactor
        self._report_queues = transactor.queues

    def db(self) -> Database:
        """The latest database value, immediately (never blocks).

        >>> conn.db().basis_t >= 0
        True
        """
        return self._tx.last_db

    def transact(self, tx_data, *, tx_id=None, timeout=None) -> TxReport:
        """Apply ``tx_data`` (Python data or EDN text) durably; returns a ``TxReport``.

        ``tx_id`` (a ``uuid.UUID``) makes the transaction idempotent: submitting the same id
        again does not apply it twice and reports the original transaction.

        >>> import uuid
        >>> tid = uuid.uuid4()
        >>> first = conn.transact([{":person/name": "Once"}], tx_id=tid)
        >>> again = conn.transact([{":person/name": "Once"}], tx_id=tid)
        >>> again.duplicate, again.t == first.t
        (True, True)
        """
        if self._tx.pending:
            # Queued async transactions of this caller go first: keep submission order.
            fut = self.transact_async(tx_data, tx_id=tx_id)
            try:
                return fut.result(timeout)
            except concurrent.futures.TimeoutError:
                raise TransactTimeoutError(
                    f"no answer within {timeout} s; the transaction is queued and may still commit: "
                    "retry with the same tx_id or look it up with tx_outcome",
                    data={"outcome": "unknown"}) from None
        # Otherwise apply on the caller's thread under the writer lock (serial with the async
        # queue too): a thread hand-off per transaction would cost more than the work.
        return self._tx.transact(_tx_data(tx_data), _check_tx_id(tx_id), timeout)

    def transact_async(self, tx_data, *, tx_id=None) -> TxFuture:
        """Queue ``tx_data``; returns a ``TxFuture`` (``.result()`` or ``await``).

        >>> conn.transact_async([{":person/name": "Later"}]).result(5).tempids["datomic.tx"] > 0
        True
        """
        tx_data = _tx_data(tx_data)
        tx_id = _check_tx_id(tx_id)
        fut = TxFuture()
        txr = self._tx
        if txr.closed:
            raise DatabaseNotFoundError(f"cannot transact: {txr.closed}")

        def run():
            try:
                if not fut.set_running_or_notify_cancel():
                    return
                try:
                    fut.set_result(txr.transact(tx_data, tx_id))
                except BaseException as e:  # the caller gets the error, the writer stays up
                    fut.set_exception(e)
            finally:
                with txr.lock_pending:
                    txr.pending -= 1
        with txr.lock_pending:
            txr.pending += 1
        try:
            txr.executor.submit(run)
        except RuntimeError:  # executor shut down: the database was deleted meanwhile
            with txr.lock_pending:
                txr.pending -= 1
            raise DatabaseNotFoundError(f"cannot transact: {txr.closed or 'connection closed'}") from None
        return fut

    def sync(self, t=None, timeout=None) -> Database:
        """A database value that includes every transaction acknowledged so far (in-process:
        the latest value).

        >>> r = conn.transact([{":person/name": "Synced"}]); conn.sync().basis_t >= r.t
        True
        """
        return self.db()

    def request_index(self) -> bool:
        """Start an indexing job now, whatever the size of the novelty (Datomic's
        ``request-index``): novelty up to the latest transaction is merged into new
        durable segment trees. In-process the job runs before this returns. False when
        there is nothing to index (the durable index already covers every transaction).

        >>> r = conn.transact([{":person/name": "Requested"}])
        >>> conn.request_index(), conn.db().index_basis_t >= r.t, conn.request_index()
        (True, True, False)
        """
        return self._tx.request_index()

    def _indexed_value(self, t):
        db = self.db()
        if db.index_basis_t >= t:
            return db
        if self._tx.closed:
            raise DatabaseNotFoundError(f"cannot sync_index: {self._tx.closed}")
        return None

    def _await_index(self, t, secs):
        # In-process, indexing runs on a transacting thread, which wakes us when it lands.
        self._tx.wait_indexed(t, secs)

    def release(self):
        """Release this connection (the in-process system keeps the database)."""

    def __repr__(self):
        return f"<Connection {self.uri} basis-t={self.db().basis_t}>"
