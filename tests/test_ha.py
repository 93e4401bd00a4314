"""HA with real processes: warm standby, fenced takeover, peers riding through failover.

ARCHITECTURE §4.2 (a deposed active commits nothing), §4.3 (takeover after two missed
heartbeats, fail fast), §4.5 (warm standby), §4.6 (reads never block), §4.7 (explicit
outcomes, idempotent retry), §4.8 (peers reconnect by themselves).

``FASTDATOMIC_LONG=1`` runs the kill rounds hundreds of times instead of 20.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

import fastdatomic as fd
from fastdatomic._core.frame import FrameDecoder, encode_frame
from fastdatomic.errors import TransactorUnavailableError
from fastdatomic.storage import open_storage
from fastdatomic.transactor import protocol as P
from fastdatomic.transactor.lease import read_lease
from transactor_helper import ROOT, start_transactor, wait_until

LONG = os.environ.get("FASTDATOMIC_LONG") == "1"
SCHEMA = """[{:db/ident :load/uid :db/valueType :db.type/uuid :db/cardinality :db.cardinality/one
              :db/unique :db.unique/identity}
             {:db/ident :load/peer :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
             {:db/ident :load/seq :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]"""

# A peer process appending unique values until the stop file appears; one JSON line per
# outcome: ack (acknowledged), failed (definitely not committed), unknown (resolve by uuid).
PEER = textwrap.dedent("""
    import json, os, sys, time, uuid
    import fastdatomic as fd
    from fastdatomic.errors import TransactorUnavailableError
    uri, peer, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    conn = fd.connect(uri)
    seq = 0
    deadline = time.monotonic() + 600
    while not os.path.exists(stop) and time.monotonic() < deadline:
        uid = uuid.uuid4()
        try:
            r = conn.transact([{":load/uid": uid, ":load/peer": peer, ":load/seq": seq}],
                              tx_id=uid, timeout=20)
            out = {"o": "ack", "t": r.t}
        except TransactorUnavailableError as e:
            out = {"o": "failed" if e.data.get("outcome") == "not-committed" else "unknown"}
        out.update(seq=seq, uid=str(uid))
        print(json.dumps(out), flush=True)
        seq += 1
        time.sleep(0.002)
""")


pytestmark = pytest.mark.usefixtures("peers_and_transactors_stopped")


def data_dir(tmp_path):
    return str(tmp_path / "data")


def lease(tmp_path):
    return read_lease(open_storage("dev", path=data_dir(tmp_path)))


def new_db(tmp_path):
    uri = f"fastdatomic:dev://{tmp_path}/data/ha"
    assert fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    return uri, conn


def active_of(procs, tmp_path):
    pid = lease(tmp_path)["pid"]
    return next(p for p in procs if p.pid == pid)


def check_outcomes(conn, lines):
    """Every ack present exactly once, no failed one present, unknowns resolved by uuid."""
    db = conn.sync()
    present = {}
    for uid, in fd.q("[:find ?u :where [?e :load/uid ?u]]", db):
        present[str(uid)] = present.get(str(uid), 0) + 1
    acked = [ln for ln in lines if ln["o"] == "ack"]
    lost = [ln for ln in acked if present.get(ln["uid"]) != 1]
    assert not lost, f"acknowledged but missing: {lost[:5]}"
    failed = [ln for ln in lines if ln["o"] == "failed"]
    assert not [ln for ln in failed if ln["uid"] in present], "a definitely-failed tx was applied"
    for ln in lines:
        if ln["o"] == "unknown":
            t = conn.tx_outcome(uuid.UUID(ln["uid"]))
            assert (t is not None) == (ln["uid"] in present)
    return len(acked)


def test_kill9_rounds_lose_no_acknowledged_transaction(tmp_path):
    rounds = 200 if LONG else 20
    procs = [start_transactor(tmp_path, name="t0"),
             start_transactor(tmp_path, name="t1", wait=False)]
    uri, conn = new_db(tmp_path)
    stop = tmp_path / "stop"
    peers = [subprocess.Popen([sys.executable, "-c", PEER, uri, str(i), str(stop)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for i in range(3)]
    try:
        for r in range(rounds):
            epoch = lease(tmp_path)["epoch"]
            before = conn.sync().basis_t
            wait_until(lambda: conn.sync().basis_t > before + 3, 30)   # under load
            victim = active_of(procs, tmp_path)
            victim.kill()
            wait_until(lambda: lease(tmp_path)["epoch"] == epoch + 1, 30)
            procs.append(start_transactor(tmp_path, name=f"t{r + 2}", wait=False))
        before = conn.sync().basis_t
        wait_until(lambda: conn.sync().basis_t > before + 3, 30)       # the last active works too
    finally:
        stop.touch()
        outs = [p.communicate(timeout=60)[0] for p in peers]
    lines = [json.loads(x) for out in outs for x in out.splitlines()]
    acked = check_outcomes(conn, lines)
    print(f"0 acknowledged lost over {rounds} kills ({acked} acknowledged, "
          f"{sum(ln['o'] == 'unknown' for ln in lines)} unknown resolved)")
    assert acked > rounds


def raw_client(tmp_path):
    """A bare authenticated socket to the current active (no reconnects, no lease watch)."""
    ls = lease(tmp_path)
    s = socket.create_connection((ls["host"], ls["port"]), timeout=10)
    dec = FrameDecoder(1 << 20)

    def read():
        while True:
            frames = dec.feed(s.recv(65536))
            if frames:
                return frames[0]
    _, _, ch = read()
    nonce, cnonce = bytes.fromhex(json.loads(ch)["nonce"]), os.urandom(16)
    s.sendall(encode_frame(P.AUTH, 0, P.dumps({"cnonce": cnonce.hex(),
                                              "mac": P.peer_mac(ls["secret"], nonce, cnonce)})))
    assert read()[0] == P.WELCOME
    return s


def test_paused_active_is_fenced_after_takeover(tmp_path):
    a = start_transactor(tmp_path, name="a")
    b = start_transactor(tmp_path, name="b", wait=False)
    uri, conn = new_db(tmp_path)
    r = conn.transact([{":load/uid": uuid.uuid4(), ":load/seq": 0}])
    epoch = lease(tmp_path)["epoch"]
    raw = raw_client(tmp_path)
    a.signal(signal.SIGSTOP)
    try:
        # In flight to the paused active: one raw transaction, one through the peer.
        stale_uid = uuid.uuid4()
        raw.sendall(encode_frame(P.TRANSACT, 7, P.dumps({
            "db": "ha", "tx": f'[{{:load/uid #uuid "{stale_uid}" :load/seq 1}}]',
            "tx_id": str(stale_uid)})))
        peer_uid = uuid.uuid4()
        fut = conn.transact_async([{":load/uid": peer_uid, ":load/seq": 2}], tx_id=peer_uid)
        assert conn.db().basis_t == r.t          # reads never block (§4.6)
        time.sleep(3.2)                          # three heartbeat intervals
        assert lease(tmp_path)["epoch"] == epoch + 1 and b.started.wait(10)
    finally:
        a.signal(signal.SIGCONT)
    assert a.wait(20) == 3                       # the old active exits ...
    text = open(tmp_path / "a-log" / "transactor.log").read()
    rejected = len(re.findall("stale write rejected by storage", text))
    print(f"stale writes rejected by storage: {rejected}")
    assert rejected > 0                          # ... after storage refused its stale writes
    # The peer's in-flight transaction: unknown or committed through b, never twice.
    try:
        fut.result(30)
    except TransactorUnavailableError as e:
        assert e.data["outcome"] == "unknown"
        conn.transact([{":load/uid": peer_uid, ":load/seq": 2}], tx_id=peer_uid)   # idempotent retry
    db = conn.sync()
    assert conn.tx_outcome(stale_uid) is None    # the stale commit never landed
    assert fd.q("[:find ?e . :in $ ?u :where [?e :load/uid ?u]]", db, stale_uid) is None
    assert fd.q("[:find (count ?e) . :in $ ?u :where [?e :load/uid ?u]]", db, peer_uid) == 1
    assert conn.tx_outcome(peer_uid) is not None
    raw.close()


def test_two_standbys_racing_produce_one_active(tmp_path):
    a = start_transactor(tmp_path, name="a")
    b = start_transactor(tmp_path, name="b", wait=False)
    c = start_transactor(tmp_path, name="c", wait=False)
    uri, conn = new_db(tmp_path)
    time.sleep(1.0)                              # both standbys are watching
    epoch = lease(tmp_path)["epoch"]
    a.kill()
    wait_until(lambda: b.started.is_set() or c.started.is_set(), 15)
    time.sleep(2.5)                              # the loser had time to (wrongly) win too
    assert b.started.is_set() != c.started.is_set()
    assert lease(tmp_path)["epoch"] == epoch + 1
    assert conn.transact([{":load/uid": uuid.uuid4(), ":load/seq": 1}]).t > 0


def test_warm_standby_takes_over_without_log_replay(tmp_path):
    a = start_transactor(tmp_path, name="a")
    b = start_transactor(tmp_path, name="b", wait=False)
    uri, conn = new_db(tmp_path)
    b_log = tmp_path / "b-log" / "transactor.log"
    wait_until(lambda: b_log.exists() and "standby: watching" in b_log.read_text(), 30)
    for i in range(200):
        conn.transact([{":load/uid": uuid.uuid4(), ":load/seq": i}])
    time.sleep(1.0)                              # the standby's polls (every 25 ms) saw it all
    a.kill()
    b.wait_started(15)
    line = next(ln for ln in open(b_log) if "took the lease" in ln)
    m = re.search(r"\((\d+) of (\d+) needed log records", line)
    assert m and m.group(1) == "0" and m.group(2) == "1", line   # warm: nothing to replay
    assert fd.q("[:find (count ?e) . :where [?e :load/seq]]", conn.sync()) == 200


def test_switching_versions_with_a_new_pair_loses_nothing(tmp_path):
    old = [start_transactor(tmp_path, name="old-a"),
           start_transactor(tmp_path, name="old-b", wait=False)]
    uri, conn = new_db(tmp_path)
    stop = tmp_path / "stop"
    peer = subprocess.Popen([sys.executable, "-c", PEER, uri, "0", str(stop)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        new = [start_transactor(tmp_path, name="new-a", wait=False),
               start_transactor(tmp_path, name="new-b", wait=False)]
        time.sleep(1.0)
        for p in old:                            # graceful: the lease is handed over at once
            if p.proc.poll() is None:
                assert p.stop() == 0
            time.sleep(0.5)
        wait_until(lambda: any(p.started.is_set() for p in new), 15)
        assert lease(tmp_path)["pid"] in [p.pid for p in new]
        before = conn.sync().basis_t
        wait_until(lambda: conn.sync().basis_t > before + 3, 30)
    finally:
        stop.touch()
        out = peer.communicate(timeout=60)[0]
    lines = [json.loads(x) for x in out.splitlines()]
    assert check_outcomes(conn, lines) > 0
    assert not [ln for ln in lines if ln["o"] == "failed"]


def test_reads_keep_answering_with_no_transactor(tmp_path):
    a = start_transactor(tmp_path, name="a")
    uri, conn = new_db(tmp_path)
    r = conn.transact([{":load/uid": uuid.uuid4(), ":load/seq": 1}])
    a.kill()
    wait_until(lambda: not conn.system.connected.is_set(), 10)   # the peer saw the loss
    assert conn.db().basis_t == r.t              # answered from the local value
    assert conn.sync().basis_t == r.t            # the basis comes from storage (§4.6)
    with pytest.raises(TransactorUnavailableError) as ei:
        conn.transact([{":load/seq": 2}], timeout=0.5)
    assert ei.value.data["outcome"] == "not-committed"
    start_transactor(tmp_path, name="b")         # back: the peer reconnects by itself
    assert conn.transact([{":load/seq": 3}], timeout=20).t > r.t


# A lease holder that froze inside a storage write: it holds LMDB's writer lock, so no
# commit of anyone (the takeover CAS included) can proceed until it resumes. (A process
# opening the environment meanwhile would wait too, so the standby starts first.)
FROZEN_IN_WRITE = textwrap.dedent("""
    import os, signal, sys
    from fastdatomic.storage import open_storage
    from fastdatomic.transactor.lease import LeaseHolder
    st = open_storage("dev", path=sys.argv[1])
    h = LeaseHolder(st, host="127.0.0.1", port=1, heartbeat_msec=1000)
    assert h.try_acquire()
    print("leased", flush=True)
    sys.stdin.readline()
    txn = st._e.env.begin(write=True)        # the writer lock, as mid-commit
    print("frozen", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
""")


def test_holder_frozen_inside_a_write_is_killed_so_the_standby_can_take_over(tmp_path):
    os.makedirs(data_dir(tmp_path))
    frozen = subprocess.Popen([sys.executable, "-c", FROZEN_IN_WRITE, data_dir(tmp_path)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert frozen.stdout.readline().strip() == "leased"
        tx = start_transactor(tmp_path, name="b", wait=False)
        b_log = tmp_path / "b-log" / "transactor.log"
        wait_until(lambda: b_log.exists() and "standby: watching" in b_log.read_text(), 30)
        frozen.stdin.write("go\n")
        frozen.stdin.flush()
        assert frozen.stdout.readline().strip() == "frozen"
        tx.wait_started(20)                  # two missed heartbeats, then the blocked CAS
        assert frozen.wait(10) == -signal.SIGKILL
        assert "froze inside a storage write; killing it" in b_log.read_text()
        assert lease(tmp_path)["epoch"] == 2
    finally:
        if frozen.poll() is None:
            frozen.kill()
            frozen.wait()
