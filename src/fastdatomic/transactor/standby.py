"""The warm standby: tail every database's log while another transactor is active.

Datomic's standby replays the log only *after* it takes over, and transactions queue
behind that replay for seconds. Ours follows storage continuously (ARCHITECTURE §4.5):
each poll reads the root records and only the log records added since the last poll,
so at takeover the writer starts from a current value and reads just the last few
milliseconds of log (``catalog.advance``).

>>> from fastdatomic.storage import open_storage
>>> from fastdatomic.db import catalog
>>> st = open_storage("mem", name="doc-standby")
>>> _ = catalog.create_database(st, "a")
>>> w = WarmStandby(st); w.poll(); w.dbs["a"].basis_t
0
"""

from __future__ import annotations

import logging

from fastdatomic.db import catalog
from fastdatomic.db.segments import SegmentStore
from fastdatomic.errors import DatabaseNotFoundError
from fastdatomic.transactor.txids import TxIds

__all__ = ["WarmStandby"]

log = logging.getLogger("fastdatomic.transactor")


class WarmStandby:
    """Every database's latest value, kept current by ``poll()`` (call it every few ms)."""

    def __init__(self, storage, object_cache_max: int = 128 << 20, segment_storage=None):
        self.storage = storage
        # Segments may be read through a wrapper (the transactor times them).
        self.segs = SegmentStore(segment_storage or storage, object_cache_max)
        self.dbs: dict = {}            # name -> Database
        self.tx_ids: dict = {}         # name -> TxIds (novelty's transaction UUIDs)
        self._raw: dict = {}           # name -> root bytes seen at the last poll

    def poll(self):
        """Follow storage: new, changed and deleted databases."""
        seen = set()
        for key, raw in self.storage.list_records(catalog.ROOT_PREFIX):
            name = key[len(catalog.ROOT_PREFIX):]
            seen.add(name)
            if self._raw.get(name) == raw:
                continue                 # nothing committed since the last poll
            root = catalog.decode_root(name, raw)
            db, ids = self.dbs.get(name), self.tx_ids.get(name)
            try:
                if db is None or db.db_id != root["db_id"]:
                    db = catalog.load_database(self.storage, name, segs=self.segs)
                    ids = TxIds(db)
                else:
                    # One read of the new log records serves the value and the tx ids.
                    records = list(self.storage.log_range(db.db_id, db.basis_t + 1,
                                                          root["basis_t"] + 1))
                    db = catalog.advance(self.storage, db, root, records)
                    ids.follow(self.storage, db, records)
            except DatabaseNotFoundError:
                continue                 # deleted between the listing and the read
            self.dbs[name], self.tx_ids[name], self._raw[name] = db, ids, raw
        for name in list(self.dbs):
            if name not in seen:
                del self.dbs[name]
                self._raw.pop(name, None)
                self.tx_ids.pop(name, None)
