"""EDN text and Python data are two spellings of the same transaction.

Datomic takes tx-data as data; the EDN reader gives the same data from text
(:kw keywords, vectors as lists, #{} sets, #inst, #uuid, 1.5M bigdec, 42N bigint,
symbols). Transacting either spelling must produce the same datoms.
"""

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

import fastdatomic as fd
from fastdatomic import Keyword as K, Symbol, URI

from txfns_helper import attr, fresh_conn, user_datoms

SCHEMA_EDN = """
[{:db/ident :e/email :db/valueType :db.type/string :db/cardinality :db.cardinality/one
  :db/unique :db.unique/identity}
 {:db/ident :e/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :e/tags :db/valueType :db.type/keyword :db/cardinality :db.cardinality/many}
 {:db/ident :e/friends :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}
 {:db/ident :e/address :db/valueType :db.type/ref :db/cardinality :db.cardinality/one
  :db/isComponent true}
 {:db/ident :addr/street :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :e/born :db/valueType :db.type/instant :db/cardinality :db.cardinality/one}
 {:db/ident :e/uid :db/valueType :db.type/uuid :db/cardinality :db.cardinality/one}
 {:db/ident :e/balance :db/valueType :db.type/bigdec :db/cardinality :db.cardinality/one}
 {:db/ident :e/big :db/valueType :db.type/bigint :db/cardinality :db.cardinality/one}
 {:db/ident :e/ratio :db/valueType :db.type/double :db/cardinality :db.cardinality/one}
 {:db/ident :e/sym :db/valueType :db.type/symbol :db/cardinality :db.cardinality/one}
 {:db/ident :e/home :db/valueType :db.type/uri :db/cardinality :db.cardinality/one}
 {:db/ident :e/active :db/valueType :db.type/boolean :db/cardinality :db.cardinality/one}
 {:db/ident :e/pos :db/valueType :db.type/tuple :db/tupleTypes [:db.type/long :db.type/string]
  :db/cardinality :db.cardinality/one}
 {:db/ident :e/status :db/valueType :db.type/ref :db/cardinality :db.cardinality/one}
 {:db/ident :status/active}
 {:db/ident :audit/by :db/valueType :db.type/string :db/cardinality :db.cardinality/one}]
"""

SCHEMA_PY = [
    attr(":e/email", "string", unique="identity"),
    attr(":e/name", "string"),
    attr(":e/tags", "keyword", "many"),
    attr(":e/friends", "ref", "many"),
    attr(":e/address", "ref", component=True),
    attr(":addr/street", "string"),
    attr(":e/born", "instant"),
    attr(":e/uid", "uuid"),
    attr(":e/balance", "bigdec"),
    attr(":e/big", "bigint"),
    attr(":e/ratio", "double"),
    attr(":e/sym", "symbol"),
    attr(":e/home", "uri"),
    attr(":e/active", "boolean"),
    attr(":e/pos", "tuple", tuple_types=["long", "string"]),
    attr(":e/status", "ref"),
    {":db/ident": K("status/active")},
    attr(":audit/by", "string"),
]

DATA_EDN = """
[{:db/id "ann" :e/email "ann@x.org" :e/name "Ann" :e/tags #{:t/a :t/b}
  :e/address {:addr/street "Main St"}
  :e/born #inst "1990-05-06T07:08:09.123Z" :e/uid #uuid "5bd85317-a414-4a9c-b3c8-b00827c0f219"
  :e/balance 12.50M :e/big 123456789012345678901234567890N :e/ratio 0.25
  :e/sym my.ns/fn :e/home #uri "https://ann.example" :e/active true
  :e/pos [3 "three"] :e/status :status/active}
 {:db/id "bob" :e/email "bob@x.org" :e/friends ["ann"]}
 [:db/add "bob" :e/name "Bob"]
 [:db/add "datomic.tx" :audit/by "loader"]]
"""

DATA_PY = [
    {":db/id": "ann", ":e/email": "ann@x.org", ":e/name": "Ann", ":e/tags": {K("t/a"), K("t/b")},
     ":e/address": {":addr/street": "Main St"},
     ":e/born": datetime(1990, 5, 6, 7, 8, 9, 123000, tzinfo=timezone.utc),
     ":e/uid": uuid.UUID("5bd85317-a414-4a9c-b3c8-b00827c0f219"),
     ":e/balance": Decimal("12.50"), ":e/big": 123456789012345678901234567890, ":e/ratio": 0.25,
     ":e/sym": Symbol("my.ns/fn"), ":e/home": URI("https://ann.example"), ":e/active": True,
     ":e/pos": (3, "three"), ":e/status": K("status/active")},
    {":db/id": "bob", ":e/email": "bob@x.org", ":e/friends": ["ann"]},
    [":db/add", "bob", ":e/name", "Bob"],
    [":db/add", "datomic.tx", ":audit/by", "loader"],
]


def _all(report):
    """Every datom of the report except the clock- and random-dependent tx datoms."""
    db = report.db_after
    skip = {K("db/txInstant"), K("fastdatomic.tx/uuid")}
    return sorted(((d.e, str(db.ident(d.a)), repr(d.v), d.tx, d.added) for d in report.tx_data
                   if db.ident(d.a) not in skip))


def test_schema_edn_equals_python():
    a, b = fresh_conn(), fresh_conn()
    ra, rb = a.transact(SCHEMA_EDN), b.transact(SCHEMA_PY)
    assert _all(ra) == _all(rb)


def test_data_edn_equals_python():
    a, b = fresh_conn(), fresh_conn()
    a.transact(SCHEMA_EDN)
    b.transact(SCHEMA_EDN)
    ra, rb = a.transact(DATA_EDN), b.transact(DATA_PY)
    assert _all(ra) == _all(rb)
    assert ra.tempids == rb.tempids
    ann = ra.tempids["ann"]
    db = a.db()
    assert {d.v for d in db.datoms("eavt", ann, ":e/tags")} == {K("t/a"), K("t/b")}
    assert next(iter(db.datoms("eavt", ann, ":e/balance"))).v == Decimal("12.50")
    assert next(iter(db.datoms("eavt", ann, ":e/pos"))).v == (3, "three")
    assert next(iter(db.datoms("eavt", ann, ":e/status"))).v == db.entid(":status/active")
    assert next(iter(db.datoms("eavt", fd.t_to_tx(ra.t), ":audit/by"))).v == "loader"


def test_edn_list_forms_with_parentheses_and_lookup_refs():
    a, b = fresh_conn(), fresh_conn()
    for c in (a, b):
        c.transact(SCHEMA_EDN)
        c.transact('[{:e/email "ann@x.org"} {:e/email "bob@x.org"}]')
    ra = a.transact('[(:db/add [:e/email "ann@x.org"] :e/friends [:e/email "bob@x.org"])'
                    ' [:db/retract [:e/email "bob@x.org"] :e/email "bob@x.org"]]')
    rb = b.transact([[":db/add", [":e/email", "ann@x.org"], ":e/friends", [":e/email", "bob@x.org"]],
                     [":db/retract", [":e/email", "bob@x.org"], ":e/email", "bob@x.org"]])
    assert _all(ra) == _all(rb)
    assert len(user_datoms(ra)) == 2


def test_edn_and_python_with_same_errors():
    a = fresh_conn()
    a.transact(SCHEMA_EDN)
    before = a.db().basis_t
    with pytest.raises(fd.FastDatomicError) as e1:
        a.transact('[{:e/name 42}]')
    with pytest.raises(fd.FastDatomicError) as e2:
        a.transact([{":e/name": 42}])
    assert e1.value.kind == e2.value.kind == "db.error/wrong-type"
    assert ":e/name" in str(e1.value) and ":e/name" in str(e2.value)
    assert a.db().basis_t == before
