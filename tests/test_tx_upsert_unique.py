"""Uniqueness: :db.unique/identity upserts, :db.unique/value rejects.

Datomic (identity and uniqueness): a tempid asserting a :db.unique/identity value that
an entity already holds resolves to that entity (upsert); tempids asserting the same
new identity value are one new entity; a tempid that would resolve to two different
entities is a conflict. :db.unique/value never upserts: asserting a value another
entity holds is a :db.error/unique-conflict, also between two new entities of one
transaction.
"""

import pytest

from txfns_helper import assert_tx_fails, attr, entity, fresh_conn, user_datoms, value

SCHEMA = [
    attr(":u/email", "string", unique="identity"),
    attr(":u/handle", "string", unique="identity"),
    attr(":u/ssn", "string", unique="value"),
    attr(":u/name", "string"),
    attr(":u/tags", "string", "many"),
    attr(":u/manager", "ref"),
    attr(":u/reports", "ref", "many"),
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def _user(conn, **vals):
    r = conn.transact([{":db/id": "u", **{f":u/{k}": v for k, v in vals.items()}}])
    return r.tempids["u"]


def test_tempid_with_existing_identity_value_upserts(conn):
    ann = _user(conn, email="ann@x.org", name="Ann")
    r = conn.transact([{":db/id": "t", ":u/email": "ann@x.org", ":u/tags": "vip"}])
    assert r.tempids["t"] == ann
    # the identity datom is already true: redundant, not re-asserted
    assert user_datoms(r) == {(ann, ":u/tags", "vip", True)}
    assert entity(conn.db(), ann) == {(":u/email", "ann@x.org"), (":u/name", "Ann"), (":u/tags", "vip")}
    assert len([d for d in conn.db().datoms("aevt", ":u/email")]) == 1


def test_map_without_db_id_upserts(conn):
    ann = _user(conn, email="ann@x.org", name="Ann")
    r = conn.transact([{":u/email": "ann@x.org", ":u/name": "Annie"}])
    assert user_datoms(r) == {(ann, ":u/name", "Annie", True), (ann, ":u/name", "Ann", False)}


def test_list_form_with_tempid_upserts(conn):
    ann = _user(conn, email="ann@x.org")
    r = conn.transact([[":db/add", "t", ":u/email", "ann@x.org"], [":db/add", "t", ":u/name", "Ann"]])
    assert r.tempids["t"] == ann
    assert user_datoms(r) == {(ann, ":u/name", "Ann", True)}


def test_upserted_tempid_used_as_ref_value(conn):
    ann = _user(conn, email="ann@x.org")
    r = conn.transact([{":db/id": "boss", ":u/email": "ann@x.org"},
                       {":db/id": "new", ":u/name": "Bob", ":u/manager": "boss"}])
    assert r.tempids["boss"] == ann
    bob = r.tempids["new"]
    assert bob != ann
    assert user_datoms(r) == {(bob, ":u/name", "Bob", True), (bob, ":u/manager", ann, True)}


def test_two_tempids_with_same_new_identity_value_are_one_entity(conn):
    r = conn.transact([{":db/id": "a", ":u/email": "new@x.org", ":u/name": "New"},
                       {":db/id": "b", ":u/email": "new@x.org", ":u/tags": "t"}])
    a, b = r.tempids["a"], r.tempids["b"]
    assert a == b
    assert user_datoms(r) == {(a, ":u/email", "new@x.org", True), (a, ":u/name", "New", True),
                              (a, ":u/tags", "t", True)}


def test_two_maps_without_db_id_same_new_identity_are_one_entity(conn):
    r = conn.transact([{":u/email": "new@x.org", ":u/name": "New"}, {":u/email": "new@x.org"}])
    es = {d[0] for d in user_datoms(r)}
    assert len(es) == 1


def test_tempid_upserting_to_two_entities_is_a_conflict(conn):
    _user(conn, email="ann@x.org")
    _user(conn, handle="bob")
    assert_tx_fails(conn, [{":db/id": "t", ":u/email": "ann@x.org", ":u/handle": "bob"}],
                    "db.error/unique-conflict")


def test_existing_entity_taking_anothers_identity_value_is_a_conflict(conn):
    _user(conn, email="ann@x.org")
    bob = _user(conn, email="bob@x.org")
    assert_tx_fails(conn, [[":db/add", bob, ":u/handle", "h"], [":db/add", bob, ":u/email", "ann@x.org"]],
                    "db.error/unique-conflict", ":u/email")


def test_unique_value_does_not_upsert(conn):
    _user(conn, ssn="123", name="Ann")
    err = assert_tx_fails(conn, [{":db/id": "t", ":u/ssn": "123", ":u/name": "Imposter"}],
                          "db.error/unique-conflict", ":u/ssn")
    assert "123" in str(err)


def test_unique_value_conflict_between_existing_entities(conn):
    _user(conn, ssn="123")
    bob = _user(conn, ssn="456")
    assert_tx_fails(conn, [[":db/add", bob, ":u/ssn", "123"]], "db.error/unique-conflict", ":u/ssn")


def test_unique_value_conflict_between_two_new_entities_in_one_tx(conn):
    assert_tx_fails(conn, [{":db/id": "a", ":u/ssn": "999"}, {":db/id": "b", ":u/ssn": "999"}],
                    "db.error/unique-conflict", ":u/ssn")


def test_unique_value_reassert_by_holder_is_redundant(conn):
    ann = _user(conn, ssn="123")
    r = conn.transact([[":db/add", ann, ":u/ssn", "123"]])
    assert user_datoms(r) == set()


def test_unique_value_free_after_retraction(conn):
    ann = _user(conn, ssn="123")
    conn.transact([[":db/retract", ann, ":u/ssn", "123"]])
    r = conn.transact([{":db/id": "b", ":u/ssn": "123"}])
    assert r.tempids["b"] != ann
    assert value(conn.db(), r.tempids["b"], ":u/ssn") == "123"


def test_lookup_ref_through_unique_value_attr(conn):
    ann = _user(conn, ssn="123")
    r = conn.transact([[":db/add", [":u/ssn", "123"], ":u/name", "Ann"]])
    assert user_datoms(r) == {(ann, ":u/name", "Ann", True)}


def test_upsert_replaces_card_one_values_of_existing_entity(conn):
    ann = _user(conn, email="ann@x.org", name="Ann")
    r = conn.transact([[":db/add", "t", ":u/email", "ann@x.org"], [":db/add", "t", ":u/name", "Anne"]])
    assert user_datoms(r) == {(ann, ":u/name", "Anne", True), (ann, ":u/name", "Ann", False)}


def test_nested_map_upserts_through_identity(conn):
    ann = _user(conn, email="ann@x.org")
    r = conn.transact([{":db/id": "b", ":u/name": "Bob", ":u/manager": {":u/email": "ann@x.org"}}])
    bob = r.tempids["b"]
    assert value(conn.db(), bob, ":u/manager") == ann
    assert user_datoms(r) == {(bob, ":u/name", "Bob", True), (bob, ":u/manager", ann, True)}


def test_upsert_through_second_identity_attribute(conn):
    bob = _user(conn, handle="bob")
    r = conn.transact([{":db/id": "t", ":u/handle": "bob", ":u/email": "bob@x.org"}])
    assert r.tempids["t"] == bob
    assert user_datoms(r) == {(bob, ":u/email", "bob@x.org", True)}


def test_two_new_identity_values_for_one_tempid_conflict(conn):
    # two card-one values for one entity in one transaction
    assert_tx_fails(conn, [[":db/add", "t", ":u/email", "x1@x.org"], [":db/add", "t", ":u/email", "x2@x.org"]],
                    "db.error/datoms-conflict", ":u/email")


def test_card_one_conflict_after_two_tempids_unify_by_upsert(conn):
    ann = _user(conn, email="ann@x.org")
    assert_tx_fails(conn, [{":db/id": "a", ":u/email": "ann@x.org", ":u/name": "X"},
                           {":db/id": "b", ":u/email": "ann@x.org", ":u/name": "Y"}],
                    "db.error/datoms-conflict", ":u/name")
    assert value(conn.db(), ann, ":u/name") is None


def test_two_tempids_upserting_to_same_existing_entity(conn):
    ann = _user(conn, email="ann@x.org", handle="ann")
    r = conn.transact([{":db/id": "a", ":u/email": "ann@x.org", ":u/name": "Ann"},
                       {":db/id": "b", ":u/handle": "ann", ":u/tags": "t"}])
    assert r.tempids["a"] == r.tempids["b"] == ann
    assert user_datoms(r) == {(ann, ":u/name", "Ann", True), (ann, ":u/tags", "t", True)}
