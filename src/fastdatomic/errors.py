"""Every error fastdatomic raises, each with a stable ``kind`` (leaf module).

Kinds follow Datomic's names (``db.error/unique-conflict``, ...) so code written
against Datomic's anomalies carries over. An error may carry a ``hint`` naming
the setting or input to change, and ``data`` with the offending parts.

>>> try:
...     raise WrongTypeError("value 'x' is not a long", data={"attribute": ":person/age"})
... except FastDatomicError as e:
...     e.kind, e.data["attribute"]
('db.error/wrong-type', ':person/age')
"""

from __future__ import annotations

__all__ = [
    "FastDatomicError",
    "StorageError", "StorageFullError", "StorageUnavailableError", "StorageCorruptError",
    "StorageConfigError", "FencedError", "IndexCollectedError",
    "DatabaseError", "DatabaseNotFoundError", "DatabaseExistsError",
    "WrongTypeError", "InvalidValueError", "NotAnEntityError", "InvalidIndexError",
]


class FastDatomicError(Exception):
    """Base of all fastdatomic errors: ``kind`` is stable, ``hint`` says what to change."""

    kind = "fastdatomic/error"
    hint: str | None = None

    def __init__(self, message: str, *, data: dict | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.data = data or {}
        if hint is not None:
            self.hint = hint

    def __str__(self):
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


# --- storage -----------------------------------------------------------------

class StorageError(FastDatomicError):
    """A storage operation failed; the message names the cause."""

    kind = "storage/error"


class StorageFullError(StorageError):
    """The storage device or map cannot grow any more."""

    kind = "storage/full"
    hint = "free disk space under data-dir, or raise lmdb-map-size-max in the transactor properties"


class StorageUnavailableError(StorageError):
    """Storage could not be opened or reached."""

    kind = "storage/unavailable"


class StorageCorruptError(StorageError):
    """A stored record or segment does not decode."""

    kind = "storage/corrupt"


class StorageConfigError(StorageError):
    """A storage URI or setting is invalid."""

    kind = "storage/config"


class FencedError(StorageError):
    """A commit was refused because the writer's epoch or expected basis is stale."""

    kind = "storage/fenced"


class IndexCollectedError(StorageError):
    """An indexing job's trees were not adopted: gc-storage collected them first (the job
    was older than its ``--older-than``); the job is run again."""

    kind = "storage/index-collected"


# --- databases ---------------------------------------------------------------

class DatabaseError(FastDatomicError):
    kind = "db.error/database"


class DatabaseNotFoundError(DatabaseError):
    kind = "db.error/db-not-found"


class DatabaseExistsError(DatabaseError):
    kind = "db.error/db-exists"


# --- values and entities -----------------------------------------------------

class WrongTypeError(FastDatomicError, TypeError):
    """A value does not fit its attribute's ``:db/valueType``."""

    kind = "db.error/wrong-type"


class InvalidValueError(FastDatomicError, ValueError):
    """A value of the right type that cannot be stored (NaN bigdec, lone surrogate, ...)."""

    kind = "db.error/invalid-value"


class NotAnEntityError(FastDatomicError, KeyError):
    """An ident or lookup ref that names no entity."""

    kind = "db.error/not-an-entity"

    def __str__(self):  # KeyError would repr() the message
        return FastDatomicError.__str__(self)


class InvalidIndexError(FastDatomicError, ValueError):
    """An index name or component list that does not fit the index."""

    kind = "db.error/invalid-index"


# --- storage (appended by the storage SPI) -----------------------------------

class StorageArgumentError(StorageError, ValueError):
    """A storage call got an argument of the wrong type, size or shape (a caller bug)."""

    kind = "storage/invalid-argument"


class BlobConflictError(StorageError):
    """A blob key already holds *different* bytes: blobs are immutable, written once."""

    kind = "storage/blob-conflict"


__all__ += ["StorageArgumentError", "BlobConflictError"]


# --- EDN reader (appended by fastdatomic.edn) ---------------------------------

class EdnSyntaxError(FastDatomicError, ValueError):
    """EDN text that does not read; the message names what was expected, and the line and column.

    ``data`` holds ``line``, ``column`` (both 1-based) and ``offset`` (0-based, in characters).
    """

    kind = "edn/syntax"


__all__ += ["EdnSyntaxError"]


# --- transactions --------------------------------------------------------------

class TransactionError(FastDatomicError):
    """A transaction was rejected; nothing of it was applied."""

    kind = "db.error/transaction"


class InvalidTxDataError(TransactionError, ValueError):
    """Transaction data that is not a valid form (names the form)."""

    kind = "db.error/invalid-tx-data"


class DatomsConflictError(TransactionError):
    """Two datoms of one transaction contradict each other."""

    kind = "db.error/datoms-conflict"


class UniqueConflictError(TransactionError):
    """A :db/unique value already held by another entity."""

    kind = "db.error/unique-conflict"


class CasFailedError(TransactionError):
    """``:db/cas`` found another value than the expected one."""

    kind = "db.error/cas-failed"


class EntitySpecFailedError(TransactionError):
    """An entity spec (``:db/ensure``) does not hold after the transaction."""

    kind = "db.error/entity-spec-failed"


class AttrPredFailedError(TransactionError):
    """A value failed one of its attribute's ``:db.attr/preds``."""

    kind = "db.error/attr-pred-failed"


class TxCancelledError(TransactionError):
    """A transaction function cancelled the transaction (``fastdatomic.cancel``)."""

    kind = "db.error/cancelled"


class InvalidAlterAttributeError(TransactionError):
    """A schema change Datomic does not allow (e.g. changing ``:db/valueType``)."""

    kind = "db.error/invalid-alter-attribute"


class TxTooLargeError(TransactionError):
    """A transaction over the size limit."""

    kind = "db.error/tx-too-large"
    hint = "split the transaction into smaller ones"


class TransactTimeoutError(TransactionError, TimeoutError):
    """``transact`` gave up waiting; ``data["outcome"]`` says ``"not-committed"`` or ``"unknown"``."""

    kind = "db.error/transact-timeout"


# --- Datalog queries (appended by fastdatomic.query.parser) --------------------

class QueryParseError(FastDatomicError, ValueError):
    """A Datalog query or rule set that does not parse or validate.

    The message names the offending clause printed as EDN; ``data`` holds ``clause``
    (that EDN) and, for ``:where`` clauses, ``index`` (0-based position in ``:where``).
    """

    kind = "query/parse"


__all__ += ["QueryParseError"]


# --- transactor, network and configuration --------------------------------------

class ConfigError(FastDatomicError, ValueError):
    """An invalid transactor configuration; the message names the key (and file and line)."""

    kind = "config/invalid"


class ProtocolError(FastDatomicError):
    """A peer/transactor frame that breaks the wire protocol (bad magic, wrong version,
    oversize or truncated frame, unexpected message); the connection is closed."""

    kind = "fastdatomic.error/protocol"


class AuthenticationError(FastDatomicError):
    """A peer could not prove it holds the storage's secret (ARCHITECTURE §4.10)."""

    kind = "fastdatomic.error/unauthorized"
    hint = "peers must read the lease from the same storage the transactor uses"


class TransactorUnavailableError(TransactionError):
    """No active transactor could be reached; ``data["outcome"]`` is ``"not-committed"``
    (the transaction was never sent) or ``"unknown"`` (it was sent, and the connection
    was lost before the answer): retry with the same ``tx_id`` or ask ``tx_outcome``."""

    kind = "db.error/transactor-unavailable"


class BusyError(TransactionError):
    """The transactor refused a transaction under back-pressure (not committed; retry later)."""

    kind = "db.error/busy"
    hint = "the memory index is past memory-index-max; retry after the indexing job"


class SyncTimeoutError(FastDatomicError, TimeoutError):
    """``sync_index`` gave up waiting for an index that covers the ``t`` it was given."""

    kind = "db.error/sync-timeout"
    hint = "an indexing job runs once novelty passes memory-index-threshold; request_index starts one"


__all__ += ["ConfigError", "ProtocolError", "AuthenticationError", "TransactorUnavailableError",
            "BusyError", "SyncTimeoutError"]
