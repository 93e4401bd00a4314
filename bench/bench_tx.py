"""Transaction throughput through ``Connection.transact`` on ``mem`` (issue #3 figures).

    python bench/bench_tx.py -o bench/results/tx.json            # pyperf options apply
    python bench/bench_tx.py --fast                                # a quicker look
    python bench/bench_tx.py --profile small                       # cProfile, top 10 by tottime
    python bench/bench_tx.py --profile bulk

Benchmarks (pyperf reports time per transaction, or per datom):
- tx-small: one-entity transactions ``[{":bench/name": "x-123", ":bench/n": 123}]``
  through ``conn.transact`` (the full path: expand, resolve, datoms, apply, commit,
  report); tx/s = 1 / (time per tx). Target >= 30k tx/s (DataScript: 10-13k/s).
- bulk-load: ``--entities`` entities (default 100k) x 3 attributes in transactions of
  ``--batch`` entities (default 1000), into a fresh database; time per user datom,
  datoms/s = 1 / (time per datom). Target >= 500k datoms/s.

Every value starts from a fresh database with the schema installed (not timed); the
data is generated from fixed seeds before the clock starts.
"""

from __future__ import annotations

import cProfile
import io
import itertools
import os
import pstats
import random
import sys
import time
import uuid

import pyperf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import fastdatomic as fd  # noqa: E402
from fastdatomic import Keyword  # noqa: E402

SCHEMA = [
    {":db/ident": Keyword("bench/name"), ":db/valueType": Keyword("db.type/string"),
     ":db/cardinality": Keyword("db.cardinality/one")},
    {":db/ident": Keyword("bench/n"), ":db/valueType": Keyword("db.type/long"),
     ":db/cardinality": Keyword("db.cardinality/one")},
    {":db/ident": Keyword("bench/score"), ":db/valueType": Keyword("db.type/double"),
     ":db/cardinality": Keyword("db.cardinality/one")},
]

ENTITIES = 100_000
BATCH = 1_000
ATTRS_PER_ENTITY = 3
_dbs = itertools.count()


def fresh_conn():
    """A connection to a new, empty ``mem`` database with the bench schema."""
    uri = f"fastdatomic:mem://bench-tx-{os.getpid()}-{next(_dbs)}-{uuid.uuid4().hex[:8]}"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    return uri, conn


def small_txs(count, seed=1):
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        n = rnd.randrange(1_000_000)
        out.append([{":bench/name": f"x-{n}", ":bench/n": n}])
    return out


def bulk_txs(entities, batch, seed=2):
    rnd = random.Random(seed)
    txs = []
    for start in range(0, entities, batch):
        txs.append([{":bench/name": f"e-{i}", ":bench/n": rnd.randrange(1 << 40),
                     ":bench/score": rnd.random()} for i in range(start, min(entities, start + batch))])
    return txs


# --- pyperf time functions --------------------------------------------------------------


def bench_small(loops):
    uri, conn = fresh_conn()
    txs = small_txs(loops)
    transact = conn.transact
    t0 = time.perf_counter()
    for tx in txs:
        transact(tx)
    dt = time.perf_counter() - t0
    assert conn.db().count_datoms("aevt", ":bench/n") == loops   # the work really happened
    fd.delete_database(uri)
    return dt


def make_bench_bulk(entities, batch):
    txs = bulk_txs(entities, batch)

    def bench_bulk(loops):
        total = 0.0
        for _ in range(loops):
            uri, conn = fresh_conn()
            transact = conn.transact
            t0 = time.perf_counter()
            for tx in txs:
                transact(tx)
            total += time.perf_counter() - t0
            assert conn.db().count_datoms("aevt", ":bench/score") == entities
            fd.delete_database(uri)
        return total
    return bench_bulk


# --- cProfile mode ----------------------------------------------------------------------


def profile(which, entities, batch, top=10, small_count=20_000):
    """Run one workload under cProfile; print wall time, throughput and the top hotspots."""
    uri, conn = fresh_conn()
    if which == "small":
        txs = small_txs(small_count)
        units, unit = small_count, "tx"
    else:
        txs = bulk_txs(entities, batch)
        units, unit = entities * ATTRS_PER_ENTITY, "datoms"
    transact = conn.transact
    t0 = time.perf_counter()
    for tx in txs:                       # unprofiled pass, for the throughput figure
        transact(tx)
    wall = time.perf_counter() - t0
    fd.delete_database(uri)
    uri, conn = fresh_conn()
    transact = conn.transact
    prof = cProfile.Profile()
    prof.enable()
    for tx in txs:
        transact(tx)
    prof.disable()
    fd.delete_database(uri)
    out = io.StringIO()
    st = pstats.Stats(prof, stream=out).sort_stats("tottime")
    st.print_stats(top)
    print(f"{which}: {units} {unit} in {wall:.3f} s unprofiled = {units / wall:,.0f} {unit}/s")
    print(out.getvalue())


def _add_args(cmd, args):
    cmd.extend(["--entities", str(args.entities), "--batch", str(args.batch)])


def main():
    if "--profile" in sys.argv:
        import argparse
        ap = argparse.ArgumentParser()
        ap.add_argument("--profile", choices=["small", "bulk"], required=True)
        ap.add_argument("--entities", type=int, default=ENTITIES)
        ap.add_argument("--batch", type=int, default=BATCH)
        ap.add_argument("--top", type=int, default=10)
        a = ap.parse_args()
        profile(a.profile, a.entities, a.batch, a.top)
        return
    runner = pyperf.Runner(processes=6, values=3, warmups=1, add_cmdline_args=_add_args)
    runner.argparser.add_argument("--entities", type=int, default=ENTITIES,
                                  help="bulk load: entities per load (default 100k)")
    runner.argparser.add_argument("--batch", type=int, default=BATCH,
                                  help="bulk load: entities per transaction (default 1000)")
    args = runner.parse_args()
    runner.metadata["bulk_entities"] = args.entities
    runner.metadata["bulk_batch"] = args.batch
    runner.bench_time_func("tx-small (per 1-entity transaction)", bench_small)
    runner.bench_time_func(f"bulk-load {args.entities} entities x 3 attrs, {args.batch}/tx (per datom)",
                           make_bench_bulk(args.entities, args.batch),
                           inner_loops=args.entities * ATTRS_PER_ENTITY)


if __name__ == "__main__":
    main()
