"""What a durable commit costs on this disk, below LMDB (pyperf): the floor under tx latency.

An LMDB commit is a copy-on-write B-tree update: it writes its dirty pages wherever the
free list puts them, ``fdatasync``s the data file, then writes the meta page through a
descriptor opened ``O_DSYNC`` (a second flush). This benchmark times those two steps on
the filesystem under ``--bench-dir`` (default: the temp dir, where bench_network puts its
transactor), so a figure in bench_network can be read against the device:

* ``fdatasync-<n>-scattered-pages``: ``n`` 4 KiB pages at random offsets of a written file,
  then ``fdatasync`` (n = 1, 2, 6, 12; an LMDB commit of one small transaction writes ~6);
* ``fdatasync-6-contiguous-pages``: the same 24 KiB as one run;
* ``meta-write-o-dsync``: a 120-byte write through an ``O_DSYNC`` descriptor (LMDB's meta page).

Run: ``python bench/bench_disk.py --fast`` (``-o disk.json`` for a full run).

On the 2-core VM of 2026-11-23 each scattered page added ~45 us to the ``fdatasync``
while a contiguous run cost about one page: that is why a group commit stores its log
records under one key (one run of overflow pages) -- see ``storage/lmdb_store.py``.
"""

from __future__ import annotations

import os
import random
import time

from _fsbench import bench_tmpdir, runner_with_bench_dir

PAGE = 4096
FILE_PAGES = 4096          # a 16 MiB file, written once, so every write is an overwrite
_state: dict = {}


def _file(args) -> int:
    """The benchmark file (written and synced once per worker); its descriptor."""
    if "fd" not in _state:
        path = os.path.join(bench_tmpdir(args, "fd-bench-disk-"), "pages")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.write(fd, b"\0" * (PAGE * FILE_PAGES))
        os.fsync(fd)
        _state.update(fd=fd, path=path, rnd=random.Random(1))
    return _state["fd"]


def scattered(loops, args, pages):
    """``pages`` pages at random offsets, then one fdatasync; time per commit."""
    fd = _file(args)
    rnd = _state["rnd"]
    page = os.urandom(PAGE)
    t0 = time.perf_counter()
    for _ in range(loops):
        for _ in range(pages):
            os.pwrite(fd, page, rnd.randrange(FILE_PAGES) * PAGE)
        os.fdatasync(fd)
    return time.perf_counter() - t0


def contiguous(loops, args, pages=6):
    fd = _file(args)
    run = os.urandom(PAGE * pages)
    slots = FILE_PAGES // pages
    t0 = time.perf_counter()
    for i in range(loops):
        os.pwrite(fd, run, (i % slots) * pages * PAGE)
        os.fdatasync(fd)
    return time.perf_counter() - t0


def meta_dsync(loops, args):
    _file(args)
    if "mfd" not in _state:
        _state["mfd"] = os.open(_state["path"], os.O_RDWR | os.O_DSYNC)
    mfd = _state["mfd"]
    meta = os.urandom(120)
    t0 = time.perf_counter()
    for _ in range(loops):
        os.pwrite(mfd, meta, 32)
    return time.perf_counter() - t0


def main():
    runner, args = runner_with_bench_dir("directory on the filesystem to measure (default: temp dir)")
    for n in (1, 2, 6, 12):
        runner.bench_time_func(f"fdatasync-{n}-scattered-pages", scattered, args, n)
    runner.bench_time_func("fdatasync-6-contiguous-pages", contiguous, args)
    runner.bench_time_func("meta-write-o-dsync", meta_dsync, args)


if __name__ == "__main__":
    main()
