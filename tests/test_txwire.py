"""Binary tx-data (``_core.txwire``) against the EDN path it replaces on the wire.

The reference is what the peer sent before TRANSACT_BIN and still sends for what has no
binary form: ``peer._wire_text`` (EDN text, bytes tagged, naive datetimes as UTC), carried
in a JSON request (orjson), read by the transactor with ``edn.loads``. For every tx-data
shape, ``decode(encode(x))`` must be exactly that, types included (``Form`` for tuples,
``frozenset`` for sets, the same ``tzinfo``, the same ``Decimal`` exponent, the same NaN
and -0.0); and where EDN refuses a value, binary must refuse it too (``encode`` gives
``None``, so the peer takes the EDN path and fails as it always did).

Malformed payloads must raise ``ProtocolError`` (never anything else, never crash):
random bytes, every truncation of a valid payload, byte flips, and one case per check.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fastdatomic import edn, peer
from fastdatomic._core.txwire import EDN, FRESH_TX_ID, HAS_DB_ID, HAS_TX_ID, MAX_DEPTH, TxWire
from fastdatomic.errors import ProtocolError
from fastdatomic.types import URI, Keyword, Symbol

WIRE = TxWire(edn.Form, edn.dumps)

# The recursive strategies below print long; what they generate is small.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


def via_edn(x):
    """What the transactor got for ``x`` by the EDN path (raises where that path fails)."""
    text = peer._wire_text(x)
    text = orjson.loads(orjson.dumps({"tx": text}))["tx"]      # the JSON request
    return edn.loads(text, tags=edn.BYTES_TAGS if "#" + edn.BYTES_TAG in text else None)


def via_binary(x):
    b = WIRE.encode(x)
    return None if b is None else WIRE.decode(b)


def canon(x):
    """A comparable picture of ``x`` that keeps every type and every bit that matters."""
    t = type(x)
    if t is float:
        return ("float", "nan" if math.isnan(x) else x.hex())
    if t is list or t is tuple or t is edn.Form:
        return (t.__name__, tuple(canon(v) for v in x))
    if t is dict:
        return ("map", len(x), frozenset((canon(k), canon(v)) for k, v in x.items()))
    if t is frozenset or t is set:
        return (t.__name__, len(x), frozenset(canon(v) for v in x))
    if t is datetime:
        return ("inst", x.replace(tzinfo=None).isoformat(), x.utcoffset(), x.tzname(),
                x.tzinfo is timezone.utc, x.fold)
    if t is Decimal:
        return ("decimal", str(x))
    if t is uuid.UUID:
        return ("uuid", x.int, x.is_safe)
    if t is Keyword or t is Symbol:
        return (t.__name__, x.full_name, x is t(x.full_name))      # interned
    if t is URI:
        return ("uri", x.value)
    return (t.__name__, x)


def assert_same_as_edn(x):
    try:
        want, err = via_edn(x), None
    except (TypeError, ValueError) as e:
        want, err = None, e
    b = WIRE.encode(x)
    if b is None:
        return False                # the peer sends EDN text: the same by construction
    assert err is None, f"binary carries what the EDN path refuses ({err!r}): {x!r:.200}"
    assert canon(WIRE.decode(b)) == canon(want), x
    return True


# --- tx-data shapes ----------------------------------------------------------------------

NAMES = ["a", "a/b", "person/name", "db/add", "db.fn/retractEntity", "x.y/z-w*", "?e", "_",
         "my.ns/inc", "é/ü", "a b", "1a", "a/", "a/b/c", "nil", "true", "a::b", "/", "tx/+"]
ZONES = [timezone.utc, timezone(timedelta(0)), timezone(timedelta(hours=5, minutes=30)),
         timezone(timedelta(hours=-3)), timezone(timedelta(hours=-23, minutes=-59)),
         timezone(timedelta(seconds=3661)), timezone(timedelta(microseconds=1))]

texts = st.one_of(st.text(max_size=12), st.sampled_from([":b/n", "datomic.tx", "tmp", ""]),
                  st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2))
keywords = st.sampled_from(NAMES).map(Keyword)
symbols = st.sampled_from(NAMES).map(Symbol)
big = st.tuples(st.integers(60, 9000), st.integers(-5, 5), st.booleans()).map(
    lambda t: (-1 if t[2] else 1) * (2 ** t[0] + t[1]))
ints = st.one_of(st.integers(-300, 300), st.integers(-2 ** 64, 2 ** 64), big,
                 st.sampled_from([-2 ** 63, 2 ** 63 - 1, 2 ** 63, -2 ** 63 - 1]))
datetimes = st.datetimes(timezones=st.one_of(st.none(), st.sampled_from(ZONES)))
scalars = st.one_of(
    st.none(), st.booleans(), ints, st.floats(), texts, keywords, symbols, st.uuids(),
    datetimes, st.decimals(), st.decimals(places=3), st.binary(max_size=8),
    st.binary(max_size=8).map(bytearray), texts.map(URI), st.fractions(max_denominator=5),
    st.just(1 + 2j))


hashable_scalars = scalars.filter(
    lambda v: type(v) is not bytearray and not (type(v) is Decimal and v.is_snan()))


def _hashables(children):
    return st.one_of(st.tuples(children, children), st.lists(children, max_size=3).map(tuple),
                     st.lists(children, max_size=3).map(edn.Form),
                     st.frozensets(children, max_size=3))


hashables = st.recursive(hashable_scalars, _hashables, max_leaves=8)


def _collections(children):
    return st.one_of(
        st.lists(children, max_size=4), st.lists(children, max_size=4).map(tuple),
        st.lists(children, max_size=4).map(edn.Form),
        st.dictionaries(st.one_of(texts, keywords, hashables), children, max_size=4),
        st.sets(hashables, max_size=3), st.frozensets(hashables, max_size=3))


tx_data = st.recursive(scalars, _collections, max_leaves=25)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tx_data)
def test_binary_gives_exactly_what_the_edn_path_gives(x):
    assert_same_as_edn(x)


# The shapes users pass, with values every attribute type takes: these never fall back.
plain_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 200, 2 ** 200), st.floats(),
    st.text(max_size=10), st.sampled_from(NAMES[:9]).map(Keyword),
    st.sampled_from(NAMES[:9]).map(Symbol), st.uuids(),
    st.datetimes(timezones=st.one_of(st.none(), st.sampled_from(ZONES[:5]))),
    st.decimals(allow_nan=False, allow_infinity=False), st.binary(max_size=8),
    st.text(max_size=10).map(URI))
forms = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from([":b/n", ":b/s", ":db/id"]),
                              st.sampled_from(NAMES[:9]).map(Keyword)),
                    st.one_of(plain_scalars, st.lists(plain_scalars, max_size=3),
                              st.tuples(plain_scalars, plain_scalars),
                              st.dictionaries(st.sampled_from([":c/d", ":db/id"]), plain_scalars,
                                              max_size=2)), max_size=5),
    st.tuples(st.sampled_from([Keyword("db/add"), Keyword("db/retract"), ":db/add",
                               Keyword("db/cas"), Symbol("my.ns/fn")]),
              st.one_of(st.text(max_size=5), st.integers(0, 2 ** 50),
                        st.tuples(st.just(Keyword("p/email")), st.text(max_size=5)).map(list)),
              st.sampled_from([Keyword("p/n"), ":p/n"]), plain_scalars).map(list))


@settings(max_examples=500, deadline=None)
@given(st.lists(forms, max_size=6))
def test_common_tx_data_always_goes_binary(x):
    assert assert_same_as_edn(x), x


@pytest.mark.parametrize("x,why", [
    ([Fraction(1, 3)], "no binary ratio"),
    ([Keyword("a b")], "a keyword with no EDN form (EDN refuses it too)"),
    ([Decimal("NaN")], "EDN has no non-finite decimal"),
    ([datetime(2020, 1, 1, tzinfo=timezone(timedelta(seconds=30)))], "EDN writes it in UTC"),
    (["\ud800"], "not valid Unicode"),
    ([{"\ud800": 1}], "a map key that is not valid Unicode"),
    ([memoryview(b"ab")], "a buffer that is not bytes"),
    ([2 ** 9000], "past the big-integer limit"),
    ([int], "a type"),
])
def test_values_without_a_binary_form_fall_back_to_edn(x, why):
    assert WIRE.encode(x) is None, why
    assert_same_as_edn(x)


def _nested(depth):
    x = [0]
    for _ in range(depth - 1):
        x = [x]
    return x


def _depth(x):
    n = 0
    while type(x) is list:
        assert len(x) == 1
        x, n = x[0], n + 1
    return n, x


def test_nesting_past_max_depth_falls_back_to_edn():
    deep = _nested(MAX_DEPTH + 1)
    assert WIRE.encode(deep) is None
    assert _depth(via_edn(deep)) == (MAX_DEPTH + 1, 0)
    assert _depth(via_binary(_nested(MAX_DEPTH))) == (MAX_DEPTH, 0)


def test_name_table_repeats_cost_two_bytes_and_decode_to_one_object():
    data = [{":b/n": i, ":b/s": "x", Keyword("b/k"): i} for i in range(100)]
    b = WIRE.encode(data)
    back = WIRE.decode(b)
    # per map: MAP 3, then per entry a 2-byte REF and the value (INT 2-3, STR "x" 3)
    assert back == data and len(b) < 100 * 17 and b.count(b"b/n") == 1
    assert all(next(iter(m)) is next(iter(back[0])) for m in back)


# --- the request payload ---------------------------------------------------------------

def test_payload_header_round_trip():
    tid = uuid.uuid4()
    p = WIRE.transact_payload("people", tid, "db-1", [[":db/add", "x", ":a/b", 1]], True)
    db, tx_id, db_id, data, flags = WIRE.decode_transact(p)
    assert (db, tx_id, db_id, data) == ("people", tid, "db-1", [[":db/add", "x", ":a/b", 1]])
    assert flags == HAS_TX_ID | HAS_DB_ID | FRESH_TX_ID and tx_id.is_safe == tid.is_safe
    p = WIRE.transact_payload_edn("people", None, None, '[{:a/b "é"}]', True)
    assert WIRE.decode_transact(p) == ("people", None, None, '[{:a/b "é"}]', EDN)  # no id: not fresh


def test_peer_sends_edn_strings_as_they_are():
    p = peer._transact_payload("db", None, None, '[[:db/add "x" :a/b #inst "2020-01-01"]]')
    assert WIRE.decode_transact(p)[3:] == ('[[:db/add "x" :a/b #inst "2020-01-01"]]', EDN)
    p = peer._transact_payload("db", None, None, [Fraction(1, 2)])
    assert WIRE.decode_transact(p)[3:] == ("[1/2]", EDN)


def test_legacy_request_for_an_older_transactor():
    tid = uuid.uuid4()
    p = peer._transact_payload("db", tid, "id-1", [{":a/b": (1, datetime(2020, 1, 1))}], True)
    msg = peer._legacy_transact(p)
    assert msg == {"db": "db", "tx": '[{":a/b" (1 #inst "2020-01-01T00:00:00.000Z")}]',
                   "tx_id": str(tid), "db_id": "id-1"}


# --- malformed payloads -------------------------------------------------------------------

def _decode_or_protocol_error(payload):
    try:
        WIRE.decode_transact(payload)
    except ProtocolError as e:
        assert e.data["reason"] == "txwire" and "malformed TRANSACT_BIN" in str(e)
        assert e.data["outcome"] == "not-committed"


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_ever_raise_protocol_error(payload):
    _decode_or_protocol_error(b"\x01\x00\x02db" + payload)
    _decode_or_protocol_error(payload)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tx_data, st.data())
def test_damaged_payloads_only_ever_raise_protocol_error(x, data):
    p = WIRE.transact_payload("db", uuid.uuid4(), None, x)
    if p is None:
        return
    for cut in range(len(p)):            # every truncation is incomplete
        with pytest.raises(ProtocolError):
            WIRE.decode_transact(p[:cut])
    b = bytearray(p)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(b) - 1))
        b[i] = data.draw(st.integers(0, 255))
    _decode_or_protocol_error(bytes(b))


HEAD = b"\x01\x00\x02db"


@pytest.mark.parametrize("payload,words", [
    (b"", "1 bytes needed, 0 left"),
    (b"\x02\x00\x02db\x00", "format version 2 is not supported"),
    (b"\x01\x40\x02db\x00", "unknown flags 0x40"),
    (b"\x01\x08\x02db\x00", "unknown flags 0x08"),               # fresh, but no tx id
    (b"\x01\x02\x02db" + b"\x00" * 5, "16 bytes needed"),
    (b"\x01\x00\x05db", "length 5 exceeds"),
    (b"\x01\x00\x02\xff\xfe\x00", "not UTF-8"),
    (HEAD + b"\x63", "unknown tag 0x63"),
    (HEAD, "1 bytes needed, 0 left"),
    (HEAD + b"\x00\x00", "1 bytes after the tx-data"),
    (HEAD + b"\x12\x00", "name reference 0 beyond the 0 names"),
    (HEAD + b"\x0e\xff\xff\xff\xff\x0f", "exceeds the"),          # a count no payload holds
    (HEAD + b"\x03" + b"\xff" * 11, "overlong varint"),
    (HEAD + b"\x0e\x01" * (MAX_DEPTH + 1) + b"\x00", "nesting deeper than"),
    (HEAD + b"\x10\x01\x0e\x00\x00", "map key of unhashable type list"),
    (HEAD + b"\x11\x01\x10\x00", "set element of an unhashable type"),
    (HEAD + b"\x06\x02\xc3\x28", "text is not UTF-8"),
    (HEAD + b"\x07\x00", "empty keyword or symbol"),
    (HEAD + b"\x0a\x07\xe4\x0d\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00", "invalid instant"),
    (HEAD + b"\x0a\x07\xe4\x01\x01\x00\x00\x00\x00\x00\x00\x00\x05\xa0", "invalid instant"),
    (HEAD + b"\x0b\x03NaN", "invalid decimal"),
    (HEAD + b"\x0b\x03abc", "invalid decimal"),
    (HEAD + b"\x0b\x02\xd9\xa1", "invalid decimal"),                # a non-ASCII digit
    (HEAD + b"\x04\x00", "big integer of 0 bytes"),
    (HEAD + b"\x04\x82\x08" + b"\x01" * 1026, "big integer of 1026 bytes"),
    (HEAD + b"\x05\x00\x00", "8 bytes needed"),
    (b"\x01\x01\x02db\xff", "EDN text is not UTF-8"),
])
def test_each_malformed_payload_names_its_fault(payload, words):
    with pytest.raises(ProtocolError) as info:
        WIRE.decode_transact(payload)
    assert words in str(info.value), str(info.value)
    assert info.value.data["reason"] == "txwire"
