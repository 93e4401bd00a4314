"""Support for the transaction-semantics tests (tests/test_tx_*.py).

Two parts:

- functions that transactions name by symbol (``txfns_helper/add_doc``): transaction
  functions for ``:db/fn``, attribute predicates for ``:db.attr/preds`` and entity
  predicates for ``:db.entity/preds``. ``tests/`` is on ``sys.path`` under pytest
  (rootdir conftest), so ``txfns_helper`` imports as a top-level module;
- small utilities: a fresh ``mem`` connection per test, schema maps, datoms of a
  report with attribute idents, and ``assert_tx_fails`` which checks the error kind,
  the message and that the database did not change.

Expected results in the tests are written from Datomic's documented behaviour.
"""

from __future__ import annotations

import uuid

import pytest

import fastdatomic as fd
from fastdatomic import Keyword as K, Symbol
from fastdatomic.errors import FastDatomicError

# --- functions named by symbol from transactions ---------------------------------------

CALLS: list = []          # (name, args) of calls made through these functions


def add_doc(db, e, doc):
    """Transaction function: set ``:db/doc`` of ``e``."""
    CALLS.append(("add_doc", (e, doc)))
    return [[K("db/add"), e, K("db/doc"), doc]]


def inc_attr(db, e, attr, amount):
    """Transaction function: add ``amount`` to the current value of a long attribute."""
    eid = db.entid(e)
    cur = next(iter(db.datoms("eavt", eid, attr)), None)
    base = cur.v if cur is not None else 0
    return [[K("db/add"), eid, attr, base + amount]]


def refuse(db, *args):
    """Transaction function that always cancels."""
    fd.cancel("refused by txfns_helper/refuse", {"args": args})


def non_negative(v):
    """Attribute predicate."""
    return v >= 0


def below_200(v):
    """Attribute predicate."""
    return v < 200


def short_string(v):
    """Attribute predicate."""
    return len(v) <= 5


def raising_pred(v):
    """Attribute predicate that raises instead of answering."""
    raise RuntimeError("pred exploded")


def raising_entity_pred(db, eid):
    """Entity predicate that raises instead of answering."""
    raise RuntimeError("entity pred exploded")


def valid_user(db, eid):
    """Entity predicate (db-after, eid): the email has an '@' and the age, if any, is >= 18."""
    email = next(iter(db.datoms("eavt", eid, ":user/email")), None)
    age = next(iter(db.datoms("eavt", eid, ":user/age")), None)
    if email is None or "@" not in email.v:
        return False
    return age is None or age.v >= 18


# --- utilities ------------------------------------------------------------------------

def fresh_conn(*schema):
    """A connection to a new, uniquely named ``mem`` database, with ``schema`` transacted:
    schema maps, or one string of EDN tx-data."""
    uri = f"fastdatomic:mem://test-{uuid.uuid4().hex}"
    assert fd.create_database(uri) is True
    conn = fd.connect(uri)
    if len(schema) == 1 and isinstance(schema[0], str):
        conn.transact(schema[0])
    elif schema:
        conn.transact(list(schema))
    return conn


def attr(ident, vtype, card="one", **props):
    """A schema map: ``attr(":p/name", "string", unique="identity", index=True)``."""
    m = {":db/ident": K(ident), ":db/valueType": K(f"db.type/{vtype}"),
         ":db/cardinality": K(f"db.cardinality/{card}")}
    for k, v in props.items():
        if k == "unique":
            m[":db/unique"] = K(f"db.unique/{v}")
        elif k == "index":
            m[":db/index"] = v
        elif k == "component":
            m[":db/isComponent"] = v
        elif k == "no_history":
            m[":db/noHistory"] = v
        elif k == "doc":
            m[":db/doc"] = v
        elif k == "preds":
            m[":db.attr/preds"] = [Symbol(p) for p in v]
        elif k == "tuple_attrs":
            m[":db/tupleAttrs"] = [K(a) for a in v]
        elif k == "tuple_type":
            m[":db/tupleType"] = K(f"db.type/{v}")
        elif k == "tuple_types":
            m[":db/tupleTypes"] = [K(f"db.type/{t}") for t in v]
        else:
            raise TypeError(f"unknown attribute property {k}")
    return m


def a_of(db, a):
    """The ident (as ':ns/name' text) of attribute id ``a``."""
    return str(db.ident(a))


def user_datoms(report):
    """The report's datoms that are not about the transaction entity, as
    ``{(e, ':attr', v, added)}``."""
    tx = fd.t_to_tx(report.t)
    db = report.db_after
    return {(d.e, a_of(db, d.a), d.v, d.added) for d in report.tx_data if d.e != tx}


def tx_entity_datoms(report):
    """The report's datoms about the transaction entity, as ``{':attr': v}``."""
    tx = fd.t_to_tx(report.t)
    db = report.db_after
    return {a_of(db, d.a): d.v for d in report.tx_data if d.e == tx}


def entity(db, e):
    """Current ``{(':attr', v)}`` of entity ``e``."""
    return {(a_of(db, d.a), d.v) for d in db.datoms("eavt", e)}


def values(db, e, a):
    """Current values of ``e``'s attribute ``a`` as a set."""
    return {d.v for d in db.datoms("eavt", e, a)}


def value(db, e, a):
    """The one current value of ``e``'s attribute ``a``, or None."""
    vs = [d.v for d in db.datoms("eavt", e, a)]
    assert len(vs) <= 1, vs
    return vs[0] if vs else None


def snapshot(db):
    """Everything a database value holds: basis t and every datom ever (history)."""
    return db.basis_t, [tuple(d) for d in db.history().datoms("eavt")]


def assert_tx_fails(conn, tx_data, kind=None, *fragments, kinds=None):
    """Transact ``tx_data``, expect a FastDatomicError of ``kind`` (or one of ``kinds``)
    whose message holds every fragment (case-insensitive); the database must be unchanged.
    Returns the error."""
    before = snapshot(conn.db())
    with pytest.raises(FastDatomicError) as ei:
        conn.transact(tx_data)
    err = ei.value
    if kind is not None:
        assert err.kind == kind, f"kind {err.kind!r} != {kind!r}: {err}"
    if kinds is not None:
        assert err.kind in kinds, f"kind {err.kind!r} not in {kinds!r}: {err}"
    msg = str(err).lower()
    for frag in fragments:
        assert str(frag).lower() in msg, f"{frag!r} not in message {str(err)!r}"
    assert snapshot(conn.db()) == before, "a failed transaction changed the database"
    return err
