"""Storage micro-benchmarks (pyperf).

    PYTHONPATH=src python bench/bench_storage.py --fast          # quick look
    PYTHONPATH=src python bench/bench_storage.py -o storage.json  # full run, then
    python -m pyperf stats storage.json

Benchmarks (each pyperf worker process gets its own fresh LMDB environment in a temp dir,
``--bench-dir`` to choose the filesystem that is measured):

* ``lmdb-commit-durable``: one transactor commit: a ~300-byte log record + the root CAS +
  the lease-epoch check, fsync'd (``sync=True, metasync=True``) -- the floor of tx latency;
* ``lmdb-commit-group-64``: one group commit of 64 such log records + root CAS + lease check
  (what the transactor writes at 64 transactions in flight), time per commit;
* ``lmdb-commit-refused``: the same commit fenced out by a stale epoch (nothing written);
* ``lmdb-commit-durable-64k-blobs``: an indexing-job style commit of 16 x 4 KiB segments + root CAS;
* ``lmdb-blob-get-4k``: ``get`` of a random 4 KiB blob out of 20,000 (warm page cache);
* ``lmdb-blob-get-many-4k-x16``: ``get_many`` of 16 random 4 KiB blobs (one read txn);
* ``mem-commit``: the same commit on the in-memory backend (the SPI's own overhead).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
import uuid

from _fsbench import bench_tmpdir, runner_with_bench_dir
from fastdatomic.storage import open_storage

DB = uuid.uuid4().hex
LOG_RECORD = os.urandom(300)
N_BLOBS = 20_000
BLOB = 4096

_state: dict = {}


def _tmpdir(runner_args) -> str:
    if "dir" not in _state:
        _state["dir"] = bench_tmpdir(runner_args, "fdt-bench-")
    return _state["dir"]


def _store(kind: str, args):
    key = "store-" + kind
    if key not in _state:
        if kind == "mem":
            s = open_storage("mem")
        else:
            s = open_storage("dev", path=os.path.join(_tmpdir(args), kind), map_size=1 << 30)
        s.commit(records=[("lease", None, b"epoch=1;counter=0"),
                          ("root/" + DB, None, b"t=0")])
        _state[key] = [s, 0]          # store, last t
    return _state[key]


def _commits(loops: int, st, blobs_per_commit: int = 0, group: int = 1) -> float:
    s, t = st
    root = b"t=%d" % t
    lease = b"epoch=1;counter=0"
    rnd = random.Random(t)
    t0 = time.perf_counter()
    for _ in range(loops):
        log = [(DB, t + i, LOG_RECORD) for i in range(1, group + 1)]
        t += group
        new = b"t=%d" % t
        blobs = [(rnd.randbytes(16), rnd.randbytes(BLOB)) for _ in range(blobs_per_commit)]
        ok = s.commit(blobs=blobs, log=log,
                      records=[("root/" + DB, root, new)], checks=[("lease", lease)])
        assert ok
        root = new
    dt = time.perf_counter() - t0
    st[1] = t
    return dt


def bench_commit_durable(loops, args):
    return _commits(loops, _store("lmdb", args))


def bench_commit_group(loops, args):
    return _commits(loops, _store("lmdb-group", args), group=64)


def bench_commit_blobs(loops, args):
    return _commits(loops, _store("lmdb-blobs", args), blobs_per_commit=16)


def bench_mem_commit(loops, args):
    return _commits(loops, _store("mem", args))


def bench_commit_refused(loops, args):
    s, t = _store("lmdb", args)
    t0 = time.perf_counter()
    for _ in range(loops):
        ok = s.commit(log=[(DB, t + 1, LOG_RECORD)], records=[("root/" + DB, b"t=%d" % t, b"x")],
                      checks=[("lease", b"epoch=0;counter=0")])
        assert not ok
    return time.perf_counter() - t0


def _blob_keys(args):
    if "keys" not in _state:
        s = open_storage("dev", path=os.path.join(_tmpdir(args), "blobs"), map_size=1 << 30)
        rnd = random.Random(1)
        keys = [rnd.randbytes(16) for _ in range(N_BLOBS)]
        for i in range(0, N_BLOBS, 2000):
            s.put_blobs((k, rnd.randbytes(BLOB)) for k in keys[i:i + 2000])
        _state["keys"] = (s, keys)
    return _state["keys"]


def bench_blob_get(loops, args):
    s, keys = _blob_keys(args)
    rnd = random.Random(loops)
    pick = [keys[rnd.randrange(N_BLOBS)] for _ in range(min(loops, 4096))]
    n = len(pick)
    get = s.get
    t0 = time.perf_counter()
    for i in range(loops):
        v = get(pick[i % n])
    dt = time.perf_counter() - t0
    assert len(v) == BLOB
    return dt


def bench_blob_get_many(loops, args):
    s, keys = _blob_keys(args)
    rnd = random.Random(loops)
    batches = [[keys[rnd.randrange(N_BLOBS)] for _ in range(16)] for _ in range(256)]
    t0 = time.perf_counter()
    for i in range(loops):
        vs = s.get_many(batches[i & 255])
    dt = time.perf_counter() - t0
    assert all(len(v) == BLOB for v in vs)
    return dt


def main():
    runner, args = runner_with_bench_dir("directory (filesystem) for the LMDB environments")
    runner.metadata["storage_fs"] = args.bench_dir or tempfile.gettempdir()
    runner.bench_time_func("lmdb-commit-durable", bench_commit_durable, args)
    runner.bench_time_func("lmdb-commit-group-64", bench_commit_group, args)
    runner.bench_time_func("lmdb-commit-refused", bench_commit_refused, args)
    runner.bench_time_func("lmdb-commit-durable-64k-blobs", bench_commit_blobs, args)
    runner.bench_time_func("lmdb-blob-get-4k", bench_blob_get, args)
    runner.bench_time_func("lmdb-blob-get-many-4k-x16", bench_blob_get_many, args)
    runner.bench_time_func("mem-commit", bench_mem_commit, args)


if __name__ == "__main__":
    main()
