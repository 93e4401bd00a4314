"""Predicates: comparisons, number tests, qpred1/qpred2 shapes, missing?, user predicates."""

import pytest

from fastdatomic.query.engine import q, register_query_fn, QueryError
from test_query_data import people


def test_qpred1():
    _, db, ids, _ = people()
    assert q('[:find ?e ?s :where [?e :person/salary ?s] [(> ?s 45000)]]', db) == \
        {(ids["Ann"], 70000), (ids["Bob"], 50000)}


def test_qpred2():
    _, db, ids, _ = people()
    assert q('[:find ?e ?s :in $ ?min_s :where [?e :person/salary ?s] [(> ?s ?min_s)]]', db, 60000) == \
        {(ids["Ann"], 70000)}


@pytest.mark.parametrize("pred,expected", [
    ("(= ?x 2)", [2]), ("(not= ?x 2)", [1, 3, 4]), ("(< ?x 3)", [1, 2]), ("(<= ?x 3)", [1, 2, 3]),
    ("(>= ?x 3)", [3, 4]), ("(< 1 ?x 4)", [2, 3]), ("(zero? (- ?x 1))", None),
    ("(even? ?x)", [2, 4]), ("(odd? ?x)", [1, 3]), ("(pos? ?x)", [1, 2, 3, 4]), ("(neg? ?x)", []),
])
def test_builtin_predicates(pred, expected):
    if expected is None:
        return  # nested calls are not allowed (parser); covered by test_nested_call_rejected
    r = q(f'[:find [?x ...] :in [?x ...] :where [{pred}]]', [1, 2, 3, 4])
    assert sorted(r) == expected


def test_mixed_types_compare():
    assert sorted(q('[:find [?x ...] :in [?x ...] :where [(> ?x 1.5)]]', [1, 2, 2.5])) == [2, 2.5]
    assert sorted(q('[:find [?x ...] :in [?x ...] :where [(< ?x "m")]]', ["a", "z"])) == ["a"]


def test_missing():
    _, db, _, _ = people()
    r = q('[:find [?n ...] :where [?e :person/name ?n] [(missing? $ ?e :person/email)]]', db)
    assert sorted(r) == ["Cid", "Eve"]


def test_user_predicate_registered_and_qualified():
    register_query_fn("long-name?", lambda s: len(s) > 3)
    assert q('[:find [?x ...] :in [?x ...] :where [(long-name? ?x)]]', ["Ann", "Annabel"]) == ["Annabel"]
    r = q('[:find [?x ...] :in [?x ...] :where [(operator/contains ?x "b")]]', ["abc", "xyz"])
    assert r == ["abc"]


def test_predicate_from_input_var():
    assert q('[:find [?x ...] :in ?f [?x ...] :where [(?f ?x)]]', lambda x: x > 1, [1, 2]) == [2]


def test_unknown_function_names_clause():
    with pytest.raises(QueryError) as ei:
        q('[:find ?x :in [?x ...] :where [(no-such-fn ?x)]]', [1])
    assert "no-such-fn" in str(ei.value) and "clause" in str(ei.value)


def test_unbound_predicate_var():
    with pytest.raises(QueryError):
        q('[:find ?x :in [?x ...] :where [(> ?y ?x)] [(identity ?x) ?y]]', [1])
