"""What the networked peer must give exactly as the in-process system does.

These run in both modes (``FASTDATOMIC_TEST_PROTOCOL=mem``, and ``dev`` through a real
transactor via ``tests/test_through_transactor.py``). Each covers a difference found by
running the transaction suites through the transactor: values EDN has no form for,
error data crossing the wire, report-queue reports, connections to a deleted database,
and a writer held inside a transaction (``txfns_helper.Latch``: works across processes).
"""

import uuid
from datetime import date, datetime, timezone

import pytest

import fastdatomic as fd
from fastdatomic import Keyword as K, Symbol
from fastdatomic.errors import DatabaseNotFoundError, TransactTimeoutError, WrongTypeError

from txfns_helper import Latch, assert_tx_fails, attr, db_uri, fresh_conn, value, values


@pytest.fixture
def conn():
    return fresh_conn(attr(":p/name", "string", unique="identity"), attr(":p/raw", "bytes"),
                      attr(":p/at", "instant"), attr(":p/ats", "instant", "many"),
                      attr(":p/span", "tuple", tuple_types=["instant", "long"]),
                      attr(":p/n", "long"))


def test_byte_strings_of_every_python_kind(conn):
    r = conn.transact([{":db/id": "a", ":p/name": "a", ":p/raw": bytearray(b"\x00ab")},
                       {":db/id": "b", ":p/name": "b", ":p/raw": memoryview(b"\xff\x00")},
                       {":db/id": "c", ":p/name": "c", ":p/raw": b"#fastdatomic/bytes \"x\""}])
    db = conn.db()
    assert value(db, r.tempids["a"], ":p/raw") == b"\x00ab"
    assert value(db, r.tempids["b"], ":p/raw") == b"\xff\x00"
    assert value(db, r.tempids["c"], ":p/raw") == b"#fastdatomic/bytes \"x\""


def test_naive_datetimes_are_utc_wherever_they_are(conn):
    naive, utc = datetime(2021, 1, 2, 3, 4, 5), datetime(2021, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    r = conn.transact([{":db/id": "x", ":p/name": "x", ":p/at": naive, ":p/ats": {naive},
                        ":p/span": (naive, 1)},
                       [":db/add", "y", ":p/at", naive]])
    x, y = r.tempids["x"], r.tempids["y"]
    db = conn.db()
    assert value(db, x, ":p/at") == utc and values(db, x, ":p/ats") == {utc}
    assert value(db, x, ":p/span") == (utc, 1) and value(db, y, ":p/at") == utc


def test_a_value_no_attribute_takes_fails_as_in_process(conn):
    err = assert_tx_fails(conn, [[":db/add", "x", ":p/at", date(2020, 1, 1)]],
                          "db.error/wrong-type", ":p/at")
    assert isinstance(err, WrongTypeError)
    assert_tx_fails(conn, [{":p/name": object()}], "db.error/wrong-type", ":p/name")
    with pytest.raises(WrongTypeError):
        conn.transact_async([{":p/n": date(2020, 1, 1)}]).result(10)


def test_error_data_keeps_its_values(conn):
    err = assert_tx_fails(conn, [[":db/add", "x", ":p/n", "seven"]], "db.error/wrong-type")
    assert err.data["attribute"] == K("p/n") and type(err.data["attribute"]) is K
    assert err.data["value"] == "seven"
    assert list(err.data["form"]) == [":db/add", "x", ":p/n", "seven"]
    err = assert_tx_fails(conn, [{":p/nope": 1}], "db.error/not-an-entity")
    assert err.data["attribute"] == K("p/nope")
    # a keyword as a map key (JSON has none) and values JSON has no form for
    err = assert_tx_fails(conn, [{K("p/nope"): b"\x00", ":p/n": 1}], "db.error/not-an-entity")
    assert err.data["form"] == {K("p/nope"): b"\x00", ":p/n": 1}


def test_transaction_functions_cancel_with_message_and_data(conn):
    err = assert_tx_fails(conn, [{":p/name": "pre"}, [Symbol("txfns_helper/refuse"), 1, K("a/b")]],
                          "db.error/cancelled", "refused by txfns_helper/refuse")
    assert tuple(err.data["args"]) == (1, K("a/b"))
    assert_tx_fails(conn, [{":p/name": "pre"}, [Symbol("txfns_helper/explode"), "kaboom 42"]],
                    "db.error/cancelled", "kaboom 42")
    with pytest.raises(fd.FastDatomicError) as ei:
        conn.transact_async([[Symbol("txfns_helper/explode"), "async kaboom"]]).result(10)
    assert ei.value.kind == "db.error/cancelled" and "async kaboom" in str(ei.value)
    assert conn.db().entid([":p/name", "pre"]) is None


def test_transaction_functions_on_the_writer_s_classpath(conn):
    e = conn.transact([{":db/id": "e", ":p/name": "e", ":p/n": 40}]).tempids["e"]
    r = conn.transact([[K("txfns-helper/inc"), e, ":p/n", 2]])     # registered by keyword
    assert value(r.db_after, e, ":p/n") == 42
    r = conn.transact([[Symbol("txfns_helper/make_named"), "made"]])
    assert r.tempids["from-fn"] == r.db_after.entid([":p/name", "made"])
    assert_tx_fails(conn, [[Symbol("txfns_helper/forever")]], "db.error/invalid-tx-data",
                    "txfns_helper/forever")
    assert_tx_fails(conn, [[Symbol("txfns_helper/bad_result")]], "db.error/invalid-tx-data")


def test_report_queue_reports_carry_the_tx_id(conn):
    q = conn.tx_report_queue()
    tid = uuid.uuid4()
    r = conn.transact([{":p/name": "queued"}], tx_id=tid)
    got = q.get(timeout=10)
    assert got.t == r.t and got.tx_id == tid == r.tx_id
    conn.remove_tx_report_queue(q)


def test_connection_to_a_deleted_database():
    uri = db_uri("parity")
    fd.create_database(uri)
    c = fd.connect(uri)
    c.transact([attr(":p/name", "string")])
    r = c.transact([{":p/name": "kept"}])
    fd.delete_database(uri)
    with pytest.raises(DatabaseNotFoundError):
        c.transact([{":p/name": "lost"}])
    with pytest.raises(DatabaseNotFoundError):
        c.transact_async([{":p/name": "lost"}]).result(10)
    # the connection keeps its last value, as a value
    assert c.db().basis_t == r.t and c.db().entid(":p/name") is not None
    fd.create_database(uri)
    try:
        with pytest.raises(DatabaseNotFoundError):
            c.transact([{":db/doc": "into the new namesake?"}])
        assert fd.connect(uri).db().basis_t == 0
    finally:
        fd.delete_database(uri)


def test_db_never_blocks_while_the_writer_is_busy(conn, tmp_path):
    latch = Latch(tmp_path / "latch")
    b = conn.db().basis_t
    fut = conn.transact_async([latch.form, {":p/name": "slow"}])
    try:
        assert latch.wait_started()
        db = conn.db()
        assert db.basis_t == b and db.entid([":p/name", "slow"]) is None and not fut.done()
    finally:
        latch.release()
    r = fut.result(10)
    assert conn.db().basis_t >= r.t and conn.db().entid([":p/name", "slow"]) is not None


def test_transact_timeout_says_the_outcome_is_unknown_and_a_retry_is_safe(conn, tmp_path):
    latch = Latch(tmp_path / "latch")
    busy = conn.transact_async([latch.form])
    tid = uuid.uuid4()
    try:
        assert latch.wait_started()
        with pytest.raises(TransactTimeoutError) as ei:
            conn.transact([{":p/name": "late"}], tx_id=tid, timeout=0.2)
        assert ei.value.data["outcome"] == "unknown"
    finally:
        latch.release()
    busy.result(10)
    r = conn.transact([{":p/name": "late"}], tx_id=tid)
    assert conn.tx_outcome(tid) == r.t
    assert len([d for d in conn.db().datoms("aevt", ":p/name") if d.v == "late"]) == 1


def test_a_cancelled_transaction_is_never_applied(conn, tmp_path):
    # In-process a queued transaction can still be cancelled; once sent to a transactor
    # it cannot, and cancel() says so. Either way: cancel() true means not applied.
    latch = Latch(tmp_path / "latch")
    first = conn.transact_async([latch.form])
    try:
        assert latch.wait_started()
        pending = conn.transact_async([{":p/name": "maybe"}])
        cancelled = pending.cancel()
    finally:
        latch.release()
    first.result(10)
    after = conn.transact([{":p/name": "after"}])
    assert (after.db_after.entid([":p/name", "maybe"]) is None) == cancelled
    if not cancelled:
        assert pending.result(10).t < after.t
