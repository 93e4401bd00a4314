"""Find specs: relation, collection, tuple, scalar, return maps."""

from fastdatomic.query.engine import q
from fastdatomic.types import Symbol
from test_query_data import people, K

AGE = '[?e :person/age ?a] [?e :person/name ?n]'


def test_relation_is_set():
    _, db, _, _ = people()
    r = q(f'[:find ?n ?a :where {AGE} [(< ?a 30)]]', db)
    assert r == {("Bob", 25), ("Dee", 25)}


def test_collection():
    _, db, _, _ = people()
    assert sorted(q(f'[:find [?n ...] :where {AGE}]', db)) == ["Ann", "Bob", "Cid", "Dee", "Eve"]


def test_tuple_and_scalar():
    _, db, _, _ = people()
    assert q(f'[:find [?n ?a] :where {AGE} [(= ?n "Cid")]]', db) == ("Cid", 40)
    assert q(f'[:find ?a . :where {AGE} [(= ?n "Cid")]]', db) == 40
    assert q(f'[:find ?a . :where {AGE} [(= ?n "Zed")]]', db) is None
    assert q(f'[:find [?n ?a] :where {AGE} [(= ?n "Zed")]]', db) is None


def test_return_maps():
    _, db, _, _ = people()
    r = q(f'[:find ?n ?a :keys name age :where {AGE} [(> ?a 36)]]', db)
    assert r == [{K("name"): "Cid", K("age"): 40}]
    r = q(f'[:find ?n ?a :strs name age :where {AGE} [(> ?a 36)]]', db)
    assert r == [{"name": "Cid", "age": 40}]
    r = q(f'[:find ?n ?a :syms name age :where {AGE} [(> ?a 36)]]', db)
    assert r == [{Symbol("name"): "Cid", Symbol("age"): 40}]


def test_empty_result_shapes():
    _, db, _, _ = people()
    assert q('[:find ?e :where [?e :person/age 99]]', db) == set()
    assert q('[:find [?e ...] :where [?e :person/age 99]]', db) == []


def test_find_input_only_var():
    assert q('[:find ?x :in ?x]', 5) == {(5,)}


def test_order_by_limit_offset():
    from fastdatomic.query.engine import query
    _, db, _, _ = people()
    qm = {":find": ["?n", "?a"], ":where": [["?e", ":person/name", "?n"], ["?e", ":person/age", "?a"]],
          ":order-by": [["?a", ":desc"], "?n"]}
    assert query({"query": qm, "args": [db]}) == [("Cid", 40), ("Eve", 35), ("Ann", 30), ("Bob", 25), ("Dee", 25)]
    assert query({"query": {**qm, ":limit": 2, ":offset": 1}, "args": [db]}) == [("Eve", 35), ("Ann", 30)]
