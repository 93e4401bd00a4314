"""A/B in one process: a peer answering acks before applying their novelty, or after.

The figures of bench_network.py move by up to 2x from one minute to the next on the
2-core VM (disk flushes and CPU alike), so a change worth 10-15 % cannot be told apart by
running two versions one after the other. Here one transactor and one peer run both
ways in alternating rounds (ABBA order), and the ratio of each pair is reported:

* A, the product: ``PeerSystem._defer_novelty`` queues a group's novelty and the acks
  are answered first (applied after the next send, see peer.py);
* B, as before: the novelty is applied before the acks (``_on_novelty`` in its place).

Run: ``python bench/ab_deferred_novelty.py [in-flight] [rounds] [transactions per round]``
(defaults 64 12 2000). Prints each mode's median microseconds per transaction, the median
of B/A per pair (above 1: A is faster) and how many pairs A won.
"""

from __future__ import annotations

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_network import _system, run_inflight  # noqa: E402  (its transactor and loop)
from fastdatomic.peer import PeerSystem  # noqa: E402

DEFER = PeerSystem._defer_novelty


def main(inflight=64, rounds=12, loops=2000):
    _system()
    run_inflight(2000, inflight)              # warm-up
    times = {"A": [], "B": []}
    for r in range(rounds):
        for mode in ("AB" if r % 2 == 0 else "BA"):
            PeerSystem._defer_novelty = DEFER if mode == "A" else PeerSystem._on_novelty
            times[mode].append(run_inflight(loops, inflight) / loops * 1e6)
    PeerSystem._defer_novelty = DEFER
    ratios = [b / a for a, b in zip(times["A"], times["B"])]
    print(f"{inflight} in flight, {rounds} rounds of {loops}: "
          f"A (acks first) median {statistics.median(times['A']):.1f} us/tx, "
          f"B (novelty first) median {statistics.median(times['B']):.1f} us/tx, "
          f"B/A median {statistics.median(ratios):.3f}, A faster in {sum(x > 1 for x in ratios)}/{rounds}")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
