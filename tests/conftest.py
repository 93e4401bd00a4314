"""Shared fixtures: storages of every backend, and a raw-datom writer for the db layer."""

import itertools
import uuid

import pytest

from fastdatomic.storage import open_storage, forget_mem_storage
from fastdatomic.types import Keyword

_counter = itertools.count()


@pytest.fixture(params=["mem", "dev"])
def storage(request, tmp_path):
    """A fresh, empty storage of each backend."""
    if request.param == "mem":
        name = f"test-{uuid.uuid4().hex}"
        st = open_storage("mem", name=name)
        yield st
        forget_mem_storage(name)
    else:
        st = open_storage("dev", path=str(tmp_path / "lmdb"))
        yield st
        st.close()


class RawTx:
    """Writes raw datoms through a DatabaseWriter, allocating t and entity ids like Datomic:
    one counter shared by t and new entity numbers."""

    def __init__(self, writer):
        self.w = writer

    def new_eid(self, partition=4):
        from fastdatomic.ids import entity_id
        n = self._n
        self._n += 1
        return entity_id(partition, n)

    def tx(self, build):
        """``build(self)`` returns ``[(e, a, v, added)]`` with ``a`` as id or ident."""
        db = self.w.db
        t = db.next_n
        self._n = t + 1
        datoms = []
        for e, a, v, added in build(self):
            a_id = db.entid_strict(a) if not isinstance(a, int) else a
            datoms.append((e, a_id, v, added))
        from fastdatomic.ids import t_to_tx
        from datetime import datetime, timezone
        datoms.append((t_to_tx(t), db.entid_strict(":db/txInstant"), datetime.now(timezone.utc), True))
        return self.w.commit(datoms, t, self._n)

    def attr(self, ident, vtype, many=False, unique=None, index=False, extra=()):
        from fastdatomic.db.schema import VALUE_TYPE_IDENTS
        vt = {str(kw)[len(":db.type/"):]: eid for eid, (kw, _) in VALUE_TYPE_IDENTS.items()}[vtype]

        def build(r):
            e = r.new_eid(0)
            out = [(e, ":db/ident", Keyword(ident), True), (e, ":db/valueType", vt, True),
                   (e, ":db/cardinality", 37 if many else 36, True)]
            if unique:
                out.append((e, ":db/unique", 39 if unique == "identity" else 38, True))
            if index:
                out.append((e, ":db/index", True, True))
            out.extend((e, a, v, True) for a, v in extra)
            return out
        return self.tx(build)
