"""Data patterns: constants, idents, lookup refs, placeholders, index choice, collection sources."""

import pytest

from fastdatomic.query.engine import q, QueryError
from test_query_data import people, K


def test_q1_shape():
    _, db, ids, _ = people()
    assert q('[:find ?e :where [?e :person/name "Ann"]]', db) == {(ids["Ann"],)}


def test_ident_in_ref_value_position():
    _, db, ids, _ = people()
    r = q('[:find ?e :where [?e :person/status :status/active]]', db)
    assert r == {(ids["Ann"],), (ids["Bob"],), (ids["Dee"],)}


def test_keyword_value():
    _, db, ids, _ = people()
    assert q('[:find [?e ...] :where [?e :person/tag :admin]]', db) == [ids["Ann"]]


def test_lookup_ref_entity_position():
    _, db, ids, _ = people()
    r = q('[:find ?a . :where [[:person/name "Bob"] :person/age ?a]]', db)
    assert r == 25
    r = q('[:find ?f . :where [?e :person/friend ?f] [?e :person/name "Ann"]]', db)
    assert r == ids["Bob"]


def test_lookup_ref_in_ref_value_position():
    _, db, ids, _ = people()
    r = q('[:find ?n . :where [?e :person/friend [:person/name "Ann"]] [?e :person/name ?n]]', db)
    assert r == "Cid"


def test_placeholder_and_attribute_var():
    _, db, ids, _ = people()
    attrs = q('[:find [?a ...] :in $ ?e :where [?e ?a _]]', db, ids["Eve"])
    assert {db.ident(a) for a in attrs} == {K("person/name"), K("person/age")}


def test_unknown_entity_constant_matches_nothing():
    _, db, _, _ = people()
    assert q('[:find ?a :where [[:person/name "Nobody"] :person/age ?a]]', db) == set()


def test_repeated_var_in_pattern():
    _, db, ids, _ = people()
    assert q('[:find ?e :where [?e :person/friend ?e]]', db) == set()


def test_tx_position():
    _, db, ids, r = people()
    tx = q('[:find ?tx . :where [?e :person/name "Ann" ?tx]]', db)
    assert tx == r.tempids["datomic.tx"]


def test_python_data_query():
    _, db, ids, _ = people()
    r = q([":find", "?n", ":where", ["?e", ":person/age", 25], ["?e", ":person/name", "?n"]], db)
    assert r == {("Bob",), ("Dee",)}


def test_avet_and_vaet_lookups():
    _, db, ids, _ = people()
    assert q('[:find ?e :where [?e :person/age 40]]', db) == {(ids["Cid"],)}
    assert q('[:find ?e :in $ ?f :where [?e :person/friend ?f]]', db, ids["Ann"]) == {(ids["Cid"],)}


def test_probe_by_bound_var_matches_scan():
    _, db, ids, _ = people()
    a = q('[:find ?n ?a :in $ [?n ...] :where [?e :person/name ?n] [?e :person/age ?a]]', db, ["Ann", "Bob"])
    assert a == {("Ann", 30), ("Bob", 25)}


def test_collection_source():
    rows = [[1, K("a"), 10], [2, K("b"), 20], [3, K("a"), 30]]
    assert q('[:find ?e ?v :in $x :where [$x ?e :a ?v]]', rows) == {(1, 10), (3, 30)}
    assert q('[:find ?v :where [_ _ ?v]]', rows) == {(10,), (20,), (30,)}


def test_multiple_sources():
    _, db, ids, _ = people()
    extra = [("Ann", "London"), ("Bob", "Paris")]
    r = q('[:find ?n ?c :in $ $loc :where [?e :person/age ?a] [(< ?a 35)] [?e :person/name ?n] [$loc ?n ?c]]',
          db, extra)
    assert r == {("Ann", "London"), ("Bob", "Paris")}


def test_unknown_attribute_names_clause():
    _, db, _, _ = people()
    with pytest.raises(QueryError) as ei:
        q('[:find ?e :where [?e :person/nope 1]]', db)
    assert ":person/nope" in str(ei.value)
    assert "[?e :person/nope 1]" in ei.value.data["clause"]


def test_query_does_not_change_db():
    conn, db, _, _ = people()
    before = list(db.datoms("eavt"))
    q('[:find ?e ?a ?v :where [?e ?a ?v]]', db)
    assert list(db.datoms("eavt")) == before
