"""gc-storage on LMDB: what indexing leaves behind, and how long collecting it takes.

Loads N entities (two attributes, one of them indexed: ~3 datoms each across EAVT, AEVT
and AVET) and indexes them, then runs G index generations, each after U updates of
entities picked at random: scattered updates touch most leaves, so every generation
leaves most of the previous trees behind. Then ``gc_storage`` with a cutoff just past
the last retirement: prints the segments before and after, the live set, and the time.

Run: ``python bench/bench_gc.py [N] [G] [U]`` (defaults 1000000 10 5000).
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from fastdatomic import edn  # noqa: E402
from fastdatomic.db import catalog, gc  # noqa: E402
from fastdatomic.db import tx as txmod  # noqa: E402
from fastdatomic.storage import open_storage  # noqa: E402

SCHEMA = """[{:db/ident :item/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one
              :db/index true}
             {:db/ident :item/s :db/valueType :db.type/string :db/cardinality :db.cardinality/one}]"""


def main(n=1_000_000, generations=10, updates=5000):
    d = tempfile.mkdtemp(prefix="fd-bench-gc-")
    try:
        st = open_storage("dev", path=d, map_size=1 << 30)
        catalog.create_database(st, "db")
        w = catalog.DatabaseWriter(st, "db")
        w.commit_prepared([txmod.prepare(w.db, edn.loads(SCHEMA))])
        for b in range(0, n, 5000):
            w.commit_prepared([txmod.prepare(w.db, [{":item/n": b + i, ":item/s": f"s{b + i}"}
                                                    for i in range(min(5000, n - b))])])
        w.index()
        eids = [d.e for d in w.db.datoms("aevt", ":item/n")]
        rng = random.Random(1)
        for g in range(generations):
            w.commit_prepared([txmod.prepare(w.db, [[":db/add", e, ":item/s", f"g{g}"]
                                                    for e in rng.sample(eids, updates)])])
            w.index()
        before = st.describe()["blobs"]
        t0 = time.perf_counter()
        out = gc.gc_storage(st, datetime.now(timezone.utc) + timedelta(seconds=1))
        secs = time.perf_counter() - t0
        after = st.describe()["blobs"]
        print(f"{n} entities, {generations} generations of {updates} scattered updates: "
              f"{before} segments before gc, {after} after ({len(gc.live_segments(st))} live); "
              f"gc-storage {secs * 1000:.0f} ms, {out}")
    finally:
        shutil.rmtree(d, True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
