"""List forms: [:db/add e a v], [:db/retract e a v], [:db/retract e a].

Datomic (transaction data reference): e may be an entity id, a tempid, an ident or a
lookup ref; ref values may be any of those too; retracting a datom that is not in the
database is dropped; [:db/retract e a] retracts every current value of a on e.
"""

import pytest

import fastdatomic as fd
from fastdatomic import Keyword as K
from fastdatomic.ids import part

from txfns_helper import (
    assert_tx_fails, attr, entity, fresh_conn, tx_entity_datoms, user_datoms, value, values,
)

SCHEMA = [
    attr(":p/name", "string"),
    attr(":p/email", "string", unique="identity"),
    attr(":p/age", "long"),
    attr(":p/tags", "string", "many"),
    attr(":p/friend", "ref", "many"),
    attr(":p/color", "ref"),
    attr(":p/kw", "keyword"),
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def _new(conn, **vals):
    r = conn.transact([{":db/id": "x", **{f":p/{k}": v for k, v in vals.items()}}])
    return r.tempids["x"]


def test_add_with_tempid_creates_one_new_user_entity(conn):
    before = conn.db()
    r = conn.transact([[":db/add", "ann", ":p/name", "Ann"]])
    e = r.tempids["ann"]
    assert part(e) == fd.PART_USER
    assert e not in {d.e for d in before.datoms("eavt")}
    assert user_datoms(r) == {(e, ":p/name", "Ann", True)}
    assert entity(conn.db(), e) == {(":p/name", "Ann")}


def test_add_accepts_keyword_objects_for_op_and_attribute(conn):
    r = conn.transact([[K("db/add"), "ann", K("p/name"), "Ann"]])
    assert user_datoms(r) == {(r.tempids["ann"], ":p/name", "Ann", True)}


def test_add_to_existing_entity_by_id(conn):
    e = _new(conn, name="Ann")
    r = conn.transact([[":db/add", e, ":p/age", 41]])
    assert user_datoms(r) == {(e, ":p/age", 41, True)}
    assert entity(conn.db(), e) == {(":p/name", "Ann"), (":p/age", 41)}


def test_retract_value(conn):
    e = _new(conn, name="Ann", age=41)
    r = conn.transact([[":db/retract", e, ":p/age", 41]])
    assert user_datoms(r) == {(e, ":p/age", 41, False)}
    assert entity(conn.db(), e) == {(":p/name", "Ann")}
    hist = {(d.v, d.added) for d in conn.db().history().datoms("eavt", e, ":p/age")}
    assert hist == {(41, True), (41, False)}


def test_retract_without_value_retracts_all_values_card_many(conn):
    e = _new(conn, name="Ann", tags=["a", "b", "c"])
    r = conn.transact([[":db/retract", e, ":p/tags"]])
    assert user_datoms(r) == {(e, ":p/tags", t, False) for t in ("a", "b", "c")}
    assert values(conn.db(), e, ":p/tags") == set()
    assert value(conn.db(), e, ":p/name") == "Ann"


def test_retract_without_value_card_one(conn):
    e = _new(conn, name="Ann", age=41)
    r = conn.transact([[":db/retract", e, ":p/age"]])
    assert user_datoms(r) == {(e, ":p/age", 41, False)}
    assert value(conn.db(), e, ":p/age") is None


def test_retract_of_value_not_held_is_a_noop(conn):
    e = _new(conn, name="Ann")
    r = conn.transact([[":db/retract", e, ":p/name", "Bob"]])
    assert user_datoms(r) == set()
    assert value(conn.db(), e, ":p/name") == "Ann"


def test_retract_all_of_attribute_without_values_is_a_noop(conn):
    e = _new(conn, name="Ann")
    r = conn.transact([[":db/retract", e, ":p/tags"]])
    assert user_datoms(r) == set()
    # only the transaction entity's own datoms
    assert ":db/txInstant" in tx_entity_datoms(r)


def test_retract_twice_second_is_noop(conn):
    e = _new(conn, name="Ann", age=3)
    conn.transact([[":db/retract", e, ":p/age", 3]])
    r = conn.transact([[":db/retract", e, ":p/age", 3]])
    assert user_datoms(r) == set()


def test_ident_as_entity(conn):
    r = conn.transact([[":db/add", ":p/name", ":db/doc", "a person's name"]])
    a = conn.db().entid(":p/name")
    assert user_datoms(r) == {(a, ":db/doc", "a person's name", True)}


def test_ident_keyword_object_as_entity(conn):
    r = conn.transact([[":db/add", K("p/name"), K("db/doc"), "doc"]])
    assert user_datoms(r) == {(conn.db().entid(":p/name"), ":db/doc", "doc", True)}


def test_lookup_ref_as_entity(conn):
    e = _new(conn, email="ann@x.org")
    r = conn.transact([[":db/add", [":p/email", "ann@x.org"], ":p/age", 30]])
    assert user_datoms(r) == {(e, ":p/age", 30, True)}


def test_lookup_ref_as_ref_value(conn):
    ann = _new(conn, email="ann@x.org")
    bob = _new(conn, email="bob@x.org")
    r = conn.transact([[":db/add", ann, ":p/friend", [":p/email", "bob@x.org"]]])
    assert user_datoms(r) == {(ann, ":p/friend", bob, True)}


def test_lookup_ref_on_both_sides(conn):
    ann = _new(conn, email="ann@x.org")
    bob = _new(conn, email="bob@x.org")
    r = conn.transact([[":db/add", [":p/email", "ann@x.org"], ":p/friend", [":p/email", "bob@x.org"]]])
    assert user_datoms(r) == {(ann, ":p/friend", bob, True)}


def test_ident_as_ref_value(conn):
    conn.transact([{":db/ident": K("color/red")}, {":db/ident": K("color/blue")}])
    red = conn.db().entid(":color/red")
    blue = conn.db().entid(":color/blue")
    e = _new(conn, name="Ann")
    r = conn.transact([[":db/add", e, ":p/color", ":color/red"]])
    assert user_datoms(r) == {(e, ":p/color", red, True)}
    r = conn.transact([[":db/add", e, ":p/color", K("color/blue")]])
    assert user_datoms(r) == {(e, ":p/color", blue, True), (e, ":p/color", red, False)}


def test_entity_id_as_ref_value(conn):
    ann = _new(conn, name="Ann")
    bob = _new(conn, name="Bob")
    r = conn.transact([[":db/add", ann, ":p/friend", bob]])
    assert user_datoms(r) == {(ann, ":p/friend", bob, True)}
    assert [d.e for d in conn.db().datoms("vaet", bob, ":p/friend")] == [ann]


def test_tempid_as_ref_value_in_same_tx(conn):
    r = conn.transact([[":db/add", "a", ":p/name", "A"],
                       [":db/add", "b", ":p/name", "B"],
                       [":db/add", "a", ":p/friend", "b"]])
    a, b = r.tempids["a"], r.tempids["b"]
    assert a != b
    assert user_datoms(r) == {(a, ":p/name", "A", True), (b, ":p/name", "B", True),
                              (a, ":p/friend", b, True)}


def test_keyword_value(conn):
    e = _new(conn, name="Ann")
    r = conn.transact([[":db/add", e, ":p/kw", K("status/active")]])
    assert user_datoms(r) == {(e, ":p/kw", K("status/active"), True)}


def test_lookup_ref_to_missing_entity_as_entity_fails(conn):
    assert_tx_fails(conn, [[":db/add", [":p/email", "nobody@x.org"], ":p/age", 1]],
                    "db.error/not-an-entity", "nobody@x.org")


def test_lookup_ref_to_missing_entity_as_value_fails(conn):
    ann = _new(conn, email="ann@x.org")
    assert_tx_fails(conn, [[":db/add", ann, ":p/friend", [":p/email", "nobody@x.org"]]],
                    "db.error/not-an-entity", "nobody@x.org")


def test_unknown_ident_as_entity_fails(conn):
    assert_tx_fails(conn, [[":db/add", ":no/such", ":p/name", "x"]],
                    "db.error/not-an-entity", ":no/such")


def test_unknown_ident_as_ref_value_fails(conn):
    e = _new(conn, name="Ann")
    assert_tx_fails(conn, [[":db/add", e, ":p/color", ":color/none"]],
                    "db.error/not-an-entity", ":color/none")


def test_unknown_attribute_fails(conn):
    assert_tx_fails(conn, [[":db/add", "x", ":p/nope", 1]], "db.error/not-an-entity", ":p/nope")


def test_add_with_missing_value_fails(conn):
    assert_tx_fails(conn, [[":db/add", "x", ":p/name"]], "db.error/invalid-tx-data", ":db/add")


def test_add_with_extra_element_fails(conn):
    assert_tx_fails(conn, [[":db/add", "x", ":p/name", "a", "b"]], "db.error/invalid-tx-data")


def test_add_nil_value_fails(conn):
    assert_tx_fails(conn, [[":db/add", "x", ":p/name", None]], None, ":p/name",
                    kinds=("db.error/invalid-tx-data", "db.error/wrong-type"))


def test_failed_form_rolls_back_earlier_forms(conn):
    e = _new(conn, name="Ann")
    assert_tx_fails(conn, [[":db/add", e, ":p/age", 5],
                           [":db/add", "y", ":p/name", "B"],
                           [":db/add", [":p/email", "missing"], ":p/age", 1]],
                    "db.error/not-an-entity")
    assert value(conn.db(), e, ":p/age") is None


def test_retract_with_lookup_ref_value(conn):
    ann = _new(conn, email="ann@x.org")
    bob = _new(conn, email="bob@x.org")
    conn.transact([[":db/add", ann, ":p/friend", bob]])
    r = conn.transact([[":db/retract", ann, ":p/friend", [":p/email", "bob@x.org"]]])
    assert user_datoms(r) == {(ann, ":p/friend", bob, False)}


def test_retract_with_ident_value(conn):
    conn.transact([{":db/ident": K("color/red")}])
    e = _new(conn, name="Ann")
    conn.transact([[":db/add", e, ":p/color", ":color/red"]])
    r = conn.transact([[":db/retract", e, ":p/color", ":color/red"]])
    assert user_datoms(r) == {(e, ":p/color", conn.db().entid(":color/red"), False)}
