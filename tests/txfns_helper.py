"""Support for the transaction-semantics tests (tests/test_tx_*.py).

Two parts:

- functions that transactions name by symbol (``txfns_helper/add_doc``): transaction
  functions for ``:db/fn``, attribute predicates for ``:db.attr/preds`` and entity
  predicates for ``:db.entity/preds``. ``tests/`` is on ``sys.path`` under pytest
  (rootdir conftest), so ``txfns_helper`` imports as a top-level module;
- small utilities: a fresh connection per test, schema maps, datoms of a report with
  attribute idents, and ``assert_tx_fails`` which checks the error kind, the message
  and that the database did not change.

The protocol: ``FASTDATOMIC_TEST_PROTOCOL=mem`` (default) gives in-process databases;
``=dev`` gives databases in the LMDB storage of one real transactor started for the
session by ``tests/conftest.py`` (its ``data-dir`` in ``FASTDATOMIC_TEST_DEV_DIR``), so
the same tests run through the network, EDN on the wire and the networked peer. That
transactor imports this module at startup (``FASTDATOMIC_TX_FNS=txfns_helper``, with
``tests/`` on its ``PYTHONPATH``): the functions below are on its "classpath".

Expected results in the tests are written from Datomic's documented behaviour.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

import fastdatomic as fd
from fastdatomic import Keyword as K, Symbol
from fastdatomic.db.tx import register_tx_fn
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


def explode(db, message):
    """Transaction function that raises a plain Python exception."""
    raise ValueError(message)


def forever(db):
    """Transaction function expanding to itself, forever."""
    return [[Symbol("txfns_helper/forever")]]


def bad_result(db):
    """Transaction function returning something that is not tx-data."""
    return [42]


def make_named(db, name):
    """Transaction function making an entity under its own tempid ``"from-fn"``."""
    return [{":db/id": "from-fn", ":p/name": name}]


# Named by keyword, so registered at import: the session transactor imports this module
# at startup (FASTDATOMIC_TX_FNS=txfns_helper), which is how it has them too.
register_tx_fn(K("txfns-helper/inc"), inc_attr)


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


def block(db, latch):
    """Transaction function holding the writer until the directory ``latch`` holds a file
    ``release`` (10 s at most); it writes ``started`` there first. Files, so that a test
    can hold a transactor in another process too (see ``Latch``)."""
    open(os.path.join(latch, "started"), "w").close()
    deadline = time.monotonic() + 10
    while not os.path.exists(os.path.join(latch, "release")) and time.monotonic() < deadline:
        time.sleep(0.002)
    return []


def valid_user(db, eid):
    """Entity predicate (db-after, eid): the email has an '@' and the age, if any, is >= 18."""
    email = next(iter(db.datoms("eavt", eid, ":user/email")), None)
    age = next(iter(db.datoms("eavt", eid, ":user/age")), None)
    if email is None or "@" not in email.v:
        return False
    return age is None or age.v >= 18


# --- utilities ------------------------------------------------------------------------

PROTOCOL = os.environ.get("FASTDATOMIC_TEST_PROTOCOL", "mem")
if PROTOCOL not in ("mem", "dev"):
    raise RuntimeError(f"FASTDATOMIC_TEST_PROTOCOL={PROTOCOL!r}: use mem or dev")


def _dev_dir():
    d = os.environ.get("FASTDATOMIC_TEST_DEV_DIR")
    if not d:
        raise RuntimeError("FASTDATOMIC_TEST_PROTOCOL=dev but no FASTDATOMIC_TEST_DEV_DIR: "
                           "the session transactor is started by tests/conftest.py")
    return d


def system_uri():
    """The URI of the whole test system, for ``list_databases``."""
    return f"fastdatomic:dev://{_dev_dir()}/*" if PROTOCOL == "dev" else "fastdatomic:mem://*"


def db_uri(prefix="test"):
    """A URI for a new, uniquely named database of the protocol under test."""
    name = f"{prefix}-{uuid.uuid4().hex}"
    return f"fastdatomic:dev://{_dev_dir()}/{name}" if PROTOCOL == "dev" else f"fastdatomic:mem://{name}"


def fresh_conn(*schema):
    """A connection to a new, uniquely named database (``mem``, or ``dev`` through the
    session transactor), with ``schema`` transacted: schema maps, or one string of EDN
    tx-data."""
    uri = db_uri()
    assert fd.create_database(uri) is True
    conn = fd.connect(uri)
    if len(schema) == 1 and isinstance(schema[0], str):
        conn.transact(schema[0])
    elif schema:
        conn.transact(list(schema))
    return conn


class Latch:
    """Holds the writer (in-process or a transactor's) inside a transaction: put ``form``
    in tx-data, ``wait_started()``, then ``release()``."""

    def __init__(self, dir_):
        self.dir = str(dir_)
        os.makedirs(self.dir, exist_ok=True)
        self.form = [Symbol("txfns_helper/block"), self.dir]

    def wait_started(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not os.path.exists(os.path.join(self.dir, "started")):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def release(self):
        open(os.path.join(self.dir, "release"), "w").close()


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
