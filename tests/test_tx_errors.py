"""Rejected transactions: wrong value types and malformed tx-data.

Datomic: a value that does not fit its attribute's :db/valueType fails the whole
transaction (:db.error/wrong-type here) naming the attribute; malformed forms fail
with an error naming the form. Nothing of a failed transaction is applied, and the
connection keeps working (ARCHITECTURE invariant 9).
"""

from datetime import date
from decimal import Decimal

import pytest

import fastdatomic as fd
from fastdatomic import Keyword as K, Symbol
from fastdatomic.db import tx as txmod

from txfns_helper import assert_tx_fails, attr, fresh_conn, user_datoms, value

TYPES = ["long", "bigint", "float", "double", "bigdec", "boolean", "string", "keyword", "symbol",
         "instant", "uuid", "uri", "bytes", "ref"]

WRONG = [
    ("long", "1"), ("long", 1.5), ("long", True), ("long", Decimal("1")),
    ("bigint", "1"), ("bigint", 1.5),
    ("float", "1.0"), ("double", "1.0"), ("double", K("x")),
    ("bigdec", "1.0"), ("bigdec", 1.5),
    ("boolean", 1), ("boolean", "true"),
    ("string", 1), ("string", K("a/b")), ("string", b"bytes"),
    ("keyword", "a/b"), ("keyword", Symbol("a/b")),
    ("symbol", "a/b"), ("symbol", K("a/b")),
    ("instant", 1_600_000_000_000), ("instant", "2020-01-01T00:00:00Z"), ("instant", date(2020, 1, 1)),
    ("uuid", "5bd85317-a414-4a9c-b3c8-b00827c0f219"), ("uuid", 5),
    ("uri", "https://example.com"),
    ("bytes", "abc"), ("bytes", 5),
    ("ref", 1.5), ("ref", Decimal("1")),
]

def _cases(cases):
    return [pytest.param(t, v, id=f"{t}-{type(v).__name__}") for t, v in cases]


@pytest.fixture(scope="module")
def conn():
    return fresh_conn(*[attr(f":w/{t}", t) for t in TYPES], attr(":w/many", "long", "many"))


@pytest.mark.parametrize("vtype,v", _cases(WRONG))
def test_wrong_type_names_the_attribute(conn, vtype, v):
    assert_tx_fails(conn, [{":w/string": "ok"}, [":db/add", "x", f":w/{vtype}", v]],
                    "db.error/wrong-type", f":w/{vtype}")


@pytest.mark.parametrize("vtype,v", _cases([("long", "1"), ("keyword", "kw"), ("ref", 1.5)]))
def test_wrong_type_in_map_form(conn, vtype, v):
    assert_tx_fails(conn, [{":db/id": "x", ":w/string": "ok", f":w/{vtype}": v}],
                    "db.error/wrong-type", f":w/{vtype}")


def test_wrong_type_among_card_many_values(conn):
    assert_tx_fails(conn, [{":db/id": "x", ":w/many": [1, 2, "three"]}], "db.error/wrong-type", ":w/many")


def test_long_out_of_range(conn):
    assert_tx_fails(conn, [[":db/add", "x", ":w/long", 2 ** 63]], None, ":w/long")


def test_wrong_type_for_retraction_value(conn):
    e = conn.transact([{":db/id": "x", ":w/long": 1}]).tempids["x"]
    assert_tx_fails(conn, [[":db/retract", e, ":w/long", "1"]], "db.error/wrong-type", ":w/long")


def test_tx_data_must_be_a_list_of_forms(conn):
    assert_tx_fails(conn, {":w/string": "x"}, "db.error/invalid-tx-data")
    assert_tx_fails(conn, 42, "db.error/invalid-tx-data")


def test_non_form_element_is_named(conn):
    assert_tx_fails(conn, [{":w/string": "ok"}, 42], "db.error/invalid-tx-data", "42")
    assert_tx_fails(conn, [[]], "db.error/invalid-tx-data")


def test_unknown_operation_is_named(conn):
    assert_tx_fails(conn, [[":db/assert", "x", ":w/string", "v"]], "db.error/invalid-tx-data", ":db/assert")


def test_op_that_is_not_a_keyword(conn):
    assert_tx_fails(conn, [[42, "x", ":w/string", "v"]], "db.error/invalid-tx-data")


def test_unknown_attribute_is_named(conn):
    assert_tx_fails(conn, [[":db/add", "x", ":w/nope", 1]], "db.error/not-an-entity", ":w/nope")
    assert_tx_fails(conn, [{":w/nope": 1}], "db.error/not-an-entity", ":w/nope")


def test_attribute_position_given_a_non_attribute_entity(conn):
    conn.transact([{":db/ident": K("w.enum/red")}])
    assert_tx_fails(conn, [[":db/add", "x", ":w.enum/red", 1]], None, ":w.enum/red")


def test_bad_entity_reference(conn):
    assert_tx_fails(conn, [[":db/add", 1.5, ":w/string", "v"]], "db.error/invalid-tx-data", "1.5")
    assert_tx_fails(conn, [[":db/add", [":w/string", "v", "extra"], ":w/long", 1]], "db.error/invalid-tx-data",
                    "extra")


def test_lookup_ref_on_non_unique_attribute(conn):
    conn.transact([{":w/string": "not-unique"}])
    assert_tx_fails(conn, [[":db/add", [":w/string", "not-unique"], ":w/long", 1]], None, ":w/string")


def test_edn_syntax_error(conn):
    assert_tx_fails(conn, '[{:w/string "unterminated}]', "edn/syntax")


def test_edn_wrong_type(conn):
    assert_tx_fails(conn, '[{:w/long "one"}]', "db.error/wrong-type", ":w/long")


def test_transaction_too_large(conn, monkeypatch):
    monkeypatch.setattr(txmod, "MAX_TX_DATOMS", 10)
    assert_tx_fails(conn, [[":db/add", "x", ":w/many", i] for i in range(11)], "db.error/tx-too-large")
    monkeypatch.undo()
    r = conn.transact([[":db/add", "x", ":w/many", i] for i in range(11)])
    assert len(user_datoms(r)) == 11


def test_connection_keeps_working_after_failures(conn):
    for bad in ([[":db/add", "x", ":w/long", "1"]], [[":nope/fn"]], [42], '[{:w/string "x}]'):
        with pytest.raises(fd.FastDatomicError):
            conn.transact(bad)
    r = conn.transact([{":db/id": "x", ":w/long": 7}])
    assert value(conn.db(), r.tempids["x"], ":w/long") == 7


def test_errors_are_raised_from_with_too(conn):
    db = conn.db()
    with pytest.raises(fd.FastDatomicError) as ei:
        db.with_([[":db/add", "x", ":w/long", "1"]])
    assert ei.value.kind == "db.error/wrong-type"
    assert conn.db().basis_t == db.basis_t


def test_async_transact_reports_error_through_future(conn):
    before = conn.db().basis_t
    fut = conn.transact_async([[":db/add", "x", ":w/long", "1"]])
    with pytest.raises(fd.FastDatomicError) as ei:
        fut.result(10)
    assert ei.value.kind == "db.error/wrong-type"
    assert conn.db().basis_t == before
