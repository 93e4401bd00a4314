"""The storage SPI: bytes under keys, with one atomic, fenced ``commit``.

Everything durable lives in a :class:`Storage`, in three keyspaces:

* **blobs** -- immutable values written once (index segments), keyed by ``bytes``
  of at most 64 bytes (typically 16-byte ids);
* **log** -- one immutable record per transaction, addressed by ``(db_id, t)``
  (``db_id`` a 32-char lowercase hex string, ``0 <= t < 2**63``), range-scannable
  in ascending ``t``;
* **records** -- a few small *mutable* values named by ``str`` (the lease, the
  epoch, one root per database, the catalog), changed only by compare-and-set.

:meth:`Storage.commit` is THE write: blobs, log records, record CASes and
read-only checks in one storage transaction -- all of it durable, or nothing.
That is what makes every transactor commit fenced (ARCHITECTURE.md §4.2): the
log append and the root CAS are conditioned on the lease epoch in the same
transaction.

>>> s = open_storage("mem")
>>> db = "0123456789abcdef0123456789abcdef"
>>> s.commit(records=[("lease", None, b"epoch=1")])
True
>>> s.commit(log=[(db, 1, b"tx1")], records=[(f"root/{db}", None, b"t=1")],
...          checks=[("lease", b"epoch=1")])
True
>>> s.commit(log=[(db, 2, b"tx2")], records=[(f"root/{db}", b"t=1", b"t=2")],
...          checks=[("lease", b"epoch=0")])          # stale epoch: nothing written
False
>>> s.log_last_t(db), s.get_record(f"root/{db}")
(1, b't=1')

Protocols: ``"mem"`` (in-process, :mod:`fastdatomic.storage.memory`) and
``"dev"`` (LMDB, :mod:`fastdatomic.storage.lmdb_store`). ``"sql"`` (PostgreSQL)
is planned.
"""

from __future__ import annotations

import abc
from typing import Iterable, Iterator

from fastdatomic.errors import StorageArgumentError, StorageConfigError

__all__ = [
    "Storage", "open_storage", "forget_mem_storage", "SUPPORTED_PROTOCOLS",
    "MAX_BLOB_KEY_BYTES", "MAX_RECORD_NAME_BYTES", "T_LIMIT",
]

#: Longest blob key accepted, in bytes.
MAX_BLOB_KEY_BYTES = 64
#: Longest record name accepted, in UTF-8 bytes (LMDB keys are at most 511 bytes).
MAX_RECORD_NAME_BYTES = 256
#: Log ``t`` values are ``0 <= t < T_LIMIT``.
T_LIMIT = 1 << 63

SUPPORTED_PROTOCOLS = ("mem", "dev")
_PLANNED_PROTOCOLS = ("sql",)


class Storage(abc.ABC):
    """Abstract storage: blobs, log, records, and the atomic :meth:`commit`.

    Values going in are copied (``bytes``, ``bytearray`` and ``memoryview`` are
    accepted); values coming out are fresh ``bytes`` the caller may keep.
    Every method is thread-safe. A storage is a context manager that closes
    itself.

    >>> with open_storage("mem") as s:
    ...     s.describe()["backend"]
    'mem'
    """

    protocol: str = "?"

    # --- blobs ---------------------------------------------------------------

    @abc.abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The blob under ``key``, or ``None``.

        >>> s = open_storage("mem"); s.put_blobs([(b"k", b"v")])
        >>> s.get(b"k"), s.get(b"missing")
        (b'v', None)
        """

    @abc.abstractmethod
    def get_many(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """The blobs under ``keys``, in order, ``None`` for missing ones (one consistent read).

        >>> s = open_storage("mem"); s.put_blobs([(b"a", b"1"), (b"b", b"2")])
        >>> s.get_many([b"b", b"x", b"a"])
        [b'2', None, b'1']
        """

    @abc.abstractmethod
    def put_blobs(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Write immutable blobs; durable when this returns.

        Writing a key again with the same bytes is a no-op; with different
        bytes it raises :class:`~fastdatomic.errors.BlobConflictError`. Large
        batches may be split into several storage transactions (use
        :meth:`commit` when atomicity matters), in the order given: a write that
        stops half-way leaves a prefix of ``items`` (indexing jobs rely on it to
        write parents before children).

        >>> s = open_storage("mem")
        >>> s.put_blobs([(b"seg-1", b"leaf")]); s.put_blobs([(b"seg-1", b"leaf")])
        >>> s.get(b"seg-1")
        b'leaf'
        """

    @abc.abstractmethod
    def delete_blobs(self, keys: Iterable[bytes]) -> None:
        """Delete blobs (garbage collection / delete-database only); missing keys are ignored.

        >>> s = open_storage("mem"); s.put_blobs([(b"k", b"v")])
        >>> s.delete_blobs([b"k", b"never-there"]); s.get(b"k") is None
        True
        """

    # --- log -----------------------------------------------------------------

    @abc.abstractmethod
    def log_range(self, db_id: str, start_t: int | None = None,
                  end_t: int | None = None) -> Iterator[tuple[int, bytes]]:
        """``(t, record)`` of one database in ascending ``t``; ``start_t`` inclusive,
        ``end_t`` exclusive, ``None`` = open.

        Arguments are checked at the call. The iterator reads in bounded chunks,
        each one consistent read, so it suits logs of any size; it holds no
        storage resources between ``next()`` calls.

        >>> s = open_storage("mem"); db = "ab" * 16
        >>> s.commit(log=[(db, t, b"tx%d" % t) for t in (1, 2, 3)])
        True
        >>> list(s.log_range(db, 2)), [t for t, _ in s.log_range(db, None, 3)]
        ([(2, b'tx2'), (3, b'tx3')], [1, 2])
        """

    @abc.abstractmethod
    def log_last_t(self, db_id: str) -> int | None:
        """The highest ``t`` in the log of ``db_id``, ``None`` if it has none.

        >>> s = open_storage("mem"); db = "ab" * 16
        >>> s.log_last_t(db) is None
        True
        >>> s.commit(log=[(db, 7, b"tx")]); s.log_last_t(db)
        True
        7
        """

    @abc.abstractmethod
    def delete_log(self, db_id: str) -> None:
        """Delete every log record of ``db_id`` (delete-database only).

        >>> s = open_storage("mem"); db = "ab" * 16
        >>> s.commit(log=[(db, 1, b"tx")]); s.delete_log(db); s.log_last_t(db) is None
        True
        True
        """

    # --- records -------------------------------------------------------------

    @abc.abstractmethod
    def get_record(self, name: str) -> bytes | None:
        """The mutable record ``name``, or ``None``.

        >>> s = open_storage("mem"); s.commit(records=[("lease", None, b"e1")])
        True
        >>> s.get_record("lease"), s.get_record("nope")
        (b'e1', None)
        """

    @abc.abstractmethod
    def list_records(self, prefix: str) -> list[tuple[str, bytes]]:
        """All records whose name starts with ``prefix``, sorted by name (one consistent read).

        >>> s = open_storage("mem")
        >>> s.commit(records=[("root/b", None, b"2"), ("root/a", None, b"1"), ("lease", None, b"")])
        True
        >>> s.list_records("root/")
        [('root/a', b'1'), ('root/b', b'2')]
        """

    # --- the atomic write ----------------------------------------------------

    @abc.abstractmethod
    def commit(self, *, blobs: Iterable[tuple[bytes, bytes]] = (),
               log: Iterable[tuple[str, int, bytes]] = (),
               records: Iterable[tuple[str, bytes | None, bytes | None]] = (),
               checks: Iterable[tuple[str, bytes | None]] = ()) -> bool:
        """Apply everything in ONE storage transaction, or nothing.

        * ``blobs``: ``(key, value)`` as in :meth:`put_blobs`;
        * ``log``: ``(db_id, t, record)``; a record that already exists for
          ``(db_id, t)`` is a conflict;
        * ``records``: CAS ``(name, expected, new)``; ``expected=None`` means
          "must not exist", ``new=None`` deletes;
        * ``checks``: ``(name, expected)`` compared but not written (the fence
          on the lease epoch).

        Returns ``True`` when everything is written and durable (fsync'd for
        LMDB), ``False`` -- with nothing written -- when any check, CAS or log
        slot conflicts. Never partially applied, also if the process dies
        mid-commit. Naming one record or one ``(db_id, t)`` twice in a commit
        is a caller bug (:class:`~fastdatomic.errors.StorageArgumentError`).

        >>> s = open_storage("mem"); db = "ab" * 16
        >>> s.commit(records=[("root", None, b"t1")], log=[(db, 1, b"tx1")])
        True
        >>> s.commit(records=[("root", b"t0", b"t2")], log=[(db, 2, b"tx2")])
        False
        >>> s.commit(records=[("root", b"t1", None)]), s.get_record("root")
        (True, None)
        """

    # --- lifecycle -----------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None:
        """Release this handle (idempotent); later calls raise ``StorageUnavailableError``.

        >>> s = open_storage("mem"); s.close(); s.close()
        >>> s.get(b"k")
        Traceback (most recent call last):
        ...
        fastdatomic.errors.StorageUnavailableError: mem storage is closed
        """

    @abc.abstractmethod
    def describe(self) -> dict:
        """A dict for status output: ``backend``, ``protocol``, ``path``/``name``, sizes.

        >>> d = open_storage("mem", name="doc-describe").describe()
        >>> d["backend"], d["name"], d["blobs"]
        ('mem', 'doc-describe', 0)
        >>> forget_mem_storage("doc-describe")
        """

    def __enter__(self):
        """``with open_storage(...) as s:`` closes ``s`` on exit.

        >>> with open_storage("mem") as s:
        ...     s.get(b"k") is None
        True
        """
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# --- argument normalisation shared by the backends ---------------------------

_HEX = frozenset("0123456789abcdef")


def _as_bytes(value, what: str) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise StorageArgumentError(f"{what} must be bytes, got {type(value).__name__}",
                               data={"what": what})


def _blob_key(key) -> bytes:
    k = _as_bytes(key, "blob key")
    if not 0 < len(k) <= MAX_BLOB_KEY_BYTES:
        raise StorageArgumentError(
            f"blob key must be 1..{MAX_BLOB_KEY_BYTES} bytes, got {len(k)}", data={"key": k[:80]})
    return k


def _db_id(db_id) -> str:
    if not (type(db_id) is str and len(db_id) == 32 and _HEX.issuperset(db_id)):
        raise StorageArgumentError(
            f"db_id must be a 32-char lowercase hex string (uuid4().hex), got {db_id!r}",
            data={"db_id": db_id})
    return db_id


def _t(t, what: str = "t") -> int:
    if type(t) is not int or not 0 <= t < T_LIMIT:
        if isinstance(t, int) and not isinstance(t, bool) and 0 <= t < T_LIMIT:
            return int(t)
        raise StorageArgumentError(f"{what} must be an int in [0, 2**63), got {t!r}",
                                   data={what: t})
    return t


def _record_name(name) -> str:
    if type(name) is not str or not name:
        raise StorageArgumentError(f"record name must be a non-empty str, got {name!r}",
                                   data={"name": name})
    if len(name.encode("utf-8", "surrogatepass")) > MAX_RECORD_NAME_BYTES:
        raise StorageArgumentError(
            f"record name longer than {MAX_RECORD_NAME_BYTES} UTF-8 bytes: {name[:40]!r}...",
            data={"name": name})
    return name


def _opt_bytes(value, what: str) -> bytes | None:
    return None if value is None else _as_bytes(value, what)


def _blob_items(items) -> list[tuple[bytes, bytes]]:
    out = []
    for item in items:
        try:
            k, v = item
        except (TypeError, ValueError):
            raise StorageArgumentError(f"blob item must be (key, value), got {item!r:.80}") from None
        out.append((_blob_key(k), _as_bytes(v, "blob value")))
    return out


def _normalize_commit(blobs, log, records, checks):
    """Validate and copy commit arguments: (blobs, log, records, checks) as lists.

    ``log`` entries become ``(db_id, t, value)``; duplicate ``(db_id, t)`` or
    duplicate record names raise :class:`StorageArgumentError`.
    """
    nblobs = _blob_items(blobs)
    nlog = []
    seen_log = set()
    for item in log:
        try:
            db_id, t, v = item
        except (TypeError, ValueError):
            raise StorageArgumentError(f"log item must be (db_id, t, bytes), got {item!r:.80}") from None
        key = (_db_id(db_id), _t(t))
        if key in seen_log:
            raise StorageArgumentError(f"log record (db_id={db_id}, t={t}) named twice in one commit")
        seen_log.add(key)
        nlog.append((key[0], key[1], _as_bytes(v, "log record")))
    nrecords = []
    seen = set()
    for item in records:
        try:
            name, expected, new = item
        except (TypeError, ValueError):
            raise StorageArgumentError(
                f"record item must be (name, expected, new), got {item!r:.80}") from None
        name = _record_name(name)
        if name in seen:
            raise StorageArgumentError(f"record {name!r} named twice in one commit")
        seen.add(name)
        nrecords.append((name, _opt_bytes(expected, "expected record"), _opt_bytes(new, "new record")))
    nchecks = []
    for item in checks:
        try:
            name, expected = item
        except (TypeError, ValueError):
            raise StorageArgumentError(f"check item must be (name, expected), got {item!r:.80}") from None
        nchecks.append((_record_name(name), _opt_bytes(expected, "expected record")))
    return nblobs, nlog, nrecords, nchecks


def _log_bounds(start_t, end_t) -> tuple[int, int]:
    """``(lo, hi)`` for a log range: ``lo`` inclusive, ``hi`` exclusive (``hi`` may be 2**63)."""
    lo = 0 if start_t is None else _t(start_t, "start_t")
    if end_t is None:
        return lo, T_LIMIT
    if isinstance(end_t, int) and not isinstance(end_t, bool) and end_t == T_LIMIT:
        return lo, T_LIMIT
    return lo, _t(end_t, "end_t")


# --- opening -------------------------------------------------------------------

def open_storage(protocol: str, **options) -> Storage:
    """Open a storage by protocol.

    * ``"mem"``: ``name=`` (optional). Named stores live in a process-wide
      registry: every ``open_storage("mem", name="x")`` reaches the same data
      until :func:`forget_mem_storage`. Without a name the store is private.
    * ``"dev"``: LMDB; ``path=`` (the environment directory, created if
      missing), ``map_size=`` (initial map, bytes; it grows by itself),
      ``map_size_max=`` (``None`` = unbounded), ``max_readers=``.

    >>> a = open_storage("mem", name="doc-open"); b = open_storage("mem", name="doc-open")
    >>> a.put_blobs([(b"k", b"v")]); b.get(b"k")
    b'v'
    >>> forget_mem_storage("doc-open")
    >>> open_storage("s3")
    Traceback (most recent call last):
    ...
    fastdatomic.errors.StorageConfigError: unknown storage protocol 's3' (supported: mem, dev)
    """
    if protocol == "mem":
        from fastdatomic.storage.memory import open_mem_storage
        return open_mem_storage(**options)
    if protocol == "dev":
        from fastdatomic.storage.lmdb_store import open_lmdb_storage
        return open_lmdb_storage(**options)
    if protocol in _PLANNED_PROTOCOLS:
        raise StorageConfigError(
            f"storage protocol {protocol!r} is not yet supported (supported: "
            f"{', '.join(SUPPORTED_PROTOCOLS)})", data={"protocol": protocol},
            hint="use protocol=dev (LMDB under data-dir) until PostgreSQL storage lands")
    raise StorageConfigError(
        f"unknown storage protocol {protocol!r} (supported: {', '.join(SUPPORTED_PROTOCOLS)})",
        data={"protocol": protocol})


def forget_mem_storage(name: str) -> None:
    """Drop the named in-memory store from the registry (tests); its handles are closed.

    >>> s = open_storage("mem", name="doc-forget"); s.put_blobs([(b"k", b"v")])
    >>> forget_mem_storage("doc-forget"); open_storage("mem", name="doc-forget").get(b"k") is None
    True
    >>> forget_mem_storage("doc-forget")
    """
    from fastdatomic.storage.memory import _forget
    _forget(name)


def __getattr__(name):  # lazy re-exports: importing the SPI never imports lmdb
    if name == "MemoryStorage":
        from fastdatomic.storage.memory import MemoryStorage
        return MemoryStorage
    if name == "LmdbStorage":
        from fastdatomic.storage.lmdb_store import LmdbStorage
        return LmdbStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
