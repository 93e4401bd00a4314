"""Schema: installing attributes and changing them.

Datomic (schema, schema change): an attribute is an entity with :db/ident,
:db/valueType and :db/cardinality (all three required). Allowed alterations: renaming
:db/ident (the old ident keeps resolving), :db/doc, :db/cardinality (many -> one only
when no entity has several values), :db/isComponent, :db/noHistory, :db/index, adding
:db/unique (only when existing values are unique) and dropping it. Never: :db/valueType,
:db/tupleAttrs/:db/tupleType(s). A violating change aborts the transaction. An attribute
cannot be used in the transaction that installs it.
"""

import pytest

from fastdatomic import Keyword as K
from fastdatomic._core.codec import TYPE_LONG, TYPE_REF, TYPE_STRING
from fastdatomic.errors import InvalidIndexError

from txfns_helper import (
    assert_tx_fails, attr, entity, fresh_conn, user_datoms, value, values,
)

BAD_ALTER = "db.error/invalid-alter-attribute"


@pytest.fixture
def conn():
    return fresh_conn(attr(":s/name", "string"), attr(":s/tags", "string", "many"),
                      attr(":s/n", "long"), attr(":s/ref", "ref"))


def _props(db, ident):
    e = db.entid(ident)
    return {(str(db.ident(d.a)), str(db.ident(d.v)) if db.ident(d.a) in
             (K("db/valueType"), K("db/cardinality"), K("db/unique")) else d.v)
            for d in db.datoms("eavt", e)}


def test_install_attribute_from_edn_text():
    conn = fresh_conn()
    r = conn.transact('''[{:db/ident :person/email
                          :db/valueType :db.type/string
                          :db/cardinality :db.cardinality/one
                          :db/unique :db.unique/identity
                          :db/doc "primary email"}]''')
    db = conn.db()
    a = db.attribute(":person/email")
    assert (a.vtype, a.many, a.unique, a.indexed) == (TYPE_STRING, False, "identity", True)
    assert _props(db, ":person/email") == {
        (":db/ident", K("person/email")), (":db/valueType", ":db.type/string"),
        (":db/cardinality", ":db.cardinality/one"), (":db/unique", ":db.unique/identity"),
        (":db/doc", "primary email")}
    assert {d[1] for d in user_datoms(r)} >= {":db/ident", ":db/valueType", ":db/cardinality"}


def test_install_attribute_from_python_data():
    conn = fresh_conn()
    conn.transact([{":db/ident": K("person/friends"), ":db/valueType": K("db.type/ref"),
                    ":db/cardinality": K("db.cardinality/many"), ":db/isComponent": False,
                    ":db/index": True, ":db/noHistory": True}])
    a = conn.db().attribute(":person/friends")
    assert (a.vtype, a.many, a.unique, a.indexed, a.component, a.no_history) == (
        TYPE_REF, True, None, True, False, True)


def test_install_attribute_with_idents_as_text():
    conn = fresh_conn()
    conn.transact([{":db/ident": K("person/age"), ":db/valueType": ":db.type/long",
                    ":db/cardinality": ":db.cardinality/one"}])
    assert conn.db().attribute(":person/age").vtype == TYPE_LONG


def test_several_attributes_in_one_tx():
    conn = fresh_conn()
    conn.transact([attr(":x/a", "string"), attr(":x/b", "long", "many")])
    assert conn.db().attribute(":x/b").many and not conn.db().attribute(":x/a").many


def test_new_attribute_without_cardinality_fails():
    conn = fresh_conn()
    assert_tx_fails(conn, [{":db/ident": K("x/nocard"), ":db/valueType": K("db.type/string")}],
                    BAD_ALTER, ":db/cardinality")


def test_new_attribute_without_ident_fails():
    conn = fresh_conn()
    assert_tx_fails(conn, [{":db/valueType": K("db.type/string"), ":db/cardinality": K("db.cardinality/one")}],
                    BAD_ALTER, ":db/ident")


def test_attribute_cannot_be_used_in_the_tx_that_installs_it():
    conn = fresh_conn()
    assert_tx_fails(conn, [attr(":x/new", "string"), {":x/new": "v"}], "db.error/not-an-entity", ":x/new")


def test_rename_ident(conn):
    e = conn.transact([{":db/id": "x", ":s/name": "Ann"}]).tempids["x"]
    a = conn.db().entid(":s/name")
    conn.transact([{":db/id": ":s/name", ":db/ident": K("s/full-name")}])
    db = conn.db()
    assert db.entid(":s/full-name") == a
    assert db.ident(a) == K("s/full-name")
    assert value(db, e, ":s/full-name") == "Ann"
    r = conn.transact([[":db/add", e, ":s/full-name", "Anne"]])
    assert user_datoms(r) == {(e, ":s/full-name", "Ann", False), (e, ":s/full-name", "Anne", True)}


def test_old_ident_still_resolves_after_rename(conn):
    a = conn.db().entid(":s/name")
    conn.transact([{":db/id": ":s/name", ":db/ident": K("s/full-name")}])
    assert conn.db().entid(":s/name") == a


def test_add_doc(conn):
    r = conn.transact([{":db/id": ":s/name", ":db/doc": "a name"}])
    a = conn.db().entid(":s/name")
    assert user_datoms(r) == {(a, ":db/doc", "a name", True)}


def test_cardinality_one_to_many(conn):
    e = conn.transact([{":db/id": "x", ":s/name": "A"}]).tempids["x"]
    conn.transact([{":db/id": ":s/name", ":db/cardinality": K("db.cardinality/many")}])
    assert conn.db().attribute(":s/name").many
    r = conn.transact([[":db/add", e, ":s/name", "B"]])
    assert user_datoms(r) == {(e, ":s/name", "B", True)}
    assert values(conn.db(), e, ":s/name") == {"A", "B"}


def test_cardinality_many_to_one_when_values_are_single(conn):
    e = conn.transact([{":db/id": "x", ":s/tags": ["only"]}]).tempids["x"]
    conn.transact([{":db/id": ":s/tags", ":db/cardinality": K("db.cardinality/one")}])
    assert not conn.db().attribute(":s/tags").many
    r = conn.transact([[":db/add", e, ":s/tags", "new"]])
    assert user_datoms(r) == {(e, ":s/tags", "only", False), (e, ":s/tags", "new", True)}


def test_cardinality_many_to_one_rejected_when_an_entity_has_several_values(conn):
    conn.transact([{":db/id": "x", ":s/tags": ["a", "b"]}])
    assert_tx_fails(conn, [{":db/id": ":s/tags", ":db/cardinality": K("db.cardinality/one")}], BAD_ALTER, ":s/tags")
    assert conn.db().attribute(":s/tags").many


def test_add_index_makes_existing_datoms_available_in_avet(conn):
    e = conn.transact([{":db/id": "x", ":s/n": 5}]).tempids["x"]
    with pytest.raises(InvalidIndexError):
        list(conn.db().datoms("avet", ":s/n", 5))
    conn.transact([{":db/id": ":s/n", ":db/index": True}])
    assert conn.db().attribute(":s/n").indexed
    assert [(d.e, d.v) for d in conn.db().datoms("avet", ":s/n", 5)] == [(e, 5)]
    f = conn.transact([{":db/id": "y", ":s/n": 7}]).tempids["y"]
    assert [(d.e, d.v) for d in conn.db().datoms("avet", ":s/n")] == [(e, 5), (f, 7)]


def test_add_unique_when_values_are_unique(conn):
    e = conn.transact([{":db/id": "x", ":s/n": 1}, {":db/id": "y", ":s/n": 2}]).tempids["x"]
    conn.transact([{":db/id": ":s/n", ":db/index": True}])
    conn.transact([{":db/id": ":s/n", ":db/unique": K("db.unique/identity")}])
    assert conn.db().attribute(":s/n").unique == "identity"
    assert conn.db().entid([":s/n", 1]) == e
    # and it is enforced from now on: a tempid upserts
    r = conn.transact([{":db/id": "t", ":s/n": 1, ":s/name": "upserted"}])
    assert r.tempids["t"] == e


def test_add_unique_rejected_when_values_are_duplicated(conn):
    conn.transact([{":s/n": 1}, {":s/n": 1}])
    conn.transact([{":db/id": ":s/n", ":db/index": True}])
    assert_tx_fails(conn, [{":db/id": ":s/n", ":db/unique": K("db.unique/value")}], BAD_ALTER, ":s/n")
    assert conn.db().attribute(":s/n").unique is None


def test_drop_unique(conn):
    conn.transact([{":db/id": ":s/n", ":db/index": True}])
    conn.transact([{":db/id": ":s/n", ":db/unique": K("db.unique/value")}])
    conn.transact([[":db/retract", ":s/n", ":db/unique", ":db.unique/value"]])
    assert conn.db().attribute(":s/n").unique is None
    conn.transact([{":s/n": 1}, {":s/n": 1}])
    assert len(list(conn.db().datoms("aevt", ":s/n"))) == 2


def test_make_attribute_component(conn):
    r0 = conn.transact([{":db/id": "child", ":s/name": "child"}, {":db/id": "p", ":s/ref": "child"}])
    child, p = r0.tempids["child"], r0.tempids["p"]
    conn.transact([{":db/id": ":s/ref", ":db/isComponent": True}])
    assert conn.db().attribute(":s/ref").component
    conn.transact([[":db/retractEntity", p]])
    assert entity(conn.db(), child) == set()


def test_set_no_history(conn):
    conn.transact([{":db/id": ":s/name", ":db/noHistory": True}])
    assert conn.db().attribute(":s/name").no_history


def test_change_value_type_rejected(conn):
    conn.transact([{":s/n": 1}])
    assert_tx_fails(conn, [{":db/id": ":s/n", ":db/valueType": K("db.type/string")}], BAD_ALTER, ":s/n")
    assert conn.db().attribute(":s/n").vtype == TYPE_LONG


def test_change_value_type_rejected_even_without_data(conn):
    assert_tx_fails(conn, [{":db/id": ":s/n", ":db/valueType": K("db.type/string")}], BAD_ALTER, ":db/valueType")


def test_change_tuple_attrs_rejected():
    conn = fresh_conn(attr(":t/a", "string"), attr(":t/b", "string"), attr(":t/c", "string"),
                      attr(":t/a+b", "tuple", tuple_attrs=[":t/a", ":t/b"]))
    assert_tx_fails(conn, [{":db/id": ":t/a+b", ":db/tupleAttrs": [K("t/a"), K("t/c")]}], BAD_ALTER, ":t/a+b")


def test_ident_value_must_be_a_keyword():
    conn = fresh_conn()
    assert_tx_fails(conn, [{":db/ident": "x/str", ":db/valueType": K("db.type/string"),
                            ":db/cardinality": K("db.cardinality/one")}], "db.error/wrong-type", ":db/ident")


def test_enum_idents(conn):
    r = conn.transact([{":db/ident": K("color/red")}, [":db/add", "g", ":db/ident", K("color/green")]])
    db = conn.db()
    assert db.entid(":color/red") is not None and db.entid(":color/green") == r.tempids["g"]
    assert db.ident(r.tempids["g"]) == K("color/green")


def test_two_entities_cannot_share_an_ident(conn):
    conn.transact([{":db/ident": K("color/red")}])
    # :db/ident is :db.unique/identity: a tempid upserts onto the existing entity
    r = conn.transact([{":db/id": "x", ":db/ident": K("color/red"), ":db/doc": "red"}])
    assert r.tempids["x"] == conn.db().entid(":color/red")
    conn.transact([{":db/ident": K("color/blue")}])
    blue = conn.db().entid(":color/blue")
    assert_tx_fails(conn, [[":db/add", blue, ":db/ident", K("color/red")]], "db.error/unique-conflict")


def test_old_ident_usable_as_attribute_after_rename(conn):
    e = conn.transact([{":db/id": "x", ":s/name": "Ann"}]).tempids["x"]
    conn.transact([{":db/id": ":s/name", ":db/ident": K("s/full-name")}])
    r = conn.transact([[":db/add", e, ":s/name", "Anne"]])
    assert user_datoms(r) == {(e, ":s/full-name", "Ann", False), (e, ":s/full-name", "Anne", True)}


def test_legacy_explicit_install_attribute():
    conn = fresh_conn()
    conn.transact([{":db/id": "a", ":db/ident": K("old/style"), ":db/valueType": K("db.type/string"),
                    ":db/cardinality": K("db.cardinality/one"), ":db.install/_attribute": ":db.part/db"}])
    assert conn.db().attribute(":old/style").vtype == TYPE_STRING
    r = conn.transact([{":db/id": "x", ":old/style": "works"}])
    assert value(conn.db(), r.tempids["x"], ":old/style") == "works"


def test_change_fulltext_rejected(conn):
    assert_tx_fails(conn, [{":db/id": ":s/name", ":db/fulltext": True}], BAD_ALTER, ":s/name")


def test_change_tuple_type_rejected():
    conn = fresh_conn(attr(":t/scores", "tuple", tuple_type="long"),
                      attr(":t/pair", "tuple", tuple_types=["long", "string"]))
    assert_tx_fails(conn, [{":db/id": ":t/scores", ":db/tupleType": K("db.type/string")}], BAD_ALTER, ":t/scores")
    assert_tx_fails(conn, [{":db/id": ":t/pair", ":db/tupleTypes": [K("db.type/string"), K("db.type/long")]}],
                    BAD_ALTER, ":t/pair")


def test_retracting_value_type_rejected(conn):
    assert_tx_fails(conn, [[":db/retract", ":s/name", ":db/valueType", ":db.type/string"]], BAD_ALTER, ":s/name")


def test_retracting_cardinality_rejected(conn):
    assert_tx_fails(conn, [[":db/retract", ":s/name", ":db/cardinality", ":db.cardinality/one"]], BAD_ALTER, ":s/name")


def test_tuple_attribute_needs_a_tuple_shape():
    conn = fresh_conn()
    assert_tx_fails(conn, [{":db/ident": K("t/bare"), ":db/valueType": K("db.type/tuple"),
                            ":db/cardinality": K("db.cardinality/one")}], BAD_ALTER, ":t/bare")


def test_composite_of_one_attribute_rejected():
    conn = fresh_conn(attr(":t/a", "string"))
    assert_tx_fails(conn, [attr(":t/solo", "tuple", tuple_attrs=[":t/a"])], None, ":db/tupleAttrs")


def test_composite_of_unknown_attribute_rejected():
    conn = fresh_conn(attr(":t/a", "string"))
    assert_tx_fails(conn, [attr(":t/a+zz", "tuple", tuple_attrs=[":t/a", ":t/zz"])], BAD_ALTER, ":t/zz")


def test_unknown_value_type_rejected():
    conn = fresh_conn()
    assert_tx_fails(conn, [{":db/ident": K("x/odd"), ":db/valueType": K("db.type/decimal128"),
                            ":db/cardinality": K("db.cardinality/one")}], "db.error/not-an-entity", "db.type/decimal128")
