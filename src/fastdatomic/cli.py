"""``fastdatomic``: database admin and status from the shell.

::

    fastdatomic create fastdatomic:dev://data/people
    fastdatomic list   fastdatomic:dev://data/*
    fastdatomic delete fastdatomic:dev://data/people
    fastdatomic status data            # the lease, the active transactor, every database
    fastdatomic gc-storage fastdatomic:dev://data/* --older-than 30d

``create``/``delete`` go through the active transactor (they are fenced writes);
``list`` and ``status`` read storage, so they work while no transactor is active.
``gc-storage`` deletes the index segments retired more than ``--older-than`` ago (s, m,
h or d) that no database reaches, and those of indexing jobs begun before then and never
adopted (``fastdatomic.gc_storage``); it works on storage directly, with or without a
transactor.
Exit status: 0 done, 1 failed (the message says why), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta, timezone

import orjson

__all__ = ["main", "status"]


def status(data_dir: str) -> dict:
    """The lease, every database's basis, and how many retired index trees wait for
    gc-storage (with the oldest one's retirement time, Unix seconds, and the indexing jobs
    not adopted yet), read from the storage at ``data_dir``.

    >>> import tempfile
    >>> status(tempfile.mkdtemp())["lease"] is None
    True
    """
    import os
    from fastdatomic.db import catalog, gc
    from fastdatomic.storage import open_storage
    from fastdatomic.transactor.lease import read_lease
    if not os.path.exists(os.path.join(data_dir, "data.mdb")):
        return {"data_dir": os.path.abspath(data_dir), "lease": None, "databases": {},
                "retired_trees": {"records": 0, "oldest": None, "pending_jobs": 0}}
    st = open_storage("dev", path=data_dir)
    lease = read_lease(st)
    if lease is not None:
        lease = {k: v for k, v in lease.items() if k != "secret"}   # never print the secret
    dbs = {}
    for name in catalog.list_databases(st):
        root, _ = catalog.read_root(st, name)
        dbs[name] = {"basis_t": root["basis_t"], "index_basis_t": root["index_basis_t"]}
    return {"data_dir": os.path.abspath(data_dir), "lease": lease, "databases": dbs,
            "retired_trees": gc.retired_trees(st), "read_at": time.time()}


def _duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m`` or ``60s`` as a ``timedelta`` (argparse type).

    >>> _duration("90m"), _duration("2d")
    (datetime.timedelta(seconds=5400), datetime.timedelta(days=2))
    """
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}.get(text[-1:])
    if unit is None or not text[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30d, 12h, 90m or 60s")
    try:
        return timedelta(**{unit: int(text[:-1])})
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than any cutoff can be") from None


def main(argv=None) -> int:
    """Entry point of the ``fastdatomic`` command."""
    import fastdatomic as fd
    from fastdatomic.errors import FastDatomicError
    ap = argparse.ArgumentParser(prog="fastdatomic", description="fastdatomic database admin")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd, help_ in (("create", "create a database"), ("delete", "delete a database"),
                       ("list", "list databases (URI ending in /*)")):
        p = sub.add_parser(cmd, help=help_)
        p.add_argument("uri")
    p = sub.add_parser("status", help="lease, active transactor and databases of a data-dir")
    p.add_argument("data_dir")
    p = sub.add_parser("gc-storage", help="delete index segments retired before a cutoff")
    p.add_argument("uri")
    p.add_argument("--older-than", required=True, type=_duration,
                   help="how long ago a tree must have been retired, e.g. 30d, 12h, 90m, 60s")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "create":
            print("created" if fd.create_database(args.uri) else "exists")
        elif args.cmd == "delete":
            print("deleted" if fd.delete_database(args.uri) else "absent")
        elif args.cmd == "list":
            for name in fd.list_databases(args.uri):
                print(name)
        elif args.cmd == "gc-storage":
            now = datetime.now(timezone.utc)
            epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)   # nothing retired before it
            cutoff = max(epoch, now - min(args.older_than, now - epoch))
            print(orjson.dumps(fd.gc_storage(args.uri, cutoff)).decode())
        else:
            print(orjson.dumps(status(args.data_dir), option=orjson.OPT_INDENT_2).decode())
    except FastDatomicError as e:
        print(f"fastdatomic {args.cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
