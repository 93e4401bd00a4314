"""The transaction fast path (``_core.txcore``) against the general pipeline (``db.tx``).

The fast path may only change how fast a transaction is prepared, never what it
becomes: for every tx-data, both paths give the same datoms (same entity ids, same
order), tempids (same order), keys, flags, database value after, or the same error.
The general path is the reference (``tx._FAST_PATH = False``).
"""

import math
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastdatomic as fd
from fastdatomic import Keyword as K, Symbol
from fastdatomic._core.txcore import AttrInfo, TxCore, uuid4
from fastdatomic.db import tx as txmod
from fastdatomic.types import URI

from txfns_helper import attr, fresh_conn

SCHEMA = [
    attr(":f/name", "string"),
    attr(":f/n", "long"),
    attr(":f/score", "double"),
    attr(":f/ok", "boolean"),
    attr(":f/kind", "keyword"),
    attr(":f/at", "instant"),
    attr(":f/id", "uuid"),
    attr(":f/big", "bigint"),
    attr(":f/dec", "bigdec"),
    attr(":f/fl", "float"),
    attr(":f/raw", "bytes"),
    attr(":f/uri", "uri"),
    attr(":f/sym", "symbol"),
    attr(":f/tags", "string", "many"),
    attr(":f/nums", "long", "many"),
    attr(":f/best", "ref"),
    attr(":f/friends", "ref", "many"),
    attr(":f/part", "ref", component=True),
    attr(":f/indexed", "long", index=True),
    attr(":f/email", "string", unique="identity"),
    attr(":f/code", "string", unique="value"),
    attr(":f/small", "long", preds=["txfns_helper/below_200"]),
    attr(":f/x", "long"),
    attr(":f/y", "long"),
    attr(":f/xy", "tuple", tuple_attrs=[":f/x", ":f/y"]),
    attr(":f/pair", "tuple", tuple_types=["long", "string"]),
    attr(":f/quiet", "string", no_history=True),
]

NOW = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
TX_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.fixture(scope="module")
def db():
    conn = fresh_conn(*SCHEMA)
    conn.transact([{":db/id": "ann", ":f/name": "Ann", ":f/email": "ann@x", ":f/code": "A1"},
                   {":db/id": "bob", ":f/name": "Bob", ":f/email": "bob@x"},
                   {":db/ident": K("f/red")}])
    return conn.db()


def _state(db):
    return (db.basis_t, db.next_n, db.tx_instant, db.memindex.datom_count, db.memindex.nbytes,
            # repr: a NaN read back twice is two unequal floats
            repr([[tuple(d) for d in db.history().datoms(i)] for i in ("eavt", "aevt", "avet", "vaet")]))


def outcome(db, tx_data, fast, tx_id=TX_ID, now=NOW):
    """Everything ``prepare`` yields (or the error it raises) on one path."""
    old = txmod._FAST_PATH
    txmod._FAST_PATH = fast
    try:
        r = txmod.prepare(db, tx_data, tx_uuid=tx_id, now=now)
    except Exception as e:  # compared across paths: same type, same message
        return ("error", type(e).__name__, str(e))
    finally:
        txmod._FAST_PATH = old
    return ("ok", r.datoms, list(r.tempids.items()), r.t, r.next_n, r.keys, r.flags,
            r.tx_instant, r.tx_uuid, r.db_before is db, _state(r.db_after))


def took_fast(db, tx_data):
    return txmod._prepare_fast(db, tx_data, TX_ID, True, NOW) is not None


def same_both_ways(db, tx_data, **kw):
    fast = outcome(db, tx_data, True, **kw)
    slow = outcome(db, tx_data, False, **kw)
    assert fast == slow
    return fast


# --- shapes the fast path takes -------------------------------------------------------------

FAST_SHAPES = [
    [],
    [{":f/name": "x", ":f/n": 1}],
    [{K("f/name"): "x", K("f/n"): 2, ":f/score": 1.5}],
    [{":db/id": "a", ":f/name": "a"}, {":db/id": "b", ":f/best": "a"}],
    [{":f/best": "a", ":db/id": "b"}, {":db/id": "a", ":f/n": 1}],      # value before its entity
    [{":db/id": "a", ":f/n": 1}, {":db/id": "a", ":f/n": 1}],          # repeated card-one value
    [{":db/id": "a", ":f/n": 1}, [":db/add", "a", ":f/n", 1]],
    [{":f/tags": ["a", "b", "a"], ":f/nums": (1, 2, 2)}],
    [{":f/tags": {"x", "y"}, ":f/nums": frozenset({3})}],
    [{":db/id": "a", ":f/tags": []}],                                   # no datom: tempid unused
    [[":db/add", "t", ":f/name", "lists"], [":db/add", "t", K("f/n"), 5]],
    [[":db/add", "datomic.tx", ":f/name", "metadata"]],
    [{":db/id": "datomic.tx", ":f/name": "metadata"}, {":f/n": 3}],
    [{":f/best": ":f/red", ":f/friends": [K("f/red")]}],
    [{":f/best": [":f/email", "ann@x"]}],
    [{":f/friends": [[":f/email", "bob@x"], "datomic.tx"]}],
    [{":f/kind": K("a/b"), ":f/ok": True, ":f/at": datetime(2020, 1, 1, tzinfo=timezone.utc)}],
    [{":f/at": datetime(2020, 1, 1, 12, 0)}],                            # naive: stored as given by the codec
    [{":f/id": uuid.UUID(int=5), ":f/big": 10 ** 30, ":f/dec": Decimal("1.50")}],
    [{":f/fl": 1.25, ":f/raw": b"\x00\x01", ":f/uri": URI("http://x"), ":f/sym": Symbol("a/b")}],
    [{":f/score": -0.0}, {":f/score": math.nan}, {":f/score": math.inf}],
    [{":f/n": (1 << 63) - 1}, {":f/n": -(1 << 63)}],
    [{":f/indexed": 7, ":f/quiet": "q"}],
    [{":f/name": "n", ":f/n": 2, ":f/nums": 3}],
    [{":db/id": "#auto-1", ":f/n": 1}, {":f/n": 2}],                     # user "#auto-" names stay out
    [{":db/id": "", ":f/n": 1}],
    [{":f/best": "datomic.tx"}],
    [[K("db/add"), "x", ":f/n", 1], [":db/add", "x", ":f/tags", "one"]],
]


@pytest.mark.parametrize("tx_data", FAST_SHAPES)
def test_fast_shapes_match_the_general_path(db, tx_data):
    assert took_fast(db, tx_data)
    assert same_both_ways(db, tx_data)[0] == "ok"
    assert same_both_ways(db, tuple(tx_data))[0] == "ok"


def test_list_form_attribute_by_id(db):
    a = db.entid(":f/n")
    tx_data = [[":db/add", "x", a, 1]]
    assert took_fast(db, tx_data)
    same_both_ways(db, tx_data)


def test_generated_tx_uuid_and_clock_going_back(db, monkeypatch):
    # tx_uuid not given: the general path's uniqueness check is skipped on both paths;
    # a clock behind the last :db/txInstant still gives a later instant.
    monkeypatch.setattr(txmod, "_uuid4", lambda: TX_ID)
    early = db.tx_instant - timedelta(days=1)
    fast = outcome(db, [{":f/n": 1}], True, tx_id=None, now=early)
    slow = outcome(db, [{":f/n": 1}], False, tx_id=None, now=early)
    assert fast == slow and fast[7] == db.tx_instant + timedelta(microseconds=1)


def test_given_tx_uuid_already_used_conflicts_on_both_paths():
    conn = fresh_conn(*SCHEMA)
    conn.transact([{":f/n": 1}], tx_id=TX_ID)
    fast = same_both_ways(conn.db(), [{":f/n": 2}])
    assert fast[0] == "error" and fast[1] == "UniqueConflictError"


def test_tempids_report_order_and_values(db):
    r = txmod.prepare(db, [{":db/id": "b", ":f/best": "a"}, {":db/id": "a", ":f/n": 1}])
    assert list(r.tempids) == ["b", "a", "datomic.tx"]
    assert r.tempids["a"] == r.tempids["b"] + 1 and r.tempids["datomic.tx"] == fd.t_to_tx(r.t)


# --- shapes it leaves to the general path (same result or same error) ------------------------

GENERAL_SHAPES = [
    [{":f/email": "new@x", ":f/n": 1}],                                # unique: upsert rules
    [{":f/email": "ann@x", ":f/n": 9}],                                # upsert onto Ann
    [{":f/code": "A1"}],                                               # unique-value conflict
    [{":f/small": 5}], [{":f/small": 500}],                            # attribute predicates
    [{":f/x": 1, ":f/y": 2}],                                          # composite tuple parts
    [{":f/pair": [1, "a"]}],                                           # tuple value
    [{":f/part": {":f/name": "component"}}],                           # nested map
    [{":f/best": {":f/name": "not a component"}}],
    [{":f/friends": [{":f/email": "nested@x"}]}],
    [{":db/id": [":f/email", "ann@x"], ":f/n": 4}],                    # existing entity
    [{":db/id": ":f/red", ":f/n": 4}],
    [[":db/add", 17592186045418, ":f/n", 4]],
    [[":db/retract", "x", ":f/n", 1]],
    [[":db/cas", [":f/email", "ann@x"], ":f/n", None, 1]],
    [[":db/retractEntity", [":f/email", "bob@x"]]],
    [{":db/id": "a", ":f/n": 1}, {":db/id": "a", ":f/n": 2}],          # datoms-conflict
    [{":f/n": 1, K("f/n"): 2}], [{":f/n": 1, K("f/n"): 1}],
    [{":f/best": "nobody"}],                                           # tempid only as a value
    [{":f/best": ":f/nope"}], [{":f/best": [":f/email", "nobody@x"]}],
    [{":f/best": [":f/name", "Ann"]}],                                 # lookup ref on non-unique
    [{":f/best": 1 << 60}], [{":f/best": -1}], [{":f/best": True}], [{":f/best": 2.5}],
    [{":f/best": ":"}],
    [{":f/n": "one"}], [{":f/n": True}], [{":f/n": 1 << 63}], [{":f/n": None}],
    [{":f/kind": "a/b"}], [{":f/name": "\ud800"}], [{":f/at": "2020"}], [{":f/raw": "s"}],
    [{":f/nope": 1}], [{"f/n": 1}], [{1: 1}], [{":f/_best": "x"}], [{":db/ensure": ":x"}],
    [{":db/id": "x"}], [{":db/id": "x", ":db/doc": "doc"}],
    [{":db/ident": K("f/new")}], [{":db/txInstant": NOW}],
    [{":f/n": 1}, "not a form"], [[]], [[":db/add", "x", ":f/n"]], [[":db.fn/nope", 1]],
    [[":db/add", "x", True, 1]], [[":db/add", "x", 1.0, 1]], [[":db/add", "x", ":db/ensure", ":x"]],
    [[":db/add", "x", ":f/xy", [1, 2]]],
    "not a list", {":f/n": 1},
]


@pytest.mark.parametrize("tx_data", GENERAL_SHAPES, ids=[repr(x)[:60] for x in GENERAL_SHAPES])
def test_other_shapes_match_the_general_path(db, tx_data):
    same_both_ways(db, tx_data)


def test_too_large_goes_to_the_general_path(db, monkeypatch):
    monkeypatch.setattr(txmod, "MAX_TX_DATOMS", 3)
    r = same_both_ways(db, [{":f/tags": ["a", "b", "c", "d"]}])
    assert r[0] == "error" and r[1] == "TxTooLargeError"


def test_generators_take_the_general_path(db):
    fast = outcome(db, (f for f in [{":f/n": 1}]), True)
    slow = outcome(db, (f for f in [{":f/n": 1}]), False)
    assert fast == slow and fast[0] == "ok"


def test_schema_change_gets_a_new_core():
    conn = fresh_conn(*SCHEMA)
    conn.transact([{":f/n": 1}])
    core = conn.db().schema.tx_core
    assert isinstance(core, TxCore)
    conn.transact([attr(":f/later", "string")])
    r = conn.transact([{":f/later": "x"}])
    assert r.db_after.schema.tx_core is not core
    assert r.db_after.entity(r.db_after.datoms("aevt", ":f/later").__iter__().__next__().e)[":f/later"] == "x"


def test_attr_info_and_uuid4():
    info = AttrInfo(63, 2, 1, False, int)
    assert (info.id, info.vtype, info.flags, info.many, info.is_ref, info.fast_type) == (63, 2, 1, False, False, int)
    u = uuid4()
    assert isinstance(u, uuid.UUID) and u.version == 4 and u == uuid.UUID(str(u)) and u != uuid4()


def test_bulk_and_small_through_the_connection_read_back():
    conn = fresh_conn(*SCHEMA)
    for i in range(50):
        conn.transact([{":f/name": f"s{i}", ":f/n": i}])
    conn.transact([{":f/name": f"b{i}", ":f/n": 1000 + i, ":f/score": i / 2} for i in range(500)])
    db = conn.db()
    assert db.count_datoms("aevt", ":f/n") == 550
    assert sorted(d.v for d in db.datoms("aevt", ":f/n"))[:3] == [0, 1, 2]


# --- random tx-data: both paths agree -----------------------------------------------------

_ENTITY = st.sampled_from([None, None, "a", "b", "c", "#auto-9", "datomic.tx", ":f/red",
                           [":f/email", "ann@x"], 17592186045418, -3, 1.5])
_REF = st.sampled_from(["a", "b", "c", "zz", "datomic.tx", ":f/red", K("f/red"), ":f/nope",
                        [":f/email", "ann@x"], [":f/email", "nobody"], 0, 1 << 70, True, None,
                        {":f/name": "nested"}])
_VALUES = {
    ":f/name": st.one_of(st.text(max_size=5), st.integers(), st.none()),
    ":f/n": st.one_of(st.integers(min_value=-(1 << 64), max_value=1 << 64), st.booleans(), st.text(max_size=2)),
    ":f/score": st.one_of(st.floats(allow_nan=True), st.integers(-3, 3)),
    ":f/ok": st.one_of(st.booleans(), st.integers(0, 1)),
    ":f/kind": st.one_of(st.just(K("a/b")), st.just(":a/b"), st.just(K("c"))),
    ":f/tags": st.one_of(st.lists(st.sampled_from(["p", "q", "r"]), max_size=4), st.text(max_size=2),
                         st.frozensets(st.sampled_from(["p", "q"]))),
    ":f/nums": st.one_of(st.lists(st.integers(0, 3), max_size=4).map(tuple), st.integers(0, 3)),
    ":f/best": _REF,
    ":f/friends": st.one_of(st.lists(_REF, max_size=3), _REF),
    ":f/indexed": st.integers(-5, 5),
    ":f/dec": st.sampled_from([Decimal("1.0"), Decimal("1.00"), 1, "x"]),
    ":f/email": st.sampled_from(["ann@x", "new@x", "new2@x"]),
    ":f/x": st.integers(0, 2),
}
_KEYS = st.sampled_from(list(_VALUES) + [K("f/n"), K("f/name")])


def _value_for(key):
    return _VALUES[key if isinstance(key, str) else str(key)]


@st.composite
def _map_form(draw):
    m = {}
    e = draw(_ENTITY)
    if e is not None:
        m[draw(st.sampled_from([":db/id", K("db/id")]))] = e
    for key in draw(st.lists(_KEYS, min_size=0, max_size=4)):
        m[key] = draw(_value_for(key))
    return m


@st.composite
def _list_form(draw):
    key = draw(_KEYS)
    return [draw(st.sampled_from([":db/add", K("db/add")])), draw(_ENTITY), key,
            draw(_value_for(key))]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(_map_form(), _map_form(), _list_form()), max_size=5))
def test_random_tx_data_same_on_both_paths(db, tx_data):
    same_both_ways(db, tx_data)


# Mostly well-formed tx-data, so most examples stay on the fast path to its end.
_NEW_ENTITY = st.sampled_from([None, None, None, "a", "b", "c", "datomic.tx"])
_GOOD_REF = st.sampled_from(["a", "b", "c", "datomic.tx", ":f/red", K("f/red"), [":f/email", "ann@x"]])
_GOOD_VALUES = {
    ":f/name": st.text(max_size=4),
    ":f/n": st.integers(-3, 3),
    ":f/score": st.sampled_from([0.0, -0.0, 1.5, math.nan]),
    ":f/ok": st.booleans(),
    ":f/kind": st.sampled_from([K("a/b"), K("c")]),
    ":f/tags": st.one_of(st.lists(st.sampled_from(["p", "q", "r"]), max_size=4), st.sampled_from(["p", "q"])),
    ":f/nums": st.lists(st.integers(0, 3), max_size=4).map(tuple),
    ":f/best": _GOOD_REF,
    ":f/friends": st.lists(_GOOD_REF, max_size=3),
    ":f/indexed": st.integers(-5, 5),
    ":f/at": st.sampled_from([NOW, datetime(2001, 1, 1)]),
}
_GOOD_KEYS = st.sampled_from(list(_GOOD_VALUES) + [K("f/n"), K("f/tags")])


@st.composite
def _good_map(draw):
    m = {}
    e = draw(_NEW_ENTITY)
    if e is not None:
        m[":db/id"] = e
    for key in draw(st.lists(_GOOD_KEYS, min_size=1, max_size=4)):
        m[key] = draw(_GOOD_VALUES[str(key) if not isinstance(key, str) else key])
    return m


@st.composite
def _good_list(draw):
    key = draw(_GOOD_KEYS)
    e = draw(st.sampled_from(["a", "b", "c", "datomic.tx"]))
    v = draw(_GOOD_VALUES[str(key) if not isinstance(key, str) else key])
    if isinstance(v, (list, tuple)):
        v = v[0] if v and not isinstance(v[0], (list, tuple)) else 1
    return [":db/add", e, key, v]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(_good_map(), _good_map(), _good_list()), max_size=6))
def test_random_well_formed_tx_data_same_on_both_paths(db, tx_data):
    same_both_ways(db, tx_data)


def test_utc_now_is_the_system_clock():
    from fastdatomic._core.txcore import utc_from_timestamp, utc_now
    before = datetime.now(timezone.utc)
    now = utc_now()
    after = datetime.now(timezone.utc)
    assert before <= now <= after and now.tzinfo is timezone.utc
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    for secs in (0, -1, 86399, 86400, 951782400, 951868800, 4107542400, -62135596800, 253402300799):
        assert utc_from_timestamp(secs, 999999) == epoch + timedelta(seconds=secs, microseconds=999999)


@settings(max_examples=300, deadline=None)
@given(st.integers(-62135596800, 253402300799), st.integers(0, 999999))
def test_utc_from_timestamp_is_datetime_arithmetic(secs, micros):
    from fastdatomic._core.txcore import utc_from_timestamp
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert utc_from_timestamp(secs, micros) == epoch + timedelta(seconds=secs, microseconds=micros)
