"""The transaction entity: "datomic.tx", :db/txInstant, :fastdatomic.tx/uuid.

Datomic: every transaction is an entity (in :db.part/tx) whose id corresponds to its
t; the tempid "datomic.tx" names it, so facts about the transaction (who, why) can be
asserted in it. Every transaction gets :db/txInstant, monotonically increasing; a
transaction may supply its own :db/txInstant, but not one older than the latest
transaction's. An empty transaction is a transaction too.
"""

import uuid
from datetime import datetime, timedelta, timezone

import pytest

import fastdatomic as fd
from fastdatomic.ids import part

from txfns_helper import assert_tx_fails, attr, fresh_conn, tx_entity_datoms, user_datoms, value

SCHEMA = [
    attr(":audit/user", "string"),
    attr(":audit/reason", "string"),
    attr(":audit/source", "ref"),
    attr(":d/name", "string"),
    attr(":d/created-in", "ref"),
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def test_map_with_datomic_tx_lands_on_tx_entity(conn):
    r = conn.transact([{":db/id": "datomic.tx", ":audit/user": "ann"}, {":d/name": "thing"}])
    tx = fd.t_to_tx(r.t)
    assert part(tx) == fd.PART_TX
    assert tx_entity_datoms(r)[":audit/user"] == "ann"
    assert value(conn.db(), tx, ":audit/user") == "ann"
    assert all(d[0] != tx for d in user_datoms(r))


def test_list_form_with_datomic_tx(conn):
    r = conn.transact([[":db/add", "datomic.tx", ":audit/reason", "fix typo"]])
    assert value(conn.db(), fd.t_to_tx(r.t), ":audit/reason") == "fix typo"


def test_datomic_tx_as_ref_value(conn):
    r = conn.transact([{":db/id": "d", ":d/name": "doc", ":d/created-in": "datomic.tx"}])
    assert value(conn.db(), r.tempids["d"], ":d/created-in") == fd.t_to_tx(r.t)


def test_tx_entity_can_reference_other_entities(conn):
    r = conn.transact([{":db/id": "src", ":d/name": "importer"},
                       {":db/id": "datomic.tx", ":audit/source": "src"}])
    assert value(conn.db(), fd.t_to_tx(r.t), ":audit/source") == r.tempids["src"]


def test_metadata_only_transaction(conn):
    r = conn.transact([{":db/id": "datomic.tx", ":audit/user": "cron"}])
    assert user_datoms(r) == set()
    assert tx_entity_datoms(r)[":audit/user"] == "cron"


def test_empty_transaction_is_a_transaction(conn):
    before = conn.db().basis_t
    r = conn.transact([])
    assert r.t > before and conn.db().basis_t == r.t
    assert user_datoms(r) == set()
    assert ":db/txInstant" in tx_entity_datoms(r)


def test_every_transaction_has_one_tx_instant_strictly_increasing(conn):
    reports = [conn.transact([{":d/name": f"n{i}"}]) for i in range(5)]
    reports.append(conn.transact([]))
    instants = []
    db = conn.db()
    for r in reports:
        tx = fd.t_to_tx(r.t)
        vs = [d.v for d in db.datoms("eavt", tx, ":db/txInstant")]
        assert len(vs) == 1
        assert isinstance(vs[0], datetime) and vs[0].tzinfo is not None
        assert tx_entity_datoms(r)[":db/txInstant"] == vs[0]
        instants.append(vs[0])
    assert all(a < b for a, b in zip(instants, instants[1:]))
    assert abs(instants[-1] - datetime.now(timezone.utc)) < timedelta(minutes=5)


def test_tx_instant_is_indexed_and_in_avet(conn):
    r = conn.transact([{":d/name": "x"}])
    inst = tx_entity_datoms(r)[":db/txInstant"]
    assert [d.e for d in conn.db().datoms("avet", ":db/txInstant", inst)] == [fd.t_to_tx(r.t)]


def test_user_supplied_tx_instant_later_than_previous(conn):
    prev = tx_entity_datoms(conn.transact([]))[":db/txInstant"]
    when = prev + timedelta(seconds=1)
    r = conn.transact([{":db/id": "datomic.tx", ":db/txInstant": when}, {":d/name": "backdated"}])
    assert value(conn.db(), fd.t_to_tx(r.t), ":db/txInstant") == when
    assert tx_entity_datoms(r)[":db/txInstant"] == when
    # the next automatic instant is later still
    r2 = conn.transact([])
    assert tx_entity_datoms(r2)[":db/txInstant"] > when


def test_user_supplied_tx_instant_earlier_than_previous_fails(conn):
    prev = tx_entity_datoms(conn.transact([]))[":db/txInstant"]
    assert_tx_fails(conn, [{":db/id": "datomic.tx", ":db/txInstant": prev - timedelta(days=1)},
                           {":d/name": "too old"}], None, ":db/txInstant")


def test_user_supplied_tx_instant_equal_to_previous_is_accepted(conn):
    # only an instant OLDER than the latest transaction's is refused
    prev = tx_entity_datoms(conn.transact([]))[":db/txInstant"]
    r = conn.transact([[":db/add", "datomic.tx", ":db/txInstant", prev]])
    assert value(conn.db(), fd.t_to_tx(r.t), ":db/txInstant") == prev


def test_tx_uuid_recorded_on_tx_entity(conn):
    r = conn.transact([{":d/name": "x"}])
    u = tx_entity_datoms(r)[":fastdatomic.tx/uuid"]
    assert isinstance(u, uuid.UUID)
    assert conn.db().entid([":fastdatomic.tx/uuid", u]) == fd.t_to_tx(r.t)


def test_as_of_tx_id_and_t_agree(conn):
    r = conn.transact([{":db/id": "d", ":d/name": "x"}])
    d = r.tempids["d"]
    assert value(conn.db().as_of(r.t), d, ":d/name") == "x"
    assert value(conn.db().as_of(fd.t_to_tx(r.t)), d, ":d/name") == "x"
    assert value(conn.db().as_of(r.t - 1), d, ":d/name") is None


def test_datomic_tx_in_tempids(conn):
    r = conn.transact([{":db/id": "datomic.tx", ":audit/user": "u"}])
    assert r.resolve_tempid("datomic.tx") == fd.t_to_tx(r.t)


def test_tx_instant_of_wrong_type_fails(conn):
    assert_tx_fails(conn, [{":db/id": "datomic.tx", ":db/txInstant": "2030-01-01"}],
                    "db.error/wrong-type", ":db/txInstant")
