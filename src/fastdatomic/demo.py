"""A small end-to-end demo over LMDB dev storage: create a database, transact, index, read.

Run it with ``tools/run`` (or ``python -m fastdatomic.demo --data-dir ./data``). Each run
adds a transaction, so the printed basis t and history grow from run to run. Until the
transactor process exists, the demo is its own single writer over the LMDB environment.
"""

from __future__ import annotations

import argparse
import os
import time

from fastdatomic.db.catalog import DatabaseWriter, create_database, load_database
from fastdatomic.db.tx import prepare
from fastdatomic.edn import loads
from fastdatomic.storage import open_storage

SCHEMA = """[{:db/ident :person/name   :db/valueType :db.type/string
              :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}
             {:db/ident :person/visits :db/valueType :db.type/long
              :db/cardinality :db.cardinality/one}]"""


def _transact(w: DatabaseWriter, tx_data):
    # What a connection does: Datomic's rules against the latest value, then one
    # fenced, durable storage commit (fsync'd by LMDB before this returns).
    result = prepare(w.db, loads(tx_data) if isinstance(tx_data, str) else tx_data)
    w.commit_prepared([result])
    return result


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
        _transact(w, SCHEMA)
        say("installed :person/name (unique identity) and :person/visits")

    ann = w.db.entid([":person/name", "Ann"])
    visits = next(iter(w.db.datoms("eavt", ann, ":person/visits"))).v if ann else 0
    t0 = time.perf_counter()
    # Upsert through :db.unique/identity: the first run creates Ann, later runs update her.
    r = _transact(w, f'[{{:person/name "Ann" :person/visits {visits + 1}}}]')
    say(f"transaction committed durably at t={r.t} in {(time.perf_counter() - t0) * 1e3:.2f} ms")
    if w.db.memindex.datom_count > 1000:
        w.index()
        say(f"indexing job merged novelty into durable trees at t={w.db.index_basis_t}")

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
