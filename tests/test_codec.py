"""The order-preserving key codec: round trips, byte order == datom order, errors, fuzz."""

from __future__ import annotations

import functools
import math
import struct
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fastdatomic._core import codec
from fastdatomic._core.codec import (
    TYPE_BOOLEAN, TYPE_LONG, TYPE_DOUBLE, TYPE_FLOAT, TYPE_BIGINT, TYPE_BIGDEC, TYPE_INSTANT,
    TYPE_STRING, TYPE_KEYWORD, TYPE_SYMBOL, TYPE_UUID, TYPE_URI, TYPE_BYTES, TYPE_REF, TYPE_TUPLE,
    INDEX_EAVT, INDEX_AEVT, INDEX_AVET, INDEX_VAET,
    encode_value, decode_value, value_size, encode_id, decode_id, encode_key, decode_key,
    decode_keys, encode_keys,
)
from fastdatomic._core.datom import Datom
from fastdatomic.errors import InvalidIndexError, InvalidValueError, WrongTypeError
from fastdatomic.types import Keyword, Symbol, URI

import reference_codec as ref

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
INDEXES = [INDEX_EAVT, INDEX_AEVT, INDEX_AVET, INDEX_VAET]
ALL_TYPES = sorted(codec.TYPE_NAMES)

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cmp(x, y):
    return (x > y) - (x < y)


def assert_same_order(items, enc, key):
    """Pairwise: comparing encodings == comparing reference keys (including equality)."""
    encs = [enc(x) for x in items]
    keys = [key(x) for x in items]
    for i in range(len(items)):
        for j in range(len(items)):
            assert cmp(encs[i], encs[j]) == cmp(keys[i], keys[j]), (items[i], items[j], encs[i], encs[j])
    by_bytes = [keys[i] for i in sorted(range(len(items)), key=lambda i: encs[i])]
    assert by_bytes == sorted(keys)


# --- strategies ---------------------------------------------------------------------

_tricky_chars = st.sampled_from(["\x00", "\x01", "/", "a", "b", "z", "\x7f", "\x80", "é",
                                 "\ud7ff", "\ue000", "\uffff", "\U00010000", "😀", "\U0010ffff"])
texts = st.text(alphabet=_tricky_chars | st.characters(exclude_categories=("Cs",)), max_size=12)
nonempty = st.text(alphabet=_tricky_chars | st.characters(exclude_categories=("Cs",)), min_size=1, max_size=10)
keywords = nonempty.map(lambda s: Keyword(":" + s))
symbols = nonempty.map(Symbol)
bigints = (st.integers() | st.integers(-(2**300), 2**300) | st.integers(-(2**70), 2**70)
           | st.sampled_from([0, 1, -1, 255, 256, -255, -256, I64_MIN, I64_MAX, I64_MIN - 1, I64_MAX + 1,
                              2**64, -(2**64), 2**200, -(2**200), 2**(8 * 121), -(2**(8 * 121))]))
decimals = (
    st.decimals(allow_nan=False, allow_infinity=False)
    | st.builds(lambda s, ds, e: Decimal((s, tuple(ds), e)), st.integers(0, 1),
                st.lists(st.integers(0, 9), min_size=1, max_size=25), st.integers(-40, 40))
    | st.builds(lambda s, ds, e: Decimal((s, tuple(ds), e)), st.integers(0, 1),
                st.lists(st.integers(0, 9), min_size=1, max_size=3), st.integers(-10**6, 10**6))
)
_tzs = st.sampled_from([None, timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                        timezone(-timedelta(hours=8)), timezone(timedelta(hours=23, minutes=59))])
instants = st.builds(lambda dt, tz: dt.replace(tzinfo=tz),
                     st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), _tzs)
floats32 = st.floats(width=32) | st.floats()
uris = texts.map(URI)
blobs = st.binary(max_size=16) | st.lists(st.sampled_from([b"\x00", b"\xff", b"a", b"\x01"]),
                                          max_size=6).map(b"".join)

_leaves = (st.none() | st.booleans() | bigints | st.floats() | decimals | texts | keywords | symbols
           | st.uuids() | uris | blobs | instants)
tuples = st.recursive(st.lists(_leaves, max_size=4).map(tuple),
                      lambda children: st.lists(children | _leaves, max_size=4).map(tuple),
                      max_leaves=12)
small_tuples = st.lists(st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", "a", "b"]),
                        max_size=3).map(tuple)

STRATEGIES = {
    TYPE_BOOLEAN: st.booleans(),
    TYPE_LONG: st.integers(I64_MIN, I64_MAX),
    TYPE_REF: st.integers(I64_MIN, I64_MAX),
    TYPE_BIGINT: bigints,
    TYPE_DOUBLE: st.floats(),
    TYPE_FLOAT: floats32,
    TYPE_BIGDEC: decimals,
    TYPE_INSTANT: instants,
    TYPE_STRING: texts,
    TYPE_KEYWORD: keywords,
    TYPE_SYMBOL: symbols,
    TYPE_UUID: st.uuids(),
    TYPE_URI: uris,
    TYPE_BYTES: blobs,
    TYPE_TUPLE: tuples | small_tuples,
}
assert set(STRATEGIES) == set(ALL_TYPES)

D = Decimal
EDGES = {
    TYPE_BOOLEAN: [False, True],
    TYPE_LONG: [I64_MIN, I64_MIN + 1, -256, -255, -1, 0, 1, 255, 256, I64_MAX - 1, I64_MAX],
    TYPE_REF: [I64_MIN, -1, 0, 1, 17592186044417, I64_MAX],
    TYPE_BIGINT: [-(2**200), -(2**64), I64_MIN - 1, I64_MIN, -256, -255, -1, 0, 1, 255, 256,
                  I64_MAX, I64_MAX + 1, 2**64, 2**200, -(2**(8 * 120)), 2**(8 * 120), 2**(8 * 120 + 1),
                  -(2**(8 * 120 + 1)), 2**2000, -(2**2000)],
    TYPE_DOUBLE: [-math.inf, -1.7976931348623157e308, -1.0, -5e-324, -0.0, 0.0, 5e-324,
                  2.2250738585072014e-308, 2.225073858507201e-308, 1.0, 1.7976931348623157e308, math.inf,
                  math.nan, struct.unpack(">d", bytes.fromhex("fff8000000000001"))[0]],
    TYPE_FLOAT: [-math.inf, -3.4028234663852886e38, -1.0, -1e-45, -0.0, 0.0, 1e-45, 1.1754942e-38,
                 0.1, 1.0, 3.4028234663852886e38, 1e39, math.inf, math.nan],
    TYPE_BIGDEC: [D("0"), D("-0"), D("0.000"), D("0E+5"), D("-0E-3"), D("-0.001"), D("-0.0010"), D("0.001"),
                  D("1E+30"), D("-1E+30"), D("1"), D("1.0"), D("1.00"), D("10"), D("1E+1"), D("9.99"),
                  D("0.1"), D("0.11"), D("0.1000000000000000000001"), D("-1"), D("-1.0"), D("-10"),
                  D("123456789012345678901234567890.123456789"), D("1E-1000000"), D("-1E-1000000"),
                  D("1E+999999999999999999"), D("-1E-999999999999999999"), D("5E+1000000"),
                  D("12345678901234567890"), D("-98765.4321000")],
    TYPE_INSTANT: [datetime(1, 1, 1), datetime(1969, 12, 31, 23, 59, 59, 999999), datetime(1970, 1, 1),
                   datetime(1970, 1, 1, 0, 0, 0, 1), datetime(2024, 2, 29, 12, 0, tzinfo=timezone.utc),
                   datetime(2024, 2, 29, 12, 0, tzinfo=timezone(timedelta(hours=-5))),
                   datetime(9999, 12, 31, 23, 59, 59, 999999), datetime(1600, 2, 29), datetime(1900, 3, 1)],
    TYPE_STRING: ["", "\x00", "\x00\x00", "\x00\x01", "\x01", "a", "a\x00", "a\x00b", "a\x01", "ab", "b",
                  "\u007f", "\u0080", "é", "\uffff", "\U00010000", "😀", "\U0010ffff", "\ufffd"],
    TYPE_KEYWORD: [Keyword(":a"), Keyword(":b"), Keyword(":z"), Keyword(":a/a"), Keyword(":a/b"),
                   Keyword(":a/"), Keyword(":ab/a"), Keyword(":b/a"), Keyword(":/"), Keyword(":/a"),
                   Keyword(":a\x00/x"), Keyword(":a/\x00"), Keyword("::x"), Keyword(":😀/\uffff"),
                   Keyword("db.type", "keyword")],
    TYPE_SYMBOL: [Symbol("a"), Symbol("?e"), Symbol("my.ns/inc"), Symbol("/"), Symbol("a/b/c"),
                  Symbol("\x00"), Symbol(":x")],
    TYPE_UUID: [uuid.UUID(int=0), uuid.UUID(int=1), uuid.UUID(int=2**127), uuid.UUID(int=2**128 - 1),
                uuid.UUID("12345678-1234-5678-1234-567812345678")],
    TYPE_URI: [URI(""), URI("a"), URI("a\x00"), URI("http://example.com/"), URI("https://x/😀")],
    TYPE_BYTES: [b"", b"\x00", b"\x00\x00", b"\x00\xff", b"\x01", b"\xff", b"\xff\x00", bytearray(b"ab"),
                 memoryview(b"ab\x00")],
    TYPE_TUPLE: [(), (None,), (None, None), (False,), (True,), (0,), (1,), (1, 2), (1, None), (-(2**200),),
                 (2**200,), (I64_MAX + 1,), (-1,), (1, (2, 3)), (1, ()), ((),), (((),),), ("a",),
                 ("a", 1), ("a\x00",), [1, "x"], (1.5, D("1.50"), Keyword(":k"), Symbol("s")),
                 (float("nan"),), (-0.0,), (0.0,), (datetime(2020, 1, 1),), (b"\x00",), (URI("u"),),
                 (uuid.UUID(int=5),), (None, (None, (1, [2, (3,)]))), (True, 1)],
}
assert set(EDGES) == set(ALL_TYPES)


def enc(vtype):
    return functools.partial(encode_value, vtype)


def vkey(vtype):
    return functools.partial(ref.value_key, vtype)


def check_roundtrip(vtype, v):
    b = encode_value(vtype, v)
    out = decode_value(b)
    want = ref.expected_decoded(vtype, v)
    assert ref.same_value(out, want), (vtype, v, out, want, b.hex())
    assert value_size(b) == len(b)
    assert value_size(b + b"\x99junk") == len(b)
    # decoding through a memoryview / bytearray gives the same value
    assert ref.same_value(decode_value(memoryview(b)), want)
    # re-encoding the decoded value is a fixed point
    assert encode_value(vtype, out) == b


# --- module surface ---------------------------------------------------------------

def test_type_and_index_tables():
    assert len(codec.TYPE_BY_NAME) == 15
    assert set(codec.TYPE_BY_NAME) == {
        "boolean", "long", "double", "float", "bigint", "bigdec", "instant", "string", "keyword",
        "symbol", "uuid", "uri", "bytes", "ref", "tuple"}
    assert len(set(codec.TYPE_BY_NAME.values())) == 15
    for name, code in codec.TYPE_BY_NAME.items():
        assert type(code) is int
        assert codec.TYPE_NAMES[code] == name
        assert getattr(codec, "TYPE_" + name.upper()) == code
    assert (INDEX_EAVT, INDEX_AEVT, INDEX_AVET, INDEX_VAET) == (0, 1, 2, 3)
    assert all(type(i) is int for i in INDEXES)


def test_docstrings_have_examples():
    import doctest
    for name in ["encode_value", "decode_value", "value_size", "encode_id", "decode_id",
                 "encode_key", "decode_key", "decode_keys", "encode_keys"]:
        assert ">>>" in getattr(codec, name).__doc__, name
    res = doctest.testmod(codec, verbose=False)
    assert res.failed == 0 and res.attempted >= 10
    res = doctest.testmod(ref, verbose=False)
    assert res.failed == 0


def test_tag_bytes():
    assert encode_value(TYPE_BOOLEAN, True) == b"\x10\x01"
    assert encode_value(TYPE_LONG, 0) == b"\x20\x80" + bytes(7)
    assert encode_value(TYPE_REF, 0) == encode_value(TYPE_LONG, 0)
    assert encode_value(TYPE_LONG, -1) == b"\x20" + b"\x7f" + b"\xff" * 7
    assert encode_value(TYPE_DOUBLE, 1.0)[:1] == b"\x30"
    assert encode_value(TYPE_FLOAT, 1.0) == b"\x31" + bytes.fromhex("bf800000")
    assert encode_value(TYPE_BIGINT, 5)[:1] == b"\x21"
    assert encode_value(TYPE_BIGDEC, D(5))[:1] == b"\x38"
    assert encode_value(TYPE_INSTANT, datetime(1970, 1, 1)) == b"\x40\x80" + bytes(7)
    assert encode_value(TYPE_STRING, "a\x00") == b"\x50a\x00\xff\x00\x00"
    assert encode_value(TYPE_KEYWORD, Keyword(":a")) == b"\x51\x01a\x00\x00"
    assert encode_value(TYPE_KEYWORD, Keyword(":n/a")) == b"\x51\x02n\x00\x00a\x00\x00"
    assert encode_value(TYPE_SYMBOL, Symbol("a"))[:1] == b"\x52"
    assert encode_value(TYPE_UUID, uuid.UUID(int=1)) == b"\x60" + (1).to_bytes(16, "big")
    assert encode_value(TYPE_URI, URI("x")) == b"\x61x\x00\x00"
    assert encode_value(TYPE_BYTES, b"\x00") == b"\x70\x00\xff\x00\x00"
    assert encode_value(TYPE_TUPLE, (None,)) == b"\x80\x02\x01"
    assert encode_value(TYPE_TUPLE, ()) == b"\x80\x01"


def test_nan_is_canonical_and_signed_zero_distinct():
    nans = [math.nan, -math.nan, struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0],
            struct.unpack(">d", bytes.fromhex("fff8000000000123"))[0]]
    assert len({encode_value(TYPE_DOUBLE, x) for x in nans}) == 1
    assert len({encode_value(TYPE_FLOAT, x) for x in nans}) == 1
    for t in (TYPE_DOUBLE, TYPE_FLOAT):
        assert encode_value(t, -0.0) < encode_value(t, 0.0)
        assert math.copysign(1, decode_value(encode_value(t, -0.0))) == -1
        assert encode_value(t, math.inf) < encode_value(t, math.nan)


def test_int_accepted_for_double_float_bigdec():
    assert decode_value(encode_value(TYPE_DOUBLE, 3)) == 3.0
    assert type(decode_value(encode_value(TYPE_FLOAT, 3))) is float
    assert decode_value(encode_value(TYPE_BIGDEC, 3)).as_tuple() == D(3).as_tuple()
    assert decode_value(encode_value(TYPE_BIGDEC, -(2**100))) == -(2**100)
    assert encode_value(TYPE_TUPLE, [1, [2]]) == encode_value(TYPE_TUPLE, (1, (2,)))


def test_ints_in_tuples_order_numerically():
    vals = [(-(2**100),), (I64_MIN - 1,), (I64_MIN,), (-1,), (0,), (1,), (I64_MAX,), (I64_MAX + 1,), (2**100,)]
    encs = [encode_value(TYPE_TUPLE, v) for v in vals]
    assert encs == sorted(encs)
    assert all(e[1] == 0x21 for e in encs)


def test_float_rounds_to_binary32():
    assert decode_value(encode_value(TYPE_FLOAT, 0.1)) == struct.unpack("f", struct.pack("f", 0.1))[0]
    assert decode_value(encode_value(TYPE_FLOAT, 1e39)) == math.inf
    assert decode_value(encode_value(TYPE_FLOAT, -1e39)) == -math.inf


def test_instant_naive_is_utc_and_decodes_aware():
    naive = datetime(2021, 6, 1, 12, 30, 15, 123456)
    out = decode_value(encode_value(TYPE_INSTANT, naive))
    assert out == naive.replace(tzinfo=timezone.utc) and out.tzinfo is timezone.utc
    ist = datetime(2021, 6, 1, 18, 0, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert encode_value(TYPE_INSTANT, ist) == encode_value(TYPE_INSTANT, naive)
    with pytest.raises(InvalidValueError):
        encode_value(TYPE_INSTANT, datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))


# --- per-type properties -----------------------------------------------------------

@pytest.mark.parametrize("vtype", ALL_TYPES, ids=lambda t: codec.TYPE_NAMES[t])
def test_edge_cases(vtype):
    edges = EDGES[vtype]
    for v in edges:
        check_roundtrip(vtype, v)
    assert_same_order(edges, enc(vtype), vkey(vtype))


@pytest.mark.parametrize("vtype", ALL_TYPES, ids=lambda t: codec.TYPE_NAMES[t])
def test_roundtrip(vtype):
    @FAST
    @given(STRATEGIES[vtype])
    def run(v):
        check_roundtrip(vtype, v)
    run()


@pytest.mark.parametrize("vtype", ALL_TYPES, ids=lambda t: codec.TYPE_NAMES[t])
def test_byte_order_is_value_order(vtype):
    @FEW
    @given(st.lists(STRATEGIES[vtype], min_size=2, max_size=10)
           | st.lists(st.sampled_from(EDGES[vtype]) | STRATEGIES[vtype], min_size=2, max_size=10))
    def run(vals):
        assert_same_order(vals, enc(vtype), vkey(vtype))
    run()


def test_cross_type_order_is_tag_order():
    pairs = [(t, v) for t in ALL_TYPES for v in EDGES[t][:3]]
    assert_same_order(pairs, lambda tv: encode_value(*tv), lambda tv: ref.value_key(*tv))


@FEW
@given(st.lists(tuples | small_tuples, min_size=2, max_size=10))
def test_tuple_prefix_and_nil_order(vals):
    assert_same_order(vals, enc(TYPE_TUPLE), vkey(TYPE_TUPLE))


def test_tuple_specific_order():
    order = [(), (None,), (None, 1), (False,), (True,), (-1,), (1,), (1, None), (1, 2), (1, 2, 3), (1, 3),
             (2**80,), (0.5,), (D("0.5"),), ("",), ("a",), (Keyword(":a"),), ((),), ((None,),)]
    encs = [encode_value(TYPE_TUPLE, t) for t in order]
    assert encs == sorted(encs)
    assert len(set(encs)) == len(encs)


# --- keys --------------------------------------------------------------------------

ids = st.integers(-3, 3) | st.sampled_from([I64_MIN, I64_MAX, 0, 17592186044417]) | st.integers(I64_MIN, I64_MAX)


def typed_values():
    return st.one_of([st.tuples(st.just(t), STRATEGIES[t] | st.sampled_from(EDGES[t])) for t in ALL_TYPES])


datoms = st.tuples(ids, typed_values(), ids, st.booleans())


def check_key_roundtrip(index, e, a, vtype, v, tx, added):
    k = encode_key(index, e, a, vtype, v, tx, added)
    d = decode_key(index, k)
    assert isinstance(d, Datom)
    assert (d.e, d.a, d.tx, d.added) == (e, a, tx, bool(added))
    assert ref.same_value(d.v, ref.expected_decoded(vtype, v))
    assert k[-9:-1] == encode_id(tx) and k[-1] == (1 if added else 0)
    d2 = decode_key(index, bytearray(k))
    assert d2.as_tuple()[:2] == d.as_tuple()[:2] and ref.same_value(d2.v, d.v)
    return k


@pytest.mark.parametrize("index", INDEXES[:3], ids=["eavt", "aevt", "avet"])
def test_keys_roundtrip_and_order(index):
    # Values of one attribute share one type: the attribute id is the type code.
    @FEW
    @given(st.lists(datoms, min_size=2, max_size=12))
    def run(rows):
        full = [(e, vt, vt, v, tx, added) for e, (vt, v), tx, added in rows]
        keys = [check_key_roundtrip(index, *r) for r in full]
        assert_same_order(list(range(len(full))), lambda i: keys[i],
                          lambda i: ref.datom_key(index, *full[i]))
    run()


@pytest.mark.parametrize("index", INDEXES[:3], ids=["eavt", "aevt", "avet"])
def test_keys_single_attribute_ties(index):
    # Few distinct e/v/tx so ties on every component are common.
    @FEW
    @given(st.sampled_from([TYPE_LONG, TYPE_STRING, TYPE_KEYWORD, TYPE_DOUBLE, TYPE_TUPLE]).flatmap(
        lambda t: st.tuples(st.just(t), st.lists(
            st.tuples(st.integers(-2, 2), st.integers(5, 6), st.sampled_from(EDGES[t][:4]),
                      st.integers(-1, 1), st.booleans()), min_size=2, max_size=12))))
    def run(arg):
        vt, rows = arg
        full = [(e, a, vt, v, tx, added) for e, a, v, tx, added in rows]
        keys = [check_key_roundtrip(index, *r) for r in full]
        assert_same_order(list(range(len(full))), lambda i: keys[i],
                          lambda i: ref.datom_key(index, *full[i]))
    run()


@FEW
@given(st.lists(st.tuples(ids, ids, st.integers(-3, 3) | ids, ids, st.booleans()), min_size=2, max_size=12))
def test_vaet_keys(rows):
    full = [(e, a, TYPE_REF, v, tx, added) for e, a, v, tx, added in rows]
    keys = [check_key_roundtrip(INDEX_VAET, *r) for r in full]
    assert all(len(k) == 34 and k[0] == 0x20 for k in keys)
    assert_same_order(list(range(len(full))), lambda i: keys[i],
                      lambda i: ref.datom_key(INDEX_VAET, *full[i]))


def test_key_layouts():
    e, a, tx = 17592186044417, 72, 13194139534313
    v = encode_value(TYPE_STRING, "x")
    E, A, T = encode_id(e), encode_id(a), encode_id(tx)
    assert encode_key(INDEX_EAVT, e, a, TYPE_STRING, "x", tx, True) == E + A + v + T + b"\x01"
    assert encode_key(INDEX_AEVT, e, a, TYPE_STRING, "x", tx, False) == A + E + v + T + b"\x00"
    assert encode_key(INDEX_AVET, e, a, TYPE_STRING, "x", tx, True) == A + v + E + T + b"\x01"
    r = encode_value(TYPE_REF, 99)
    assert encode_key(INDEX_VAET, e, a, TYPE_REF, 99, tx, True) == r + A + E + T + b"\x01"
    # prefixes are seek keys: everything with (a, v) sorts between prefix and prefix + 0xff
    k = encode_key(INDEX_AVET, e, a, TYPE_STRING, "x", tx, True)
    assert k.startswith(A + v)
    assert encode_key(INDEX_AVET, 1, a, TYPE_STRING, "x\x00", 1, True) > A + v + b"\xff" * 8


def test_ids():
    for x in (I64_MIN, -1, 0, 1, I64_MAX):
        assert decode_id(encode_id(x)) == x and len(encode_id(x)) == 8
    assert encode_id(I64_MIN) == bytes(8)
    assert encode_id(I64_MAX) == b"\xff" * 8
    ids_ = [I64_MIN, -5, -1, 0, 1, 5, I64_MAX]
    assert [encode_id(x) for x in ids_] == sorted(encode_id(x) for x in ids_)
    with pytest.raises(OverflowError):
        encode_id(2**63)


def test_batch_functions():
    rows = [(i, 10, i * 3, 100 + i, i % 2 == 0) for i in range(50)]
    keys = encode_keys(INDEX_EAVT, TYPE_LONG, rows)
    assert keys == [encode_key(INDEX_EAVT, e, a, TYPE_LONG, v, tx, ad) for e, a, v, tx, ad in rows]
    datoms_ = decode_keys(INDEX_EAVT, keys)
    assert [d.as_tuple() for d in datoms_] == rows
    assert encode_keys(INDEX_AVET, TYPE_LONG, datoms_) == encode_keys(INDEX_AVET, TYPE_LONG, rows)
    assert decode_keys(INDEX_EAVT, [memoryview(k) for k in keys]) == datoms_


# --- errors --------------------------------------------------------------------------

WRONG = [
    (TYPE_BOOLEAN, 1), (TYPE_BOOLEAN, "true"), (TYPE_BOOLEAN, None),
    (TYPE_LONG, True), (TYPE_LONG, 1.0), (TYPE_LONG, "1"), (TYPE_LONG, 2**63), (TYPE_LONG, -(2**63) - 1),
    (TYPE_LONG, D(1)), (TYPE_LONG, None),
    (TYPE_REF, False), (TYPE_REF, Keyword(":db/ident")), (TYPE_REF, 2**64),
    (TYPE_BIGINT, 1.5), (TYPE_BIGINT, True), (TYPE_BIGINT, D(1)),
    (TYPE_DOUBLE, "1.0"), (TYPE_DOUBLE, True), (TYPE_DOUBLE, D("1.0")), (TYPE_DOUBLE, 10**400),
    (TYPE_FLOAT, None), (TYPE_FLOAT, False),
    (TYPE_BIGDEC, 1.5), (TYPE_BIGDEC, "1.5"), (TYPE_BIGDEC, True),
    (TYPE_INSTANT, 0), (TYPE_INSTANT, 1.5), (TYPE_INSTANT, "2020-01-01"),
    (TYPE_INSTANT, datetime(2020, 1, 1).date()),
    (TYPE_STRING, Keyword(":a")), (TYPE_STRING, b"a"), (TYPE_STRING, 1), (TYPE_STRING, URI("a")),
    (TYPE_KEYWORD, "a"), (TYPE_KEYWORD, ":a"), (TYPE_KEYWORD, Symbol("a")),
    (TYPE_SYMBOL, "a"), (TYPE_SYMBOL, Keyword(":a")),
    (TYPE_UUID, "12345678-1234-5678-1234-567812345678"), (TYPE_UUID, 5),
    (TYPE_URI, "http://x"), (TYPE_BYTES, "abc"), (TYPE_BYTES, [1, 2]),
    (TYPE_TUPLE, "abc"), (TYPE_TUPLE, {1, 2}), (TYPE_TUPLE, (1, object())), (TYPE_TUPLE, ({},)),
]


@pytest.mark.parametrize("vtype,v", WRONG, ids=lambda x: repr(x)[:30])
def test_wrong_type(vtype, v):
    with pytest.raises(WrongTypeError) as ei:
        encode_value(vtype, v)
    msg = str(ei.value)
    assert ei.value.kind == "db.error/wrong-type"
    if vtype != TYPE_TUPLE or not isinstance(v, tuple):
        assert f":db.type/{codec.TYPE_NAMES[vtype]}" in msg
        assert repr(v)[:20] in msg
    with pytest.raises(WrongTypeError):
        encode_key(INDEX_EAVT, 1, 2, vtype, v, 3, True)


@pytest.mark.parametrize("vtype,v", [
    (TYPE_BIGDEC, D("NaN")), (TYPE_BIGDEC, D("sNaN")), (TYPE_BIGDEC, D("Infinity")), (TYPE_BIGDEC, D("-Inf")),
    (TYPE_STRING, "a\ud800b"), (TYPE_STRING, "\udfff"), (TYPE_URI, URI("\ud800")),
    (TYPE_KEYWORD, Keyword(":\ud800")), (TYPE_SYMBOL, Symbol("a/\udc00")), (TYPE_TUPLE, ("\ud800",)),
    (TYPE_BIGDEC, D((0, (1,) + (0,) * 100001, 0))),
    (TYPE_INSTANT, datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=2)))),
])
def test_invalid_value(vtype, v):
    with pytest.raises(InvalidValueError) as ei:
        encode_value(vtype, v)
    assert ei.value.kind == "db.error/invalid-value"


def test_deeply_nested_tuple_rejected():
    t = ()
    for _ in range(100):
        t = (t,)
    with pytest.raises(InvalidValueError):
        encode_value(TYPE_TUPLE, t)
    loop = []
    loop.append(loop)
    with pytest.raises(InvalidValueError):
        encode_value(TYPE_TUPLE, loop)
    with pytest.raises(InvalidValueError):
        decode_value(b"\x80" * 100000)
    with pytest.raises(InvalidValueError):
        value_size(b"\x80" * 100000)


def test_bad_index():
    with pytest.raises(InvalidIndexError):
        encode_key(7, 1, 2, TYPE_LONG, 3, 4, True)
    with pytest.raises(InvalidIndexError):
        encode_key(INDEX_VAET, 1, 2, TYPE_STRING, "x", 4, True)
    k = encode_key(INDEX_EAVT, 1, 2, TYPE_LONG, 3, 4, True)
    with pytest.raises(InvalidIndexError):
        decode_key(9, k)
    with pytest.raises(WrongTypeError):
        decode_key(INDEX_EAVT, 12345)
    with pytest.raises(WrongTypeError):
        encode_value(99, 1)


@pytest.mark.parametrize("bad,what", [
    (b"", "missing"), (b"\x20\x00", "truncated"), (b"\x99", "unknown value tag"), (b"\x02", "nil"),
    (b"\x01", "end marker"), (b"\x50abc", "unterminated"), (b"\x50a\x00\x01\x00\x00", "bad escape"),
    (b"\x50\xff\xfe\x00\x00", "UTF-8"), (b"\x50\xed\xa0\x80\x00\x00", "UTF-8"),  # encoded surrogate
    (b"\x10\x02", "boolean"), (b"\x21\x81\x00", "non-canonical"), (b"\x21\xf9", "integer header"),
    (b"\x21\xff" + (5).to_bytes(8, "big"), "length"), (b"\x21\xff" + (2**63).to_bytes(8, "big"), "length"),
    (b"\x38\x07", "class"), (b"\x38\x03\x81\x01\xff", "digit"), (b"\x38\x03\x81\x01\x0b\x00\x81\x05", "exponent"),
    (b"\x51\x03a\x00\x00", "marker"), (b"\x51\x02\x00\x00a\x00\x00", "empty namespace"),
    (b"\x40\x7f\x00\x00\x00\x00\x00\x00\x00", "range"), (b"\x80\x21\x80", "unterminated"), (b"\x80\x21", "truncated"),
    (b"\x20" + bytes(8) + b"x", "trailing"), (b"\x60" + bytes(15), "uuid"),
])
def test_malformed_values(bad, what):
    with pytest.raises(InvalidValueError) as ei:
        decode_value(bad)
    assert what in str(ei.value)
    assert "offset" in str(ei.value)


def test_malformed_keys():
    k = encode_key(INDEX_EAVT, 1, 2, TYPE_STRING, "hello", 4, True)
    for cut in range(len(k)):
        with pytest.raises(InvalidValueError):
            decode_key(INDEX_EAVT, k[:cut])
    with pytest.raises(InvalidValueError, match="added"):
        decode_key(INDEX_EAVT, k[:-1] + b"\x02")
    with pytest.raises(InvalidValueError, match="tag 0x99"):
        decode_key(INDEX_EAVT, k[:16] + b"\x99" + k[17:])
    kv = encode_key(INDEX_VAET, 1, 2, TYPE_REF, 3, 4, True)
    with pytest.raises(InvalidValueError):
        decode_key(INDEX_VAET, kv + b"\x00")
    with pytest.raises(InvalidValueError):
        decode_key(INDEX_VAET, b"\x21" + kv[1:])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(INDEXES), st.binary(max_size=64))
def test_fuzz_decode_key(index, junk):
    try:
        d = decode_key(index, junk)
    except InvalidValueError:
        return
    assert isinstance(d, Datom)
    assert len(junk) >= 26


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=48))
def test_fuzz_decode_value(junk):
    for fn in (decode_value, value_size):
        try:
            fn(junk)
        except InvalidValueError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(INDEXES[:3]), typed_values(), st.data())
def test_fuzz_mutated_keys(index, tv, data):
    vt, v = tv
    k = bytearray(encode_key(index, 1, 2, vt, v, 3, True))
    n = data.draw(st.integers(1, 4))
    for _ in range(n):
        i = data.draw(st.integers(0, len(k) - 1))
        k[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        k = k[:data.draw(st.integers(0, len(k)))]
    try:
        decode_key(index, bytes(k))
    except InvalidValueError:
        pass


@settings(max_examples=150, deadline=None)
@given(typed_values())
def test_value_size_matches_and_decoded_consumption(tv):
    vt, v = tv
    b = encode_value(vt, v)
    assert value_size(b"zz" + b + b"tail", 2) == len(b)
    # every strict prefix is malformed (values are self-delimiting and prefix-free)
    for cut in range(len(b)):
        with pytest.raises(InvalidValueError):
            decode_value(b[:cut])
