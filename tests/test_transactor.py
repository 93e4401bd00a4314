"""The transactor process and the networked peer, with real processes on loopback.

Covers ARCHITECTURE §4.1 (ack means durable, with kill -9), §4.2 (every commit fenced),
§4.3 (heartbeat is a CAS; fail fast), §4.4 (hb >= 1000), §4.10 (auth through storage), the
indexing job, back-pressure, /health, metrics, the CLI and the pid file.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import urllib.error

import pytest

import fastdatomic as fd
from fastdatomic.db import catalog
from fastdatomic.errors import TransactorUnavailableError
from fastdatomic.peer import shutdown_peers
from fastdatomic.storage import open_storage
from fastdatomic.transactor.lease import read_lease, LEASE_EPOCH
from transactor_helper import ROOT, start_transactor, stop_all, wait_until, write_config

SCHEMA = """[{:db/ident :item/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one
              :db/unique :db.unique/identity}
             {:db/ident :item/label :db/valueType :db.type/string :db/cardinality :db.cardinality/one}]"""


@pytest.fixture(autouse=True)
def _peers_closed():
    yield
    shutdown_peers()
    stop_all()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uri(tmp_path, name="db"):
    return f"fastdatomic:dev://{tmp_path}/data/{name}"


def new_db(tmp_path, name="db"):
    assert fd.create_database(uri(tmp_path, name)) is True
    conn = fd.connect(uri(tmp_path, name))
    conn.transact(SCHEMA)
    return conn


def lease_of(tmp_path):
    return read_lease(open_storage("dev", path=str(tmp_path / "data")))


def test_banner_pid_file_and_graceful_stop(tmp_path):
    tx = start_transactor(tmp_path)
    assert tx.output[0].startswith(f"System started fastdatomic:dev://{tmp_path}/data/")
    pid_file = tmp_path / "transactor.pid"
    assert int(pid_file.read_text()) == tx.pid
    assert (tmp_path / "transactor-log" / "transactor.log").exists()
    conn = new_db(tmp_path)
    r = conn.transact([{":item/n": 1, ":item/label": "one"}])
    assert tx.stop() == 0
    assert not pid_file.exists()
    assert lease_of(tmp_path)["released"] is True       # a standby may take over at once
    # What was acknowledged is in storage, readable without any transactor.
    st = open_storage("dev", path=str(tmp_path / "data"))
    assert catalog.load_database(st, "db").basis_t == r.t


def test_invalid_config_stops_startup_naming_the_key(tmp_path):
    path = write_config(str(tmp_path), str(tmp_path / "data"), heartbeat_interval_msec=999)
    p = subprocess.run([sys.executable, "-m", "fastdatomic.transactor.server", path],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 2
    assert "heartbeat-interval-msec" in p.stderr and "1000" in p.stderr
    assert not (tmp_path / "data").exists()     # nothing was opened or written


def test_peer_round_trip_and_report(tmp_path):
    start_transactor(tmp_path)
    conn = new_db(tmp_path)
    r = conn.transact([{":db/id": "x", ":item/n": 7, ":item/label": "seven"}])
    e = r.tempids["x"]
    assert r.db_after.basis_t == r.t and r.db_before.basis_t < r.t
    assert {(d.a, d.v) for d in r.tx_data if d.e == e} == {
        (conn.db().entid(":item/n"), 7), (conn.db().entid(":item/label"), "seven")}
    assert fd.q("[:find ?l . :in $ ?n :where [?e :item/n ?n] [?e :item/label ?l]]", conn.db(), 7) == "seven"
    # Errors keep their kind across the wire, and nothing is applied.
    with pytest.raises(fd.errors.FastDatomicError) as ei:
        conn.transact([[":db/add", "y", ":item/nope", 1]])
    assert ei.value.kind.startswith("db.error/")
    assert conn.sync().basis_t == r.t
    # Idempotent retry by tx_id reports the original t.
    import uuid
    tid = uuid.uuid4()
    a = conn.transact([{":item/n": 8}], tx_id=tid)
    b = conn.transact([{":item/n": 8}], tx_id=tid)
    assert b.duplicate and b.t == a.t and conn.tx_outcome(tid) == a.t
    assert [t["t"] for t in conn.log().tx_range(r.t, None)] == [r.t, a.t]
    assert fd.list_databases(f"fastdatomic:dev://{tmp_path}/data/*") == ["db"]


PEER_SCRIPT = textwrap.dedent("""
    import sys, time, json
    import fastdatomic as fd
    uri, want = sys.argv[1], int(sys.argv[2])
    conn = fd.connect(uri)
    q = conn.tx_report_queue()
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        n = fd.q("[:find (count ?e) . :where [?e :item/n]]", conn.db()) or 0
        if n >= want:
            break
        time.sleep(0.01)
    print(json.dumps({"count": n, "reports": q.qsize()}), flush=True)
""")


def test_novelty_reaches_a_peer_in_another_process(tmp_path):
    start_transactor(tmp_path)
    conn = new_db(tmp_path)
    p = subprocess.Popen([sys.executable, "-c", PEER_SCRIPT, uri(tmp_path), "20"], cwd=ROOT,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    for i in range(20):
        conn.transact([{":item/n": i}])
    out = json.loads(p.stdout.readline())
    p.wait(30)
    assert out == {"count": 20, "reports": 20}


def test_late_peer_builds_its_memory_index_from_the_log(tmp_path):
    start_transactor(tmp_path)
    conn = new_db(tmp_path)
    for i in range(30):
        conn.transact([{":item/n": i}])
    shutdown_peers()          # a fresh process-level peer: loads root + log from storage
    late = fd.connect(uri(tmp_path))
    assert fd.q("[:find (count ?e) . :where [?e :item/n]]", late.db()) == 30
    late.transact([{":item/n": 99}])
    assert fd.q("[:find (count ?e) . :where [?e :item/n]]", late.db()) == 31


def test_second_transactor_never_becomes_a_second_writer(tmp_path):
    ping = free_port()
    a = start_transactor(tmp_path, name="a")
    b = start_transactor(tmp_path, name="b", wait=False, ping_port=ping)
    conn = new_db(tmp_path)
    epoch = lease_of(tmp_path)["epoch"]
    for i in range(5):
        conn.transact([{":item/n": i}])
        time.sleep(0.5)
    # b watched two and a half heartbeat intervals and stayed standby.
    assert not b.started.is_set()
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(f"http://127.0.0.1:{ping}/health", timeout=5)
    assert ei.value.code == 503
    assert lease_of(tmp_path)["epoch"] == epoch
    # Graceful stop of a hands over at once; the peer finds b through storage.
    a.stop()
    b.wait_started(10)
    assert lease_of(tmp_path)["epoch"] == epoch + 1
    r = conn.transact([{":item/n": 100}])
    assert fd.q("[:find (count ?e) . :where [?e :item/n]]", conn.sync()) == 6 and r.t > 0
    assert urllib.request.urlopen(f"http://127.0.0.1:{ping}/health", timeout=5).status == 200
    b.stop()


def test_a_stale_epoch_commits_nothing_and_the_transactor_exits(tmp_path):
    """§4.2: bump the epoch behind the active's back (what a takeover does); its next
    commit is refused by storage, it acknowledges nothing and exits."""
    tx = start_transactor(tmp_path)
    conn = new_db(tmp_path)
    r = conn.transact([{":item/n": 1}])
    st = open_storage("dev", path=str(tmp_path / "data"))
    old = st.get_record(LEASE_EPOCH)
    assert st.commit(records=[(LEASE_EPOCH, old, str(int(old) + 1).encode())])
    with pytest.raises(TransactorUnavailableError) as ei:
        conn.transact([{":item/n": 2}], timeout=20)
    assert ei.value.data["outcome"] in ("unknown", "not-committed")
    assert tx.wait(20) == 3
    assert catalog.load_database(st, "db").basis_t == r.t      # nothing after the fence
    assert any("FENCED" in line for line in
               (tmp_path / "transactor-log" / "transactor.log").read_text().splitlines())


def test_heartbeat_is_a_cas_with_a_steady_counter(tmp_path):
    start_transactor(tmp_path)
    first = lease_of(tmp_path)
    time.sleep(2.5)
    later = lease_of(tmp_path)
    assert later["epoch"] == first["epoch"]
    assert later["counter"] > first["counter"]        # moved by CAS (cadence: bench_heartbeat.py)
    assert later["heartbeat_msec"] == 1000


def test_kill9_under_load_loses_no_acknowledged_transaction(tmp_path):
    tx = start_transactor(tmp_path)
    conn = new_db(tmp_path)
    acked, unknown = [], []
    futs = []
    for i in range(400):
        futs.append((i, conn.transact_async([{":item/n": i, ":item/label": f"v{i}"}])))
        if i == 200:
            tx.kill()                 # in the middle of the stream ...
            start_transactor(tmp_path, name="restarted")   # ... and back: the peer reconnects
    for i, f in futs:
        try:
            f.result(30)
            acked.append(i)
        except TransactorUnavailableError as e:
            (unknown if e.data["outcome"] == "unknown" else []).append(i)
    assert acked and max(acked) > 200, "transactions were acknowledged before and after the kill"
    db = conn.sync(timeout=10)
    present = dict(fd.q("[:find ?n ?l :where [?e :item/n ?n] [?e :item/label ?l]]", db))
    assert set(acked) <= set(present)
    # Nothing half-applied: every entity has both attributes (one transaction each).
    ns = fd.q("[:find [?n ...] :where [?e :item/n ?n]]", db)
    assert sorted(ns) == sorted(present)
    assert all(present[n] == f"v{n}" for n in present)


def test_indexing_job_runs_in_the_background_and_peers_follow(tmp_path):
    tx = start_transactor(tmp_path, memory_index_threshold="64k", memory_index_max="1m",
                          metrics_port=free_port())
    conn = new_db(tmp_path)
    st = open_storage("dev", path=str(tmp_path / "data"))
    for chunk in range(20):
        conn.transact([{":item/n": chunk * 100 + i, ":item/label": "x" * 40} for i in range(100)])
    wait_until(lambda: catalog.read_root(st, "db")[0]["index_basis_t"] > 0, 20)
    db = conn.sync()
    wait_until(lambda: conn.db().index_basis_t > 0, 20)
    assert fd.q("[:find (count ?e) . :where [?e :item/n]]", conn.db()) == 2000
    assert db.basis_t == conn.db().basis_t
    cfg_port = [ln for ln in open(tx.config_path) if ln.startswith("metrics-port")][0].split("=")[1]
    text = urllib.request.urlopen(f"http://127.0.0.1:{cfg_port.strip()}/metrics", timeout=5).read().decode()
    assert "fastdatomic_index_writes_total" in text
    writes = [ln for ln in text.splitlines() if ln.startswith("fastdatomic_index_writes_total")]
    assert float(writes[0].split()[-1]) >= 1


def test_health_and_metrics_endpoints(tmp_path):
    ping, mport = free_port(), free_port()
    start_transactor(tmp_path, ping_port=ping, metrics_port=mport)
    conn = new_db(tmp_path)
    conn.transact([{":item/n": 1}])
    h = urllib.request.urlopen(f"http://127.0.0.1:{ping}/health", timeout=5)
    assert h.status == 200 and json.loads(h.read())["role"] == "active"
    text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
    for name in ("fastdatomic_heartbeat_msec", "fastdatomic_transaction_msec", "fastdatomic_log_write_msec",
                 "fastdatomic_transaction_batch", "fastdatomic_memory_index_mb", "fastdatomic_remote_peers",
                 "fastdatomic_object_cache_hit_ratio"):
        assert name in text, name
    peers = [ln for ln in text.splitlines() if ln.startswith("fastdatomic_remote_peers ")]
    assert float(peers[0].split()[-1]) == 1.0


def test_tls_channel_pins_the_fingerprint_from_storage(tmp_path):
    start_transactor(tmp_path, encrypt_channel="true")
    assert len(lease_of(tmp_path)["fingerprint"]) == 64
    conn = new_db(tmp_path)
    assert conn.transact([{":item/n": 5}]).t > 0


def test_cli_admin_and_status(tmp_path):
    start_transactor(tmp_path)
    base = f"fastdatomic:dev://{tmp_path}/data"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "fastdatomic.cli", *args], capture_output=True,
                              text=True, cwd=ROOT, timeout=60)
    assert cli("create", f"{base}/a").stdout.strip() == "created"
    assert cli("create", f"{base}/a").stdout.strip() == "exists"
    assert cli("list", f"{base}/*").stdout.split() == ["a"]
    status = json.loads(cli("status", f"{tmp_path}/data").stdout)
    assert status["databases"]["a"]["basis_t"] == 0 and "secret" not in status["lease"]
    assert status["retired_trees"] == {"records": 0, "oldest": None, "pending_jobs": 0}
    assert cli("delete", f"{base}/a").stdout.strip() == "deleted"
    assert cli("list", f"{base}/*").stdout.split() == []
    bad = cli("create", "fastdatomic:dev://nowhere")
    assert bad.returncode == 1 and "fastdatomic:dev://<data-dir>/<db-name>" in bad.stderr


def test_peer_without_storage_gets_a_clear_error(tmp_path):
    with pytest.raises(fd.errors.StorageUnavailableError, match="start a transactor"):
        fd.connect(f"fastdatomic:dev://{tmp_path}/nothing/db")


def test_sigint_also_stops_gracefully(tmp_path):
    tx = start_transactor(tmp_path)
    tx.signal(signal.SIGINT)
    assert tx.wait(20) == 0
    assert os.path.exists(tmp_path / "data" / "data.mdb")


def test_readme_networked_loop_runs_against_a_real_transactor(tmp_path, capsys):
    """The README's peer example (the ```py block), with DATA pointing at this test's storage."""
    import re
    text = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"```py\n(.*?)```", text, re.S).group(1)
    assert 'DATA = "data"' in block
    start_transactor(tmp_path, encrypt_channel="true")
    exec(compile(block.replace('DATA = "data"', f'DATA = "{tmp_path}/data"'), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "['Ann']" in out and "['people']" in out


@pytest.mark.parametrize("name", ["dev-transactor.properties", "dev-standby.properties"])
def test_bundled_configs_validate(name):
    from fastdatomic.transactor.config import load_config
    cfg = load_config(os.path.join(ROOT, "config", name))
    assert cfg.protocol == "dev" and cfg.heartbeat_interval_msec == 1000 and cfg.pid_file


def test_idempotent_retries_across_batches_indexing_and_restart(tmp_path):
    import uuid
    tx = start_transactor(tmp_path, memory_index_threshold="64k", memory_index_max="1m")
    conn = new_db(tmp_path)
    st = open_storage("dev", path=str(tmp_path / "data"))
    a, b = uuid.uuid4(), uuid.uuid4()
    # The same id twice in one group commit: applied once.
    f1 = conn.transact_async([{":item/n": 1}], tx_id=a)
    f2 = conn.transact_async([{":item/n": 1}], tx_id=a)
    r1, r2 = f1.result(20), f2.result(20)
    assert r1.t == r2.t and (r1.duplicate, r2.duplicate) == (False, True)
    # After an indexing job the id lives in the durable trees.
    for chunk in range(10):
        conn.transact([{":item/n": 100 + chunk * 100 + i, ":item/label": "y" * 60} for i in range(100)])
    wait_until(lambda: catalog.read_root(st, "db")[0]["index_basis_t"] > r1.t, 20)
    rb = conn.transact([{":item/n": 2}], tx_id=b)              # b stays in novelty
    assert conn.transact([{":item/n": 1}], tx_id=a).t == r1.t
    # After a restart the new transactor knows both (tree and novelty).
    tx.kill()
    start_transactor(tmp_path, name="again")
    again_a = conn.transact([{":item/n": 1}], tx_id=a, timeout=20)
    again_b = conn.transact([{":item/n": 2}], tx_id=b, timeout=20)
    assert (again_a.t, again_a.duplicate, again_b.t, again_b.duplicate) == (r1.t, True, rb.t, True)
