"""Comparison predicates answered by the index, and patterns joined inside the scan.

``[?e :a ?v] [(> ?v 5)]`` reads only the matching range of values (query/ranges.py), and
``[?e :b ?x]`` after ``?e`` is bound keeps only those entities while scanning
(``Scan.select``). Neither may change a result: each query here has its expected result
written by hand from Datomic's semantics, and is also run with the predicate written as
a user function (which the index never answers) to compare.
"""

import pytest

import fastdatomic as fd
from fastdatomic.query.engine import q, explain, register_query_fn
from txfns_helper import fresh_conn

SCHEMA = """[
 {:db/ident :p/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}
 {:db/ident :p/nick :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :p/age :db/valueType :db.type/long :db/cardinality :db.cardinality/one :db/index true}
 {:db/ident :p/score :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
 {:db/ident :p/height :db/valueType :db.type/double :db/cardinality :db.cardinality/one}
 {:db/ident :p/sex :db/valueType :db.type/keyword :db/cardinality :db.cardinality/one}
 {:db/ident :p/likes :db/valueType :db.type/long :db/cardinality :db.cardinality/many}
]"""

PEOPLE = [  # name nick age score height sex likes
    ("Ann", "an", 30, 7, 1.6, ":f", [1, 2]),
    ("Bob", "bo", 25, -3, 1.8, ":m", [2]),
    ("Cid", "ci", 40, 0, 1.75, ":m", []),
    ("Dee", "de", 25, 12, 1.5, ":f", [3, 9]),
    ("Eve", "ev", 35, 7, 1.7, ":f", [5]),
    ("Fay", "fa", 19, 100, 1.65, ":f", []),
]


@pytest.fixture(scope="module")
def db():
    conn = fresh_conn(SCHEMA)
    tx = []
    for name, nick, age, score, h, sex, likes in PEOPLE:
        m = {":p/name": name, ":p/nick": nick, ":p/age": age, ":p/score": score,
             ":p/height": h, ":p/sex": fd.Keyword(sex[1:])}
        if likes:
            m[":p/likes"] = likes
        tx.append(m)
    conn.transact(tx)
    conn.transact([[":db/add", [":p/name", "Bob"], ":p/age", 26]])   # a newer value
    return conn.db()


def names(r):
    return sorted(x[0] if isinstance(x, tuple) else x for x in r)


@pytest.mark.parametrize("pred, expect", [
    ("[(> ?a 30)]", ["Cid", "Eve"]),
    ("[(>= ?a 30)]", ["Ann", "Cid", "Eve"]),
    ("[(< ?a 26)]", ["Dee", "Fay"]),
    ("[(<= ?a 26)]", ["Bob", "Dee", "Fay"]),
    ("[(< 30 ?a)]", ["Cid", "Eve"]),              # constant first: ?a > 30
    ("[(> 26 ?a)]", ["Dee", "Fay"]),
    ("[(> ?a 20)] [(< ?a 31)]", ["Ann", "Bob", "Dee"]),
    ("[(> ?a 40)]", []),
    ("[(> ?a 30)] [(< ?a 30)]", []),              # empty range
    ("[(> ?a 29.5)]", ["Ann", "Cid", "Eve"]),     # a double: compared as numbers, not bytes
    ("[(< ?a 100000000000000000000)]", ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay"]),  # past 64 bits
])
def test_indexed_long_ranges(db, pred, expect):
    for order in ("[?e :p/age ?a] {p} [?e :p/name ?n]", "[?e :p/name ?n] [?e :p/age ?a] {p}"):
        r = q("[:find ?n :where " + order.format(p=pred) + "]", db)
        assert names(r) == expect, order


@pytest.mark.parametrize("pred, expect", [
    ("[(> ?s 0)]", ["Ann", "Dee", "Eve", "Fay"]),
    ("[(>= ?s 0)]", ["Ann", "Cid", "Dee", "Eve", "Fay"]),
    ("[(< ?s 7)]", ["Bob", "Cid"]),
    ("[(<= ?s 7)] [(> ?s -3)]", ["Ann", "Cid", "Eve"]),
])
def test_unindexed_long_ranges_negative_values(db, pred, expect):
    assert names(q("[:find ?n :where [?e :p/score ?s] " + pred + " [?e :p/name ?n]]", db)) == expect


def test_string_ranges_indexed_and_not(db):
    assert names(q('[:find ?n :where [?e :p/name ?n] [(> ?n "Cid")]]', db)) == ["Dee", "Eve", "Fay"]
    assert names(q('[:find ?n :where [?e :p/name ?n] [(<= ?n "Bob")]]', db)) == ["Ann", "Bob"]
    assert names(q('[:find ?k :where [?e :p/nick ?k] [(>= ?k "de")] [(< ?k "f")]]', db)) == ["de", "ev"]


def test_scalar_input_bound(db):
    r = q('[:find ?n :in $ ?min :where [?e :p/age ?a] [(> ?a ?min)] [?e :p/name ?n]]', db, 30)
    assert names(r) == ["Cid", "Eve"]
    # a collection binding is not one value: the predicate runs per row
    r = q('[:find ?n ?m :in $ [?m ...] :where [?e :p/age ?a] [(> ?a ?m)] [?e :p/name ?n]]', db, [30, 35])
    assert sorted(r) == [("Cid", 30), ("Cid", 35), ("Eve", 30)]


def test_double_attribute_stays_a_predicate(db):
    r = q('[:find ?n :where [?e :p/height ?h] [(> ?h 1.65)] [?e :p/name ?n]]', db)
    assert names(r) == ["Bob", "Cid", "Eve"]


def test_var_already_bound_then_compared(db):
    # ?a is bound by the first pattern; the second one reads the same attribute again
    r = q('[:find ?n :where [?e :p/name ?n] [?e :p/age ?a] [?x :p/age ?a] [(> ?a 30)]]', db)
    assert names(r) == ["Cid", "Eve"]


def test_as_of_history_and_filtered_views(db):
    r = q('[:find ?n :where [?e :p/age ?a] [(< ?a 26)] [?e :p/name ?n]]', db.as_of(db.basis_t - 1))
    assert names(r) == ["Bob", "Dee", "Fay"]       # Bob was 25 then
    r = q('[:find ?n ?a :where [?e :p/age ?a] [(< ?a 27)] [?e :p/name ?n]]', db.history())
    assert sorted(r) == [("Bob", 25), ("Bob", 26), ("Dee", 25), ("Fay", 19)]
    only_f = db.filter(lambda _db, d: d.e != db.entid([":p/name", "Fay"]))
    r = q('[:find ?n :where [?e :p/age ?a] [(< ?a 26)] [?e :p/name ?n]]', only_f)
    assert names(r) == ["Dee"]


def test_user_function_named_like_a_comparison_is_not_pushed(db):
    register_query_fn("my.ns/>", lambda a, b: a < b)   # deliberately inverted
    r = q('[:find ?n :where [?e :p/age ?a] [(my.ns/> ?a 30)] [?e :p/name ?n]]', db)
    assert names(r) == ["Bob", "Dee", "Fay"]


def test_predicate_counted_once_in_explain(db):
    plan = explain('[:find ?n :where [?e :p/age ?a] [(> ?a 30)] [?e :p/name ?n]]', db)
    assert names(plan["result"]) == ["Cid", "Eve"]
    rows = [step["rows"] for step in plan["plan"]]
    assert rows[0] == 2     # the scan of :p/age already kept only ages above 30


def test_semi_join_on_bound_entities(db):
    # ?e bound by the first clause: the second scans :p/nick keeping only those entities
    r = q('[:find ?k :where [?e :p/sex :f] [?e :p/nick ?k]]', db)
    assert names(r) == ["an", "de", "ev", "fa"]
    r = q('[:find ?n ?l :where [?e :p/likes ?l] [?e :p/name ?n] [(> ?l 2)]]', db)
    assert sorted(r) == [("Dee", 3), ("Dee", 9), ("Eve", 5)]
    # entity given as idents / lookup refs (not ints): the ordinary join
    r = q('[:find ?a :in $ [?e ...] :where [?e :p/age ?a]]', db, [[":p/name", "Ann"], [":p/name", "Cid"]])
    assert sorted(r) == [(30,), (40,)]


def test_constant_value_compared_as_bytes_only_when_same_type(db):
    assert names(q('[:find ?n :where [?e :p/sex :m] [?e :p/name ?n]]', db)) == ["Bob", "Cid"]
    assert names(q('[:find ?n :where [?e :p/score 7] [?e :p/name ?n]]', db)) == ["Ann", "Eve"]
    # 7.0 is not a long; Python equality says 7 == 7.0, which the value filter keeps
    assert names(q('[:find ?n :where [?e :p/score 7.0] [?e :p/name ?n]]', db)) == ["Ann", "Eve"]


def test_many_bound_entities_probe_or_scan_agree(db):
    # enough bound entities that the engine scans with a filter instead of probing
    conn = fresh_conn(SCHEMA)
    conn.transact([{":p/name": f"n{i}", ":p/age": i % 50, ":p/score": i} for i in range(3000)])
    d = conn.db()
    r = q('[:find ?s :where [?e :p/age 7] [?e :p/score ?s]]', d)
    assert sorted(x for (x,) in r) == list(range(7, 3000, 50))
    r = q('[:find (count ?e) . :where [?e :p/age ?a] [(< ?a 10)] [?e :p/score ?s] [(>= ?s 1500)]]', d)
    assert r == sum(1 for i in range(1500, 3000) if i % 50 < 10)


def test_long_filtered_scan_checks_the_timeout_between_chunks(monkeypatch):
    # A scan that matches nothing still returns to the engine every 65536 datoms, so
    # :timeout can interrupt it.
    from fastdatomic.query import engine
    conn = fresh_conn(SCHEMA)
    for i in range(0, 140_000, 20_000):
        conn.transact([{":p/score": j} for j in range(i, i + 20_000)])
    d = conn.db()
    calls = []
    real = engine.Ctx.check
    monkeypatch.setattr(engine.Ctx, "check", lambda self: (calls.append(1), real(self))[1])
    assert q('[:find ?e :where [?e :p/score ?s] [(< ?s -5)]]', d) == set()
    # 3 returns from the scan (140k / 65536), plus the checks before and after clauses
    assert len(calls) >= 3 + 3
