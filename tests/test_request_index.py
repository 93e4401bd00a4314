"""``request_index`` and ``sync_index`` (Datomic's ``request-index`` / ``sync-index``):
an indexing job on demand, and waiting for a durable index that covers a ``t``.

In-process, through the transactor's pipeline, and through a real transactor process
with a networked peer."""

import threading
import uuid

import pytest

import fastdatomic as fd
from fastdatomic.db import catalog
from fastdatomic.errors import DatabaseNotFoundError, InvalidValueError, SyncTimeoutError
from fastdatomic.storage import open_storage
from fastdatomic.transactor.pipeline import Pipeline, TxRequest
from transactor_helper import start_transactor, wait_until

SCHEMA = """[{:db/ident :item/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one
              :db/index true}]"""
COUNT = "[:find (count ?e) . :where [?e :item/n]]"


def _mem_conn():
    uri = f"fastdatomic:mem://request-index-{uuid.uuid4().hex}"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    return conn


def test_in_process_request_index_moves_novelty_into_durable_trees():
    conn = _mem_conn()
    reports = [conn.transact([{":item/n": i}]) for i in range(20)]
    last = reports[-1].t
    before = conn.db()
    assert before.index_basis_t < last and before.memindex.datom_count > 0
    assert conn.request_index() is True
    after = conn.sync_index(last, timeout=5)
    assert after.index_basis_t >= last and after.memindex.datom_count == 0
    # The same facts, now read from segments; the older value still reads its own.
    assert fd.q(COUNT, after) == fd.q(COUNT, before) == 20
    e7 = "[:find ?e . :where [?e :item/n 7]]"
    assert fd.q(e7, after) == fd.q(e7, before) is not None
    # Nothing new: nothing to index.
    assert conn.request_index() is False


def test_sync_index_times_out_with_a_clear_error_and_checks_its_t():
    conn = _mem_conn()
    r = conn.transact([{":item/n": 1}])
    with pytest.raises(SyncTimeoutError) as e:
        conn.sync_index(r.t, timeout=0.1)       # no job ran: the index does not cover r.t
    assert f"t={r.t}" in str(e.value) and e.value.data["t"] == r.t
    for bad in (None, "12", -1, True, 1.5):
        with pytest.raises(InvalidValueError):
            conn.sync_index(bad, timeout=0.1)


def test_sync_index_waits_for_a_job_started_by_another_thread():
    conn = _mem_conn()
    r = conn.transact([{":item/n": 1}])
    timer = threading.Timer(0.2, conn.request_index)
    timer.start()
    try:
        assert conn.sync_index(r.t, timeout=10).index_basis_t >= r.t
    finally:
        timer.join()


@pytest.mark.parametrize("how", ["request_index", "threshold"])
def test_in_process_sync_index_without_timeout_is_woken_by_the_job(how):
    # No timeout, and the waiter is asleep on the condition before the job runs: the
    # job's notification has to wake it (without it, this waits forever).
    conn = _mem_conn()
    r = conn.transact([{":item/n": 1}])
    got, waiter = [], threading.Thread(target=lambda: got.append(conn.sync_index(r.t)), daemon=True)
    waiter.start()
    wait_until(lambda: conn._tx.index_landed._waiters)     # (CPython's Condition internals)
    assert not got                                   # waiting: nothing indexed yet
    if how == "request_index":
        assert conn.request_index() is True
    else:
        conn._tx.memory_index_threshold = 0          # the next transaction passes it
        conn.transact([{":item/n": 2}])
    waiter.join(30)
    assert not waiter.is_alive() and got
    assert got[0].index_basis_t >= r.t


def test_in_process_sync_index_ends_when_the_database_is_deleted():
    uri = f"fastdatomic:mem://sync-index-gone-{uuid.uuid4().hex}"
    fd.create_database(uri)
    conn = fd.connect(uri)
    r = conn.transact(SCHEMA)
    errors = []

    def wait():
        try:
            conn.sync_index(r.t)
        except DatabaseNotFoundError as e:
            errors.append(e)
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    wait_until(lambda: conn._tx.index_landed._waiters)
    fd.delete_database(uri)
    waiter.join(30)
    assert not waiter.is_alive() and errors
    assert "deleted" in str(errors[0])


@pytest.fixture
def gated_index_job(monkeypatch):
    """Every indexing job blocks in its build until the test opens the gate."""
    from fastdatomic import connection
    gate, real = threading.Event(), catalog.build_index

    def gated(db):
        assert gate.wait(30), "the test never opened the gate"
        return real(db)
    monkeypatch.setattr(catalog, "build_index", gated)
    monkeypatch.setattr(connection, "build_index", gated)
    yield gate
    gate.set()


def test_in_process_transactions_go_on_while_the_indexing_job_builds(gated_index_job):
    # Datomic's indexing runs in the background: a transaction that passes the threshold,
    # and the ones after it, commit while the new trees are still being built.
    conn = _mem_conn()
    conn._tx.memory_index_threshold = 0              # the next transaction passes it
    reports = []
    writer = threading.Thread(
        target=lambda: reports.extend(conn.transact([{":item/n": i}]) for i in range(3)),
        daemon=True)
    writer.start()
    writer.join(30)
    assert not writer.is_alive(), "transactions waited for the indexing job"
    assert len(reports) == 3 and conn._tx.jobs.building
    assert conn.db().index_basis_t < reports[0].t    # nothing landed yet
    assert fd.q(COUNT, conn.db()) == 3
    gated_index_job.set()
    # The first job covers its snapshot; the novelty after it starts the next one.
    assert conn.sync_index(reports[-1].t, timeout=30).index_basis_t >= reports[-1].t
    assert fd.q(COUNT, conn.db()) == 3


def test_in_process_back_pressure_holds_transactions_until_the_job_lands(gated_index_job):
    from fastdatomic.errors import TransactTimeoutError
    conn = _mem_conn()
    conn._tx.memory_index_threshold = 0
    conn._tx.memory_index_max = 0                    # past it as soon as there is novelty
    first = conn.transact([{":item/n": 1}])          # starts the (gated) job
    assert conn._tx.jobs.building
    with pytest.raises(TransactTimeoutError) as e:
        conn.transact([{":item/n": 2}], timeout=0.1)
    assert e.value.data["outcome"] == "not-committed" and "memory_index_max" in str(e.value)
    held = []
    waiter = threading.Thread(target=lambda: held.append(conn.transact([{":item/n": 3}])),
                              daemon=True)
    waiter.start()
    wait_until(lambda: conn._tx.job_done._waiters)   # (CPython's Condition internals)
    assert not held                                  # held back while the job builds
    gated_index_job.set()
    waiter.join(30)
    assert not waiter.is_alive() and held and held[0].t > first.t
    # The timed-out transaction was never committed.
    assert sorted(fd.q("[:find [?n ...] :where [_ :item/n ?n]]", conn.db())) == [1, 3]


def test_in_process_request_index_waits_for_a_running_job(gated_index_job):
    conn = _mem_conn()
    conn._tx.memory_index_threshold = 0
    r = conn.transact([{":item/n": 1}])              # starts the (gated) job
    conn._tx.memory_index_threshold = 1 << 30        # no further automatic job
    done = []
    requester = threading.Thread(target=lambda: done.append(conn.request_index()), daemon=True)
    requester.start()
    wait_until(lambda: conn._tx.job_done._waiters)
    assert not done
    gated_index_job.set()
    requester.join(30)
    assert not requester.is_alive()
    # The job it waited for covered r.t already: nothing of its own was left to index.
    assert done == [False] and conn.db().index_basis_t >= r.t


def test_in_process_request_index_on_a_deleted_database():
    uri = f"fastdatomic:mem://request-index-gone-{uuid.uuid4().hex}"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    fd.delete_database(uri)
    with pytest.raises(DatabaseNotFoundError):
        conn.request_index()


def _pipeline(name):
    st = open_storage("mem", name=name)
    catalog.create_database(st, "db")
    published, events = [], []
    done = threading.Event()

    def publish(db, log, outcomes, event):
        published.extend(outcomes)
        if event is not None:
            events.append(event)
            done.set()

    p = Pipeline(st, fence=lambda: [], publish=publish, fatal=print)
    p.load()
    return p, published, events, done


def test_pipeline_index_request_starts_a_job_below_the_threshold():
    p, published, events, done = _pipeline(f"request-index-{uuid.uuid4().hex}")
    assert p.threshold > 1 << 20                 # a few datoms never start a job by themselves
    p.start()
    try:
        p.submit(TxRequest("tx", "db", [[":db/add", "e", ":db/doc", "first"]]))
        p.submit(TxRequest("index", "db"))
        p.submit(TxRequest("index", "nope"))
        assert done.wait(10), "the requested indexing job never landed"
    finally:
        p.stop()
    tx, requested, missing = published[:3]
    assert tx.error is None and requested.error is None
    assert requested.result == {"requested": True, "basis_t": tx.result["t"]}
    assert isinstance(missing.error, DatabaseNotFoundError)
    assert events == [("indexed", tx.result["t"])]
    assert p.dbs["db"].writer.db.index_basis_t == tx.result["t"]


@pytest.mark.usefixtures("peers_and_transactors_stopped")
def test_networked_peer_requests_an_index_and_syncs_to_it(tmp_path):
    start_transactor(tmp_path)
    uri = f"fastdatomic:dev://{tmp_path}/data/db"
    assert fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    last = [conn.transact([{":item/n": i}]) for i in range(30)][-1].t
    assert conn.db().index_basis_t < last
    assert conn.request_index() is True
    db = conn.sync_index(last, timeout=30)
    assert db.index_basis_t >= last and db.basis_t >= last
    assert fd.q(COUNT, db) == 30
    assert sorted(fd.q("[:find [?n ...] :where [?e :item/n ?n] [(< ?n 3)]]", db)) == [0, 1, 2]
    # The root in storage agrees: the job's trees are durable.
    root, _ = catalog.read_root(open_storage("dev", path=str(tmp_path / "data")), "db")
    assert root["index_basis_t"] >= last
    # Transactions go on on top of the new index.
    r = conn.transact([{":item/n": 100}])
    assert fd.q(COUNT, conn.db()) == 31 and r.t > last
    with pytest.raises(SyncTimeoutError):
        conn.sync_index(r.t + 1000, timeout=0.2)
    # A new database's novelty is its bootstrap schema; once indexed, nothing is left.
    other = f"fastdatomic:dev://{tmp_path}/data/other"
    assert fd.create_database(other)
    oconn = fd.connect(other)
    assert oconn.request_index() is True
    assert oconn.sync_index(0, timeout=30).memindex.datom_count == 0
    assert oconn.request_index() is False
    # A deleted database: a clear error.
    fd.delete_database(uri)
    with pytest.raises(DatabaseNotFoundError):
        conn.request_index()


def test_a_request_during_a_running_job_gets_a_job_of_its_own_afterwards():
    # The running job started from an older value: it may not cover the requester's
    # transactions, so another job follows it, whatever the novelty's size.
    p, published, events, done = _pipeline(f"request-index-busy-{uuid.uuid4().hex}")
    st = p.dbs["db"]
    p._process([TxRequest("tx", "db", [[":db/add", "e", ":db/doc", "a"]])])
    st.jobs.begin()                               # as if a job were running
    p._process([TxRequest("index", "db")])
    assert published[-1].result["requested"] is True and st.index_wanted
    st.jobs.end()                                 # ... and it landed without covering us
    p._process([TxRequest("tx", "db", [[":db/add", "e", ":db/doc", "b"]])])
    last = published[-1].result["t"]
    assert st.jobs.building and not st.index_wanted  # the wanted job started after that commit
    p.start()
    try:
        assert done.wait(10), "the wanted indexing job never landed"
    finally:
        p.stop()
    assert events == [("indexed", last)] and st.writer.db.index_basis_t == last


def test_a_job_of_a_deleted_database_never_lands_in_its_namesake(gated_index_job):
    # The job built its trees from the deleted database; adopting them into a database
    # re-created under the same name would bring the old datoms back into it.
    p, published, events, done = _pipeline(f"request-index-namesake-{uuid.uuid4().hex}")
    old = p.dbs["db"]
    p.threshold = 0
    p.start()
    try:
        p.submit(TxRequest("tx", "db", [[":db/add", "e", ":db/doc", "deleted with its db"]]))
        wait_until(lambda: published and old.jobs.building)      # the (gated) job runs
        p.submit(TxRequest("delete", "db"))
        p.submit(TxRequest("create", "db"))
        wait_until(lambda: p.dbs.get("db") not in (None, old))
        p.threshold = 1 << 30
        gated_index_job.set()                   # the old job ends; its result is dropped
        wait_until(lambda: not old.jobs.building)
        p.submit(TxRequest("tx", "db", [[":db/add", "e", ":db/doc", "new"]]))
        p.submit(TxRequest("index", "db"))      # the new database's own job
        wait_until(lambda: p.dbs["db"].writer.db.index_basis_t > 0 and not p.dbs["db"].jobs.busy)
    finally:
        p.stop()
    new = p.dbs["db"].writer.db
    docs = fd.q("[:find [?d ...] :where [_ :db/doc ?d]]", new)
    assert "deleted with its db" not in docs
    assert fd.q("[:find [?d ...] :where [_ :db/doc ?d]]",
                catalog.load_database(new.segs.storage, "db")) == docs
    # The abandoned job's segments, and the deleted database's, are gc-storage's.
    from datetime import datetime, timedelta, timezone
    from fastdatomic.db import gc
    st = new.segs.storage
    gc.gc_storage(st, datetime.now(timezone.utc) + timedelta(seconds=1))
    assert st.describe()["blobs"] == len(gc.live_segments(st))
