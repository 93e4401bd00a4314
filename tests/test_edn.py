"""fastdatomic.edn: every literal kind, real Datomic schema and queries, errors with
positions, round trips and fuzzing (including: the fast path never disagrees with the
careful reader)."""

import doctest
import math
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastdatomic import edn
from fastdatomic.edn import MAX_DEPTH, Form, dumps, loads, read_all
from fastdatomic.errors import EdnSyntaxError, FastDatomicError
from fastdatomic.types import URI, Keyword, Symbol

K = Keyword
S = Symbol
UTC = timezone.utc


def strict_eq(a, b):
    """Equal, and of the same types all the way down (``1 == True`` and ``[1] == (1,)`` are not)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) in (list, tuple, Form):
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        if len(a) != len(b):
            return False
        for k, v in a.items():
            match = [k2 for k2 in b if k2 == k and strict_eq(k, k2)]
            if len(match) != 1 or not strict_eq(v, b[match[0]]):
                return False
        return True
    if type(a) is frozenset:
        return len(a) == len(b) and all(any(x == y and strict_eq(x, y) for y in b) for x in a)
    if type(a) is datetime:
        return a == b and a.utcoffset() is not None and b.utcoffset() is not None
    return a == b


def fast_only(text, tags=None):
    """The fast path's answer, or ``edn._BAIL`` (an exception there also means: bail)."""
    _, fast_tags = edn._tag_tables(tags)
    try:
        return edn._fast(text, fast_tags, True)
    except Exception:
        return edn._BAIL


def careful(text, tags=None, single=True):
    table, _ = edn._tag_tables(tags)
    return edn._Reader(text, table, single).run()


def test_doctests():
    assert doctest.testmod(edn).failed == 0


# ----------------------------------------------------------------------------
# Literals
# ----------------------------------------------------------------------------

LITERALS = [
    ("nil", None), ("true", True), ("false", False),
    ("0", 0), ("42", 42), ("-7", -7), ("+3", 3), ("-0", 0), ("42N", 42), ("-42N", -42),
    ("123456789012345678901234567890", 123456789012345678901234567890),
    ("123456789012345678901234567890N", 123456789012345678901234567890),
    ("0x1F", 31), ("-0xffN", -255), ("017", 15), ("2r101", 5), ("36rZZ", 36 * 36 - 1),
    ("1/3", Fraction(1, 3)), ("-4/2", -2),
    ("1.5", 1.5), ("-0.25", -0.25), ("+1.0", 1.0), ("1e3", 1000.0), ("1.5E-3", 0.0015),
    ("2.", 2.0), ("-0.0", -0.0), ("1e400", float("inf")),
    ("1.5M", Decimal("1.5")), ("7M", Decimal("7")), ("-1.25e10M", Decimal("-1.25e10")),
    ("##Inf", float("inf")), ("##-Inf", float("-inf")),
    ('""', ""), ('"Ann"', "Ann"), ('"a b, c; d"', "a b, c; d"), ('"[1 2]"', "[1 2]"),
    (r'"tab\there"', "tab\there"), (r'"nl\nx"', "nl\nx"), (r'"cr\r"', "cr\r"),
    (r'"q\"x\""', 'q"x"'), (r'"back\\slash"', "back\\slash"), (r'"\b\f"', "\b\f"),
    (r'"\u00e9\u4e2d"', "é中"), (r'"\uD83D\uDE00"', "😀"), (r'"\101\7"', "A\x07"),
    ('"multi\nline"', "multi\nline"), ('"é中😀"', "é中😀"),
    (r"\a", "a"), (r"\Z", "Z"), (r"\newline", "\n"), (r"\space", " "), (r"\tab", "\t"),
    (r"\return", "\r"), (r"\formfeed", "\f"), (r"\backspace", "\b"), (r"\u0041", "A"),
    (r"\u00E9", "é"), (r"\o101", "A"), (r"\(", "("), (r"\\", "\\"), (r'\"', '"'), (r"\;", ";"),
    (r"\é", "é"), (r"\u", "u"),
    (":a", K("a")), (":a/b", K("a/b")), (":a.b/c-d?", K("a.b/c-d?")), (":db.type/string", K("db.type/string")),
    (":_", K("_")), (":1", K("1")), (":a/1b", K("a/1b")), (":<=>", K("<=>")), (":a#b", K("a#b")),
    (":a:b", K("a:b")), (":nil", K("nil")), (":é/ü", K("é/ü")),
    ("?e", S("?e")), ("$", S("$")), ("%", S("%")), ("...", S("...")), ("_", S("_")), ("+", S("+")),
    ("-", S("-")), ("<=", S("<=")), (".", S(".")), ("/", S("/")), ("ns/name", S("ns/name")),
    ("my.ns/fn!", S("my.ns/fn!")), ("-a", S("-a")), ("+x1", S("+x1")), (".5a", None),
    ("a'", S("a'")), ("a#", S("a#")), ("clojure.core//", S("clojure.core//")), ("$db", S("$db")),
    ("?name-of_thing*", S("?name-of_thing*")), ("é", S("é")),
    ("[]", []), ("[1 [2 [3]]]", [1, [2, [3]]]), ("()", Form()), ("(a (b))", Form((S("a"), Form((S("b"),))))),
    ("{}", {}), ("{:a 1, :b 2}", {K("a"): 1, K("b"): 2}), ('{"k" nil 1 [2]}', {"k": None, 1: [2]}),
    ("#{}", frozenset()), ("#{1 :a \"s\"}", frozenset({1, K("a"), "s"})),
    ("#inst \"2024-05-01T12:30:00Z\"", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
    ("#inst \"2024-05-01T12:30:00.123456789-05:30\"",
     datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=timezone(-timedelta(hours=5, minutes=30)))),
    ("#inst \"2024-05-01T12:30:00.5+00:00\"", datetime(2024, 5, 1, 12, 30, 0, 500000, tzinfo=UTC)),
    ("#inst \"2024-05-01T12:30:00.5-00:00\"", datetime(2024, 5, 1, 12, 30, 0, 500000, tzinfo=UTC)),
    ("#inst \"2024-05-01T12:30\"", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
    ("#inst \"2024-05-01\"", datetime(2024, 5, 1, tzinfo=UTC)),
    ("#inst \"2024\"", datetime(2024, 1, 1, tzinfo=UTC)),
    ('#uuid "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"', uuid.UUID("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")),
    ('#uri "https://example.com/a?b=c"', URI("https://example.com/a?b=c")),
    ("[1 #_ 2 3]", [1, 3]), ("[1 #_ #_ 2 3 4]", [1, 4]), ("[#_ [a [b]] 1]", [1]), ("#_ x y", S("y")),
    ("[1 ; a comment\n 2]", [1, 2]), ("; lead\n:a ; trail", K("a")), ("[1,2,,3]", [1, 2, 3]),
    ("\ufeff[1]", [1]), ("[1\u00a02\u2028 3]", [1, 2, 3]),
    ("#:person{:name \"Ann\" :_/x 1 :db/id 2}", {K("person/name"): "Ann", K("x"): 1, K("db/id"): 2}),
    ("[a\\b]", [S("a"), "b"]), ("[:a\"s\"]", [K("a"), "s"]), ("[#inst\"2020\"]", [datetime(2020, 1, 1, tzinfo=UTC)]),
]


@pytest.mark.parametrize("text,expected", [t for t in LITERALS if t[1] is not None or t[0] in ("nil",)])
def test_literal(text, expected):
    got = loads(text)
    assert strict_eq(got, expected), (got, expected)
    # whichever path read it, the careful reader agrees
    assert strict_eq(careful(text.lstrip("\ufeff")), expected)


def test_nan():
    assert math.isnan(loads("##NaN"))
    v = loads("[##NaN 1]")
    assert math.isnan(v[0]) and v[1] == 1


def test_symbol_dot_digit_is_an_error():
    with pytest.raises(EdnSyntaxError, match="invalid"):
        loads(".5a")


def test_types_of_collections():
    v = loads("[(f x) [y] {:k v} #{s}]")
    assert type(v) is list
    assert type(v[0]) is Form and v[0] == (S("f"), S("x")) and isinstance(v[0], tuple)
    assert type(v[1]) is list and type(v[2]) is dict and type(v[3]) is frozenset
    assert hash(Form((1, 2))) == hash((1, 2)) and Form((1, 2)) == (1, 2)
    assert repr(Form((1,))) == "Form((1,))"


def test_keywords_and_symbols_are_interned():
    a, b = loads("[:person/name :person/name]")
    assert a is b is K("person/name")
    assert loads("?e") is S("?e")
    assert K("a") != S("a") and loads(":a") != loads("a")


def test_unhashable_keys_and_elements_are_frozen():
    v = loads("{[1 2] :v, {:a [1]} :m, (f [x]) :l}")
    assert v[(1, 2)] == K("v")
    assert v[frozenset({(K("a"), (1,))})] == K("m")
    key = next(k for k in v if type(k) is Form)
    assert key == (S("f"), (S("x"),))
    s = loads("#{[1] [2]}")
    assert s == frozenset({(1,), (2,)})


def test_read_all():
    assert read_all("") == []
    assert read_all(" ; nothing\n") == []
    assert read_all('1 :a "b" #_ c (d) [e]') == [1, K("a"), "b", Form((S("d"),)), [S("e")]]
    assert read_all("#inst \"2020\" #uuid \"f81d4fae-7dec-11d0-a765-00a0c91e6bf6\"")[1].version == 1


def test_bytes_input():
    assert loads("[\"é\"]".encode()) == ["é"]
    with pytest.raises(EdnSyntaxError):
        loads(b"\xff")
    with pytest.raises(TypeError):
        loads(42)


# ----------------------------------------------------------------------------
# Datomic
# ----------------------------------------------------------------------------

SCHEMA_TX = """
;; people and their friends
[{:db/ident       :person/name
  :db/valueType   :db.type/string
  :db/cardinality :db.cardinality/one
  :db/unique      :db.unique/identity
  :db/doc         "A person's name, unique"}
 {:db/ident       :person/age
  :db/valueType   :db.type/long
  :db/cardinality :db.cardinality/one
  :db/index       true}
 {:db/ident       :person/friends
  :db/valueType   :db.type/ref
  :db/cardinality :db.cardinality/many
  :db/isComponent false}
 {:db/ident :person/balance :db/valueType :db.type/bigdec :db/cardinality :db.cardinality/one}
 [:db/add "ann" :person/name "Ann"]
 [:db/add "ann" :person/balance 10.50M]
 {:db/id "bob" :person/name "Bob" :person/age 31 :person/friends ["ann"]
  :person/born #inst "1993-04-01T00:00:00.000-00:00"
  :person/id #uuid "5b8d9f8e-6c21-4d6b-9a2f-0d3c1e2a4b5c"}
 [:db/retract [:person/name "Carl"] :person/age 40]
 [:db/retractEntity [:person/name "Dora"]]
 [:db/cas 42 :person/age 30 31]]
"""


def test_datomic_schema_transaction():
    tx = loads(SCHEMA_TX)
    assert type(tx) is list and len(tx) == 10
    assert tx[0] == {
        K("db/ident"): K("person/name"),
        K("db/valueType"): K("db.type/string"),
        K("db/cardinality"): K("db.cardinality/one"),
        K("db/unique"): K("db.unique/identity"),
        K("db/doc"): "A person's name, unique",
    }
    assert tx[1][K("db/index")] is True
    assert tx[2][K("db/isComponent")] is False
    assert tx[4] == [K("db/add"), "ann", K("person/name"), "Ann"]
    assert tx[5][3] == Decimal("10.50") and type(tx[5][3]) is Decimal
    bob = tx[6]
    assert bob[K("person/friends")] == ["ann"]
    assert bob[K("person/born")] == datetime(1993, 4, 1, tzinfo=UTC)
    assert bob[K("person/id")] == uuid.UUID("5b8d9f8e-6c21-4d6b-9a2f-0d3c1e2a4b5c")
    assert tx[7] == [K("db/retract"), [K("person/name"), "Carl"], K("person/age"), 40]
    assert tx[9] == [K("db/cas"), 42, K("person/age"), 30, 31]
    assert strict_eq(loads(dumps(tx)), tx)


def test_transact_string_from_the_brief():
    tx = loads('[{:db/ident :person/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one}]')
    assert tx == [{K("db/ident"): K("person/name"), K("db/valueType"): K("db.type/string"),
                   K("db/cardinality"): K("db.cardinality/one")}]


def test_query_basic():
    q = loads('[:find ?e :where [?e :person/name "Ann"]]')
    assert q == [K("find"), S("?e"), K("where"), [S("?e"), K("person/name"), "Ann"]]


def test_query_with_in_rules_predicates_and_pull():
    q = loads("""
    [:find (pull ?e [* {:person/friends [:person/name]}]) ?age (count ?f) .
     :in $ % ?min-age [?name ...]
     :where
     [?e :person/name ?name]
     [?e :person/age ?age]
     [(> ?age ?min-age)]
     [(str ?name "!") ?shout]
     (friends ?e ?f)
     (not [?e :person/banned true])
     (or [?e :person/role :role/admin]
         (and [?e :person/role :role/user] [(< ?age 99)]))
     [(get-else $ ?e :person/nick "none") ?nick]]""")
    assert q[0] == K("find")
    pull = q[1]
    assert type(pull) is Form and pull[0] is S("pull") and pull[1] is S("?e")
    assert type(pull[2]) is list and pull[2][0] is S("*")
    assert pull[2][1] == {K("person/friends"): [K("person/name")]}
    assert q[3] == Form((S("count"), S("?f"))) and type(q[3]) is Form
    assert q[4] is S(".")
    i = q.index(K("in"))
    assert q[i + 1:i + 5] == [S("$"), S("%"), S("?min-age"), [S("?name"), S("...")]]
    w = q.index(K("where"))
    clauses = q[w + 1:]
    assert clauses[0] == [S("?e"), K("person/name"), S("?name")]
    pred = clauses[2]
    assert type(pred) is list and type(pred[0]) is Form and pred[0] == (S(">"), S("?age"), S("?min-age"))
    assert clauses[3] == [Form((S("str"), S("?name"), "!")), S("?shout")]
    assert type(clauses[4]) is Form and clauses[4][0] is S("friends")
    assert clauses[5] == Form((S("not"), [S("?e"), K("person/banned"), True]))
    assert clauses[6][0] is S("or") and clauses[6][2][0] is S("and")
    assert clauses[7][0][0] is S("get-else") and clauses[7][0][1] is S("$")


def test_query_rules_and_keys():
    rules = loads("""
    [[(friends ?a ?b) [?a :person/friends ?b]]
     [(friends ?a ?b) [?b :person/friends ?a]]
     [(ancestor ?a ?b) [?a :parent ?b]]
     [(ancestor ?a ?b) [?a :parent ?x] (ancestor ?x ?b)]]""")
    assert len(rules) == 4
    head = rules[0][0]
    assert type(head) is Form and head == (S("friends"), S("?a"), S("?b"))
    assert rules[3][2] == Form((S("ancestor"), S("?x"), S("?b")))
    q = loads("[:find ?name ?age :keys name age :in $ :where [?e :person/name ?name] [?e :person/age ?age]]")
    k = q.index(K("keys"))
    assert q[k + 1:k + 3] == [S("name"), S("age")]
    m = loads("{:find [?e ?x] :in [$ %] :where [[?e :a ?x] [(< ?x 10)]] :with [?y]}")
    assert m[K("where")][1] == [Form((S("<"), S("?x"), 10))]


def test_query_map_form_with_pull_pattern_and_limits():
    q = loads("[:find [(pull ?e [:db/id :person/name {(:person/friends :limit 5) [:person/name]}]) ...] "
              ":where [?e :person/name]]")
    pattern = q[1][0][2]
    spec = pattern[2]
    key = next(iter(spec))
    assert type(key) is Form and key == (K("person/friends"), K("limit"), 5)


# ----------------------------------------------------------------------------
# Tags
# ----------------------------------------------------------------------------

def test_custom_tags():
    assert loads("#point [1 2]", tags={"point": tuple}) == (1, 2)
    assert loads("#my.app/pt {:x 1}", tags={"#my.app/pt": lambda m: m[K("x")]}) == 1
    assert loads("#color :red", tags={S("color"): str}) == ":red"
    # tag handlers see the built value; nested tags apply innermost first
    assert loads("#twice #twice 3", tags={"twice": lambda x: 2 * x}) == 12
    # overriding a built-in
    assert loads('#inst "2020"', tags={"inst": lambda s: "raw " + s}) == "raw 2020"
    # #db/id legacy tempids, via a handler
    tempid = lambda v: ("tempid", v[0], v[1] if len(v) > 1 else None)  # noqa: E731
    tx = loads("[{:db/id #db/id[:db.part/user -1] :person/name \"Ann\"}]", tags={"db/id": tempid})
    assert tx[0][K("db/id")] == ("tempid", K("db.part/user"), -1)


def test_tag_handler_results_inside_sets_and_keys_are_frozen_or_rejected():
    assert loads("#{#s [1 2]}", tags={"s": set}) == frozenset({frozenset({1, 2})})
    assert loads("{#l [1 [2]] :v}", tags={"l": list}) == {(1, (2,)): K("v")}

    class Box:
        __hash__ = None

    with pytest.raises(EdnSyntaxError, match=r"set element .* at line 1, column 3 cannot be hashed"):
        loads("#{#b 1}", tags={"b": lambda v: Box()})
    with pytest.raises(EdnSyntaxError, match="map key"):
        loads("{[#b 1] 2}", tags={"b": lambda v: Box()})


def test_tag_handlers_run_once_in_order_and_not_when_discarded():
    calls = []

    def h(v):
        calls.append(v)
        return v

    assert loads("[#t 1 #t [2] #_ #t 3 #_ [#t 4] #t \"5\" #t :six]", tags={"t": h}) == [1, [2], "5", K("six")]
    assert calls == [1, [2], "5", K("six")]


def test_unknown_tag_is_an_error_naming_it():
    with pytest.raises(EdnSyntaxError, match=r"unknown tag #foo/bar at line 1, column 2") as ei:
        loads("[#foo/bar 1]")
    assert "tags=" in str(ei.value)
    # ...but a discarded one is fine
    assert loads("[#_ #foo/bar 1 2]") == [2]


def test_tag_handler_errors_are_wrapped_with_the_position():
    def boom(v):
        raise ValueError("nope")

    with pytest.raises(EdnSyntaxError, match=r"tag #boom failed on 1 \(int\): ValueError: nope at line 2, column 3") as ei:
        loads("[\n  #boom 1]", tags={"boom": boom})
    assert isinstance(ei.value.__cause__, ValueError)
    with pytest.raises(TypeError):
        loads("1", tags={"x": 5})


@pytest.mark.parametrize("text,message", [
    ('#inst "2024-13-01"', "invalid #inst '2024-13-01': month must be in 1..12"),
    ('#inst "yesterday"', "invalid #inst 'yesterday'"),
    ('#inst "2024-01-01T25:00"', "hour must be in 0..23"),
    ("#inst 2024", "#inst needs a string, found 2024 (int)"),
    ('#uuid "xyz"', "invalid #uuid 'xyz'"),
    ("#uuid 1", "#uuid needs a string"),
    ("#uri :a", "#uri needs a string"),
])
def test_builtin_tag_errors(text, message):
    with pytest.raises(EdnSyntaxError) as ei:
        loads(text)
    assert message in str(ei.value)
    assert "line 1, column 1" in str(ei.value)


# ----------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------

ERRORS = [
    ("[1 2", "unterminated vector starting at line 1, column 1"),
    ("{:a [1 2}", "mismatched '}' at line 1, column 9: the vector starting at line 1, column 5 needs ']'"),
    ("(a b", "unterminated list starting at line 1, column 1"),
    ("#{1", "unterminated set starting at line 1, column 1"),
    ('{:a "b"', "unterminated map starting at line 1, column 1"),
    ("[:find ?e\n :where [?e :a 1]\n\n  [[?e :b 2]", "unterminated vector starting at line 4, column 3"),
    ("[1]\n    )", "unmatched ')' at line 2, column 5"),
    ("]", "unmatched ']' at line 1, column 1"),
    ("[1 1.2.3 4]", "invalid number '1.2.3' at line 1, column 4"),
    ("[08]", "invalid number '08' at line 1, column 2"),
    ("-08", "invalid number '-08'"),
    ("1_000", "invalid number '1_000' at line 1, column 1"),
    ("0x", "invalid number '0x'"),
    ("1/0", "zero denominator"),
    ("37r1", "radix must be 2..36"),
    ("1.5N", "invalid number '1.5N'"),
    ("{:a 1 :b}", "map literal with odd number of forms (3) at line 1, column 1: key :b"),
    ("{:a 1 :a 2}", "duplicate key :a (Keyword) in map at line 1, column 7"),
    ("{1 :x true :y}", "are equal in Python"),
    ("#{1 2 1}", "duplicate element 1 (int) in set at line 1, column 7"),
    ('"abc', "unterminated string starting at line 1, column 1"),
    ('[1 "a\nb', "unterminated string starting at line 1, column 4"),
    (r'"bad \q escape"', r"unsupported escape '\\q' in string at line 1, column 6"),
    (r'"bad \u12"', r"\u needs four hex digits in string at line 1, column 6"),
    (r'"\400"', "octal escape"),
    (r"\abc", r"unsupported character literal '\\abc' at line 1, column 1"),
    (r"\ud800", "lone surrogate"),
    (r"\u0x1F", r"unsupported character literal '\\u0x1F'"),
    (r"\u+123", "unsupported character literal"),
    (r"\u1_23", "unsupported character literal"),
    ('#inst "\u0662\u0660\u0662\u0664"', "invalid #inst"),
    ('#inst "2024-01-01T00:00:00+24:00"', "invalid #inst"),
    ('#inst "2024-01-01T00:00:00+01:60"', "invalid #inst"),
    ('#inst "2024-01-01T00:00:00+0100"', "invalid #inst"),
    ('#inst "2024-01-01 00:00:00Z"', "invalid #inst"),
    ('#inst "20240101T000000Z"', "invalid #inst"),
    ('#uuid "{f81d4fae-7dec-11d0-a765-00a0c91e6bf6}"', "invalid #uuid"),
    ('#uuid "f81d4fae7dec11d0a76500a0c91e6bf6"', "invalid #uuid"),
    ("\\ ", "a character literal needs a character after the backslash"),
    ("", "expected an EDN form, found empty input at line 1, column 1"),
    ("  ; only a comment\n", "found only whitespace and comments at line 2, column 1"),
    ("1 2", "expected a single form, found another form at line 1, column 3"),
    ("[1]\n[2]", "found another form at line 2, column 1"),
    ("1 #inst \"2020\"", "found another form at line 1, column 3"),
    ("^:meta [1]", "metadata (^) is not supported, at line 1, column 1"),
    ("'a", "quote (') is not EDN"),
    ("@a", "unexpected character '@'"),
    ("#(inc %)", "anonymous functions #( ) is not EDN"),
    ('#"re', "unterminated regex starting at line 1, column 1"),
    ("#?(:clj 1)", "reader conditionals"),
    ("#1 x", "invalid tag '#1'"),
    ("##Foo", "invalid symbolic value '##Foo'"),
    ("[1 #_]", "#_ at line 1, column 4 has no form to discard before ']' at line 1, column 6"),
    ("#_", "#_ at line 1, column 1 has no form to discard before the end of input"),
    ("[#inst]", "tag #inst at line 1, column 2 is not followed by a form before ']'"),
    ("#:a [1]", "#:a must be followed by a map"),
    ("#::{:a 1}", "auto-resolved namespaced maps"),
    (":", "invalid keyword ':'"),
    ("::a", "invalid keyword '::a'"),
    (":a/", "invalid keyword ':a/'"),
    (":/a", "invalid keyword ':/a'"),
    ("a/b/c", "invalid symbol 'a/b/c'"),
    ("a::b", "invalid symbol 'a::b'"),
    ("foo|bar", "invalid symbol 'foo|bar'"),
    ("[a b\n c d\n   e f|g]", "invalid symbol 'f|g' at line 3, column 6"),
    ("\x01", "invalid symbol"),
]


@pytest.mark.parametrize("text,message", ERRORS)
def test_error_messages(text, message):
    with pytest.raises(EdnSyntaxError) as ei:
        loads(text)
    err = ei.value
    assert message in str(err), str(err)
    assert "line " in str(err) and ", column " in str(err)
    assert err.kind == "edn/syntax" and isinstance(err, ValueError) and isinstance(err, FastDatomicError)
    assert err.data["line"] >= 1 and err.data["column"] >= 1


def test_error_excerpt_points_at_the_column():
    text = "[:find ?e\n :where [?e :person/name 1.2.3]]"
    with pytest.raises(EdnSyntaxError) as ei:
        loads(text)
    lines = str(ei.value).split("\n")
    assert lines[0] == "invalid number '1.2.3' at line 2, column 26"
    assert lines[1] == "   :where [?e :person/name 1.2.3]]"
    assert lines[2].index("^") == lines[1].index("1.2.3")
    assert ei.value.data == {"line": 2, "column": 26, "offset": 35}


def test_error_excerpt_of_a_long_line_is_cut():
    text = "[" + " ".join(["x"] * 100) + " 1.2.3 " + " ".join(["y"] * 100) + "]"
    with pytest.raises(EdnSyntaxError) as ei:
        loads(text)
    _, excerpt, caret = str(ei.value).split("\n")
    assert excerpt.startswith("  ...") and excerpt.endswith("...") and len(excerpt) < 80
    assert excerpt[caret.index("^"):].startswith("1.2.3")


def test_depth_limit():
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    v = loads(ok)
    depth = 0
    while v:
        v = v[0]
        depth += 1
    assert depth == MAX_DEPTH - 1
    with pytest.raises(EdnSyntaxError, match=f"nesting deeper than {MAX_DEPTH} levels at line 1, column {MAX_DEPTH + 1}"):
        loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    for opener in "[({":
        with pytest.raises(EdnSyntaxError):
            loads(opener * 100_000)
    with pytest.raises(EdnSyntaxError):
        loads("#{" * 100_000)
    with pytest.raises(EdnSyntaxError):
        loads("#_ " * 100_000)
    with pytest.raises(EdnSyntaxError):
        loads("#t " * 100_000, tags={"t": lambda x: x})
    assert loads("[" + "#t " * (MAX_DEPTH - 1) + "1]", tags={"t": lambda x: x}) == [1]
    with pytest.raises(EdnSyntaxError, match=f"more than {MAX_DEPTH} tags and discards before one form"):
        loads("[" + "#t " * 100_000 + "1]", tags={"t": lambda x: x})
    with pytest.raises(EdnSyntaxError, match="more than"):
        loads("[" + "#_ " * 100_000 + "1]")


def test_deep_values_round_trip_and_deep_keys_freeze():
    v = []
    for _ in range(MAX_DEPTH - 1):
        v = [v]
    text = dumps(v)
    assert text == "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert dumps(loads(text)) == text
    deep_key = "[" * 1500 + "]" * 1500
    m = loads("{" + deep_key + " 1}")
    (k,) = m
    assert type(k) is tuple and m[k] == 1
    too_deep = v
    for _ in range(5):
        too_deep = [too_deep]
    with pytest.raises(ValueError, match="nested deeper"):
        dumps(too_deep)
    cyclic = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="contains itself"):
        dumps(cyclic)


# ----------------------------------------------------------------------------
# Printer
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("value,text", [
    (None, "nil"), (True, "true"), (False, "false"), (0, "0"), (-12, "-12"),
    (2 ** 100, "1267650600228229401496703205376"),
    (1.5, "1.5"), (1.0, "1.0"), (1e16, "1e+16"), (-0.0, "-0.0"), (float("inf"), "##Inf"),
    (float("-inf"), "##-Inf"), (float("nan"), "##NaN"),
    (Decimal("1.50"), "1.50M"), (Decimal("1E+3"), "1E+3M"), (Fraction(1, 3), "1/3"), (Fraction(4, 2), "2"),
    ("a\"b\\c\nd\te\x00", '"a\\"b\\\\c\\nd\\te\\u0000"'), ("é😀", '"é😀"'),
    (K("person/name"), ":person/name"), (S("?e"), "?e"), (S("/"), "/"),
    ([], "[]"), ((), "()"), (Form((S("f"), 1)), "(f 1)"), ({}, "{}"), (frozenset(), "#{}"), (set(), "#{}"),
    ([1, [2, (3, {K("a"): frozenset({4})})]], "[1 [2 (3 {:a #{4}})]]"),
    ({K("a"): 1, "b": [2]}, '{:a 1 "b" [2]}'),
    (datetime(2024, 5, 1, 12, 30, tzinfo=UTC), '#inst "2024-05-01T12:30:00.000Z"'),
    (datetime(2024, 5, 1, 12, 30, 0, 1234, tzinfo=timezone(timedelta(hours=-5))),
     '#inst "2024-05-01T12:30:00.001234-05:00"'),
    (datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(seconds=30))), '#inst "2024-05-01T12:29:30.000Z"'),
    (uuid.UUID(int=1), '#uuid "00000000-0000-0000-0000-000000000001"'),
    (URI("https://x/\"q\""), '#uri "https://x/\\"q\\""'),
])
def test_dumps(value, text):
    assert dumps(value) == text
    back = loads(text)
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)
    else:
        assert back == value


def test_dumps_subclasses_and_errors():
    from collections import OrderedDict, namedtuple
    from enum import IntEnum

    class Color(IntEnum):
        RED = 1

    class MyStr(str):
        pass

    P = namedtuple("P", "x y")
    assert dumps([Color.RED, MyStr("s"), P(1, 2), OrderedDict(a=1)]) == '[1 "s" (1 2) {"a" 1}]'
    with pytest.raises(TypeError, match="cannot write builtins.bytes as EDN"):
        dumps(b"x")
    with pytest.raises(TypeError, match="object"):
        dumps([1, object()])
    with pytest.raises(ValueError, match="naive datetime"):
        dumps(datetime(2020, 1, 1))
    with pytest.raises(ValueError, match="out of range"):
        dumps(datetime(1, 1, 1, tzinfo=timezone(timedelta(seconds=30))))
    with pytest.raises(ValueError, match="finite"):
        dumps(Decimal("NaN"))
    with pytest.raises(ValueError, match="would not read back"):
        dumps(K("a b"))
    with pytest.raises(ValueError, match="would not read back"):
        dumps(S("nil"))
    with pytest.raises(ValueError, match="would not read back"):
        dumps(S("1x"))


# ----------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------

_name = st.from_regex(r"[a-zA-Zé*!?$%&=<>_][a-zA-Z0-9é*+!?$%&=<>_.'#:-]{0,6}", fullmatch=True)
keywords = st.builds(lambda ns, n: K(f"{ns}/{n}" if ns else n), st.none() | _name, _name).filter(
    lambda k: edn._KEYWORD_RE.fullmatch(str(k)) is not None)
symbols = st.builds(lambda ns, n: S(f"{ns}/{n}" if ns else n), st.none() | _name, _name).filter(
    lambda s: edn._SYMBOL_RE.fullmatch(s.full_name) is not None and s.full_name not in ("nil", "true", "false"))
timezones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)),
                             timezone(timedelta(hours=23, minutes=59))])
hashable_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2 ** 200), max_value=2 ** 200),
    st.floats(allow_nan=False), st.decimals(allow_nan=False, allow_infinity=False),
    st.fractions().filter(lambda f: f.denominator != 1), st.text(), st.characters().map(str),
    keywords, symbols, st.uuids(), st.builds(URI, st.text()),
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1), timezones=timezones),
)
scalars = hashable_scalars | st.floats(allow_nan=True)
hashables = hashable_scalars | st.lists(hashable_scalars, max_size=3).map(Form) | st.frozensets(keywords, max_size=3)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(Form),
        st.dictionaries(hashables, inner, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=16,
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
@example([K("a"), {K("b"): [1, "x"]}, Form((S("f"), frozenset({1})))])
@example({Form((1, 2)): frozenset({Form((3,))})})
def test_round_trip(x):
    text = dumps(x)
    back = loads(text)
    assert strict_eq(back, x), (x, text, back)
    # the careful reader reads the same
    assert strict_eq(careful(text), x)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(values, max_size=3), st.data())
def test_read_all_round_trip_with_whitespace_comments_and_discards(xs, data):
    pieces = []
    for x in xs:
        pieces.append(data.draw(st.sampled_from([" ", "\n", ",", " ; note \"q\" [\n", "\t", " #_ :gone ", " #_[1 2] "])))
        pieces.append(dumps(x))
    text = "".join(pieces) + data.draw(st.sampled_from(["", " ", "\n;end"]))
    back = read_all(text)
    assert len(back) == len(xs) and all(strict_eq(a, b) for a, b in zip(back, xs))


_EDNISH = st.lists(
    st.sampled_from(list("[](){}#_:;\"\\ \n,^@~`'0123456789+-.eEMNxrab/?!*<>=$%&é\u00a0\u2028\x01\x03")
                             + ["#inst ", "#uuid ", '"2020"', "#{", "##Inf", "##NaN", "\\newline", "\\u0041",
                                ":a/b", "?e", "nil", "true", "#:ns", "\\\"", "\\u12", "\\o7"]),
    max_size=30,
).map("".join)


def _check_reader_contract(text):
    """loads returns or raises EdnSyntaxError; the fast path never disagrees with the reader."""
    try:
        expected = careful(text)
    except EdnSyntaxError:
        expected = edn._BAIL
    fast = fast_only(text)
    if fast is not edn._BAIL:
        assert expected is not edn._BAIL, f"fast path accepted {text!r}, the reader rejects it"
        assert strict_eq(fast, expected), (text, fast, expected)
    try:
        got = loads(text)
    except EdnSyntaxError:
        assert expected is edn._BAIL
    else:
        assert expected is not edn._BAIL and strict_eq(got, expected)


@settings(max_examples=1500, deadline=None)
@given(_EDNISH)
@example('[1 "a;b" ; c "d\n 2]')
@example('"x" #_"y"')
@example("a#{1}")
@example('#inst "2020" #inst')
@example("[\\a;b\n]")
@example('"\\"" ;"\n')
def test_fuzz_ednish_text(text):
    _check_reader_contract(text)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_any_text(text):
    _check_reader_contract(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.integers(min_value=0, max_value=200), st.text(alphabet="[](){}#_;\" \\:", min_size=1, max_size=3))
def test_fuzz_corrupted_valid_text(x, at, junk):
    text = dumps(x)
    at = at % (len(text) + 1)
    _check_reader_contract(text[:at] + junk + text[at:])
    _check_reader_contract(text[:at] + text[at + 1:])


def test_unicode_whitespace_agrees_with_str_split():
    for cp in range(0x3000 + 1):
        ch = chr(cp)
        if ch.isspace():
            assert loads(f"[1{ch}2]") == [1, 2], hex(cp)
            assert careful(f"[1{ch}2]") == [1, 2]


def test_fast_path_takes_typical_data():
    # the fast path is the one on the hot path of transact(str): make sure it does not bail on it
    for text in [SCHEMA_TX.replace(";; people and their friends", ""), SCHEMA_TX,
                 '[:find ?e :in $ ?x :where [?e :a ?x] [(> ?x 1)]]', '{:a "x\\ny" :b \\c}']:
        assert fast_only(text) is not edn._BAIL, text
