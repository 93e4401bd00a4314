"""Every value type round-trips through transact and the indexes.

Datomic value types and their Python forms here: long (int, 64-bit), bigint (int of
any size), float / double (float), bigdec (Decimal), boolean (bool), string (str),
keyword (Keyword), symbol (Symbol), instant (aware datetime), uuid (UUID), uri (URI),
bytes (bytes), ref (entity id), tuple (tuple).
"""

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from fastdatomic import Keyword as K, Symbol, URI

from txfns_helper import attr, fresh_conn, user_datoms, value

CASES = [
    ("long", 42), ("long", -(2 ** 63)), ("long", 2 ** 63 - 1), ("long", 0),
    ("bigint", 2 ** 100), ("bigint", -(2 ** 70) + 3), ("bigint", 7),
    ("float", 1.5), ("float", -0.25),
    ("double", 0.1), ("double", -1e300), ("double", float("inf")),
    ("bigdec", Decimal("3.14159265358979323846264338327950288")), ("bigdec", Decimal("-0.001")),
    ("boolean", True), ("boolean", False),
    ("string", ""), ("string", "héllo ☃ \U0001F600"), ("string", "a\x00b"),
    ("keyword", K("status/active")), ("keyword", K("plain")),
    ("symbol", Symbol("my.ns/fn")), ("symbol", Symbol("bare")),
    ("instant", datetime(2020, 2, 29, 23, 59, 59, 999000, tzinfo=timezone.utc)),
    ("instant", datetime(1969, 7, 20, 20, 17, tzinfo=timezone.utc)),
    ("uuid", uuid.UUID("5bd85317-a414-4a9c-b3c8-b00827c0f219")),
    ("uri", URI("https://example.com/a?b=c#d")),
    ("bytes", b"\x00\x01\xfe\xff"), ("bytes", b""),
]


@pytest.fixture(scope="module")
def conn():
    types = sorted({t for t, _ in CASES})
    return fresh_conn(*[attr(f":v/{t}", t, index=True) for t in types],
                      *[attr(f":vm/{t}", t, "many") for t in types])


@pytest.mark.parametrize("vtype,v", CASES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(CASES)])
def test_round_trip(conn, vtype, v):
    a = f":v/{vtype}"
    r = conn.transact([[":db/add", "x", a, v]])
    e = r.tempids["x"]
    assert user_datoms(r) == {(e, a, v, True)}
    got = value(conn.db(), e, a)
    assert got == v and type(got) is type(v)
    assert [d.e for d in conn.db().datoms("avet", a, v)] == [e]
    # re-asserting the same value is redundant
    assert user_datoms(conn.transact([[":db/add", e, a, v]])) == set()


def test_all_types_on_one_entity_via_map(conn):
    m = {f":vm/{t}": v for t, v in CASES}
    # one value per type (the last of each in CASES)
    r = conn.transact([{":db/id": "x", **m}])
    e = r.tempids["x"]
    for k, v in m.items():
        assert {d.v for d in conn.db().datoms("eavt", e, k)} == {v}


def test_naive_datetime_taken_as_utc():
    c = fresh_conn(attr(":v/instant", "instant"))
    e = c.transact([[":db/add", "x", ":v/instant", datetime(2021, 1, 2, 3, 4, 5)]]).tempids["x"]
    assert value(c.db(), e, ":v/instant") == datetime(2021, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_float_keeps_single_precision_value():
    c = fresh_conn(attr(":v/float", "float"))
    e = c.transact([[":db/add", "x", ":v/float", 0.5]]).tempids["x"]
    assert value(c.db(), e, ":v/float") == 0.5


def test_keyword_and_string_values_are_distinct():
    c = fresh_conn(attr(":v/k", "keyword", "many"))
    e = c.transact([[":db/add", "x", ":v/k", K("a/b")]]).tempids["x"]
    assert value(c.db(), e, ":v/k") == K("a/b") and value(c.db(), e, ":v/k") != "a/b"
