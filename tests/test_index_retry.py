"""An indexing job that fails is tried again from a timer, with a growing back-off.

The novelty stays in memory meanwhile and transactions held back by back-pressure stay
held, so nothing is lost; the retry runs even if no transaction comes to start it, and a
failure that persists costs one job per back-off rather than one per commit. Both
writers: the transactor's pipeline and the in-process (``mem``) one."""

import threading
import uuid

import pytest

import fastdatomic as fd
from fastdatomic.db import catalog
from fastdatomic.storage import open_storage
from fastdatomic.transactor.metrics import TransactorMetrics
from fastdatomic.transactor.pipeline import Pipeline, TxRequest
from transactor_helper import wait_until


class FailingIndexJobs:
    """``build_index`` that fails its first ``failures`` calls, then builds."""

    def __init__(self, failures):
        self.failures = failures
        self.calls = 0
        self.real = catalog.build_index

    def __call__(self, db):
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError(28, "No space left on device (injected)")
        return self.real(db)


@pytest.fixture
def failing_jobs(monkeypatch):
    """Install a FailingIndexJobs in both writers; retries after 50 ms, then 100 ms..."""
    from fastdatomic import connection

    def install(failures):
        jobs = FailingIndexJobs(failures)
        monkeypatch.setattr(catalog, "build_index", jobs)
        monkeypatch.setattr(connection, "build_index", jobs)
        return jobs
    monkeypatch.setattr(catalog, "INDEX_RETRY_FIRST_SECS", 0.05)
    return install


def _pipeline(**limits):
    st = open_storage("mem", name=f"index-retry-{uuid.uuid4().hex}")
    catalog.create_database(st, "db")
    outcomes, events = [], []
    metrics = TransactorMetrics()
    p = Pipeline(st, fence=lambda: [], fatal=print, metrics=metrics,
                 publish=lambda name, log, outs, event: (outcomes.extend(outs),
                                                         event and events.append(event)),
                 **limits)
    p.load()
    p.start()
    return p, outcomes, events, metrics


def _alarms(metrics, kind):
    return metrics.alarms.labels(alarm=kind)._value.get()


def _tx(i):
    return TxRequest("tx", "db", [[":db/add", "e", ":db/doc", f"doc {i}"]])


def test_pipeline_retries_a_failed_job_without_a_further_transaction(failing_jobs):
    jobs = failing_jobs(2)
    p, outcomes, events, metrics = _pipeline(memory_index_threshold=0)
    try:
        p.submit(_tx(1))                          # passes the threshold: the job starts
        wait_until(lambda: events, timeout=20)   # ... fails twice, lands on the third try
    finally:
        p.stop()
    assert jobs.calls == 3 and _alarms(metrics, "indexing-failed") == 2
    t = outcomes[0].result["t"]
    assert events == [("indexed", t)] and p.dbs["db"].writer.db.index_basis_t == t
    assert p.dbs["db"].jobs.failures == 0         # a landed job resets the back-off


def test_pipeline_holds_transactions_back_until_the_retry_lands(failing_jobs):
    jobs = failing_jobs(1)
    p, outcomes, events, _ = _pipeline(memory_index_threshold=0, memory_index_max=0)
    try:
        # A new database's novelty (its bootstrap) is already past a max of 0: both are
        # held back, and the job that starts fails. Nothing else is submitted.
        p.submit(_tx(1))
        p.submit(_tx(2))
        wait_until(lambda: len(outcomes) == 2, timeout=20)
    finally:
        p.stop()
    assert jobs.calls >= 2 and events[0] == ("indexed", 0)    # the retry landed first
    assert [o.error for o in outcomes] == [None, None]
    assert outcomes[1].result["t"] > outcomes[0].result["t"]


def test_pipeline_runs_no_job_per_commit_while_a_retry_waits(failing_jobs, monkeypatch):
    monkeypatch.setattr(catalog, "INDEX_RETRY_FIRST_SECS", 30.0)
    jobs = failing_jobs(1)
    p, outcomes, _, _ = _pipeline(memory_index_threshold=0)
    try:
        p.submit(_tx(0))
        wait_until(lambda: p.dbs["db"].jobs.retry is not None)
        for i in range(1, 20):
            p.submit(_tx(i))
        wait_until(lambda: len(outcomes) == 20)
    finally:
        p.stop()
    assert jobs.calls == 1 and all(o.error is None for o in outcomes)


def test_index_retry_back_off_grows_and_is_capped():
    assert [catalog.index_retry_delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert catalog.index_retry_delay(10_000) == catalog.INDEX_RETRY_MAX_SECS


def _mem_conn():
    uri = f"fastdatomic:mem://index-retry-{uuid.uuid4().hex}"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact("[{:db/ident :item/n :db/valueType :db.type/long "
                  ":db/cardinality :db.cardinality/one}]")
    return conn, uri


def test_in_process_retries_a_failed_job_without_a_further_transaction(failing_jobs):
    jobs = failing_jobs(2)
    conn, _ = _mem_conn()
    conn._tx.memory_index_threshold = 0
    r = conn.transact([{":item/n": 1}])
    assert conn.sync_index(r.t, timeout=20).index_basis_t >= r.t
    assert jobs.calls == 3 and conn._tx.jobs.failures == 0


def test_in_process_holds_transactions_back_until_the_retry_lands(failing_jobs, monkeypatch):
    monkeypatch.setattr(catalog, "INDEX_RETRY_FIRST_SECS", 2.0)  # room to see it hold
    jobs = failing_jobs(1)
    conn, _ = _mem_conn()
    conn._tx.memory_index_threshold = 0
    conn._tx.memory_index_max = 0
    first = conn.transact([{":item/n": 1}])          # its job fails
    wait_until(lambda: conn._tx.jobs.retry is not None)
    held = []
    waiter = threading.Thread(target=lambda: held.append(conn.transact([{":item/n": 2}])),
                              daemon=True)
    waiter.start()
    wait_until(lambda: conn._tx.job_done._waiters)   # held back while the retry waits
    assert not held
    waiter.join(20)
    assert not waiter.is_alive() and held and held[0].t > first.t
    assert jobs.calls >= 2 and conn.db().index_basis_t >= first.t


def test_in_process_runs_no_job_per_commit_while_a_retry_waits(failing_jobs, monkeypatch):
    monkeypatch.setattr(catalog, "INDEX_RETRY_FIRST_SECS", 30.0)
    jobs = failing_jobs(1)
    conn, uri = _mem_conn()
    conn._tx.memory_index_threshold = 0
    conn.transact([{":item/n": 0}])
    wait_until(lambda: conn._tx.jobs.retry is not None)
    for i in range(1, 20):
        conn.transact([{":item/n": i}])
    assert jobs.calls == 1
    fd.delete_database(uri)                          # the pending retry is cancelled
    assert not conn._tx.jobs.retry.is_alive() or conn._tx.jobs.retry.finished.is_set()


def _pipeline_whose_first_adoption(monkeypatch, first):
    """Run one transaction through a pipeline that indexes at once; ``first(writer)``
    runs before the first adoption (it may raise). Checks the failed job was retried and
    landed without stopping the transactor; returns the pipeline and the jobs built."""
    real, calls = catalog.DatabaseWriter.adopt_index, []

    def adopt(self, built):
        calls.append(built)
        if len(calls) == 1:
            first(self)
        return real(self, built)
    monkeypatch.setattr(catalog.DatabaseWriter, "adopt_index", adopt)
    fatal = []
    p, outcomes, events, metrics = _pipeline(memory_index_threshold=0)
    p.fatal = fatal.append
    try:
        p.submit(_tx(1))
        wait_until(lambda: events, timeout=20)
    finally:
        p.stop()
    assert not fatal and len(calls) == 2 and _alarms(metrics, "indexing-failed") == 1
    assert p.dbs["db"].writer.db.index_basis_t == outcomes[0].result["t"]
    return p, calls


def test_pipeline_retries_an_adoption_the_storage_refused(failing_jobs, monkeypatch):
    # A full storage refusing the root CAS is a failed job, not a reason to stop the
    # transactor: the job's trees are left to gc-storage and the next attempt lands.
    from fastdatomic.db import gc
    from fastdatomic.errors import StorageFullError
    failing_jobs(0)

    def full(writer):
        raise StorageFullError("LMDB environment is full (injected)")
    p, calls = _pipeline_whose_first_adoption(monkeypatch, full)
    # The refused job's pending record stays (gc-storage collects its trees); the
    # adopted one's went with its adoption.
    assert [k for k, _ in p.storage.list_records(gc.PENDING_PREFIX)] == [calls[0].pending[0]]


def test_pipeline_runs_again_a_job_gc_storage_collected_before_it_landed(failing_jobs,
                                                                        monkeypatch):
    # gc-storage with a cutoff younger than the job claims its trees: the adoption is
    # refused, which is a failed job (not a deposed transactor), and the next one lands.
    from datetime import datetime, timedelta, timezone
    from fastdatomic.db import gc
    failing_jobs(0)

    def claim(writer):
        assert gc.gc_storage(writer.storage, datetime.now(timezone.utc)
                             + timedelta(seconds=1))["jobs_claimed"] == 1
    p, calls = _pipeline_whose_first_adoption(monkeypatch, claim)
    assert all(p.storage.get(seg) is None for seg in calls[0].segments)   # none left behind
    assert p.storage.list_records(gc.PENDING_PREFIX) == []


def test_in_process_writer_of_a_database_deleted_under_it_says_so():
    # delete_database removes the root, then closes the writer: a transaction in
    # between fails its CAS. It is told the database is gone (not committed), and the
    # writer stays closed.
    from fastdatomic.errors import DatabaseNotFoundError
    conn, uri = _mem_conn()
    catalog.delete_database(conn._tx.writer.storage, conn._tx.name)
    with pytest.raises(DatabaseNotFoundError) as e:
        conn.transact([{":item/n": 1}])
    assert e.value.data["outcome"] == "not-committed" and "deleted" in str(e.value)
    with pytest.raises(DatabaseNotFoundError):
        conn.transact([{":item/n": 2}])
    with pytest.raises(DatabaseNotFoundError):
        conn.request_index()
    fd.delete_database(uri)
