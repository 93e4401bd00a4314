"""Transaction reports and looking transactions up by their UUID (db layer).

A ``TxReport`` is what ``transact`` and ``db.with_`` return. ``lookup_tx`` finds the ``t``
of the committed transaction carrying a UUID: the basis of idempotent retries.
"""

from __future__ import annotations

from fastdatomic._core.codec import INDEX_AVET, INDEX_EAVT, decode_key, encode_id, encode_value
from fastdatomic._core.datom import Datom
from fastdatomic._core.logrec import decode_log
from fastdatomic.db.database import Database, prefix_end
from fastdatomic.db.schema import DB_TX_UUID
from fastdatomic.ids import t_to_tx, tx_to_t, is_tx

__all__ = ["TxReport", "lookup_tx", "report_for_existing"]


class TxReport:
    """The result of a transaction: ``db_before``, ``db_after``, ``tx_data``, ``tempids``.

    ``duplicate`` is true when this report describes an earlier transaction with the
    same transaction id (an idempotent retry); its ``tempids`` are then empty.
    """

    __slots__ = ("db_before", "db_after", "_tx_data", "tempids", "t", "tx_id", "duplicate")

    def __init__(self, db_before, db_after, tx_data, tempids, t, tx_id, duplicate=False):
        self.db_before = db_before
        self.db_after = db_after
        self._tx_data = tx_data      # Datoms, or raw (e, a, v, added) tuples made into Datoms on read
        self.tempids = tempids
        self.t = t
        self.tx_id = tx_id
        self.duplicate = duplicate

    @property
    def tx_data(self):
        """The datoms the transaction added or retracted (with its tx), as ``Datom``s."""
        data = self._tx_data
        if data and type(data[0]) is tuple:
            tx = t_to_tx(self.t)
            data = self._tx_data = [Datom(e, a, v, tx, added) for e, a, v, added in data]
        return data

    def resolve_tempid(self, tempid):
        """The entity id a tempid became (``None`` if it was not in this transaction).

        >>> TxReport(None, None, [], {"ann": 17592186045418}, 1000, None).resolve_tempid("ann")
        17592186045418
        """
        return self.tempids.get(tempid)

    def __getitem__(self, key):
        # Datomic's report is a map: r[":db-after"] and r["db_after"] both work.
        name = str(key).lstrip(":").replace("-", "_")
        if name not in _REPORT_KEYS:
            raise KeyError(key)
        return getattr(self, name)

    def __repr__(self):
        return f"<TxReport t={self.t} datoms={len(self.tx_data)} tempids={self.tempids}>"


_REPORT_KEYS = frozenset({"db_before", "db_after", "tx_data", "tempids", "t", "tx_id", "duplicate"})


def lookup_tx(db: Database, tx_id) -> int | None:
    """The t of the committed transaction carrying ``tx_id``, or None.

    >>> import uuid
    >>> lookup_tx(db, uuid.uuid4()) is None
    True
    """
    prefix = encode_id(DB_TX_UUID) + encode_value(db.schema.attrs[DB_TX_UUID].vtype, tx_id)
    d = next(iter(db._scan(INDEX_AVET, prefix, prefix_end(prefix))), None)
    return tx_to_t(d.e) if d is not None and is_tx(d.e) else None


def report_for_existing(storage, db, t, tx_id):
    rec = next(iter(storage.log_range(db.db_id, t, t + 1)))
    _, _, keys, _ = decode_log(rec[1])
    return TxReport(db.as_of(t - 1), db.as_of(t), [decode_key(INDEX_EAVT, k) for k in keys], {}, t,
                    tx_id, duplicate=True)
