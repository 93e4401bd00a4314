"""A peer answers a group commit's acks before it applies the group's novelty.

The transactor sends a group commit's NOVELTY frames and then its ACKS. The peer's loop
thread answers the acks first and applies the novelty after it has sent the
transactions the woken user threads queued next (or within ``DEFERRED_APPLY``), so the
transactor commits the next group while the peer applies the last one. Nothing a user
can see may change:

* ``conn.db()`` after ``transact`` returns includes the transaction (read your writes):
  a reader applies the pending novelty itself;
* a report's ``db_before``, ``db_after`` and ``tx_data`` are the same as ever: they are
  filled in when the novelty is applied, and reading them applies it;
* a report whose novelty never arrives (a lost connection) reads storage instead;
* a tx report queue gets its reports before ``transact`` returns, as in-process.
"""

import time
from types import SimpleNamespace

import pytest

import fastdatomic as fd
from fastdatomic.peer import _AwaitedTxReport, _PeerDb
from transactor_helper import start_transactor, wait_until

SCHEMA = '[{:db/ident :d/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]'


def _datoms(report):
    return sorted((d.e, d.a, d.v, d.tx, d.added) for d in report.tx_data)


@pytest.fixture
def mem_history():
    """An in-process database with three transactions; the value before them and their
    reports; its storage and log records."""
    uri = "fastdatomic:mem://deferred-novelty"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    before = conn.db()
    reports = [conn.transact([{":d/n": i}]) for i in range(3)]
    records = [rec for _, rec in conn.storage.log_range(before.db_id, before.basis_t + 1)]
    assert len(records) == 3
    yield SimpleNamespace(storage=conn.storage, name="deferred-novelty", before=before,
                          reports=reports, records=records)
    fd.delete_database(uri)


def _peer_db(h):
    return _PeerDb(SimpleNamespace(storage=h.storage), h.name, h.before)


def test_pending_novelty_is_applied_by_the_first_reader(mem_history):
    h = mem_history
    pdb = _peer_db(h)
    pdb.defer(h.records[:2])
    assert pdb.applied is h.before and len(pdb.pending) == 2     # nothing applied yet
    assert pdb.db.basis_t == h.reports[1].t and not pdb.pending
    # wait_for sees pending novelty too.
    pdb.defer(h.records[2:])
    assert pdb.wait_for(h.reports[2].t, 0)
    assert pdb.applied.basis_t == h.reports[2].t


def test_a_report_acknowledged_before_its_novelty_is_filled_in(mem_history):
    h = mem_history
    pdb = _peer_db(h)
    pdb.defer(h.records[:2])
    first, second = h.reports[0], h.reports[1]
    r1 = pdb.await_report(first.t, {"x": 1}, first.tx_id)
    r2 = pdb.await_report(second.t, {}, second.tx_id)
    assert isinstance(r1, _AwaitedTxReport) and r1.tempids == {"x": 1}
    pdb.apply_pending()                                       # the loop thread, later
    assert r1.db_before.basis_t == h.before.basis_t and r1.db_after.basis_t == first.t
    assert r2.db_before.basis_t == first.t and r2.db_after.basis_t == second.t
    assert _datoms(r1) == _datoms(first) and _datoms(r2) == _datoms(second)
    assert not pdb.awaited
    # Applied already: the caller builds the report from what it kept.
    assert pdb.await_report(second.t, {}, second.tx_id) is None


def test_reading_a_report_applies_its_novelty(mem_history):
    h = mem_history
    pdb = _peer_db(h)
    pdb.defer(h.records)
    last = h.reports[2]
    r = pdb.await_report(last.t, {}, last.tx_id)
    assert r.db_after.basis_t == last.t and not pdb.pending    # read -> applied
    assert _datoms(r) == _datoms(last)


def test_a_report_whose_novelty_never_came_reads_storage(mem_history):
    h = mem_history
    pdb = _peer_db(h)
    second = h.reports[1]
    r = _AwaitedTxReport(pdb, second.t, {}, second.tx_id)    # its novelty was lost
    # As for a retried transaction: views of the latest value, as of t and just before.
    assert r.db_after.as_of_t == second.t and r.db_before.as_of_t < second.t
    assert _datoms(r) == _datoms(second)


@pytest.fixture
def peer_conn(tmp_path, peers_and_transactors_stopped):
    """A networked peer's connection to a new database, through a real transactor."""
    start_transactor(str(tmp_path))
    uri = f"fastdatomic:dev://{tmp_path}/data/deferred"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    return conn


def test_many_in_flight_reports_and_reads_through_a_transactor(peer_conn):
    conn = peer_conn
    futs = [conn.transact_async([{":d/n": i}]) for i in range(300)]
    reports = [f.result(30) for f in futs]
    # read your writes: the last transaction is in the value right after its answer
    assert conn.db().basis_t >= reports[-1].t
    prev_t = None
    for i, r in enumerate(reports):
        assert r.db_after.basis_t == r.t and r.db_before.basis_t < r.t
        if prev_t is not None:
            assert r.db_before.basis_t >= prev_t
        prev_t = r.t
        added = [d.v for d in r.tx_data if d.added and d.v == i]
        assert added == [i], (i, r.tx_data)
    # One transaction, then nothing reads: the loop thread applies it by itself.
    r = conn.transact([{":d/n": 1000}])
    pdb = conn._db
    wait_until(lambda: not pdb.pending and pdb.applied.basis_t >= r.t, timeout=5)
    assert r.db_after.basis_t == r.t


def test_report_queue_gets_reports_before_transact_returns(peer_conn):
    conn = peer_conn
    q = conn.tx_report_queue()
    rs = [conn.transact([{":d/n": i}]) for i in range(20)]
    got = [q.get_nowait().t for _ in rs]
    assert got == [r.t for r in rs]
    assert q.empty()
    time.sleep(0.05)
    assert q.empty()       # no report came twice (applied and then applied again)
