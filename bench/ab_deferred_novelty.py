"""A/B in one process: a peer answering acks before applying their novelty, or after.

The figures of bench_network.py move by up to 2x from one minute to the next on the
2-core VM (disk flushes and CPU alike), so a change worth 10-15 % cannot be told apart by
running two versions one after the other. Here one transactor and one peer run both
ways in alternating rounds (ABBA order), and the ratio of each pair is reported:

* A, the product: ``PeerSystem._defer_novelty`` queues a group's novelty and the acks
  are answered first (applied after the next send, see peer.py);
* B, as before: the novelty is applied before the acks (``_on_novelty`` in its place).

Run: ``python bench/ab_deferred_novelty.py [in-flight] [rounds] [transactions per round]``
(defaults 64 12 2000). Prints each mode's median microseconds per transaction, the median
of B/A per pair (above 1: A is faster) and how many pairs A won.
"""

from __future__ import annotations

import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import fastdatomic as fd  # noqa: E402
from fastdatomic.peer import PeerSystem  # noqa: E402
from transactor_helper import start_transactor, stop_all  # noqa: E402

SCHEMA = """[{:db/ident :b/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
             {:db/ident :b/s :db/valueType :db.type/string :db/cardinality :db.cardinality/one}]"""

DEFER = PeerSystem._defer_novelty


def run(conn, inflight, loops, base):
    """``loops`` small transactions, ``inflight`` at a time; microseconds per transaction."""
    futs = []
    t0 = time.perf_counter()
    for i in range(loops):
        if len(futs) >= inflight:
            futs.pop(0).result(60)
        futs.append(conn.transact_async([{":b/n": base + i, ":b/s": "x"}]))
    for f in futs:
        f.result(60)
    return (time.perf_counter() - t0) / loops * 1e6


def main(inflight=64, rounds=12, loops=2000):
    d = tempfile.mkdtemp(prefix="fd-bench-ab-")
    atexit.register(shutil.rmtree, d, True)
    atexit.register(stop_all)
    start_transactor(d, lmdb_map_size="1g", memory_index_threshold="32m", memory_index_max="512m")
    uri = f"fastdatomic:dev://{d}/data/bench"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    run(conn, inflight, 2000, 0)              # warm-up
    times = {"A": [], "B": []}
    base = 10_000
    for r in range(rounds):
        for mode in ("AB" if r % 2 == 0 else "BA"):
            PeerSystem._defer_novelty = DEFER if mode == "A" else PeerSystem._on_novelty
            base += loops
            times[mode].append(run(conn, inflight, loops, base))
    PeerSystem._defer_novelty = DEFER
    ratios = [b / a for a, b in zip(times["A"], times["B"])]
    print(f"{inflight} in flight, {rounds} rounds of {loops}: "
          f"A (acks first) median {statistics.median(times['A']):.1f} us/tx, "
          f"B (novelty first) median {statistics.median(times['B']):.1f} us/tx, "
          f"B/A median {statistics.median(ratios):.3f}, A faster in {sum(x > 1 for x in ratios)}/{rounds}")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
