"""The storage SPI: shared semantics over both backends, plus LMDB growth, durability, errors."""

from __future__ import annotations

import doctest
import hashlib
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from fastdatomic.errors import (
    BlobConflictError, StorageArgumentError, StorageConfigError, StorageCorruptError,
    StorageError, StorageFullError, StorageUnavailableError,
)
from fastdatomic.storage import T_LIMIT, Storage, forget_mem_storage, open_storage

SRC = str(Path(__file__).resolve().parents[1] / "src")
KiB, MiB = 1 << 10, 1 << 20

DB_A = "0" * 31 + "1"
DB_B = "0" * 31 + "2"
DB_C = "f" * 32


def new_db() -> str:
    return uuid.uuid4().hex


@pytest.fixture(params=["mem", "dev"])
def store(request, tmp_path):
    if request.param == "mem":
        name = f"test-{uuid.uuid4().hex}"
        s = open_storage("mem", name=name)
        yield s
        s.close()
        forget_mem_storage(name)
    else:
        # The smallest map: every shared-semantics test also exercises map growth.
        s = open_storage("dev", path=tmp_path / "env", map_size=64 * KiB)
        yield s
        s.close()


@pytest.fixture
def lmdb_path(tmp_path):
    return str(tmp_path / "env")


def counts(s: Storage) -> tuple:
    d = s.describe()
    return d["blobs"], d["log_records"], d["records"]


# --- blobs -------------------------------------------------------------------------

def test_blob_roundtrip_and_get_many(store):
    items = [(bytes([i]) * 16, os.urandom(100 + i)) for i in range(20)]
    assert store.put_blobs(items) is None
    for k, v in items:
        got = store.get(k)
        assert got == v and type(got) is bytes
    keys = [items[3][0], b"missing-key", items[0][0], items[19][0]]
    assert store.get_many(keys) == [items[3][1], None, items[0][1], items[19][1]]
    assert store.get_many([]) == []
    assert store.get(b"x" * 64) is None


def test_put_blobs_accepts_generators_and_copies_buffers(store):
    buf = bytearray(b"original")
    store.put_blobs((k, v) for k, v in [(b"k1", buf), (memoryview(b"k2"), memoryview(b"v2"))])
    buf[:] = b"MUTATED!"
    assert store.get(b"k1") == b"original"
    assert store.get(b"k2") == b"v2"
    got = store.get(b"k1")
    assert type(got) is bytes


def test_put_blobs_same_bytes_is_noop_different_bytes_conflict(store):
    store.put_blobs([(b"seg", b"leaf-1")])
    before = counts(store)
    store.put_blobs([(b"seg", b"leaf-1")])
    assert store.commit(blobs=[(b"seg", b"leaf-1")]) is True
    assert counts(store) == before
    with pytest.raises(BlobConflictError) as ei:
        store.put_blobs([(b"seg", b"leaf-2")])
    assert ei.value.kind == "storage/blob-conflict"
    assert store.get(b"seg") == b"leaf-1"
    # in a commit, the conflict aborts the whole commit
    with pytest.raises(BlobConflictError):
        store.commit(blobs=[(b"other", b"x"), (b"seg", b"leaf-2")],
                     log=[(DB_A, 1, b"tx")], records=[("root", None, b"r")])
    assert store.get(b"other") is None
    assert store.log_last_t(DB_A) is None
    assert store.get_record("root") is None


def test_delete_blobs(store):
    store.put_blobs([(b"a", b"1"), (b"b", b"2")])
    store.delete_blobs([b"a", b"never-there"])
    assert store.get_many([b"a", b"b"]) == [None, b"2"]
    store.delete_blobs([])
    # a deleted key may be written again (e.g. with new content after GC)
    store.put_blobs([(b"a", b"new")])
    assert store.get(b"a") == b"new"


@pytest.mark.parametrize("bad", [b"", b"x" * 65, "str-key", None, 5])
def test_blob_key_validation(store, bad):
    with pytest.raises(StorageArgumentError):
        store.get(bad)
    with pytest.raises(StorageArgumentError):
        store.put_blobs([(bad, b"v")])
    with pytest.raises(StorageArgumentError):
        store.commit(blobs=[(bad, b"v")], records=[("r", None, b"1")])
    assert store.get_record("r") is None


def test_blob_value_validation(store):
    with pytest.raises(StorageArgumentError):
        store.put_blobs([(b"k", "text")])
    with pytest.raises(StorageArgumentError):
        store.put_blobs([(b"k",)])


# --- log ---------------------------------------------------------------------------

def _fill_logs(store):
    data = {db: {} for db in (DB_A, DB_B, DB_C)}
    plan = [(DB_B, 5), (DB_A, 3), (DB_C, 0), (DB_A, 1), (DB_B, 0), (DB_A, 10), (DB_A, 2),
            (DB_B, T_LIMIT - 1), (DB_A, T_LIMIT - 1), (DB_C, 7), (DB_A, 0)]
    for db, t in plan:   # inserted out of order, interleaved across databases
        v = f"{db[-1]}:{t}".encode()
        assert store.commit(log=[(db, t, v)])
        data[db][t] = v
    return data


def test_log_range_bounds_ordering_and_isolation(store):
    data = _fill_logs(store)
    for db, recs in data.items():
        expect = sorted(recs.items())
        assert list(store.log_range(db)) == expect
        for lo in (None, 0, 1, 2, 5, 11, T_LIMIT - 1):
            for hi in (None, 0, 1, 3, 10, 11, T_LIMIT - 1, T_LIMIT):
                got = list(store.log_range(db, lo, hi))
                want = [(t, v) for t, v in expect
                        if (lo is None or t >= lo) and (hi is None or t < hi)]
                assert got == want, (db, lo, hi)
    # never another database's records, also at the key-space boundaries
    assert list(store.log_range(DB_A, T_LIMIT - 1)) == [(T_LIMIT - 1, data[DB_A][T_LIMIT - 1])]
    assert [t for t, _ in store.log_range(DB_B)] == [0, 5, T_LIMIT - 1]
    assert list(store.log_range(new_db())) == []
    assert list(store.log_range(DB_A, 5, 5)) == []
    assert list(store.log_range(DB_A, 9, 3)) == []


def test_log_last_t(store):
    assert store.log_last_t(DB_A) is None
    data = _fill_logs(store)
    for db, recs in data.items():
        assert store.log_last_t(db) == max(recs)
    assert store.log_last_t(new_db()) is None
    assert store.log_last_t("0" * 32) is None      # before every stored prefix
    x = "7" * 32
    store.commit(log=[(x, 4, b"x")])
    assert store.log_last_t(x) == 4


def test_log_range_large_log_in_chunks_holds_nothing_between_items(store):
    db = new_db()
    n = 2600          # > 2 chunks
    for start in range(0, n, 500):
        assert store.commit(log=[(db, t, b"r%d" % t) for t in range(start, min(n, start + 500))])
    it = store.log_range(db, 10)
    first = next(it)
    assert first == (10, b"r10")
    # writes (including map growth on LMDB) while the iterator is suspended
    store.put_blobs([(os.urandom(16), os.urandom(64 * KiB)) for _ in range(8)])
    store.commit(log=[(db, n, b"late")])
    rest = list(it)
    ts = [first[0]] + [t for t, _ in rest]
    assert ts[: n - 10] == list(range(10, n))
    assert all(v == b"r%d" % t for t, v in rest[: n - 11])
    assert list(store.log_range(db, 1000, 1003)) == [(t, b"r%d" % t) for t in (1000, 1001, 1002)]


def test_delete_log(store):
    data = _fill_logs(store)
    store.delete_log(DB_A)
    assert list(store.log_range(DB_A)) == []
    assert store.log_last_t(DB_A) is None
    assert list(store.log_range(DB_B)) == sorted(data[DB_B].items())
    assert list(store.log_range(DB_C)) == sorted(data[DB_C].items())
    store.delete_log(new_db())


@pytest.mark.parametrize("db_id", ["ABCDEF" + "0" * 26, "0" * 31, "0" * 33, "g" * 32, None, b"0" * 32])
def test_log_db_id_validation(store, db_id):
    with pytest.raises(StorageArgumentError):
        store.commit(log=[(db_id, 1, b"x")])
    with pytest.raises(StorageArgumentError):
        store.log_range(db_id)           # checked at the call, not at the first next()
    with pytest.raises(StorageArgumentError):
        store.log_last_t(db_id)


@pytest.mark.parametrize("t", [-1, T_LIMIT, True, 1.0, "1", None])
def test_log_t_validation(store, t):
    with pytest.raises(StorageArgumentError):
        store.commit(log=[(DB_A, t, b"x")])
    assert store.log_last_t(DB_A) is None


# --- records and commit --------------------------------------------------------------

def test_record_cas_semantics(store):
    assert store.get_record("root") is None
    assert store.commit(records=[("root", None, b"v1")]) is True          # create: must not exist
    assert store.commit(records=[("root", None, b"again")]) is False      # exists now
    assert store.commit(records=[("root", b"wrong", b"v2")]) is False
    assert store.get_record("root") == b"v1"
    assert store.commit(records=[("root", b"v1", b"v2")]) is True
    assert store.get_record("root") == b"v2"
    assert store.commit(records=[("root", b"v2", None)]) is True          # delete
    assert store.get_record("root") is None
    assert store.commit(records=[("root", b"v2", None)]) is False         # already gone
    assert store.commit(records=[("absent", None, None)]) is True         # no-op delete
    assert store.get_record("absent") is None
    # the empty value exists and differs from "absent"
    assert store.commit(records=[("empty", None, b"")]) is True
    assert store.get_record("empty") == b""
    assert store.commit(records=[("empty", None, b"x")]) is False
    assert store.commit(records=[("empty", b"", b"x")]) is True


def test_list_records(store):
    names = ["root/" + new_db() for _ in range(5)] + ["lease", "root", "rooted", "catalog/ü", "root/é"]
    store.commit(records=[(n, None, n.encode()) for n in names])
    got = store.list_records("root/")
    want = sorted((n, n.encode()) for n in names if n.startswith("root/"))
    assert got == want
    assert [n for n, _ in store.list_records("")] == sorted(names, key=lambda n: n.encode())
    assert store.list_records("zzz") == []
    assert store.list_records("catalog/") == [("catalog/ü", "catalog/ü".encode())]
    with pytest.raises(StorageArgumentError):
        store.list_records(b"root/")


@pytest.mark.parametrize("bad", ["", None, b"lease", "x" * 300])
def test_record_name_validation(store, bad):
    with pytest.raises(StorageArgumentError):
        store.commit(records=[(bad, None, b"v")])
    with pytest.raises(StorageArgumentError):
        store.commit(checks=[(bad, None)])


def _seed(store):
    assert store.commit(blobs=[(b"seg-0", b"leaf-0")], log=[(DB_A, 1, b"tx1")],
                        records=[("lease", None, b"epoch-1"), ("root/a", None, b"t1")])
    return counts(store)


FAILING_COMMITS = {
    "stale-check": dict(checks=[("lease", b"epoch-0")], records=[("root/a", b"t1", b"t2")]),
    "check-absent": dict(checks=[("nope", b"x")], records=[("root/a", b"t1", b"t2")]),
    "check-expected-none": dict(checks=[("lease", None)], records=[("root/a", b"t1", b"t2")]),
    "stale-cas": dict(checks=[("lease", b"epoch-1")], records=[("root/a", b"t0", b"t2")]),
    "cas-must-not-exist": dict(records=[("root/new", None, b"n"), ("root/a", None, b"t2")]),
    "second-cas-fails": dict(records=[("root/a", b"t1", b"t2"), ("root/b", b"x", b"y")]),
    "log-exists": dict(log=[(DB_A, 2, b"tx2"), (DB_A, 1, b"tx1-again")],
                       records=[("root/a", b"t1", b"t2")]),
}


@pytest.mark.parametrize("why", sorted(FAILING_COMMITS))
def test_failed_commit_writes_nothing(store, why):
    before = _seed(store)
    kwargs = dict(blobs=[(b"seg-1", b"leaf-1"), (b"seg-2", b"leaf-2")],
                  log=[(DB_A, 2, b"tx2"), (DB_B, 1, b"b1")],
                  records=[("root/a", b"t1", b"t2"), ("root/b", None, b"b")])
    kwargs.update(FAILING_COMMITS[why])
    assert store.commit(**kwargs) is False
    assert counts(store) == before
    assert store.get_many([b"seg-1", b"seg-2"]) == [None, None]
    assert store.get(b"seg-0") == b"leaf-0"
    assert list(store.log_range(DB_A)) == [(1, b"tx1")]
    assert store.log_last_t(DB_B) is None
    assert store.list_records("") == [("lease", b"epoch-1"), ("root/a", b"t1")]
    # and the same commit with correct expectations goes through whole
    ok = dict(blobs=[(b"seg-1", b"leaf-1")], log=[(DB_A, 2, b"tx2"), (DB_B, 1, b"b1")],
              records=[("root/a", b"t1", b"t2"), ("root/b", None, b"b")],
              checks=[("lease", b"epoch-1")])
    assert store.commit(**ok) is True
    assert store.get(b"seg-1") == b"leaf-1"
    assert store.log_last_t(DB_A) == 2 and store.log_last_t(DB_B) == 1
    assert store.list_records("root/") == [("root/a", b"t2"), ("root/b", b"b")]


def test_duplicate_log_record_is_a_conflict(store):
    assert store.commit(log=[(DB_A, 5, b"first")])
    assert store.commit(log=[(DB_A, 5, b"second")], blobs=[(b"k", b"v")],
                        records=[("r", None, b"1")]) is False
    assert list(store.log_range(DB_A)) == [(5, b"first")]
    assert store.get(b"k") is None and store.get_record("r") is None
    # same t in another database is no conflict
    assert store.commit(log=[(DB_B, 5, b"other-db")])


def test_fenced_commit_on_lease_epoch(store):
    """A deposed writer (stale epoch) cannot append the log or move the root (invariant 2)."""
    assert store.commit(records=[("lease", None, b"epoch=1"), ("root/" + DB_A, None, b"t=0")])
    assert store.commit(records=[("lease", b"epoch=1", b"epoch=2")])   # a standby took over
    stale = store.commit(log=[(DB_A, 1, b"tx")], records=[("root/" + DB_A, b"t=0", b"t=1")],
                         checks=[("lease", b"epoch=1")])
    assert stale is False
    assert store.log_last_t(DB_A) is None and store.get_record("root/" + DB_A) == b"t=0"
    assert store.commit(log=[(DB_A, 1, b"tx")], records=[("root/" + DB_A, b"t=0", b"t=1")],
                        checks=[("lease", b"epoch=2")])


def test_commit_rejects_duplicates_within_one_commit(store):
    with pytest.raises(StorageArgumentError):
        store.commit(records=[("r", None, b"1"), ("r", b"1", b"2")])
    with pytest.raises(StorageArgumentError):
        store.commit(log=[(DB_A, 1, b"a"), (DB_A, 1, b"b")])
    with pytest.raises(StorageArgumentError):
        store.commit(records=[("r", None)])
    with pytest.raises(StorageArgumentError):
        store.commit(checks=[("r", None, b"x")])
    assert counts(store) == (0, 0, 0)


def test_empty_commit_and_values_are_copies(store):
    assert store.commit() is True
    val = bytearray(b"root-v1")
    assert store.commit(records=[("root", None, val)], log=[(DB_A, 1, val)])
    val[:] = b"XXXXXXX"
    assert store.get_record("root") == b"root-v1"
    assert list(store.log_range(DB_A)) == [(1, b"root-v1")]
    # a check compares against the stored bytes, also from a bytearray
    assert store.commit(checks=[("root", bytearray(b"root-v1"))]) is True


def test_concurrent_committers_on_same_root_exactly_one_wins(store):
    assert store.commit(records=[("root", None, b"t0"), ("lease", None, b"e1")])
    n = 12
    barrier = threading.Barrier(n)
    results = [None] * n

    def attempt(i):
        barrier.wait()
        results[i] = store.commit(blobs=[(b"seg-%d" % i, b"x" * 2000)],
                                  log=[(DB_A, 1, b"tx-%d" % i)],
                                  records=[("root", b"t0", b"t1-by-%d" % i)],
                                  checks=[("lease", b"e1")])
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert results.count(True) == 1 and results.count(False) == n - 1
    w = results.index(True)
    assert store.get_record("root") == b"t1-by-%d" % w
    assert list(store.log_range(DB_A)) == [(1, b"tx-%d" % w)]
    assert [store.get(b"seg-%d" % i) is not None for i in range(n)] == [i == w for i in range(n)]


def test_concurrent_cas_chain_never_loses_or_forks(store):
    """Writers race read-root / commit(t+1); the log ends contiguous and equal to the root."""
    assert store.commit(records=[("root", None, b"0")])
    wins = []

    def writer(wid):
        mine = 0
        for _ in range(60):
            for _attempt in range(10_000):      # bounded: a regression fails, not hangs
                cur = store.get_record("root")
                t = int(cur) + 1
                if store.commit(log=[(DB_A, t, b"w%d" % wid)],
                                records=[("root", cur, b"%d" % t)]):
                    mine += 1
                    break
        wins.append(mine)
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    total = sum(wins)
    assert total == 240
    assert int(store.get_record("root")) == total == store.log_last_t(DB_A)
    assert [t for t, _ in store.log_range(DB_A)] == list(range(1, total + 1))


def test_refused_commits_return_promptly_under_read_load(store):
    """A fenced-out commit must answer fast even while threads hammer reads (py-lmdb 3.0's
    write-txn abort() can wait seconds for busy readers; refused commits must not abort)."""
    assert store.commit(records=[("lease", None, b"e2"), ("root", None, b"t0")],
                        blobs=[(b"seg", b"leaf")])
    stop = threading.Event()
    errors = []

    def reader():
        try:
            while not stop.is_set():
                store.get(b"seg")
                store.get_record("root")
        except BaseException as e:   # pragma: no cover
            errors.append(e)
    threads = [threading.Thread(target=reader) for _ in range(4)]
    for th in threads:
        th.start()
    watchdog = threading.Timer(15, stop.set)    # a regression fails, it does not hang
    watchdog.start()
    try:
        slowest = 0.0
        for i in range(20):
            t0 = time.perf_counter()
            assert store.commit(log=[(DB_A, i + 1, b"tx")], records=[("root", b"t0", b"t1")],
                                checks=[("lease", b"e1")]) is False
            with pytest.raises(BlobConflictError):      # the abort path, drained
                store.commit(blobs=[(b"seg", b"other")])
            slowest = max(slowest, time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert store.commit(records=[("root", b"t0", b"t1")], checks=[("lease", b"e2")])
        slowest = max(slowest, time.perf_counter() - t0)
    finally:
        stop.set()
        watchdog.cancel()
        for th in threads:
            th.join(30)
    assert not errors
    assert slowest < 2.0, f"a commit took {slowest:.2f}s under read load"
    assert store.log_last_t(DB_A) is None and store.get(b"seg") == b"leaf"


def test_closed_handle_raises(store):
    store.put_blobs([(b"k", b"v")])
    store.close()
    store.close()
    for call in (lambda: store.get(b"k"), lambda: store.commit(), lambda: store.get_record("r"),
                 lambda: store.log_range(DB_A), lambda: store.describe()):
        with pytest.raises(StorageUnavailableError):
            call()


def test_context_manager_and_describe(store):
    d = store.describe()
    assert d["backend"] in ("mem", "lmdb") and d["protocol"] in ("mem", "dev")
    assert {"blobs", "log_records", "records"} <= set(d)
    with store as s:
        assert s is store
    with pytest.raises(StorageUnavailableError):
        store.get(b"k")


# --- mem specifics -----------------------------------------------------------------

def test_mem_registry_shares_named_stores():
    name = f"reg-{uuid.uuid4().hex}"
    a = open_storage("mem", name=name)
    b = open_storage("mem", name=name)
    a.commit(records=[("r", None, b"1")])
    assert b.get_record("r") == b"1"
    a.close()
    assert b.get_record("r") == b"1"                  # closing one handle keeps the store
    assert open_storage("mem", name=name).get_record("r") == b"1"
    assert open_storage("mem").get_record("r") is None  # unnamed = private
    forget_mem_storage(name)
    with pytest.raises(StorageUnavailableError):
        b.get_record("r")
    assert open_storage("mem", name=name).get_record("r") is None
    forget_mem_storage(name)
    forget_mem_storage("never-existed")


def test_mem_rejects_unknown_options():
    with pytest.raises(StorageConfigError, match="path"):
        open_storage("mem", name="x", path="/tmp/x")


# --- LMDB specifics ----------------------------------------------------------------

def test_lmdb_env_is_durable_by_configuration(lmdb_path):
    with open_storage("dev", path=lmdb_path) as s:
        flags = s._e.env.flags()
        assert flags["sync"] and flags["metasync"] and flags["lock"] and flags["subdir"]
        assert not flags["writemap"] and not flags["map_async"] and not flags["readahead"]
        assert sorted(s._e.env.dbs()) == [b"blobs", b"log", b"records"]


def test_lmdb_log_key_layout(lmdb_path):
    """Log key = 16 bytes of the db uuid + 8-byte big-endian t (peers scan it as a range)."""
    db = new_db()
    with open_storage("dev", path=lmdb_path) as s:
        s.commit(log=[(db, 258, b"x")])
        with s._e.env.begin() as txn:
            keys = [k for k, _ in txn.cursor(db=s._e.log)]
    assert keys == [bytes.fromhex(db) + (258).to_bytes(8, "big")]


def test_group_commits_read_back_at_every_bound(store):
    """Group commits (several records of one database in one commit, packed under one key
    on LMDB) read back exactly as records committed one by one, at any range bounds."""
    db = new_db()
    want = {}
    plan = [[1], [2, 4, 7], [8], [10, 11, 15, 16, 20], [21, 22]]
    for ts in plan:
        recs = [(db, t, b"r%d" % t) for t in reversed(ts)]     # any order within a commit
        assert store.commit(log=recs + [(DB_C, t, b"other") for t in ts[:1]])
        want.update((t, b"r%d" % t) for t in ts)
    expect = sorted(want.items())
    assert list(store.log_range(db)) == expect
    assert store.log_last_t(db) == 22
    for lo in range(0, 24):
        for hi in range(lo, 25):
            assert list(store.log_range(db, lo, hi)) == [(t, v) for t, v in expect if lo <= t < hi], (lo, hi)
    # a t inside a group's span that is not one of its records: nothing, no neighbour
    assert list(store.log_range(db, 5, 7)) == []


def test_lmdb_group_commit_is_one_key_and_reads_through_chunks(lmdb_path, monkeypatch):
    from fastdatomic.storage import lmdb_store
    db = new_db()
    prefix = bytes.fromhex(db)
    with open_storage("dev", path=lmdb_path) as s:
        assert s.commit(log=[(db, 1, b"one")])
        assert s.commit(log=[(db, t, b"g%d" % t) for t in (3, 5, 9)])
        with s._e.env.begin() as txn:
            keys = [k for k, _ in txn.cursor(db=s._e.log)]
        # single record: 16 + last t (the layout of before); group: 16 + last t + first t
        assert keys == [prefix + (1).to_bytes(8, "big"),
                        prefix + (9).to_bytes(8, "big") + (3).to_bytes(8, "big")]
        assert s.describe()["log_records"] == 2            # stored keys
        # chunked reads never split or repeat a group
        monkeypatch.setattr(lmdb_store, "_LOG_CHUNK_RECORDS", 2)
        for t0 in range(0, 40, 4):
            assert s.commit(log=[(db, 100 + t0 + i, b"c") for i in range(4)])
        got = [t for t, _ in s.log_range(db, 4)]
        assert got == [5, 9] + list(range(100, 140))
        # a group past the size bound is stored under several keys, read back whole
        monkeypatch.setattr(lmdb_store, "_BATCH_BYTES", 10)
        big = [(db, 200 + i, bytes([i]) * 6) for i in range(7)]
        assert s.commit(log=big)
        assert list(s.log_range(db, 200)) == [(t, v) for _, t, v in big]
        with s._e.env.begin() as txn:
            n = sum(1 for k, _ in txn.cursor(db=s._e.log) if int.from_bytes(k[16:24], "big") >= 200)
        assert n == 4


def test_lmdb_log_commit_overlapping_a_stored_group_is_a_conflict(lmdb_path):
    """Log records are immutable: a commit whose t range overlaps a stored group's is
    refused whole, even for a t the group does not hold (its key covers the span)."""
    db = new_db()
    with open_storage("dev", path=lmdb_path) as s:
        assert s.commit(log=[(db, t, b"g") for t in (10, 12, 14)])
        for ts in ([12], [11], [9, 10], [14, 15], [8, 20], [13]):
            assert s.commit(log=[(db, t, b"x") for t in ts], records=[("r", None, b"1")]) is False, ts
        assert s.get_record("r") is None
        # outside the span, before or after it: fine, and read in t order
        assert s.commit(log=[(db, 5, b"a"), (db, 7, b"b")])
        assert s.commit(log=[(db, 15, b"c")])
        assert [t for t, _ in s.log_range(db)] == [5, 7, 10, 12, 14, 15]


def test_lmdb_corrupt_group_value_names_the_key(lmdb_path):
    db = new_db()
    with open_storage("dev", path=lmdb_path) as s:
        assert s.commit(log=[(db, 1, b"a"), (db, 2, b"b")])
        key = bytes.fromhex(db) + (2).to_bytes(8, "big") + (1).to_bytes(8, "big")
        with s._e.env.begin(write=True) as txn:
            good = txn.get(key, db=s._e.log)
            txn.put(key, good[:-1], db=s._e.log)
        with pytest.raises(StorageCorruptError, match=f"log key {key.hex()[:16]}.*truncated"):
            list(s.log_range(db))
        with s._e.env.begin(write=True) as txn:
            txn.put(key, good + b"zz", db=s._e.log)
        with pytest.raises(StorageCorruptError, match="2 bytes after its last record"):
            list(s.log_range(db))


def test_lmdb_first_packed_commit_records_the_storage_format(lmdb_path):
    """Storage whose log holds packed group commits says format 2, in the same LMDB
    transaction as the first packed key: an older reader must not misread them."""
    from fastdatomic.storage.lmdb_store import STORAGE_FORMAT
    db = new_db()
    with open_storage("dev", path=lmdb_path) as s:
        assert s.commit(log=[(db, 1, b"one")])
        assert s.get_record("storage-format") is None        # single records: format 1 still
        assert s.commit(log=[(db, 2, b"a"), (db, 3, b"b")], records=[("r", None, b"x")])
        assert s.get_record("storage-format") == str(STORAGE_FORMAT).encode() == b"2"
    # a refused packed commit writes nothing, the format record included
    other = lmdb_path + "-refused"
    with open_storage("dev", path=other) as s:
        assert s.commit(log=[(db, 5, b"a"), (db, 6, b"b")], records=[("r", b"no", b"x")]) is False
        assert s.get_record("storage-format") is None


def test_lmdb_refuses_storage_of_a_newer_format(lmdb_path):
    with open_storage("dev", path=lmdb_path) as s:
        assert s.commit(records=[("storage-format", None, b"3")])
    # closed: the next open reads the environment anew, as a fresh process would
    with pytest.raises(StorageUnavailableError, match=r"storage format 3; this fastdatomic "
                                                      r"reads formats up to 2") as e:
        open_storage("dev", path=lmdb_path)
    assert e.value.data["format"] == 3 and "upgrade fastdatomic" in str(e.value.hint)


def test_lmdb_log_key_of_an_unknown_shape_is_refused_as_newer(lmdb_path):
    db = new_db()
    with open_storage("dev", path=lmdb_path) as s:
        assert s.commit(log=[(db, 1, b"a")])
        with s._e.env.begin(write=True) as txn:          # as a future format might write
            txn.put(bytes.fromhex(db) + (2).to_bytes(8, "big") + b"\x01" * 4, b"?", db=s._e.log)
        with pytest.raises(StorageUnavailableError, match="28 bytes.*newer storage format"):
            list(s.log_range(db))


def test_lmdb_garbled_storage_format_is_corruption(lmdb_path):
    with open_storage("dev", path=lmdb_path) as s:
        assert s.commit(records=[("storage-format", None, b"two")])
    with pytest.raises(StorageCorruptError, match="storage-format is b'two', not a format number"):
        open_storage("dev", path=lmdb_path)


def test_lmdb_map_grows_for_commits_and_put_blobs(lmdb_path):
    s = open_storage("dev", path=lmdb_path, map_size=64 * KiB)
    start = s.describe()["map_size"]
    blobs = {}
    for i in range(16):                               # 16 x 256 KiB through commit
        k, v = b"c%03d" % i, os.urandom(256 * KiB)
        assert s.commit(blobs=[(k, v)], log=[(DB_A, i, b"tx")])
        blobs[k] = v
    big = [(b"p%03d" % i, os.urandom(64 * KiB)) for i in range(32)]    # 2 MiB in one call
    s.put_blobs(big)
    blobs.update(big)
    huge = [(b"h%03d" % i, os.urandom(512 * KiB)) for i in range(6)]   # 3 MiB in ONE txn
    assert s.commit(blobs=huge, records=[("root", None, b"r")])
    blobs.update(huge)
    d = s.describe()
    assert d["map_size"] >= 7 * MiB > start
    assert d["map_grows"] >= 5
    assert d["blobs"] == len(blobs)
    for k, v in blobs.items():
        assert s.get(k) == v
    s.close()
    with open_storage("dev", path=lmdb_path, map_size=64 * KiB) as s2:   # reopen: still there
        assert s2.get(b"h005") == blobs[b"h005"] and s2.log_last_t(DB_A) == 15


def test_lmdb_map_size_max_gives_storage_full_naming_the_setting(lmdb_path):
    s = open_storage("dev", path=lmdb_path, map_size=64 * KiB, map_size_max=1 * MiB)
    assert s.commit(records=[("root", None, b"r0")], log=[(DB_A, 1, b"tx1")])
    before = counts(s)
    with pytest.raises(StorageFullError) as ei:
        s.commit(blobs=[(b"big%d" % i, os.urandom(256 * KiB)) for i in range(8)],
                 log=[(DB_A, 2, b"tx2")], records=[("root", b"r0", b"r1")])
    err = ei.value
    assert err.kind == "storage/full"
    assert "map_size_max" in str(err) and "map_size_max" in err.hint
    assert lmdb_path in str(err)
    assert counts(s) == before                      # nothing of the failed commit
    assert s.get_record("root") == b"r0" and s.log_last_t(DB_A) == 1
    with pytest.raises(StorageFullError, match="map_size_max"):
        s.put_blobs([(b"p%d" % i, os.urandom(128 * KiB)) for i in range(16)])
    assert s.commit(records=[("root", b"r0", b"r1")])        # still usable
    assert s.describe()["map_size"] <= 1 * MiB
    s.close()


def test_lmdb_reads_keep_working_while_the_map_grows(lmdb_path):
    s = open_storage("dev", path=lmdb_path, map_size=64 * KiB)
    s.commit(blobs=[(b"fixed", b"F" * 1000)], records=[("root", None, b"0")])
    stop = threading.Event()
    errors, reads = [], [0]

    def reader():
        try:
            while not stop.is_set():
                assert s.get(b"fixed") == b"F" * 1000
                r = int(s.get_record("root"))
                last = s.log_last_t(DB_A)
                assert last is None or last >= r
                reads[0] += 1
        except BaseException as e:   # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=reader) for _ in range(3)]
    for th in threads:
        th.start()
    try:
        prev = b"0"
        for t in range(1, 41):
            assert s.commit(blobs=[(b"b%d" % t, os.urandom(100 * KiB))], log=[(DB_A, t, b"x")],
                            records=[("root", prev, b"%d" % t)])
            prev = b"%d" % t
    finally:
        stop.set()
        for th in threads:
            th.join(30)
    assert not errors, errors
    assert reads[0] > 0 and s.describe()["map_grows"] >= 4
    s.close()


def test_lmdb_handles_share_one_environment(lmdb_path):
    a = open_storage("dev", path=lmdb_path)
    b = open_storage("dev", path=Path(lmdb_path) / ".." / "env")   # same directory, other spelling
    assert a._e is b._e
    a.commit(records=[("r", None, b"1")])
    a.close()
    assert b.get_record("r") == b"1"
    b.close()
    with open_storage("dev", path=lmdb_path) as c:
        assert c.get_record("r") == b"1"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_lmdb_handle_inherited_through_fork_refuses_to_work(lmdb_path):
    """LMDB must not be used across fork(): the child gets a clear error, the parent is unharmed."""
    s = open_storage("dev", path=lmdb_path)
    s.commit(records=[("r", None, b"1")])
    pid = os.fork()
    if pid == 0:                                     # pragma: no cover - child
        code = 3
        try:
            s.get_record("r")
            code = 1
        except StorageUnavailableError as e:
            code = 0 if "fork" in str(e) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert s.get_record("r") == b"1"
    assert s.commit(records=[("r", b"1", b"2")])
    s.close()


def _child_env():
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


ACK_THEN_SLEEP = r"""
import sys, time
from fastdatomic.storage import open_storage
s = open_storage("dev", path=sys.argv[1], map_size=64 * 1024)
db = sys.argv[2]
ok = s.commit(blobs=[(b"seg-1", b"L" * 300_000)], log=[(db, 1, b"tx-1")],
              records=[("root/" + db, None, b"t=1")])
print("acked" if ok else "refused", flush=True)
time.sleep(60)
"""


def test_lmdb_commit_acked_then_sigkill_survives(lmdb_path):
    db = new_db()
    p = subprocess.Popen([sys.executable, "-c", ACK_THEN_SLEEP, lmdb_path, db],
                         stdout=subprocess.PIPE, env=_child_env(), text=True)
    try:
        assert _readline(p, 30) == "acked"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    with open_storage("dev", path=lmdb_path) as s:
        assert s.get_record("root/" + db) == b"t=1"
        assert list(s.log_range(db)) == [(1, b"tx-1")]
        assert s.get(b"seg-1") == b"L" * 300_000


def _readline(p, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if r:
            line = p.stdout.readline()
            if not line:
                raise AssertionError(f"child exited early, rc={p.wait(10)}")
            return line.strip()
    raise AssertionError("child did not answer in time")


COMMIT_LOOP = r"""
import hashlib, os, sys, random
from fastdatomic.storage import open_storage
path, db = sys.argv[1], sys.argv[2]
s = open_storage("dev", path=path, map_size=64 * 1024)
root = s.get_record("root/" + db)
t = int(root.split(b":")[0]) if root else 0
while True:
    t += 1
    key = os.urandom(16)
    blob = os.urandom(random.randint(1_000, 80_000))
    new = b"%d:%s" % (t, key.hex().encode())
    ok = s.commit(blobs=[(key, blob)],
                  log=[(db, t, b"%d:%s" % (t, hashlib.sha256(blob).hexdigest().encode()))],
                  records=[("root/" + db, root, new), ("mirror/" + db, root, new)],
                  checks=[("lease", b"epoch-1")])
    assert ok, t
    root = new
    print(t, flush=True)
"""


def _check_consistent(s, db) -> int:
    root = s.get_record("root/" + db)
    assert s.get_record("mirror/" + db) == root
    t, key = root.split(b":")
    t = int(t)
    assert s.log_last_t(db) == t
    log = list(s.log_range(db))
    assert [x for x, _ in log] == list(range(1, t + 1))
    digest = log[-1][1].split(b":")[1].decode()
    assert hashlib.sha256(s.get(bytes.fromhex(key.decode()))).hexdigest() == digest
    return t


def test_lmdb_sigkill_mid_commit_loop_never_leaves_a_partial_commit(lmdb_path):
    db = new_db()
    with open_storage("dev", path=lmdb_path) as s:
        s.commit(records=[("lease", None, b"epoch-1")])
    acked = 0
    for round_ in range(3):
        p = subprocess.Popen([sys.executable, "-c", COMMIT_LOOP, lmdb_path, db],
                             stdout=subprocess.PIPE, env=_child_env(), text=True)
        try:
            for _ in range(5 + round_ * 7):
                acked = int(_readline(p, 30))
            time.sleep(random.uniform(0, 0.05))
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        # the reader table may still hold the killed process's slot: opening must cope
        with open_storage("dev", path=lmdb_path) as s:
            t = _check_consistent(s, db)
            assert t >= acked                  # every acknowledged commit is there
    assert acked > 0


@pytest.fixture
def tiny_fs(tmp_path):
    """A 2 MiB tmpfs (needs mount privileges; skipped elsewhere)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_lmdb_disk_full_is_storage_full_naming_the_path(tiny_fs):
    path = str(tiny_fs / "env")
    s = open_storage("dev", path=path, map_size=64 * KiB)
    assert s.commit(records=[("root", None, b"r0")])
    with pytest.raises(StorageFullError) as ei:
        for i in range(100):
            s.commit(blobs=[(b"b%d" % i, os.urandom(100_000))], records=[("n", None, None)])
    assert path in str(ei.value) and "disk" in str(ei.value)
    assert path in ei.value.hint
    assert s.get_record("root") == b"r0"                # still readable, nothing torn
    with pytest.raises(StorageFullError):
        s.put_blobs([(b"x%d" % i, os.urandom(50_000)) for i in range(40)])
    assert s.commit(records=[("root", b"r0", b"r1")])   # small commits still fit
    s.close()
    with open_storage("dev", path=path) as again:
        assert again.get_record("root") == b"r1"


# --- errors --------------------------------------------------------------------------

def test_unknown_protocol_names_it_and_the_supported_ones():
    with pytest.raises(StorageConfigError) as ei:
        open_storage("ddb", name="x")
    msg = str(ei.value)
    assert "'ddb'" in msg and "mem" in msg and "dev" in msg
    assert ei.value.kind == "storage/config"


def test_sql_protocol_is_not_yet_supported():
    with pytest.raises(StorageConfigError, match="not yet supported"):
        open_storage("sql", url="postgresql://localhost/x")


def test_dev_option_errors(tmp_path):
    with pytest.raises(StorageConfigError, match="path"):
        open_storage("dev")
    with pytest.raises(StorageConfigError, match="map_size_max"):
        open_storage("dev", path=tmp_path / "a", map_size=4 * MiB, map_size_max=1 * MiB)
    with pytest.raises(StorageConfigError, match="map_size"):
        open_storage("dev", path=tmp_path / "a", map_size="big")
    with pytest.raises(StorageConfigError, match="mapsize"):
        open_storage("dev", path=tmp_path / "a", mapsize=1)


def test_unwritable_path_names_the_path(tmp_path):
    if os.geteuid() == 0:
        target = "/sys/fastdatomic-storage-test/env"        # EPERM even for root
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "env")
    try:
        with pytest.raises(StorageUnavailableError) as ei:
            open_storage("dev", path=target)
    finally:
        if os.geteuid() != 0:
            (tmp_path / "ro").chmod(0o700)
    assert target in str(ei.value)
    assert ei.value.kind == "storage/unavailable"


def test_unwritable_existing_dir_names_the_path(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root bypasses directory permissions")
    d = tmp_path / "env"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(StorageUnavailableError, match=str(d)):
            open_storage("dev", path=d)
    finally:
        d.chmod(0o700)


def test_path_that_is_a_file_names_the_path(tmp_path):
    f = tmp_path / "plain-file"
    f.write_text("not a directory")
    for target in (f, f / "env"):
        with pytest.raises(StorageUnavailableError) as ei:
            open_storage("dev", path=target)
        assert str(target) in str(ei.value)


def test_garbage_data_file_is_reported_corrupt(tmp_path):
    d = tmp_path / "env"
    d.mkdir()
    (d / "data.mdb").write_bytes(os.urandom(64 * KiB))
    with pytest.raises(StorageCorruptError) as ei:
        open_storage("dev", path=d)
    assert str(d) in str(ei.value) and ei.value.kind == "storage/corrupt"
    assert isinstance(ei.value, StorageError)


# --- docstring examples are part of the contract ----------------------------------------

@pytest.mark.parametrize("modname", ["fastdatomic.storage", "fastdatomic.storage.memory",
                                     "fastdatomic.storage.lmdb_store"])
def test_docstring_examples(modname, tmp_path, monkeypatch):
    import importlib
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mod = importlib.import_module(modname)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0


def test_every_spi_method_has_an_example():
    import inspect
    for name, fn in inspect.getmembers(Storage, inspect.isfunction):
        if name.startswith("_") and name not in ("__enter__",):
            continue
        assert fn.__doc__ and ">>>" in fn.__doc__, name


# --- preallocation: written zeros ahead of LMDB's last page ------------------------------

def _file_and_used(s):
    d = s.describe()
    return d["file_bytes"], d["used_bytes"]


def test_lmdb_keeps_written_blocks_ahead_of_its_last_page(lmdb_path):
    from fastdatomic.storage import lmdb_store
    s = open_storage("dev", path=lmdb_path)
    db = "ab" * 16
    for t in range(1, 200):
        s.commit(log=[(db, t, os.urandom(3000))], records=[("r", None if t == 1 else b"%d" % (t - 1),
                                                               b"%d" % t)])
        size, used = _file_and_used(s)
        # the commit's own pages came out of the zeros (or grew the file past them)
        assert size >= used
    assert size - used >= lmdb_store.PREALLOC_LOW - 64 * 1024   # ahead again after the last
    # Blocks allocated, not a sparse hole: the zeros were written.
    st = os.stat(os.path.join(lmdb_path, "data.mdb"))
    assert st.st_blocks * 512 >= size - 64 * 1024
    s.close()
    # Reopened (the zeros past the last page are never read): every record is intact.
    s = open_storage("dev", path=lmdb_path)
    assert [t for t, _ in s.log_range(db)] == list(range(1, 200))
    assert s.get_record("r") == b"199"
    # A commit larger than the preallocated stretch writes past it, as LMDB always did.
    big = os.urandom(3 * lmdb_store.PREALLOC_CHUNK)
    assert s.commit(log=[(db, 200, big)])
    assert dict(s.log_range(db, 200))[200] == big
    s.close()


def test_lmdb_commit_goes_on_when_preallocation_fails(lmdb_path, monkeypatch, caplog):
    import errno
    from fastdatomic.storage import lmdb_store

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(lmdb_store.os, "pwrite", full)
    s = open_storage("dev", path=lmdb_path)
    with caplog.at_level("WARNING", logger="fastdatomic.storage"):
        assert s.commit(records=[("r", None, b"1")])
        assert s.commit(records=[("r", b"1", b"2")])
    assert s.get_record("r") == b"2"
    warned = [r for r in caplog.records if "cannot preallocate" in r.getMessage()]
    assert len(warned) == 1 and "No space left" in warned[0].getMessage()   # then it waits
    s.close()
