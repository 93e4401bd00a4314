"""LMDB storage (protocol ``"dev"``): one LMDB environment under ``data-dir``.

Layout -- one environment, three named sub-databases:

* ``blobs``:   key = the blob key (1..64 bytes), value = the blob;
* ``log``:     key = 16 bytes ``bytes.fromhex(db_id)`` + 8-byte big-endian ``t``
  (so one database's log is one contiguous, ascending key range), value = record.
  A commit of several records of one database (a group commit) stores them under
  *one* key, 16 + 8-byte last ``t`` + 8-byte first ``t``, whose value packs them
  (:func:`_pack_batch`). Why: one put and one overlap check instead of one per
  record, and one run of overflow pages instead of as many leaf slots; on a virtual
  disk each scattered page a commit dirties adds ~45 us to its ``fdatasync``
  (``bench/bench_disk.py``). A 64-record group commit took 8-16 % less time this
  way (``lmdb-commit-group-64``). A key's ``t`` range never overlaps another's,
  so ``set_range(prefix + t)`` finds the key holding ``t`` (ARCHITECTURE §3: one log
  record per transaction or per group-commit batch). So a commit is refused when its
  ``t`` range overlaps a stored key's, even at a ``t`` that key does not hold;
* ``records``: key = UTF-8 name, value = record. The record ``storage-format`` says
  which layout the log may use: absent or ``1``, one record per key; ``2``, packed
  group commits too. The first packed commit writes ``2`` in its own transaction, and
  opening storage of a newer format than :data:`STORAGE_FORMAT` is refused with a
  message saying so, rather than misreading keys.

Durability: the environment runs with ``sync=True, metasync=True,
writemap=False, map_async=False``: a write transaction's commit returns only
after the data pages and then the meta page are on disk, so :meth:`commit`
returning ``True`` means durable, and a process killed at any point leaves
either the previous or the new state (LMDB is copy-on-write with two meta pages).
The data file is kept ``PREALLOC_LOW``..``PREALLOC_CHUNK`` bytes longer than LMDB's last
page, in written zeros, so a commit rarely grows the file (which would add a filesystem
journal commit to its ``fdatasync``): see ``_Env.keep_ahead``.

The map grows by itself. LMDB's map size is a *virtual* reservation (the file
only grows as pages are written), but a write that needs more raises
``MapFullError``; we abort, double the map (bounded by ``map_size_max``) and
rerun the whole transaction. Changing the map size needs *no* transaction of
this process open, so every transaction runs inside a shared "gate" and a
resize takes it exclusively. The same gate handles another process growing the
map: ``begin`` then raises ``MapResizedError`` and we adopt the new size with
``set_mapsize(0)`` and retry.

Several processes may share one environment (one writer, many readers): LMDB's
lock file serialises writers and gives every reader a snapshot, so each commit
is seen whole or not at all. Within one process an environment may be opened
only once, so handles for the same directory share one environment.

>>> import tempfile, os
>>> from fastdatomic.storage import open_storage
>>> d = tempfile.mkdtemp()
>>> with open_storage("dev", path=os.path.join(d, "env")) as s:
...     s.commit(blobs=[(b"seg", b"leaf")], records=[("root", None, b"seg")])
True
>>> with open_storage("dev", path=os.path.join(d, "env")) as s:
...     s.get_record("root"), s.get(b"seg")
(b'seg', b'leaf')
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import time
from operator import itemgetter
from typing import Callable, Iterable, Iterator

import lmdb

from fastdatomic.errors import (
    BlobConflictError, StorageArgumentError, StorageConfigError, StorageCorruptError,
    StorageError, StorageFullError, StorageUnavailableError,
)
from fastdatomic.storage import (
    T_LIMIT, Storage, _blob_items, _blob_key, _db_id, _log_bounds, _normalize_commit, _record_name,
)

__all__ = ["LmdbStorage", "open_lmdb_storage", "DEFAULT_MAP_SIZE", "MIN_MAP_SIZE"]

log = logging.getLogger("fastdatomic.storage")

#: Initial map reservation when none is given (virtual address space, not disk).
DEFAULT_MAP_SIZE = 256 << 20
#: Smallest map accepted: three named sub-databases need a few pages.
MIN_MAP_SIZE = 64 << 10
DEFAULT_MAX_READERS = 512
#: The data file is kept at least this far ahead of LMDB's last page, in written zeros ...
PREALLOC_LOW = 256 << 10
#: ... by writing this much past the last page when it is not (see ``_Env.keep_ahead``).
PREALLOC_CHUNK = 1 << 20

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_LOG_CHUNK_RECORDS = 1024
_LOG_CHUNK_BYTES = 16 << 20
_PUT_CHUNK_BYTES = 32 << 20
_PUT_CHUNK_ITEMS = 10_000
_DELETE_CHUNK = 10_000
_T_END_SUFFIX = T_LIMIT.to_bytes(8, "big")    # > every valid t suffix
#: A group commit's records of one database share a key up to this many value bytes.
_BATCH_BYTES = 1 << 20
_BATCH_COUNT = struct.Struct(">I")
_BATCH_ENTRY = struct.Struct(">QI")             # t, record length

_CORRUPT = tuple(getattr(lmdb, n) for n in (
    "CorruptedError", "PageNotFoundError", "PanicError", "InvalidError", "VersionMismatchError",
    "BadChecksumError", "IncompatibleError") if hasattr(lmdb, n))


class _Gate:
    """Many transactions in flight (shared) or one map resize (exclusive); resizes go first.

    The shared path is one uncontended ``Lock`` round trip; the condition is only
    waited on while a resize is pending.
    """

    __slots__ = ("_lock", "_cond", "_active", "_exclusive", "_waiting")

    def __init__(self):
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._active = 0
        self._exclusive = False
        self._waiting = 0

    def enter(self):
        with self._lock:
            while self._exclusive or self._waiting:
                self._cond.wait()
            self._active += 1

    def leave(self):
        with self._lock:
            self._active -= 1
            if self._waiting and self._active <= 1:
                self._cond.notify_all()

    def enter_exclusive(self):
        with self._lock:
            self._waiting += 1
            try:
                while self._exclusive or self._active:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._exclusive = True

    def upgrade(self):
        """Shared -> exclusive, for the one writer (it holds the write lock): waits until
        it is the only transaction in flight."""
        with self._lock:
            self._waiting += 1
            try:
                while self._exclusive or self._active > 1:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._active -= 1
            self._exclusive = True

    def leave_exclusive(self):
        with self._lock:
            self._exclusive = False
            self._cond.notify_all()


class _Env:
    """One open LMDB environment, shared by every handle of this process on its directory."""

    def __init__(self, path: str, key: tuple, env: lmdb.Environment, dbs: dict):
        self.path = path
        self.key = key
        self.env = env
        self.blobs = dbs["blobs"]
        self.log = dbs["log"]
        self.records = dbs["records"]
        blobs, records = self.blobs, self.records
        self.get_blob = lambda txn, k: txn.get(k, None, blobs)
        self.get_record = lambda txn, k: txn.get(k, None, records)
        self.refs = 0
        self.write_lock = threading.Lock()
        self.gate = _Gate()
        self.closed = False
        self.pid = os.getpid()
        self.grows = 0      # map growths done by this process
        self.adopts = 0     # map growths by other processes adopted here
        self.format = 1     # the storage-format record (1 when absent)
        self.file_end = 0       # the data file's size as last seen by keep_ahead
        self.data_fd = None     # keep_ahead's descriptor of the data file
        self.prealloc_off_until = 0.0   # after a failed preallocation (a full disk)

    def keep_ahead(self) -> None:
        """Keep written, zeroed blocks ahead of LMDB's last page (writer lock held).

        Why: a commit that writes past the end of the file changes its size and
        allocates blocks, so its ``fdatasync`` must also commit the filesystem journal;
        a commit inside blocks written before flushes data only. The log grows at the
        end of the file, so a group commit (one record of many transactions, in
        overflow pages) grew the file in 98 % of commits: a 50-record commit took
        505 against 565 us with this (bench/README, ninth session).

        Runs inside a write transaction, before its commit writes anything: no other
        writer can be writing those pages (LMDB's writer lock), and the commit's own
        pages then overwrite the zeros. The zeros are made durable by that commit's
        ``fdatasync``; pages past LMDB's last page are never read, so a crash anywhere
        here leaves a valid environment.
        """
        info = self.env.info()
        used = (info["last_pgno"] + 1) * _PAGE
        if self.file_end - used >= PREALLOC_LOW or time.monotonic() < self.prealloc_off_until:
            return
        try:
            if self.data_fd is None:
                self.data_fd = os.open(os.path.join(self.path, "data.mdb"),
                                       os.O_WRONLY | os.O_CLOEXEC)
            size = os.fstat(self.data_fd).st_size
            target = min(used + PREALLOC_CHUNK, info["map_size"])
            if target > size:
                os.pwrite(self.data_fd, bytes(target - size), size)
            self.file_end = max(size, target)
        except OSError as e:
            # Only an optimisation: the commit goes on (LMDB reports a full disk itself).
            log.warning("cannot preallocate %s/data.mdb: %s", self.path, e)
            self.prealloc_off_until = time.monotonic() + 10.0

    def adopt_map_size(self) -> None:
        """Take up the map size another process grew the environment to."""
        self.gate.enter_exclusive()
        try:
            if not self.closed:
                self.env.set_mapsize(0)
                self.adopts += 1
        finally:
            self.gate.leave_exclusive()

    def grow_exclusive(self, seen: int, map_size_max: int | None) -> None:
        """Double the map (bounded by ``map_size_max``); the caller holds the gate exclusively."""
        if self.closed:
            return
        cur = self.env.info()["map_size"]
        if cur > seen:          # grown meanwhile (adopted from another process)
            return
        new = cur * 2
        if map_size_max is not None:
            new = min(new, map_size_max)
        new = new // _PAGE * _PAGE
        if new <= cur:
            raise StorageFullError(
                f"LMDB environment {self.path} is full: its map is {cur} bytes and may not "
                f"grow past map_size_max={map_size_max}",
                data={"path": self.path, "map_size": cur, "map_size_max": map_size_max},
                hint=f"raise the map_size_max storage setting (lmdb-map-size-max in the "
                     f"transactor properties; now {map_size_max} bytes), or free space with "
                     f"gc-storage")
        self.env.set_mapsize(new)
        self.grows += 1

    def close(self) -> None:
        self.gate.enter_exclusive()
        try:
            if not self.closed:
                self.closed = True
                if self.pid == os.getpid():
                    self.env.close()
                    if self.data_fd is not None:
                        os.close(self.data_fd)
                        self.data_fd = None
        finally:
            self.gate.leave_exclusive()


_ENVS: dict[tuple, _Env] = {}
_ENVS_LOCK = threading.Lock()
_FORK_ORPHANS: list = []
_PID = os.getpid()


def _after_fork_in_child():
    # An LMDB environment must not be used across fork(): the child neither owns
    # the parent's locks nor may close its reader slots. Forget (but keep alive,
    # so nothing gets closed) whatever the parent had open.
    global _ENVS, _ENVS_LOCK, _PID
    _PID = os.getpid()
    _FORK_ORPHANS.append(_ENVS)
    _ENVS = {}
    _ENVS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_size(name: str, value, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StorageConfigError(
            f"LMDB option {name} must be an int >= {minimum} (bytes), got {value!r}",
            data={name: value})
    return int(value)


def open_lmdb_storage(path=None, map_size: int = DEFAULT_MAP_SIZE,
                      map_size_max: int | None = None,
                      max_readers: int = DEFAULT_MAX_READERS, **options) -> "LmdbStorage":
    """Open (creating if missing) the LMDB environment directory ``path``.

    ``map_size`` is the initial map (at least 64 KiB; it grows by itself),
    ``map_size_max`` the bound on growth (``None`` = unbounded),
    ``max_readers`` the reader-slot table size (fixed by the first opener).

    >>> import tempfile
    >>> s = open_lmdb_storage(tempfile.mkdtemp(), map_size=1 << 20)
    >>> s.describe()["map_size"] >= 1 << 20
    True
    >>> s.close()
    """
    if options:
        raise StorageConfigError(
            f"unknown option(s) for dev (LMDB) storage: {', '.join(sorted(options))} "
            "(supported: path, map_size, map_size_max, max_readers)",
            data={"options": sorted(options)})
    if path is None:
        raise StorageConfigError("dev storage needs path= (the LMDB environment directory)",
                                 hint="set data-dir in the transactor properties")
    try:
        path = os.path.abspath(os.fsdecode(os.fspath(path)))
    except TypeError:
        raise StorageConfigError(f"dev storage path must be a str or path, got {path!r}") from None
    map_size = max(_check_size("map_size", map_size), MIN_MAP_SIZE)
    map_size = -(-map_size // _PAGE) * _PAGE
    if map_size_max is not None:
        map_size_max = _check_size("map_size_max", map_size_max, MIN_MAP_SIZE)
        if map_size_max < map_size:
            raise StorageConfigError(
                f"LMDB option map_size_max={map_size_max} is smaller than map_size={map_size}",
                data={"map_size": map_size, "map_size_max": map_size_max})
    max_readers = _check_size("max_readers", max_readers, 1)

    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise StorageUnavailableError(
            f"cannot create LMDB environment directory {path}: {e.strerror or e}",
            data={"path": path}, hint="check data-dir and that the directory is writable") from e
    if not os.path.isdir(path):
        raise StorageUnavailableError(f"LMDB environment path {path} is not a directory",
                                      data={"path": path})
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise StorageUnavailableError(
            f"LMDB environment directory {path} is not writable by this process",
            data={"path": path}, hint="fix the permissions of data-dir or point it elsewhere")
    st = os.stat(path)
    key = (st.st_dev, st.st_ino)
    with _ENVS_LOCK:
        shared = _ENVS.get(key)
        if shared is None or shared.closed:
            shared = _ENVS[key] = _open_env(path, key, map_size, max_readers)
        shared.refs += 1
    return LmdbStorage(shared, map_size_max)


def _open_env(path: str, key: tuple, map_size: int, max_readers: int) -> _Env:
    try:
        env = lmdb.open(path, map_size=map_size, subdir=True, readonly=False, create=True,
                        sync=True, metasync=True, writemap=False, map_async=False, lock=True,
                        readahead=False, max_dbs=8, max_readers=max_readers, max_spare_txns=1)
    except _CORRUPT as e:
        raise StorageCorruptError(f"LMDB environment {path} cannot be opened: {e}",
                                  data={"path": path}) from e
    except (lmdb.Error, OSError) as e:
        raise StorageUnavailableError(f"cannot open LMDB environment {path}: {e}",
                                      data={"path": path}) from e
    try:
        env.reader_check()          # free reader slots of dead processes
        dbs = {}
        for name in ("blobs", "log", "records"):
            for _ in range(64):
                try:
                    dbs[name] = env.open_db(name.encode(), create=True)
                    break
                except lmdb.MapFullError:
                    env.set_mapsize(env.info()["map_size"] * 2)
                except lmdb.MapResizedError:
                    env.set_mapsize(0)
            else:
                raise StorageFullError(f"cannot create sub-database {name} in {path}")
        with env.begin() as txn:
            fmt = _storage_format(path, txn.get(FORMAT_RECORD, None, dbs["records"]))
    except BaseException as e:
        env.close()
        if isinstance(e, lmdb.Error):
            raise StorageUnavailableError(f"cannot open LMDB environment {path}: {e}",
                                          data={"path": path}) from e
        raise
    shared = _Env(path, key, env, dbs)
    shared.format = fmt
    return shared


# The newest layout this code reads and writes (see the module doc: 2 = packed group commits).
STORAGE_FORMAT = 2
FORMAT_RECORD = b"storage-format"


def _storage_format(path: str, raw: bytes | None) -> int:
    """The format the ``storage-format`` record says (1 when absent); refuses a newer one."""
    if raw is None:
        return 1
    try:
        fmt = int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise StorageCorruptError(
            f"LMDB storage {path}: record storage-format is {raw[:32]!r}, not a format number",
            data={"path": path}) from None
    if fmt > STORAGE_FORMAT:
        raise _newer_format(f"LMDB storage {path} has storage format {fmt}",
                            {"path": path, "format": fmt})
    return fmt


def _newer_format(what: str, data: dict) -> StorageUnavailableError:
    return StorageUnavailableError(
        f"{what}; this fastdatomic reads formats up to {STORAGE_FORMAT}",
        data={**data, "supported": STORAGE_FORMAT},
        hint="upgrade fastdatomic on this machine (a newer version wrote this storage)")


def _wrap(err: lmdb.Error, op: str, path: str) -> StorageError:
    """An lmdb error as a typed storage error naming the operation and the path."""
    data = {"path": path, "op": op, "lmdb_error": type(err).__name__}
    code = getattr(err, "code", 0)
    if isinstance(err, lmdb.DiskError) or code in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(f"disk full while LMDB {op} in {path}: {err}", data=data,
                                hint=f"free disk space on the filesystem holding {path}")
    if isinstance(err, lmdb.MapFullError):
        return StorageFullError(f"LMDB map full during {op} in {path}: {err}", data=data)
    if isinstance(err, lmdb.TxnFullError):
        return StorageError(f"LMDB transaction too large during {op} in {path}: {err}", data=data,
                            hint="split the write into several commits")
    if isinstance(err, lmdb.ReadersFullError):
        return StorageUnavailableError(f"LMDB reader slots exhausted during {op} in {path}: {err}",
                                       data=data, hint="raise the max_readers storage setting")
    if isinstance(err, _CORRUPT):
        return StorageCorruptError(f"LMDB environment {path} is damaged ({op}): {err}", data=data)
    if isinstance(err, (lmdb.ReadonlyError, lmdb.LockError)) or code in (errno.EACCES, errno.EPERM):
        return StorageUnavailableError(f"LMDB {op} refused in {path}: {err}", data=data)
    if isinstance(err, lmdb.BadValsizeError):
        return StorageArgumentError(f"LMDB {op} in {path}: key or value of invalid size: {err}",
                                    data=data)
    if code == errno.EFBIG:
        return StorageFullError(f"file size limit reached while LMDB {op} in {path}: {err}",
                                data=data, hint="raise the process file-size limit (ulimit -f)")
    if code == errno.EIO:
        # LMDB reports a short write -- which is how a full disk usually shows -- as EIO.
        free = _free_bytes(path)
        if free is not None and free < _DISK_FULL_BYTES:
            data["free_bytes"] = free
            return StorageFullError(
                f"disk full while LMDB {op} in {path} ({free} bytes free): {err}", data=data,
                hint=f"free disk space on the filesystem holding {path}")
        return StorageUnavailableError(f"I/O error during LMDB {op} in {path}: {err}", data=data)
    return StorageError(f"LMDB {op} failed in {path}: {err}", data=data)


_DISK_FULL_BYTES = 64 << 20


def _free_bytes(path: str) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _pack_batch(recs) -> bytes:
    """One value for several ``(t, record)`` (ascending ``t``): a count, ``(t, length)``
    per record, then the records back to back.

    >>> _unpack_batch(b"k" * 32, _pack_batch([(3, b"a"), (5, b"bc")]))
    [(3, b'a'), (5, b'bc')]
    """
    head = [_BATCH_COUNT.pack(len(recs))]
    head.extend(_BATCH_ENTRY.pack(t, len(v)) for t, v in recs)
    head.extend(v for _, v in recs)
    return b"".join(head)


def _unpack_batch(key: bytes, value: bytes) -> list:
    """The ``(t, record)`` of a packed log value; corrupt bytes raise ``StorageCorruptError``
    naming the key.

    >>> _unpack_batch(b"\\0" * 32, b"\\0\\0")
    Traceback (most recent call last):
    ...
    fastdatomic.errors.StorageCorruptError: LMDB log key 0000000000000000...: packed log value of 2 bytes is truncated
    """
    size = len(value)
    bad = f"LMDB log key {key.hex()[:16]}...: packed log value of {size} bytes"
    if size < 4:
        raise StorageCorruptError(f"{bad} is truncated")
    (n,) = _BATCH_COUNT.unpack_from(value)
    pos = 4 + n * 12
    if n < 1 or pos > size:
        raise StorageCorruptError(f"{bad} is truncated (it says {n} records)")
    out = []
    for t, ln in _BATCH_ENTRY.iter_unpack(memoryview(value)[4:pos]):
        end = pos + ln
        if end > size:
            raise StorageCorruptError(f"{bad} is truncated at record t={t}")
        out.append((t, value[pos:end]))
        pos = end
    if pos != size:
        raise StorageCorruptError(f"{bad} has {size - pos} bytes after its last record")
    return out


def _key_records(key: bytes, value: bytes):
    """The ``(t, record)`` pairs under one log key (a 24-byte key holds one record)."""
    if len(key) == 24:
        return ((int.from_bytes(key[16:], "big"), value),)
    if len(key) != 32:
        # Format 2 has only these two key shapes: a newer writer made this one.
        raise _newer_format(f"log key {key.hex()} ({len(key)} bytes) is of a newer storage "
                            "format", {"key": key.hex()})
    return _unpack_batch(key, value)


def _log_items(nlog) -> tuple[list, list]:
    """``(items, spans)`` for a commit's log records: ``items`` are ``(key, value)`` to put,
    ``spans`` are ``(prefix, first_t, last_t)`` per database, for the overlap check."""
    by_db: dict = {}
    for db_id, t, v in nlog:
        by_db.setdefault(db_id, []).append((t, v))
    items, spans = [], []
    for db_id, recs in by_db.items():
        prefix = bytes.fromhex(db_id)
        recs.sort(key=itemgetter(0))
        spans.append((prefix, recs[0][0], recs[-1][0]))
        run, size = [], 0
        for rec in recs:
            run.append(rec)
            size += len(rec[1])
            if size >= _BATCH_BYTES:
                items.append(_batch_item(prefix, run))
                run, size = [], 0
        if run:
            items.append(_batch_item(prefix, run))
    return items, spans


def _batch_item(prefix: bytes, run: list) -> tuple[bytes, bytes]:
    if len(run) == 1:
        t, v = run[0]
        return prefix + t.to_bytes(8, "big"), v
    return (prefix + run[-1][0].to_bytes(8, "big") + run[0][0].to_bytes(8, "big"),
            _pack_batch(run))


def _first_t(key: bytes) -> int:
    return int.from_bytes(key[24:] if len(key) == 32 else key[16:24], "big")


class LmdbStorage(Storage):
    """A handle on a shared LMDB environment; see :class:`~fastdatomic.storage.Storage`.

    >>> import tempfile
    >>> s = open_lmdb_storage(tempfile.mkdtemp())
    >>> s.commit(log=[("ab" * 16, 1, b"tx")]), s.log_last_t("ab" * 16)
    (True, 1)
    >>> s.close()
    """

    protocol = "dev"

    def __init__(self, shared: _Env, map_size_max: int | None):
        self._e = shared
        self._map_size_max = map_size_max
        self._closed = False

    @property
    def path(self) -> str:
        """The environment directory."""
        return self._e.path

    # --- transaction plumbing ----------------------------------------------------

    def _env(self) -> _Env:
        e = self._e
        if self._closed or e.closed:
            raise StorageUnavailableError(f"LMDB storage {e.path} is closed", data={"path": e.path})
        if e.pid != _PID:
            raise StorageUnavailableError(
                f"LMDB storage {e.path} was opened before fork(); open it again in this process "
                "(use the 'spawn' start method)", data={"path": e.path})
        return e

    def _read(self, op: str, fn: Callable, arg=None):
        """Run ``fn(txn, arg)`` in one read transaction (a consistent snapshot)."""
        e = self._e
        if self._closed or e.closed or e.pid != _PID:
            self._env()                         # raises the right error
        gate = e.gate
        for _ in range(1000):
            gate.enter()
            try:
                if e.closed:
                    raise StorageUnavailableError(f"LMDB storage {e.path} is closed")
                try:
                    txn = e.env.begin()
                except lmdb.MapResizedError:    # another process grew the map
                    txn = None
                if txn is not None:
                    try:
                        return fn(txn, arg)
                    finally:
                        txn.abort()
            except lmdb.Error as err:
                raise _wrap(err, op, e.path) from err
            finally:
                gate.leave()
            e.adopt_map_size()
        raise StorageUnavailableError(f"LMDB {op} in {e.path}: the map kept being resized")

    def _write(self, op: str, apply: Callable, decide: Callable | None = None):
        """Run ``apply(txn)`` in one write transaction and commit it durably; its result
        is returned. On a full map: abort, grow, rerun from scratch.

        ``decide(txn)``, when given, runs first and only reads through ``txn``: answering
        ``False`` ends the transaction with nothing written and returns ``False``. Such
        a clean transaction is *committed* (LMDB does no I/O for it) rather than aborted,
        because py-lmdb 3.0's write-txn ``abort()`` waits until no other thread is inside
        an LMDB call on the environment, which busy readers can postpone for seconds. The
        rare aborts (map full, exceptions) first drain this process's readers via the gate.
        """
        e = self._env()
        with e.write_lock:
            while True:
                action = seen = None
                exclusive = False
                e.gate.enter()
                try:
                    if e.closed:
                        raise StorageUnavailableError(f"LMDB storage {e.path} is closed")
                    try:
                        txn = e.env.begin(write=True)
                    except lmdb.MapResizedError:
                        action = "adopt"
                    else:
                        try:
                            if decide is not None and not decide(txn):
                                txn.commit()        # clean: nothing written, no I/O
                                return False
                            result = apply(txn)
                        except BaseException as exc:
                            try:
                                e.gate.upgrade()    # drain readers: abort() waits for them
                                exclusive = True
                            finally:
                                txn.abort()
                            if not isinstance(exc, lmdb.MapFullError):
                                raise
                            action = "grow"
                            seen = e.env.info()["map_size"]
                        else:
                            e.keep_ahead()
                            try:
                                txn.commit()        # the txn is gone also when this fails
                            except lmdb.MapFullError:
                                action = "grow"
                                seen = e.env.info()["map_size"]
                            else:
                                return result
                    if action == "grow":
                        if not exclusive:
                            e.gate.upgrade()
                            exclusive = True
                        e.grow_exclusive(seen, self._map_size_max)
                except lmdb.Error as err:
                    raise _wrap(err, op, e.path) from err
                finally:
                    if exclusive:
                        e.gate.leave_exclusive()
                    else:
                        e.gate.leave()
                if action == "adopt":
                    e.adopt_map_size()

    # --- blobs -----------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """See :meth:`Storage.get`.

        >>> import tempfile; s = open_lmdb_storage(tempfile.mkdtemp())
        >>> s.get(b"k") is None
        True
        """
        return self._read("get", self._e.get_blob, _blob_key(key))

    def get_many(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """See :meth:`Storage.get_many`.

        >>> import tempfile; s = open_lmdb_storage(tempfile.mkdtemp())
        >>> s.put_blobs([(b"a", b"1")]); s.get_many([b"a", b"b"])
        [b'1', None]
        """
        ks = [_blob_key(k) for k in keys]
        db = self._e.blobs

        def run(txn, _):
            get = txn.get
            return [get(k, None, db) for k in ks]
        return self._read("get_many", run)

    def put_blobs(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """See :meth:`Storage.put_blobs` (batches above 32 MiB go in several transactions).

        >>> import tempfile; s = open_lmdb_storage(tempfile.mkdtemp())
        >>> s.put_blobs([(b"k", b"v")]); s.get(b"k")
        b'v'
        """
        batch, size = [], 0
        for item in _blob_items(items):
            batch.append(item)
            size += len(item[1])
            if size >= _PUT_CHUNK_BYTES or len(batch) >= _PUT_CHUNK_ITEMS:
                self._put_batch(batch)
                batch, size = [], 0
        if batch:
            self._put_batch(batch)

    def _put_batch(self, blobs):
        db = self._e.blobs

        def run(txn):
            self._put_blobs_in(txn, db, blobs)
            return None
        self._write("put_blobs", run)

    @staticmethod
    def _put_blobs_in(txn, db, blobs):
        put = txn.put
        for k, v in blobs:
            if not put(k, v, overwrite=False, db=db):
                old = txn.get(k, db=db)
                if old != v:
                    raise BlobConflictError(
                        f"blob {k.hex()} already holds different bytes ({len(old)} vs {len(v)} "
                        "bytes); blobs are immutable", data={"key": k})

    def delete_blobs(self, keys: Iterable[bytes]) -> None:
        """See :meth:`Storage.delete_blobs` (large deletes go in several transactions).

        >>> import tempfile; s = open_lmdb_storage(tempfile.mkdtemp())
        >>> s.put_blobs([(b"k", b"v")]); s.delete_blobs([b"k"]); s.get(b"k") is None
        True
        """
        ks = [_blob_key(k) for k in keys]
        db = self._e.blobs
        for i in range(0, len(ks), _DELETE_CHUNK):
            part = ks[i:i + _DELETE_CHUNK]

            def run(txn, part=part):
                for k in part:
                    txn.delete(k, db=db)
                return None
            self._write("delete_blobs", run)

    # --- log -------------------------------------------------------------------

    def log_range(self, db_id: str, start_t: int | None = None,
                  end_t: int | None = None) -> Iterator[tuple[int, bytes]]:
        """See :meth:`Storage.log_range`: a cursor range scan, 1024 records per read txn.

        >>> import tempfile; s = open_lmdb_storage(tempfile.mkdtemp()); db = "ab" * 16
        >>> s.commit(log=[(db, 2, b"b"), (db, 1, b"a")]); list(s.log_range(db))
        True
        [(1, b'a'), (2, b'b')]
        """
        db_id = _db_id(db_id)
        lo, hi = _log_bounds(start_t, end_t)
        self._env()
        return self._iter_log(bytes.fromhex(db_id), lo, hi)

    def _iter_log(self, prefix: bytes, lo: int, hi: int) -> Iterator[tuple[int, bytes]]:
        db = self._e.log
        while lo < hi:
            start = prefix + lo.to_bytes(8, "big")

            def run(txn, _):
                out, size = [], 0
                cur = txn.cursor(db=db)
                if not cur.set_range(start):
                    return out, False
                for k, v in cur.iternext():
                    if k[:16] != prefix:
                        return out, False
                    for t, rec in _key_records(k, v):
                        if t >= hi:
                            return out, False
                        if t >= lo:
                            out.append((t, rec))
                            size += len(rec)
                    # A key's records are never split between chunks.
                    if len(out) >= _LOG_CHUNK_RECORDS or size >= _LOG_CHUNK_BYTES:
                        return out, True
                return out, False
            chunk, more = self._read("log_range", run)
            yield from chunk
            if not more or not chunk:
                return
            lo = chunk[-1][0] + 1

    def log_last_t(self, db_id: str) -> int | None:
        """See :meth:`Storage.log_last_t`.

        >>> import tempfile; s = open_lmdb_storage(tempfile.mkdtemp())
        >>> s.log_last_t("ab" * 16) is None
        True
        """
        prefix = bytes.fromhex(_db_id(db_id))
        db = self._e.log

        def run(txn, _):
            cur = txn.cursor(db=db)
            ok = cur.prev() if cur.set_range(prefix + _T_END_SUFFIX) else cur.last()
            if not ok:
                return None
            k = cur.key()
            return int.from_bytes(k[16:24], "big") if k[:16] == prefix else None
        return self._read("log_last_t", run)

    def delete_log(self, db_id: str) -> None:
        """See :meth:`Storage.delete_log` (large logs are deleted in several transactions).

        >>> import tempfile; s = open_lmdb_storage(tempfile.mkdtemp()); db = "ab" * 16
        >>> s.commit(log=[(db, 1, b"a")]); s.delete_log(db); s.log_last_t(db) is None
        True
        True
        """
        prefix = bytes.fromhex(_db_id(db_id))
        db = self._e.log

        def run(txn):
            cur = txn.cursor(db=db)
            n = 0
            if cur.set_range(prefix):
                while cur.key()[:16] == prefix:
                    if n >= _DELETE_CHUNK:
                        return True
                    if not cur.delete():        # moves to the next key
                        break
                    n += 1
            return False
        while self._write("delete_log", run):
            pass

    # --- records ---------------------------------------------------------------

    def get_record(self, name: str) -> bytes | None:
        """See :meth:`Storage.get_record`.

        >>> import tempfile; s = open_lmdb_storage(tempfile.mkdtemp())
        >>> s.get_record("lease") is None
        True
        """
        k = _record_name(name).encode("utf-8", "surrogatepass")
        return self._read("get_record", self._e.get_record, k)

    def list_records(self, prefix: str) -> list[tuple[str, bytes]]:
        """See :meth:`Storage.list_records`.

        >>> import tempfile; s = open_lmdb_storage(tempfile.mkdtemp())
        >>> s.commit(records=[("root/a", None, b"1"), ("lease", None, b"e")]); s.list_records("root/")
        True
        [('root/a', b'1')]
        """
        if type(prefix) is not str:
            raise StorageArgumentError(f"prefix must be a str, got {type(prefix).__name__}")
        p = prefix.encode("utf-8", "surrogatepass")
        db = self._e.records

        def run(txn, _):
            out = []
            cur = txn.cursor(db=db)
            if cur.set_range(p):
                for k, v in cur.iternext():
                    if not k.startswith(p):
                        break
                    out.append((k.decode("utf-8", "surrogatepass"), v))
            return out
        return self._read("list_records", run)

    # --- commit ----------------------------------------------------------------

    def commit(self, *, blobs=(), log=(), records=(), checks=()) -> bool:
        """See :meth:`Storage.commit`: one LMDB write transaction, fsync'd before ``True``.

        >>> import tempfile; s = open_lmdb_storage(tempfile.mkdtemp())
        >>> s.commit(records=[("r", None, b"1")]), s.commit(records=[("r", None, b"2")])
        (True, False)
        """
        nblobs, nlog, nrecords, nchecks = _normalize_commit(blobs, log, records, checks)
        enc = str.encode
        checks_b = [(enc(n, "utf-8", "surrogatepass"), x) for n, x in nchecks]
        records_b = [(enc(n, "utf-8", "surrogatepass"), x, new) for n, x, new in nrecords]
        log_b, spans = _log_items(nlog)
        e = self._e
        rdb, ldb, bdb = e.records, e.log, e.blobs

        def decide(txn) -> bool:
            get = txn.get
            for k, expected in checks_b:
                if get(k, None, rdb) != expected:
                    return False
            for k, expected, _new in records_b:
                if get(k, None, rdb) != expected:
                    return False
            # Log records are immutable: refuse a commit whose t range overlaps a stored
            # key's. The one key that can overlap is the first whose last t >= first_t.
            for prefix, first, last in spans:
                cur = txn.cursor(db=ldb)
                if cur.set_range(prefix + first.to_bytes(8, "big")):
                    k = cur.key()
                    if k[:16] == prefix and _first_t(k) <= last:
                        return False
            return True

        packs = e.format < STORAGE_FORMAT and any(len(k) == 32 for k, _ in log_b)

        def apply(txn) -> bool:
            put = txn.put
            for k, v in log_b:
                put(k, v, db=ldb)
            if packs:
                # Older readers would misread a packed key: say the format first, same txn.
                put(FORMAT_RECORD, str(STORAGE_FORMAT).encode(), db=rdb)
            if nblobs:
                self._put_blobs_in(txn, bdb, nblobs)
            for k, _expected, new in records_b:
                if new is None:
                    txn.delete(k, db=rdb)
                else:
                    put(k, new, db=rdb)
            return True
        ok = self._write("commit", apply, decide)
        if ok and packs:
            e.format = STORAGE_FORMAT
        return ok

    # --- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Release this handle; the environment closes with its last handle in this process.

        >>> import tempfile; s = open_lmdb_storage(tempfile.mkdtemp()); s.close(); s.close()
        """
        if self._closed:
            return
        self._closed = True
        e = self._e
        if e.pid != os.getpid():
            return
        with _ENVS_LOCK:
            e.refs -= 1
            last = e.refs <= 0
            if last and _ENVS.get(e.key) is e:
                del _ENVS[e.key]
        if last:
            e.close()

    def describe(self) -> dict:
        """Status: backend, path, map and file sizes, entry counts, growth counters.

        ``log_records`` counts stored log keys: a group commit's records share one.

        >>> import tempfile; s = open_lmdb_storage(tempfile.mkdtemp())
        >>> d = s.describe(); d["backend"], d["blobs"], d["map_size_max"]
        ('lmdb', 0, None)
        """
        e = self._e

        def run(txn, _):
            return {n: txn.stat(db)["entries"] for n, db in
                    (("blobs", e.blobs), ("log_records", e.log), ("records", e.records))}
        counts = self._read("describe", run)
        e.gate.enter()
        try:
            if e.closed:
                raise StorageUnavailableError(f"LMDB storage {e.path} is closed")
            info, stat = e.env.info(), e.env.stat()
        except lmdb.Error as err:
            raise _wrap(err, "describe", e.path) from err
        finally:
            e.gate.leave()
        try:
            file_bytes = os.stat(os.path.join(e.path, "data.mdb")).st_size
        except OSError:
            file_bytes = None
        return {
            "backend": "lmdb",
            "protocol": "dev",
            "path": e.path,
            "map_size": info["map_size"],
            "map_size_max": self._map_size_max,
            "used_bytes": (info["last_pgno"] + 1) * stat["psize"],
            "file_bytes": file_bytes,
            "page_size": stat["psize"],
            **counts,
            "readers": info["num_readers"],
            "max_readers": info["max_readers"],
            "map_grows": e.grows,
            "map_adopts": e.adopts,
            "lmdb_version": ".".join(map(str, lmdb.version())),
        }

    def __repr__(self):
        return f"<LmdbStorage path={self._e.path!r}{' closed' if self._closed else ''}>"
