"""The Pull API (fastdatomic.db.pull): Datomic's pattern semantics, hand-written expectations.

Result maps have Keyword keys; card-many values are lists in index order; refs without a
sub-pattern are {:db/id e}; components expand with [*]; nothing matching -> None.
"""


import pytest

from txfns_helper import fresh_conn
from fastdatomic import Keyword as K
from fastdatomic.db.pull import pull, pull_many, parse_pattern
from fastdatomic.errors import InvalidValueError, NotAnEntityError

ID = K("db/id")
NAME = K("person/name")
FRIENDS = K("person/friends")
ADDRESS = K("person/address")
TAGS = K("person/tags")
STREET = K("address/street")
CITY = K("address/city")

SCHEMA = """[
 {:db/ident :person/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one
  :db/unique :db.unique/identity}
 {:db/ident :person/age :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
 {:db/ident :person/friends :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}
 {:db/ident :person/best :db/valueType :db.type/ref :db/cardinality :db.cardinality/one}
 {:db/ident :person/address :db/valueType :db.type/ref :db/cardinality :db.cardinality/one
  :db/isComponent true}
 {:db/ident :person/tags :db/valueType :db.type/keyword :db/cardinality :db.cardinality/many}
 {:db/ident :person/nums :db/valueType :db.type/long :db/cardinality :db.cardinality/many}
 {:db/ident :address/street :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :address/city :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :address/geo :db/valueType :db.type/ref :db/cardinality :db.cardinality/one
  :db/isComponent true}
 {:db/ident :geo/lat :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
]"""


def _conn():
    return fresh_conn(SCHEMA)


@pytest.fixture(scope="module")
def world():
    conn = _conn()
    ids = {}
    # One transaction per person, so ids increase Ann < Bob < Cat < Dan.
    for n in ("Ann", "Bob", "Cat", "Dan"):
        ids[n] = conn.transact([{K("db/id"): "p", NAME: n}]).tempids["p"]
    conn.transact(f"""[
      {{:db/id {ids['Ann']} :person/age 31 :person/friends [{ids['Bob']} {ids['Cat']}]
        :person/best {ids['Bob']} :person/tags [:red :blue]
        :person/address {{:db/id "addr" :address/street "1 Main St" :address/city "Springfield"
                          :address/geo {{:db/id "geo" :geo/lat 42}}}}}}
      {{:db/id {ids['Bob']} :person/friends [{ids['Cat']}]}}
      {{:db/id {ids['Cat']} :person/friends [{ids['Ann']}]}}
    ]""")
    db = conn.db()
    ids["addr"] = next(iter(db.datoms("eavt", ids["Ann"], ":person/address"))).v
    ids["geo"] = next(iter(db.datoms("eavt", ids["addr"], ":address/geo"))).v
    assert ids["Ann"] < ids["Bob"] < ids["Cat"] < ids["Dan"]
    return conn, db, ids


# --- plain attributes ---------------------------------------------------------------------

def test_plain_attributes(world):
    _, db, ids = world
    assert pull(db, "[:person/name :person/age]", ids["Ann"]) == {NAME: "Ann", K("person/age"): 31}


def test_python_data_pattern_with_keywords_and_strings(world):
    _, db, ids = world
    assert pull(db, [NAME, ":person/age"], ids["Ann"]) == {NAME: "Ann", K("person/age"): 31}


def test_missing_attribute_is_omitted(world):
    _, db, ids = world
    assert pull(db, "[:person/name :person/age]", ids["Bob"]) == {NAME: "Bob"}


def test_nothing_matching_is_none(world):
    _, db, ids = world
    assert pull(db, "[:person/age]", ids["Bob"]) is None


def test_db_id_in_pattern(world):
    _, db, ids = world
    assert pull(db, "[:db/id :person/name]", ids["Bob"]) == {ID: ids["Bob"], NAME: "Bob"}


def test_card_many_scalar_values_in_index_order(world):
    _, db, ids = world
    # keywords sort :blue < :red
    assert pull(db, "[:person/tags]", ids["Ann"]) == {TAGS: [K("blue"), K("red")]}


def test_refs_without_subpattern_are_id_maps(world):
    _, db, ids = world
    assert pull(db, "[:person/friends :person/best]", ids["Ann"]) == {
        FRIENDS: [{ID: ids["Bob"]}, {ID: ids["Cat"]}],
        K("person/best"): {ID: ids["Bob"]},
    }


def test_component_without_subpattern_is_expanded(world):
    _, db, ids = world
    assert pull(db, "[:person/address]", ids["Ann"]) == {
        ADDRESS: {ID: ids["addr"], STREET: "1 Main St", CITY: "Springfield",
                  K("address/geo"): {ID: ids["geo"], K("geo/lat"): 42}}}


# --- nesting ------------------------------------------------------------------------------

def test_nested_map_spec(world):
    _, db, ids = world
    assert pull(db, "[:person/name {:person/friends [:person/name]}]", ids["Ann"]) == {
        NAME: "Ann", FRIENDS: [{NAME: "Bob"}, {NAME: "Cat"}]}


def test_nested_card_one_and_component_subpattern(world):
    _, db, ids = world
    got = pull(db, "[{:person/best [:person/name] :person/address [:address/city]}]", ids["Ann"])
    assert got == {K("person/best"): {NAME: "Bob"}, ADDRESS: {CITY: "Springfield"}}


def test_nested_entity_matching_nothing_is_dropped(world):
    _, db, ids = world
    assert pull(db, "[:person/name {:person/friends [:person/age]}]", ids["Bob"]) == {NAME: "Bob"}


def test_subpattern_on_non_ref_is_an_error(world):
    _, db, ids = world
    with pytest.raises(InvalidValueError, match="person/name"):
        pull(db, "[{:person/name [:db/id]}]", ids["Ann"])


# --- wildcard -----------------------------------------------------------------------------

def test_wildcard(world):
    _, db, ids = world
    assert pull(db, "[*]", ids["Ann"]) == {
        ID: ids["Ann"], NAME: "Ann", K("person/age"): 31,
        FRIENDS: [{ID: ids["Bob"]}, {ID: ids["Cat"]}],
        K("person/best"): {ID: ids["Bob"]},
        TAGS: [K("blue"), K("red")],
        ADDRESS: {ID: ids["addr"], STREET: "1 Main St", CITY: "Springfield",
                  K("address/geo"): {ID: ids["geo"], K("geo/lat"): 42}},
    }


def test_wildcard_with_explicit_override(world):
    _, db, ids = world
    got = pull(db, "[* {:person/friends [:person/name]}]", ids["Bob"])
    assert got == {ID: ids["Bob"], NAME: "Bob", FRIENDS: [{NAME: "Cat"}]}


def test_wildcard_in_nested_pattern(world):
    _, db, ids = world
    got = pull(db, "[{:person/best [*]}]", ids["Ann"])
    assert got == {K("person/best"): {ID: ids["Bob"], NAME: "Bob", FRIENDS: [{ID: ids["Cat"]}]}}


# --- reverse ------------------------------------------------------------------------------

def test_reverse_ref_plain(world):
    _, db, ids = world
    # Cat is a friend of Ann and of Bob
    assert pull(db, "[:person/_friends]", ids["Cat"]) == {
        K("person/_friends"): [{ID: ids["Ann"]}, {ID: ids["Bob"]}]}


def test_reverse_ref_with_subpattern(world):
    _, db, ids = world
    assert pull(db, "[:person/name {:person/_friends [:person/name]}]", ids["Cat"]) == {
        NAME: "Cat", K("person/_friends"): [{NAME: "Ann"}, {NAME: "Bob"}]}


def test_reverse_component_is_single(world):
    _, db, ids = world
    assert pull(db, "[:address/city :person/_address]", ids["addr"]) == {
        CITY: "Springfield", K("person/_address"): {ID: ids["Ann"]}}
    assert pull(db, "[{:person/_address [:person/name]}]", ids["addr"]) == {
        K("person/_address"): {NAME: "Ann"}}


def test_reverse_missing_is_omitted(world):
    _, db, ids = world
    assert pull(db, "[:person/name :person/_friends]", ids["Dan"]) == {NAME: "Dan"}


# --- recursion ----------------------------------------------------------------------------

def test_unbounded_recursion_with_cycle(world):
    _, db, ids = world
    # Ann -> Bob -> Cat -> Ann (on the path: id only); Ann -> Cat -> Ann (id only)
    got = pull(db, "[:person/name {:person/friends ...}]", ids["Ann"])
    assert got == {
        NAME: "Ann",
        FRIENDS: [
            {NAME: "Bob", FRIENDS: [{NAME: "Cat", FRIENDS: [{ID: ids["Ann"]}]}]},
            {NAME: "Cat", FRIENDS: [{ID: ids["Ann"]}]},
        ],
    }


def test_depth_limited_recursion(world):
    _, db, ids = world
    got = pull(db, "[:person/name {:person/friends 1}]", ids["Ann"])
    assert got == {NAME: "Ann", FRIENDS: [{NAME: "Bob"}, {NAME: "Cat"}]}
    got = pull(db, "[:person/name {:person/friends 2}]", ids["Ann"])
    assert got == {NAME: "Ann", FRIENDS: [
        {NAME: "Bob", FRIENDS: [{NAME: "Cat"}]},
        {NAME: "Cat", FRIENDS: [{ID: ids["Ann"]}]},
    ]}


def test_recursion_zero_depth_drops_attribute(world):
    _, db, ids = world
    assert pull(db, "[:person/name {:person/friends 0}]", ids["Ann"]) == {NAME: "Ann"}


def test_reverse_recursion(world):
    _, db, ids = world
    got = pull(db, "[:person/name {:person/_friends 1}]", ids["Ann"])
    assert got == {NAME: "Ann", K("person/_friends"): [{NAME: "Cat"}]}


# --- options ------------------------------------------------------------------------------

def test_as_option(world):
    _, db, ids = world
    assert pull(db, '[[:person/name :as "name"] [:db/id :as :id]]', ids["Bob"]) == {
        "name": "Bob", K("id"): ids["Bob"]}


def test_as_in_map_spec_key(world):
    _, db, ids = world
    got = pull(db, '[{[:person/friends :as "pals"] [:person/name]}]', ids["Bob"])
    assert got == {"pals": [{NAME: "Cat"}]}


def test_default_option(world):
    _, db, ids = world
    assert pull(db, "[:person/name [:person/age :default 0]]", ids["Bob"]) == {
        NAME: "Bob", K("person/age"): 0}
    assert pull(db, "[[:person/age :default 0]]", ids["Ann"]) == {K("person/age"): 31}
    assert pull(db, '[[:person/_friends :default "nobody"]]', ids["Dan"]) == {
        K("person/_friends"): "nobody"}


def test_legacy_list_forms(world):
    _, db, ids = world
    assert pull(db, "[(limit :person/friends 1) (default :person/age 7)]", ids["Bob"]) == {
        FRIENDS: [{ID: ids["Cat"]}], K("person/age"): 7}
    assert pull(db, '[("limit" :person/friends 1)]', ids["Ann"]) == {FRIENDS: [{ID: ids["Bob"]}]}


def test_combined_options(world):
    _, db, ids = world
    got = pull(db, '[[:person/friends :limit 1 :as "f"] [:person/age :as "age" :default -1]]',
               ids["Ann"])
    assert got == {"f": [{ID: ids["Bob"]}], "age": 31}


@pytest.fixture(scope="module")
def many_values():
    conn = _conn()
    e = conn.transact([{K("db/id"): "x", NAME: "Numbers", K("person/nums"): list(range(1001))}]
                      ).tempids["x"]
    return conn.db(), e


def test_default_limit_is_1000(many_values):
    db, e = many_values
    got = pull(db, "[:person/nums]", e)[K("person/nums")]
    assert got == list(range(1000))
    assert len(pull(db, "[*]", e)[K("person/nums")]) == 1000


def test_explicit_limits(many_values):
    db, e = many_values
    assert pull(db, "[[:person/nums :limit 3]]", e) == {K("person/nums"): [0, 1, 2]}
    assert pull(db, "[[:person/nums :limit nil]]", e) == {K("person/nums"): list(range(1001))}
    assert pull(db, "[(limit :person/nums nil)]", e) == {K("person/nums"): list(range(1001))}


# --- entity identifiers and pull_many -------------------------------------------------------

def test_lookup_ref_eid(world):
    _, db, ids = world
    assert pull(db, "[:db/id]", [":person/name", "Cat"]) == {ID: ids["Cat"]}
    assert pull(db, "[:db/id]", [K("person/name"), "Nobody"]) is None


def test_ident_eid(world):
    _, db, _ = world
    assert pull(db, "[:db/ident :db/cardinality]", ":person/friends") == {
        K("db/ident"): K("person/friends"), K("db/cardinality"): {ID: db.entid(":db.cardinality/many")}}


def test_missing_entity(world):
    _, db, _ = world
    missing = 17592186049999
    assert pull(db, "[:person/name]", missing) is None
    assert pull(db, "[*]", missing) == {ID: missing}
    assert pull(db, "[:db/id :person/name]", missing) == {ID: missing}


def test_pull_many_keeps_order(world):
    _, db, ids = world
    got = pull_many(db, "[:person/name]", [ids["Cat"], [":person/name", "Ann"], 17592186049999, ids["Bob"]])
    assert got == [{NAME: "Cat"}, {NAME: "Ann"}, None, {NAME: "Bob"}]


def test_as_of_db(world):
    _, db, ids = world
    before = db.as_of(db.basis_t - 1)       # before the friends/address transaction
    assert pull(before, "[:person/friends]", ids["Ann"]) is None
    assert pull(before, "[*]", ids["Ann"]) == {ID: ids["Ann"], NAME: "Ann"}


# --- errors and caching ---------------------------------------------------------------------

def test_unknown_attribute_is_named(world):
    _, db, ids = world
    with pytest.raises(NotAnEntityError, match="person/nope"):
        pull(db, "[:person/name :person/nope]", ids["Ann"])
    with pytest.raises(NotAnEntityError, match="person/_nope"):
        pull(db, "[:person/_nope]", ids["Ann"])


@pytest.mark.parametrize("pattern,fragment", [
    (":person/name", "vector"),
    ("[42]", "42"),
    ('[[:person/name :as]]', "pairs"),
    ("[[:person/friends :limit -1]]", "limit"),
    ("[[:person/name :frob 1]]", ":frob"),
    ("[{:person/friends :x}]", "map spec"),
    ("[(limit :person/friends)]", "limit"),
    ('["person/name"]', "attribute name"),
    ("[:person/_name]", "reference"),
])
def test_malformed_patterns(world, pattern, fragment):
    _, db, ids = world
    with pytest.raises(InvalidValueError, match=fragment):
        pull(db, pattern, ids["Ann"])


def test_text_patterns_are_cached_per_schema(world):
    _, db, _ = world
    text = "[:person/name {:person/friends [:person/name]}]"
    assert parse_pattern(db, text) is parse_pattern(db, text)
    assert parse_pattern(db, [NAME]) is not parse_pattern(db, [NAME])


def test_new_schema_recompiles_cached_pattern():
    conn = _conn()
    db1 = conn.db()
    with pytest.raises(NotAnEntityError):
        pull(db1, "[:thing/label]", 17592186049999)
    conn.transact("[{:db/ident :thing/label :db/valueType :db.type/string "
                  ":db/cardinality :db.cardinality/one}]")
    e = conn.transact('[{:db/id "t" :thing/label "hi"}]').tempids["t"]
    assert pull(conn.db(), "[:thing/label]", e) == {K("thing/label"): "hi"}


def test_pull_many_thousand_entities():
    # Its speed is measured in bench/compare (b-pull1000), not asserted here.
    conn = _conn()
    conn.transact([{NAME: f"p{i}", K("person/age"): i, K("person/tags"): [K("a"), K("b")]}
                   for i in range(1000)])
    db = conn.db()
    es = [d.e for d in db.datoms("aevt", ":person/name")]
    got = pull_many(db, "[:person/name :person/age :person/tags]", es)
    assert len(got) == 1000 and all(g[TAGS] == [K("a"), K("b")] for g in got)


@pytest.mark.parametrize("pattern", [
    "[:person/name :person/age]",
    "[:db/id :person/name (:person/nums :limit 2) [:person/age :default 0] [:person/tags :as \"t\"]]",
    "[:person/name {:person/friends [:person/name]}]",
    "[*]",
    "[:person/nums]",
])
def test_pull_many_reads_like_pull_one_by_one(pattern):
    # pull_many reads every entity from one repositioned scan (and builds plain-attribute
    # maps directly); it must give exactly what pull gives, on every kind of view.
    conn = fresh_conn(SCHEMA)
    r = conn.transact([{":db/id": f"p{i}", ":person/name": f"n{i}", ":person/age": i,
                        ":person/nums": list(range(i % 4)), ":person/tags": [K("a"), K(f"t{i % 3}")],
                        ":person/friends": [f"p{(i + 1) % 30}"]} for i in range(30)])
    ids = [r.tempids[f"p{i}"] for i in range(30)]
    conn.transact([[":db/retract", ids[3], ":person/age", 3], [":db/add", ids[4], ":person/age", 40]])
    db = conn.db()
    views = [db, db.as_of(db.basis_t - 1), db.filter(lambda _db, d: d.e != ids[5])]
    order = ids[::-1] + [ids[7], 123456789, ids[0]]
    for view in views:
        assert pull_many(view, pattern, order) == [pull(view, pattern, e) for e in order]
