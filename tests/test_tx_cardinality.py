"""Cardinality and redundancy elimination.

Datomic: asserting a new value of a :db.cardinality/one attribute retracts the old one
in the same transaction (the retraction is in the report and in history);
:db.cardinality/many accumulates; a datom that is already true is redundant and
produces no datom (the report then holds only the transaction entity's datoms).
"""

import pytest

import fastdatomic as fd

from txfns_helper import attr, fresh_conn, tx_entity_datoms, user_datoms, value, values

SCHEMA = [
    attr(":c/name", "string"),
    attr(":c/tags", "string", "many"),
    attr(":c/best", "ref"),
    attr(":c/friends", "ref", "many"),
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def _new(conn, m):
    return conn.transact([{":db/id": "x", **m}]).tempids["x"]


def test_card_one_replaces_old_value_in_same_tx(conn):
    e = _new(conn, {":c/name": "Ann"})
    r = conn.transact([[":db/add", e, ":c/name", "Anne"]])
    assert user_datoms(r) == {(e, ":c/name", "Ann", False), (e, ":c/name", "Anne", True)}
    tx = fd.t_to_tx(r.t)
    assert all(d.tx == tx for d in r.tx_data)
    assert value(conn.db(), e, ":c/name") == "Anne"


def test_card_one_replacement_visible_in_history(conn):
    e = _new(conn, {":c/name": "Ann"})
    r1 = conn.transact([[":db/add", e, ":c/name", "Anne"]])
    r2 = conn.transact([{":db/id": e, ":c/name": "Annabel"}])
    hist = sorted((d.tx, d.v, d.added) for d in conn.db().history().datoms("eavt", e, ":c/name"))
    t1, t2 = fd.t_to_tx(r1.t), fd.t_to_tx(r2.t)
    first = [h for h in hist if h[0] not in (t1, t2)]
    assert first == [(first[0][0], "Ann", True)]
    assert {h for h in hist if h[0] == t1} == {(t1, "Ann", False), (t1, "Anne", True)}
    assert {h for h in hist if h[0] == t2} == {(t2, "Anne", False), (t2, "Annabel", True)}
    # as-of views see each value at its time
    assert value(conn.db().as_of(r1.t), e, ":c/name") == "Anne"
    assert value(conn.db().as_of(r1.t - 1), e, ":c/name") == "Ann"


def test_card_one_ref_replaces(conn):
    r0 = conn.transact([{":db/id": "a", ":c/name": "A"}, {":db/id": "b", ":c/name": "B"},
                        {":db/id": "c", ":c/name": "C", ":c/best": "a"}])
    a, b, c = (r0.tempids[k] for k in "abc")
    r = conn.transact([[":db/add", c, ":c/best", b]])
    assert user_datoms(r) == {(c, ":c/best", a, False), (c, ":c/best", b, True)}
    assert [d.e for d in conn.db().datoms("vaet", a)] == []


def test_card_many_accumulates(conn):
    e = _new(conn, {":c/tags": "a"})
    r = conn.transact([[":db/add", e, ":c/tags", "b"]])
    assert user_datoms(r) == {(e, ":c/tags", "b", True)}
    assert values(conn.db(), e, ":c/tags") == {"a", "b"}


def test_card_many_retract_one_value(conn):
    e = _new(conn, {":c/tags": ["a", "b", "c"]})
    r = conn.transact([[":db/retract", e, ":c/tags", "b"]])
    assert user_datoms(r) == {(e, ":c/tags", "b", False)}
    assert values(conn.db(), e, ":c/tags") == {"a", "c"}


def test_redundant_card_one_assertion_produces_no_datom(conn):
    e = _new(conn, {":c/name": "Ann"})
    r = conn.transact([[":db/add", e, ":c/name", "Ann"]])
    assert user_datoms(r) == set()
    tx = fd.t_to_tx(r.t)
    assert {d.e for d in r.tx_data} == {tx}
    assert ":db/txInstant" in tx_entity_datoms(r)
    hist = [d for d in conn.db().history().datoms("eavt", e, ":c/name")]
    assert len(hist) == 1


def test_redundant_card_many_assertion_produces_no_datom(conn):
    e = _new(conn, {":c/tags": ["a", "b"]})
    r = conn.transact([{":db/id": e, ":c/tags": ["a", "b", "c"]}])
    assert user_datoms(r) == {(e, ":c/tags", "c", True)}


def test_redundant_map_reassertion_of_whole_entity(conn):
    e = _new(conn, {":c/name": "Ann", ":c/tags": ["x"]})
    r = conn.transact([{":db/id": e, ":c/name": "Ann", ":c/tags": ["x"]}])
    assert user_datoms(r) == set()


def test_same_datom_twice_in_one_tx_is_one_datom(conn):
    e = _new(conn, {":c/name": "Ann"})
    r = conn.transact([[":db/add", e, ":c/tags", "t"], [":db/add", e, ":c/tags", "t"],
                       {":db/id": e, ":c/tags": "t"}])
    assert user_datoms(r) == {(e, ":c/tags", "t", True)}


def test_same_card_one_value_twice_in_one_tx_is_not_a_conflict(conn):
    r = conn.transact([[":db/add", "x", ":c/name", "A"], {":db/id": "x", ":c/name": "A"}])
    assert user_datoms(r) == {(r.tempids["x"], ":c/name", "A", True)}


def test_card_many_list_with_duplicates(conn):
    r = conn.transact([{":db/id": "x", ":c/tags": ["a", "a", "b"]}])
    x = r.tempids["x"]
    assert user_datoms(r) == {(x, ":c/tags", "a", True), (x, ":c/tags", "b", True)}
    assert len([d for d in r.tx_data if d.e == x]) == 2


def test_explicit_retract_and_add_of_card_one(conn):
    e = _new(conn, {":c/name": "Ann"})
    r = conn.transact([[":db/retract", e, ":c/name", "Ann"], [":db/add", e, ":c/name", "Bea"]])
    assert user_datoms(r) == {(e, ":c/name", "Ann", False), (e, ":c/name", "Bea", True)}
    assert len([d for d in r.tx_data if d.e == e]) == 2
