"""Could a durable commit cost one device flush instead of LMDB's two? (a design probe)

LMDB makes a commit durable with two flushes: ``fdatasync`` of the data pages, then the
meta page written through an ``O_DSYNC`` descriptor. With ``MDB_NOMETASYNC`` the meta
page is left to the next commit's ``fdatasync`` (integrity kept, the last commit not yet
durable). The probe: write the commit's record first to a preallocated journal file with
``O_DIRECT`` (into the device's cache, no flush), then commit LMDB with
``metasync=False``, whose data ``fdatasync`` also flushes the device cache, so the
journal record is durable once the commit returns, and recovery would replay it when
the meta page was lost. Three ways, in alternating blocks of 100 single commits (one
200-byte value and a small root record, as a lone transaction writes):

* ``two-flush``: what the storage does now (``sync=True, metasync=True``);
* ``journal+nometasync``: the probe (one flush, plus the ``O_DIRECT`` write);
* ``nometasync-only``: the lower bound of the probe (not durable on its own).

Run: ``python bench/bench_one_flush.py [commits]`` (default 1500); it works in a temp
dir next to the others (``--bench-dir`` is not needed: the temp dir is where
bench_network puts its transactor). Prints p50/p90 per way.
"""

from __future__ import annotations

import mmap
import os
import shutil
import sys
import tempfile
import time

import lmdb

PAGE = 4096
JOURNAL_PAGES = 2048


def main(commits: int = 1500):
    d = tempfile.mkdtemp(prefix="fd-one-flush-")
    try:
        run(d, commits)
    finally:
        shutil.rmtree(d, True)


def _env(d, metasync):
    env = lmdb.open(os.path.join(d, f"env-{metasync}"), map_size=1 << 30, sync=True,
                    metasync=metasync, max_dbs=4)
    log = env.open_db(b"log")
    with env.begin(write=True) as txn:      # a few thousand records, as after some use
        for i in range(3000):
            txn.put(b"k%08d" % i, os.urandom(300), db=log)
    return env, log


def run(d, commits):
    two, nometa = _env(d, True), _env(d, False)
    fd = os.open(os.path.join(d, "journal"), os.O_RDWR | os.O_CREAT | os.O_DIRECT)
    zeros = mmap.mmap(-1, 1 << 20)          # page-aligned, as O_DIRECT needs
    for off in range(0, JOURNAL_PAGES * PAGE, 1 << 20):
        os.pwritev(fd, [zeros], off)        # written extents: no metadata per append
    os.fsync(fd)
    record = mmap.mmap(-1, PAGE)
    record.write(os.urandom(PAGE))

    def commit(env_log, i, journal):
        env, log = env_log
        t0 = time.perf_counter()
        if journal:
            os.pwritev(fd, [record], (i % JOURNAL_PAGES) * PAGE)
        with env.begin(write=True) as txn:
            txn.put(b"x%08d" % i, os.urandom(200), db=log)
            txn.put(b"root", b"%d" % i)
        return time.perf_counter() - t0

    ways = {"two-flush": (two, False), "journal+nometasync": (nometa, True),
            "nometasync-only": (nometa, False)}
    times = {name: [] for name in ways}
    i = 0
    for block in range(max(1, commits // 100)):
        order = list(ways) if block % 2 == 0 else list(reversed(ways))
        for name in order:
            env_log, journal = ways[name]
            for _ in range(100):
                i += 1
                times[name].append(commit(env_log, i, journal))
    os.close(fd)
    for name, ts in times.items():
        ts.sort()
        print(f"{name:20s} p50 {ts[len(ts) // 2] * 1e6:6.0f} µs   p90 {ts[int(len(ts) * 0.9)] * 1e6:6.0f} µs")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
