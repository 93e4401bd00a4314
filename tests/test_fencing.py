"""ARCHITECTURE §4.2 at the database layer: every commit is fenced.

The log append and the root CAS happen in ONE storage transaction, conditioned on the
writer's epoch and on the root it last wrote. A stale writer commits nothing, and after
a refused commit it is poisoned (drops its state, refuses everything).
"""

from datetime import datetime, timezone

import pytest

from fastdatomic.db.catalog import DatabaseWriter, create_database, load_database
from fastdatomic.errors import FencedError
from fastdatomic.ids import t_to_tx


def _one_tx(w, value):
    db = w.db
    t = db.next_n
    return w.commit([(t_to_tx(t), db.entid(":db/doc"), value, True),
                     (t_to_tx(t), db.entid(":db/txInstant"), datetime.now(timezone.utc), True)],
                    t, t + 1)


def _log_ts(storage, db):
    return [t for t, _ in storage.log_range(db.db_id)]


def test_stale_epoch_commits_nothing(storage):
    create_database(storage, "f")
    assert storage.commit(records=[("lease/epoch", None, b"1")])
    w = DatabaseWriter(storage, "f", fence=lambda: [("lease/epoch", b"1")])
    _one_tx(w, "while active")
    before = _log_ts(storage, w.db)
    # Another transactor takes over: the epoch moves on.
    assert storage.commit(records=[("lease/epoch", b"1", b"2")])
    with pytest.raises(FencedError, match="refused"):
        _one_tx(w, "after takeover")
    assert _log_ts(storage, load_database(storage, "f")) == before   # nothing written
    assert w.poisoned and w.db is None                                 # state dropped
    with pytest.raises(FencedError):
        w.index()


def test_second_writer_on_same_root_is_refused_and_poisoned(storage):
    create_database(storage, "g")
    a = DatabaseWriter(storage, "g")
    b = DatabaseWriter(storage, "g")
    _one_tx(a, "a wins")
    with pytest.raises(FencedError):
        _one_tx(b, "b is stale")
    fresh = load_database(storage, "g")
    docs = [d.v for d in fresh.datoms("aevt", ":db/doc") if isinstance(d.v, str) and d.v.endswith(("wins", "stale"))]
    assert docs == ["a wins"]
    with pytest.raises(FencedError, match="fenced"):
        b.commit([], 10**6, 10**6 + 1)
    # The winner goes on.
    _one_tx(a, "a again")
    assert load_database(storage, "g").basis_t == a.db.basis_t


def test_indexing_job_is_fenced_too(storage):
    create_database(storage, "h")
    storage.commit(records=[("lease/epoch", None, b"7")])
    w = DatabaseWriter(storage, "h", fence=lambda: [("lease/epoch", b"7")])
    _one_tx(w, "x")
    root_before = storage.get_record("db/h")
    storage.commit(records=[("lease/epoch", b"7", b"8")])
    with pytest.raises(FencedError):
        w.index()
    assert storage.get_record("db/h") == root_before


def test_writer_keeps_tx_instant_monotonic_across_a_reload(storage):
    """A new writer (restart or takeover) starts from the last transaction's instant, so a
    clock that went back cannot make :db/txInstant go back."""
    from datetime import timedelta
    from fastdatomic.db import tx as txmod
    create_database(storage, "mono")
    w = DatabaseWriter(storage, "mono")
    future = datetime.now(timezone.utc) + timedelta(days=1)
    r = txmod.prepare(w.db, [{":db/id": "datomic.tx", ":db/txInstant": future}])
    w.commit_prepared([r])
    again = DatabaseWriter(storage, "mono")
    assert again.db.tx_instant == future
    r2 = txmod.prepare(again.db, [{":db/doc": "later"}])
    assert r2.tx_instant > future
