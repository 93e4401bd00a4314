"""One database's indexing jobs, as its single writer runs them (ARCHITECTURE §3).

Both writers, the transactor's pipeline and the in-process (``mem``) one, run at most one
job per database at a time, on a thread of its own, from an immutable database value,
and adopt the result themselves (a fenced root CAS, in their own order of things). What
they share is here: whether a job is building, and after a failed one the timer of the
next attempt, with a back-off that doubles while jobs keep failing
(``catalog.index_retry_delay``). The novelty stays in memory meanwhile; the retry runs
whether or not transactions come, and a failure that persists (a full disk) costs one
job per back-off rather than one per commit.

``IndexJobs`` has no lock of its own: its writer calls it where it serialises its own
work (the pipeline's writer thread; the in-process writer's lock). ``built`` and ``due``
are called from other threads and hand over to the writer; ``cancel`` may be called from
any thread when the writer is done (a timer that ``failed`` starts after it only calls
``due``, which a writer that is done ignores).
"""

from __future__ import annotations

import logging
import threading
import time

from fastdatomic.db import catalog

__all__ = ["IndexJobs"]

log = logging.getLogger("fastdatomic.indexing")


class IndexJobs:
    """The indexing jobs of one database: ``start`` one (or ``begin`` a build the writer
    runs itself), then ``landed``, ``failed`` or ``end``.

    ``built(result, secs)`` is called on the job's thread when its build ends (``result``
    is the ``catalog.BuiltIndex`` for ``DatabaseWriter.adopt_index``,
    or the exception);
    ``due()`` on a timer's thread when the retry after a failure is due: the writer then
    calls ``retry_now`` in its own context and starts a job if it still wants one.

    >>> from fastdatomic.storage import open_storage
    >>> st = open_storage("mem", name="doc-indexjobs")
    >>> _ = catalog.create_database(st, "d")
    >>> writer = catalog.DatabaseWriter(st, "d")
    >>> done = threading.Event()
    >>> jobs = IndexJobs("d", built=lambda result, secs: done.set(), due=lambda: None)
    >>> jobs.start(writer.db); jobs.busy
    True
    >>> done.wait(10)
    True
    >>> jobs.landed(); jobs.busy
    False
    """

    __slots__ = ("name", "building", "retry", "failures", "_built", "_due")

    def __init__(self, name: str, built, due):
        self.name = name
        self.building = False                        # a job's build is running
        self.retry: threading.Timer | None = None    # the next attempt, after a failure
        self.failures = 0                            # failed in a row
        self._built = built
        self._due = due

    @property
    def busy(self) -> bool:
        """A job is building, or a failed one's retry is pending: start no other."""
        return self.building or self.retry is not None

    def start(self, snapshot):
        """Build new trees from ``snapshot`` (an immutable value) on a thread of its own."""
        self.begin()
        threading.Thread(target=self._build, args=(snapshot,), daemon=True,
                         name=f"fd-index-{self.name}").start()

    def _build(self, snapshot):
        t0 = time.perf_counter()
        try:
            result = catalog.build_index(snapshot)
        except BaseException as e:
            log.exception("indexing job of %r failed", self.name)
            result = e
        self._built(result, time.perf_counter() - t0)

    def begin(self):
        """A build starts (on a thread of its own, or the writer's caller's)."""
        self.building = True

    def end(self):
        """The build ended with nothing to adopt and nothing to retry (its database is
        gone, or its caller got the error)."""
        self.building = False

    def landed(self):
        """The job's trees are the database's now."""
        self.building = False
        self.failures = 0

    def failed(self, err: BaseException) -> float:
        """The job failed (its build; in-process, also its adoption): the next attempt
        is due in the returned number of seconds."""
        self.building = False
        self.failures += 1
        delay = catalog.index_retry_delay(self.failures)
        log.error("indexing job of %r failed (%d in a row: %r); next attempt in %.1f s",
                  self.name, self.failures, err, delay)
        self.retry = threading.Timer(delay, self._due)
        self.retry.daemon = True
        self.retry.start()
        return delay

    def retry_now(self):
        """The retry is due (the writer, in its own context): jobs may start again."""
        self.retry = None

    def cancel(self):
        """The database is gone or the writer stops: no retry (``busy`` may stay True:
        the writer starts no job any more)."""
        retry = self.retry
        if retry is not None:
            retry.cancel()
