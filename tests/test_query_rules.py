"""Rules, recursion (with cycles), required bindings, rule sources."""

import pytest

from fastdatomic.query.engine import q, QueryError
from test_query_data import people

ANC = '''[[(anc ?a ?d) [?d :person/parent ?a]]
          [(anc ?a ?d) [?m :person/parent ?a] (anc ?m ?d)]]'''
REACH = '''[[(reach ?a ?b) [?a :person/friend ?b]]
            [(reach ?a ?b) [?a :person/friend ?m] (reach ?m ?b)]]'''


def test_simple_rule():
    _, db, _, _ = people()
    rules = '[[(adult ?e) [?e :person/age ?a] [(>= ?a 30)]]]'
    r = q('[:find [?n ...] :in $ % :where (adult ?e) [?e :person/name ?n]]', db, rules)
    assert sorted(r) == ["Ann", "Cid", "Eve"]


def test_rule_branches_are_or():
    _, db, _, _ = people()
    rules = '[[(x ?e) [?e :person/age 40]] [(x ?e) [?e :person/tag :admin]]]'
    assert sorted(q('[:find [?n ...] :in $ % :where (x ?e) [?e :person/name ?n]]', db, rules)) == ["Ann", "Cid"]


def test_recursive_ancestors():
    _, db, _, _ = people()
    r = q('[:find [?n ...] :in $ % :where [?a :person/name "Ann"] (anc ?a ?d) [?d :person/name ?n]]', db, ANC)
    assert sorted(r) == ["Bob", "Cid", "Dee"]
    r = q('[:find [?n ...] :in $ % :where [?d :person/name "Dee"] (anc ?a ?d) [?a :person/name ?n]]', db, ANC)
    assert sorted(r) == ["Ann", "Bob", "Cid"]


def test_recursive_with_cycle_unbound():
    _, db, _, _ = people()
    r = q('[:find ?n ?m :in $ % :where (reach ?a ?b) [?a :person/name ?n] [?b :person/name ?m]]', db, REACH)
    cycle = {"Ann", "Bob", "Cid"}
    assert r == {(x, y) for x in cycle for y in cycle} | {("Dee", "Eve")}


def test_recursive_with_cycle_bound_constant():
    _, db, ids, _ = people()
    r = q('[:find [?m ...] :in $ % ?a :where (reach ?a ?b) [?b :person/name ?m]]', db, REACH, ids["Bob"])
    assert sorted(r) == ["Ann", "Bob", "Cid"]


def test_rule_with_constant_arg():
    _, db, _, _ = people()
    rules = '[[(aged ?e ?a) [?e :person/age ?a]]]'
    assert sorted(q('[:find [?n ...] :in $ % :where (aged ?e 25) [?e :person/name ?n]]', db, rules)) == ["Bob", "Dee"]


def test_required_binding():
    _, db, _, _ = people()
    rules = '[[(older [?e] ?min) [?e :person/age ?a] [(> ?a ?min)]]]'
    r = q('[:find [?n ...] :in $ % :where [?e :person/name ?n] (older ?e 33)]', db, rules)
    assert sorted(r) == ["Cid", "Eve"]
    with pytest.raises(QueryError):
        q('[:find ?e :in $ % :where (older ?e 33)]', db, rules)


def test_rules_calling_rules_and_not():
    _, db, _, _ = people()
    rules = ANC + '''
    '''
    rules = '[' + ANC.strip()[1:-1] + ' [(root ?e) [?e :person/name] (not [?e :person/parent _])]]'
    r = q('[:find [?n ...] :in $ % :where (root ?e) [?e :person/name ?n]]', db, rules)
    assert sorted(r) == ["Ann", "Eve"]


def test_rule_on_collection_source():
    edges = [(1, 2), (2, 3), (3, 1), (4, 5)]
    rules = '[[(path ?a ?b) [?a ?b]] [(path ?a ?b) [?a ?m] (path ?m ?b)]]'
    r = q('[:find [?b ...] :in $ % :where (path 4 ?b)]', edges, rules)
    assert r == [5]
    r = q('[:find [?b ...] :in $ % :where (path 1 ?b)]', edges, rules)
    assert sorted(r) == [1, 2, 3]
