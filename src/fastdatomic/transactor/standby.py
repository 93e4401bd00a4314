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

import orjson

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
        self.records_applied = 0

    def poll(self):
        """Follow storage: new, changed and deleted databases."""
        seen = set()
        for key, raw in self.storage.list_records(catalog.ROOT_PREFIX):
            name = key[len(catalog.ROOT_PREFIX):]
            seen.add(name)
            if self._raw.get(name) == raw:
                continue                 # nothing committed since the last poll
            root = orjson.loads(raw)
            root["roots"] = [bytes.fromhex(r) if r else None for r in root["roots"]]
            db = self.dbs.get(name)
            try:
                if db is None or db.db_id != root["db_id"]:
                    db = catalog.load_database(self.storage, name, segs=self.segs)
                else:
                    before = db.basis_t
                    db = catalog.advance(self.storage, db, root)
                    if db.basis_t != before:
                        self.records_applied += 1
            except DatabaseNotFoundError:
                continue                 # deleted between the listing and the read
            self.dbs[name] = db
            self._raw[name] = raw
            ids = self.tx_ids.get(name)
            if ids is None or ids.db_id != db.db_id:
                self.tx_ids[name] = TxIds(db)
            else:
                ids.follow(self.storage, db)
        for name in list(self.dbs):
            if name not in seen:
                del self.dbs[name]
                self._raw.pop(name, None)
                self.tx_ids.pop(name, None)
