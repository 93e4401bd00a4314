"""Garbage collection of storage: index segments no database reaches any more (gc-storage).

Index trees are immutable and share their unchanged segments between generations
(ARCHITECTURE §3). Each indexing job leaves the segments it replaced behind, and a
deleted database leaves all of its own. They stay readable on purpose: a peer may still
hold a database value from before the job, and reads its old trees.

So every change that retires tree roots also writes a **retirement record** in the same
storage transaction: ``gc/<time>-<random>`` holding the retired roots and the wall-clock
time (ns) they were retired. ``gc_storage(storage, older_than)``, Datomic's
``gc-storage``, then deletes the segments reachable from roots retired before
``older_than`` and from no current root or later-retired root, and the records it
collected. A peer holding a database value older than ``older_than`` may then find a
segment missing (``StorageCorruptError``): pick a cutoff well past the life of any
database value your peers keep (Datomic suggests a month for production systems).

Safe alongside a running transactor: a new index generation is built from the current
trees, which are never collected, and writes segments of its own.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime

import orjson

from fastdatomic.db.segments import SegmentStore
from fastdatomic.errors import InvalidValueError, StorageCorruptError

__all__ = ["GC_PREFIX", "retirement_record", "gc_storage"]

log = logging.getLogger("fastdatomic.gc")

GC_PREFIX = "gc/"
GC_VERSION = 1
# Segments deleted per storage transaction: LMDB has one writer at a time, so a running
# transactor's commits wait for each; a thousand deletes hold it for a millisecond or two.
DELETE_CHUNK = 1000


def retirement_record(db_id: str, name: str, roots) -> tuple[str, None, bytes] | None:
    """The record (a CAS triple for ``storage.commit``) saying ``roots`` were retired now;
    ``None`` when there is no root to retire.

    >>> key, expected, raw = retirement_record("ab" * 16, "people", [b"\\x01" * 16, None])
    >>> key.startswith("gc/"), expected, orjson.loads(raw)["roots"]
    (True, None, ['01010101010101010101010101010101'])
    """
    roots = [r.hex() for r in roots if r]
    if not roots:
        return None
    now = time.time_ns()
    key = f"{GC_PREFIX}{now:020d}-{os.urandom(4).hex()}"
    raw = orjson.dumps({"v": GC_VERSION, "db_id": db_id, "db": name, "retired_ns": now,
                        "roots": roots})
    return key, None, raw


def _decode(key: str, raw: bytes) -> dict:
    try:
        rec = orjson.loads(raw)
        if rec.get("v") != GC_VERSION:
            raise ValueError(f"version {rec.get('v')}")
        rec["roots"] = [bytes.fromhex(r) for r in rec["roots"]]
        int(rec["retired_ns"])
    except (ValueError, KeyError, TypeError) as e:
        raise StorageCorruptError(f"retirement record {key!r} does not decode: {e}") from None
    return rec


def _reach(segs: SegmentStore, roots, stop: set, out: set, missing_ok: bool):
    """Add to ``out`` every segment reachable from ``roots`` without passing through
    ``stop`` (a set closed under reachability: a directory in it has its whole subtree
    in it). Leaves are added from their directory's entries, never read."""
    stack = [r for r in roots if r not in stop]
    while stack:
        seg_id = stack.pop()
        if seg_id in out:
            continue
        try:
            node = segs.dir(seg_id)
        except StorageCorruptError:
            if missing_ok:       # collected by an earlier run that stopped half-way
                continue
            raise
        out.add(seg_id)
        for i in range(len(node)):
            child = node.child_id(i)
            if child in stop or child in out:
                continue
            if node.level > 1:
                stack.append(child)
            else:
                out.add(child)


def gc_storage(storage, older_than: datetime) -> dict:
    """Delete the index segments that roots retired before ``older_than`` (an aware
    ``datetime``) reached and no current or later-retired root reaches. Returns counts:
    ``{"retired_roots": ..., "segments_deleted": ..., "records_kept": ...}``.

    >>> from datetime import timedelta, timezone
    >>> from fastdatomic.storage import open_storage
    >>> from fastdatomic.db import catalog
    >>> st = open_storage("mem", name="doc-gc")
    >>> _ = catalog.create_database(st, "d"); w = catalog.DatabaseWriter(st, "d")
    >>> _ = w.index(); _ = w.index()      # two generations: the first one's root retires
    >>> gc_storage(st, datetime.now(timezone.utc) + timedelta(seconds=1))["retired_roots"] >= 0
    True
    """
    from fastdatomic.db import catalog
    if not isinstance(older_than, datetime) or older_than.tzinfo is None:
        raise InvalidValueError(f"gc_storage: older_than must be a timezone-aware datetime, "
                                f"got {older_than!r}")
    cutoff = int(older_than.timestamp() * 1e9)
    due, keep = [], []
    for key, raw in storage.list_records(GC_PREFIX):
        rec = _decode(key, raw)
        (due if rec["retired_ns"] < cutoff else keep).append((key, raw, rec))
    result = {"retired_roots": 0, "segments_deleted": 0, "records_kept": len(keep)}
    if not due:
        return result
    segs = SegmentStore(storage, 64 << 20)
    live: set = set()
    # Read after the records: a root retired in between is then either in `keep` or
    # still current, and reached either way.
    for name, raw in storage.list_records(catalog.ROOT_PREFIX):
        root = catalog.decode_root(name[len(catalog.ROOT_PREFIX):], raw)
        _reach(segs, [r for r in root["roots"] if r], set(), live, missing_ok=False)
    for _, _, rec in keep:
        _reach(segs, rec["roots"], set(), live, missing_ok=True)
    garbage: set = set()
    for _, _, rec in due:
        _reach(segs, rec["roots"], live, garbage, missing_ok=True)
    garbage_ids = sorted(garbage)
    for i in range(0, len(garbage_ids), DELETE_CHUNK):
        storage.delete_blobs(garbage_ids[i:i + DELETE_CHUNK])
    # Then the records: a run that stops before this point is repeated by the next one.
    storage.commit(records=[(key, raw, None) for key, raw, _ in due])
    result.update(retired_roots=sum(len(rec["roots"]) for _, _, rec in due),
                  segments_deleted=len(garbage))
    log.info("gc-storage: %d retired roots collected, %d segments deleted, %d records kept",
             result["retired_roots"], result["segments_deleted"], len(keep))
    return result
