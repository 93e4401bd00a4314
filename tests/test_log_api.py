"""The transaction log: ``conn.log().tx_range(start, end)``.

Datomic's Log API: ``tx-range`` returns the transactions with ``start <= t < end``
(start inclusive, end exclusive); either bound may be a t or a transaction entity
id, and ``nil`` leaves that side open (beginning / end of the log). Each
transaction is a map of ``:t`` and ``:data`` (the datoms it asserted or retracted),
exactly the report's ``:tx-data``. ``log`` returns an immutable log value.
"""

from __future__ import annotations

import pytest

import fastdatomic as fd
from fastdatomic.errors import NotAnEntityError
from fastdatomic.ids import t_to_tx, is_tx
from txfns_helper import db_uri

SCHEMA_EDN = """
[{:db/ident :l/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one
  :db/unique :db.unique/identity}
 {:db/ident :l/n    :db/valueType :db.type/long   :db/cardinality :db.cardinality/one}
 {:db/ident :l/tags :db/valueType :db.type/keyword :db/cardinality :db.cardinality/many}]
"""


def as_set(datoms):
    return {(d.e, d.a, d.v, d.tx, d.added) for d in datoms}


@pytest.fixture
def conn():
    u = db_uri("log")
    fd.create_database(u)
    c = fd.connect(u)
    yield c
    fd.delete_database(u)


@pytest.fixture
def history(conn):
    """``(conn, reports)``: the schema transaction and five more, one with retractions."""
    reports = [conn.transact(SCHEMA_EDN)]
    for i in range(3):
        reports.append(conn.transact([{":db/id": f"e{i}", ":l/name": f"n{i}", ":l/n": i,
                                       ":l/tags": [fd.kw(f"t/a{i}"), fd.kw("t/common")]}]))
    reports.append(conn.transact([{":l/name": "n0", ":l/n": 100}]))           # card-one replace
    reports.append(conn.transact([[":db/retractEntity", [":l/name", "n1"]]]))  # retractions
    return conn, reports


def ts_of(entries):
    return [e["t"] for e in entries]


def test_entries_are_maps_of_t_and_data(history):
    conn, reports = history
    entries = list(conn.log().tx_range(None, None))
    for e in entries:
        assert set(e) >= {"t", "data"}
        assert all(d.tx == t_to_tx(e["t"]) for d in e["data"])


def test_open_range_is_the_whole_log_from_genesis(history):
    conn, reports = history
    assert ts_of(conn.log().tx_range(None, None)) == [0] + [r.t for r in reports]


def test_start_inclusive_end_exclusive_by_t(history):
    conn, reports = history
    ts = [r.t for r in reports]
    assert ts_of(conn.log().tx_range(ts[1], ts[3])) == ts[1:3]
    assert ts_of(conn.log().tx_range(ts[1], ts[1] + 1)) == [ts[1]]
    assert ts_of(conn.log().tx_range(ts[1], ts[1])) == []


def test_bounds_by_tx_id_equal_bounds_by_t(history):
    conn, reports = history
    ts = [r.t for r in reports]
    log = conn.log()
    by_t = ts_of(log.tx_range(ts[1], ts[4]))
    assert ts_of(log.tx_range(t_to_tx(ts[1]), t_to_tx(ts[4]))) == by_t == ts[1:4]
    assert ts_of(log.tx_range(t_to_tx(ts[1]), ts[4])) == by_t
    assert ts_of(log.tx_range(ts[1], t_to_tx(ts[4]))) == by_t


def test_open_start_and_open_end(history):
    conn, reports = history
    ts = [r.t for r in reports]
    assert ts_of(conn.log().tx_range(None, ts[2])) == [0] + ts[:2]
    assert ts_of(conn.log().tx_range(ts[2], None)) == ts[2:]
    assert ts_of(conn.log().tx_range(t_to_tx(ts[-1]), None)) == [ts[-1]]


def test_bounds_between_transactions(history):
    # t and entity numbers share one counter, so not every t is a transaction's t.
    conn, reports = history
    ts = [r.t for r in reports]
    assert ts[2] - ts[1] > 1
    assert ts_of(conn.log().tx_range(ts[1] + 1, None)) == ts[2:]
    assert ts_of(conn.log().tx_range(None, ts[2] - 1)) == [0] + ts[:2]
    assert ts_of(conn.log().tx_range(ts[1] + 1, ts[2])) == []


def test_ranges_past_either_end(history):
    conn, reports = history
    last = reports[-1].t
    assert ts_of(conn.log().tx_range(last + 1, None)) == []
    assert ts_of(conn.log().tx_range(last + 1000, last + 2000)) == []
    assert ts_of(conn.log().tx_range(None, last + 1000))[-1] == last
    assert ts_of(conn.log().tx_range(0, 1)) == [0]


def test_reversed_range_is_empty(history):
    conn, reports = history
    assert ts_of(conn.log().tx_range(reports[3].t, reports[1].t)) == []


def test_data_equals_the_reports_tx_data(history):
    conn, reports = history
    entries = {e["t"]: e["data"] for e in conn.log().tx_range(reports[0].t, None)}
    assert sorted(entries) == [r.t for r in reports]
    for r in reports:
        assert as_set(entries[r.t]) == as_set(r.tx_data), r.t
        assert len(entries[r.t]) == len(r.tx_data)


def test_retractions_are_in_the_log(history):
    conn, reports = history
    replace, retract = reports[-2], reports[-1]
    n_attr = conn.db().entid(":l/n")
    (entry,) = conn.log().tx_range(replace.t, replace.t + 1)
    changes = {(d.v, d.added) for d in entry["data"] if d.a == n_attr}
    assert changes == {(0, False), (100, True)}
    (entry,) = conn.log().tx_range(retract.t, retract.t + 1)
    user = [d for d in entry["data"] if not is_tx(d.e)]
    assert user and not any(d.added for d in user)
    assert {d.v for d in user} >= {"n1", 1, fd.kw("t/a1"), fd.kw("t/common")}


def test_log_includes_async_transactions_in_commit_order(conn):
    conn.transact(SCHEMA_EDN)
    futs = [conn.transact_async([{":l/name": f"a{i}"}]) for i in range(20)]
    ts = sorted(f.result(5).t for f in futs)
    assert ts_of(conn.log().tx_range(ts[0], None)) == ts


def test_failed_transactions_leave_no_log_entry(history):
    conn, reports = history
    before = ts_of(conn.log().tx_range(None, None))
    with pytest.raises(NotAnEntityError):
        conn.transact([{":l/nope": 1}])
    assert ts_of(conn.log().tx_range(None, None)) == before


def test_with_leaves_no_log_entry(history):
    conn, reports = history
    before = ts_of(conn.log().tx_range(None, None))
    w = conn.db().with_([{":l/name": "speculative"}])
    assert ts_of(conn.log().tx_range(None, None)) == before
    assert ts_of(conn.log().tx_range(w.t, None)) == []


def test_tx_range_can_be_iterated_again(history):
    conn, reports = history
    log = conn.log()
    a = [(e["t"], as_set(e["data"])) for e in log.tx_range(reports[1].t, reports[4].t)]
    b = [(e["t"], as_set(e["data"])) for e in log.tx_range(reports[1].t, reports[4].t)]
    assert a == b and len(a) == 3


def test_log_is_an_immutable_value(history):
    conn, reports = history
    log = conn.log()
    r = conn.transact([{":l/name": "later"}])
    assert r.t not in ts_of(log.tx_range(None, None))
    assert r.t in ts_of(conn.log().tx_range(None, None))
