"""Tuples: composite (:db/tupleAttrs), heterogeneous (:db/tupleTypes), homogeneous (:db/tupleType).

Datomic: composite tuples are maintained by the database: asserting or retracting any
component attribute (re)asserts the composite on that entity, with nil for components
the entity lacks; you never assert them yourself. A unique composite rejects a second
entity with the same combination. Typed tuples hold 2..8 elements, each of its
declared type.
"""

from datetime import datetime, timezone

import pytest

from fastdatomic import Keyword as K

from txfns_helper import assert_tx_fails, attr, fresh_conn, user_datoms, value

SCHEMA = [
    attr(":reg/course", "string"),
    attr(":reg/semester", "string"),
    attr(":reg/student", "string"),
    attr(":reg/course+semester", "tuple", tuple_attrs=[":reg/course", ":reg/semester"]),
    attr(":reg/semester+course+student", "tuple", unique="identity",
         tuple_attrs=[":reg/semester", ":reg/course", ":reg/student"]),
    attr(":player/location", "tuple", tuple_types=["long", "long"]),
    attr(":player/event", "tuple", tuple_types=["keyword", "string", "instant"]),
    attr(":player/scores", "tuple", tuple_type="long"),
    attr(":player/names", "tuple", tuple_type="string"),
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def _cs(datoms):
    return {d for d in datoms if d[1] == ":reg/course+semester"}


def test_composite_appears_when_components_are_asserted(conn):
    r = conn.transact([{":db/id": "r", ":reg/course": "C1", ":reg/semester": "S1"}])
    e = r.tempids["r"]
    assert _cs(user_datoms(r)) == {(e, ":reg/course+semester", ("C1", "S1"), True)}
    assert value(conn.db(), e, ":reg/course+semester") == ("C1", "S1")


def test_composite_has_nil_for_absent_component(conn):
    r = conn.transact([{":db/id": "r", ":reg/course": "C1"}])
    e = r.tempids["r"]
    assert value(conn.db(), e, ":reg/course+semester") == ("C1", None)
    assert value(conn.db(), e, ":reg/semester+course+student") == (None, "C1", None)


def test_composite_updated_when_a_component_changes(conn):
    e = conn.transact([{":db/id": "r", ":reg/course": "C1", ":reg/semester": "S1"}]).tempids["r"]
    r = conn.transact([[":db/add", e, ":reg/semester", "S2"]])
    assert _cs(user_datoms(r)) == {(e, ":reg/course+semester", ("C1", "S1"), False),
                                   (e, ":reg/course+semester", ("C1", "S2"), True)}
    assert value(conn.db(), e, ":reg/course+semester") == ("C1", "S2")


def test_composite_filled_in_when_missing_component_arrives(conn):
    e = conn.transact([{":db/id": "r", ":reg/course": "C1"}]).tempids["r"]
    r = conn.transact([[":db/add", e, ":reg/semester", "S1"]])
    assert _cs(user_datoms(r)) == {(e, ":reg/course+semester", ("C1", None), False),
                                   (e, ":reg/course+semester", ("C1", "S1"), True)}


def test_composite_updated_when_a_component_is_retracted(conn):
    e = conn.transact([{":db/id": "r", ":reg/course": "C1", ":reg/semester": "S1"}]).tempids["r"]
    conn.transact([[":db/retract", e, ":reg/semester", "S1"]])
    assert value(conn.db(), e, ":reg/course+semester") == ("C1", None)


def test_composite_untouched_by_unrelated_attributes(conn):
    e = conn.transact([{":db/id": "r", ":reg/course": "C1", ":reg/semester": "S1"}]).tempids["r"]
    r = conn.transact([[":db/add", e, ":player/scores", (1, 2)]])
    assert user_datoms(r) == {(e, ":player/scores", (1, 2), True)}


def test_asserting_composite_directly_fails(conn):
    assert_tx_fails(conn, [[":db/add", "r", ":reg/course+semester", ("C1", "S1")]], None, ":reg/course+semester")
    assert_tx_fails(conn, [{":db/id": "r", ":reg/course+semester": ["C1", "S1"]}], None, ":reg/course+semester")


def test_unique_composite_conflict_across_transactions(conn):
    conn.transact([{":reg/course": "C1", ":reg/semester": "S1", ":reg/student": "ann"}])
    assert_tx_fails(conn, [{":reg/course": "C1", ":reg/semester": "S1", ":reg/student": "ann"}],
                    "db.error/unique-conflict", ":reg/semester+course+student")


def test_unique_composite_conflict_within_one_transaction(conn):
    assert_tx_fails(conn, [{":db/id": "a", ":reg/course": "C1", ":reg/semester": "S1", ":reg/student": "bob"},
                           {":db/id": "b", ":reg/course": "C1", ":reg/semester": "S1", ":reg/student": "bob"}],
                    "db.error/unique-conflict", ":reg/semester+course+student")


def test_unique_composite_conflict_when_existing_entity_changes_into_it(conn):
    conn.transact([{":reg/course": "C1", ":reg/semester": "S1", ":reg/student": "ann"}])
    e = conn.transact([{":db/id": "b", ":reg/course": "C1", ":reg/semester": "S1",
                        ":reg/student": "bob"}]).tempids["b"]
    assert_tx_fails(conn, [[":db/add", e, ":reg/student", "ann"]],
                    "db.error/unique-conflict", ":reg/semester+course+student")


def test_unique_composite_different_combinations_coexist(conn):
    conn.transact([{":reg/course": "C1", ":reg/semester": "S1", ":reg/student": "ann"},
                   {":reg/course": "C1", ":reg/semester": "S2", ":reg/student": "ann"}])
    assert len(list(conn.db().datoms("aevt", ":reg/semester+course+student"))) == 2


def test_unique_composite_lookup_ref(conn):
    e = conn.transact([{":db/id": "r", ":reg/course": "C1", ":reg/semester": "S1",
                        ":reg/student": "ann"}]).tempids["r"]
    assert conn.db().entid([":reg/semester+course+student", ("S1", "C1", "ann")]) == e
    avet = list(conn.db().datoms("avet", ":reg/semester+course+student", ("S1", "C1", "ann")))
    assert [d.e for d in avet] == [e]


def test_heterogeneous_tuple_round_trip(conn):
    when = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=timezone.utc)
    r = conn.transact([{":db/id": "p", ":player/location": (10, -20),
                        ":player/event": (K("ev/goal"), "minute 90", when)}])
    p = r.tempids["p"]
    assert user_datoms(r) == {(p, ":player/location", (10, -20), True),
                              (p, ":player/event", (K("ev/goal"), "minute 90", when), True)}
    assert value(conn.db(), p, ":player/event") == (K("ev/goal"), "minute 90", when)


def test_tuple_given_as_list(conn):
    r = conn.transact([[":db/add", "p", ":player/location", [1, 2]]])
    assert value(conn.db(), r.tempids["p"], ":player/location") == (1, 2)


def test_heterogeneous_tuple_wrong_element_type(conn):
    assert_tx_fails(conn, [{":player/location": (10, "twenty")}], "db.error/wrong-type", ":player/location")
    assert_tx_fails(conn, [{":player/event": ("ev/goal", "x", datetime(2024, 1, 1, tzinfo=timezone.utc))}],
                    "db.error/wrong-type", ":player/event")


def test_heterogeneous_tuple_wrong_arity(conn):
    assert_tx_fails(conn, [{":player/location": (1, 2, 3)}], None, ":player/location")


def test_homogeneous_tuple(conn):
    r = conn.transact([{":db/id": "p", ":player/scores": (1, 2, 3, 4, 5, 6, 7, 8)}])
    assert value(conn.db(), r.tempids["p"], ":player/scores") == (1, 2, 3, 4, 5, 6, 7, 8)
    r = conn.transact([{":db/id": "q", ":player/names": ("a", "b")}])
    assert value(conn.db(), r.tempids["q"], ":player/names") == ("a", "b")


def test_homogeneous_tuple_wrong_element_type(conn):
    assert_tx_fails(conn, [{":player/scores": (1, "2")}], "db.error/wrong-type", ":player/scores")
    assert_tx_fails(conn, [{":player/names": ("a", 2)}], "db.error/wrong-type", ":player/names")


def test_tuple_size_limits(conn):
    assert_tx_fails(conn, [{":player/scores": tuple(range(9))}], None, ":player/scores")
    assert_tx_fails(conn, [{":player/scores": (1,)}], None, ":player/scores")


def test_tuple_attribute_given_a_scalar(conn):
    assert_tx_fails(conn, [{":player/scores": 5}], "db.error/wrong-type", ":player/scores")


def test_card_one_tuple_replaces(conn):
    p = conn.transact([{":db/id": "p", ":player/location": (1, 1)}]).tempids["p"]
    r = conn.transact([[":db/add", p, ":player/location", (2, 2)]])
    assert user_datoms(r) == {(p, ":player/location", (1, 1), False), (p, ":player/location", (2, 2), True)}


def test_redundant_tuple_assertion(conn):
    p = conn.transact([{":db/id": "p", ":player/location": (1, 1)}]).tempids["p"]
    r = conn.transact([[":db/add", p, ":player/location", [1, 1]]])
    assert user_datoms(r) == set()


def test_retract_entity_removes_composite_too(conn):
    e = conn.transact([{":db/id": "r", ":reg/course": "C1", ":reg/semester": "S1",
                        ":reg/student": "ann"}]).tempids["r"]
    r = conn.transact([[":db/retractEntity", e]])
    assert (e, ":reg/course+semester", ("C1", "S1"), False) in user_datoms(r)
    assert (e, ":reg/semester+course+student", ("S1", "C1", "ann"), False) in user_datoms(r)
    assert list(conn.db().datoms("eavt", e)) == []
    assert conn.db().entid([":reg/semester+course+student", ("S1", "C1", "ann")]) is None


def test_composite_maintained_for_component_asserted_through_upsert(conn):
    conn.transact([attr(":reg/id", "string", unique="identity")])
    e = conn.transact([{":db/id": "r", ":reg/id": "r1", ":reg/course": "C1"}]).tempids["r"]
    conn.transact([{":reg/id": "r1", ":reg/semester": "S9"}])
    assert value(conn.db(), e, ":reg/course+semester") == ("C1", "S9")


def test_card_many_tuple_values():
    conn = fresh_conn(attr(":g/edges", "tuple", "many", tuple_types=["long", "long"]))
    r = conn.transact([{":db/id": "g", ":g/edges": [(1, 2), (2, 3)]}])
    g = r.tempids["g"]
    assert user_datoms(r) == {(g, ":g/edges", (1, 2), True), (g, ":g/edges", (2, 3), True)}
    r = conn.transact([[":db/add", g, ":g/edges", (3, 4)]])
    assert user_datoms(r) == {(g, ":g/edges", (3, 4), True)}
