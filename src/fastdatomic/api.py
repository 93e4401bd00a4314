"""Database URIs and the catalog verbs: create, delete, list, connect.

URI forms:

- ``fastdatomic:mem://<db-name>``: in-process storage and transactor (tests, embedding);
  ``fastdatomic:mem://*`` names the whole in-process system for ``list_databases``.
- ``fastdatomic:dev://<data-dir>/<db-name>``: a database in the LMDB storage at
  ``<data-dir>`` (the transactor's ``data-dir``; relative paths are relative to the current
  directory, absolute ones start with ``/``: ``fastdatomic:dev:///srv/fd/data/people``).
  The URI names the *storage*, not the transactor: the peer finds the active transactor
  through the lease in storage, so it survives failover. ``<data-dir>/*`` names the system
  for ``list_databases``. Option: ``?object-cache-max=256m`` (the peer's segment cache).
"""

from __future__ import annotations

import threading

from fastdatomic.db import catalog
from fastdatomic.errors import FastDatomicError, StorageConfigError
from fastdatomic.storage import open_storage

__all__ = ["create_database", "delete_database", "list_databases", "connect", "parse_uri",
           "gc_storage"]

_MEM_STORAGE = "fastdatomic-mem-system"
_lock = threading.Lock()
_transactors: dict = {}          # (storage id, db name, db_id) -> _LocalTransactor


def parse_uri(uri: str) -> tuple[str, str]:
    """``(protocol, db_name)`` of a database URI.

    >>> parse_uri("fastdatomic:mem://people"), parse_uri("fastdatomic:dev://data/people")
    (('mem', 'people'), ('dev', 'people'))
    """
    proto, _, name, _ = _parse(uri)
    return proto, name


def _parse(uri: str):
    """``(protocol, data_dir, db_name, options)``; ``data_dir`` is ``None`` for mem.

    >>> _parse("fastdatomic:dev:///srv/data/people?object-cache-max=64m")
    ('dev', '/srv/data', 'people', {'object-cache-max': 67108864})
    """
    if not isinstance(uri, str) or not uri.startswith("fastdatomic:"):
        raise StorageConfigError(f"database URI {uri!r} must start with 'fastdatomic:' "
                                 "(e.g. fastdatomic:mem://people or fastdatomic:dev://data/people)")
    rest = uri[len("fastdatomic:"):]
    proto, sep, name = rest.partition("://")
    if not sep or not name:
        raise StorageConfigError(f"database URI {uri!r} is not of the form fastdatomic:<protocol>://<name>")
    data_dir, options = None, {}
    if proto == "dev":
        name, _, query = name.partition("?")
        data_dir, slash, name = name.rpartition("/")
        if not slash or not data_dir or not name:
            raise StorageConfigError(f"database URI {uri!r}: a dev URI is "
                                     "fastdatomic:dev://<data-dir>/<db-name> (e.g. fastdatomic:dev://data/people)")
        for part in filter(None, query.split("&")):
            key, _, value = part.partition("=")
            if key != "object-cache-max":
                raise StorageConfigError(f"database URI {uri!r}: unknown option {key!r} "
                                         "(supported: object-cache-max)")
            options[key] = _size(uri, key, value)
    elif proto != "mem":
        raise StorageConfigError(f"protocol {proto!r} in {uri!r} is not supported; use 'mem' or 'dev' "
                                 "(sql comes with PostgreSQL storage)")
    if name != "*":
        try:
            catalog.check_name(name)
        except FastDatomicError as e:
            raise StorageConfigError(f"database URI {uri!r}: {e.message}") from None
    return proto, data_dir, name, options


def _size(uri, key, value):
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(value[-1:].lower(), 1)
    digits = value[:-1] if mult > 1 else value
    if not digits.isdigit():
        raise StorageConfigError(f"database URI {uri!r}: {key}={value!r} is not a size like 256m")
    return int(digits) * mult


def _peer(data_dir, options):
    from fastdatomic.peer import peer_system, DEFAULT_OBJECT_CACHE
    return peer_system(data_dir, options.get("object-cache-max", DEFAULT_OBJECT_CACHE))


def _storage(proto):
    return open_storage("mem", name=_MEM_STORAGE)


def create_database(uri: str) -> bool:
    """Create the database named by ``uri``; ``False`` if it already exists.

    >>> create_database("fastdatomic:mem://doc-api"), create_database("fastdatomic:mem://doc-api")
    (True, False)
    """
    proto, data_dir, name, options = _parse(uri)
    if proto == "dev":
        from fastdatomic.transactor import protocol as P
        return _peer(data_dir, options).call(P.CREATE_DB, {"db": name})["created"]
    return catalog.create_database(_storage(proto), name)


def delete_database(uri: str) -> bool:
    """Delete the database named by ``uri``; ``False`` if there was none.

    >>> _ = create_database("fastdatomic:mem://doc-api-del"); delete_database("fastdatomic:mem://doc-api-del")
    True
    """
    proto, data_dir, name, options = _parse(uri)
    if proto == "dev":
        from fastdatomic.transactor import protocol as P
        return _peer(data_dir, options).call(P.DELETE_DB, {"db": name})["deleted"]
    st = _storage(proto)
    deleted = catalog.delete_database(st, name)
    with _lock:
        for key in [k for k in _transactors if k[0] == name]:
            _transactors.pop(key).close(f"database {name!r} was deleted")
    return deleted


def list_databases(uri: str = "fastdatomic:mem://*") -> list[str]:
    """Names of the databases in the system ``uri`` points at (use ``*`` as the name).

    >>> _ = create_database("fastdatomic:mem://doc-list")
    >>> "doc-list" in list_databases("fastdatomic:mem://*")
    True
    """
    proto, data_dir, _, options = _parse(uri)
    if proto == "dev":   # read from storage: works with or without an active transactor
        return catalog.list_databases(_peer(data_dir, options).storage)
    return catalog.list_databases(_storage(proto))


def gc_storage(uri: str, older_than) -> dict:
    """Delete the index segments that indexing jobs and deleted databases left behind
    before ``older_than`` (an aware ``datetime``) and that no database reaches any more
    (Datomic's ``gc-storage``), in the storage ``uri`` names (any database of it, or
    ``*``). Returns counts; see ``fastdatomic.db.gc``. A peer still holding a database
    value from before ``older_than`` may then fail to read it: choose a cutoff older
    than any value your peers keep. Runs alongside a transactor.

    >>> from datetime import datetime, timezone
    >>> gc_storage("fastdatomic:mem://*", datetime(2000, 1, 1, tzinfo=timezone.utc))["segments_deleted"]
    0
    """
    from fastdatomic.db import gc
    proto, data_dir, _, options = _parse(uri)
    st = _peer(data_dir, options).storage if proto == "dev" else _storage(proto)
    return gc.gc_storage(st, older_than)


def connect(uri: str):
    """A ``Connection`` to the database named by ``uri``.

    >>> _ = create_database("fastdatomic:mem://doc-connect")
    >>> connect("fastdatomic:mem://doc-connect").db().basis_t
    0
    """
    from fastdatomic.connection import Connection, _LocalTransactor
    proto, data_dir, name, options = _parse(uri)
    if proto == "dev":
        from fastdatomic.peer import PeerConnection
        return PeerConnection(uri, _peer(data_dir, options), name)
    st = _storage(proto)
    root, _ = catalog.read_root(st, name)
    key = (name, root["db_id"])   # one writer per database, shared by all its connections
    with _lock:
        tx = _transactors.get(key)
        if tx is None:
            tx = _transactors[key] = _LocalTransactor(st, name)
    return Connection(uri, st, tx)
