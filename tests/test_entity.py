"""The entity API (fastdatomic.db.entity): lazy, read-only, dict-like entity views."""


import pytest

from txfns_helper import fresh_conn
from fastdatomic import Keyword as K
from fastdatomic.db.entity import Entity, entity
from fastdatomic.errors import NotAnEntityError

SCHEMA = """[
 {:db/ident :person/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one
  :db/unique :db.unique/identity}
 {:db/ident :person/age :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
 {:db/ident :person/friends :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}
 {:db/ident :person/address :db/valueType :db.type/ref :db/cardinality :db.cardinality/one
  :db/isComponent true}
 {:db/ident :person/tags :db/valueType :db.type/keyword :db/cardinality :db.cardinality/many}
 {:db/ident :person/status :db/valueType :db.type/ref :db/cardinality :db.cardinality/one}
 {:db/ident :address/street :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :status/active}
]"""


@pytest.fixture(scope="module")
def world():
    conn = fresh_conn(SCHEMA)
    r = conn.transact("""[
      {:db/id "ann" :person/name "Ann" :person/age 31 :person/friends ["bob" "cat"]
       :person/tags [:red :blue] :person/status :status/active
       :person/address {:address/street "1 Main St"}}
      {:db/id "bob" :person/name "Bob" :person/friends ["cat"]}
      {:db/id "cat" :person/name "Cat"}
    ]""")
    ids = dict(r.tempids)
    db_before_age = conn.db()
    conn.transact(f"[[:db/add {ids['ann']} :person/age 32]]")
    return conn, conn.db(), db_before_age, ids


class CountingDb:
    """Wraps a database value, counting datoms() calls (to observe laziness)."""

    def __init__(self, db):
        self._db = db
        self.calls = 0

    def datoms(self, *args):
        self.calls += 1
        return self._db.datoms(*args)

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_scalar_card_one_and_keys_as_text_or_keyword(world):
    _, db, _, ids = world
    e = entity(db, ids["ann"])
    assert e[":person/name"] == "Ann"
    assert e[K("person/age")] == 32
    assert e.get(":person/age") == 32
    assert e[":db/id"] == ids["ann"] == e.id
    assert e.db is db


def test_card_many_is_frozenset(world):
    _, db, _, ids = world
    e = entity(db, ids["ann"])
    assert e[":person/tags"] == frozenset({K("red"), K("blue")})


def test_refs_are_entities_and_navigate(world):
    _, db, _, ids = world
    ann = entity(db, ids["ann"])
    friends = ann[":person/friends"]
    assert isinstance(friends, frozenset)
    assert {f[":person/name"] for f in friends} == {"Bob", "Cat"}
    bob = entity(db, ids["bob"])
    assert bob in friends
    assert {f[":person/name"] for f in bob[":person/friends"]} == {"Cat"}


def test_component_ref_is_entity(world):
    _, db, _, ids = world
    addr = entity(db, ids["ann"])[":person/address"]
    assert isinstance(addr, Entity)
    assert addr[":address/street"] == "1 Main St"


def test_ref_to_ident_entity_is_keyword(world):
    _, db, _, ids = world
    assert entity(db, ids["ann"])[":person/status"] is K("status/active")


def test_reverse_navigation(world):
    _, db, _, ids = world
    cat = entity(db, ids["cat"])
    assert {e[":person/name"] for e in cat[":person/_friends"]} == {"Ann", "Bob"}
    assert entity(db, ids["ann"])[":person/_friends"] is None
    addr = entity(db, ids["ann"])[":person/address"]
    owner = addr[":person/_address"]         # component: one owner, not a set
    assert isinstance(owner, Entity) and owner == entity(db, ids["ann"])


def test_missing_and_unknown_attributes(world):
    _, db, _, ids = world
    bob = entity(db, ids["bob"])
    assert bob[":person/age"] is None
    assert bob.get(":person/age", 0) == 0
    with pytest.raises(NotAnEntityError, match="person/nope"):
        bob[":person/nope"]
    assert bob.get(":person/nope", "d") == "d"
    assert ":person/name" in bob and ":person/age" not in bob and ":person/nope" not in bob


def test_keys_touch_and_repr(world):
    _, db, _, ids = world
    ann = entity(db, ids["ann"])
    assert repr(ann) == f"{{:db/id {ids['ann']}}}"
    assert ann.touch() is ann
    assert set(ann.keys()) == {K("person/name"), K("person/age"), K("person/friends"),
                               K("person/tags"), K("person/status"), K("person/address")}
    assert len(ann) == 6 and set(ann) == set(ann.keys())
    text = repr(ann)
    assert text.startswith(f"{{:db/id {ids['ann']}") and ':person/name "Ann"' in text
    assert ":person/tags #{:blue :red}" in text
    assert dict(ann.items())[K("person/age")] == 32


def test_laziness(world):
    _, db, _, ids = world
    cdb = CountingDb(db)
    ann = Entity(cdb, ids["ann"])
    assert cdb.calls == 0
    ann[":db/id"]
    assert cdb.calls == 0
    ann[":person/name"]
    ann[":person/name"]
    assert cdb.calls == 1                   # read once, then remembered
    friends = ann[":person/friends"]
    assert cdb.calls == 2                   # friends not read yet
    next(iter(friends))[":person/name"]
    assert cdb.calls == 3


def test_touch_loads_components_recursively(world):
    _, db, _, ids = world
    cdb = CountingDb(db)
    ann = Entity(cdb, ids["ann"]).touch()
    calls = cdb.calls
    assert calls == 2                       # ann, and her address component
    ann[":person/age"], ann[":person/address"][":address/street"], ann[":person/tags"]
    assert cdb.calls == calls
    assert "1 Main St" in repr(ann[":person/address"])
    # friends (not components) stay lazy
    f = next(iter(ann[":person/friends"]))
    assert repr(f) == f"{{:db/id {f.id}}}"


def test_equality_and_hash(world):
    conn, db, before, ids = world
    a1, a2 = entity(db, ids["ann"]), entity(conn.db(), ids["ann"])
    assert a1 == a2 and hash(a1) == hash(a2)
    assert a1 != entity(db, ids["bob"])
    assert a1 != entity(before, ids["ann"])
    assert a1 != ids["ann"]
    assert len({a1, a2, entity(db, ids["bob"])}) == 2


def test_as_of_entity_sees_old_values(world):
    _, db, before, ids = world
    assert entity(before, ids["ann"])[":person/age"] == 31
    assert entity(db.as_of(before.basis_t), ids["ann"])[":person/age"] == 31
    assert entity(db, ids["ann"])[":person/age"] == 32


def test_entity_identifiers(world):
    _, db, _, ids = world
    assert entity(db, [":person/name", "Bob"]).id == ids["bob"]
    assert entity(db, [":person/name", "Nobody"]) is None
    assert entity(db, ":person/name")[":db/ident"] is K("person/name")
    assert entity(db, ":no/such") is None
    ghost = entity(db, 17592186049999)      # any id gives an entity, as in Datomic
    assert ghost.id == 17592186049999 and ghost.keys() == []


def test_read_only(world):
    _, db, _, ids = world
    with pytest.raises(TypeError):
        entity(db, ids["ann"])[":person/name"] = "X"
