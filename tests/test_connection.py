"""Connections: the database catalog, transact / transact_async, report queues, sync and with_.

Datomic (Peer API) contracts these tests check:
- ``create-database`` is true when it created the database, false when it already
  existed; ``delete-database`` likewise; a deleted then re-created name is a new,
  empty database.
- ``db`` returns the current value immediately, without blocking.
- the transactor applies transactions serially; ``transact-async`` returns a future
  that either holds the report or raises the transaction's error.
- a report holds ``:db-before``, ``:db-after``, ``:tx-data`` (with the transaction
  entity's ``:db/txInstant``) and ``:tempids``; every datom of one transaction has one tx.
- ``tx-report-queue`` delivers a report for every transaction, from any peer.
- ``sync`` gives a value including every transaction completed when it was called.
- ``with`` applies tx-data to a value only, returning a report like ``transact``.
A rejected transaction applies nothing (basis t unchanged) and the connection goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading
import uuid

import pytest

import fastdatomic as fd
from fastdatomic import Keyword as K
from fastdatomic.errors import (
    DatabaseNotFoundError, FastDatomicError, InvalidTxDataError, NotAnEntityError,
    StorageConfigError, TransactionError, UniqueConflictError, WrongTypeError,
)
from fastdatomic.ids import t_to_tx, is_tx
from transactor_helper import wait_until
from txfns_helper import db_uri, system_uri

SCHEMA_EDN = """
[{:db/ident :p/name   :db/valueType :db.type/string :db/cardinality :db.cardinality/one
  :db/unique :db.unique/identity}
 {:db/ident :p/n      :db/valueType :db.type/long   :db/cardinality :db.cardinality/one}
 {:db/ident :p/friend :db/valueType :db.type/ref    :db/cardinality :db.cardinality/many}]
"""


def new_uri() -> str:
    return db_uri("conn")


@pytest.fixture
def uri():
    u = new_uri()
    assert fd.create_database(u) is True
    yield u
    fd.delete_database(u)


@pytest.fixture
def conn(uri):
    c = fd.connect(uri)
    c.transact(SCHEMA_EDN)
    return c


def eid(db, name):
    return db.entid([":p/name", name])


def user_facts(datoms, db):
    """``{(e, ident, v, added)}`` of the non-transaction datoms."""
    return {(d.e, db.ident(d.a), d.v, d.added) for d in datoms if not is_tx(d.e)}


def as_set(datoms):
    return {(d.e, d.a, d.v, d.tx, d.added) for d in datoms}


def drain(q):
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except Exception:
            return out


_fn_counter = iter(range(10**9))


def blocking_tx_fn():
    """A transaction function that holds the writer until ``release`` is set."""
    started, release = threading.Event(), threading.Event()
    name = K(f"test.block/f{next(_fn_counter)}")

    def fn(db):
        started.set()
        release.wait(10)
        return []
    fd.register_tx_fn(name, fn)
    return name, started, release


# --- catalog: create / delete / list / connect ------------------------------------------


def test_create_is_true_once_then_false():
    u = new_uri()
    try:
        assert fd.create_database(u) is True
        assert fd.create_database(u) is False
    finally:
        fd.delete_database(u)


def test_delete_is_true_once_then_false():
    u = new_uri()
    fd.create_database(u)
    assert fd.delete_database(u) is True
    assert fd.delete_database(u) is False
    assert fd.delete_database(new_uri()) is False


def test_list_databases_tracks_create_and_delete():
    u = new_uri()
    name = u.rsplit("/", 1)[1]
    assert name not in fd.list_databases(system_uri())
    fd.create_database(u)
    assert name in fd.list_databases(system_uri())
    fd.delete_database(u)
    assert name not in fd.list_databases(system_uri())


def test_new_database_is_empty_at_basis_t_0(uri):
    db = fd.connect(uri).db()
    assert db.basis_t == 0
    assert db.entid(":p/name") is None
    assert db.entid(":db/ident") is not None


def test_connect_to_missing_database_raises_not_found():
    u = new_uri()
    with pytest.raises(DatabaseNotFoundError) as ei:
        fd.connect(u)
    assert u.rsplit("/", 1)[1] in str(ei.value)


BAD_URIS = [
    "datomic:mem://x",              # not our scheme
    "mem://x",
    "fastdatomic:mem://",           # no name
    "fastdatomic:mem:/x",           # no '//'
    "fastdatomic:nosuchproto://x",  # unknown protocol
    "",
]


@pytest.mark.parametrize("bad", BAD_URIS)
@pytest.mark.parametrize("verb", [fd.create_database, fd.delete_database, fd.connect,
                                  fd.list_databases])
def test_bad_uri_raises_storage_config_error_naming_it(verb, bad):
    with pytest.raises(StorageConfigError) as ei:
        verb(bad)
    assert repr(bad) in str(ei.value) or bad in str(ei.value)


@pytest.mark.parametrize("bad", [None, 42, b"fastdatomic:mem://x"])
def test_non_string_uri_raises_storage_config_error(bad):
    with pytest.raises(StorageConfigError):
        fd.connect(bad)


def test_invalid_database_name_in_uri_is_a_bad_uri():
    bad = "fastdatomic:mem://has space"
    with pytest.raises(StorageConfigError) as ei:
        fd.create_database(bad)
    assert bad in str(ei.value)


def test_delete_then_recreate_gives_a_fresh_empty_database():
    u = new_uri()
    fd.create_database(u)
    c = fd.connect(u)
    c.transact(SCHEMA_EDN)
    c.transact([{":p/name": "old"}])
    assert fd.delete_database(u) is True
    with pytest.raises(DatabaseNotFoundError):
        fd.connect(u)
    assert fd.create_database(u) is True
    try:
        c2 = fd.connect(u)
        db = c2.db()
        assert db.basis_t == 0
        assert db.entid(":p/name") is None
        assert [e["t"] for e in c2.log().tx_range(None, None)] == [0]
        r = c2.transact([{":db/doc": "new"}])
        assert r.db_before.basis_t == 0 and c2.db().basis_t == r.t
    finally:
        fd.delete_database(u)


def test_old_connection_cannot_write_into_a_recreated_database():
    u = new_uri()
    fd.create_database(u)
    old = fd.connect(u)
    old.transact(SCHEMA_EDN)
    fd.delete_database(u)
    fd.create_database(u)
    try:
        with pytest.raises(Exception):
            old.transact([{":db/doc": "from the old connection"}])
        assert fd.connect(u).db().basis_t == 0
    finally:
        fd.delete_database(u)


def test_connection_to_deleted_database_fails_with_fastdatomic_errors():
    u = new_uri()
    fd.create_database(u)
    c = fd.connect(u)
    c.transact([{":db/doc": "x"}])
    fd.delete_database(u)
    for _ in range(2):
        with pytest.raises(FastDatomicError):
            c.transact([{":db/doc": "y"}])
    with pytest.raises(FastDatomicError):
        c.transact_async([{":db/doc": "z"}]).result(5)
    assert c.db() is not None


def test_two_connections_see_each_others_transactions(uri):
    c1, c2 = fd.connect(uri), fd.connect(uri)
    r1 = c1.transact(SCHEMA_EDN)
    assert c2.db().basis_t == r1.t
    r2 = c2.transact([{":p/name": "from-c2"}])
    assert r2.db_before.basis_t == r1.t
    assert eid(c1.db(), "from-c2") == r2.db_after.entid([":p/name", "from-c2"])
    r3 = c1.transact([{":p/name": "from-c1"}])
    assert eid(c2.db(), "from-c1") is not None and c2.db().basis_t == r3.t


def test_report_queue_receives_transactions_of_other_connections(uri):
    c1 = fd.connect(uri)
    c1.transact(SCHEMA_EDN)
    q = c1.tx_report_queue()
    c2 = fd.connect(uri)
    r = c2.transact([{":p/name": "other-peer"}])
    assert [x.t for x in drain(q)] == [r.t]


def test_release_is_harmless(conn):
    conn.release()


# --- transact: Python data and EDN text, the report ------------------------------------


def test_transact_python_data_report(conn):
    before = conn.db()
    r = conn.transact([{":db/id": "ann", ":p/name": "Ann", ":p/n": 1},
                       [":db/add", "bob", ":p/name", "Bob"],
                       [":db/add", "ann", ":p/friend", "bob"]])
    ann, bob = r.tempids["ann"], r.tempids["bob"]
    assert r.resolve_tempid("ann") == ann and r.resolve_tempid("bob") == bob and ann != bob
    assert r.resolve_tempid("nobody") is None
    # db-before / db-after
    assert r.db_before.basis_t == before.basis_t < r.db_after.basis_t == r.t
    assert conn.db().basis_t == r.t
    assert r.db_before.entid([":p/name", "Ann"]) is None
    assert r.db_after.entid([":p/name", "Ann"]) == ann
    # tx-data: one transaction, its txInstant and UUID on the tx entity, the user facts
    tx = t_to_tx(r.t)
    assert {d.tx for d in r.tx_data} == {tx}
    assert all(d.added for d in r.tx_data)
    inst = [d for d in r.tx_data if d.e == tx and d.a == r.db_after.entid(":db/txInstant")]
    assert len(inst) == 1
    assert user_facts(r.tx_data, r.db_after) == {
        (ann, K("p/name"), "Ann", True), (ann, K("p/n"), 1, True),
        (bob, K("p/name"), "Bob", True), (ann, K("p/friend"), bob, True)}
    assert r.tempids.get(fd.TX_TEMPID, tx) == tx
    assert isinstance(r.tx_id, uuid.UUID) and r.duplicate is False


def test_report_is_also_a_map(conn):
    r = conn.transact([{":db/id": "x", ":p/name": "X"}])
    assert r[":db-before"] is r.db_before
    assert r[":db-after"] is r.db_after
    assert r[":tx-data"] is r.tx_data
    assert r[":tempids"] is r.tempids
    assert r["db_after"] is r.db_after


def test_report_missing_key_raises_key_error(conn):
    r = conn.transact([{":p/name": "Y"}])
    with pytest.raises(KeyError):
        r[":no-such-key"]


def test_transact_edn_text(conn):
    r = conn.transact('[{:db/id "ann" :p/name "Ann" :p/n 7} '
                      '[:db/add "bob" :p/name "Bob"] [:db/add "ann" :p/friend "bob"]]')
    db = conn.db()
    ann = r.resolve_tempid("ann")
    assert eid(db, "Ann") == ann
    assert [d.v for d in db.datoms("eavt", ann, ":p/n")] == [7]
    assert [d.v for d in db.datoms("eavt", ann, ":p/friend")] == [r.resolve_tempid("bob")]
    assert {d.tx for d in r.tx_data} == {t_to_tx(r.t)}


def test_edn_and_python_forms_give_the_same_facts(conn):
    r1 = conn.transact('[{:p/name "E" :p/n 1}]')
    r2 = conn.transact([{":p/name": "P", ":p/n": 1}])
    f1 = {(db_a, v) for (_, db_a, v, _) in user_facts(r1.tx_data, r1.db_after)}
    f2 = {(db_a, v) for (_, db_a, v, _) in user_facts(r2.tx_data, r2.db_after)}
    assert f1 == {(K("p/name"), "E"), (K("p/n"), 1)}
    assert f2 == {(K("p/name"), "P"), (K("p/n"), 1)}


def test_empty_transaction_commits_only_the_tx_entity(conn):
    b = conn.db().basis_t
    r = conn.transact([])
    assert r.t > b and conn.db().basis_t == r.t
    assert {d.e for d in r.tx_data} == {t_to_tx(r.t)}
    assert r.db_after.entid(":db/txInstant") in {d.a for d in r.tx_data}


def test_tx_instants_increase(conn):
    a = conn.db().entid(":db/txInstant")
    insts = []
    for i in range(5):
        r = conn.transact([{":p/n": i, ":p/name": f"i{i}"}])
        insts.append(next(d.v for d in r.tx_data if d.a == a))
    assert all(x < y for x, y in zip(insts, insts[1:]))


def test_db_never_blocks_while_a_transaction_runs(conn):
    name, started, release = blocking_tx_fn()
    b = conn.db().basis_t
    fut = conn.transact_async([[name], {":p/name": "slow"}])
    try:
        assert started.wait(5)
        db = conn.db()          # returns while the writer is held inside the transaction
        assert db.basis_t == b and eid(db, "slow") is None
        assert not fut.done()
    finally:
        release.set()
    r = fut.result(5)
    assert conn.db().basis_t == r.t and eid(conn.db(), "slow") is not None


def test_transact_timeout_is_honoured_and_retry_with_tx_id_is_safe(conn):
    name, started, release = blocking_tx_fn()
    busy = conn.transact_async([[name]])
    assert started.wait(5)
    timer = threading.Timer(1.5, release.set)   # bounds the test if the timeout is ignored
    timer.start()
    tid = uuid.uuid4()
    try:
        with pytest.raises(TimeoutError):
            conn.transact([{":p/name": "late"}], tx_id=tid, timeout=0.2)
        assert not busy.done()   # it gave up while the writer was still held: the timeout worked
    finally:
        release.set()
        timer.cancel()
        busy.result(5)
    # the caller does not know whether it committed; retrying with the same tx_id is safe
    r = conn.transact([{":p/name": "late"}], tx_id=tid)
    assert conn.tx_outcome(tid) == r.t
    assert len([d for d in conn.db().datoms("aevt", ":p/name") if d.v == "late"]) == 1


# --- transact_async -----------------------------------------------------------------------


def test_transact_async_returns_a_future(conn):
    f = conn.transact_async([{":p/name": "f"}])
    assert isinstance(f, cf.Future)
    r = f.result(5)
    assert f.done() and r.db_after.entid([":p/name", "f"]) is not None


def test_many_async_transactions_from_threads_are_serial(conn):
    q = conn.tx_report_queue()
    threads, per = 4, 40

    def submit(k):
        return [conn.transact_async([{":p/name": f"t{k}-{i}", ":p/n": i}]) for i in range(per)]
    with cf.ThreadPoolExecutor(threads) as ex:
        futures = [f for fs in ex.map(submit, range(threads)) for f in fs]
    reports = [f.result(10) for f in futures]
    ts = [r.t for r in reports]
    assert len(set(ts)) == threads * per
    # The single writer's order: the queue sees them in commit order, each built on the last.
    seen = drain(q)
    assert len(seen) == threads * per
    assert all(a.t < b.t for a, b in zip(seen, seen[1:]))
    assert all(b.db_before.basis_t == a.t for a, b in zip(seen, seen[1:]))
    assert sorted(ts) == [r.t for r in seen]
    db = conn.db()
    assert db.basis_t == seen[-1].t
    for k in range(threads):
        for i in (0, per - 1):
            assert eid(db, f"t{k}-{i}") is not None
    # futures of one thread complete in submission order
    for k in range(threads):
        mine = ts[k * per:(k + 1) * per]
        assert mine == sorted(mine)


def test_sync_and_async_transactions_interleave_serially(conn):
    q = conn.tx_report_queue()
    futs, syncs = [], []

    def worker(k):
        for i in range(20):
            if i % 2:
                syncs.append(conn.transact([{":p/name": f"s{k}-{i}"}]).t)
            else:
                futs.append(conn.transact_async([{":p/name": f"a{k}-{i}"}]))
    ths = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(20)
    ts = syncs + [f.result(10).t for f in futs]
    assert len(set(ts)) == 60
    seen = drain(q)
    assert [r.t for r in seen] == sorted(ts)
    assert all(b.db_before.basis_t == a.t for a, b in zip(seen, seen[1:]))


def test_transactions_from_one_thread_commit_in_submission_order(conn):
    for k in range(30):
        futs = [conn.transact_async([{":p/name": f"o{k}-{i}"}]) for i in range(10)]
        r = conn.transact([{":p/name": f"o{k}-sync", ":p/friend": [[":p/name", f"o{k}-9"]]}])
        ts = [f.result(5).t for f in futs]
        assert ts == sorted(ts) and max(ts) < r.t, f"round {k}"


def test_await_transact_async_in_asyncio(conn):
    async def main():
        r = await conn.transact_async([{":p/name": "aw"}])
        rs = await asyncio.gather(*[conn.transact_async([{":p/name": f"g{i}"}]) for i in range(10)])
        return r, rs
    r, rs = asyncio.run(main())
    assert eid(r.db_after, "aw") is not None
    ts = [x.t for x in rs]
    assert len(set(ts)) == 10 and min(ts) > r.t
    assert all(eid(conn.db(), f"g{i}") is not None for i in range(10))


def test_await_failed_transaction_raises_in_asyncio(conn):
    async def main():
        with pytest.raises(NotAnEntityError):
            await conn.transact_async([{":p/nope": 1}])
        return await conn.transact_async([{":p/name": "after"}])
    r = asyncio.run(main())
    assert eid(r.db_after, "after") is not None


def test_invalid_async_transaction_fails_only_its_own_future(conn):
    f1 = conn.transact_async([{":p/name": "one"}])
    bad = conn.transact_async([{":p/name": 123}])
    f3 = conn.transact_async([{":p/name": "three"}])
    r1 = f1.result(5)
    with pytest.raises(WrongTypeError):
        bad.result(5)
    assert isinstance(bad.exception(), TransactionError) or isinstance(bad.exception(), WrongTypeError)
    r3 = f3.result(5)
    assert r3.db_before.basis_t == r1.t
    assert eid(conn.db(), "one") and eid(conn.db(), "three")


def test_cancelled_pending_async_transaction_is_not_applied(conn):
    name, started, release = blocking_tx_fn()
    first = conn.transact_async([[name]])
    try:
        assert started.wait(5)
        pending = conn.transact_async([{":p/name": "cancelled"}])
        assert pending.cancel()
    finally:
        release.set()
    first.result(5)
    after = conn.transact_async([{":p/name": "after-cancel"}]).result(5)
    db = conn.db()
    assert eid(db, "cancelled") is None and eid(db, "after-cancel") is not None
    assert after.db_before.basis_t == first.result().t


# --- tx_report_queue ------------------------------------------------------------------------


def test_report_queue_receives_reports_in_order(conn):
    q = conn.tx_report_queue()
    rs = [conn.transact([{":p/name": f"q{i}"}]) for i in range(5)]
    got = drain(q)
    assert [r.t for r in got] == [r.t for r in rs]
    assert all(g.tx_data == r.tx_data or as_set(g.tx_data) == as_set(r.tx_data) for g, r in zip(got, rs))
    assert got[0].db_after.basis_t == rs[0].t


def test_report_queue_only_sees_later_transactions(conn):
    conn.transact([{":p/name": "before"}])
    q = conn.tx_report_queue()
    assert q.empty()
    r = conn.transact([{":p/name": "later"}])
    assert [x.t for x in drain(q)] == [r.t]


def test_two_queues_both_receive(conn):
    q1, q2 = conn.tx_report_queue(), conn.tx_report_queue()
    rs = [conn.transact([{":p/name": f"two{i}"}]).t for i in range(3)]
    assert [r.t for r in drain(q1)] == rs
    assert [r.t for r in drain(q2)] == rs


def test_report_queue_overflow_drops_the_oldest(conn):
    q = conn.tx_report_queue(maxsize=3)
    ts = [conn.transact([{":p/name": f"o{i}"}]).t for i in range(7)]
    assert q.dropped == 4
    assert [r.t for r in drain(q)] == ts[-3:]
    t8 = conn.transact([{":p/name": "o8"}]).t
    assert [r.t for r in drain(q)] == [t8] and q.dropped == 4


def test_report_queue_consumer_thread_sees_every_report(conn):
    q = conn.tx_report_queue()
    got = []

    def consume():
        while len(got) < 30:
            got.append(q.get(timeout=5).t)
    th = threading.Thread(target=consume)
    th.start()
    ts = [conn.transact_async([{":p/name": f"c{i}"}]) for i in range(30)]
    ts = [f.result(5).t for f in ts]
    th.join(10)
    assert got == ts and q.dropped == 0


def test_remove_report_queue_stops_delivery(conn):
    q, keep = conn.tx_report_queue(), conn.tx_report_queue()
    t1 = conn.transact([{":p/name": "r1"}]).t
    conn.remove_tx_report_queue(q)
    t2 = conn.transact([{":p/name": "r2"}]).t
    assert [r.t for r in drain(q)] == [t1]
    assert [r.t for r in drain(keep)] == [t1, t2]
    conn.remove_tx_report_queue(q)  # removing twice is harmless


def test_removing_a_queue_during_delivery_does_not_starve_others(conn):
    # A consumer thread removing its queue right after it got a report, at the moment the
    # writer is between two offers; simulated deterministically by removing inside offer().
    qa, qb = conn.tx_report_queue(), conn.tx_report_queue()
    offer = qa.offer

    def offer_then_remove(report):
        offer(report)
        conn.remove_tx_report_queue(qa)
    qa.offer = offer_then_remove
    r = conn.transact([{":p/name": "race"}])
    assert [x.t for x in drain(qa)] == [r.t]
    assert [x.t for x in drain(qb)] == [r.t]


def test_failed_transactions_are_not_reported(conn):
    q = conn.tx_report_queue()
    with pytest.raises(NotAnEntityError):
        conn.transact([{":p/nope": 1}])
    with pytest.raises(WrongTypeError):
        conn.transact_async([{":p/name": 5}]).result(5)
    r = conn.transact([{":p/name": "ok"}])
    assert [x.t for x in drain(q)] == [r.t]


# --- sync ---------------------------------------------------------------------------------


def test_sync_includes_every_acknowledged_transaction(conn):
    futs = [conn.transact_async([{":p/name": f"s{i}"}]) for i in range(20)]
    last = max(f.result(5).t for f in futs)
    db = conn.sync()
    assert db.basis_t >= last
    assert all(eid(db, f"s{i}") is not None for i in range(20))
    r = conn.transact([{":p/name": "s-sync"}])
    assert conn.sync().basis_t >= r.t and eid(conn.sync(), "s-sync") == eid(r.db_after, "s-sync")


# --- with_ ------------------------------------------------------------------------------------


def test_with_is_pure(conn):
    q = conn.tx_report_queue()
    db = conn.db()
    log_ts = [e["t"] for e in conn.log().tx_range(None, None)]
    r = db.with_([{":db/id": "w", ":p/name": "W"}])
    assert r.db_before is db
    assert r.db_after.entid([":p/name", "W"]) == r.resolve_tempid("w")
    assert r.db_after.basis_t == r.t > db.basis_t
    assert {d.tx for d in r.tx_data} == {t_to_tx(r.t)}
    assert conn.db() is db or conn.db().basis_t == db.basis_t
    assert eid(conn.db(), "W") is None and eid(db, "W") is None
    assert [e["t"] for e in conn.log().tx_range(None, None)] == log_ts
    assert drain(q) == []


def test_with_is_chainable(conn):
    db = conn.db()
    r1 = db.with_([{":db/id": "a", ":p/name": "A"}])
    r2 = r1.db_after.with_([{":db/id": "b", ":p/name": "B", ":p/friend": [[":p/name", "A"]]}])
    r3 = r2.db_after.with_('[[:db/retract [:p/name "A"] :p/name "A"]]')
    assert r2.db_before is r1.db_after and r3.db_before is r2.db_after
    assert r1.t < r2.t < r3.t
    d2 = r2.db_after
    assert [d.v for d in d2.datoms("eavt", r2.resolve_tempid("b"), ":p/friend")] == [r1.resolve_tempid("a")]
    assert eid(r3.db_after, "A") is None and eid(r3.db_after, "B") is not None
    assert [(d.v, d.added) for d in r3.tx_data if not is_tx(d.e)] == [("A", False)]
    assert conn.db().basis_t == db.basis_t and eid(conn.db(), "A") is None
    # a real transaction afterwards is unaffected by the speculative ones
    r = conn.transact([{":p/name": "A"}])
    assert r.db_before.basis_t == db.basis_t


def test_with_matches_transact(conn):
    db = conn.db()
    data = [{":db/id": "m", ":p/name": "M", ":p/n": 3}]
    w = db.with_(data)
    r = conn.transact(data)
    assert w.t == r.t
    assert user_facts(w.tx_data, w.db_after) == user_facts(r.tx_data, r.db_after)
    assert w.resolve_tempid("m") == r.resolve_tempid("m")


def _unique_conflict(conn):
    a = conn.transact([{":p/name": "taken"}]).db_after.entid([":p/name", "taken"])
    b = conn.transact([{":db/id": "b", ":p/n": 1}]).resolve_tempid("b")
    assert a and b
    return [[":db/add", b, ":p/name", "taken"]]


BAD_TX = [
    pytest.param(lambda c: [{":p/nope": 1}], NotAnEntityError, id="unknown-attribute"),
    pytest.param(lambda c: [{":p/name": 42}], WrongTypeError, id="wrong-type"),
    pytest.param(lambda c: [[":db/add", "x", ":p/name"]], InvalidTxDataError, id="short-add"),
    pytest.param(lambda c: [[":db/frobnicate", 1]], InvalidTxDataError, id="unknown-op"),
    pytest.param(lambda c: {":p/name": "not-a-list"}, InvalidTxDataError, id="map-not-list"),
    pytest.param(lambda c: None, InvalidTxDataError, id="none"),
    pytest.param(lambda c: [42], InvalidTxDataError, id="non-form"),
    pytest.param(lambda c: [[":db/add", [":p/name", "ghost"], ":p/n", 1]], NotAnEntityError, id="missing-lookup"),
    pytest.param(_unique_conflict, UniqueConflictError, id="unique-conflict"),
]


@pytest.mark.parametrize("make,err", BAD_TX)
def test_with_raises_the_same_errors_as_transact(conn, make, err):
    data = make(conn)
    db = conn.db()
    with pytest.raises(err) as e_with:
        db.with_(data)
    with pytest.raises(err) as e_tx:
        conn.transact(data)
    with pytest.raises(err):
        conn.transact_async(data).result(5)
    assert type(e_with.value) is type(e_tx.value)
    assert e_with.value.kind == e_tx.value.kind
    assert conn.db().basis_t == db.basis_t


# --- errors never half-apply -------------------------------------------------------------


HALF = [
    pytest.param([{":p/name": "good1"}, {":p/nope": 1}], NotAnEntityError, id="valid-then-unknown-attr"),
    pytest.param([{":p/name": "good1"}, {":p/name": 1}], WrongTypeError, id="valid-then-wrong-type"),
    pytest.param([{":p/name": "good1"}, [":db/add", "good1", ":p/n"]], InvalidTxDataError, id="valid-then-bad-form"),
    pytest.param([{":db/id": "g", ":p/name": "good1", ":p/n": 1}, {":db/id": "g", ":p/n": 2}],
                 FastDatomicError, id="card-one-conflict"),
    pytest.param('[{:p/name "good1"} {:p/name', FastDatomicError, id="truncated-edn"),
]


@pytest.mark.parametrize("data,err", HALF)
def test_rejected_transaction_applies_nothing_and_connection_goes_on(conn, data, err):
    q = conn.tx_report_queue()
    before = conn.db()
    log_before = [e["t"] for e in conn.log().tx_range(None, None)]
    with pytest.raises(err):
        conn.transact(data)
    with pytest.raises(err):
        fut = conn.transact_async(data)   # may raise here (EDN) or from the future
        fut.result(5)
    db = conn.db()
    assert db.basis_t == before.basis_t
    assert eid(db, "good1") is None
    assert [e["t"] for e in conn.log().tx_range(None, None)] == log_before
    assert drain(q) == []
    r = conn.transact([{":p/name": "good1"}])
    assert r.db_before.basis_t == before.basis_t and eid(conn.db(), "good1") is not None


def test_failing_transaction_function_applies_nothing(conn):
    name = K(f"test.cancel/f{next(_fn_counter)}")
    fd.register_tx_fn(name, lambda db: fd.cancel("no", {"why": "test"}))
    b = conn.db().basis_t
    with pytest.raises(TransactionError) as ei:
        conn.transact([{":p/name": "pre"}, [name]])
    assert ei.value.kind == "db.error/cancelled"
    boom = K(f"test.boom/f{next(_fn_counter)}")
    fd.register_tx_fn(boom, lambda db: 1 / 0)
    with pytest.raises(TransactionError):
        conn.transact_async([{":p/name": "pre"}, [boom]]).result(5)
    assert conn.db().basis_t == b and eid(conn.db(), "pre") is None
    assert eid(conn.transact([{":p/name": "pre"}]).db_after, "pre") is not None


def test_many_errors_in_a_row_leave_the_writer_usable(conn):
    b = conn.db().basis_t
    futs = [conn.transact_async([{":p/name": i}]) for i in range(25)]
    for f in futs:
        with pytest.raises(WrongTypeError):
            f.result(5)
    assert conn.db().basis_t == b
    r = conn.transact([{":p/name": "alive"}])
    assert r.db_before.basis_t == b


def test_mem_connection_runs_the_indexing_job_past_the_threshold():
    # Like a transactor: once novelty passes the threshold, it is merged into durable
    # trees; every value reads the same before and after.
    import uuid as _uuid
    uri = f"fastdatomic:mem://indexing-{_uuid.uuid4().hex}"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn._tx.memory_index_threshold = 20_000
    conn.transact('[{:db/ident :ix/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]')
    early = None
    for batch in range(10):
        r = conn.transact([{":ix/n": batch * 100 + i} for i in range(100)])
        if batch == 2:
            early = r.db_after
    # The jobs run on their own thread: wait until they caught up with the novelty.
    wait_until(lambda: not conn._tx.jobs.building and conn.db().memindex.nbytes <= 20_000)
    db = conn.db()
    assert db.index_basis_t > 0, "the indexing job never ran"
    assert sorted(d.v for d in db.datoms("aevt", ":ix/n")) == list(range(1000))
    # An older value still reads exactly what it saw.
    assert sorted(d.v for d in early.datoms("aevt", ":ix/n")) == list(range(300))
