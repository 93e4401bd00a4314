"""Which transaction UUIDs a database's novelty holds: the transactor's idempotency check.

Every peer transaction carries a UUID (ARCHITECTURE §4.7), so the transactor asks "was this
id committed already?" once per transaction. Scanning the AVET index merges every novelty
run; instead the ids of all transactions newer than the durable index live in a dict, and
older ones are one point lookup in the durable trees. A warm standby keeps its dict current
while it follows the log, so taking over does not rescan novelty.

>>> from fastdatomic.storage import open_storage
>>> from fastdatomic.db import catalog, tx
>>> import uuid
>>> st = open_storage("mem", name="doc-txids")
>>> _ = catalog.create_database(st, "a"); w = catalog.DatabaseWriter(st, "a")
>>> ids = TxIds(w.db); u = uuid.uuid4()
>>> _ = w.commit_prepared([tx.prepare(w.db, [{":db/doc": "x"}], tx_uuid=u)])
>>> ids.follow(st, w.db).lookup(u) == w.db.basis_t
True
"""

from __future__ import annotations

from fastdatomic._core.codec import INDEX_EAVT, decode_key
from fastdatomic._core.logrec import decode_log
from fastdatomic.db.memindex import MemoryIndex
from fastdatomic.db.report import lookup_tx
from fastdatomic.db.schema import DB_TX_UUID
from fastdatomic.ids import tx_to_t

__all__ = ["TxIds"]


class TxIds:
    """tx UUID -> t for the novelty of one database value, plus its durable trees.

    Keyed by ``uuid.int``: a UUID's own hash is a Python-level method, run four times per
    transaction here."""

    __slots__ = ("ids", "basis_t", "index_basis_t", "db_id", "durable")

    def __init__(self, db):
        novelty = db._view(roots=(None,) * len(db.roots))
        self.ids = {d.v.int: tx_to_t(d.e) for d in novelty.datoms("aevt", DB_TX_UUID)}
        self.db_id = db.db_id
        self.basis_t = db.basis_t
        self._trees(db)

    def _trees(self, db):
        self.index_basis_t = db.index_basis_t
        self.durable = db._view(memindex=MemoryIndex.empty())   # the trees alone

    def add(self, tx_id, t):
        """Record a transaction committed at ``t``."""
        self.ids[tx_id.int] = t
        if t > self.basis_t:
            self.basis_t = t

    def follow(self, storage, db, records=None) -> "TxIds":
        """Bring these ids up to ``db`` (a later value of the same database): the log
        records since our basis (``records`` if the caller read them already); drop the ids
        a newer durable index now holds."""
        if db.basis_t > self.basis_t:
            if records is None:
                records = storage.log_range(db.db_id, self.basis_t + 1, db.basis_t + 1)
            for t, rec in records:
                if t <= self.basis_t:
                    continue
                _, _, keys, flags = decode_log(rec)
                for k in keys:
                    d = decode_key(INDEX_EAVT, k)
                    if d.a == DB_TX_UUID and d.added:
                        self.ids[d.v.int] = t
            self.basis_t = db.basis_t
        if db.index_basis_t != self.index_basis_t:
            self.adopt_index(db)
        return self

    def adopt_index(self, db):
        """``db`` has a newer durable index: ids up to its basis are in the trees now."""
        ib = db.index_basis_t
        self.ids = {u: t for u, t in self.ids.items() if t > ib}
        self._trees(db)

    def lookup(self, tx_id, durable=True) -> int | None:
        """The t of the committed transaction with ``tx_id``, or ``None``; ``durable=False``
        looks among the novelty's transactions only (for an id that cannot be older)."""
        t = self.ids.get(tx_id.int)
        return t if t is not None or not durable else lookup_tx(self.durable, tx_id)
