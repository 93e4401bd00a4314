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
trees, which are never collected, and writes segments of its own. Before it writes them,
an indexing job writes a **pending record** (``gc-pending/<time>-<random>``, the new
roots), and the commit that adopts its trees deletes it, on the condition that it is
still there. A pending record older than the cutoff names a job that died, was deposed,
was abandoned, or has run longer than the cutoff: gc-storage *claims* it (deletes it
and writes a retirement record for its roots, in one commit) and collects its segments.
A job whose record was claimed can no longer be adopted (``IndexCollectedError``); it
deletes its own segments and its writer runs it again. The job writes its segments
top-down, so every segment of a job that stopped half-way is reached from its roots.
What stays behind: the segments a job writes after gc-storage claimed it, if its process
then dies before it finds out (a cutoff younger than the job, and a crash in that window).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime

import orjson

from fastdatomic.db.segments import SegmentStore
from fastdatomic.errors import InvalidValueError, StorageCorruptError

__all__ = ["GC_PREFIX", "PENDING_PREFIX", "retirement_record", "pending_record", "gc_storage",
           "live_segments", "retired_trees"]

log = logging.getLogger("fastdatomic.gc")

GC_PREFIX = "gc/"
PENDING_PREFIX = "gc-pending/"
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
    return _record(GC_PREFIX, db_id, name, roots)


def pending_record(db_id: str, name: str, roots) -> tuple[str, None, bytes] | None:
    """The record (a CAS triple for ``storage.commit``) an indexing job writes before its
    segments: ``roots``, its new trees, are not adopted yet. ``None`` when there is none.

    >>> key, expected, raw = pending_record("ab" * 16, "people", [b"\\x02" * 16])
    >>> key.startswith(PENDING_PREFIX), orjson.loads(raw)["db"]
    (True, 'people')
    """
    return _record(PENDING_PREFIX, db_id, name, roots)


def _record(prefix: str, db_id: str, name: str, roots):
    # Both kinds hold the same fields; ``retired_ns`` is when the record was written.
    roots = [r.hex() for r in roots if r]
    if not roots:
        return None
    now = time.time_ns()
    key = f"{prefix}{now:020d}-{os.urandom(4).hex()}"
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
        raise StorageCorruptError(f"gc record {key!r} does not decode: {e}") from None
    return rec


def _reach(segs: SegmentStore, roots, stop, out: dict, missing_ok: bool):
    """Add to ``out`` (segment id -> level, 0 for a leaf) every segment reachable from
    ``roots`` without passing through ``stop`` (closed under reachability: a directory in
    it has its whole subtree in it). Leaves are added from their directory's entries,
    never read."""
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
        out[seg_id] = node.level
        for i in range(len(node)):
            child = node.child_id(i)
            if child in stop or child in out:
                continue
            if node.level > 1:
                stack.append(child)
            else:
                out[child] = 0


def retired_trees(storage) -> dict:
    """How many retirement records wait for gc-storage, when the oldest one was written
    (Unix seconds; ``None`` when there is none), and how many indexing jobs are pending
    (begun and not adopted: running, or never to land).

    >>> from fastdatomic.storage import open_storage
    >>> retired_trees(open_storage("mem"))
    {'records': 0, 'oldest': None, 'pending_jobs': 0}
    """
    times = [_decode(key, raw)["retired_ns"] for key, raw in storage.list_records(GC_PREFIX)]
    pending = storage.list_records(PENDING_PREFIX)
    return {"records": len(times), "oldest": min(times) / 1e9 if times else None,
            "pending_jobs": len(pending)}


def live_segments(storage, segs: SegmentStore | None = None) -> set:
    """Every segment the current root of some database reaches.

    >>> from fastdatomic.storage import open_storage
    >>> live_segments(open_storage("mem"))
    set()
    """
    from fastdatomic.db import catalog
    segs = segs or SegmentStore(storage, 64 << 20)
    live: dict = {}
    for name, raw in storage.list_records(catalog.ROOT_PREFIX):
        root = catalog.decode_root(name[len(catalog.ROOT_PREFIX):], raw)
        _reach(segs, [r for r in root["roots"] if r], (), live, missing_ok=False)
    return set(live)


def gc_storage(storage, older_than: datetime) -> dict:
    """Delete the index segments that roots retired before ``older_than`` (an aware
    ``datetime``) reached and no current or later-retired root reaches, and those of
    indexing jobs begun before ``older_than`` and never adopted. Returns counts:
    ``{"retired_roots": ..., "segments_deleted": ..., "records_kept": ..., "jobs_claimed": ...}``.

    >>> from datetime import timedelta, timezone
    >>> from fastdatomic.storage import open_storage
    >>> from fastdatomic.db import catalog
    >>> st = open_storage("mem", name="doc-gc")
    >>> _ = catalog.create_database(st, "d"); w = catalog.DatabaseWriter(st, "d")
    >>> _ = w.index()                     # the first generation of trees
    >>> _ = w.commit([(w.db.next_n + 1, 51, "a doc", True)], w.db.next_n, w.db.next_n + 2)
    >>> _ = w.index()                     # the second: the first one's roots retire
    >>> out = gc_storage(st, datetime.now(timezone.utc) + timedelta(seconds=1))
    >>> out["retired_roots"] > 0 and out["segments_deleted"] > 0
    True
    """
    if not isinstance(older_than, datetime) or older_than.tzinfo is None:
        raise InvalidValueError(f"gc_storage: older_than must be a timezone-aware datetime, "
                                f"got {older_than!r}")
    cutoff = int(older_than.timestamp() * 1e9)
    claimed = _claim_pending(storage, cutoff)
    if not any(_decode(key, raw)["retired_ns"] < cutoff
               for key, raw in storage.list_records(GC_PREFIX)):
        return {"retired_roots": 0, "segments_deleted": 0,
                "records_kept": len(storage.list_records(GC_PREFIX)), "jobs_claimed": claimed}
    segs = SegmentStore(storage, 64 << 20)
    # The current roots first, the retirement records after: a root retired in between
    # was current when read, so it is reached; a job landing meanwhile builds its new
    # trees from current ones and fresh segments.
    live = live_segments(storage, segs)
    due, keep = [], []
    for key, raw in storage.list_records(GC_PREFIX):
        rec = _decode(key, raw)
        # A record naming a root that is live was written after that read: its trees
        # are protected this time, so it stays for the next run to collect them.
        if rec["retired_ns"] < cutoff and not any(r in live for r in rec["roots"]):
            due.append((key, raw, rec))
        else:
            keep.append((key, raw, rec))
    kept: dict = {}
    for _, _, rec in keep:
        _reach(segs, rec["roots"], live, kept, missing_ok=True)
    garbage: dict = {}
    for _, _, rec in due:
        _reach(segs, rec["roots"], _Either(live, kept), garbage, missing_ok=True)
    # Leaves first, then directories level by level: when a segment of level k goes,
    # all the garbage below level k is gone already. So a directory the next run finds
    # missing has no garbage left under it, and one it finds leads it to the rest.
    order = sorted(garbage, key=lambda seg_id: (garbage[seg_id], seg_id))
    for i in range(0, len(order), DELETE_CHUNK):
        storage.delete_blobs(order[i:i + DELETE_CHUNK])
    # Then the records: a run that stops before this point is finished by the next one.
    if due:
        storage.commit(records=[(key, raw, None) for key, raw, _ in due])
    result = {"retired_roots": sum(len(rec["roots"]) for _, _, rec in due),
              "segments_deleted": len(garbage), "records_kept": len(keep),
              "jobs_claimed": claimed}
    log.info("gc-storage: %d retired roots collected (%d of never-adopted jobs), %d segments "
             "deleted, %d records kept", result["retired_roots"], claimed,
             result["segments_deleted"], len(keep))
    return result


def _claim_pending(storage, cutoff: int) -> int:
    """Turn the pending records written before ``cutoff`` into retirement records, each
    in one commit that deletes it on the condition it is still there: from then on its
    job cannot be adopted (the adopting commit needs the record), so its segments are
    garbage. Returns how many were claimed."""
    claimed = 0
    for key, raw in storage.list_records(PENDING_PREFIX):
        rec = _decode(key, raw)
        if rec["retired_ns"] >= cutoff:
            continue
        # Retired when it was written: a tree no peer ever read, due in this same run.
        retired = (f"{GC_PREFIX}{rec['retired_ns']:020d}-{os.urandom(4).hex()}", None, raw)
        if storage.commit(records=[(key, raw, None), retired]):
            claimed += 1
            log.info("gc-storage: claimed the trees of an indexing job of %r never adopted "
                     "(%s)", rec.get("db"), key)
    return claimed


class _Either:
    """Membership in either of two sets (without building their union)."""

    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a, self.b = a, b

    def __contains__(self, x):
        return x in self.a or x in self.b
