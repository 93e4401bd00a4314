"""[:db/cas e a old new]: compare-and-swap of a cardinality-one attribute.

Datomic: succeeds when the current value (in the database before the transaction) is
old, and then asserts new (the old value is retracted as for any card-one change);
old nil means "no current value"; otherwise the transaction fails with
:db.error/cas-failed. Every :db/cas of one transaction sees the database before it.
:db.fn/cas is the older name.
"""

import pytest

from fastdatomic import Keyword as K

from txfns_helper import assert_tx_fails, attr, fresh_conn, user_datoms, value

SCHEMA = [
    attr(":a/id", "string", unique="identity"),
    attr(":a/balance", "long"),
    attr(":a/tags", "string", "many"),
    attr(":a/owner", "ref"),
    attr(":a/status", "keyword"),
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def _acct(conn, **vals):
    return conn.transact([{":db/id": "a", **{f":a/{k}": v for k, v in vals.items()}}]).tempids["a"]


def test_cas_success(conn):
    e = _acct(conn, balance=100)
    r = conn.transact([[":db/cas", e, ":a/balance", 100, 90]])
    assert user_datoms(r) == {(e, ":a/balance", 100, False), (e, ":a/balance", 90, True)}
    assert value(conn.db(), e, ":a/balance") == 90


def test_cas_failure_reports_current_value(conn):
    e = _acct(conn, balance=100)
    err = assert_tx_fails(conn, [[":db/cas", e, ":a/balance", 50, 40]], "db.error/cas-failed", ":a/balance")
    assert "100" in str(err)
    assert value(conn.db(), e, ":a/balance") == 100


def test_cas_failure_cancels_whole_transaction(conn):
    e = _acct(conn, balance=100)
    assert_tx_fails(conn, [[":db/add", e, ":a/tags", "x"], {":db/id": "n", ":a/id": "n"},
                           [":db/cas", e, ":a/balance", 1, 2]], "db.error/cas-failed")


def test_cas_nil_old_when_no_value(conn):
    e = _acct(conn, id="acct")
    r = conn.transact([[":db/cas", e, ":a/balance", None, 10]])
    assert user_datoms(r) == {(e, ":a/balance", 10, True)}


def test_cas_nil_old_fails_when_value_present(conn):
    e = _acct(conn, balance=5)
    err = assert_tx_fails(conn, [[":db/cas", e, ":a/balance", None, 10]], "db.error/cas-failed")
    assert "5" in str(err)


def test_cas_with_old_value_fails_when_no_value(conn):
    e = _acct(conn, id="acct")
    assert_tx_fails(conn, [[":db/cas", e, ":a/balance", 0, 10]], "db.error/cas-failed", ":a/balance")


def test_two_cas_on_same_attribute_both_see_db_before(conn):
    e = _acct(conn, balance=100)
    # the second expects the first's new value, but sees 100 (db-before)
    assert_tx_fails(conn, [[":db/cas", e, ":a/balance", 100, 90],
                           [":db/cas", e, ":a/balance", 90, 80]], "db.error/cas-failed")
    assert value(conn.db(), e, ":a/balance") == 100


def test_two_cas_from_same_old_to_different_new_conflict(conn):
    e = _acct(conn, balance=100)
    assert_tx_fails(conn, [[":db/cas", e, ":a/balance", 100, 90],
                           [":db/cas", e, ":a/balance", 100, 80]], "db.error/datoms-conflict", ":a/balance")


def test_cas_sees_db_before_not_earlier_forms(conn):
    e = _acct(conn, balance=100)
    # the retraction earlier in the same tx does not make the value absent for cas
    assert_tx_fails(conn, [[":db/retract", e, ":a/balance", 100], [":db/cas", e, ":a/balance", None, 5]],
                    "db.error/cas-failed")
    r = conn.transact([[":db/add", e, ":a/tags", "t"], [":db/cas", e, ":a/balance", 100, 90]])
    assert user_datoms(r) == {(e, ":a/tags", "t", True), (e, ":a/balance", 100, False),
                              (e, ":a/balance", 90, True)}


def test_cas_on_cardinality_many_fails(conn):
    e = _acct(conn, tags=["a"])
    assert_tx_fails(conn, [[":db/cas", e, ":a/tags", "a", "b"]], None, ":a/tags")


def test_cas_to_same_value_is_redundant(conn):
    e = _acct(conn, balance=7)
    r = conn.transact([[":db/cas", e, ":a/balance", 7, 7]])
    assert user_datoms(r) == set()


def test_cas_through_lookup_ref(conn):
    e = _acct(conn, id="acct", balance=1)
    r = conn.transact([[":db/cas", [":a/id", "acct"], ":a/balance", 1, 2]])
    assert user_datoms(r) == {(e, ":a/balance", 1, False), (e, ":a/balance", 2, True)}


def test_legacy_db_fn_cas(conn):
    e = _acct(conn, balance=1)
    r = conn.transact([[K("db.fn/cas"), e, ":a/balance", 1, 2]])
    assert value(r.db_after, e, ":a/balance") == 2


def test_cas_on_ref_attribute_with_entity_ids(conn):
    r0 = conn.transact([{":db/id": "o1", ":a/id": "o1"}, {":db/id": "o2", ":a/id": "o2"},
                        {":db/id": "x", ":a/id": "x", ":a/owner": "o1"}])
    o1, o2, x = r0.tempids["o1"], r0.tempids["o2"], r0.tempids["x"]
    r = conn.transact([[":db/cas", x, ":a/owner", o1, o2]])
    assert user_datoms(r) == {(x, ":a/owner", o1, False), (x, ":a/owner", o2, True)}
    assert_tx_fails(conn, [[":db/cas", x, ":a/owner", o1, o2]], "db.error/cas-failed")


def test_cas_on_keyword_attribute(conn):
    e = _acct(conn, status=K("s/open"))
    r = conn.transact([[":db/cas", e, ":a/status", K("s/open"), K("s/closed")]])
    assert value(r.db_after, e, ":a/status") == K("s/closed")
    assert_tx_fails(conn, [[":db/cas", e, ":a/status", K("s/open"), K("s/x")]], "db.error/cas-failed")


def test_cas_value_of_wrong_type_fails(conn):
    e = _acct(conn, balance=1)
    assert_tx_fails(conn, [[":db/cas", e, ":a/balance", 1, "two"]], "db.error/wrong-type", ":a/balance")


def test_cas_and_add_of_another_value_conflict(conn):
    e = _acct(conn, balance=1)
    assert_tx_fails(conn, [[":db/cas", e, ":a/balance", 1, 2], [":db/add", e, ":a/balance", 3]],
                    "db.error/datoms-conflict", ":a/balance")


def test_cas_on_missing_lookup_ref_fails(conn):
    assert_tx_fails(conn, [[":db/cas", [":a/id", "nope"], ":a/balance", None, 1]], "db.error/not-an-entity", "nope")
