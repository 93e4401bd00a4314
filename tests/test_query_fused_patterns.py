"""Patterns that only add a value to a bound ?e, joined in one walk of the indexes.

``[?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] [?e :p/nick ?k]``: once ?e is bound in
entity order, the name and nick patterns are read together (``_core/scan.extend_many``)
and each row is built once. That may never change a result: every query here has its
expected result written by hand from Datomic's semantics, in every clause order, and
``explain`` shows which patterns were joined with which.
"""

from itertools import permutations

import pytest

from fastdatomic.query.engine import q, explain
from txfns_helper import fresh_conn

SCHEMA = """[
 {:db/ident :p/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :p/nick :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :p/age :db/valueType :db.type/long :db/cardinality :db.cardinality/one :db/index true}
 {:db/ident :p/likes :db/valueType :db.type/string :db/cardinality :db.cardinality/many}
]"""

PEOPLE = [  # name nick age likes
    ("Ann", "an", 30, ["tea", "jam"]),
    ("Bob", None, 25, ["tea"]),
    ("Cid", "ci", 40, []),
    ("Dee", "de", 25, []),
    ("Eve", "ev", 35, ["rye"]),
    ("Fay", "fa", 19, ["fig", "oat", "tea"]),
]


@pytest.fixture(scope="module")
def conn():
    c = fresh_conn(SCHEMA)
    tx = []
    for name, nick, age, likes in PEOPLE:
        m = {":db/id": name, ":p/name": name, ":p/age": age}
        if nick:
            m[":p/nick"] = nick
        if likes:
            m[":p/likes"] = likes
        tx.append(m)
    c.transact(tx)
    return c


@pytest.fixture(scope="module")
def db(conn):
    return conn.db()


def _orders(head, tail):
    """The query's :where with ``tail`` in every order after ``head``."""
    for p in permutations(tail):
        yield "[:find ?n ?k :where " + head + " " + " ".join(p) + "]"


def test_name_and_nick_of_the_young_in_every_order(db):
    want = {("Ann", "an"), ("Dee", "de"), ("Eve", "ev"), ("Fay", "fa")}   # Bob has no nick
    for qry in _orders("[?e :p/age ?a] [(< ?a 36)]", ["[?e :p/name ?n]", "[?e :p/nick ?k]"]):
        assert q(qry, db) == want, qry


def test_a_card_many_companion_gives_one_row_per_value(db):
    want = {("Ann", "tea"), ("Ann", "jam"), ("Bob", "tea"), ("Eve", "rye"),
            ("Fay", "fig"), ("Fay", "oat"), ("Fay", "tea")}
    for p in permutations(["[?e :p/name ?n]", "[?e :p/likes ?l]"]):
        qry = "[:find ?n ?l :where [?e :p/age ?a] [(< ?a 36)] " + " ".join(p) + "]"
        assert q(qry, db) == want, qry
    # :with keeps the duplicates a set would merge: Fay's three likes, Ann's two
    got = q("[:find ?n :with ?l :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] "
            "[?e :p/likes ?l]]", db)
    assert sorted(got) == [("Ann",), ("Ann",), ("Bob",), ("Eve",), ("Fay",), ("Fay",), ("Fay",)]
    counts = q("[:find ?n (count ?l) :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] "
               "[?e :p/likes ?l] [?e :p/nick ?k]]", db)
    assert counts == {("Ann", 2), ("Eve", 1), ("Fay", 3)}


def test_a_placeholder_companion_only_requires_the_attribute(db):
    qry = "[:find ?n :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] [?e :p/nick _]]"
    assert q(qry, db) == {("Ann",), ("Dee",), ("Eve",), ("Fay",)}
    # a companion whose value nothing reads is an existence test too
    qry = "[:find ?n :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] [?e :p/likes ?l]]"
    assert q(qry, db) == {("Ann",), ("Bob",), ("Eve",), ("Fay",)}


def test_a_variable_shared_by_two_patterns_is_joined_not_fused(db):
    # [?e :p/name ?x] [?e :p/nick ?x]: nobody's name is their nick
    qry = "[:find ?e :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?x] [?e :p/nick ?x]]"
    assert q(qry, db) == set()
    qry = "[:find ?n :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] [?e :p/likes ?n]]"
    assert q(qry, db) == set()


def test_a_companion_value_read_by_a_later_clause(db):
    qry = ('[:find ?n ?k :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] [?e :p/nick ?k] '
           '[(str ?k "!") ?s] [(= ?s "ev!")]]')
    assert q(qry, db) == {("Eve", "ev")}


def test_explain_lists_the_patterns_joined_in_the_same_walk(db):
    plan = explain("[:find ?n ?k :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] "
                   "[?e :p/nick ?k]]", db)["plan"]
    joined = [step for step in plan if "joined-with" in step]
    assert len(joined) == 1
    step = joined[0]
    assert step["clause"] in ("[?e :p/nick ?k]", "[?e :p/name ?n]")
    assert step["joined-with"] in ("[?e :p/nick ?k]", "[?e :p/name ?n]")
    assert step["joined-with"] != step["clause"]
    assert step["rows"] == 4
    assert {s["clause"] for s in plan} >= {"[?e :p/name ?n]", "[?e :p/nick ?k]"}


def test_as_of_history_and_filtered_databases(conn, db):
    t0 = db.basis_t
    eve = q('[:find ?e . :where [?e :p/name "Eve"]]', db)
    conn.transact([[":db/add", eve, ":p/nick", "eva"]])
    now = conn.db()
    qry = "[:find ?n ?k :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] [?e :p/nick ?k]]"
    assert ("Eve", "eva") in q(qry, now) and ("Eve", "ev") not in q(qry, now)
    assert q(qry, now.as_of(t0)) == {("Ann", "an"), ("Dee", "de"), ("Eve", "ev"), ("Fay", "fa")}
    # history sees both of Eve's nicks (the retracted one too)
    hq = "[:find ?n ?k :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] [?e :p/nick ?k]]"
    assert {("Eve", "ev"), ("Eve", "eva")} <= q(hq, now.history())
    # a filtered database reads datom by datom: same answer, without Fay's datoms
    fay = q('[:find ?e . :where [?e :p/name "Fay"]]', now)
    filtered = now.filter(lambda _db, d: d.e != fay)
    assert q(qry, filtered) == {("Ann", "an"), ("Dee", "de"), ("Eve", "eva")}



def test_a_sorted_entity_relation_then_an_indexed_value_lookup():
    # ?e bound in entity order by a range scan, then [?e :person/age 25] looked up in
    # AVET: read as a lookup and joined (this once failed with an UnboundLocalError)
    from test_query_data import people
    _, db, ids, _ = people()
    qry = "[:find ?e ?s :where [?e :person/salary ?s] [(> ?s 1)] [?e :person/age 25]]"
    assert q(qry, db) == {(ids["Bob"], 50000)}


def test_a_companion_with_a_range_keeps_only_the_values_in_it(db):
    # [?e :p/nick ?k] [(> ?k "b")]: the walk keeps the ?e whose nick is in the range
    want = {("Dee", "de"), ("Eve", "ev"), ("Fay", "fa")}    # Ann's "an" < "b"; Bob has none
    clauses = ["[?e :p/name ?n]", "[?e :p/nick ?k]", '[(> ?k "b")]']
    for p in permutations(clauses):
        if p.index('[(> ?k "b")]') < p.index("[?e :p/nick ?k]"):
            continue                   # a predicate comes after what binds its variable
        qry = "[:find ?n ?k :where [?e :p/age ?a] [(< ?a 36)] " + " ".join(p) + "]"
        assert q(qry, db) == want, qry
    # a range on both ends, and the variable itself not returned
    qry = ('[:find ?n :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] [?e :p/nick ?k] '
           '[(> ?k "b")] [(< ?k "f")]]')
    assert q(qry, db) == {("Dee",), ("Eve",)}
    # a range the index cannot answer (a long against string values) stays a predicate:
    # the engine orders strings after numbers, so every nick passes
    qry = "[:find ?n :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] [?e :p/nick ?k] [(> ?k 1)]]"
    assert q(qry, db) == {("Ann",), ("Dee",), ("Eve",), ("Fay",)}
    # two ranged patterns: whichever the planner reads first, the other joins its walk
    qry = ('[:find ?n ?k :where [?e :p/age ?a] [(< ?a 36)] [?e :p/name ?n] [(> ?n "B")] '
           '[?e :p/nick ?k] [(> ?k "b")]]')
    assert q(qry, db) == {("Dee", "de"), ("Eve", "ev"), ("Fay", "fa")}
    plan = explain(qry, db)["plan"]
    joined = [step["clause"] for step in plan if step.get("joined-with")]
    assert len(joined) == 1 and joined[0] in ("[?e :p/name ?n]", "[?e :p/nick ?k]")
