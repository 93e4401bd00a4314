"""Database URIs and the catalog verbs: create, delete, list, connect.

URI forms:

- ``fastdatomic:mem://<db-name>``: in-process storage and transactor (tests, embedding);
  ``fastdatomic:mem://*`` names the whole in-process system for ``list_databases``.
"""

from __future__ import annotations

import threading

from fastdatomic.db import catalog
from fastdatomic.errors import FastDatomicError, StorageConfigError
from fastdatomic.storage import open_storage

__all__ = ["create_database", "delete_database", "list_databases", "connect", "parse_uri"]

_MEM_STORAGE = "fastdatomic-mem-system"
_lock = threading.Lock()
_transactors: dict = {}          # (storage id, db name, db_id) -> _LocalTransactor


def parse_uri(uri: str) -> tuple[str, str]:
    """``(protocol, db_name)`` of a database URI.

    >>> parse_uri("fastdatomic:mem://people")
    ('mem', 'people')
    """
    if not isinstance(uri, str) or not uri.startswith("fastdatomic:"):
        raise StorageConfigError(f"database URI {uri!r} must start with 'fastdatomic:' "
                                 "(e.g. fastdatomic:mem://people)")
    rest = uri[len("fastdatomic:"):]
    proto, sep, name = rest.partition("://")
    if not sep or not name:
        raise StorageConfigError(f"database URI {uri!r} is not of the form fastdatomic:<protocol>://<name>")
    if proto != "mem":
        raise StorageConfigError(f"protocol {proto!r} in {uri!r} is not supported yet; use 'mem' "
                                 "(the dev and sql protocols come with the transactor)")
    if name != "*":
        try:
            catalog.check_name(name)
        except FastDatomicError as e:
            raise StorageConfigError(f"database URI {uri!r}: {e.message}") from None
    return proto, name


def _storage(proto):
    return open_storage("mem", name=_MEM_STORAGE)


def create_database(uri: str) -> bool:
    """Create the database named by ``uri``; ``False`` if it already exists.

    >>> create_database("fastdatomic:mem://doc-api"), create_database("fastdatomic:mem://doc-api")
    (True, False)
    """
    proto, name = parse_uri(uri)
    return catalog.create_database(_storage(proto), name)


def delete_database(uri: str) -> bool:
    """Delete the database named by ``uri``; ``False`` if there was none.

    >>> _ = create_database("fastdatomic:mem://doc-api-del"); delete_database("fastdatomic:mem://doc-api-del")
    True
    """
    proto, name = parse_uri(uri)
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
    proto, _ = parse_uri(uri)
    return catalog.list_databases(_storage(proto))


def connect(uri: str):
    """A ``Connection`` to the database named by ``uri``.

    >>> _ = create_database("fastdatomic:mem://doc-connect")
    >>> connect("fastdatomic:mem://doc-connect").db().basis_t
    0
    """
    from fastdatomic.connection import Connection, _LocalTransactor
    proto, name = parse_uri(uri)
    st = _storage(proto)
    root, _ = catalog.read_root(st, name)
    key = (name, root["db_id"])   # one writer per database, shared by all its connections
    with _lock:
        tx = _transactors.get(key)
        if tx is None:
            tx = _transactors[key] = _LocalTransactor(st, name)
    return Connection(uri, st, tx)
