"""The same query in different clause orders gives identical results; benchmark shapes q1..q4."""

import itertools

import pytest

import fastdatomic as fd
from txfns_helper import fresh_conn
from fastdatomic.query.engine import q
from test_query_data import people

CLAUSES = ['[?o :order/customer ?c]', '[?o :order/total ?t]', '[?c :person/name ?n]',
           '[?c :person/age ?a]']


def valid(order):
    # a predicate must come after its variables are bound
    return order.index('[(>= ?t 50)]') > min(order.index(CLAUSES[1]), 99)


@pytest.mark.parametrize("order", [p for p in itertools.permutations(CLAUSES + ['[(>= ?t 50)]'])
                                   if valid(p)][::7])
def test_permutations_agree(order):
    _, db, _, _ = people()
    r = q('[:find ?n ?a ?t :where ' + " ".join(order) + ']', db)
    assert r == {("Ann", 30, 100), ("Ann", 30, 50), ("Bob", 25, 50), ("Cid", 40, 200)}


@pytest.mark.parametrize("order", list(itertools.permutations(
    ['[?e :person/friend ?f]', '[?f :person/name ?fn]', '(not [?f :person/age 40])', '[?e :person/name ?n]']))[:12])
def test_permutations_with_not(order):
    if order.index('(not [?f :person/age 40])') < order.index('[?e :person/friend ?f]') and \
       order.index('(not [?f :person/age 40])') < order.index('[?f :person/name ?fn]'):
        return  # not needs ?f bound
    _, db, _, _ = people()
    assert q('[:find ?n ?fn :where ' + " ".join(order) + ']', db) == {("Ann", "Bob"), ("Cid", "Ann"), ("Dee", "Eve")}


@pytest.fixture(scope="module")
def bench():
    conn = fresh_conn('''[{:db/ident :name :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
     {:db/ident :last-name :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
     {:db/ident :age :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
     {:db/ident :sex :db/valueType :db.type/keyword :db/cardinality :db.cardinality/one}
     {:db/ident :salary :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]''')
    names = ["Ivan", "Petr", "Oleg"]
    people_ = []
    for i in range(60):
        people_.append({":name": names[i % 3], ":last-name": f"L{i % 5}", ":age": 20 + i % 7,
                        ":sex": fd.Keyword("male" if i % 2 else "female"), ":salary": 40000 + 1000 * i})
    conn.transact(people_)
    return conn.db(), people_


def test_benchmark_shapes(bench):
    db, ps = bench
    ivans = [p for p in ps if p[":name"] == "Ivan"]
    assert len(q('[:find ?e :where [?e :name "Ivan"]]', db)) == len(ivans)
    assert {a for _, a in q('[:find ?e ?a :where [?e :name "Ivan"] [?e :age ?a]]', db)} == \
        {p[":age"] for p in ivans}
    r3 = q('[:find ?e ?a ?s :where [?e :name "Ivan"] [?e :age ?a] [?e :sex ?s]]', db)
    assert len(r3) == len(ivans)
    r4 = q('[:find ?e ?l ?a :where [?e :name "Ivan"] [?e :last-name ?l] [?e :age ?a] [?e :sex :male]]', db)
    assert len(r4) == sum(1 for p in ivans if p[":sex"] == fd.Keyword("male"))
    assert len(q('[:find ?e ?s :where [?e :salary ?s] [(> ?s 90000)]]', db)) == 9
    assert len(q('[:find ?e ?s :in $ ?min_s :where [?e :salary ?s] [(> ?s ?min_s)]]', db, 90000)) == 9
