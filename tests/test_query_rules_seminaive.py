"""Recursive rules under semi-naive evaluation: deep chains (work linear in the answers),
cycles, mutual recursion, bound and unbound calls, required bindings, branches and or.

Expected results are worked out by hand from Datomic's rule semantics (a rule's answers
are the union of its branches, recursion to the least fixpoint). Work is measured with the
counters of ``fastdatomic.query.rules`` rather than wall-clock time.
"""

import random

import pytest

from fastdatomic.query import rules as rules_mod
from fastdatomic.query.engine import q, QueryError, QueryTimeoutError
from test_query_data import people
from txfns_helper import fresh_conn

N = 2000

CHAIN_SCHEMA = """[
 {:db/ident :node/name :db/valueType :db.type/long :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}
 {:db/ident :node/parent :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}
]"""

# anc: right-recursive (the recursive call comes last); desc: left-recursive.
ANC = '''[[(anc ?a ?d) [?d :node/parent ?a]]
          [(anc ?a ?d) [?m :node/parent ?a] (anc ?m ?d)]]'''
DESC = '''[[(desc ?a ?d) [?d :node/parent ?a]]
           [(desc ?a ?d) (desc ?a ?m) [?d :node/parent ?m]]]'''
PATH = '[[(path ?a ?b) [?a ?b]] [(path ?a ?b) [?a ?m] (path ?m ?b)]]'

_CHAIN = {}


def chain_db():
    """Nodes 0..N-1 named by number; node i's parent is node i-1."""
    if "db" not in _CHAIN:
        conn = fresh_conn(CHAIN_SCHEMA)
        tx = [{":db/id": f"n{i}", ":node/name": i} for i in range(N)]
        tx += [[":db/add", f"n{i}", ":node/parent", f"n{i - 1}"] for i in range(1, N)]
        conn.transact(tx)
        _CHAIN["db"] = conn.db()
    return _CHAIN["db"]


def work(fn):
    rules_mod.reset_stats()
    out = fn()
    return out, rules_mod.stats()


def assert_linear(st, n):
    # Each answer is pushed once, each stored row joined once: a constant per chain link.
    assert st.get("delta_rows", 0) <= 3 * n, st
    assert st.get("site_rows", 0) <= 3 * n, st
    assert st.get("seed_rows", 0) <= 3 * n, st
    assert st.get("rounds", 0) <= n + 10, st
    assert st.get("naive", 0) == 0, st


# --- deep chains ------------------------------------------------------------------------------

def test_deep_chain_ancestors_of_last_node():
    db = chain_db()
    r, st = work(lambda: q('[:find [?n ...] :in $ % ?last '
                           ':where [?d :node/name ?last] (anc ?a ?d) [?a :node/name ?n]]',
                           db, ANC, N - 1))
    assert sorted(r) == list(range(N - 1))
    assert_linear(st, N)


def test_deep_chain_descendants_left_recursive():
    db = chain_db()
    r, st = work(lambda: q('[:find [?n ...] :in $ % :where [?a :node/name 0] (desc ?a ?d) '
                           '[?d :node/name ?n]]', db, DESC))
    assert sorted(r) == list(range(1, N))
    assert_linear(st, N)


def test_deep_chain_yes_no_question():
    db = chain_db()
    ask = '[:find ?a . :in $ % ?x ?y :where [?a :node/name ?x] [?d :node/name ?y] (anc ?a ?d)]'
    assert q(ask, db, ANC, 0, N - 1) is not None
    assert q(ask, db, ANC, N - 1, 0) is None
    assert q(ask, db, ANC, 5, 5) is None      # a node is not its own ancestor


def test_deep_chain_on_a_collection():
    edges = [(i, i + 1) for i in range(N)]
    r, st = work(lambda: q('[:find [?a ...] :in $ % :where (path ?a 2000)]', edges, PATH))
    assert sorted(r) == list(range(N))
    assert_linear(st, N)


# --- cycles -----------------------------------------------------------------------------------

def test_ring_reaches_every_node():
    ring = [(i, (i + 1) % 50) for i in range(50)]
    assert sorted(q('[:find [?b ...] :in $ % :where (path 7 ?b)]', ring, PATH)) == list(range(50))
    assert len(q('[:find ?a ?b :in $ % :where (path ?a ?b)]', ring, PATH)) == 50 * 50


def test_nodes_on_cycles_by_repeated_variable():
    edges = [(1, 2), (2, 1), (3, 3), (4, 5), (5, 6)]
    assert sorted(q('[:find [?x ...] :in $ % :where (path ?x ?x)]', edges, PATH)) == [1, 2, 3]


def test_cycle_on_database_from_every_person():
    _, db, ids, _ = people()
    reach = '''[[(reach ?a ?b) [?a :person/friend ?b]]
                [(reach ?a ?b) [?a :person/friend ?m] (reach ?m ?b)]]'''
    r = q('[:find ?n ?m :in $ % :where [?a :person/name ?n] (reach ?a ?b) [?b :person/name ?m]]',
          db, reach)
    cycle = {"Ann", "Bob", "Cid"}
    assert r == {(x, y) for x in cycle for y in cycle} | {("Dee", "Eve")}


# --- mutual recursion -------------------------------------------------------------------------

EVEN_ODD = '''[[(odd ?a ?b) [?a ?b]]
               [(odd ?a ?b) [?a ?m] (even ?m ?b)]
               [(even ?a ?b) [?a ?m] (odd ?m ?b)]]'''


def test_mutual_recursion_even_and_odd_path_lengths():
    line = [(i, i + 1) for i in range(9)]          # 0 -> 1 -> ... -> 9
    assert sorted(q('[:find [?b ...] :in $ % :where (odd 0 ?b)]', line, EVEN_ODD)) == [1, 3, 5, 7, 9]
    assert sorted(q('[:find [?b ...] :in $ % :where (even 0 ?b)]', line, EVEN_ODD)) == [2, 4, 6, 8]
    assert sorted(q('[:find [?a ...] :in $ % :where (even ?a 9)]', line, EVEN_ODD)) == [1, 3, 5, 7]


def test_mutual_recursion_around_rings():
    ring3 = [(0, 1), (1, 2), (2, 0)]               # odd and even walks reach every node
    ring4 = [(0, 1), (1, 2), (2, 3), (3, 0)]       # parity of the node is the walk's parity
    assert sorted(q('[:find [?b ...] :in $ % :where (odd 0 ?b)]', ring3, EVEN_ODD)) == [0, 1, 2]
    assert sorted(q('[:find [?b ...] :in $ % :where (even 0 ?b)]', ring3, EVEN_ODD)) == [0, 1, 2]
    assert sorted(q('[:find [?b ...] :in $ % :where (odd 0 ?b)]', ring4, EVEN_ODD)) == [1, 3]
    assert sorted(q('[:find [?b ...] :in $ % :where (even 0 ?b)]', ring4, EVEN_ODD)) == [0, 2]
    assert q('[:find ?a ?b :in $ % :where (even ?a ?b)]', ring4, EVEN_ODD) == \
        {(a, b) for a in range(4) for b in range(4) if (b - a) % 2 == 0}


def test_three_rules_in_one_cycle():
    rules = '''[[(a ?x ?y) [?x ?y]]
                [(a ?x ?y) [?x ?m] (b ?m ?y)]
                [(b ?x ?y) [?x ?m] (c ?m ?y)]
                [(c ?x ?y) [?x ?m] (a ?m ?y)]]'''
    line = [(i, i + 1) for i in range(9)]          # a: walks of length 1, 4, 7, ...
    assert sorted(q('[:find [?y ...] :in $ % :where (a 0 ?y)]', line, rules)) == [1, 4, 7]
    assert sorted(q('[:find [?y ...] :in $ % :where (b 0 ?y)]', line, rules)) == [3, 6, 9]
    assert sorted(q('[:find [?y ...] :in $ % :where (c 0 ?y)]', line, rules)) == [2, 5, 8]


def test_mutual_recursion_deep_is_linear():
    line = [(i, i + 1) for i in range(N)]
    r, st = work(lambda: q('[:find [?a ...] :in $ % :where (odd ?a 2000)]', line, EVEN_ODD))
    assert sorted(r) == list(range(1, N, 2))
    assert_linear(st, N)


# --- bound and unbound calls ------------------------------------------------------------------

DIAMOND = [(1, 2), (1, 3), (2, 4), (3, 4), (4, 5)]


def test_bound_unbound_and_both_bound_calls():
    assert sorted(q('[:find [?b ...] :in $ % :where (path 1 ?b)]', DIAMOND, PATH)) == [2, 3, 4, 5]
    assert sorted(q('[:find [?a ...] :in $ % :where (path ?a 5)]', DIAMOND, PATH)) == [1, 2, 3, 4]
    assert q('[:find ?a ?b :in $ % :where (path ?a ?b)]', DIAMOND, PATH) == {
        (1, 2), (1, 3), (1, 4), (1, 5), (2, 4), (2, 5), (3, 4), (3, 5), (4, 5)}
    yes = '[:find ?x . :in $ % ?x ?y :where (path ?x ?y)]'
    assert q(yes, DIAMOND, PATH, 1, 5) == 1
    assert q(yes, DIAMOND, PATH, 2, 3) is None


def test_same_rule_called_again_with_new_bindings():
    # the second call binds ?a to the first call's answers: new seeds for tabled answers
    assert sorted(q('[:find [?x ...] :in $ % :where (path ?a 4) (path ?a ?x)]', DIAMOND, PATH)) \
        == [2, 3, 4, 5]
    _, db, _, _ = people()
    anc = '''[[(anc ?a ?d) [?d :person/parent ?a]]
              [(anc ?a ?d) [?m :person/parent ?a] (anc ?m ?d)]]'''
    r = q('[:find [?n ...] :in $ % :where [?d :person/name "Dee"] (anc ?a ?d) (anc ?a ?x) '
          '[?x :person/name ?n]]', db, anc)
    assert sorted(r) == ["Bob", "Cid", "Dee"]


def test_required_binding_in_recursive_rule():
    _, db, _, _ = people()
    rules = '''[[(ancestor [?d] ?a) [?d :person/parent ?a]]
                [(ancestor [?d] ?a) [?d :person/parent ?m] (ancestor ?m ?a)]]'''
    r = q('[:find [?n ...] :in $ % :where [?d :person/name "Dee"] (ancestor ?d ?a) '
          '[?a :person/name ?n]]', db, rules)
    assert sorted(r) == ["Ann", "Bob", "Cid"]
    with pytest.raises(QueryError, match="(?i)insufficient bindings"):
        q('[:find ?d :in $ % :where (ancestor ?d ?a)]', db, rules)


# --- branches and or --------------------------------------------------------------------------

CONN_FROM_DEE = ["Ann", "Bob", "Cid", "Eve"]   # dee -friend-> eve, dee -parent-> cid -> ...


def _linked_from_dee(rules):
    _, db, _, _ = people()
    return sorted(q('[:find [?n ...] :in $ % :where [?a :person/name "Dee"] (conn ?a ?b) '
                    '[?b :person/name ?n]]', db, rules))


def test_several_branches():
    rules = '''[[(link ?a ?b) [?a :person/friend ?b]]
                [(link ?a ?b) [?a :person/parent ?b]]
                [(conn ?a ?b) (link ?a ?b)]
                [(conn ?a ?b) (link ?a ?m) (conn ?m ?b)]]'''
    assert _linked_from_dee(rules) == CONN_FROM_DEE


def test_or_in_recursive_branch():
    rules = '''[[(conn ?a ?b) (or [?a :person/friend ?b] [?a :person/parent ?b])]
                [(conn ?a ?b) (or [?a :person/friend ?m] [?a :person/parent ?m]) (conn ?m ?b)]]'''
    assert _linked_from_dee(rules) == CONN_FROM_DEE


def test_recursive_call_inside_or_join():
    # the recursive call cannot be split out of the or-join: that branch is re-evaluated whole
    rules = '''[[(conn ?a ?b)
                 (or-join [?a ?b]
                   [?a :person/friend ?b]
                   [?a :person/parent ?b]
                   (and [?a :person/friend ?m] (conn ?m ?b))
                   (and [?a :person/parent ?m] (conn ?m ?b)))]]'''
    (r, st) = work(lambda: _linked_from_dee(rules))
    assert r == CONN_FROM_DEE
    assert st["naive"] > 0


def test_recursion_mixing_split_and_or_nested_calls():
    rules = '''[[(conn ?a ?b) [?a :person/friend ?b]]
                [(conn ?a ?b) [?a :person/friend ?m] (conn ?m ?b)]
                [(conn ?a ?b) (or-join [?a ?b] (and [?a :person/parent ?m] (conn ?m ?b))
                                               [?a :person/parent ?b])]]'''
    assert _linked_from_dee(rules) == CONN_FROM_DEE


def test_recursive_rule_calling_lower_recursive_rule():
    # family: friends-of-friends of any ancestor; reach is complete before fam reads it
    _, db, _, _ = people()
    rules = '''[[(reach ?a ?b) [?a :person/friend ?b]]
                [(reach ?a ?b) [?a :person/friend ?m] (reach ?m ?b)]
                [(fam ?a ?b) [?a :person/parent ?p] (reach ?p ?b)]
                [(fam ?a ?b) [?a :person/parent ?p] (fam ?p ?b)]]'''
    r = q('[:find [?n ...] :in $ % :where [?a :person/name "Dee"] (fam ?a ?b) '
          '[?b :person/name ?n]]', db, rules)
    assert sorted(r) == ["Ann", "Bob", "Cid"]


def test_branch_that_does_not_bind_its_head():
    with pytest.raises(QueryError, match="does not bind"):
        q('[:find ?a :in $ % :where (r ?a ?b)]', DIAMOND,
          '[[(r ?a ?b) [?a ?m] (r ?m ?c)] [(r ?a ?b) [?a ?b]]]')


# --- runaway recursion ------------------------------------------------------------------------

def test_runaway_recursion_times_out():
    rules = '[[(nat ?n) [(ground 0) ?n]] [(nat ?n) (nat ?m) [(inc ?m) ?n]]]'
    with pytest.raises(QueryTimeoutError):
        q({":find": ["?n"], ":in": ["%"], ":where": [("nat", "?n")], ":timeout": 200}, rules)


# --- against a reference ----------------------------------------------------------------------

def _closure(edges):
    succ = {}
    for a, b in edges:
        succ.setdefault(a, set()).add(b)
    out = set()
    for a in list(succ):
        seen, todo = set(), [a]
        while todo:
            for b in succ.get(todo.pop(), ()):
                if b not in seen:
                    seen.add(b)
                    todo.append(b)
        out |= {(a, b) for b in seen}
    return out


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_match_reference_closure(seed):
    rnd = random.Random(seed)
    n = rnd.randint(3, 25)
    edges = list({(rnd.randrange(n), rnd.randrange(n)) for _ in range(rnd.randint(1, 2 * n))})
    ref = _closure(edges)
    assert q('[:find ?a ?b :in $ % :where (path ?a ?b)]', edges, PATH) == ref
    assert q('[:find ?a ?b :in $ % :where (path ?a ?b)]', edges,
             '[[(path ?a ?b) [?a ?b]] [(path ?a ?b) (path ?a ?m) (path ?m ?b)]]') == ref
    for x in range(n):
        got = q('[:find [?b ...] :in $ % ?x :where (path ?x ?b)]', edges, PATH, x)
        assert sorted(got) == sorted(b for a, b in ref if a == x)
        got = q('[:find [?a ...] :in $ % ?x :where (path ?a ?x)]', edges, PATH, x)
        assert sorted(got) == sorted(a for a, b in ref if b == x)
