""":in bindings: scalar, tuple, collection, relation, _; input count errors."""

import pytest

from fastdatomic.query.engine import q, query, QueryError
from test_query_data import people


def test_scalar():
    _, db, ids, _ = people()
    assert q('[:find ?e . :in $ ?n :where [?e :person/name ?n]]', db, "Eve") == ids["Eve"]


def test_tuple():
    _, db, ids, _ = people()
    r = q('[:find ?e :in $ [?n ?a] :where [?e :person/name ?n] [?e :person/age ?a]]', db, ("Bob", 25))
    assert r == {(ids["Bob"],)}
    r = q('[:find ?e :in $ [?n _] :where [?e :person/name ?n]]', db, ("Bob", 99))
    assert r == {(ids["Bob"],)}


def test_collection():
    _, db, ids, _ = people()
    r = q('[:find ?e :in $ [?n ...] :where [?e :person/name ?n]]', db, ["Bob", "Eve", "Nobody"])
    assert r == {(ids["Bob"],), (ids["Eve"],)}


def test_relation():
    _, db, ids, _ = people()
    r = q('[:find ?n ?bonus :in $ [[?n ?bonus]] :where [?e :person/name ?n]]', db,
          [("Ann", 1), ("Bob", 2), ("Nobody", 3)])
    assert r == {("Ann", 1), ("Bob", 2)}


def test_ignore():
    _, db, _, _ = people()
    assert q('[:find ?n :in $ _ :where [_ :person/age 40] [?e :person/age 40] [?e :person/name ?n]]',
             db, "whatever") == {("Cid",)}


def test_no_db_inputs():
    assert q('[:find ?x ?y :in [?x ...] [?y ...] :where [(< ?x ?y)]]', [1, 2], [2, 3]) == \
        {(1, 2), (1, 3), (2, 3)}


def test_wrong_count_names_inputs():
    _, db, _, _ = people()
    with pytest.raises(QueryError) as ei:
        q('[:find ?e :in $ ?n :where [?e :person/name ?n]]', db)
    assert "?n" in str(ei.value) and "2" in str(ei.value)


def test_query_map_form():
    _, db, ids, _ = people()
    r = query({"query": '[:find ?e . :in $ ?n :where [?e :person/name ?n]]', "args": [db, "Ann"]})
    assert r == ids["Ann"]
