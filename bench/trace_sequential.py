"""Where one sequential transaction's time goes, stage by stage, in both processes.

A transaction through a transactor crosses two processes and four threads. This starts a
transactor whose functions on the path are wrapped with timestamps (a ``sitecustomize``
module in a temporary directory on its ``PYTHONPATH``; nothing in ``src/`` changes), wraps
the peer's side in this process the same way, runs ``N`` sequential ``transact`` calls and
prints the median of each stage. ``time.perf_counter`` is ``CLOCK_MONOTONIC``, one clock
for every process of the machine, so the two sides line up.

Run: ``python bench/trace_sequential.py [N]`` (default 3000). The wrappers add ~1 µs per
stage; the total is the same measurement as ``bench_network.py --latency``, plus them.

Example (2-core VM, a slow-disk minute; the whole table is in bench/README, "tenth
session")::

    one sequential transaction, median of 2000 (µs):
      peer: transact() -> request queued            17.7
      ...
      transactor: storage commit (2 flushes)       507.5
      ...
      total                                        867.9
"""

from __future__ import annotations

import bisect
import marshal
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import fastdatomic as fd  # noqa: E402
from fastdatomic import peer as peer_mod  # noqa: E402
from transactor_helper import TransactorProcess, stop_all, write_config  # noqa: E402

# The transactor's side: (module, qualified name). "__main__" is the server module (the
# transactor runs as ``python -m fastdatomic.transactor.server``).
TRANSACTOR_FUNCS = [
    ("__main__", "PeerSession.data_received"),
    ("__main__", "Transactor.submit_incoming"),
    ("fastdatomic.db.tx", "prepare"),
    ("fastdatomic.storage.lmdb_store", "LmdbStorage.commit"),
    ("__main__", "Transactor._publish"),
    ("__main__", "PeerSession.send_many"),
]

_HOOK = '''
import importlib, marshal, os, sys, threading, time
if os.environ.get("FD_TRACE_OUT") and any("transactor" in a for a in sys.argv):
    _events, _pc = [], time.perf_counter

    def _wrap(modname, qual):
        owner = sys.modules["__main__"] if modname == "__main__" else importlib.import_module(modname)
        *path, name = qual.split(".")
        for p in path:
            owner = getattr(owner, p)
        fn, add = getattr(owner, name), _events.append

        def timed(*a, **k):
            add((qual, 0, _pc()))
            try:
                return fn(*a, **k)
            finally:
                add((qual, 1, _pc()))
        setattr(owner, name, timed)

    def _install_and_dump():
        while not hasattr(sys.modules.get("__main__"), "PeerSession"):
            time.sleep(0.01)       # the server module is still being imported
        for m, q in %r:
            _wrap(m, q)
        out = os.environ["FD_TRACE_OUT"]
        while True:
            time.sleep(0.2)
            with open(out + ".tmp", "wb") as f:
                marshal.dump(_events[-400000:], f)
            os.replace(out + ".tmp", out)
    threading.Thread(target=_install_and_dump, daemon=True).start()
'''

SCHEMA = """[{:db/ident :b/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
             {:db/ident :b/s :db/valueType :db.type/string :db/cardinality :db.cardinality/one}]"""


def _wrap_peer(marks):
    """Timestamps of the peer's side of one transaction, first occurrence of each."""
    pc = time.perf_counter

    def wrap(owner, name, start, end=None):
        fn = getattr(owner, name)

        def timed(*a, **k):
            marks.setdefault(start, pc())
            try:
                return fn(*a, **k)
            finally:
                if end:
                    marks.setdefault(end, pc())
        setattr(owner, name, timed)

    wrap(peer_mod.PeerSystem, "_submit", "submit")
    wrap(peer_mod.PeerSystem, "_drain", "drain")
    flush = peer_mod._Client._flush

    def timed_flush(self):
        sending = bool(self.outbox)
        if sending:
            marks.setdefault("write", pc())
        flush(self)
        if sending:
            marks.setdefault("written", pc())
    peer_mod._Client._flush = timed_flush
    wrap(peer_mod._Client, "data_received", "reply")
    wrap(peer_mod._TxRequest, "acked", "acked", "answered")


def _first(events, times, lo, hi):
    """``{(name, 0 start | 1 end): time}`` of the first events in ``[lo, hi)``
    (``times``: the events' times, in order)."""
    out = {}
    for name, edge, t in events[bisect.bisect_left(times, lo):bisect.bisect_left(times, hi)]:
        out.setdefault((name, edge), t)
    return out


STAGES = [   # (label, from, to): "p:" the peer's marks, "t:" the transactor's (name, edge)
    ("peer: transact() -> request queued", "p:call", "p:submit"),
    ("peer: loop thread wakes, drains", "p:submit", "p:drain"),
    ("peer: drain -> socket write", "p:drain", "p:write"),
    ("peer: socket write (loopback)", "p:write", "p:written"),
    ("wire + transactor wake-up", "p:written", "t:PeerSession.data_received:0"),
    ("transactor: read, decode", "t:PeerSession.data_received:0", "t:PeerSession.data_received:1"),
    ("transactor: to the commit batch", "t:PeerSession.data_received:1", "t:prepare:0"),
    ("transactor: prepare", "t:prepare:0", "t:prepare:1"),
    ("transactor: prepared -> storage", "t:prepare:1", "t:LmdbStorage.commit:0"),
    ("transactor: storage commit (2 flushes)", "t:LmdbStorage.commit:0", "t:LmdbStorage.commit:1"),
    ("transactor: committed -> publish", "t:LmdbStorage.commit:1", "t:Transactor._publish:0"),
    ("transactor: frames", "t:Transactor._publish:0", "t:PeerSession.send_many:0"),
    ("transactor: socket write (loopback)", "t:PeerSession.send_many:0", "t:PeerSession.send_many:1"),
    ("wire + peer wake-up", "t:PeerSession.send_many:1", "p:reply"),
    ("peer: reply -> ack handled", "p:reply", "p:acked"),
    ("peer: report, future set", "p:acked", "p:answered"),
    ("peer: caller thread returns", "p:answered", "p:return"),
    ("total", "p:call", "p:return"),
]


def main(n=3000):
    tmp = tempfile.mkdtemp(prefix="fd-trace-")
    try:
        hook_dir = os.path.join(tmp, "hook")
        os.makedirs(hook_dir)
        with open(os.path.join(hook_dir, "sitecustomize.py"), "w") as f:
            f.write(_HOOK % (TRANSACTOR_FUNCS,))
        out = os.path.join(tmp, "events.bin")
        data = os.path.join(tmp, "data")
        src = os.path.join(HERE, "..", "src")
        tx = TransactorProcess(
            write_config(tmp, data, lmdb_map_size="1g"),
            env={"FD_TRACE_OUT": out, "PYTHONPATH": os.pathsep.join([hook_dir, src])})
        tx.wait_started()
        marks: dict = {}
        _wrap_peer(marks)      # before connecting: uvloop keeps the bound data_received
        uri = f"fastdatomic:dev://{data}/trace"
        fd.create_database(uri)
        conn = fd.connect(uri)
        conn.transact(SCHEMA)
        for i in range(1000):                           # warm both processes
            conn.transact([{":b/n": i, ":b/s": "warm"}])
        pc = time.perf_counter
        rows = []
        for i in range(n):
            marks.clear()
            marks["call"] = pc()
            conn.transact([{":b/n": i, ":b/s": "x"}])
            marks["return"] = pc()
            rows.append(dict(marks))
        time.sleep(0.6)                                 # the hook's next dump
        with open(out, "rb") as f:
            events = marshal.load(f)
        times = [e[2] for e in events]
        per_stage = {label: [] for label, _, _ in STAGES}
        for row in rows:
            if "write" not in row or "reply" not in row:
                continue
            got = {"p:" + k: v for k, v in row.items()}
            for (name, edge), t in _first(events, times, row["write"], row["reply"]).items():
                got[f"t:{name}:{edge}"] = t
            for label, a, b in STAGES:
                if a in got and b in got:
                    per_stage[label].append(got[b] - got[a])
        print(f"one sequential transaction, median of {n} (µs):")
        for label, _, _ in STAGES:
            v = sorted(per_stage[label])
            if v:
                print(f"  {label:<42}{v[len(v) // 2] * 1e6:8.1f}")
    finally:
        stop_all()
        shutil.rmtree(tmp, True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
