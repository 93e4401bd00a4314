"""The Datalog query parser: every grammar form from EDN text and from Python data, hand-written ASTs."""

import pytest

from fastdatomic.errors import QueryParseError
from fastdatomic.query.ast import (
    Aggregate, And, BindColl, BindIgnore, BindRel, BindScalar, BindTuple, Constant, FindColl,
    FindRel, FindScalar, FindTuple, Function, Not, NotJoin, Or, OrderKey, OrJoin, Pattern,
    PlainSymbol, Placeholder, Predicate, Pull, Query, ReturnMap, Rule, RuleBranch, RuleExpr,
    RulesVar, RuleVars, SrcVar,
)
from fastdatomic.query.ast import Variable
from fastdatomic.query.parser import clear_cache, parse_query, parse_rules
from fastdatomic.types import Keyword as K, Symbol as S


def V(n):
    return Variable(S(n))


def C(x):
    return Constant(x)


def P(n):
    return PlainSymbol(S(n))


DOLLAR = (SrcVar(S("$")),)


def q(text):
    return parse_query(text)


def both(text, data):
    """Parse the EDN text and the Python data, check they agree, return the Query."""
    a, b = parse_query(text), parse_query(data)
    assert a == b
    return a


# --- DataScript benchmark queries ------------------------------------------------

def test_q1():
    r = both('[:find ?e :where [?e :name "Ivan"]]', [":find", "?e", ":where", ["?e", ":name", "Ivan"]])
    assert r == Query(find=FindRel((V("?e"),)), inputs=DOLLAR,
                      where=(Pattern(None, (V("?e"), C(K("name")), C("Ivan"))),))
    assert r.keys is None and r.with_ == () and r.rules_var is None and r.limit is None


def test_q2():
    r = both('[:find ?e ?a :where [?e :name "Ivan"] [?e :age ?a]]',
             [":find", "?e", "?a", ":where", ["?e", ":name", "Ivan"], ["?e", ":age", "?a"]])
    assert r.find == FindRel((V("?e"), V("?a")))
    assert r.where[1] == Pattern(None, (V("?e"), C(K("age")), V("?a")))


def test_q3_q4():
    r = q('[:find ?e ?a ?s :where [?e :name "Ivan"] [?e :age ?a] [?e :sex ?s]]')
    assert len(r.where) == 3 and r.find.vars() == (V("?e"), V("?a"), V("?s"))
    r = q('[:find ?e ?l ?a :where [?e :name "Ivan"] [?e :last-name ?l] [?e :age ?a] [?e :sex :male]]')
    assert r.where[3] == Pattern(None, (V("?e"), C(K("sex")), C(K("male"))))


def test_qpred1():
    r = both('[:find ?e ?s :where [?e :salary ?s] [(> ?s 50000)]]',
             [":find", "?e", "?s", ":where", ["?e", ":salary", "?s"], [(">", "?s", 50000)]])
    assert r.where[1] == Predicate(P(">"), (V("?s"), C(50000)))


def test_qpred2():
    r = both('[:find ?e ?s :in $ ?min_s :where [?e :salary ?s] [(> ?s ?min_s)]]',
             {":find": ["?e", "?s"], ":in": ["$", "?min_s"],
              ":where": [["?e", ":salary", "?s"], [(">", "?s", "?min_s")]]})
    assert r.inputs == (SrcVar(S("$")), BindScalar(V("?min_s")))
    assert r.where[1] == Predicate(P(">"), (V("?s"), V("?min_s")))


# --- find specs ---------------------------------------------------------------------

def test_find_shapes():
    w = ' :where [?e :a ?x]]'
    assert q('[:find [?x ...]' + w).find == FindColl(V("?x"))
    assert q('[:find ?x .' + w).find == FindScalar(V("?x"))
    assert q('[:find [?e ?x]' + w).find == FindTuple((V("?e"), V("?x")))
    assert parse_query([":find", ["?x", "..."], ":where", ["?e", ":a", "?x"]]).find == FindColl(V("?x"))
    assert parse_query([":find", "?x", ".", ":where", ["?e", ":a", "?x"]]).find == FindScalar(V("?x"))
    assert parse_query({":find": [["?e", "?x"]], ":where": [["?e", ":a", "?x"]]}).find == \
        FindTuple((V("?e"), V("?x")))


def test_pull_and_aggregates():
    r = both('[:find (pull ?e [:name {:friend [*]}]) (count ?x) (max 3 ?x) (sum ?x) (my.ns/agg ?x) '
             ':with ?w :where [?e :a ?x] [?e :w ?w]]',
             [":find", ("pull", "?e", [K("name"), {K("friend"): [S("*")]}]), ("count", "?x"),
              ("max", 3, "?x"), ("sum", "?x"), ("my.ns/agg", "?x"),
              ":with", "?w", ":where", ["?e", ":a", "?x"], ["?e", ":w", "?w"]])
    assert r.find == FindRel((
        Pull(None, V("?e"), [K("name"), {K("friend"): [S("*")]}]),
        Aggregate(P("count"), (V("?x"),)),
        Aggregate(P("max"), (C(3), V("?x"))),
        Aggregate(P("sum"), (V("?x"),)),
        Aggregate(P("my.ns/agg"), (V("?x"),)),
    ))
    assert r.with_ == (V("?w"),) and r.has_aggregates()
    named = q('[:find (pull $h ?e pat) . :in $ $h pat :where [?e :a]]')
    assert named.find == FindScalar(Pull(SrcVar(S("$h")), V("?e"), P("pat")))
    assert named.inputs == (SrcVar(S("$")), SrcVar(S("$h")), P("pat"))


def test_return_maps():
    r = both('[:find ?a ?b :keys a b :where [?a :x ?b]]',
             [":find", "?a", "?b", ":keys", "a", "b", ":where", ["?a", ":x", "?b"]])
    assert r.keys == ReturnMap("keys", ("a", "b"))
    assert r.keys.result_keys() == (K("a"), K("b"))
    assert q('[:find ?a :strs a :where [?a :x]]').keys.result_keys() == ("a",)
    assert q('[:find [?a ?b] :syms a b :where [?a :x ?b]]').keys.result_keys() == (S("a"), S("b"))


# --- :in ------------------------------------------------------------------------

def test_inputs():
    r = both('[:find ?e :in $ $src ?x [?a ?b] [?c ...] [[?d _]] _ % :where [?e :a ?x] [$src ?e :b ?a] '
             '[?e :c ?b] [?e :d ?c] [?e :e ?d] (r ?e)]',
             [":find", "?e", ":in", "$", "$src", "?x", ["?a", "?b"], ["?c", "..."], [["?d", "_"]], "_", "%",
              ":where", ["?e", ":a", "?x"], ["$src", "?e", ":b", "?a"], ["?e", ":c", "?b"],
              ["?e", ":d", "?c"], ["?e", ":e", "?d"], ("r", "?e")])
    assert r.inputs == (SrcVar(S("$")), SrcVar(S("$src")), BindScalar(V("?x")),
                        BindTuple((V("?a"), V("?b"))), BindColl(V("?c")),
                        BindRel((V("?d"), Placeholder())), BindIgnore(), RulesVar())
    assert r.rules_var == RulesVar() and r.sources() == (SrcVar(S("$")), SrcVar(S("$src")))
    assert r.vars_bound_by_inputs() == {V("?x"), V("?a"), V("?b"), V("?c"), V("?d")}
    assert r.where[1] == Pattern(SrcVar(S("$src")), (V("?e"), C(K("b")), V("?a")))


def test_default_in():
    assert q('[:find ?e :where [?e :a]]').inputs == DOLLAR
    assert q('[:find ?x :in ?x]').where == ()


# --- :where -----------------------------------------------------------------------

def test_data_patterns():
    r = both('[:find ?e :where [?e _ "x" ?tx false] [$ ?e :a/b] [_ :a ?e]]',
             [":find", "?e", ":where", ["?e", "_", "x", "?tx", False], ["$", "?e", ":a/b"], ["_", ":a", "?e"]])
    assert r.where == (Pattern(None, (V("?e"), Placeholder(), C("x"), V("?tx"), C(False))),
                       Pattern(SrcVar(S("$")), (V("?e"), C(K("a/b")))),
                       Pattern(None, (Placeholder(), C(K("a")), V("?e"))))
    # a ":x" string is a keyword only in attribute position; Constant escapes a ?-string
    r = parse_query([":find", "?e", ":where", ["?e", ":a", ":not-a-kw"], ["?e", ":b", Constant("?lit")]])
    assert r.where[0].elements[2] == C(":not-a-kw") and r.where[1].elements[2] == C("?lit")


def test_predicates():
    for op in (">", "<", "=", "not=", ">=", "<=", "!=", "my.ns/ok?"):
        r = q(f'[:find ?x :where [?e :a ?x] [?e :b ?y] [({op} ?x ?y)]]')
        assert r.where[2] == Predicate(P(op), (V("?x"), V("?y")))
    r = q('[:find ?e :in $ ?f :where [?e :a ?x] [(?f ?x)] [(missing? $ ?e :b)]]')
    assert r.where[1] == Predicate(V("?f"), (V("?x"),))
    assert r.where[2] == Predicate(P("missing?"), (SrcVar(S("$")), V("?e"), C(K("b"))))


def test_function_bindings():
    r = both('[:find ?y ?a ?b ?c ?d :where [?e :v ?x] [(inc ?x) ?y] [(f ?x) [?a ?b]] [(g ?x) [?c ...]] '
             '[(h ?x) [[?d _]]] [(k ?x) _]]',
             [":find", "?y", "?a", "?b", "?c", "?d", ":where", ["?e", ":v", "?x"], [("inc", "?x"), "?y"],
              [("f", "?x"), ["?a", "?b"]], [("g", "?x"), ["?c", "..."]], [("h", "?x"), [["?d", "_"]]],
              [("k", "?x"), "_"]])
    assert r.where[1:] == (
        Function(P("inc"), (V("?x"),), BindScalar(V("?y"))),
        Function(P("f"), (V("?x"),), BindTuple((V("?a"), V("?b")))),
        Function(P("g"), (V("?x"),), BindColl(V("?c"))),
        Function(P("h"), (V("?x"),), BindRel((V("?d"), Placeholder()))),
        Function(P("k"), (V("?x"),), BindIgnore()),
    )
    assert r.vars_bound_by_where() == {V(n) for n in ("?e", "?x", "?y", "?a", "?b", "?c", "?d")}


def test_rule_invocation():
    r = both('[:find ?e :in $ $h % :where [?e :a] (anc ?e ?x) ($h anc ?e "c") (anc _ ?e)]',
             [":find", "?e", ":in", "$", "$h", "%", ":where", ["?e", ":a"], ("anc", "?e", "?x"),
              ("$h", "anc", "?e", "c"), ("anc", "_", "?e")])
    assert r.where[1:] == (RuleExpr(None, P("anc"), (V("?e"), V("?x"))),
                           RuleExpr(SrcVar(S("$h")), P("anc"), (V("?e"), C("c"))),
                           RuleExpr(None, P("anc"), (Placeholder(), V("?e"))))


def test_not_and_not_join():
    r = both('[:find ?e :in $ $h :where [?e :a ?x] (not [?e :dead true]) (not-join [?e] [?e :f ?z] [?z :g 1]) '
             '($h not [?e :b])]',
             [":find", "?e", ":in", "$", "$h", ":where", ["?e", ":a", "?x"], ("not", ["?e", ":dead", True]),
              ("not-join", ["?e"], ["?e", ":f", "?z"], ["?z", ":g", 1]), ("$h", "not", ["?e", ":b"])])
    assert r.where[1:] == (
        Not(None, (Pattern(None, (V("?e"), C(K("dead")), C(True))),)),
        NotJoin(None, (V("?e"),), (Pattern(None, (V("?e"), C(K("f")), V("?z"))),
                                   Pattern(None, (V("?z"), C(K("g")), C(1))))),
        Not(SrcVar(S("$h")), (Pattern(None, (V("?e"), C(K("b")))),)),
    )


def test_or_and_or_join():
    r = both('[:find ?e :where [?e :t ?t] (or [?e :a ?v] (and [?e :b ?v] [(> ?v 2)])) '
             '(or-join [?e] [?e :c ?z] [?e :d]) (or-join [[?t] ?e] [?e :k ?t])]',
             [":find", "?e", ":where", ["?e", ":t", "?t"],
              ("or", ["?e", ":a", "?v"], ("and", ["?e", ":b", "?v"], [(">", "?v", 2)])),
              ("or-join", ["?e"], ["?e", ":c", "?z"], ["?e", ":d"]),
              ("or-join", [["?t"], "?e"], ["?e", ":k", "?t"])])
    assert r.where[1] == Or(None, (Pattern(None, (V("?e"), C(K("a")), V("?v"))),
                                   And((Pattern(None, (V("?e"), C(K("b")), V("?v"))),
                                        Predicate(P(">"), (V("?v"), C(2)))))))
    assert r.where[2] == OrJoin(None, RuleVars((), (V("?e"),)),
                                (Pattern(None, (V("?e"), C(K("c")), V("?z"))), Pattern(None, (V("?e"), C(K("d"))))))
    assert r.where[3].rule_vars == RuleVars((V("?t"),), (V("?e"),))


def test_or_with_same_vars_ok_and_error():
    q('[:find ?e :where [?e :x] (or [?e :a ?v] [?e :b ?v])]')  # both branches use ?e ?v


# --- rules ---------------------------------------------------------------------

ANCESTOR = '''[[(ancestor ?a ?b) [?a :parent ?b]]
               [(ancestor ?a ?b) [?a :parent ?x] (ancestor ?x ?b)]
               [(named [?e] ?n) [?e :name ?n]]]'''


def test_rules_recursive():
    rules = parse_rules(ANCESTOR)
    anc, named = rules
    assert anc == Rule(P("ancestor"), (
        RuleBranch(P("ancestor"), RuleVars((), (V("?a"), V("?b"))),
                   (Pattern(None, (V("?a"), C(K("parent")), V("?b"))),)),
        RuleBranch(P("ancestor"), RuleVars((), (V("?a"), V("?b"))),
                   (Pattern(None, (V("?a"), C(K("parent")), V("?x"))),
                    RuleExpr(None, P("ancestor"), (V("?x"), V("?b"))))),
    ))
    assert named.branches[0].vars == RuleVars((V("?e"),), (V("?n"),)) and named.arity == (1, 1)
    data = [[("ancestor", "?a", "?b"), ["?a", ":parent", "?b"]],
            [("ancestor", "?a", "?b"), ["?a", ":parent", "?x"], ("ancestor", "?x", "?b")],
            [("named", ["?e"], "?n"), ["?e", ":name", "?n"]]]
    assert parse_rules(data) == rules
    assert parse_rules(ANCESTOR) is rules


def test_rules_errors():
    with pytest.raises(QueryParseError, match=r"Arity mismatch for rule 'r'.*\[\?a\] vs\. \[\?a \?b\]"):
        parse_rules('[[(r ?a) [?a :x]] [(r ?a ?b) [?a :x ?b]]]')
    with pytest.raises(QueryParseError, match=r"rule name must be an unqualified.*my/r"):
        parse_rules('[[(my/r ?a) [?a :x]]]')
    with pytest.raises(QueryParseError, match=r"Query is referencing unbound variables #\{\?q\}.*\[\(> \?q 1\)\]"):
        parse_rules('[[(r ?a) [?a :x] [(> ?q 1)]]]')
    with pytest.raises(QueryParseError, match=r"cannot parse rule"):
        parse_rules('[[(r ?a)]]')


# --- Datomic documentation examples --------------------------------------------------

def test_doc_examples():
    q('[:find ?artist-name ?release-name :keys artist release '
      ':where [?release :release/name ?release-name] [?release :release/artists ?artist] '
      '[?artist :artist/name ?artist-name]]')
    r = q('[:find (pull ?e [:release/name]) :in $ ?artist :where [?e :release/artists ?artist]]')
    assert type(r.find.elements[0]) is Pull
    r = q('[:find ?year (median ?track-count) (avg ?track-count) :with ?media '
          ':where [?medium :medium/trackCount ?track-count] [?media :release/media ?medium] '
          '[?media :release/year ?year]]')
    assert r.with_ == (V("?media"),)
    q('[:find (count ?artist) . :where [?artist :artist/name] '
      '(not-join [?artist] [?release :release/artists ?artist] [?release :release/year 1970])]')
    q('[:find (count ?release) . :where [?release :release/name] '
      '(or-join [?release] (and [?release :release/artists ?artist] [?artist :artist/country :country/CA]) '
      '[?release :release/year 1970])]')
    q('[:find ?name :in $ % :where [?e :person/name "Ann"] (ancestor ?e ?a) [?a :person/name ?name]]')
    q('[:find [?name ...] :in $ ?artist :where [?release :release/artists ?artist] '
      '[?release :release/name ?name] [(get-else $ ?release :release/year 0) ?year] [(ground 1) ?one]]')


# --- map-form extensions ---------------------------------------------------------------

def test_map_form_extensions():
    r = both('{:find [?e ?x] :where [[?e :a ?x]] :order-by [[?x :desc] ?e] :limit 10 :offset 5 :timeout 1000}',
             {K("find"): ["?e", "?x"], K("where"): [["?e", ":a", "?x"]],
              K("order-by"): [["?x", ":desc"], "?e"], ":limit": 10, ":offset": 5, ":timeout": 1000})
    assert r.order_by == (OrderKey(V("?x"), True), OrderKey(V("?e"), False))
    assert (r.limit, r.offset, r.timeout) == (10, 5, 1000)
    assert parse_query(r.to_edn()) == r


@pytest.mark.parametrize("text,msg", [
    ('{:find [?e] :where [[?e :a]] :limit -1}', r":limit must be an integer >= 0, got -1"),
    ('{:find [?e] :where [[?e :a]] :offset 1.5}', r":offset must be an integer"),
    ('{:find [?e] :where [[?e :a]] :timeout true}', r":timeout must be an integer"),
    ('{:find [?e] :where [[?e :a ?z]] :order-by [?z]}', r":order-by variable \?z is not in :find or :with"),
    ('{:find [?e] :where [[?e :a]] :order-by [[?e :up]]}', r"cannot parse :order-by entry \[\?e :up\]"),
    ('[:find ?e :where [?e :a] :limit 3]', r":limit is only allowed in the map form"),
])
def test_map_form_errors(text, msg):
    with pytest.raises(QueryParseError, match=msg):
        q(text)


# --- validation: errors name the clause --------------------------------------------------

@pytest.mark.parametrize("text,msg", [
    ('[:find ?e :foo ?x :where [?e :a]]', r"unknown query key :foo"),
    ('{:find [?e] :frob 1}', r"unknown query key :frob"),
    ('[:find ?x :where [?e :a ?y]]', r"Query is referencing unbound variables #\{\?x\}.* in \[:find \?x\]"),
    ('[:find ?e :with ?w :where [?e :a]]', r"Query is referencing unbound variables #\{\?w\} in :with in \[:with \?w\]"),
    ('[:find ?e :where [?e :a ?y] [(> ?q 1)]]',
     r"unbound variables #\{\?q\}.* in \[\(> \?q 1\)\] \(:where clause #1\)"),
    ('[:find ?e :where [?e :a ?y] [(inc ?y2) ?y2]]', r"unbound variables #\{\?y2\}.*\[\(inc \?y2\) \?y2\] \(:where clause #1\)"),
    ('[:find ?e :where [?e :a] (not [?z :b 1])]',
     r"Insufficient bindings, none of #\{\?z\} is bound.* in \(not \[\?z :b 1\]\) \(:where clause #1\)"),
    ('[:find ?e :where [?e :a ?y] (not-join [?q] [?q :b ?y])]',
     r"not-join vars must be bound.*\?q.* in \(not-join \[\?q\] \[\?q :b \?y\]\) \(:where clause #1\)"),
    ('[:find ?e :where [?e :a] (or [?e :b ?z] [?e :c 1])]',
     r"All clauses in 'or' must use same set of free vars, had \[#\{\?e \?z\} #\{\?e\}\].*"
     r"in \(or \[\?e :b \?z\] \[\?e :c 1\]\) \(:where clause #1\)"),
    ('[:find ?e :where [?e :a] (or-join [[?r] ?e] [?e :b ?r])]',
     r"required vars #\{\?r\} of or-join are not bound.*\(:where clause #1\)"),
    ('[:find ?e :where [?e :a] (or-join [?e ?e] [?e :b])]', r"or-join vars must be distinct.*\(:where clause #1\)"),
    ('[:find ?e :where [?e :a] (or-join [?e ?k] [?e :b])]',
     r"or-join vars #\{\?k\} are not used in branch \[\?e :b\].*\(:where clause #1\)"),
    ('[:find ?e :where [?e :a] (or-join ?e [?e :b])]', r"cannot parse or-join vars ?\?e"),
    ('[:find ?e :where [?e :a ?y 1 true 3]]',
     r"at most 5 elements.*got 6 in \[\?e :a \?y 1 true 3\] \(:where clause #0\)"),
    ('[:find ?e :where [?e :a] []]', r"empty clause in \[\] \(:where clause #1\)"),
    ('[:find ?e :where [?e :a] ()]', r"empty clause in \(\) \(:where clause #1\)"),
    ('[:find ?e :where [?e :a] "x"]', r"cannot parse clause \"x\""),
    ('[:find ?e :keys a b :where [?e :a]]', r"Count of :keys \(2\) does not match count of :find \(1\) in \[:keys a b\]"),
    ('[:find [?e ...] :keys a :where [?e :a]]', r":keys needs a relation or tuple find spec"),
    ('[:find ?e :in ?x ?x :where [?e :a ?x]]', r"duplicate :in input \?x in \[:in \?x \?x\]"),
    ('[:find ?e :in $ $ :where [?e :a]]', r"duplicate :in input \$"),
    ('[:find ?e :in [?x ?x] :where [?e :a ?x]]', r"duplicate :in input \?x"),
    ('[:find ?e :in (count ?x) :where [?e :a]]', r"only allowed in :find.*\(count \?x\)"),
    ('[:find ?e :with (count ?x) :where [?e :a ?x]]', r"only allowed in :find, not in :with: \(count \?x\)"),
    ('[:find (max (count ?x)) :where [?e :a ?x]]', r"nested expressions are not allowed"),
    ('[:find ?a [?b] :where [?a :b ?b]]', r"unknown find spec shape: \[\?b\]"),
    ('[:find ?a ?b . :where [?a :b ?b]]', r"unknown find spec shape: \."),
    ('[:find [] :where [?a :b]]', r"empty find tuple"),
    ('[:find :where [?a :b]]', r"query key :find has no values"),
    ('[:find "x" :where [?a :b]]', r"cannot parse find element \"x\""),
    ('[:find (pull ?e) :where [?e :b]]', r"expected \(pull src-var\? \?e pattern\)"),
    ('[:find (pull ?e pat) :where [?e :b]]', r"pull pattern name pat is not given in :in"),
    ('[:find ?e :where [$h ?e :a]]', r"unknown source var \$h.*\(:where clause #0\)"),
    ('[:find ?e :where [?e :a] (r ?e)]', r"rule call without rules: add % to :in in \(r \?e\) \(:where clause #1\)"),
    ('[:find ?e :where [?e :a] (and [?e :b])]', r"'and' is only allowed.*\(:where clause #1\)"),
    ('[:find ?e :where [?e :a] [(> ?e 1) ?x ?y]]', r"cannot parse expression clause"),
    ('[:find ?e :where [?e :a] [(f ?e) [?x [?y]]]]', r"expected a variable.*in a binding"),
    ('[:find ?e :where [?e :a] [(f _)]]', r"'_' cannot be a function argument"),
    ('[:find ?e :where [?e :a ?x] (not (or [?e :b 1] [?q :c 2]))]',
     r"same set of free vars.*in \(or \[\?e :b 1\] \[\?q :c 2\]\), inside \(not \(or .*\(:where clause #1\)"),
    ('[:find ?e :find ?x :where [?e :a ?x]]', r"query key :find given twice"),
    ('[?e :where [?e :a]]', r"a query must start with :find"),
    ('[:find ?e :where [?e :a "unclosed]', r"not valid EDN"),
])
def test_validation_errors(text, msg):
    with pytest.raises(QueryParseError, match=msg) as ei:
        q(text)
    e = ei.value
    assert e.kind == "query/parse" and isinstance(e, ValueError)


def test_error_data_points_at_clause():
    with pytest.raises(QueryParseError) as ei:
        q('[:find ?e :where [?e :a ?y] [?e :b] [(> ?q 1)]]')
    assert ei.value.data["index"] == 2 and ei.value.data["clause"] == "[(> ?q 1)]"
    with pytest.raises(QueryParseError, match=r"\[\(> \?q 1\)\].*#1"):
        parse_query([":find", "?e", ":where", ["?e", ":a"], [(">", "?q", 1)]])


# --- cache and printing -----------------------------------------------------------------

def test_cache_returns_same_object():
    text = '[:find ?e :where [?e :name "Ivan"]]'
    assert q(text) is q(text)
    data = [":find", "?e", ":where", ["?e", ":age", 1]]
    assert parse_query(data) is parse_query([":find", "?e", ":where", ["?e", ":age", 1]])
    assert parse_query(data) is not parse_query([":find", "?e", ":where", ["?e", ":age", True]])
    r = parse_query(data)
    data[3][2] = 2  # mutating the caller's list does not touch the parsed query
    assert r.where[0].elements[2] == C(1)
    clear_cache()
    assert q(text) is not None


def test_to_edn_round_trips():
    texts = [
        '[:find ?e ?x :keys e x :with ?w :in $ % ?y :where [?e :a ?x] [?e :w ?w] (r ?e ?y) [(> ?x ?y)]]',
        '[:find [?x ...] :in $ [[?a _]] :where [?a :x ?x] (or-join [[?a] ?x] [?a :y ?x] (and [?a :z ?x]))]',
        '[:find (pull ?e [*]) . :in $ :where [?e :a] (not-join [?e] [?e :b ?c] [?c :d 1])]',
    ]
    for t in texts:
        r = q(t)
        assert r.to_edn() == t
        assert parse_query(r.to_edn()) is r
