"""Entity specs: :db/ensure with :db.entity/attrs and :db.entity/preds.

Datomic: an entity spec is an entity with an ident, :db.entity/attrs (required
attributes) and/or :db.entity/preds (symbols of predicates of db-after and an entity
id). Asserting :db/ensure spec on an entity checks the spec at the end of the
transaction, against the database AFTER it; a failure aborts the transaction
(:db.error/entity-spec-failed here). :db/ensure is virtual: its datom is not stored.
"""

import pytest

from fastdatomic import Keyword as K, Symbol

from txfns_helper import assert_tx_fails, attr, fresh_conn, user_datoms, value

SCHEMA = [
    attr(":user/name", "string"),
    attr(":user/email", "string", unique="identity"),
    attr(":user/age", "long"),
    {":db/ident": K("user/spec"),
     ":db.entity/attrs": [K("user/name"), K("user/email")],
     ":db.entity/preds": [Symbol("txfns_helper/valid_user")]},
    {":db/ident": K("user/named"), ":db.entity/attrs": [K("user/name")]},
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def _ensure_datoms(db, e):
    return list(db.datoms("eavt", e, ":db/ensure"))


def test_spec_satisfied(conn):
    r = conn.transact([{":db/id": "u", ":user/name": "Ann", ":user/email": "ann@x.org",
                        ":db/ensure": K("user/spec")}])
    u = r.tempids["u"]
    assert user_datoms(r) == {(u, ":user/name", "Ann", True), (u, ":user/email", "ann@x.org", True)}


def test_ensure_datom_is_not_stored(conn):
    r = conn.transact([{":db/id": "u", ":user/name": "Ann", ":user/email": "ann@x.org",
                        ":db/ensure": K("user/spec")}])
    u = r.tempids["u"]
    assert all(r.db_after.ident(d.a) != K("db/ensure") for d in r.tx_data)
    assert _ensure_datoms(conn.db(), u) == []
    assert _ensure_datoms(conn.db().history(), u) == []


def test_missing_required_attribute_fails(conn):
    assert_tx_fails(conn, [{":db/id": "u", ":user/name": "Ann", ":db/ensure": K("user/spec")}],
                    "db.error/entity-spec-failed", ":user/email")


def test_predicate_false_fails(conn):
    assert_tx_fails(conn, [{":db/id": "u", ":user/name": "Ann", ":user/email": "no-at-sign",
                            ":db/ensure": K("user/spec")}],
                    "db.error/entity-spec-failed", "txfns_helper/valid_user")


def test_predicate_sees_values_asserted_in_same_tx(conn):
    assert_tx_fails(conn, [{":db/id": "u", ":user/name": "Kid", ":user/email": "kid@x.org",
                            ":user/age": 12, ":db/ensure": K("user/spec")}],
                    "db.error/entity-spec-failed", "txfns_helper/valid_user")
    r = conn.transact([{":db/id": "u", ":user/name": "Adult", ":user/email": "adult@x.org",
                        ":user/age": 30, ":db/ensure": K("user/spec")}])
    assert value(conn.db(), r.tempids["u"], ":user/age") == 30


def test_spec_checked_against_db_after_attr_added_by_another_form(conn):
    e = conn.transact([{":db/id": "u", ":user/name": "Ann"}]).tempids["u"]
    r = conn.transact([{":db/id": e, ":db/ensure": K("user/spec")},
                       [":db/add", e, ":user/email", "ann@x.org"]])
    assert user_datoms(r) == {(e, ":user/email", "ann@x.org", True)}


def test_spec_satisfied_by_attributes_from_before_the_tx(conn):
    e = conn.transact([{":db/id": "u", ":user/name": "Ann", ":user/email": "ann@x.org"}]).tempids["u"]
    r = conn.transact([{":db/id": e, ":user/age": 40, ":db/ensure": K("user/spec")}])
    assert user_datoms(r) == {(e, ":user/age", 40, True)}


def test_spec_fails_when_tx_retracts_a_required_attribute(conn):
    e = conn.transact([{":db/id": "u", ":user/name": "Ann", ":user/email": "ann@x.org"}]).tempids["u"]
    assert_tx_fails(conn, [[":db/retract", e, ":user/name", "Ann"], {":db/id": e, ":db/ensure": K("user/spec")}],
                    "db.error/entity-spec-failed", ":user/name")


def test_ensure_in_list_form_is_checked(conn):
    e = conn.transact([{":db/id": "u", ":user/name": "Ann"}]).tempids["u"]
    assert_tx_fails(conn, [[":db/add", e, ":db/ensure", ":user/spec"]], "db.error/entity-spec-failed", ":user/email")


def test_ensure_in_list_form_is_not_stored(conn):
    e = conn.transact([{":db/id": "u", ":user/name": "Ann", ":user/email": "ann@x.org"}]).tempids["u"]
    r = conn.transact([[":db/add", e, ":db/ensure", ":user/spec"]])
    assert user_datoms(r) == set()
    assert _ensure_datoms(conn.db(), e) == []


def test_predicate_sees_db_after_change(conn):
    e = conn.transact([{":db/id": "u", ":user/name": "Ann", ":user/email": "ann@x.org",
                        ":user/age": 30}]).tempids["u"]
    assert_tx_fails(conn, [{":db/id": e, ":user/age": 10, ":db/ensure": K("user/spec")}],
                    "db.error/entity-spec-failed", "valid_user")


def test_attrs_only_spec(conn):
    r = conn.transact([{":db/id": "u", ":user/name": "N", ":db/ensure": K("user/named")}])
    assert value(conn.db(), r.tempids["u"], ":user/name") == "N"
    assert_tx_fails(conn, [{":db/id": "v", ":user/age": 1, ":db/ensure": K("user/named")}],
                    "db.error/entity-spec-failed", ":user/name")


def test_spec_applies_only_where_ensured(conn):
    r = conn.transact([{":db/id": "u", ":user/age": 1}])
    assert user_datoms(r) == {(r.tempids["u"], ":user/age", 1, True)}


def test_several_specs_on_one_entity(conn):
    assert_tx_fails(conn, [{":db/id": "u", ":user/name": "N",
                            ":db/ensure": [K("user/named"), K("user/spec")]}],
                    "db.error/entity-spec-failed", ":user/email")


def test_unknown_spec_fails(conn):
    assert_tx_fails(conn, [{":db/id": "u", ":user/name": "N", ":db/ensure": K("user/no-such-spec")}],
                    None, "user/no-such-spec", kinds=("db.error/entity-spec-failed", "db.error/not-an-entity"))


def test_spec_failure_rolls_back_other_entities(conn):
    assert_tx_fails(conn, [{":db/id": "ok", ":user/name": "fine"},
                           {":db/id": "u", ":user/age": 1, ":db/ensure": K("user/named")}],
                    "db.error/entity-spec-failed", ":user/name")


def test_predicate_that_raises_fails_the_transaction():
    conn = fresh_conn(*SCHEMA, {":db/ident": K("user/raising"),
                                ":db.entity/preds": [Symbol("txfns_helper/raising_entity_pred")]})
    assert_tx_fails(conn, [{":db/id": "u", ":user/name": "N", ":db/ensure": K("user/raising")}],
                    "db.error/entity-spec-failed", "txfns_helper/raising_entity_pred")
