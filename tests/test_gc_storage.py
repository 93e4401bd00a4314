"""gc-storage: index segments that indexing jobs and deleted databases left behind are
deleted once retired before the cutoff, and never one a current tree, or a tree retired
after the cutoff, still reaches.

In-process storage, LMDB storage, and a real transactor with the ``fastdatomic
gc-storage`` command run while it serves."""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

import fastdatomic as fd
from fastdatomic.db import catalog, gc
from fastdatomic.db import tx as txmod
from fastdatomic.db.segments import SegmentStore
from fastdatomic.errors import InvalidValueError, StorageCorruptError
from fastdatomic.storage import open_storage
from transactor_helper import start_transactor, wait_until

SCHEMA = """[{:db/ident :item/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one
              :db/index true}
             {:db/ident :item/s :db/valueType :db.type/string :db/cardinality :db.cardinality/one}]"""


def _later():
    return datetime.now(timezone.utc) + timedelta(seconds=1)


def _live(st) -> set:
    """Every segment a current root reaches."""
    return gc.live_segments(st)


def _everything(st, name):
    """All datoms of the four indexes, read from storage with a cold cache."""
    db = catalog.load_database(st, name, SegmentStore(st))
    return {ix: [tuple(d) for d in db.datoms(ix)] for ix in ("eavt", "aevt", "avet", "vaet")}


@pytest.fixture(autouse=True)
def small_segments(monkeypatch):
    """Leaves of 64 datoms and directories of 8 children: trees of a few hundred datoms
    have several levels, and a new generation shares most of its segments with the one
    it replaces (what gc must never delete)."""
    from fastdatomic.db import tree
    monkeypatch.setattr(tree, "LEAF_MAX", 64)
    monkeypatch.setattr(tree, "DIR_MAX", 8)


def _writer_with_generations(st, name, generations=4):
    """A database whose first generation holds 600 entities and each later one 20 more."""
    from fastdatomic import edn
    catalog.create_database(st, name)
    w = catalog.DatabaseWriter(st, name)
    w.commit_prepared([txmod.prepare(w.db, edn.loads(SCHEMA))])
    n = 0
    for g in range(generations):
        for _ in range(12 if g == 0 else 1):
            w.commit_prepared([txmod.prepare(w.db, [{":item/n": n + i, ":item/s": f"s{n + i}"}
                                                    for i in range(50 if g == 0 else 20)])])
            n += 50 if g == 0 else 20
        w.index()                # a new generation; the trees it replaces are retired
    return w


def test_generations_share_segments():
    st = open_storage("mem", name=f"gc-share-{uuid.uuid4().hex}")
    w = _writer_with_generations(st, "db", generations=1)
    first = _live(st)
    w.commit_prepared([_tx(w.db, 10_000)])
    w.index()
    assert len(first & _live(st)) > len(first) // 2      # the premise of the tests below


@pytest.fixture(params=["mem", "dev"])
def storage(request, tmp_path):
    if request.param == "mem":
        return open_storage("mem", name=f"gc-{uuid.uuid4().hex}")
    return open_storage("dev", path=str(tmp_path / "data"))


def test_collects_retired_trees_and_keeps_every_current_datom(storage):
    w = _writer_with_generations(storage, "db")
    before = _everything(storage, "db")
    blobs = storage.describe()["blobs"]
    assert blobs > len(_live(storage))                   # earlier generations linger
    out = gc.gc_storage(storage, _later())
    assert out["segments_deleted"] == blobs - len(_live(storage)) > 0
    assert storage.describe()["blobs"] == len(_live(storage))     # nothing else is left
    assert storage.list_records(gc.GC_PREFIX) == []               # its records went too
    assert _everything(storage, "db") == before
    assert gc.gc_storage(storage, _later())["segments_deleted"] == 0  # nothing twice
    w.index()                                            # and the writer goes on
    assert _everything(storage, "db") == before


def test_keeps_trees_retired_after_the_cutoff(storage):
    w = _writer_with_generations(storage, "db", generations=2)
    held = w.db                                          # a peer's value of this moment
    held_datoms = {ix: [tuple(d) for d in held.datoms(ix)] for ix in ("eavt", "avet")}
    cutoff = datetime.now(timezone.utc)
    # Changing an entity in the middle rewrites leaves that `held` shares with the generation
    # before it, which is retired before the cutoff: they must stay for `held`.
    middle = next(iter(w.db.datoms("avet", ":item/n", 300))).e
    w.commit_prepared([txmod.prepare(w.db, [[":db/add", middle, ":item/s", "changed"]])])
    w.index()                                            # retires `held`'s trees after the cutoff
    gc.gc_storage(storage, cutoff)
    cold = held._view(segs=SegmentStore(storage))        # no cached segment helps
    assert {ix: [tuple(d) for d in cold.datoms(ix)] for ix in ("eavt", "avet")} == held_datoms
    # Past its retirement, the value's trees go: reading it then fails, as documented.
    gc.gc_storage(storage, _later())
    with pytest.raises(StorageCorruptError):
        list(held._view(segs=SegmentStore(storage)).datoms("eavt"))


def _tx(db, n):
    return txmod.prepare(db, [{":item/n": n, ":item/s": "late"}])


def test_a_deleted_database_leaves_nothing_behind(storage):
    _writer_with_generations(storage, "keep", generations=2)
    keep = _everything(storage, "keep")
    _writer_with_generations(storage, "gone", generations=2)
    catalog.delete_database(storage, "gone")
    gc.gc_storage(storage, _later())
    assert storage.describe()["blobs"] == len(_live(storage))
    assert _everything(storage, "keep") == keep


def test_a_run_that_stopped_half_way_is_finished_by_the_next(storage, monkeypatch):
    _writer_with_generations(storage, "db", generations=3)
    before = _everything(storage, "db")
    real = storage.commit

    def crash(**kw):
        raise OSError("killed after the segments were deleted (injected)")
    monkeypatch.setattr(storage, "commit", crash)
    with pytest.raises(OSError):
        gc.gc_storage(storage, _later())
    monkeypatch.setattr(storage, "commit", real)
    assert storage.list_records(gc.GC_PREFIX)            # the records are still there
    gc.gc_storage(storage, _later())                     # their segments are gone already
    assert storage.list_records(gc.GC_PREFIX) == []
    assert _everything(storage, "db") == before


def test_a_run_that_stopped_while_deleting_is_finished_by_the_next(storage, monkeypatch):
    # Segments go leaves first, directories after, in chunks: whatever prefix of them a
    # crash leaves deleted, the next run still reaches the rest from the same records.
    _writer_with_generations(storage, "db", generations=4)
    before = _everything(storage, "db")
    monkeypatch.setattr(gc, "DELETE_CHUNK", 3)
    real, calls = storage.delete_blobs, []

    def crash_on_the_fourth(keys):
        calls.append(keys)
        if len(calls) == 4:
            raise OSError("killed while deleting (injected)")
        real(keys)
    monkeypatch.setattr(storage, "delete_blobs", crash_on_the_fourth)
    with pytest.raises(OSError):
        gc.gc_storage(storage, _later())
    monkeypatch.setattr(storage, "delete_blobs", real)
    gc.gc_storage(storage, _later())
    assert storage.describe()["blobs"] == len(_live(storage))
    assert _everything(storage, "db") == before


def test_a_tree_retired_while_gc_runs_stays_readable(storage, monkeypatch):
    # An indexing job lands between gc's reading of the current roots and of the
    # retirement records: the value current a moment before must keep all its segments,
    # also those it shares with generations retired long ago.
    w = _writer_with_generations(storage, "db", generations=3)
    held = w.db
    held_datoms = {ix: [tuple(d) for d in held.datoms(ix)] for ix in ("eavt", "aevt", "avet")}
    real, calls = storage.list_records, []

    def list_records(prefix):
        # The records read that follows the roots read: land a job just before it.
        if prefix == gc.GC_PREFIX and catalog.ROOT_PREFIX in calls and "job" not in calls:
            calls.append("job")
            middle = next(iter(w.db.datoms("avet", ":item/n", 300))).e
            w.commit_prepared([txmod.prepare(w.db, [[":db/add", middle, ":item/s", "now"]])])
            w.index()
        calls.append(prefix)
        return real(prefix)
    monkeypatch.setattr(storage, "list_records", list_records)
    gc.gc_storage(storage, _later())        # the tree retired meanwhile is due as well
    assert "job" in calls
    cold = held._view(segs=SegmentStore(storage))
    assert {ix: [tuple(d) for d in cold.datoms(ix)] for ix in held_datoms} == held_datoms
    # And the current value reads too: one :item/s replaced, one :db/txInstant more.
    assert len(_everything(storage, "db")["eavt"]) == len(held_datoms["eavt"]) + 2
    # The record of the tree retired meanwhile stayed: the next run collects that tree.
    monkeypatch.setattr(storage, "list_records", real)
    gc.gc_storage(storage, _later())
    assert storage.describe()["blobs"] == len(_live(storage))


def test_a_job_never_adopted_is_collected_once_older_than_the_cutoff(storage):
    # Its process died, or was deposed, between writing the segments and adopting them:
    # only its pending record says they exist.
    w = _writer_with_generations(storage, "db", generations=2)
    w.commit_prepared([_tx(w.db, 5000)])
    before = _everything(storage, "db")          # the trees, and the log since them
    cutoff = datetime.now(timezone.utc)
    built = catalog.build_index(w.db)            # never adopted
    new_roots = [r for r, old in zip(built.roots, w.db.roots) if r != old]
    assert new_roots and all(storage.get(r) is not None for r in new_roots)
    assert gc.gc_storage(storage, cutoff)["jobs_claimed"] == 0      # begun after the cutoff
    assert all(storage.get(r) is not None for r in new_roots)
    assert gc.retired_trees(storage)["pending_jobs"] == 1
    assert gc.gc_storage(storage, _later())["jobs_claimed"] == 1
    assert storage.describe()["blobs"] == len(_live(storage))       # nothing else is left
    assert storage.list_records(gc.PENDING_PREFIX) == []
    assert _everything(storage, "db") == before
    w.index()                                    # the writer indexes on
    assert _everything(storage, "db") == before


def test_a_job_claimed_before_it_is_adopted_is_refused_and_run_again(storage):
    from fastdatomic.errors import IndexCollectedError
    w = _writer_with_generations(storage, "db", generations=2)
    w.commit_prepared([_tx(w.db, 5000)])
    expected = {ix: [tuple(d) for d in w.db.datoms(ix)] for ix in ("eavt", "aevt", "avet", "vaet")}
    built = catalog.build_index(w.db)
    gc.gc_storage(storage, _later())           # a cutoff younger than the job: claimed
    with pytest.raises(IndexCollectedError, match="gc-storage collected"):
        w.adopt_index(built)
    assert not w.poisoned and catalog.read_root(storage, "db")[0]["index_basis_t"] < w.db.basis_t
    w.index()                                  # run again, adopted this time
    assert _everything(storage, "db") == expected
    gc.gc_storage(storage, _later())
    assert storage.describe()["blobs"] == len(_live(storage))
    assert _everything(storage, "db") == expected


def _interrupt_put_blobs(storage, monkeypatch, between):
    """``storage.put_blobs`` writes the first third of its items, calls ``between()``
    (which may raise), then writes the rest."""
    real = storage.put_blobs

    def put_blobs(items):
        items = list(items)
        real(items[:len(items) // 3])
        between()
        real(items[len(items) // 3:])
    monkeypatch.setattr(storage, "put_blobs", put_blobs)


def test_a_job_claimed_while_it_writes_deletes_what_it_wrote_after(storage, monkeypatch):
    # gc-storage collects what the job had written when it looked; the job finds its
    # record gone when it is done writing and deletes all of its own segments.
    from fastdatomic.errors import IndexCollectedError
    w = _writer_with_generations(storage, "db", generations=2)
    w.commit_prepared([txmod.prepare(w.db, [{":item/n": 9000 + i} for i in range(300)])])
    before = _everything(storage, "db")

    def claim():
        assert gc.gc_storage(storage, _later())["jobs_claimed"] == 1
    _interrupt_put_blobs(storage, monkeypatch, claim)
    with pytest.raises(IndexCollectedError, match="runs again"):
        catalog.build_index(w.db)
    monkeypatch.undo()
    assert storage.describe()["blobs"] == len(_live(storage))
    assert storage.list_records(gc.PENDING_PREFIX) == storage.list_records(gc.GC_PREFIX) == []
    w.index()
    assert _everything(storage, "db") == before


def test_a_deposed_writer_whose_job_was_claimed_is_told_it_was_fenced(storage):
    from fastdatomic.errors import FencedError
    w = _writer_with_generations(storage, "db", generations=1)
    w.commit_prepared([_tx(w.db, 5000)])
    built = catalog.build_index(w.db)
    other = catalog.DatabaseWriter(storage, "db")      # took over, and commits
    other.commit_prepared([_tx(other.db, 5001)])
    gc.gc_storage(storage, _later())
    with pytest.raises(FencedError):
        w.adopt_index(built)
    assert w.poisoned


def test_a_job_that_stopped_while_writing_its_segments_is_collected(storage, monkeypatch):
    # Segments are written parents first: whatever part of them is in storage, the
    # pending record's roots reach it.
    w = _writer_with_generations(storage, "db", generations=2)
    w.commit_prepared([txmod.prepare(w.db, [{":item/n": 9000 + i} for i in range(300)])])
    before = _everything(storage, "db")

    def die():
        raise OSError("the process died here (injected)")
    _interrupt_put_blobs(storage, monkeypatch, die)
    with pytest.raises(OSError):
        catalog.build_index(w.db)
    monkeypatch.undo()
    assert storage.describe()["blobs"] > len(_live(storage))
    assert gc.gc_storage(storage, _later())["jobs_claimed"] == 1
    assert storage.describe()["blobs"] == len(_live(storage))
    assert _everything(storage, "db") == before


def test_cutoff_must_be_an_aware_datetime(storage):
    with pytest.raises(InvalidValueError, match="timezone-aware"):
        gc.gc_storage(storage, datetime.now())
    with pytest.raises(InvalidValueError):
        gc.gc_storage(storage, "yesterday")


def test_an_in_process_job_that_ends_after_its_database_is_deleted_is_collected(monkeypatch):
    # delete_database removes the root before it closes the writer: a job landing in
    # between fails its CAS. Its pending record stays (the job is not retried), and
    # gc-storage collects its trees.
    gate, real_build = threading.Event(), catalog.build_index

    def gated(db):
        assert gate.wait(30)
        return real_build(db)
    monkeypatch.setattr(catalog, "build_index", gated)
    uri = f"fastdatomic:mem://gc-race-{uuid.uuid4().hex}"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    tx = conn._tx
    tx.memory_index_threshold = 0
    conn.transact([{":item/n": i} for i in range(100)])        # starts the gated job
    assert tx.jobs.building
    st = tx.writer.storage
    catalog.delete_database(st, tx.name)     # the root goes; the writer is not closed yet
    gate.set()
    wait_until(lambda: not tx.jobs.building)
    assert tx.jobs.retry is None and tx.jobs.failures == 0     # not taken for a failure
    from fastdatomic.errors import DatabaseNotFoundError
    with pytest.raises(DatabaseNotFoundError):                 # and the writer is closed
        conn.transact([{":item/n": 1}])
    pending = st.list_records(gc.PENDING_PREFIX)
    roots = [r for key, raw in pending for r in gc._decode(key, raw)["roots"]]
    assert roots and all(st.get(r) is not None for r in roots)
    assert gc.gc_storage(st, _later())["jobs_claimed"] == len(pending) == 1
    assert all(st.get(r) is None for r in roots)
    assert st.list_records(gc.PENDING_PREFIX) == [] and st.list_records(gc.GC_PREFIX) == []
    fd.delete_database(uri)


def test_in_process_request_index_runs_again_a_job_gc_storage_collected(monkeypatch):
    real, calls = catalog.DatabaseWriter.adopt_index, []

    def claimed_once(self, built):
        calls.append(built)
        if len(calls) == 1:
            assert gc.gc_storage(self.storage, _later())["jobs_claimed"] == 1
        return real(self, built)
    monkeypatch.setattr(catalog.DatabaseWriter, "adopt_index", claimed_once)
    uri = f"fastdatomic:mem://gc-claimed-{uuid.uuid4().hex}"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    r = conn.transact([{":item/n": i} for i in range(100)])
    assert conn.request_index() is True and len(calls) == 2
    assert conn.db().index_basis_t >= r.t
    assert fd.q("[:find (count ?e) . :where [?e :item/n]]", conn.db()) == 100
    fd.delete_database(uri)


def test_in_process_gc_through_the_api():
    uri = f"fastdatomic:mem://gc-api-{uuid.uuid4().hex}"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    for g in range(3):
        conn.transact([{":item/n": g * 100 + i} for i in range(100)])
        conn.request_index()
    count = "[:find (count ?e) . :where [?e :item/n]]"
    assert fd.gc_storage(uri, _later())["segments_deleted"] > 0
    assert fd.q(count, conn.db()) == 300
    conn.transact([{":item/n": 1000}])
    conn.request_index()
    assert fd.q(count, conn.db()) == 301


@pytest.mark.usefixtures("peers_and_transactors_stopped")
def test_gc_storage_command_while_a_transactor_serves(tmp_path):
    start_transactor(tmp_path)
    data = str(tmp_path / "data")
    uri = f"fastdatomic:dev://{data}/db"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    for g in range(3):                      # three generations: two retire
        r = conn.transact([{":item/n": g * 100 + i, ":item/s": "x"} for i in range(100)])
        conn.request_index()
        conn.sync_index(r.t, timeout=30)
    count = "[:find (count ?e) . :where [?e :item/n]]"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.join(os.path.dirname(__file__), "..", "src"), os.environ.get("PYTHONPATH", "")])}
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "fastdatomic.cli", *args],
                              capture_output=True, text=True, timeout=60, env=env)

    waiting = json.loads(cli("status", data).stdout)["retired_trees"]
    assert waiting["records"] >= 2 and waiting["oldest"] <= time.time()
    run = cli("gc-storage", f"fastdatomic:dev://{data}/*", "--older-than", "0s")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["segments_deleted"] > 0
    assert json.loads(cli("status", data).stdout)["retired_trees"]["records"] == 0
    # The peer reads on, the transactor commits and indexes on.
    conn.transact([{":item/n": 1000, ":item/s": "after gc"}])
    conn.request_index()
    assert fd.q(count, conn.db()) == 301
    fresh = catalog.load_database(open_storage("dev", path=data), "db")
    assert fd.q(count, fresh) == 301
    bad = cli("gc-storage", uri, "--older-than", "soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr


STALL_JOB = """
import os, time
from fastdatomic.db import catalog
_real = catalog.build_index

def build_index(db):
    built = _real(db)           # the pending record and the segments are written
    with open(os.environ["STALL_MARKER"], "w") as f:
        f.write(built.pending[0])
    time.sleep(60)              # killed here, before the adoption
    return built

catalog.build_index = build_index
"""


@pytest.mark.usefixtures("peers_and_transactors_stopped")
def test_a_transactor_killed_mid_job_leaves_segments_gc_storage_finds(tmp_path):
    from transactor_helper import TransactorProcess, write_config
    (tmp_path / "stall_job.py").write_text(STALL_JOB)
    marker = tmp_path / "job-written"
    data = str(tmp_path / "data")
    stalled = TransactorProcess(write_config(str(tmp_path), data, "stalled"), env={
        "FASTDATOMIC_TX_FNS": "stall_job", "STALL_MARKER": str(marker),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))})
    stalled.wait_started()
    uri = f"fastdatomic:dev://{data}/db"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    conn.transact([{":item/n": i, ":item/s": "x"} for i in range(300)])
    conn.request_index()
    wait_until(marker.exists, timeout=30)
    stalled.kill()                                  # kill -9 between writing and adopting
    st = open_storage("dev", path=data)
    pending = st.list_records(gc.PENDING_PREFIX)
    assert [k for k, _ in pending] == [marker.read_text()]
    assert st.describe()["blobs"] > len(_live(st))
    out = fd.gc_storage(f"fastdatomic:dev://{data}/*", _later())
    assert out["jobs_claimed"] == 1 and out["segments_deleted"] > 0
    assert st.describe()["blobs"] == len(_live(st))   # only what the current trees reach
    # A new transactor takes over; the peer reads and writes on, and indexing lands.
    start_transactor(tmp_path)
    count = "[:find (count ?e) . :where [?e :item/n]]"
    r = conn.transact([{":item/n": 1000, ":item/s": "after"}], timeout=30)
    conn.request_index()
    conn.sync_index(r.t, timeout=30)
    assert fd.q(count, conn.db()) == 301
    assert fd.q(count, catalog.load_database(open_storage("dev", path=data), "db")) == 301


@pytest.mark.usefixtures("peers_and_transactors_stopped")
def test_a_full_storage_takes_transactions_again_after_gc_storage(tmp_path):
    # What the storage-full error's hint promises: the map may not grow, indexing jobs
    # keep replacing one entity's trees, and gc-storage gives their space back.
    from fastdatomic.errors import StorageFullError
    start_transactor(tmp_path, lmdb_map_size="4m", lmdb_map_size_max="4m",
                     memory_index_threshold="64k", memory_index_max="4m")
    data = str(tmp_path / "data")
    uri = f"fastdatomic:dev://{data}/db"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    e = conn.transact([{":db/id": "x", ":item/s": "first"}]).tempids["x"]
    full = None
    for i in range(5000):                   # bounded: the map fills long before
        try:
            conn.transact([[":db/add", e, ":item/s", "y" * 500 + str(i)]], timeout=10)
        except StorageFullError as err:
            full = err
            break
    assert full is not None and "gc-storage" in str(full)
    out = fd.gc_storage(f"fastdatomic:dev://{data}/*",
                        datetime.now(timezone.utc) + timedelta(seconds=1))
    assert out["segments_deleted"] > 0
    for i in range(20):
        conn.transact([[":db/add", e, ":item/s", f"after gc {i}"]], timeout=10)
    assert fd.q("[:find ?s . :in $ ?e :where [?e :item/s ?s]]", conn.db(), e) == "after gc 19"
