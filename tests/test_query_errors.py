"""Errors: unknown attribute / function / rule, timeouts, no writes."""

import time

import pytest

from fastdatomic.errors import FastDatomicError
from fastdatomic.query.engine import q, query, QueryError, QueryTimeoutError, register_query_fn
from test_query_data import people


def test_timeout_kind():
    assert issubclass(QueryTimeoutError, FastDatomicError)
    assert QueryTimeoutError.kind == "query/timeout"


def test_timeout_interrupts_big_product():
    xs = list(range(3000))
    t0 = time.perf_counter()
    with pytest.raises(QueryTimeoutError):
        query({"query": '[:find (count ?a) . :in [?a ...] [?b ...] :where [(< ?a ?b)]]',
               "args": [xs, xs], "timeout": 50})
    assert time.perf_counter() - t0 < 3


def test_timeout_in_query_map_and_slow_fn():
    register_query_fn("slow-id", lambda x: (time.sleep(0.01), x)[1])
    with pytest.raises(QueryTimeoutError):
        q({":find": ["?y"], ":in": [["?x", "..."]], ":where": [[("slow-id", "?x"), "?y"]], ":timeout": 30},
          list(range(1000)))


def test_timeout_in_recursive_rule():
    edges = [(i, i + 1) for i in range(400)]
    rules = '[[(path ?a ?b) [?a ?b]] [(path ?a ?b) [?a ?m] (path ?m ?b)]]'
    with pytest.raises(QueryTimeoutError):
        q('{:find [(count ?b)] :in [$ %] :where [(path ?a ?b)] :timeout 20}', edges, rules)


def test_unknown_rule():
    _, db, _, _ = people()
    with pytest.raises(QueryError) as ei:
        q('[:find ?e :in $ % :where (nope ?e)]', db, '[[(other ?e) [?e :person/age 1]]]')
    assert "nope" in str(ei.value)


def test_exception_in_function_names_clause():
    with pytest.raises(QueryError) as ei:
        q('[:find ?y :in [?x ...] :where [(/ ?x 0) ?y]]', [1])
    assert "(/ ?x 0)" in str(ei.value)
