"""Seeded benchmark data, built once through the real write path and cached in LMDB.

``big_db(n)`` returns a database value of ``n`` datoms (n/5 entities x 5 attributes:
long (indexed), string, ref, keyword, double), fully indexed into durable trees.
The LMDB environment is cached under ``bench/results/`` so pyperf's worker
processes only open it.
"""

from __future__ import annotations

import os
import random
import sys
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

from fastdatomic.db.catalog import (  # noqa: E402
    DatabaseWriter, create_database, list_databases, load_database,
)
from fastdatomic.db.schema import TYPE_ENTITY, CARD_ONE  # noqa: E402
from fastdatomic.db.segments import SegmentStore  # noqa: E402
from fastdatomic._core.codec import (  # noqa: E402
    TYPE_LONG, TYPE_STRING, TYPE_REF, TYPE_KEYWORD, TYPE_DOUBLE,
)
from fastdatomic.ids import entity_id, t_to_tx, PART_DB, PART_USER  # noqa: E402
from fastdatomic.storage import open_storage  # noqa: E402
from fastdatomic.types import Keyword  # noqa: E402

ATTRS = [("b/long", TYPE_LONG, True), ("b/str", TYPE_STRING, False), ("b/ref", TYPE_REF, False),
         ("b/kw", TYPE_KEYWORD, False), ("b/dbl", TYPE_DOUBLE, False)]
DATA_VERSION = 1
KWS = [Keyword(f"color/c{i}") for i in range(16)]


def _install_schema(w: DatabaseWriter):
    db = w.db
    t = db.next_n
    out = []
    for i, (ident, vtype, indexed) in enumerate(ATTRS):
        e = entity_id(PART_DB, t + 1 + i)
        out += [(e, db.entid(":db/ident"), Keyword(ident), True),
                (e, db.entid(":db/valueType"), TYPE_ENTITY[vtype], True),
                (e, db.entid(":db/cardinality"), CARD_ONE, True)]
        if indexed:
            out.append((e, db.entid(":db/index"), True, True))
    out.append((t_to_tx(t), db.entid(":db/txInstant"), datetime.now(timezone.utc), True))
    w.commit(out, t, t + 1 + len(ATTRS))


def entity_datoms(db, first_n: int, count: int, seed: int):
    """``count`` entities starting at entity number ``first_n``, 5 datoms each."""
    rnd = random.Random(seed)
    a = [db.entid(":" + ident) for ident, _, _ in ATTRS]
    out = []
    for i in range(count):
        e = entity_id(PART_USER, first_n + i)
        out += [(e, a[0], rnd.randrange(1_000_000), True),
                (e, a[1], f"name-{rnd.randrange(10**9):09d}", True),
                (e, a[2], entity_id(PART_USER, first_n + rnd.randrange(max(1, i + 1))), True),
                (e, a[3], KWS[i % 16], True),
                (e, a[4], rnd.random(), True)]
    return out


def big_db(n_datoms: int = 10_000_000, cache_bytes: int = 2 << 30):
    """The cached n-datom benchmark database (built on first use: about a minute for 10M)."""
    path = os.path.join(HERE, "results", f"db-{n_datoms}-v{DATA_VERSION}")
    st = open_storage("dev", path=path)
    if "bench" not in list_databases(st):
        print(f"building the {n_datoms:,}-datom benchmark database in {path} ...", file=sys.stderr)
        create_database(st, "bench-building")
        w = DatabaseWriter(st, "bench-building")
        _install_schema(w)
        entities = n_datoms // len(ATTRS)
        batch = 20_000
        done = 0
        while done < entities:
            db = w.db
            t = db.next_n
            count = min(batch, entities - done)
            first = t + 1
            datoms = entity_datoms(db, first, count, seed=done)
            datoms.append((t_to_tx(t), db.entid(":db/txInstant"), datetime.now(timezone.utc), True))
            w.commit(datoms, t, first + count)
            done += count
            if w.db.memindex.datom_count >= 2_000_000:
                w.index()
        w.index()
        # Publish under the final name only once complete (a killed build is rebuilt).
        raw = st.get_record("db/bench-building")
        st.commit(records=[("db/bench", None, raw.replace(b'"bench-building"', b'"bench"')),
                           ("db/bench-building", raw, None)])
    db = load_database(st, "bench", SegmentStore(st, cache_bytes))
    return st, db


def warm(db):
    """Read every segment once so the cache is warm (the 'warm index' of the figures)."""
    for idx in ("eavt", "aevt", "avet"):
        db.count_datoms(idx)
