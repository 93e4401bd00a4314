"""Intra-transaction rules (ARCHITECTURE §5, Datomic's transaction model).

- every datom of a transaction carries the same transaction id (one t);
- transaction functions, :db/cas, :db/retractEntity and lookup refs work against the
  database BEFORE the transaction (forms do not see each other's effects);
- two values for one cardinality-one attribute of one entity, or a datom both asserted
  and retracted, conflict (:db.error/datoms-conflict);
- entity specs see the database AFTER the transaction;
- the order of forms does not matter.
"""

import pytest

import fastdatomic as fd
from fastdatomic import Keyword as K

from txfns_helper import assert_tx_fails, attr, fresh_conn, user_datoms, value

SCHEMA = [
    attr(":i/email", "string", unique="identity"),
    attr(":i/name", "string"),
    attr(":i/n", "long"),
    attr(":i/tags", "string", "many"),
    attr(":i/nick", "string"),
    {":db/ident": K("i/spec"), ":db.entity/attrs": [K("i/name"), K("i/n")]},
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def test_all_datoms_share_one_transaction_id(conn):
    before = conn.db().basis_t
    r = conn.transact([{":i/email": "a@x", ":i/name": "A", ":i/tags": ["x", "y"]},
                       {":i/email": "b@x", ":i/n": 2}, [":db/add", "datomic.tx", ":db/doc", "two people"]])
    tx = fd.t_to_tx(r.t)
    assert r.t > before
    assert len(r.tx_data) >= 8
    assert {d.tx for d in r.tx_data} == {tx}
    assert fd.tx_to_t(tx) == r.t
    assert r.db_after.basis_t == r.t == conn.db().basis_t
    assert r.db_before.basis_t == before
    stored = [d for d in conn.db().history().datoms("eavt") if d.tx == tx]
    assert sorted(map(tuple, stored)) == sorted(map(tuple, r.tx_data))


def test_report_db_before_and_after(conn):
    e = conn.transact([{":db/id": "x", ":i/name": "A"}]).tempids["x"]
    r = conn.transact([[":db/add", e, ":i/name", "B"]])
    assert value(r.db_before, e, ":i/name") == "A"
    assert value(r.db_after, e, ":i/name") == "B"


def test_tx_function_sees_db_before(conn):
    e = conn.transact([{":db/id": "x", ":i/n": 1}]).tempids["x"]
    seen = []

    def f(db, ent):
        seen.append(value(db, ent, ":i/n"))
        return []
    fd.register_tx_fn(K("intra/peek-n"), f)
    conn.transact([[":db/add", e, ":i/n", 2], [K("intra/peek-n"), e]])
    conn.transact([[K("intra/peek-n"), e], [":db/add", e, ":i/n", 3]])
    assert seen == [1, 2]


def test_lookup_ref_sees_db_before(conn):
    # the entity with this email is created in the same transaction: the lookup ref
    # does not see it
    assert_tx_fails(conn, [{":db/id": "n", ":i/email": "new@x"}, [":db/add", [":i/email", "new@x"], ":i/n", 1]],
                    "db.error/not-an-entity", "new@x")


def test_lookup_ref_resolves_to_entity_even_if_tx_changes_its_key(conn):
    e = conn.transact([{":db/id": "x", ":i/email": "old@x"}]).tempids["x"]
    r = conn.transact([[":db/add", e, ":i/email", "new@x"], [":db/add", [":i/email", "old@x"], ":i/n", 5]])
    assert user_datoms(r) == {(e, ":i/email", "old@x", False), (e, ":i/email", "new@x", True),
                              (e, ":i/n", 5, True)}


def test_two_values_for_card_one_conflict(conn):
    e = conn.transact([{":db/id": "x", ":i/name": "A"}]).tempids["x"]
    assert_tx_fails(conn, [[":db/add", e, ":i/name", "B"], [":db/add", e, ":i/name", "C"]],
                    "db.error/datoms-conflict", ":i/name")


def test_two_values_for_card_one_conflict_on_new_entity(conn):
    assert_tx_fails(conn, [{":db/id": "t", ":i/name": "B"}, [":db/add", "t", ":i/name", "C"]],
                    "db.error/datoms-conflict", ":i/name")


def test_two_values_for_card_many_do_not_conflict(conn):
    r = conn.transact([[":db/add", "t", ":i/tags", "a"], [":db/add", "t", ":i/tags", "b"]])
    assert len(user_datoms(r)) == 2


def test_datom_added_and_retracted_conflicts(conn):
    e = conn.transact([{":db/id": "x", ":i/tags": ["a"]}]).tempids["x"]
    assert_tx_fails(conn, [[":db/add", e, ":i/tags", "a"], [":db/retract", e, ":i/tags", "a"]],
                    "db.error/datoms-conflict", ":i/tags")
    assert_tx_fails(conn, [[":db/retract", e, ":i/tags", "b"], [":db/add", e, ":i/tags", "b"]],
                    "db.error/datoms-conflict", ":i/tags")


def test_retract_entity_expands_against_db_before(conn):
    e = conn.transact([{":db/id": "x", ":i/name": "A", ":i/n": 1}]).tempids["x"]
    r = conn.transact([[":db/retractEntity", e], [":db/add", e, ":i/nick", "ghost"]])
    assert user_datoms(r) == {(e, ":i/name", "A", False), (e, ":i/n", 1, False), (e, ":i/nick", "ghost", True)}


def test_entity_spec_sees_db_after(conn):
    e = conn.transact([{":db/id": "x", ":i/name": "A"}]).tempids["x"]
    r = conn.transact([{":db/id": e, ":db/ensure": K("i/spec")}, [":db/add", e, ":i/n", 1]])
    assert user_datoms(r) == {(e, ":i/n", 1, True)}
    assert_tx_fails(conn, [{":db/id": e, ":db/ensure": K("i/spec")}, [":db/retract", e, ":i/n", 1]],
                    "db.error/entity-spec-failed")


def test_order_of_forms_does_not_matter(conn):
    e = conn.transact([{":db/id": "x", ":i/name": "A", ":i/tags": ["a"]}]).tempids["x"]
    forms = [[":db/add", e, ":i/name", "B"], [":db/retract", e, ":i/tags", "a"],
             {":db/id": "n", ":i/email": "n@x"}, [":db/add", "n", ":i/n", 3]]
    db = conn.db()
    r1 = db.with_(forms)
    r2 = db.with_(list(reversed(forms)))
    assert user_datoms(r1) == user_datoms(r2)
    assert r1.tempids["n"] == r2.tempids["n"]


def test_with_chains_and_leaves_connection_alone(conn):
    db = conn.db()
    r1 = db.with_([{":db/id": "a", ":i/email": "a@x", ":i/n": 1}])
    a = r1.tempids["a"]
    r2 = r1.db_after.with_([[":db/add", a, ":i/n", 2]])
    assert user_datoms(r2) == {(a, ":i/n", 1, False), (a, ":i/n", 2, True)}
    assert r2.t > r1.t > db.basis_t
    assert conn.db().basis_t == db.basis_t
    assert conn.db().entid([":i/email", "a@x"]) is None
    r3 = conn.transact([{":db/id": "a", ":i/email": "a@x", ":i/n": 5}])
    assert value(conn.db(), r3.tempids["a"], ":i/n") == 5


def test_retract_all_and_add_current_value_conflict(conn):
    e = conn.transact([{":db/id": "x", ":i/tags": ["a", "b"]}]).tempids["x"]
    assert_tx_fails(conn, [[":db/retract", e, ":i/tags"], [":db/add", e, ":i/tags", "a"]],
                    "db.error/datoms-conflict", ":i/tags")


def test_retract_all_and_add_new_value(conn):
    e = conn.transact([{":db/id": "x", ":i/tags": ["a", "b"]}]).tempids["x"]
    r = conn.transact([[":db/retract", e, ":i/tags"], [":db/add", e, ":i/tags", "c"]])
    assert user_datoms(r) == {(e, ":i/tags", "a", False), (e, ":i/tags", "b", False), (e, ":i/tags", "c", True)}
