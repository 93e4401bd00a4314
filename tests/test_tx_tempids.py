"""String tempids: scope, resolution and the report's tempids map.

Datomic: a string tempid names one new (or upserted) entity for the whole transaction,
across list forms, map forms, ref values and transaction function results; the
report's :tempids maps each one to its entity id; tempids of different transactions
are unrelated; a tempid used only as a value (nothing asserted about it) is an error.
"""

import pytest

import fastdatomic as fd
from fastdatomic import Keyword as K
from fastdatomic.ids import part

from txfns_helper import assert_tx_fails, attr, entity, fresh_conn, user_datoms, value

SCHEMA = [
    attr(":p/name", "string"),
    attr(":p/age", "long"),
    attr(":p/best", "ref"),
    attr(":p/friends", "ref", "many"),
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def test_one_tempid_across_list_and_map_forms_is_one_entity(conn):
    r = conn.transact([[":db/add", "ann", ":p/name", "Ann"],
                       {":db/id": "ann", ":p/age": 41},
                       {":db/id": "bob", ":p/name": "Bob", ":p/best": "ann"},
                       [":db/add", "bob", ":p/friends", "ann"]])
    ann, bob = r.tempids["ann"], r.tempids["bob"]
    assert ann != bob
    assert user_datoms(r) == {(ann, ":p/name", "Ann", True), (ann, ":p/age", 41, True),
                              (bob, ":p/name", "Bob", True), (bob, ":p/best", ann, True),
                              (bob, ":p/friends", ann, True)}


def test_report_tempids_map_each_tempid_to_its_entity(conn):
    r = conn.transact([{":db/id": "a", ":p/name": "A"}, {":db/id": "b", ":p/name": "B"}])
    assert {"a", "b"} <= set(r.tempids)
    a, b = r.tempids["a"], r.tempids["b"]
    assert r.resolve_tempid("a") == a and r.resolve_tempid("b") == b
    assert r.resolve_tempid("never-used") is None
    assert part(a) == part(b) == fd.PART_USER
    db = conn.db()
    assert value(db, a, ":p/name") == "A" and value(db, b, ":p/name") == "B"


def test_new_entity_ids_are_fresh(conn):
    r0 = conn.transact([{":db/id": "a", ":p/name": "A"}])
    existing = {d.e for d in conn.db().datoms("eavt")}
    r = conn.transact([{":db/id": "a", ":p/name": "A2"}])
    assert r.tempids["a"] not in existing
    assert r.tempids["a"] != r0.tempids["a"]


def test_same_tempid_in_two_transactions_names_two_entities(conn):
    a1 = conn.transact([[":db/add", "x", ":p/name", "X"]]).tempids["x"]
    a2 = conn.transact([[":db/add", "x", ":p/name", "X"]]).tempids["x"]
    assert a1 != a2
    assert entity(conn.db(), a1) == entity(conn.db(), a2) == {(":p/name", "X")}


def test_tempid_can_reference_itself(conn):
    r = conn.transact([{":db/id": "me", ":p/name": "Narcissus", ":p/best": "me"}])
    me = r.tempids["me"]
    assert value(conn.db(), me, ":p/best") == me


def test_tempid_in_card_many_ref_values(conn):
    r = conn.transact([{":db/id": "a", ":p/name": "A", ":p/friends": ["b", "c"]},
                       {":db/id": "b", ":p/name": "B"},
                       {":db/id": "c", ":p/name": "C"}])
    a, b, c = (r.tempids[k] for k in "abc")
    assert len({a, b, c}) == 3
    assert {d.v for d in conn.db().datoms("eavt", a, ":p/friends")} == {b, c}


def test_tempid_from_tx_function_unifies_with_outer_tempid(conn):
    fd.register_tx_fn(K("tempids-test/make"), lambda db, name: [{":db/id": "made", ":p/name": name}])
    r = conn.transact([[K("tempids-test/make"), "M"], [":db/add", "made", ":p/age", 9]])
    made = r.tempids["made"]
    assert user_datoms(r) == {(made, ":p/name", "M", True), (made, ":p/age", 9, True)}


def test_with_reports_tempids_without_changing_the_connection(conn):
    db = conn.db()
    r = db.with_([{":db/id": "w", ":p/name": "W"}])
    w = r.tempids["w"]
    assert value(r.db_after, w, ":p/name") == "W"
    assert conn.db().basis_t == db.basis_t
    assert value(conn.db(), w, ":p/name") is None


def test_tempid_used_only_as_a_value_fails(conn):
    # Datomic: :db.error/tempid-not-an-entity "tempid used only as value in transaction"
    e = conn.transact([{":db/id": "a", ":p/name": "A"}]).tempids["a"]
    assert_tx_fails(conn, [[":db/add", e, ":p/best", "ghost"]], None, "ghost")
