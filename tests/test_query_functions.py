"""Function expressions and their bindings."""

import re

from fastdatomic.query.engine import q
from test_query_data import people, K


def f(expr, *xs, find="?y ."):
    return q(f'[:find {find} :in [?x ...] :where [{expr}]]', list(xs))


def test_arithmetic():
    assert f("(+ ?x 1) ?y", 1) == 2
    assert f("(- ?x 10) ?y", 1) == -9
    assert f("(* ?x 3) ?y", 2) == 6
    assert f("(/ ?x 2) ?y", 8) == 4
    assert f("(/ ?x 2) ?y", 3) == 1.5
    assert f("(quot ?x 2) ?y", -7) == -3
    assert f("(rem ?x 2) ?y", -7) == -1
    assert f("(mod ?x 2) ?y", -7) == 1
    assert f("(inc ?x) ?y", 1) == 2 and f("(dec ?x) ?y", 1) == 0
    assert f("(max ?x 5 2) ?y", 1) == 5 and f("(min ?x 5 2) ?y", 1) == 1


def test_strings_and_regex():
    assert f('(str ?x "-" 1) ?y', "a") == "a-1"
    assert f("(subs ?x 1 3) ?y", "hello") == "el"
    assert f("(count ?x) ?y", "hello") == 5
    assert f('(re-find "l+" ?x) ?y', "hello") == "ll"
    assert f('(re-matches "h(.)llo" ?x) ?y', "hello") == ("hello", "e")
    assert f('(re-matches "x" ?x) ?y', "hello") is None
    assert isinstance(f('(re-pattern ?x) ?y', "a+"), re.Pattern)


def test_identity_ground_tuple_untuple():
    assert q('[:find ?y . :where [(ground 42) ?y]]') == 42
    assert f("(identity ?x) ?y", 7) == 7
    assert f("(tuple ?x 1) ?y", 7) == (7, 1)
    assert q('[:find ?a ?b :in ?t :where [(untuple ?t) [?a ?b]]]', (1, 2)) == {(1, 2)}


def test_bindings():
    assert sorted(q('[:find [?y ...] :where [(ground [1 2 3]) [?y ...]]]')) == [1, 2, 3]
    assert q('[:find ?a ?b :where [(ground [[1 2] [3 4]]) [[?a ?b]]]]') == {(1, 2), (3, 4)}
    assert q('[:find ?a :where [(ground [1 2]) [?a _]]]') == {(1,)}
    assert q('[:find ?x :in [?x ...] :where [(inc ?x) _]]', [1]) == {(1,)}


def test_binding_unifies_with_bound_var():
    assert q('[:find ?x ?y :in [[?x ?y]] :where [(inc ?x) ?y]]', [(1, 2), (1, 3)]) == {(1, 2)}


def test_nil_result_drops_row():
    assert q('[:find ?x :in [?x ...] :where [(re-find "a" ?x) ?m]]', ["abc", "xyz"]) == {("abc",)}


def test_get_else_get_some():
    _, db, ids, _ = people()
    r = q('[:find ?n ?m :where [?e :person/name ?n] [(get-else $ ?e :person/email "none") ?m]]', db)
    assert ("Cid", "none") in r and ("Ann", "ann@x.org") in r
    r = q('[:find ?n ?v :where [?e :person/name ?n] [(get-some $ ?e :person/email :person/age) [?a ?v]]]', db)
    assert ("Eve", 35) in r and ("Ann", "ann@x.org") in r


def test_tx_ids_and_tx_data():
    conn, db, ids, r = people()
    log = conn.log()
    txs = q('[:find [?tx ...] :in ?log ?t1 ?t2 :where [(tx-ids ?log ?t1 ?t2) [?tx ...]]]', log, r.t, r.t + 1)
    assert txs == [r.tempids["datomic.tx"]]
    es = q('[:find [?e ...] :in $ ?log ?tx :where [(tx-data ?log ?tx) [[?e ?a ?v _ ?op]]]'
           '[?a :db/ident :person/name]]', db, log, r.t)
    assert sorted(es) == sorted(ids.values())


def test_keyword_values_pass_through():
    assert f("(identity ?x) ?y", K("a")) is K("a")
