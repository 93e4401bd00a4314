"""Durable transactions through a real transactor process (issue #5 figures), with pyperf.

Each pyperf worker starts its own transactor subprocess on a fresh LMDB data-dir
(loopback, port 0, encrypt-channel=false, sync commits) and one peer in the worker.

- ``tx_inflight_<N>``: time per small transaction (one entity, 2 datoms) with N in flight
  (N = 1, 8, 64, 256); throughput = 1 / time. N=1 is the sequential latency.
- ``bulk_import_per_datom``: 1000-entity transactions x 3 attributes, 4 in flight,
  time per datom.
- ``peer_connect_10m``: ``fastdatomic.connect`` to the cached 10M-datom database
  (bench/_data.py) through its transactor: read the root, replay the log tail, subscribe.

Run: ``python bench/bench_network.py -o bench/results/network.json`` (``--fast`` to iterate;
``--only tx_inflight_64,bulk`` runs the benchmarks whose names contain one of the words),
``python bench/bench_network.py --latency`` for p50/p99 of single sequential transactions,
``python bench/bench_network.py --peers 16`` for 16 peer processes with one transaction in
flight each (group commit across connections), and
``python bench/bench_network.py --cpu`` for CPU time per transaction in the peer and in the
transactor process (``time.process_time`` and ``/proc/<pid>/stat``): on a shared machine that
is the figure to compare between two versions, wall-clock throughput moves with the load.

``--peer-gc`` runs the peer (this process) with the garbage-collector thresholds the README
recommends for peers with many transactions in flight, ``gc.set_threshold(20000, 10, 10)``
(the transactor always runs with them); without it the peer keeps Python's defaults.
"""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import fastdatomic as fd  # noqa: E402
from transactor_helper import start_transactor, stop_all  # noqa: E402

SCHEMA = """[{:db/ident :b/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
             {:db/ident :b/s :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
             {:db/ident :b/k :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]"""

_state = {}


def _system():
    """One transactor + database per worker process."""
    if "conn" not in _state:
        d = tempfile.mkdtemp(prefix="fd-bench-net-")
        atexit.register(shutil.rmtree, d, True)
        atexit.register(stop_all)
        _state["tx"] = start_transactor(d, lmdb_map_size="1g", memory_index_threshold="32m",
                                        memory_index_max="512m")
        uri = f"fastdatomic:dev://{d}/data/bench"
        fd.create_database(uri)
        conn = fd.connect(uri)
        conn.transact(SCHEMA)
        _state.update(conn=conn, n=0)
    return _state["conn"]


def run_inflight(loops, inflight):
    conn = _system()
    n = _state["n"]
    futs = []
    t0 = time.perf_counter()
    for i in range(loops):
        if len(futs) >= inflight:
            futs.pop(0).result(60)
        futs.append(conn.transact_async([{":b/n": n + i, ":b/s": "x"}]))
    for f in futs:
        f.result(60)
    dt = time.perf_counter() - t0
    _state["n"] = n + loops
    return dt


def run_bulk(loops):
    """``loops`` datoms in 1000-entity x 3-attribute transactions, 4 in flight."""
    conn = _system()
    per_tx = 3000
    txs = max(1, loops // per_tx)
    n = _state["n"]
    futs = []
    t0 = time.perf_counter()
    for j in range(txs):
        data = [{":b/n": n + j * 1000 + i, ":b/s": f"s{i}", ":b/k": i} for i in range(1000)]
        if len(futs) >= 4:
            futs.pop(0).result(120)
        futs.append(conn.transact_async(data))
    for f in futs:
        f.result(120)
    dt = time.perf_counter() - t0
    _state["n"] = n + txs * 1000
    return dt * loops / (txs * per_tx)


def run_connect(loops):
    from fastdatomic.peer import shutdown_peers
    from _data import big_db, DATA_VERSION   # noqa: F401  (builds the cache once)
    path = os.path.join(HERE, "results", f"db-10000000-v{DATA_VERSION}")
    if "big" not in _state:
        big_db(10_000_000)
        start_transactor(tempfile.mkdtemp(prefix="fd-bench-connect-"), data_dir=path)
        _state["big"] = fd.list_databases(f"fastdatomic:dev://{path}/*")[0]
    uri = f"fastdatomic:dev://{path}/{_state['big']}"
    total = 0.0
    for _ in range(loops):
        shutdown_peers()
        t0 = time.perf_counter()
        conn = fd.connect(uri)
        conn.db()
        total += time.perf_counter() - t0
    return total


def latency_samples(n: int) -> list[float]:
    """Seconds each of ``n`` sequential transactions took (each with its own tx id)."""
    conn = _system()
    base = _state["n"]
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        conn.transact([{":b/n": base + i, ":b/s": "x"}], tx_id=uuid.uuid4())
        lat.append(time.perf_counter() - t0)
    _state["n"] = base + n
    return lat


def latency(n=2000):
    lat = sorted(latency_samples(n))
    print(f"sequential transact latency over {n}: p50 {lat[n // 2] * 1e3:.3f} ms, "
          f"p99 {lat[int(n * 0.99)] * 1e3:.3f} ms, max {lat[-1] * 1e3:.3f} ms")


_PEER_PROCESS = """
import sys, time
sys.path.insert(0, {src!r})
import fastdatomic as fd
conn = fd.connect({uri!r})
for i in range(20):
    conn.transact([{{":b/n": i, ":b/s": "warm"}}])
print("ready", flush=True)
start = float(sys.stdin.readline())
time.sleep(max(0.0, start - time.time()))
n = 0
while time.time() < start + {seconds}:
    conn.transact([{{":b/n": n, ":b/s": "x"}}])
    n += 1
print(n, flush=True)
"""


def peers(n, seconds=3.0):
    """``n`` peer processes, each transacting sequentially for ``seconds``: total tx/s.
    One transaction per peer in flight, so throughput comes from group commits across
    connections (one batch per event-loop iteration of the transactor)."""
    import subprocess
    _system()
    uri = _state["conn"].uri
    src = os.path.join(HERE, "..", "src")
    procs = [subprocess.Popen([sys.executable, "-c", _PEER_PROCESS.format(
        src=src, uri=uri, seconds=seconds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True) for _ in range(n)]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a peer process did not start")
        start = time.time() + 0.5
        for p in procs:
            p.stdin.write(f"{start}\n")
            p.stdin.flush()
        total = sum(int(p.stdout.readline()) for p in procs)
    finally:
        for p in procs:
            p.kill()
    print(f"{n} peer processes, one transaction in flight each, {seconds:g} s: "
          f"{total / seconds:,.0f} tx/s")


def _cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu(rounds=3):
    """Wall and CPU time per transaction in the peer and the transactor, per scenario."""
    conn = _system()
    pid = _state["tx"].pid
    run_inflight(2000, 64)                       # warm up both processes
    scenarios = [(f"tx_inflight_{n}", lambda n=n: run_inflight(4000 if n > 1 else 1000, n),
                  4000 if n > 1 else 1000, "tx") for n in (1, 8, 64, 256)]
    scenarios.append(("bulk_import", lambda: run_bulk(60_000), 60_000, "datom"))
    print(f"{'scenario':<16}{'wall':>12}{'peer CPU':>14}{'transactor CPU':>18}   (per unit, best of {rounds})")
    for name, fn, units, unit in scenarios:
        best = None
        for _ in range(rounds):
            c0, p0 = _cpu_seconds(pid), time.process_time()
            t0 = time.perf_counter()
            fn()
            wall = time.perf_counter() - t0
            got = (wall / units, (time.process_time() - p0) / units, (_cpu_seconds(pid) - c0) / units)
            best = got if best is None or got[0] < best[0] else best
        w, p, t = (x * 1e6 for x in best)
        print(f"{name:<16}{w:>9.2f} µs{p:>11.2f} µs{t:>15.2f} µs   per {unit} "
              f"({1e6 / w:,.0f} {unit}/s)")
    del conn


PEER_GC_THRESHOLDS = (20_000, 10, 10)


def _add_args(cmd, args):
    if args.peer_gc:
        cmd.append("--peer-gc")
    if args.connect:
        cmd.append("--connect")    # pyperf workers do not inherit the environment
    if args.only:
        cmd.extend(["--only", args.only])


def main():
    if "--peer-gc" in sys.argv:
        gc.set_threshold(*PEER_GC_THRESHOLDS)
    if "--latency" in sys.argv:
        latency()
        stop_all()
        return
    if "--peers" in sys.argv:
        peers(int(sys.argv[sys.argv.index("--peers") + 1]))
        stop_all()
        return
    if "--cpu" in sys.argv:
        cpu()
        stop_all()
        return
    import pyperf
    runner = pyperf.Runner(processes=4, values=3, warmups=1, add_cmdline_args=_add_args)
    runner.argparser.add_argument("--connect", action="store_true",
                                  help="also time peer connect to the cached 10M-datom database")
    runner.argparser.add_argument("--peer-gc", action="store_true",
                                  help="run the peer with gc.set_threshold(20000, 10, 10)")
    runner.argparser.add_argument("--only", default="",
                                  help="comma-separated words: run only the benchmarks whose "
                                       "names contain one, e.g. tx_inflight_64,bulk")
    args = runner.parse_args()
    words = [w for w in args.only.split(",") if w]

    def wanted(name):
        return not words or any(w in name for w in words)
    for inflight in (1, 8, 64, 256):
        if wanted(f"tx_inflight_{inflight}"):
            runner.bench_time_func(f"tx_inflight_{inflight}", run_inflight, inflight, inner_loops=1)
    if wanted("bulk_import_per_datom"):
        runner.bench_time_func("bulk_import_per_datom", run_bulk)
    if args.connect:
        runner.bench_time_func("peer_connect_10m", run_connect)


if __name__ == "__main__":
    main()
