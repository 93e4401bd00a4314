"""Index benchmarks on a warm 10M-datom database (issue #2 figures).

    python bench/bench_index.py -o bench/results/index.json      # pyperf options apply
    python bench/bench_index.py --datoms 1000000 --fast              # a smaller, quicker run

Benchmarks (times are per datom, or per lookup):
- scan-materialise: full EAVT scan, every datom a Python ``Datom``
- scan-count: full EAVT scan, counting only
- point-lookup: ``next(iter(db.datoms("eavt", e, a)))`` for random e, warm cache
- merge-append / merge-random: the indexing-job core merging 1M novelty datoms into
  the 10M-datom EAVT tree (new entities at the end / spread over existing entities),
  building all new segments (storage write not included; see bench_storage.py)
"""

import random
import time

import pyperf

from _data import big_db, warm, entity_datoms, ATTRS
from fastdatomic._core.codec import INDEX_EAVT, encode_key
from fastdatomic._core.segment import KeyBlock
from fastdatomic.db.tree import merge_tree
from fastdatomic.ids import t_to_tx

N = 10_000_000
NOVELTY = 1_000_000

_state = {}


def state():
    if not _state:
        st, db = big_db(N)
        warm(db)
        _state.update(st=st, db=db)
    return _state["db"]


def bench_scan_materialise(loops):
    db = state()
    t0 = time.perf_counter()
    for _ in range(loops):
        db.datoms("eavt").take()
    return time.perf_counter() - t0


def bench_scan_count(loops):
    db = state()
    t0 = time.perf_counter()
    for _ in range(loops):
        db.count_datoms("eavt")
    return time.perf_counter() - t0


LOOKUPS = 10_000


def bench_point_lookup(loops):
    db = state()
    rnd = random.Random(3)
    entities = [d.e for d in db.datoms("aevt", ":b/long")]
    es = [rnd.choice(entities) for _ in range(LOOKUPS)]
    a = db.entid(":b/str")
    t0 = time.perf_counter()
    for _ in range(loops):
        for e in es:
            next(iter(db.datoms("eavt", e, a)))
    return time.perf_counter() - t0


def _novelty(db, mode):
    tx = t_to_tx(db.basis_t + 10)
    a_ids = {i: db.entid(":" + ident) for i, (ident, _, _) in enumerate(ATTRS)}
    types = {a_ids[i]: t for i, (_, t, _) in enumerate(ATTRS)}
    if mode == "append":
        datoms = entity_datoms(db, db.next_n + 1, NOVELTY // len(ATTRS), seed=99)
    else:  # random existing entities get a new :b/long value
        rnd = random.Random(5)
        entities = [d.e for d in db.datoms("aevt", ":b/long")]
        datoms = [(rnd.choice(entities), a_ids[0], rnd.randrange(10**6), True)
                  for _ in range(NOVELTY)]
    return KeyBlock.from_keys(encode_key(INDEX_EAVT, e, a, types[a], v, tx, True)
                              for e, a, v, _ in datoms)


def make_merge(mode):
    nov = {}

    def bench(loops):
        db = state()
        if mode not in nov:
            nov[mode] = _novelty(db, mode)
        novelty = nov[mode]
        t0 = time.perf_counter()
        for _ in range(loops):
            merge_tree(db.segs, db.roots[INDEX_EAVT], novelty)
        return time.perf_counter() - t0
    return bench


def _add_args(cmd, args):
    cmd.extend(["--datoms", str(args.datoms)])


if __name__ == "__main__":
    runner = pyperf.Runner(processes=3, values=3, warmups=1, add_cmdline_args=_add_args)
    runner.argparser.add_argument("--datoms", type=int, default=N, help="index size (default 10M)")
    args = runner.parse_args()
    N = args.datoms
    NOVELTY = max(1, N // 10)
    runner.metadata["datoms"] = N
    runner.bench_time_func("scan-materialise (per datom)", bench_scan_materialise, inner_loops=N)
    runner.bench_time_func("scan-count (per datom)", bench_scan_count, inner_loops=N)
    runner.bench_time_func("point-lookup (per lookup)", bench_point_lookup, inner_loops=LOOKUPS)
    runner.bench_time_func("merge-append 1M novelty (per novelty datom)", make_merge("append"),
                           inner_loops=NOVELTY)
    runner.bench_time_func("merge-random 1M novelty (per novelty datom)", make_merge("random"),
                           inner_loops=NOVELTY)
