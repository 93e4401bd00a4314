"""Every peer's tx reports carry the transaction's tempids, as in Datomic.

Datomic's tx-report-queue delivers a report for every transaction, "even those submitted
by other peers", each with ``:tempids``. A log record has no tempids, so the transactor
sends them (``TEMPIDS``) just before a group commit's novelty to peers that ask for them.
Real transactor, a peer in another process, loopback.
"""

import json
import subprocess
import sys
import textwrap
import uuid

import pytest

import fastdatomic as fd
from fastdatomic.transactor import protocol as P
from fastdatomic.transactor.pipeline import Outcome, TxRequest
from fastdatomic.transactor.server import _with_tempids
from transactor_helper import ROOT, start_transactor

SCHEMA = '[{:db/ident :p/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one}]'


pytestmark = pytest.mark.usefixtures("peers_and_transactors_stopped")


WATCHER = textwrap.dedent("""
    import sys, json
    import fastdatomic as fd
    conn = fd.connect(sys.argv[1])
    q = conn.tx_report_queue()
    print("ready", flush=True)
    for _ in range(int(sys.argv[2])):
        r = q.get(timeout=30)
        names = [d.v for d in r.tx_data if d.a == r.db_after.entid(":p/name")]
        print(json.dumps({"names": names, "tempids": r.tempids}), flush=True)
""")


def test_another_peers_reports_carry_the_tempids(tmp_path):
    start_transactor(tmp_path)
    uri = f"fastdatomic:dev://{tmp_path}/data/db"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, uri, "3"], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout.readline().strip() == "ready"
        mine = conn.tx_report_queue()
        r1 = conn.transact([{":db/id": "ann", ":p/name": "Ann"},
                            {":db/id": "bob", ":p/name": "Bob"}])
        r2 = conn.transact([{":db/id": "cid", ":p/name": "Cid"}])
        again = uuid.uuid4()
        r3 = conn.transact([[":db/add", "dee", ":p/name", "Dee"]], tx_id=again)
        dup = conn.transact([[":db/add", "dee", ":p/name", "Dee"]], tx_id=again)
        assert dup.duplicate
        seen = [json.loads(watcher.stdout.readline()) for _ in range(3)]
        watcher.wait(30)
    finally:
        watcher.kill()
    # the other process saw each transaction once (not the duplicate), with its tempids
    assert [sorted(s["names"]) for s in seen] == [["Ann", "Bob"], ["Cid"], ["Dee"]]
    for s, r in zip(seen, (r1, r2, r3)):
        assert {k: v for k, v in s["tempids"].items() if k in ("ann", "bob", "cid", "dee")} == \
            {k: v for k, v in r.tempids.items() if k in ("ann", "bob", "cid", "dee")}
    assert seen[0]["tempids"]["ann"] == r1.tempids["ann"] != r1.tempids["bob"]
    # this peer's own queue has them as well
    own = [mine.get(timeout=10) for _ in range(3)]
    assert own[0].tempids["ann"] == r1.tempids["ann"] and own[2].tempids["dee"] == r3.tempids["dee"]


def _outcome(t, tempids, duplicate=False, error=None):
    req = TxRequest("tx", "db", [], None)
    result = None if error else {"t": t, "tempids": tempids, "duplicate": duplicate}
    return Outcome(req, result, error)


def test_tempids_go_before_the_novelty_and_skip_what_has_none():
    novelty = [(P.NOVELTY, 0, b"r1"), (P.NOVELTY, 0, b"r2")]
    frames = _with_tempids("db", [_outcome(1001, {"a": 17}), _outcome(1002, {}),
                                  _outcome(1003, {"b": 18}, duplicate=True),
                                  _outcome(None, None, error=ValueError("x"))], novelty)
    assert frames[1:] == novelty and frames[0][0] == P.TEMPIDS
    assert P.parse_tempids(frames[0][2]) == ("db", [[1001, {"a": 17}]])
    # nothing to say: the novelty alone
    assert _with_tempids("db", [_outcome(1002, {})], novelty) == novelty


def test_a_malformed_tempids_payload_is_a_protocol_error():
    from fastdatomic.errors import ProtocolError
    for bad in (b"[]", b'{"db": 1, "tempids": []}', b'{"db": "x", "tempids": [[1]]}',
                b'{"db": "x", "tempids": [["1", {}]]}', b"\xff"):
        with pytest.raises(ProtocolError):
            P.parse_tempids(bad)
