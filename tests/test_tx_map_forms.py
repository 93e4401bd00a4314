"""Map forms: {:db/id e, attr value ...}.

Datomic: a map is shorthand for one :db/add per key; without :db/id it is a new
entity; a collection value of a cardinality-many attribute means one datom per
element; a nested map under a component attribute is a new component entity; a nested
map under a non-component ref must carry a unique attribute (then it upserts or is
new), otherwise the transaction fails; :ns/_attr keys are reverse references.
"""

import pytest

import fastdatomic as fd
from fastdatomic import Keyword as K
from fastdatomic.ids import part

from txfns_helper import (
    assert_tx_fails, attr, entity, fresh_conn, user_datoms, value, values,
)

SCHEMA = [
    attr(":p/name", "string"),
    attr(":p/email", "string", unique="identity"),
    attr(":p/age", "long"),
    attr(":p/tags", "string", "many"),
    attr(":p/friends", "ref", "many"),
    attr(":p/best", "ref"),
    attr(":p/address", "ref", component=True),
    attr(":p/phones", "ref", "many", component=True),
    attr(":addr/street", "string"),
    attr(":phone/number", "string"),
    attr(":phone/kind", "keyword"),
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def test_map_without_db_id_is_a_new_entity(conn):
    before_ids = {d.e for d in conn.db().datoms("eavt")}
    r = conn.transact([{":p/name": "Ann", ":p/age": 41}])
    es = {d[0] for d in user_datoms(r)}
    assert len(es) == 1
    (e,) = es
    assert part(e) == fd.PART_USER and e not in before_ids
    assert user_datoms(r) == {(e, ":p/name", "Ann", True), (e, ":p/age", 41, True)}


def test_two_maps_without_db_id_are_two_entities(conn):
    r = conn.transact([{":p/name": "Ann"}, {":p/name": "Ann"}])
    es = {d[0] for d in user_datoms(r)}
    assert len(es) == 2


def test_map_keys_as_keyword_objects(conn):
    r = conn.transact([{K("db/id"): "a", K("p/name"): "Ann"}])
    assert user_datoms(r) == {(r.tempids["a"], ":p/name", "Ann", True)}


def test_map_with_existing_entity_id(conn):
    e = conn.transact([{":db/id": "a", ":p/name": "Ann"}]).tempids["a"]
    r = conn.transact([{":db/id": e, ":p/age": 41, ":p/tags": "x"}])
    assert user_datoms(r) == {(e, ":p/age", 41, True), (e, ":p/tags", "x", True)}
    assert entity(conn.db(), e) == {(":p/name", "Ann"), (":p/age", 41), (":p/tags", "x")}


def test_map_with_ident_db_id(conn):
    r = conn.transact([{":db/id": ":p/name", ":db/doc": "the name"}])
    assert user_datoms(r) == {(conn.db().entid(":p/name"), ":db/doc", "the name", True)}


def test_map_with_lookup_ref_db_id(conn):
    e = conn.transact([{":db/id": "a", ":p/email": "ann@x.org"}]).tempids["a"]
    r = conn.transact([{":db/id": [":p/email", "ann@x.org"], ":p/age": 7}])
    assert user_datoms(r) == {(e, ":p/age", 7, True)}


def test_card_many_value_as_list(conn):
    r = conn.transact([{":db/id": "a", ":p/tags": ["x", "y", "z"]}])
    e = r.tempids["a"]
    assert user_datoms(r) == {(e, ":p/tags", t, True) for t in "xyz"}


def test_card_many_value_as_set(conn):
    r = conn.transact([{":db/id": "a", ":p/tags": {"x", "y"}}])
    e = r.tempids["a"]
    assert user_datoms(r) == {(e, ":p/tags", t, True) for t in "xy"}


def test_card_many_value_as_single_scalar(conn):
    r = conn.transact([{":db/id": "a", ":p/tags": "x"}])
    assert user_datoms(r) == {(r.tempids["a"], ":p/tags", "x", True)}


def test_card_many_refs_as_list_of_tempids_and_ids(conn):
    bob = conn.transact([{":db/id": "b", ":p/name": "Bob"}]).tempids["b"]
    r = conn.transact([{":db/id": "c", ":p/name": "Cid"},
                       {":db/id": "a", ":p/name": "Ann", ":p/friends": [bob, "c"]}])
    a, c = r.tempids["a"], r.tempids["c"]
    assert values(conn.db(), a, ":p/friends") == {bob, c}


def test_string_value_of_ref_attribute_is_a_tempid(conn):
    r = conn.transact([{":db/id": "a", ":p/name": "A"},
                       {":db/id": "b", ":p/name": "B", ":p/best": "a"}])
    assert value(conn.db(), r.tempids["b"], ":p/best") == r.tempids["a"]


def test_nested_map_under_component_card_one(conn):
    r = conn.transact([{":db/id": "a", ":p/name": "Ann", ":p/address": {":addr/street": "Main St"}}])
    a = r.tempids["a"]
    addr = value(conn.db(), a, ":p/address")
    assert addr is not None and addr != a and part(addr) == fd.PART_USER
    assert user_datoms(r) == {(a, ":p/name", "Ann", True), (a, ":p/address", addr, True),
                              (addr, ":addr/street", "Main St", True)}


def test_nested_maps_under_component_card_many(conn):
    r = conn.transact([{":db/id": "a", ":p/phones": [
        {":phone/number": "111", ":phone/kind": K("phone/home")},
        {":phone/number": "222", ":phone/kind": K("phone/work")}]}])
    a = r.tempids["a"]
    phones = values(conn.db(), a, ":p/phones")
    assert len(phones) == 2
    got = {(value(conn.db(), p, ":phone/number"), value(conn.db(), p, ":phone/kind")) for p in phones}
    assert got == {("111", K("phone/home")), ("222", K("phone/work"))}
    assert len(user_datoms(r)) == 6


def test_nested_map_under_non_component_with_unique_attr_upserts(conn):
    bob = conn.transact([{":db/id": "b", ":p/email": "bob@x.org", ":p/name": "Bob"}]).tempids["b"]
    r = conn.transact([{":db/id": "a", ":p/name": "Ann",
                        ":p/best": {":p/email": "bob@x.org", ":p/age": 30}}])
    a = r.tempids["a"]
    assert value(conn.db(), a, ":p/best") == bob
    assert user_datoms(r) == {(a, ":p/name", "Ann", True), (a, ":p/best", bob, True),
                              (bob, ":p/age", 30, True)}


def test_nested_map_under_non_component_with_new_unique_value_is_new_entity(conn):
    r = conn.transact([{":db/id": "a", ":p/friends": [{":p/email": "new@x.org"}]}])
    a = r.tempids["a"]
    (f,) = values(conn.db(), a, ":p/friends")
    assert f != a
    assert user_datoms(r) == {(a, ":p/friends", f, True), (f, ":p/email", "new@x.org", True)}


def test_nested_map_under_non_component_without_unique_fails(conn):
    assert_tx_fails(conn, [{":db/id": "a", ":p/name": "Ann", ":p/best": {":p/name": "Bob"}}],
                    "db.error/invalid-tx-data", ":p/best")


def test_nested_map_under_non_ref_attribute_fails(conn):
    assert_tx_fails(conn, [{":p/name": {":p/email": "x@y"}}], "db.error/invalid-tx-data", ":p/name")


def test_reverse_ref_in_map(conn):
    bob = conn.transact([{":db/id": "b", ":p/name": "Bob"}]).tempids["b"]
    r = conn.transact([{":db/id": "a", ":p/name": "Ann", ":p/_friends": bob}])
    a = r.tempids["a"]
    assert user_datoms(r) == {(a, ":p/name", "Ann", True), (bob, ":p/friends", a, True)}
    assert values(conn.db(), bob, ":p/friends") == {a}


def test_reverse_ref_with_several_sources(conn):
    r0 = conn.transact([{":db/id": "b", ":p/name": "Bob"}, {":db/id": "c", ":p/name": "Cid"}])
    bob, cid = r0.tempids["b"], r0.tempids["c"]
    r = conn.transact([{":db/id": "a", ":p/name": "Ann", ":p/_friends": [bob, cid]}])
    a = r.tempids["a"]
    assert {(e, v) for e, at, v, added in user_datoms(r) if at == ":p/friends"} == {(bob, a), (cid, a)}


def test_reverse_ref_with_existing_target_and_tempid_source(conn):
    a = conn.transact([{":db/id": "a", ":p/name": "Ann"}]).tempids["a"]
    r = conn.transact([{":db/id": a, ":p/_friends": "n"}, {":db/id": "n", ":p/name": "New"}])
    n = r.tempids["n"]
    assert user_datoms(r) == {(n, ":p/name", "New", True), (n, ":p/friends", a, True)}


def test_reverse_ref_with_lookup_ref_source(conn):
    bob = conn.transact([{":db/id": "b", ":p/email": "bob@x.org"}]).tempids["b"]
    # A collection of lookup refs (a bare [attr value] pair would read as two sources).
    r = conn.transact([{":db/id": "a", ":p/name": "Ann", ":p/_friends": [[":p/email", "bob@x.org"]]}])
    a = r.tempids["a"]
    assert user_datoms(r) == {(a, ":p/name", "Ann", True), (bob, ":p/friends", a, True)}


def test_card_many_ref_values_as_collection_of_lookup_refs(conn):
    r0 = conn.transact([{":db/id": "b", ":p/email": "bob@x.org"}, {":db/id": "c", ":p/email": "cid@x.org"}])
    bob, cid = r0.tempids["b"], r0.tempids["c"]
    r = conn.transact([{":db/id": "a", ":p/friends": [[":p/email", "bob@x.org"], [":p/email", "cid@x.org"]]}])
    a = r.tempids["a"]
    assert user_datoms(r) == {(a, ":p/friends", bob, True), (a, ":p/friends", cid, True)}


def test_card_one_ref_value_as_lookup_ref(conn):
    bob = conn.transact([{":db/id": "b", ":p/email": "bob@x.org"}]).tempids["b"]
    r = conn.transact([{":db/id": "a", ":p/best": [":p/email", "bob@x.org"]}])
    assert user_datoms(r) == {(r.tempids["a"], ":p/best", bob, True)}


def test_reverse_key_of_non_ref_attribute_fails(conn):
    assert_tx_fails(conn, [{":db/id": "a", ":p/_name": "x"}], "db.error/invalid-tx-data", ":p/_name")


def test_map_and_list_forms_mix(conn):
    r = conn.transact([{":db/id": "a", ":p/name": "Ann"}, [":db/add", "a", ":p/age", 3]])
    a = r.tempids["a"]
    assert user_datoms(r) == {(a, ":p/name", "Ann", True), (a, ":p/age", 3, True)}


def test_map_with_non_attribute_key_fails(conn):
    assert_tx_fails(conn, [{":db/id": "a", "name": "x"}], "db.error/invalid-tx-data", "name")


def test_single_nested_map_under_card_many_component(conn):
    r = conn.transact([{":db/id": "a", ":p/phones": {":phone/number": "111"}}])
    a = r.tempids["a"]
    (ph,) = values(conn.db(), a, ":p/phones")
    assert value(conn.db(), ph, ":phone/number") == "111"


def test_nested_map_with_its_own_tempid_referenced_elsewhere(conn):
    r = conn.transact([{":db/id": "a", ":p/address": {":db/id": "addr", ":addr/street": "Main"}},
                       {":db/id": "b", ":p/best": "addr"}])
    a, b, addr = r.tempids["a"], r.tempids["b"], r.tempids["addr"]
    assert value(conn.db(), a, ":p/address") == addr
    assert value(conn.db(), b, ":p/best") == addr


def test_nested_components_two_levels(conn):
    conn.transact([attr(":addr/geo", "ref", component=True), attr(":geo/lat", "double")])
    r = conn.transact([{":db/id": "a", ":p/address": {":addr/street": "Main", ":addr/geo": {":geo/lat": 1.5}}}])
    a = r.tempids["a"]
    addr = value(conn.db(), a, ":p/address")
    geo = value(conn.db(), addr, ":addr/geo")
    assert value(conn.db(), geo, ":geo/lat") == 1.5
    assert len({a, addr, geo}) == 3


def test_collection_for_card_one_attribute_is_not_spread(conn):
    # only cardinality-many attributes take a collection of values
    assert_tx_fails(conn, [{":db/id": "a", ":p/name": ["Ann", "Anne"]}], "db.error/wrong-type", ":p/name")


def test_lookup_ref_db_id_to_missing_entity_fails(conn):
    assert_tx_fails(conn, [{":db/id": [":p/email", "nobody@x.org"], ":p/age": 1}],
                    "db.error/not-an-entity", "nobody@x.org")
