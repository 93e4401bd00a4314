"""re-find, re-matches, re-seq, re-pattern in queries, with #"..." literals or strings (Clojure's shapes)."""

import re

import pytest

from fastdatomic.errors import QueryParseError
from fastdatomic.query.engine import QueryError, q
from test_query_data import people


def one(expr):
    return q(f"[:find ?y . :where [{expr} ?y]]")


def test_regex_literal_in_predicate():
    _, db, _, _ = people()
    assert q(r'[:find ?n :where [?e :person/name ?n] [(re-find #"^A" ?n)]]', db) == {("Ann",)}
    assert q(r'[:find ?n :where [?e :person/name ?n] [(re-matches #"[A-C].." ?n)]]', db) == {
        ("Ann",), ("Bob",), ("Cid",)}


def test_pattern_or_string_alike():
    for p in (r'#"b(.)"', r'"b(.)"', r'(re-pattern "b(.)")'):
        if p.startswith("("):
            assert q(f'[:find ?y . :where [{p} ?p] [(re-find ?p "abc") ?y]]') == ("bc", "c")
        else:
            assert one(f'(re-find {p} "abc")') == ("bc", "c")


def test_pattern_as_input():
    _, db, _, _ = people()
    got = q('[:find ?n :in $ ?p :where [?e :person/name ?n] [(re-find ?p ?n)]]', db, re.compile("^[AB]"))
    assert got == {("Ann",), ("Bob",)}


def test_re_find_shapes():
    assert one(r'(re-find #"\d+" "ab12cd34")') == "12"              # no groups: the text
    assert one(r'(re-find #"(\d)(\d)" "ab12")') == ("12", "1", "2")  # groups: [whole g1 g2]
    assert one(r'(re-find #"a(x)?b" "ab")') == ("ab", None)          # unmatched group: nil
    assert one(r'(re-find #"z" "abc")') is None                      # no match: nil, row dropped


def test_re_matches_is_whole_string():
    assert one(r'(re-matches #"\d+" "123")') == "123"
    assert one(r'(re-matches #"\d+" "123a")') is None
    assert one(r'(re-matches #"(\w+)@(\w+)" "ann@x")') == ("ann@x", "ann", "x")


def test_re_seq():
    assert one(r'(re-seq #"\d+" "a1b22c333")') == ("1", "22", "333")
    assert one(r'(re-seq #"(\w)(\d)" "a1 b2")') == (("a1", "a", "1"), ("b2", "b", "2"))
    assert one(r'(re-seq #"x" "abc")') is None                       # Clojure: nil, not ()
    assert sorted(q(r'[:find [?m ...] :where [(re-seq #"\d+" "a1b22") [?m ...]]]')) == ["1", "22"]


def test_re_pattern():
    p = one(r'(re-pattern "a\\d")')
    assert type(p) is re.Pattern and p.pattern == r"a\d"
    assert one(r'(re-pattern #"a")') == re.compile("a")


def test_groups_bind_by_destructuring():
    _, db, _, _ = people()
    got = q(r'[:find ?user :where [_ :person/email ?m] [(re-matches #"(?<u>\w+)@x\.org" ?m) [_ ?user]]]', db)
    assert got == {("ann",), ("bob",), ("dee",)}


def test_invalid_regex_literal_is_a_parse_error_with_position():
    with pytest.raises(QueryParseError, match=r'invalid regex #"a\(": missing \).*line 1, column 33'):
        q('[:find ?x . :where [(re-find #"a(" "a") ?x]]')


def test_invalid_regex_string_names_pattern_and_clause():
    with pytest.raises(QueryError, match=r'invalid regex #"a\(".*offset 1.*in clause \[\(re-pattern "a\("\) \?x\]'):
        q('[:find ?x . :where [(re-pattern "a(") ?x]]')


def test_regex_literal_prints_back_in_clause():
    from fastdatomic.query.parser import parse_query
    pq = parse_query(r'[:find ?n :where [?e :person/name ?n] [(re-find #"^A\"" ?n)]]')
    assert pq.where[1].to_edn() == r'[(re-find #"^A\"" ?n)]'
