"""Heartbeat cadence under full write load plus indexing jobs (issue #6 figure).

Starts a transactor (heartbeat-interval-msec=1000, a small memory-index-threshold so
indexing jobs run continuously), drives it with peer processes at full speed, and watches
the lease from this process the way a standby does: it polls the lease every millisecond
and records when ``counter`` moves, on its own monotonic clock. Reports the spacing
p50/p99/max and its deviation from the interval, and whether any standby-style observer
would have seen two missed heartbeats (a false failover).

    python bench/bench_heartbeat.py --seconds 60 --peers 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import fastdatomic as fd  # noqa: E402
from fastdatomic.storage import open_storage  # noqa: E402
from fastdatomic.transactor.lease import read_lease  # noqa: E402
from transactor_helper import ROOT, start_transactor, stop_all  # noqa: E402

LOAD = textwrap.dedent("""
    import sys, time
    import fastdatomic as fd
    conn = fd.connect(sys.argv[1]); end = time.monotonic() + float(sys.argv[2]); n = 0
    futs = []
    while time.monotonic() < end:
        futs.append(conn.transact_async([{":b/n": n, ":b/s": "x" * 50} for _ in range(10)]))
        n += 1
        if len(futs) >= 32:
            futs.pop(0).result(60)
    for f in futs: f.result(60)
    print(n, flush=True)
""")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--peers", type=int, default=2)
    ap.add_argument("--hb", type=int, default=1000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="fd-bench-hb-")
    try:
        start_transactor(d, heartbeat_interval_msec=args.hb, memory_index_threshold="2m",
                              memory_index_max="64m", lmdb_map_size="1g")
        uri = f"fastdatomic:dev://{d}/data/hb"
        fd.create_database(uri)
        conn = fd.connect(uri)
        conn.transact("""[{:db/ident :b/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
                          {:db/ident :b/s :db/valueType :db.type/string :db/cardinality :db.cardinality/one}]""")
        peers = [subprocess.Popen([sys.executable, "-c", LOAD, uri, str(args.seconds)], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True) for _ in range(args.peers)]
        st = open_storage("dev", path=os.path.join(d, "data"))
        seen, changes = None, []
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            c = read_lease(st)["counter"]
            if c != seen:
                changes.append(time.monotonic())
                seen = c
            time.sleep(0.001)
        txs = sum(int(p.communicate(timeout=120)[0] or 0) for p in peers)
        spacing = sorted((b - a) * 1000 for a, b in zip(changes[1:], changes[2:]))
        n = len(spacing)
        indexed = sum("indexed hb" in ln for ln in open(os.path.join(d, "transactor-log", "transactor.log")))
        res = {
            "interval_msec": args.hb, "seconds": args.seconds, "heartbeats": n,
            "p50_msec": spacing[n // 2], "p99_msec": spacing[min(n - 1, int(n * 0.99))],
            "max_msec": spacing[-1], "min_msec": spacing[0],
            "p99_deviation_msec": max(abs(spacing[min(n - 1, int(n * 0.99))] - args.hb),
                                      abs(spacing[max(0, int(n * 0.01))] - args.hb)),
            "missed_two": sum(s > 2 * args.hb for s in spacing),
            "load_transactions": txs, "load_datoms": txs * 20, "indexing_jobs": indexed,
        }
        print(json.dumps(res, indent=2))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(res, f, indent=2)
    finally:
        stop_all()


if __name__ == "__main__":
    main()
