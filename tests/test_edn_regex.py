"""Regex literals #"..." in fastdatomic.edn: read as Clojure reads them, written back, errors."""

import re

import pytest

from fastdatomic.edn import Form, compile_regex, dumps, loads, read_all
from fastdatomic.errors import EdnSyntaxError
from fastdatomic.types import Symbol


def test_literal_reads_as_compiled_pattern():
    p = loads('#"^A.*"')
    assert type(p) is re.Pattern and p.pattern == "^A.*"
    assert p.search("Ann") and not p.search("Bob")


@pytest.mark.parametrize("text,pattern", [
    (r'#"\d+"', r"\d+"),              # a backslash goes to the regex as it is
    (r'#"a\.b"', r"a\.b"),
    (r'#"\\"', r"\\"),                # an escaped backslash: one literal backslash
    (r'#"say \"hi\""', r'say \"hi\"'),  # \" is how a quote gets in; the regex sees \"
    (r'#"\n"', r"\n"),                # not a newline character: the regex escape
    ('#"a\nb"', "a\nb"),              # a real newline stays one
    ('#""', ""),
])
def test_escapes_pass_through(text, pattern):
    assert loads(text).pattern == pattern


def test_quote_escape_matches_a_quote():
    assert loads(r'#"say \"hi\""').fullmatch('say "hi"')


def test_java_named_groups():
    m = loads(r'#"(?<year>\d{4})-(?<month>\d\d)"').match("2024-05")
    assert m.group("year") == "2024" and m.group("month") == "05"
    # inside a character class or after a backslash it is not a group
    assert loads(r'#"[(?<a]+"').fullmatch("(?<a")
    assert loads(r'#"\(?<a"').fullmatch("(<a")


def test_in_a_query_form():
    q = loads(r'[:find ?n :where [?e :person/name ?n] [(re-find #"^A" ?n)]]')
    call = q[-1][0]
    assert type(call) is Form and call[0] == Symbol("re-find")
    assert type(call[1]) is re.Pattern and call[1].pattern == "^A"


def test_in_collections_and_discard():
    assert read_all(r'#_ #"x" #"y" {#"k" #{#"s"}}') == [re.compile("y"), {re.compile("k"): frozenset({re.compile("s")})}]
    assert loads(r'["#\"" #"\""]') == ['#"', re.compile(r'\"')]   # '#"' inside a string is text


def test_tagged_regex_goes_to_the_tag_function():
    assert loads(r'#my/re #"a+"', tags={"my/re": lambda p: p.pattern}) == "a+"


@pytest.mark.parametrize("pattern", [r"^A\d+$", r"a\"b", "x\ny", r"\\", "", r"(?i)abc", r"[\]\"]"])
def test_round_trip(pattern):
    p = re.compile(pattern)
    text = dumps(p)
    assert text.startswith('#"') and text.endswith('"')
    assert loads(text) == p


def test_dumps_escapes_a_bare_quote():
    assert dumps(re.compile('say "hi"')) == r'#"say \"hi\""'
    assert loads(dumps(re.compile('say "hi"'))).fullmatch('say "hi"')


def test_dumps_writes_compile_flags_inline():
    assert dumps(re.compile("ab", re.I | re.S)) == '#"(?is)ab"'
    assert loads(dumps(re.compile("ab", re.I))).fullmatch("AB")
    assert dumps([re.compile("a"), 1]) == '[#"a" 1]'


def test_dumps_refuses_bytes_patterns():
    with pytest.raises(ValueError, match="bytes pattern"):
        dumps(re.compile(b"a"))


@pytest.mark.parametrize("text,message,column", [
    ('[1 #"ab(c"]', 'invalid regex #"ab(c": missing ), unterminated subpattern (at offset 2', 8),
    ('#"[a-"', 'invalid regex #"[a-": unterminated character set', 3),
    ('[:a\n  #"(?<y>a))"]', "unbalanced parenthesis (at offset 7", 12),
    ('#"abc', "unterminated regex starting at line 1, column 1", 1),
    ('#"\\', "unterminated regex", 1),
])
def test_invalid_regex_names_literal_and_position(text, message, column):
    with pytest.raises(EdnSyntaxError) as ei:
        loads(text)
    assert message in str(ei.value), str(ei.value)
    assert ei.value.data["column"] == column


def test_compile_regex():
    p = re.compile("a")
    assert compile_regex(p) is p
    assert compile_regex(r"\d").pattern == r"\d"
    with pytest.raises(ValueError, match=r'invalid regex #"a\(": missing \)'):
        compile_regex("a(")
    with pytest.raises(TypeError, match="string or a re.Pattern"):
        compile_regex(1)
