"""Attribute predicates (:db.attr/preds).

Datomic: :db.attr/preds holds qualified symbols naming predicates of one value; every
assertion of the attribute must satisfy all of them, else the transaction fails
(:db.error/attr-pred-failed here) naming the attribute and the predicate.
Retractions are not checked. Predicates can be added to an existing attribute.
"""

import pytest

from fastdatomic import Keyword as K, Symbol

from txfns_helper import assert_tx_fails, attr, fresh_conn, user_datoms, value, values

SCHEMA = [
    attr(":s/age", "long", preds=["txfns_helper/non_negative"]),
    attr(":s/score", "long", preds=["txfns_helper/non_negative", "txfns_helper/below_200"]),
    attr(":s/codes", "string", "many", preds=["txfns_helper/short_string"]),
    attr(":s/name", "string"),
    attr(":s/odd", "long", preds=["txfns_helper/raising_pred"]),
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def test_preds_are_in_the_schema(conn):
    assert values(conn.db(), conn.db().entid(":s/score"), ":db.attr/preds") == {
        Symbol("txfns_helper/non_negative"), Symbol("txfns_helper/below_200")}


def test_value_passing_predicate_is_accepted(conn):
    r = conn.transact([{":db/id": "x", ":s/age": 30}])
    assert user_datoms(r) == {(r.tempids["x"], ":s/age", 30, True)}


def test_value_failing_predicate_is_rejected(conn):
    assert_tx_fails(conn, [{":db/id": "x", ":s/name": "n", ":s/age": -1}],
                    "db.error/attr-pred-failed", ":s/age", "txfns_helper/non_negative")


def test_second_of_two_predicates_failing_names_it(conn):
    err = assert_tx_fails(conn, [[":db/add", "x", ":s/score", 500]],
                          "db.error/attr-pred-failed", ":s/score", "txfns_helper/below_200")
    assert "500" in str(err)


def test_all_predicates_must_hold(conn):
    assert_tx_fails(conn, [[":db/add", "x", ":s/score", -5]], "db.error/attr-pred-failed",
                    ":s/score", "txfns_helper/non_negative")
    r = conn.transact([[":db/add", "x", ":s/score", 150]])
    assert value(conn.db(), r.tempids["x"], ":s/score") == 150


def test_each_value_of_card_many_is_checked(conn):
    assert_tx_fails(conn, [{":db/id": "x", ":s/codes": ["ok", "too-long-code"]}],
                    "db.error/attr-pred-failed", ":s/codes", "txfns_helper/short_string")


def test_predicate_applies_to_updates_of_existing_entities(conn):
    e = conn.transact([{":db/id": "x", ":s/age": 3}]).tempids["x"]
    assert_tx_fails(conn, [[":db/add", e, ":s/age", -3]], "db.error/attr-pred-failed", ":s/age")
    assert value(conn.db(), e, ":s/age") == 3


def test_predicate_applies_to_tx_function_output(conn):
    conn.transact([{":db/ident": K("pred-test/set-age"), ":db/fn": Symbol("txfns_helper/inc_attr")}])
    e = conn.transact([{":db/id": "x", ":s/age": 3}]).tempids["x"]
    assert_tx_fails(conn, [[K("pred-test/set-age"), e, ":s/age", -10]], "db.error/attr-pred-failed", ":s/age")


def test_predicate_applies_to_cas_new_value(conn):
    e = conn.transact([{":db/id": "x", ":s/age": 3}]).tempids["x"]
    assert_tx_fails(conn, [[":db/cas", e, ":s/age", 3, -1]], "db.error/attr-pred-failed", ":s/age")


def test_predicate_added_later_checks_new_assertions_only(conn):
    e = conn.transact([{":db/id": "x", ":s/name": "a-long-name"}]).tempids["x"]
    conn.transact([[":db/add", ":s/name", ":db.attr/preds", Symbol("txfns_helper/short_string")]])
    assert value(conn.db(), e, ":s/name") == "a-long-name"
    assert_tx_fails(conn, [[":db/add", e, ":s/name", "another-long-one"]], "db.error/attr-pred-failed", ":s/name")
    r = conn.transact([[":db/add", e, ":s/name", "ok"]])
    assert value(r.db_after, e, ":s/name") == "ok"


def test_retraction_is_not_checked(conn):
    e = conn.transact([{":db/id": "x", ":s/name": "a-long-name"}]).tempids["x"]
    conn.transact([[":db/add", ":s/name", ":db.attr/preds", Symbol("txfns_helper/short_string")]])
    r = conn.transact([[":db/retract", e, ":s/name", "a-long-name"]])
    assert user_datoms(r) == {(e, ":s/name", "a-long-name", False)}


def test_predicate_that_raises_rejects_the_value(conn):
    assert_tx_fails(conn, [[":db/add", "x", ":s/odd", 1]], None, ":s/odd")


def test_predicate_symbol_that_cannot_be_loaded_fails(conn):
    conn.transact([attr(":s/ghost", "long", preds=["txfns_helper/no_such_pred"])])
    assert_tx_fails(conn, [[":db/add", "x", ":s/ghost", 1]], None, "no_such_pred")
