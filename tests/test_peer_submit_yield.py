"""A thread queueing a burst of requests lets the peer's loop thread send part of it.

Requests from user threads wait in a deque for one wake-up of the loop thread. That
thread needs the GIL the queueing thread holds, so without a pause a whole burst (64
transactions in flight) reached the transactor as one group commit, and the two
processes took turns. ``PeerSystem._submit`` lets go of the GIL every ``YIELD_EVERY``
requests queued for one wake-up (never for a lone request: the caller blocks soon
anyway). Its effect on throughput is measured in bench/ (``python bench/ab_peer.py
yield``); here, that it happens when it should and never loses or reorders a request.
"""

import collections
import sys
from types import SimpleNamespace

import pytest

import fastdatomic as fd
from fastdatomic import peer
from transactor_helper import start_transactor

SCHEMA = '[{:db/ident :y/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]'


def _system(wakes):
    return SimpleNamespace(outq=collections.deque(), closed=False, wake_pending=False,
                           loop=SimpleNamespace(call_soon_threadsafe=wakes.append),
                           _drain="drain")


def test_yields_every_yield_every_requests_queued_for_one_wake_up(monkeypatch):
    sleeps, wakes = [], []
    monkeypatch.setattr(peer, "time", SimpleNamespace(sleep=sleeps.append))
    system = _system(wakes)
    for i in range(3 * peer.YIELD_EVERY + 1):
        peer.PeerSystem._submit(system, i)
    assert len(wakes) == 1                         # one wake-up for the whole burst
    assert sleeps == [0, 0, 0]                     # at 16, 32 and 48 queued
    assert list(system.outq) == list(range(3 * peer.YIELD_EVERY + 1))


def test_a_lone_request_never_yields(monkeypatch):
    sleeps, wakes = [], []
    monkeypatch.setattr(peer, "time", SimpleNamespace(sleep=sleeps.append))
    system = _system(wakes)
    for i in range(5 * peer.YIELD_EVERY):
        peer.PeerSystem._submit(system, i)
        system.outq.clear()                        # the loop drained it ...
        system.wake_pending = False                # ... and will be woken again
    assert sleeps == [] and len(wakes) == 5 * peer.YIELD_EVERY


@pytest.mark.usefixtures("peers_and_transactors_stopped")
def test_the_loop_thread_sends_part_of_a_burst_before_it_is_all_queued(tmp_path, monkeypatch):
    """Through a real transactor: a burst of 256 from one thread goes out in several
    drains of the loop thread while it is being queued (without the yields: one, or two
    when a system call in between happened to let go of the GIL), and every transaction
    is committed once, in order, with its report."""
    start_transactor(tmp_path)
    uri = f"fastdatomic:dev://{tmp_path}/data/yield"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    drained = []
    drain = peer.PeerSystem._drain

    def counting_drain(self):
        drained.append(len(self.outq))
        drain(self)
    monkeypatch.setattr(peer.PeerSystem, "_drain", counting_drain)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)      # no forced GIL switch: only the yields let the loop in
    try:
        drains, reports = [], []
        for burst in range(3):
            drained.clear()
            futs = [conn.transact_async([{":y/n": burst * 256 + i}]) for i in range(256)]
            reports.extend(f.result(30) for f in futs)
            drains.append(len(drained))
    finally:
        sys.setswitchinterval(interval)
    assert max(drains) >= 3, f"drains per burst {drains}: the bursts waited for the caller"
    ts = [r.t for r in reports]
    assert ts == sorted(ts) and len(set(ts)) == 3 * 256
    got = sorted(v for (v,) in fd.q("[:find ?n :where [_ :y/n ?n]]", conn.db()))
    assert got == list(range(3 * 256))
