"""A/B in one process: the peer as it is (A) against one of its behaviours undone (B).

The figures of bench_network.py move by up to 2x from one minute to the next on the
2-core VM (disk flushes and CPU alike), so a change worth 10-15 % cannot be told apart by
running two versions one after the other. Here one transactor and one peer run both
ways in alternating rounds (ABBA order), and the ratio of each pair is reported. B is:

* ``deferred``: the peer applies a group's novelty before answering its acks
  (``PeerSystem._on_novelty`` with ``defer`` always False; ninth session);
* ``yield``: a thread queueing a burst of requests never lets go of the GIL for the loop
  thread to send them (``YIELD_EVERY`` out of reach; tenth session).

Run: ``python bench/ab_peer.py deferred|yield [in-flight] [rounds] [transactions per round]``
(defaults 64 12 2000). Prints each mode's median microseconds per transaction, the median
of B/A per pair (above 1: A, the product, is faster) and how many pairs A won.
"""

from __future__ import annotations

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_network import _system, run_inflight  # noqa: E402  (its transactor and loop)
from fastdatomic import peer  # noqa: E402


_ON_NOVELTY, _YIELD_EVERY = peer.PeerSystem._on_novelty, peer.YIELD_EVERY


def _novelty_first(self, payloads, defer=False):
    _ON_NOVELTY(self, payloads)


def _deferred(b: bool):
    peer.PeerSystem._on_novelty = _novelty_first if b else _ON_NOVELTY


def _yield(b: bool):
    peer.YIELD_EVERY = 1 << 62 if b else _YIELD_EVERY


EXPERIMENTS = {"deferred": (_deferred, "acks first", "novelty first"),
               "yield": (_yield, "yields to the loop", "never yields")}


def main(what="deferred", inflight=64, rounds=12, loops=2000):
    switch, a_name, b_name = EXPERIMENTS[what]
    _system()
    run_inflight(2000, inflight)              # warm-up
    times = {"A": [], "B": []}
    try:
        for r in range(rounds):
            for mode in ("AB" if r % 2 == 0 else "BA"):
                switch(mode == "B")
                times[mode].append(run_inflight(loops, inflight) / loops * 1e6)
    finally:
        switch(False)
    ratios = [b / a for a, b in zip(times["A"], times["B"])]
    print(f"{what}, {inflight} in flight, {rounds} rounds of {loops}: "
          f"A ({a_name}) median {statistics.median(times['A']):.1f} us/tx, "
          f"B ({b_name}) median {statistics.median(times['B']):.1f} us/tx, "
          f"B/A median {statistics.median(ratios):.3f}, A faster in {sum(x > 1 for x in ratios)}/{rounds}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "deferred", *map(int, sys.argv[2:5]))
