"""[:db/retractEntity e].

Datomic: retracts every datom of e, every datom that refers to e (e as the value of a
ref attribute), and recursively every entity that e reaches through a component
attribute. Entities reached through non-component refs stay. It is expanded against
the database before the transaction. :db.fn/retractEntity is the older name.
"""

import pytest

from fastdatomic import Keyword as K

from txfns_helper import assert_tx_fails, attr, entity, fresh_conn, user_datoms, value, values

SCHEMA = [
    attr(":o/id", "string", unique="identity"),
    attr(":o/name", "string"),
    attr(":o/tags", "string", "many"),
    attr(":o/address", "ref", component=True),
    attr(":o/items", "ref", "many", component=True),
    attr(":o/friends", "ref", "many"),
    attr(":o/owner", "ref"),
    attr(":i/name", "string"),
    attr(":i/parts", "ref", "many", component=True),
    attr(":part/name", "string"),
    attr(":addr/street", "string"),
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def _order(conn):
    r = conn.transact([{
        ":db/id": "o", ":o/id": "o1", ":o/name": "Order", ":o/tags": ["a", "b"],
        ":o/address": {":addr/street": "Main"},
        ":o/items": [{":db/id": "i1", ":i/name": "I1",
                      ":i/parts": [{":db/id": "p1", ":part/name": "P1"},
                                   {":db/id": "p2", ":part/name": "P2"}]},
                     {":db/id": "i2", ":i/name": "I2"}],
    }, {":db/id": "other", ":o/id": "other", ":o/friends": "o", ":o/owner": "o", ":o/name": "Other"},
        {":db/id": "plain", ":o/id": "plain"},
        [":db/add", "o", ":o/friends", "plain"]])
    return r.tempids


def test_retracts_all_datoms_of_the_entity(conn):
    e = conn.transact([{":db/id": "x", ":o/name": "X", ":o/tags": ["a", "b"]}]).tempids["x"]
    r = conn.transact([[":db/retractEntity", e]])
    assert user_datoms(r) == {(e, ":o/name", "X", False), (e, ":o/tags", "a", False),
                              (e, ":o/tags", "b", False)}
    assert entity(conn.db(), e) == set()


def test_retracts_components_recursively(conn):
    ids = _order(conn)
    o = ids["o"]
    addr = value(conn.db(), o, ":o/address")
    i1, i2, p1, p2 = ids["i1"], ids["i2"], ids["p1"], ids["p2"]
    r = conn.transact([[":db/retractEntity", o]])
    got = user_datoms(r)
    expected = {
        (o, ":o/id", "o1", False), (o, ":o/name", "Order", False),
        (o, ":o/tags", "a", False), (o, ":o/tags", "b", False),
        (o, ":o/address", addr, False), (o, ":o/items", i1, False), (o, ":o/items", i2, False),
        (o, ":o/friends", ids["plain"], False),
        (addr, ":addr/street", "Main", False),
        (i1, ":i/name", "I1", False), (i1, ":i/parts", p1, False), (i1, ":i/parts", p2, False),
        (i2, ":i/name", "I2", False),
        (p1, ":part/name", "P1", False), (p2, ":part/name", "P2", False),
        # references to o from another entity
        (ids["other"], ":o/friends", o, False), (ids["other"], ":o/owner", o, False),
    }
    assert got == expected
    db = conn.db()
    for x in (o, addr, i1, i2, p1, p2):
        assert entity(db, x) == set()


def test_references_to_the_entity_are_retracted_but_referrers_stay(conn):
    ids = _order(conn)
    conn.transact([[":db/retractEntity", ids["o"]]])
    db = conn.db()
    assert entity(db, ids["other"]) == {(":o/id", "other"), (":o/name", "Other")}
    assert list(db.datoms("vaet", ids["o"])) == []


def test_non_component_targets_stay(conn):
    ids = _order(conn)
    conn.transact([[":db/retractEntity", ids["o"]]])
    assert entity(conn.db(), ids["plain"]) == {(":o/id", "plain")}


def test_retract_entity_through_lookup_ref(conn):
    e = conn.transact([{":db/id": "x", ":o/id": "x1", ":o/name": "X"}]).tempids["x"]
    r = conn.transact([[":db/retractEntity", [":o/id", "x1"]]])
    assert user_datoms(r) == {(e, ":o/id", "x1", False), (e, ":o/name", "X", False)}
    assert conn.db().entid([":o/id", "x1"]) is None


def test_legacy_db_fn_retract_entity(conn):
    e = conn.transact([{":db/id": "x", ":o/name": "X"}]).tempids["x"]
    r = conn.transact([[K("db.fn/retractEntity"), e]])
    assert user_datoms(r) == {(e, ":o/name", "X", False)}


def test_retract_entity_of_retracted_entity_is_a_noop(conn):
    e = conn.transact([{":db/id": "x", ":o/name": "X"}]).tempids["x"]
    conn.transact([[":db/retractEntity", e]])
    r = conn.transact([[":db/retractEntity", e]])
    assert user_datoms(r) == set()


def test_retract_entity_lookup_ref_to_missing_entity_fails(conn):
    assert_tx_fails(conn, [[":db/retractEntity", [":o/id", "nope"]]], "db.error/not-an-entity", "nope")


def test_retract_entity_history_keeps_the_past(conn):
    e = conn.transact([{":db/id": "x", ":o/name": "X"}]).tempids["x"]
    r = conn.transact([[":db/retractEntity", e]])
    assert value(conn.db().as_of(r.t - 1), e, ":o/name") == "X"
    hist = {(d.v, d.added) for d in conn.db().history().datoms("eavt", e)}
    assert hist == {("X", True), ("X", False)}


def test_retract_entity_with_other_forms_in_same_tx(conn):
    a = conn.transact([{":db/id": "a", ":o/name": "A"}]).tempids["a"]
    r = conn.transact([[":db/retractEntity", a], {":db/id": "n", ":o/name": "N"}])
    n = r.tempids["n"]
    assert user_datoms(r) == {(a, ":o/name", "A", False), (n, ":o/name", "N", True)}


def test_retract_entity_then_unique_value_reusable(conn):
    conn.transact([{":o/id": "k"}])
    conn.transact([[":db/retractEntity", [":o/id", "k"]]])
    r = conn.transact([{":db/id": "n", ":o/id": "k"}])
    assert values(conn.db(), r.tempids["n"], ":o/id") == {"k"}


def test_references_to_retracted_components_are_retracted_too(conn):
    ids = _order(conn)
    other, p1, i2 = ids["other"], ids["p1"], ids["i2"]
    conn.transact([[":db/add", other, ":o/friends", p1], [":db/add", other, ":o/friends", i2]])
    r = conn.transact([[":db/retractEntity", ids["o"]]])
    got = user_datoms(r)
    assert (other, ":o/friends", p1, False) in got
    assert (other, ":o/friends", i2, False) in got
    db = conn.db()
    assert list(db.datoms("vaet", p1)) == [] and list(db.datoms("vaet", i2)) == []
    assert values(db, other, ":o/friends") == set()
