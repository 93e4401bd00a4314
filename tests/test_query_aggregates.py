"""Aggregates, grouping, :with bag semantics, user aggregates."""

import pytest

from fastdatomic.query.engine import q, register_aggregate
from test_query_data import people

ORD = '[?o :order/customer ?c] [?o :order/total ?t] [?c :person/name ?n]'


def test_count_sum_grouped():
    _, db, _, _ = people()
    r = q(f'[:find ?n (count ?o) (sum ?t) :where {ORD}]', db)
    assert r == {("Ann", 2, 150), ("Bob", 1, 50), ("Cid", 1, 200)}


def test_with_bag_semantics():
    _, db, _, _ = people()
    assert q('[:find (sum ?t) . :where [?o :order/total ?t]]', db) == 350  # set: 100 50 200
    assert q('[:find (sum ?t) . :with ?o :where [?o :order/total ?t]]', db) == 400


@pytest.mark.parametrize("agg,expected", [
    ("(count ?t)", 4), ("(count-distinct ?t)", 3), ("(sum ?t)", 400), ("(avg ?t)", 100),
    ("(min ?t)", 50), ("(max ?t)", 200), ("(median ?t)", 75), ("(variance ?t)", 3750),
    ("(stddev ?t)", 3750 ** 0.5), ("(distinct ?t)", {50, 100, 200}), ("(min 2 ?t)", [50, 100]),
    ("(max 2 ?t)", [200, 100]),
])
def test_aggregate_functions(agg, expected):
    _, db, _, _ = people()
    r = q(f'[:find {agg} . :with ?o :where [?o :order/total ?t]]', db)
    assert r == pytest.approx(expected) if isinstance(expected, float) else r == expected


def test_rand_sample():
    _, db, _, _ = people()
    r = q('[:find (rand 3 ?t) . :with ?o :where [?o :order/total ?t]]', db)
    assert len(r) == 3 and set(r) <= {50, 100, 200}
    r = q('[:find (sample 5 ?t) . :with ?o :where [?o :order/total ?t]]', db)
    assert sorted(r) == [50, 100, 200]


def test_count_empty():
    _, db, _, _ = people()
    assert q('[:find (count ?e) . :where [?e :person/age 99]]', db) == 0
    assert q('[:find ?n (count ?e) :where [?e :person/age 99] [?e :person/name ?n]]', db) == set()


def test_user_aggregate():
    register_aggregate("spread", lambda xs: max(xs) - min(xs))
    _, db, _, _ = people()
    assert q('[:find (spread ?a) . :where [_ :person/age ?a]]', db) == 15
    # a qualified Python callable works as an aggregate over the group's values
    assert q('[:find (builtins/len ?a) . :with ?e :where [?e :person/age ?a]]', db) == 5


def test_non_numeric_min_max():
    _, db, _, _ = people()
    assert q('[:find (min ?n) (max ?n) :where [_ :person/name ?n]]', db) == {("Ann", "Eve")}
