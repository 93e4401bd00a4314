"""Two processes on one LMDB environment: a writer process commits in a loop (growing the map
from 64 KiB) while this process reads from two threads. Every state a reader observes must be
one the writer committed whole, and the readers must survive the writer growing the map."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from fastdatomic.storage import open_storage

SRC = str(Path(__file__).resolve().parents[1] / "src")
KiB = 1 << 10

WRITER = r"""
import hashlib, os, random, sys, time
from fastdatomic.storage import open_storage
path, db, other, count, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
s = open_storage("dev", path=path, map_size=64 * 1024)
root = s.get_record("root/" + db)
deadline = time.monotonic() + seconds
rng = random.Random(7)
t = 0
while t < count and time.monotonic() < deadline:
    t += 1
    keys, hashes, blobs = [], [], []
    for _ in range(rng.randint(1, 3)):
        k, v = os.urandom(16), os.urandom(rng.randint(2_000, 40_000))
        keys.append(k.hex()); hashes.append(hashlib.sha256(v).hexdigest()); blobs.append((k, v))
    new = ("%d|%s|%s" % (t, ",".join(keys), ",".join(hashes))).encode()
    log = [(db, t, new)]
    if t % 3 == 0:                      # interleave another database's log
        log.append((other, t // 3, b"other-%d" % (t // 3)))
    ok = s.commit(blobs=blobs, log=log,
                  records=[("root/" + db, root, new), ("root-mirror/" + db, root, new)],
                  checks=[("lease", b"epoch-1")])
    assert ok, t
    root = new
d = s.describe()
print("done", t, d["map_size"], d["map_grows"], flush=True)
"""


def parse_root(raw: bytes):
    t, keys, hashes = raw.decode().split("|")
    return int(t), [bytes.fromhex(k) for k in keys.split(",")], hashes.split(",")


def test_reader_process_sees_only_whole_commits_while_writer_grows_map(tmp_path):
    path = str(tmp_path / "env")
    db, other = uuid.uuid4().hex, uuid.uuid4().hex
    # This process opens first, with the smallest map: the writer's growth must be adopted here.
    s = open_storage("dev", path=path, map_size=64 * KiB)
    first_map = s.describe()["map_size"]
    root0 = b"0||"
    assert s.commit(records=[("lease", None, b"epoch-1"), ("root/" + db, None, root0),
                             ("root-mirror/" + db, None, root0)])

    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, path, db, other, "600", "10"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    errors: list[BaseException] = []
    observed = {"states": 0, "max_t": 0, "scans": 0}
    stop = threading.Event()

    def check_once(full_scan: bool):
        # (1) one read txn: both roots were CASed in the same commit, so they are equal.
        roots = dict(s.list_records("root"))
        assert roots["root/" + db] == roots["root-mirror/" + db]
        # (2) sandwich: log_last_t read before <= root's t <= log_last_t read after.
        t_before = s.log_last_t(db) or 0
        raw = s.get_record("root/" + db)
        t_after = s.log_last_t(db) or 0
        t, keys, hashes = parse_root(raw)
        assert t_before <= t <= t_after, (t_before, t, t_after)
        if t == 0:
            return 0
        # (3) the log record of the root's t is there and is the one the root was built from.
        assert list(s.log_range(db, t, t + 1)) == [(t, raw)]
        # (4) every blob the root references is present and intact.
        for k, h, v in zip(keys, hashes, s.get_many(keys)):
            assert v is not None, f"blob {k.hex()} of t={t} missing"
            assert hashlib.sha256(v).hexdigest() == h
        if full_scan:
            ts = [x for x, _ in s.log_range(db, None, t + 1)]
            assert ts == list(range(1, t + 1))
            assert all(v.startswith(b"other-") for _, v in s.log_range(other))
            observed["scans"] += 1
        return t

    def reader(full_scans: bool):
        last = 0
        try:
            while not stop.is_set():
                t = check_once(full_scans)
                assert t >= last, "root went backwards"
                last = t
                observed["states"] += 1
                observed["max_t"] = max(observed["max_t"], t)
        except BaseException as e:
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=reader, args=(False,)),
               threading.Thread(target=reader, args=(True,))]
    for th in threads:
        th.start()
    try:
        out, err = writer.communicate(timeout=15)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(5)
        stop.set()
        for th in threads:
            th.join(10)
    assert not errors, repr(errors[0])
    assert writer.returncode == 0, err
    _, n, writer_map, writer_grows = out.split()
    n = int(n)
    assert n >= 50 and int(writer_grows) >= 3

    # After the writer is done: the final state, complete, and seen through a grown map.
    assert check_once(True) == n
    assert s.log_last_t(other) == n // 3
    d = s.describe()
    assert d["map_adopts"] >= 1, d          # this process adopted the writer's bigger map
    assert d["map_size"] > first_map
    print("observed", observed, "writer commits", n, "adopts", d["map_adopts"], "map", d["map_size"])
    assert observed["states"] > 20 and observed["scans"] > 0
    assert observed["max_t"] > 0            # readers overlapped the writer
    s.close()


READER = r"""
import sys, time
from fastdatomic.storage import open_storage
path, db = sys.argv[1], sys.argv[2]
s = open_storage("dev", path=path, map_size=64 * 1024)
print("ready", s.describe()["map_size"], flush=True)
last, seen = 0, 0
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    a = s.log_last_t(db) or 0
    r = s.get_record("root/" + db)
    b = s.log_last_t(db) or 0
    t = int(r)
    assert a <= t <= b and t >= last, (a, t, b, last)
    if t:
        assert s.get(b"blob-%d" % t) is not None
    last, seen = t, seen + 1
    if t >= int(sys.argv[4]):
        break
print("reader", last, seen, s.describe()["map_adopts"], flush=True)
"""


def test_writer_here_reader_in_other_process(tmp_path):
    """The mirror image: this process writes (growing the map), another process reads."""
    path = str(tmp_path / "env")
    db = uuid.uuid4().hex
    s = open_storage("dev", path=path, map_size=64 * KiB)
    assert s.commit(records=[("root/" + db, None, b"0")])
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    n = 150
    reader = subprocess.Popen([sys.executable, "-c", READER, path, db, "10", str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        ready = reader.stdout.readline().split()   # the reader opened with the small map
        assert ready and ready[0] == "ready", reader.communicate(timeout=10)
        prev = b"0"
        for t in range(1, n + 1):
            assert s.commit(blobs=[(b"blob-%d" % t, os.urandom(20_000))], log=[(db, t, b"tx")],
                            records=[("root/" + db, prev, b"%d" % t)])
            prev = b"%d" % t
        out, err = reader.communicate(timeout=15)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(5)
    assert reader.returncode == 0, err
    _, last, seen, adopts = out.split()
    assert int(last) == n and int(seen) > 0
    assert int(adopts) >= 1
    assert s.describe()["map_grows"] >= 3
    s.close()


GROW = r"""
import os, sys
from fastdatomic.storage import open_storage
s = open_storage("dev", path=sys.argv[1], map_size=64 * 1024)
for i in range(40):
    assert s.commit(blobs=[(b"g%d" % i, os.urandom(50_000))], records=[("n", None if i == 0 else b"%d" % (i - 1), b"%d" % i)])
print("grown", s.describe()["map_size"], flush=True)
"""


def test_second_writer_process_adopts_a_map_grown_by_the_first(tmp_path):
    """Active and standby transactors both write (heartbeats, takeover): a write in a process
    whose map is smaller than the data another process committed must adopt and succeed."""
    path = str(tmp_path / "env")
    s = open_storage("dev", path=path, map_size=64 * KiB)
    small = s.describe()["map_size"]
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", GROW, path], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[1]) > 1 << 20
    # no read first: the write transaction itself meets the grown map
    assert s.commit(records=[("lease", None, b"epoch-2")], blobs=[(b"after", b"x" * 10_000)])
    assert s.get_record("n") == b"39" and s.get(b"g39") is not None
    d = s.describe()
    assert d["map_adopts"] >= 1 and d["map_size"] > small
    s.close()
