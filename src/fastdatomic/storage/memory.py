"""In-process storage (protocol ``"mem"``): the SPI semantics, held in dicts.

For tests and embedding. One lock per store: every commit runs under it, and
every read takes it, so each read sees one consistent state. Values are
``bytes`` (immutable); anything else handed in is copied first.

>>> from fastdatomic.storage import open_storage, forget_mem_storage
>>> s = open_storage("mem", name="doc-memory")
>>> s.commit(blobs=[(b"seg", b"leaf")], records=[("root", None, b"seg")])
True
>>> open_storage("mem", name="doc-memory").get_record("root")
b'seg'
>>> forget_mem_storage("doc-memory")
"""

from __future__ import annotations

import bisect
import threading
from typing import Iterable, Iterator

from fastdatomic.errors import BlobConflictError, StorageConfigError, StorageUnavailableError
from fastdatomic.storage import (
    Storage, _blob_items, _blob_key, _db_id, _log_bounds, _normalize_commit, _record_name,
)

__all__ = ["MemoryStorage", "open_mem_storage"]

_LOG_CHUNK = 1024


class _MemState:
    """The data of one in-memory store, shared by all its handles."""

    __slots__ = ("name", "lock", "blobs", "logs", "records", "closed", "commits")

    def __init__(self, name: str | None):
        self.name = name
        self.lock = threading.Lock()
        self.blobs: dict[bytes, bytes] = {}
        # db_id -> (sorted list of t, {t: record})
        self.logs: dict[str, tuple[list[int], dict[int, bytes]]] = {}
        self.records: dict[str, bytes] = {}
        self.closed = False
        self.commits = 0


_REGISTRY: dict[str, _MemState] = {}
_REGISTRY_LOCK = threading.Lock()


def open_mem_storage(name: str | None = None, **options) -> "MemoryStorage":
    """A handle on the named in-memory store (created on first use), or a private one.

    >>> a = open_mem_storage("doc-mem-open"); b = open_mem_storage("doc-mem-open")
    >>> a.commit(records=[("r", None, b"1")]); b.get_record("r")
    True
    b'1'
    >>> _forget("doc-mem-open")
    """
    if options:
        raise StorageConfigError(
            f"unknown option(s) for mem storage: {', '.join(sorted(options))} (supported: name)",
            data={"options": sorted(options)})
    if name is None:
        return MemoryStorage(_MemState(None))
    if type(name) is not str or not name:
        raise StorageConfigError(f"mem storage name must be a non-empty str, got {name!r}")
    with _REGISTRY_LOCK:
        state = _REGISTRY.get(name)
        if state is None:
            state = _REGISTRY[name] = _MemState(name)
    return MemoryStorage(state)


def _forget(name: str) -> None:
    with _REGISTRY_LOCK:
        state = _REGISTRY.pop(name, None)
    if state is not None:
        with state.lock:
            state.closed = True


class MemoryStorage(Storage):
    """A handle on an in-memory store; see :class:`~fastdatomic.storage.Storage`.

    >>> s = open_mem_storage(); s.put_blobs([(bytearray(b"k"), bytearray(b"v"))])
    >>> s.get(b"k")
    b'v'
    """

    protocol = "mem"

    def __init__(self, state: _MemState):
        self._s = state
        self._closed = False

    def _state(self) -> _MemState:
        s = self._s
        if self._closed or s.closed:
            raise StorageUnavailableError(
                "mem storage is closed" if s.name is None else f"mem storage {s.name!r} is closed")
        return s

    # --- blobs -----------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """See :meth:`Storage.get`.

        >>> open_mem_storage().get(b"k") is None
        True
        """
        k = _blob_key(key)
        s = self._state()
        with s.lock:
            return s.blobs.get(k)

    def get_many(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """See :meth:`Storage.get_many`.

        >>> open_mem_storage().get_many([b"a", b"b"])
        [None, None]
        """
        ks = [_blob_key(k) for k in keys]
        s = self._state()
        with s.lock:
            g = s.blobs.get
            return [g(k) for k in ks]

    def put_blobs(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """See :meth:`Storage.put_blobs`.

        >>> s = open_mem_storage(); s.put_blobs([(b"k", b"v")]); s.get(b"k")
        b'v'
        """
        blobs = _blob_items(items)
        s = self._state()
        with s.lock:
            self._check_blobs(s, blobs)
            s.blobs.update(blobs)

    def delete_blobs(self, keys: Iterable[bytes]) -> None:
        """See :meth:`Storage.delete_blobs`.

        >>> s = open_mem_storage(); s.put_blobs([(b"k", b"v")]); s.delete_blobs([b"k"])
        >>> s.get(b"k") is None
        True
        """
        ks = [_blob_key(k) for k in keys]
        s = self._state()
        with s.lock:
            for k in ks:
                s.blobs.pop(k, None)

    @staticmethod
    def _check_blobs(s: _MemState, blobs) -> None:
        pending: dict[bytes, bytes] = {}
        for k, v in blobs:
            old = pending.get(k)
            if old is None:
                old = s.blobs.get(k)
            if old is not None and old != v:
                raise BlobConflictError(
                    f"blob {k.hex()} already holds different bytes ({len(old)} vs {len(v)} bytes); "
                    "blobs are immutable", data={"key": k})
            pending[k] = v

    # --- log -------------------------------------------------------------------

    def log_range(self, db_id: str, start_t: int | None = None,
                  end_t: int | None = None) -> Iterator[tuple[int, bytes]]:
        """See :meth:`Storage.log_range`.

        >>> list(open_mem_storage().log_range("ab" * 16))
        []
        """
        db_id = _db_id(db_id)
        lo, hi = _log_bounds(start_t, end_t)
        self._state()
        return self._iter_log(db_id, lo, hi)

    def _iter_log(self, db_id: str, lo: int, hi: int) -> Iterator[tuple[int, bytes]]:
        while lo < hi:
            s = self._state()
            with s.lock:
                entry = s.logs.get(db_id)
                if entry is None:
                    return
                ts, recs = entry
                i = bisect.bisect_left(ts, lo)
                j = min(bisect.bisect_left(ts, hi), i + _LOG_CHUNK)
                chunk = [(t, recs[t]) for t in ts[i:j]]
            if not chunk:
                return
            yield from chunk
            if len(chunk) < _LOG_CHUNK:
                return
            lo = chunk[-1][0] + 1

    def log_last_t(self, db_id: str) -> int | None:
        """See :meth:`Storage.log_last_t`.

        >>> open_mem_storage().log_last_t("ab" * 16) is None
        True
        """
        db_id = _db_id(db_id)
        s = self._state()
        with s.lock:
            entry = s.logs.get(db_id)
            return entry[0][-1] if entry and entry[0] else None

    def delete_log(self, db_id: str) -> None:
        """See :meth:`Storage.delete_log`.

        >>> open_mem_storage().delete_log("ab" * 16)
        """
        db_id = _db_id(db_id)
        s = self._state()
        with s.lock:
            s.logs.pop(db_id, None)

    # --- records ---------------------------------------------------------------

    def get_record(self, name: str) -> bytes | None:
        """See :meth:`Storage.get_record`.

        >>> open_mem_storage().get_record("lease") is None
        True
        """
        name = _record_name(name)
        s = self._state()
        with s.lock:
            return s.records.get(name)

    def list_records(self, prefix: str) -> list[tuple[str, bytes]]:
        """See :meth:`Storage.list_records`.

        >>> open_mem_storage().list_records("")
        []
        """
        if type(prefix) is not str:
            from fastdatomic.errors import StorageArgumentError
            raise StorageArgumentError(f"prefix must be a str, got {type(prefix).__name__}")
        s = self._state()
        with s.lock:
            items = [(n, v) for n, v in s.records.items() if n.startswith(prefix)]
        items.sort(key=lambda nv: nv[0].encode("utf-8", "surrogatepass"))
        return items

    # --- commit ----------------------------------------------------------------

    def commit(self, *, blobs=(), log=(), records=(), checks=()) -> bool:
        """See :meth:`Storage.commit`.

        >>> s = open_mem_storage()
        >>> s.commit(records=[("r", None, b"1")]), s.commit(records=[("r", None, b"2")])
        (True, False)
        """
        nblobs, nlog, nrecords, nchecks = _normalize_commit(blobs, log, records, checks)
        s = self._state()
        with s.lock:
            if s.closed:
                raise StorageUnavailableError(f"mem storage {s.name!r} is closed")
            cur = s.records
            for name, expected in nchecks:
                if cur.get(name) != expected:
                    return False
            for name, expected, _new in nrecords:
                if cur.get(name) != expected:
                    return False
            logs = s.logs
            for db_id, t, _v in nlog:
                entry = logs.get(db_id)
                if entry is not None and t in entry[1]:
                    return False
            self._check_blobs(s, nblobs)
            # --- nothing below can fail: apply ---
            if nblobs:
                s.blobs.update(nblobs)
            for db_id, t, v in nlog:
                entry = logs.get(db_id)
                if entry is None:
                    entry = logs[db_id] = ([], {})
                ts, recs = entry
                if not ts or t > ts[-1]:
                    ts.append(t)
                else:
                    bisect.insort(ts, t)
                recs[t] = v
            for name, _expected, new in nrecords:
                if new is None:
                    cur.pop(name, None)
                else:
                    cur[name] = new
            s.commits += 1
            return True

    # --- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Close this handle; a named store's data stays until ``forget_mem_storage``.

        >>> s = open_mem_storage(); s.close(); s.close()
        """
        self._closed = True

    def describe(self) -> dict:
        """See :meth:`Storage.describe`.

        >>> open_mem_storage().describe()["log_records"]
        0
        """
        s = self._state()
        with s.lock:
            return {
                "backend": "mem",
                "protocol": "mem",
                "name": s.name,
                "path": None,
                "blobs": len(s.blobs),
                "blob_bytes": sum(len(v) for v in s.blobs.values()),
                "log_records": sum(len(ts) for ts, _ in s.logs.values()),
                "log_databases": len(s.logs),
                "records": len(s.records),
                "commits": s.commits,
            }

    def __repr__(self):
        return f"<MemoryStorage name={self._s.name!r}{' closed' if self._closed else ''}>"
