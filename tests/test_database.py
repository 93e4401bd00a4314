"""Database values: the four indexes, components, views, immutability and reload.

Datoms are written raw (the transaction semantics have their own tests), so every
expected result here is exactly the datoms written.
"""

import pytest

from fastdatomic import Keyword
from fastdatomic.db.catalog import (
    DatabaseWriter, create_database, delete_database, list_databases, load_database,
)
from fastdatomic.errors import DatabaseNotFoundError, InvalidIndexError, NotAnEntityError
from fastdatomic.ids import t_to_tx, PART_USER, part

from conftest import RawTx


@pytest.fixture
def people(storage):
    create_database(storage, "people")
    r = RawTx(DatabaseWriter(storage, "people"))
    r.attr("person/name", "string", unique="identity")
    r.attr("person/age", "long", index=True)
    r.attr("person/friend", "ref", many=True)
    r.attr("person/tag", "keyword", many=True)
    return r


def _add_people(r, names_ages):
    ids = {}

    def build(rr):
        out = []
        for name, age in names_ages:
            e = rr.new_eid()
            ids[name] = e
            out += [(e, ":person/name", name, True), (e, ":person/age", age, True)]
        return out
    db = r.tx(build)
    return db, ids


def vals(ds):
    return [(d.e, d.v) for d in ds]


def test_catalog(storage):
    assert create_database(storage, "a") is True
    assert create_database(storage, "a") is False
    assert create_database(storage, "b") is True
    assert list_databases(storage) == ["a", "b"]
    assert delete_database(storage, "a") is True
    assert list_databases(storage) == ["b"]
    with pytest.raises(DatabaseNotFoundError, match="'a' does not exist"):
        load_database(storage, "a")


def test_bootstrap_schema(storage):
    create_database(storage, "x")
    db = load_database(storage, "x")
    assert db.basis_t == 0
    for ident in ("db/ident", "db/valueType", "db/cardinality", "db/unique", "db/index",
                  "db/isComponent", "db/noHistory", "db/doc", "db/txInstant", "db/tupleAttrs",
                  "db/tupleType", "db/tupleTypes", "db.attr/preds", "db/ensure"):
        assert db.attribute(Keyword(ident)).ident == Keyword(ident)
    for part_ident in ("db.part/db", "db.part/tx", "db.part/user"):
        assert db.entid(Keyword(part_ident)) is not None
    assert db.attribute(":db/ident").unique == "identity"


def test_indexes_and_components(people):
    db, ids = _add_people(people, [("Ann", 30), ("Bob", 25), ("Cid", 30)])
    ann, bob, cid = ids["Ann"], ids["Bob"], ids["Cid"]
    assert part(ann) == PART_USER
    db2 = people.tx(lambda r: [(ann, ":person/friend", bob, True), (ann, ":person/friend", cid, True),
                               (bob, ":person/tag", Keyword("x/y"), True)])
    # EAVT: e, then a, then v
    assert [(d.a, d.v) for d in db2.datoms("eavt", ann, ":person/name")] == \
        [(db2.entid(":person/name"), "Ann")]
    assert sorted(d.v for d in db2.datoms("eavt", ann, ":person/friend")) == sorted([bob, cid])
    assert [d.v for d in db2.datoms("eavt", bob, ":person/tag", Keyword("x/y"))] == [Keyword("x/y")]
    # AEVT: all entities of an attribute, in entity order
    assert vals(db2.datoms("aevt", ":person/age")) == [(ann, 30), (bob, 25), (cid, 30)]
    # AVET: value order, then entity
    assert vals(db2.datoms("avet", ":person/age")) == [(bob, 25), (ann, 30), (cid, 30)]
    assert [d.e for d in db2.datoms("avet", ":person/age", 30)] == [ann, cid]
    # VAET: reverse refs
    assert [d.e for d in db2.datoms("vaet", bob)] == [ann]
    assert [d.e for d in db2.datoms("vaet", cid, ":person/friend")] == [ann]
    # index_range on AVET, half-open
    assert vals(db2.index_range(":person/age", 25, 30)) == [(bob, 25)]
    assert vals(db2.index_range(":person/age", 26, None)) == [(ann, 30), (cid, 30)]
    # seek_datoms runs to the end of the index
    assert [d.e for d in db2.seek_datoms("aevt", ":person/age", bob)] [:2] == [bob, cid]
    # lookup refs resolve through a unique attribute
    assert db2.entid([":person/name", "Bob"]) == bob
    assert db2.entid([":person/name", "Nobody"]) is None
    assert db2.count_datoms("aevt", ":person/name") == 3


def test_index_errors(people):
    db, _ = _add_people(people, [("Ann", 30)])
    with pytest.raises(InvalidIndexError, match="not in the AVET index"):
        list(db.datoms("avet", ":person/friend"))
    with pytest.raises(InvalidIndexError, match="unknown index"):
        db.datoms("xyz")
    with pytest.raises(NotAnEntityError, match="person/nope"):
        db.datoms("aevt", ":person/nope")
    with pytest.raises(InvalidIndexError, match="not :db/unique"):
        db.entid([":person/age", 30])


def test_views_as_of_since_history_filter(people):
    db1, ids = _add_people(people, [("Ann", 30)])
    ann = ids["Ann"]
    t1 = db1.basis_t
    db2 = people.tx(lambda r: [(ann, ":person/age", 30, False), (ann, ":person/age", 31, True)])
    t2 = db2.basis_t
    db3 = people.tx(lambda r: [(ann, ":person/age", 31, False), (ann, ":person/age", 32, True)])

    assert [d.v for d in db3.datoms("eavt", ann, ":person/age")] == [32]
    assert [d.v for d in db3.as_of(t1).datoms("eavt", ann, ":person/age")] == [30]
    assert [d.v for d in db3.as_of(t_to_tx(t2)).datoms("eavt", ann, ":person/age")] == [31]
    # since: only current datoms asserted after t
    assert [d.v for d in db3.since(t1).datoms("eavt", ann, ":person/age")] == [32]
    assert [d.v for d in db3.since(db3.basis_t).datoms("eavt", ann, ":person/age")] == []
    # history: every assertion and retraction, in (v, tx) order
    hist = [(d.v, d.added, d.tx) for d in db3.history().datoms("eavt", ann, ":person/age")]
    assert hist == [(30, True, t_to_tx(t1)), (30, False, t_to_tx(t2)),
                    (31, True, t_to_tx(t2)), (31, False, t_to_tx(db3.basis_t)),
                    (32, True, t_to_tx(db3.basis_t))]
    # history as of t2
    assert len(list(db3.as_of(t2).history().datoms("eavt", ann, ":person/age"))) == 3
    # filter composes with other views
    f = db3.filter(lambda _db, d: d.v != 32)
    assert list(f.datoms("eavt", ann, ":person/age")) == []
    assert [d.v for d in f.history().datoms("eavt", ann, ":person/age") if d.added] == [30, 31]
    # as_of by instant
    when = next(iter(db2.datoms("eavt", t_to_tx(t2), ":db/txInstant"))).v
    assert db3.as_of(when).datoms("eavt", ann, ":person/age").take() [0].v == 31


def test_values_are_immutable_across_commits_and_indexing(people):
    db1, ids = _add_people(people, [(f"p{i}", i) for i in range(3000)])
    snapshot = [d.as_tuple() for d in db1.datoms("aevt", ":person/age")]
    w = people.w
    for k in range(3):
        people.tx(lambda r: [(ids[f"p{j}"], ":person/age", j, False) for j in range(k, 3000, 7)])
        w.index()
    # The old value reads the same after later writes and several indexing jobs.
    assert [d.as_tuple() for d in db1.datoms("aevt", ":person/age")] == snapshot
    assert w.db.memindex.datom_count == 0
    assert w.db.roots[0] is not None


def test_reload_from_storage_equals_writer_view(people):
    _add_people(people, [(f"p{i}", i) for i in range(500)])
    people.w.index()
    _add_people(people, [(f"q{i}", i) for i in range(100)])  # in the log only
    w = people.w
    fresh = load_database(w.storage, "people")
    assert fresh.basis_t == w.db.basis_t
    assert fresh.index_basis_t < fresh.basis_t
    for idx in ("eavt", "aevt", "avet", "vaet"):
        assert [d.as_tuple() for d in fresh.datoms(idx)] == [d.as_tuple() for d in w.db.datoms(idx)]
    assert fresh.entid([":person/name", "q7"]) == w.db.entid([":person/name", "q7"])


def test_new_attribute_visible_after_reload(people):
    people.attr("person/email", "string", unique="value")
    fresh = load_database(people.w.storage, "people")
    assert fresh.attribute(":person/email").unique == "value"
