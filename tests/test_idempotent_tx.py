"""Idempotent transactions: the transaction UUID (``:fastdatomic.tx/uuid``) and ``tx_id``.

Contract (ARCHITECTURE §4.7): every committed transaction carries one UUID on its
transaction entity, generated when the caller gives none. Submitting a ``tx_id`` that
already committed applies nothing and returns a report with ``duplicate=True`` and
the original ``t``. ``conn.tx_outcome(tx_id)`` is that ``t``, or ``None`` when no
transaction with the id committed (unknown, or only failed attempts), so a caller
that timed out can ask, and retry safely.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading
import uuid

import pytest

import fastdatomic as fd
from fastdatomic.errors import InvalidTxDataError, NotAnEntityError, TransactionError, WrongTypeError
from fastdatomic.ids import t_to_tx
from txfns_helper import db_uri

SCHEMA_EDN = """
[{:db/ident :i/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :i/n    :db/valueType :db.type/long   :db/cardinality :db.cardinality/one}]
"""
TX_UUID = ":fastdatomic.tx/uuid"


@pytest.fixture
def conn():
    u = db_uri("idem")
    fd.create_database(u)
    c = fd.connect(u)
    c.transact(SCHEMA_EDN)
    yield c
    fd.delete_database(u)


def names(db, name):
    """Entities whose :i/name is ``name`` (the attribute is not unique: counts applications)."""
    return [d.e for d in db.datoms("aevt", ":i/name") if d.v == name]


def tx_uuids(db, t):
    return [d.v for d in db.datoms("eavt", t_to_tx(t), TX_UUID)]


def as_set(datoms):
    return {(d.e, d.a, d.v, d.tx, d.added) for d in datoms}


# --- every transaction carries a UUID ------------------------------------------------------


def test_uuid_attribute_is_installed(conn):
    at = conn.db().attribute(TX_UUID)
    assert at.unique == "identity" and not at.many


def test_every_committed_transaction_carries_a_generated_uuid(conn):
    rs = [conn.transact([{":i/name": f"g{i}"}]) for i in range(5)]
    rs.append(conn.transact_async([{":i/name": "async"}]).result(5))
    rs.append(conn.transact('[{:i/name "edn"}]'))
    rs.append(conn.transact([]))
    db = conn.db()
    for r in rs:
        assert isinstance(r.tx_id, uuid.UUID)
        assert tx_uuids(db, r.t) == [r.tx_id]
        assert (t_to_tx(r.t), db.entid(TX_UUID), r.tx_id) in {(d.e, d.a, d.v) for d in r.tx_data}
        assert conn.tx_outcome(r.tx_id) == r.t
    assert len({r.tx_id for r in rs}) == len(rs)


def test_schema_transaction_carries_a_uuid_too(conn):
    schema_t = next(iter(conn.log().tx_range(1, None)))["t"]
    assert len(tx_uuids(conn.db(), schema_t)) == 1


def test_given_tx_id_is_stored_on_the_tx_entity(conn):
    tid = uuid.uuid4()
    r = conn.transact([{":i/name": "given"}], tx_id=tid)
    assert r.tx_id == tid and r.duplicate is False
    assert tx_uuids(conn.db(), r.t) == [tid]
    assert conn.db().entid([TX_UUID, tid]) == t_to_tx(r.t)


@pytest.mark.parametrize("bad", ["not-a-uuid", str(uuid.uuid4()), 42, uuid.uuid4().bytes])
def test_tx_id_must_be_a_uuid(conn, bad):
    b = conn.db().basis_t
    with pytest.raises(InvalidTxDataError):
        conn.transact([{":i/name": "x"}], tx_id=bad)
    with pytest.raises(InvalidTxDataError):
        conn.transact_async([{":i/name": "x"}], tx_id=bad).result(5)
    assert conn.db().basis_t == b and names(conn.db(), "x") == []


# --- duplicates ------------------------------------------------------------------------------


def test_resubmitting_a_tx_id_applies_once_and_reports_the_original(conn):
    tid = uuid.uuid4()
    q = conn.tx_report_queue()
    r1 = conn.transact([{":db/id": "a", ":i/name": "once", ":i/n": 1}], tx_id=tid)
    basis = conn.db().basis_t
    r2 = conn.transact([{":db/id": "a", ":i/name": "once", ":i/n": 1}], tx_id=tid)
    assert r2.duplicate is True and r1.duplicate is False
    assert r2.t == r1.t and r2.tx_id == tid
    assert conn.db().basis_t == basis
    assert names(conn.db(), "once") == [r1.resolve_tempid("a")]
    assert as_set(r2.tx_data) == as_set(r1.tx_data)
    # the duplicate's values describe the original transaction
    assert r2.db_after.entid([TX_UUID, tid]) == t_to_tx(r1.t)
    assert names(r2.db_after, "once") == [r1.resolve_tempid("a")]
    assert names(r2.db_before, "once") == []
    # nothing new was committed, so nothing new is reported
    assert [q.get_nowait().t for _ in range(q.qsize())] == [r1.t]


def test_duplicate_with_different_data_still_reports_the_original(conn):
    tid = uuid.uuid4()
    r1 = conn.transact([{":i/name": "first"}], tx_id=tid)
    r2 = conn.transact([{":i/name": "second"}], tx_id=tid)
    assert r2.duplicate and r2.t == r1.t
    assert names(conn.db(), "second") == []


def test_duplicate_of_invalid_data_is_still_a_duplicate(conn):
    tid = uuid.uuid4()
    r1 = conn.transact([{":i/name": "ok"}], tx_id=tid)
    r2 = conn.transact([{":i/nope": 1}], tx_id=tid)
    assert r2.duplicate and r2.t == r1.t


def test_duplicate_after_other_transactions(conn):
    tid = uuid.uuid4()
    r1 = conn.transact([{":i/name": "early"}], tx_id=tid)
    for i in range(5):
        conn.transact([{":i/name": f"between{i}"}])
    basis = conn.db().basis_t
    r2 = conn.transact([{":i/name": "early"}], tx_id=tid)
    assert r2.duplicate and r2.t == r1.t and conn.db().basis_t == basis
    assert names(r2.db_after, "between0") == []
    assert as_set(r2.tx_data) == as_set(r1.tx_data)


def test_duplicate_through_transact_async_and_edn(conn):
    tid = uuid.uuid4()
    r1 = conn.transact_async('[{:i/name "ae"}]', tx_id=tid).result(5)
    r2 = conn.transact_async('[{:i/name "ae"}]', tx_id=tid).result(5)
    r3 = conn.transact([{":i/name": "ae"}], tx_id=tid)

    async def main():
        return await conn.transact_async([{":i/name": "ae"}], tx_id=tid)
    r4 = asyncio.run(main())
    assert not r1.duplicate and r2.duplicate and r3.duplicate and r4.duplicate
    assert r1.t == r2.t == r3.t == r4.t
    assert len(names(conn.db(), "ae")) == 1


# --- tx_outcome ------------------------------------------------------------------------------


def test_tx_outcome_is_t_or_none(conn):
    assert conn.tx_outcome(uuid.uuid4()) is None
    tids = [uuid.uuid4() for _ in range(5)]
    ts = [conn.transact([{":i/name": f"o{i}"}], tx_id=tid).t for i, tid in enumerate(tids)]
    assert [conn.tx_outcome(tid) for tid in tids] == ts
    assert conn.tx_outcome(uuid.uuid4()) is None


def test_failed_transaction_has_no_outcome_and_can_be_retried(conn):
    tid = uuid.uuid4()
    b = conn.db().basis_t
    with pytest.raises(WrongTypeError):
        conn.transact([{":i/name": 1}], tx_id=tid)
    with pytest.raises(NotAnEntityError):
        conn.transact_async([{":i/nope": 1}], tx_id=tid).result(5)
    assert conn.tx_outcome(tid) is None and conn.db().basis_t == b
    r = conn.transact([{":i/name": "retried"}], tx_id=tid)
    assert r.duplicate is False and conn.tx_outcome(tid) == r.t
    assert tx_uuids(conn.db(), r.t) == [tid]
    again = conn.transact([{":i/name": "retried"}], tx_id=tid)
    assert again.duplicate and again.t == r.t


def test_cancelled_transaction_function_has_no_outcome(conn):
    name = fd.kw(f"test.idem/cancel-{uuid.uuid4().hex[:8]}")
    fd.register_tx_fn(name, lambda db: fd.cancel("not now"))
    tid = uuid.uuid4()
    with pytest.raises(TransactionError):
        conn.transact([[name]], tx_id=tid)
    assert conn.tx_outcome(tid) is None
    assert not conn.transact([{":i/name": "later"}], tx_id=tid).duplicate


def test_with_does_not_record_an_outcome(conn):
    tid = uuid.uuid4()
    w = conn.db().with_([{":i/name": "spec"}], tx_id=tid)
    assert w.tx_id == tid and tx_uuids(w.db_after, w.t) == [tid]
    assert conn.tx_outcome(tid) is None
    r = conn.transact([{":i/name": "spec"}], tx_id=tid)
    assert not r.duplicate and r.t == w.t


def test_outcomes_do_not_survive_delete_and_recreate():
    u = db_uri("idem")
    fd.create_database(u)
    try:
        tid = uuid.uuid4()
        c = fd.connect(u)
        r = c.transact([{":db/doc": "x"}], tx_id=tid)
        assert c.tx_outcome(tid) == r.t
        fd.delete_database(u)
        fd.create_database(u)
        c2 = fd.connect(u)
        assert c2.tx_outcome(tid) is None
        assert not c2.transact([{":db/doc": "x"}], tx_id=tid).duplicate
    finally:
        fd.delete_database(u)


# --- concurrency -----------------------------------------------------------------------------


def test_concurrent_retries_of_one_tx_id_apply_exactly_once(conn):
    tid = uuid.uuid4()
    b = conn.db().basis_t
    q = conn.tx_report_queue()
    go = threading.Barrier(8)

    def attempt(i):
        go.wait(5)
        data = [{":i/name": "race", ":i/n": i}]
        out = []
        for k in range(3):
            if (i + k) % 2:
                out.append(conn.transact(data, tx_id=tid))
            else:
                out.append(conn.transact_async(data, tx_id=tid).result(5))
        return out
    with cf.ThreadPoolExecutor(8) as ex:
        reports = [r for rs in ex.map(attempt, range(8)) for r in rs]
    assert len(reports) == 24
    firsts = [r for r in reports if not r.duplicate]
    assert len(firsts) == 1
    assert {r.t for r in reports} == {firsts[0].t}
    assert len(names(conn.db(), "race")) == 1
    assert conn.tx_outcome(tid) == firsts[0].t
    assert q.qsize() == 1 and conn.db().basis_t == firsts[0].t > b


def test_concurrent_distinct_tx_ids_all_apply(conn):
    tids = [uuid.uuid4() for _ in range(40)]

    def run(i):
        return conn.transact_async([{":i/name": f"d{i}"}], tx_id=tids[i]).result(5)
    with cf.ThreadPoolExecutor(4) as ex:
        reports = list(ex.map(run, range(40)))
    assert not any(r.duplicate for r in reports)
    assert len({r.t for r in reports}) == 40
    assert [conn.tx_outcome(t) for t in tids] == [r.t for r in reports]


# --- the UUID stays one value per transaction --------------------------------------------


def test_tx_entity_never_gets_two_uuids(conn):
    mine = uuid.uuid4()
    try:
        r = conn.transact([[":db/add", "datomic.tx", TX_UUID, mine], {":i/name": "u"}])
    except TransactionError:
        return  # rejecting the assertion is fine too
    assert len(tx_uuids(conn.db(), r.t)) == 1
    assert len([d for d in r.tx_data if d.a == conn.db().entid(TX_UUID)]) == 1


def test_with_and_a_committed_tx_id_keeps_the_uuid_unique(conn):
    tid = uuid.uuid4()
    r = conn.transact([{":i/name": "w"}], tx_id=tid)
    try:
        w = conn.db().with_([{":i/name": "w"}], tx_id=tid)
    except TransactionError:
        return  # rejecting is fine too
    holders = [d.e for d in w.db_after.datoms("aevt", TX_UUID) if d.v == tid]
    assert holders == [t_to_tx(r.t)]


def test_tx_uuid_on_a_non_transaction_entity_is_no_outcome(conn):
    u = uuid.uuid4()
    try:
        conn.transact([{":db/id": "e", ":i/name": "holder", TX_UUID: u}])
    except TransactionError:
        return  # rejecting the assertion is fine too
    assert conn.tx_outcome(u) is None
    r = conn.transact([{":i/name": "real"}], tx_id=u)
    assert r.duplicate is False and conn.tx_outcome(u) == r.t


@pytest.mark.parametrize("change", ["retract", "replace", "retract-entity"])
def test_a_committed_transactions_uuid_cannot_be_changed(conn, change):
    tid = uuid.uuid4()
    r = conn.transact([{":i/name": "paid"}], tx_id=tid)
    tx = t_to_tx(r.t)
    edit = {"retract": [[":db/retract", tx, TX_UUID, tid]],
            "replace": [[":db/add", tx, TX_UUID, uuid.uuid4()]],
            "retract-entity": [[":db/retractEntity", tx]]}[change]
    try:
        conn.transact(edit)
    except TransactionError:
        pass  # rejecting the change is the expected outcome
    assert conn.tx_outcome(tid) == r.t
    again = conn.transact([{":i/name": "paid"}], tx_id=tid)
    assert again.duplicate and again.t == r.t
    assert len(names(conn.db(), "paid")) == 1
