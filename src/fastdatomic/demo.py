"""A small end-to-end demo over LMDB dev storage: create a database, write, index, read.

Run it with ``tools/run`` (or ``python -m fastdatomic.demo --data-dir ./data``). Each run
adds a transaction, so the printed basis t and history grow from run to run.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime, timezone

from fastdatomic.db.catalog import DatabaseWriter, create_database, load_database
from fastdatomic.db.schema import TYPE_ENTITY, CARD_ONE, UNIQUE_IDENTITY
from fastdatomic._core.codec import TYPE_STRING, TYPE_LONG
from fastdatomic.ids import entity_id, t_to_tx, PART_DB, PART_USER
from fastdatomic.storage import open_storage
from fastdatomic.types import Keyword


def _tx(w: DatabaseWriter, build):
    # One raw transaction: t and new entity numbers share one counter, as in Datomic.
    db = w.db
    t = db.next_n
    fresh = iter(range(t + 1, t + 10_000))
    datoms = build(db, fresh)
    datoms.append((t_to_tx(t), db.entid(":db/txInstant"), datetime.now(timezone.utc), True))
    used = max([d[0] & ((1 << 42) - 1) for d in datoms if d[0] >> 42 != 3] + [t])
    return w.commit(datoms, t, used + 1)


def main(argv=None):
    """Entry point: ``python -m fastdatomic.demo --data-dir ./data``.

    >>> main(["--data-dir", "/tmp/fastdatomic-doc-demo", "--quiet"])
    0
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="./data", help="LMDB environment directory (created)")
    ap.add_argument("--db", default="demo", help="database name")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    say = (lambda *a: None) if args.quiet else print

    os.makedirs(args.data_dir, exist_ok=True)
    storage = open_storage("dev", path=os.path.abspath(args.data_dir))
    created = create_database(storage, args.db)
    say(f"storage: LMDB at {os.path.abspath(args.data_dir)}; database {args.db!r} "
        f"{'created' if created else 'exists'}")
    w = DatabaseWriter(storage, args.db)

    if w.db.entid(":person/name") is None:
        def schema(db, fresh):
            out = []
            for ident, vtype, unique in (("person/name", TYPE_STRING, True), ("person/visits", TYPE_LONG, False)):
                e = entity_id(PART_DB, next(fresh))
                out += [(e, db.entid(":db/ident"), Keyword(ident), True),
                        (e, db.entid(":db/valueType"), TYPE_ENTITY[vtype], True),
                        (e, db.entid(":db/cardinality"), CARD_ONE, True)]
                if unique:
                    out.append((e, db.entid(":db/unique"), UNIQUE_IDENTITY, True))
            return out
        _tx(w, schema)
        say("installed schema :person/name (unique identity) and :person/visits")

    def visit(db, fresh):
        e = db.entid([":person/name", "Ann"])
        visits = db.attribute(":person/visits").id
        if e is None:
            e = entity_id(PART_USER, next(fresh))
            return [(e, db.entid(":person/name"), "Ann", True), (e, visits, 1, True)]
        old = next(iter(db.datoms("eavt", e, visits))).v
        return [(e, visits, old, False), (e, visits, old + 1, True)]

    t0 = time.perf_counter()
    db = _tx(w, visit)
    say(f"transaction committed durably at t={db.basis_t} in {(time.perf_counter() - t0) * 1e3:.2f} ms")
    if db.memindex.datom_count > 1000:
        db = w.index()
        say(f"indexing job merged novelty into durable trees at t={db.index_basis_t}")

    db = load_database(storage, args.db)  # read back what storage holds, as a peer would
    ann = db.entid([":person/name", "Ann"])
    say(f"Ann = {ann}: " + ", ".join(f"{db.ident(d.a)} {d.v!r}" for d in db.datoms("eavt", ann)))
    hist = list(db.history().datoms("eavt", ann, ":person/visits"))
    say(f"history of :person/visits: {[(d.v, d.added) for d in hist][-6:]}")
    first = min(d.tx for d in hist)
    say(f"as of the first visit (tx {first}): "
        f"{[d.v for d in db.as_of(first).datoms('eavt', ann, ':person/visits')]}")
    storage.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
