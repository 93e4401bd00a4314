"""Negation and rules: stratum order, and rules that negate themselves through recursion.

A rule may use ``not`` / ``not-join`` over another rule when that rule does not depend back
on it: the negated rule is evaluated completely first (a lower stratum), so the negation
sees all its answers. A rule that reaches itself through a negation has no well-defined
answer; the query fails with a QueryError naming the rules of the cycle, before any of
them is evaluated. Expected results are worked out by hand on test_query_data's people:
friends ann -> bob -> cid -> ann and dee -> eve; parents bob -> ann, cid -> bob, dee -> cid.
"""

import pytest

from fastdatomic.query.engine import q, QueryError, register_query_fn
from test_query_data import people

REACH = '''[(reach ?a ?b) [?a :person/friend ?b]]
           [(reach ?a ?b) [?a :person/friend ?m] (reach ?m ?b)]'''


def names(rules, where, *args):
    _, db, _, _ = people()
    ins = " ".join(f"?x{i}" for i in range(len(args)))
    return sorted(q(f'[:find [?n ...] :in $ % {ins} :where {where} [?e :person/name ?n]]',
                    db, rules, *args))


# --- negation over a lower stratum ------------------------------------------------------------

def test_not_over_recursive_rule_sees_all_its_answers():
    rules = '[' + REACH + ' [(unreached ?a ?b) [?b :person/name] (not (reach ?a ?b))]]'
    # from Ann the friend cycle reaches Ann, Bob, Cid; from Dee only Eve
    assert names(rules, '[?a :person/name "Ann"] (unreached ?a ?e)') == ["Dee", "Eve"]
    assert names(rules, '[?a :person/name "Dee"] (unreached ?a ?e)') == ["Ann", "Bob", "Cid", "Dee"]


def test_not_join_over_recursive_rule():
    rules = '[' + REACH + ' [(lonely ?e) [?e :person/name] (not-join [?e] (reach ?e ?x) (reach ?x ?e))]]'
    assert names(rules, '(lonely ?e)') == ["Dee", "Eve"]


def test_recursive_rule_negating_a_lower_recursive_rule():
    # bad: reachable from node 0; safe: paths that never step on a bad node
    edges = [(0, 5), (5, 6), (1, 2), (2, 6), (2, 3), (3, 4)]
    rules = '''[[(bad ?x) [0 ?x]]
                [(bad ?x) [?m ?x] (bad ?m)]
                [(safe ?a ?b) [?a ?b] (not (bad ?b))]
                [(safe ?a ?b) [?a ?m] (not (bad ?m)) (safe ?m ?b)]]'''
    assert sorted(q('[:find [?b ...] :in $ % :where (safe 1 ?b)]', edges, rules)) == [2, 3, 4]
    assert q('[:find ?a ?b :in $ % :where (safe ?a ?b)]', edges, rules) == {
        (1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)}


def test_three_strata():
    # isolated: cannot reach Ann by friends; connected: not isolated
    rules = '[' + REACH + '''
              [(isolated ?x) [?x :person/name]
                             (not-join [?x] [?a :person/name "Ann"] (reach ?x ?a))]
              [(connected ?x) [?x :person/name] (not (isolated ?x))]]'''
    assert names(rules, '(isolated ?e)') == ["Dee", "Eve"]
    assert names(rules, '(connected ?e)') == ["Ann", "Bob", "Cid"]


def test_not_over_recursive_rule_at_query_level():
    anc = '''[[(anc ?a ?d) [?d :person/parent ?a]]
              [(anc ?a ?d) [?m :person/parent ?a] (anc ?m ?d)]]'''
    assert names(anc, '[?e :person/name] (not-join [?e] [?a :person/name "Ann"] (anc ?a ?e))') \
        == ["Ann", "Eve"]


def test_not_over_plain_data_inside_recursion_is_allowed():
    rules = '''[[(clean-anc ?a ?d) [?d :person/parent ?a] (not [?a :person/tag :admin])]
                [(clean-anc ?a ?d) [?d :person/parent ?m] (clean-anc ?a ?m)]]'''
    # Dee's ancestors are Cid, Bob, Ann; Ann is an admin
    assert names(rules, '[?d :person/name "Dee"] (clean-anc ?e ?d)') == ["Bob", "Cid"]


# --- negation through recursion ---------------------------------------------------------------

def _error(rules, where='(p ?e)'):
    with pytest.raises(QueryError) as ei:
        names(rules, where)
    return ei.value


def test_rule_negating_itself():
    err = _error('[[(p ?x) [?x :person/name] (not (p ?x))]]')
    assert err.data["rules"] == ["p"]
    assert "p" in str(err) and "negation" in str(err)


def test_negation_through_two_rules():
    err = _error('''[[(p ?x) [?x :person/name] (not (q ?x))]
                     [(q ?x) [?x :person/age] (p ?x)]]''')
    assert sorted(err.data["rules"]) == ["p", "q"]
    assert "p" in str(err.message) and "q" in str(err.message)
    assert err.data["cycle"] in (["p", "q", "p"], ["q", "p", "q"])


def test_negation_through_a_longer_cycle_from_outside_it():
    # top calls a; a -> b -> not c -> a: the error names the cycle, not the caller
    err = _error('''[[(top ?x) (a ?x)]
                     [(a ?x) [?x :person/name] (b ?x)]
                     [(b ?x) [?x :person/age] (not (c ?x))]
                     [(c ?x) [?x :person/friend _] (a ?x)]]''', '(top ?e)')
    assert sorted(err.data["rules"]) == ["a", "b", "c"]
    assert err.data["cycle"] == ["b", "c", "a", "b"]


def test_negation_through_recursion_nested_in_or_join():
    err = _error('''[[(p ?x) [?x :person/name]
                             (or-join [?x] (not-join [?x] (r ?x)) [?x :person/age 1])]
                     [(r ?x) [?x :person/friend ?y] (p ?y)]]''')
    assert sorted(err.data["rules"]) == ["p", "r"]


def test_win_move_game_is_rejected():
    edges = [(1, 2), (2, 3)]
    with pytest.raises(QueryError, match="win"):
        q('[:find ?x :in $ % :where (win ?x)]', edges, '[[(win ?x) [?x ?y] (not (win ?y))]]')


def test_rejected_before_evaluating():
    calls = []
    register_query_fn("strat-test/seen", lambda x: calls.append(x) or True)
    with pytest.raises(QueryError):
        names('[[(p ?x) [?x :person/name] [(strat-test/seen ?x)] (not (p ?x))]]', '(p ?e)')
    assert calls == []


def test_unstratified_rule_not_called_does_not_matter():
    rules = '''[[(p ?x) [?x :person/name] (not (p ?x))]
                [(old ?x) [?x :person/age ?a] [(>= ?a 35)]]]'''
    assert names(rules, '(old ?e)') == ["Cid", "Eve"]
