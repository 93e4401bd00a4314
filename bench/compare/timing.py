"""The one timing loop every Python-side runner of bench/compare uses.

Warm up for ``T["warmup_s"]`` seconds (at most ``T["warmup_max"]`` calls), then time up to
``T["reps"]`` calls (stopping early after ``T["max_s"]`` seconds, but never before 3), and
report the median and the minimum in milliseconds. Each runner imports it from its own
directory (``sys.path[0]``), whatever Python or venv runs it.
"""

import statistics
import time


def bench(fn, T):
    """``({"median_ms", "min_ms", "reps", "warmup"}, last result of fn())``."""
    t0 = time.perf_counter()
    w = 0
    while True:
        out = fn()
        w += 1
        if w >= T["warmup_max"] or time.perf_counter() - t0 >= T["warmup_s"]:
            break
    times = []
    start = time.perf_counter()
    for i in range(T["reps"]):
        a = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - a) * 1000)
        if i >= 2 and time.perf_counter() - start > T["max_s"]:
            break
    return {"median_ms": statistics.median(times), "min_ms": min(times), "reps": len(times),
            "warmup": w}, out
