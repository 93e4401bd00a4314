"""Databases in storage: create, delete, list, load, and the single writer's commit path.

Storage layout (ARCHITECTURE §3):
- record ``db/<name>``: the database root (orjson): ``db_id``, ``basis_t``, ``next_n``,
  ``index_basis_t`` and the four index tree roots;
- log ``(db_id, t)``: one record per transaction (``_core.logrec``);
- blobs: index segments, by 16-byte id;
- records ``gc/...`` and ``gc-pending/...``: retired trees and indexing jobs not yet
  adopted, for gc-storage (``db.gc``).

Every commit is ONE storage transaction: the log record plus the root CAS (expected:
the root this writer last wrote), plus any fence checks (the lease epoch), so a
stale writer can commit nothing (ARCHITECTURE §4.2).
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timezone
from typing import NamedTuple

import orjson

from fastdatomic._core.logrec import encode_log, decode_log
from fastdatomic.db.database import Database, load_schema
from fastdatomic.db.gc import pending_record, retirement_record
from fastdatomic.db.memindex import MemoryIndex, INDEXES
from fastdatomic.db.schema import BOOTSTRAP, Schema, DB_TXINSTANT, FIRST_FREE_N
from fastdatomic.db.segments import SegmentStore
from fastdatomic.db.tree import merge_tree
from fastdatomic.errors import (
    DatabaseNotFoundError, FencedError, IndexCollectedError, InvalidValueError, StorageCorruptError,
    StorageError,
)
from fastdatomic.ids import t_to_tx

__all__ = [
    "create_database", "delete_database", "list_databases", "load_database",
    "read_root", "check_name", "DatabaseWriter", "ROOT_PREFIX", "replay_log", "build_index", "decode_root",
    "advance", "index_retry_delay", "BuiltIndex",
]

log = logging.getLogger("fastdatomic.catalog")

ROOT_PREFIX = "db/"
ROOT_VERSION = 1
# After a failed indexing job, the writer waits before the next one: the first retry
# after INDEX_RETRY_FIRST_SECS, doubling up to INDEX_RETRY_MAX_SECS while jobs keep
# failing. A persistent failure (a full disk) then costs a job now and then, not one per
# commit, and a transient one is retried even if no transaction comes to start it.
INDEX_RETRY_FIRST_SECS = 0.5
INDEX_RETRY_MAX_SECS = 30.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
EPOCH_ZERO = datetime(1970, 1, 1, tzinfo=timezone.utc)


def check_name(name: str):
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidValueError(
            f"database name {name!r} is invalid: use 1-200 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")


_hex_roots_cache: dict = {}


def _root_bytes(db_id, name, basis_t, next_n, index_basis_t, roots) -> bytes:
    # The roots change only at indexing; their hex form is cached (one entry per tree set).
    hex_roots = _hex_roots_cache.get(roots)
    if hex_roots is None:
        if len(_hex_roots_cache) > 64:
            _hex_roots_cache.clear()
        hex_roots = _hex_roots_cache[roots] = [r.hex() if r else None for r in roots]
    return orjson.dumps({
        "v": ROOT_VERSION, "db_id": db_id, "name": name, "basis_t": basis_t, "next_n": next_n,
        "index_basis_t": index_basis_t, "roots": hex_roots,
    })


def read_root(storage, name: str) -> tuple[dict, bytes]:
    """The decoded root of database ``name`` and its raw bytes; ``DatabaseNotFoundError`` if absent."""
    raw = storage.get_record(ROOT_PREFIX + name)
    if raw is None:
        raise DatabaseNotFoundError(f"database {name!r} does not exist", data={"name": name})
    return decode_root(name, raw), raw


def decode_root(name: str, raw: bytes) -> dict:
    """The root record ``raw`` of database ``name``, decoded (tree roots as bytes)."""
    try:
        root = orjson.loads(raw)
        if root.get("v") != ROOT_VERSION:
            raise ValueError(f"version {root.get('v')}")
        root["roots"] = [bytes.fromhex(r) if r else None for r in root["roots"]]
    except (ValueError, KeyError, TypeError) as e:
        raise StorageCorruptError(f"root record of database {name!r} does not decode: {e}") from None
    return root


def create_database(storage, name: str, checks=()) -> bool:
    """Create database ``name`` (genesis transaction at t=0); ``False`` if it exists.

    ``checks`` are storage checks the commit must pass (the transactor's lease epoch).

    >>> from fastdatomic.storage import open_storage
    >>> st = open_storage("mem", name="doc-catalog")
    >>> create_database(st, "a"), create_database(st, "a"), list_databases(st)
    (True, False, ['a'])
    """
    check_name(name)
    if storage.get_record(ROOT_PREFIX + name) is not None:
        return False
    db_id = uuid.uuid4().hex
    empty = Database(db_id=db_id, name=name, segs=None, roots=(None,) * 4, index_basis_t=-1,
                     memindex=MemoryIndex.empty(), basis_t=-1, next_n=0,
                     schema=Schema.bootstrap())
    genesis = [(e, a, v, True) for e, a, v in BOOTSTRAP]
    genesis.append((t_to_tx(0), DB_TXINSTANT, EPOCH_ZERO, True))
    _, keys, flags = empty.apply(genesis, 0, FIRST_FREE_N)
    root = _root_bytes(db_id, name, 0, FIRST_FREE_N, -1, (None,) * 4)
    ok = storage.commit(log=[(db_id, 0, encode_log(0, FIRST_FREE_N, keys, flags))],
                        records=[(ROOT_PREFIX + name, None, root)], checks=list(checks))
    if not ok and checks and storage.get_record(ROOT_PREFIX + name) is None:
        raise FencedError(f"creating database {name!r} was refused by storage: this writer's "
                          "lease epoch is stale")
    return ok


def delete_database(storage, name: str, checks=()) -> bool:
    """Delete database ``name``; ``False`` if it did not exist. Its log goes at once;
    its segments become garbage for ``gc-storage``.

    >>> from fastdatomic.storage import open_storage
    >>> st = open_storage("mem", name="doc-catalog-del")
    >>> create_database(st, "x"), delete_database(st, "x"), delete_database(st, "x")
    (True, True, False)
    """
    raw = storage.get_record(ROOT_PREFIX + name)
    if raw is None:
        return False
    root, raw = read_root(storage, name)
    records = [(ROOT_PREFIX + name, raw, None)]
    retired = retirement_record(root["db_id"], name, root["roots"])
    if retired is not None:
        records.append(retired)
    if not storage.commit(records=records, checks=list(checks)):
        if checks:
            raise FencedError(f"deleting database {name!r} was refused by storage: this writer's "
                              "lease epoch is stale or the root changed")
        return False
    storage.delete_log(root["db_id"])
    return True


def list_databases(storage) -> list[str]:
    """Names of the databases in ``storage``, sorted."""
    return sorted(name[len(ROOT_PREFIX):] for name, _ in storage.list_records(ROOT_PREFIX))


def replay_log(db: Database, records) -> Database:
    """``db`` with the log records ``[(t, bytes), ...]`` (ascending, all after its basis) added.

    Keys of all records go into the memory index in one step; the schema is rebuilt once.
    """
    eavt, flags = [], []
    t = db.basis_t
    next_n = db.next_n
    for rt, rec in records:
        t_, next_n, keys, fl = decode_log(rec)
        if t_ != rt:
            raise StorageCorruptError(f"log record stored at t={rt} says t={t_}")
        if t_ <= t:
            continue
        t = t_
        eavt.extend(keys)
        flags.extend(fl)
    if not eavt:
        return db
    return db.apply_keys(t, next_n, eavt, flags)


def advance(storage, db: Database, root: dict, records=None) -> Database:
    """``db`` brought up to the storage ``root`` (of the same database): the log records
    after its basis, then the root's newer index trees if any.

    This is how a peer or a warm standby follows a database without re-reading it:
    the cost is the novelty since ``db``, whatever the log length.

    >>> from fastdatomic.storage import open_storage
    >>> st = open_storage("mem", name="doc-advance")
    >>> _ = create_database(st, "a"); old = load_database(st, "a")
    >>> w = DatabaseWriter(st, "a"); _ = w.commit([(w.db.next_n + 1, 51, "x", True)], 1000, w.db.next_n + 2)
    >>> advance(st, old, read_root(st, "a")[0]).basis_t
    1000

    ``records`` are the log records ``[(t, bytes)]`` after ``db``'s basis if the caller
    already read them.
    """
    if root["basis_t"] > db.basis_t:
        if records is None:
            records = storage.log_range(db.db_id, db.basis_t + 1, root["basis_t"] + 1)
        db = replay_log(db, records)
    ib = root["index_basis_t"]
    if db.index_basis_t < ib <= db.basis_t:
        db = db._view(roots=tuple(root["roots"]), index_basis_t=ib,
                      memindex=db.memindex.after(t_to_tx(ib)))
    return db


def load_database(storage, name: str, segs: SegmentStore | None = None) -> Database:
    """The latest value of database ``name``: durable trees plus the log since the index basis.

    >>> from fastdatomic.storage import open_storage
    >>> st = open_storage("mem", name="doc-catalog-load")
    >>> _ = create_database(st, "x"); load_database(st, "x").basis_t
    0
    """
    root, _ = read_root(storage, name)
    return _load(storage, root, segs)


def _load(storage, root: dict, segs) -> Database:
    segs = segs or SegmentStore(storage)
    db = Database(db_id=root["db_id"], name=root["name"], segs=segs, roots=root["roots"],
                  index_basis_t=root["index_basis_t"], memindex=MemoryIndex.empty(),
                  basis_t=root["index_basis_t"], next_n=root["next_n"], schema=Schema.bootstrap())
    db = replay_log(db, storage.log_range(root["db_id"], root["index_basis_t"] + 1, None))
    if db.schema is Schema.bootstrap():   # replay rebuilds it only when the log touched schema
        db.schema = load_schema(db)
    return db


class DatabaseWriter:
    """The single writer of one database: fenced commits and the indexing job.

    ``fence`` is a callable returning the storage checks every commit must pass
    (the transactor passes its lease epoch); ``None`` for the in-process ``mem`` system.
    After a failed CAS the writer is *poisoned*: its in-memory state is dropped and
    every further commit raises ``FencedError`` (ARCHITECTURE §4.2).

    >>> from fastdatomic.storage import open_storage
    >>> st = open_storage("mem", name="doc-writer")
    >>> _ = create_database(st, "w")
    >>> w = DatabaseWriter(st, "w")
    >>> db = w.commit([(w.db.next_n + 1, 51, "a doc", True)], w.db.next_n, w.db.next_n + 2)
    >>> db.basis_t, load_database(st, "w").basis_t
    (1000, 1000)
    """

    def __init__(self, storage, name: str, segs: SegmentStore | None = None, fence=None,
                 warm: Database | None = None):
        self.storage = storage
        self.name = name
        self.fence = fence
        root, raw = read_root(storage, name)
        self._root_raw = raw
        if warm is not None and warm.db_id == root["db_id"] and warm.basis_t <= root["basis_t"]:
            # A warm standby's value: only the last few records to read, no log replay.
            self.db = advance(storage, warm, root)
        else:
            self.db = _load(storage, root, segs)
        if self.db.tx_instant is None and self.db.basis_t > 0:
            # :db/txInstant stays monotonic across restarts and takeovers, whatever the clock.
            last = next(iter(self.db.datoms("eavt", t_to_tx(self.db.basis_t), DB_TXINSTANT)), None)
            if last is not None:
                self.db = self.db._view(tx_instant=last.v)
        self.poisoned = False

    def _checks(self):
        return list(self.fence()) if self.fence is not None else []

    def _root_for(self, db: Database) -> bytes:
        return _root_bytes(db.db_id, db.name, db.basis_t, db.next_n, db.index_basis_t, db.roots)

    def _fail(self, what: str):
        self.poisoned = True
        self.db = None
        raise FencedError(f"{what} of database {self.name!r} was refused by storage: another writer "
                          "took over or the root changed; this writer stops")

    def commit(self, datoms, t: int, next_n: int, tx_instant=None) -> Database:
        """Durably commit one transaction's final datoms at ``t``; returns the new value."""
        return self.commit_batch([(datoms, t, next_n, tx_instant)])[-1]

    def commit_batch(self, txs) -> list[Database]:
        """Group commit: several transactions ``(datoms, t, next_n, tx_instant)`` in ONE storage commit.

        Returns the database value after each. Nothing is visible or acknowledged unless
        the storage commit returned success.
        """
        if self.poisoned:
            raise FencedError(f"writer of database {self.name!r} was fenced and must not commit")
        db = self.db
        values, log = [], []
        for datoms, t, next_n, tx_instant in txs:
            if t <= db.basis_t:
                raise InvalidValueError(f"t={t} is not after basis t={db.basis_t}")
            db, keys, flags = db.apply(datoms, t, next_n, tx_instant)
            log.append((db.db_id, t, encode_log(t, next_n, keys, flags)))
            values.append(db)
        self._commit(log, db)
        return values

    def _commit(self, log, db: Database):
        # One storage transaction: the log records, the root CAS and the fence checks.
        new_raw = self._root_for(db)
        ok = self.storage.commit(log=log, records=[(ROOT_PREFIX + self.name, self._root_raw, new_raw)],
                                 checks=self._checks())
        if not ok:
            self._fail("commit")
        self._root_raw = new_raw
        self.db = db

    def commit_prepared(self, results) -> list:
        """Group commit of prepared transactions (``tx.prepare``), each prepared against the
        previous one's ``db_after``: ONE storage commit, then the writer moves on.

        Returns the log entries written, ``[(db_id, t, record bytes), ...]`` (the transactor
        sends the same bytes to peers). Raises ``FencedError`` (and poisons the writer)
        when storage refuses the commit.
        """
        if self.poisoned:
            raise FencedError(f"writer of database {self.name!r} was fenced and must not commit")
        log = [(r.db_after.db_id, r.t, encode_log(r.t, r.next_n, r.keys, r.flags)) for r in results]
        self._commit(log, results[-1].db_after)
        return log

    def index(self) -> Database:
        """The indexing job, all at once: ``adopt_index(build_index(self.db))``.

        Old database values keep reading their own trees and novelty unchanged.
        """
        if self.poisoned:
            raise FencedError(f"writer of database {self.name!r} was fenced and must not index")
        return self.adopt_index(build_index(self.db))

    def adopt_index(self, built: "BuiltIndex") -> Database:
        """Make an index built by ``build_index`` (from an earlier value of this database)
        durable: CAS the root to the new trees. Novelty newer than the built basis stays
        in memory, so transactions may continue while ``build_index`` runs elsewhere.

        The same commit deletes the job's pending record, on the condition that it is
        still there: if gc-storage claimed it first (the job began before its cutoff),
        nothing is written, the job's segments are deleted (no tree reaches them), and
        ``IndexCollectedError`` says so; the writer stays usable and may run the job again.
        A writer that was deposed (or whose root changed) gets ``FencedError`` either way.
        """
        if self.poisoned:
            raise FencedError(f"writer of database {self.name!r} was fenced and must not index")
        roots, basis_t, pending, _ = built
        db = self.db
        new = db._view(roots=roots, index_basis_t=basis_t,
                       memindex=db.memindex.after(t_to_tx(basis_t)))
        new_raw = self._root_for(new)
        records = [(ROOT_PREFIX + self.name, self._root_raw, new_raw)]
        # The trees this replaces stay readable for peers holding older values, until
        # gc-storage collects them (db/gc.py); unchanged trees keep their root.
        retired = retirement_record(db.db_id, self.name,
                                    [old for old, r in zip(db.roots, roots) if old != r])
        if retired is not None:
            records.append(retired)
        if pending is not None:
            records.append((pending[0], pending[1], None))
        checks = self._checks()
        if not self.storage.commit(records=records, checks=checks):
            get = self.storage.get_record
            if pending is None or get(pending[0]) == pending[1] or \
                    get(ROOT_PREFIX + self.name) != self._root_raw or \
                    any(get(name) != expected for name, expected in checks):
                self._fail("indexing job")          # deposed, or the root changed
            _collected(self.storage, self.name, built)     # only gc-storage's claim failed it
        self._root_raw = new_raw
        self.db = new
        return new


class BuiltIndex(NamedTuple):
    """What ``build_index`` wrote: the new tree ``roots``, the ``basis_t`` they cover, the
    job's ``pending`` record ``(name, bytes)`` (``None`` when it wrote nothing) and the ids
    of the ``segments`` it wrote. A job never adopted leaves its pending record:
    gc-storage collects its trees."""

    roots: tuple
    basis_t: int
    pending: tuple | None
    segments: tuple


def _collected(storage, name: str, built: BuiltIndex):
    # gc-storage claimed the job's pending record: the job can never be adopted, and gc
    # collected only what was written before it looked. The job deletes all of its own
    # segments (fresh ids, which no tree reaches), so none written after that is left.
    storage.delete_blobs(built.segments)
    raise IndexCollectedError(
        f"indexing job of database {name!r} (up to t={built.basis_t}) was not adopted: "
        f"gc-storage collected its trees first ({built.pending[0]}); it runs again")


def build_index(db: Database) -> BuiltIndex:
    """Merge ``db``'s novelty into new segment trees and write the segments to storage.

    Returns a ``BuiltIndex`` for ``DatabaseWriter.adopt_index``. It only reads ``db``
    (an immutable value) and writes immutable blobs, so it may run on any thread while
    the writer goes on committing; the merge kernel releases the GIL.

    The new roots are recorded as pending first (``gc-pending/...``), then the segments
    are written parents first: a job that stops half-way, or is never adopted, leaves only
    segments its roots reach, and gc-storage collects them once the record is older than
    its cutoff.

    >>> from fastdatomic.storage import open_storage
    >>> st = open_storage("mem", name="doc-build-index")
    >>> _ = create_database(st, "a"); w = DatabaseWriter(st, "a")
    >>> db = w.commit([(w.db.next_n + 1, 51, "doc", True)], w.db.next_n, w.db.next_n + 2)
    >>> built = build_index(db); len(st.list_records("gc-pending/"))
    1
    >>> _ = w.adopt_index(built); len(st.list_records("gc-pending/"))
    0
    """
    roots, blobs = [], []
    for i in INDEXES:
        root, segments = merge_tree(db.segs, db.roots[i], db.memindex.merged(i))
        roots.append(root)
        blobs.extend(segments)
    roots = tuple(roots)
    pending = None
    if blobs:
        record = pending_record(db.db_id, db.name,
                                [r for r, old in zip(roots, db.roots) if r != old])
        if record is not None:
            if not db.segs.storage.commit(records=[record]):
                raise StorageError(f"indexing job of {db.name!r}: pending record {record[0]} "
                                   "exists already")
            pending = (record[0], record[2])
        # merge_tree lists a segment after its children: reversed, each one is written
        # after its parent, so whatever part is written, the roots reach all of it.
        blobs.reverse()
        db.segs.storage.put_blobs(blobs)
    built = BuiltIndex(roots, db.basis_t, pending, tuple(seg_id for seg_id, _ in blobs))
    if pending is not None and db.segs.storage.get_record(pending[0]) != pending[1]:
        _collected(db.segs.storage, db.name, built)     # claimed while it wrote
    return built


def index_retry_delay(failures: int) -> float:
    """Seconds to wait before the next indexing job after ``failures`` failed in a row.

    >>> index_retry_delay(1), index_retry_delay(2), index_retry_delay(100)
    (0.5, 1.0, 30.0)
    """
    return min(INDEX_RETRY_MAX_SECS, INDEX_RETRY_FIRST_SECS * 2.0 ** min(failures - 1, 64))
