"""Pull: the wildcard combined with reverse references and options, reverse refs with :as /
:limit / list forms, components reached back through a reverse ref, pull in :find, and
entity reverse navigation through db.entity. Hand-written expectations (Datomic's pull
semantics); the basics are in test_pull.py and test_entity.py.
"""

import pytest

from fastdatomic import Keyword as K
from fastdatomic.db.entity import Entity
from fastdatomic.db.pull import pull, pull_many
from fastdatomic.query.engine import q
from test_pull import SCHEMA, ID, NAME, FRIENDS, ADDRESS, STREET
from txfns_helper import fresh_conn

AGE = K("person/age")
RFRIENDS = K("person/_friends")
BEST = K("person/best")
RADDRESS = K("person/_address")
GEO = K("address/geo")
LAT = K("geo/lat")


@pytest.fixture(scope="module")
def world():
    conn = fresh_conn(SCHEMA)
    ids = {}
    for n in ("Ann", "Bob", "Cat", "Dan"):      # ids increase Ann < Bob < Cat < Dan
        ids[n] = conn.transact([{ID: "p", NAME: n}]).tempids["p"]
    r = conn.transact(f"""[
      {{:db/id {ids['Ann']} :person/age 31 :person/friends [{ids['Bob']} {ids['Cat']}]
        :person/best {ids['Bob']}
        :person/address {{:db/id "addr" :address/street "1 Main St" :address/geo {{:db/id "geo" :geo/lat 42}}}}}}
      {{:db/id {ids['Bob']} :person/friends [{ids['Cat']}]}}
    ]""")
    ids["addr"], ids["geo"] = r.tempids["addr"], r.tempids["geo"]
    return conn, conn.db(), ids


def ann_star(ids, address):
    return {ID: ids["Ann"], NAME: "Ann", AGE: 31, FRIENDS: [{ID: ids["Bob"]}, {ID: ids["Cat"]}],
            BEST: {ID: ids["Bob"]}, ADDRESS: address}


def full_address(ids):
    return {ID: ids["addr"], STREET: "1 Main St", GEO: {ID: ids["geo"], LAT: 42}}


# --- wildcard ---------------------------------------------------------------------------

def test_wildcard_gives_no_reverse_attributes(world):
    _, db, ids = world
    assert pull(db, "[*]", ids["Cat"]) == {ID: ids["Cat"], NAME: "Cat"}
    assert pull(db, "[*]", ids["addr"]) == full_address(ids)


def test_wildcard_with_reverse_ref_and_nested_wildcard(world):
    _, db, ids = world
    got = pull(db, "[* {:person/_friends [*]}]", ids["Cat"])
    assert got == {
        ID: ids["Cat"], NAME: "Cat",
        RFRIENDS: [ann_star(ids, full_address(ids)),
                   {ID: ids["Bob"], NAME: "Bob", FRIENDS: [{ID: ids["Cat"]}]}],
    }


def test_wildcard_with_plain_reverse_component(world):
    _, db, ids = world
    assert pull(db, "[* :person/_address]", ids["addr"]) == {**full_address(ids), RADDRESS: {ID: ids["Ann"]}}


def test_db_id_and_wildcard(world):
    _, db, ids = world
    assert pull(db, "[:db/id *]", ids["Bob"]) == {ID: ids["Bob"], NAME: "Bob", FRIENDS: [{ID: ids["Cat"]}]}
    assert pull(db, "[* :db/id]", ids["Bob"]) == pull(db, "[:db/id *]", ids["Bob"])


def test_wildcard_enum_ref_is_an_id_map():
    conn = fresh_conn(SCHEMA)
    conn.transact("[{:db/ident :color/red}]")
    e = conn.transact('[{:db/id "x" :person/name "X" :person/best :color/red}]').tempids["x"]
    db = conn.db()
    assert pull(db, "[*]", e) == {ID: e, NAME: "X", BEST: {ID: db.entid(":color/red")}}
    assert pull(db, "[{:person/best [:db/ident]}]", e) == {BEST: {K("db/ident"): K("color/red")}}


# --- a component reached back through a reverse reference ----------------------------------

def test_owner_of_a_component_expands_the_component_again(world):
    # addr -> (reverse) Ann -> [*] -> :person/address is addr again: a new pattern was
    # applied at Ann, so the component expands in full (Datomic has no cut here).
    _, db, ids = world
    assert pull(db, "[{:person/_address [*]}]", ids["addr"]) == {RADDRESS: ann_star(ids, full_address(ids))}


def test_component_cycle_in_data_terminates():
    conn = fresh_conn(SCHEMA)
    r = conn.transact('[{:db/id "a" :person/name "A" :person/address "b"}'
                      ' {:db/id "b" :person/name "B" :person/address "a"}]')
    a, b = r.tempids["a"], r.tempids["b"]
    assert pull(conn.db(), "[*]", a) == {ID: a, NAME: "A", ADDRESS: {ID: b, NAME: "B", ADDRESS: {ID: a}}}


# --- reverse references: options and forms ----------------------------------------------

def test_reverse_with_as(world):
    _, db, ids = world
    assert pull(db, '[[:person/_friends :as "fans"]]', ids["Cat"]) == {"fans": [{ID: ids["Ann"]}, {ID: ids["Bob"]}]}
    assert pull(db, '[[:person/_address :as "owner"]]', ids["addr"]) == {"owner": {ID: ids["Ann"]}}
    assert pull(db, '[{[:person/_friends :as "fans"] [:person/name]}]', ids["Cat"]) == {
        "fans": [{NAME: "Ann"}, {NAME: "Bob"}]}


@pytest.mark.parametrize("pattern", ["[(:person/_friends :limit 1)]", "[[:person/_friends :limit 1]]",
                                     "[(limit :person/_friends 1)]"])
def test_reverse_with_limit(world, pattern):
    _, db, ids = world
    assert pull(db, pattern, ids["Cat"]) == {RFRIENDS: [{ID: ids["Ann"]}]}


def test_reverse_limit_with_subpattern_and_nil(world):
    _, db, ids = world
    assert pull(db, "[{(:person/_friends :limit 1) [:person/name]}]", ids["Cat"]) == {RFRIENDS: [{NAME: "Ann"}]}
    assert pull(db, "[[:person/_friends :limit nil]]", ids["Cat"]) == {RFRIENDS: [{ID: ids["Ann"]}, {ID: ids["Bob"]}]}


def test_reverse_component_with_subpattern_is_single_map(world):
    _, db, ids = world
    assert pull(db, "[{:person/_address [:person/name {:person/friends [:person/name]}]}]", ids["addr"]) == {
        RADDRESS: {NAME: "Ann", FRIENDS: [{NAME: "Bob"}, {NAME: "Cat"}]}}


def test_reverse_on_many_entities(world):
    _, db, ids = world
    got = pull_many(db, "[:person/name {:person/_friends [:person/name]}]", [ids["Ann"], ids["Cat"], ids["Dan"]])
    assert got == [{NAME: "Ann"}, {NAME: "Cat", RFRIENDS: [{NAME: "Ann"}, {NAME: "Bob"}]}, {NAME: "Dan"}]


# --- pull in :find ----------------------------------------------------------------------

def test_find_pull_wildcard(world):
    _, db, ids = world
    assert q('[:find (pull ?e [*]) . :where [?e :person/name "Bob"]]', db) == {
        ID: ids["Bob"], NAME: "Bob", FRIENDS: [{ID: ids["Cat"]}]}


def test_find_pull_wildcard_with_reverse(world):
    _, db, ids = world
    got = q('[:find [(pull ?e [* {:person/_friends [:person/name]}]) ...] :where [?e :person/name "Cat"]]', db)
    assert got == [{ID: ids["Cat"], NAME: "Cat", RFRIENDS: [{NAME: "Ann"}, {NAME: "Bob"}]}]


def test_find_pull_with_source_var(world):
    _, db, ids = world
    got = q('[:find (pull $d ?e [:person/name :person/_address]) . :in $d ?e]', db, ids["addr"])
    assert got == {RADDRESS: {ID: ids["Ann"]}}


# --- entity reverse navigation --------------------------------------------------------------

def test_entity_reverse_is_set_of_entities(world):
    _, db, ids = world
    cat = db.entity(ids["Cat"])
    fans = cat[":person/_friends"]
    assert type(fans) is frozenset and all(type(f) is Entity for f in fans)
    assert {f.id for f in fans} == {ids["Ann"], ids["Bob"]}
    assert cat[RFRIENDS] is fans                     # Keyword key, remembered
    assert cat.get(":person/_friends") == fans and ":person/_friends" in cat
    assert RFRIENDS not in cat.keys()                # keys() and touch() are forward only


def test_entity_reverse_round_trip(world):
    _, db, ids = world
    ann = db.entity(ids["Ann"])
    addr = ann[":person/address"]
    assert addr[":person/_address"] == ann           # component: the single owner
    bob = next(f for f in ann[":person/friends"] if f[":person/name"] == "Bob")
    assert bob[":person/_friends"] == frozenset({ann})
    assert db.entity(ids["Dan"])[":person/_friends"] is None
    assert db.entity(ids["Dan"]).get(":person/_friends", frozenset()) == frozenset()
