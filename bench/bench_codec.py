"""pyperf benchmark of the key codec: encode_key / decode_key on typical EAVT datoms.

Seeded data: 100k datoms, a quarter each of long, string, ref and keyword values.
Each benchmark reports the time per datom (pyperf ``inner_loops`` = batch size).

    PYTHONPATH=src python bench/bench_codec.py -o /tmp/codec.json      # full run
    PYTHONPATH=src python bench/bench_codec.py --fast                  # quick look
"""

from __future__ import annotations

import random
import string
import time

import pyperf

from fastdatomic._core.codec import (
    INDEX_EAVT, TYPE_KEYWORD, TYPE_LONG, TYPE_REF, TYPE_STRING,
    decode_key, decode_keys, encode_key, encode_keys,
)
from fastdatomic.types import Keyword

N = 100_000
PART_USER = 4 << 42
PART_TX = 3 << 42


def make_datoms(seed: int = 42):
    rnd = random.Random(seed)
    kws = [Keyword(f":status/{w}") for w in ("active", "pending", "closed", "archived", "deleted")]
    rows = []
    for i in range(N):
        e = PART_USER + rnd.randrange(1, 1 << 30)
        tx = PART_TX + 1000 + i // 50
        kind = i % 4
        if kind == 0:
            rows.append((e, 70, TYPE_LONG, rnd.randrange(-10**9, 10**12), tx, True))
        elif kind == 1:
            n = rnd.randrange(4, 24)
            rows.append((e, 71, TYPE_STRING, "".join(rnd.choices(string.ascii_letters + " ", k=n)), tx, True))
        elif kind == 2:
            rows.append((e, 72, TYPE_REF, PART_USER + rnd.randrange(1, 1 << 30), tx, True))
        else:
            rows.append((e, 73, TYPE_KEYWORD, rnd.choice(kws), tx, rnd.random() < 0.9))
    return rows


ROWS = make_datoms()
KEYS = [encode_key(INDEX_EAVT, e, a, t, v, tx, ad) for e, a, t, v, tx, ad in ROWS]


def bench_encode(loops):
    enc = encode_key
    rows = ROWS
    idx = INDEX_EAVT
    t0 = time.perf_counter()
    for _ in range(loops):
        for e, a, t, v, tx, ad in rows:
            enc(idx, e, a, t, v, tx, ad)
    return time.perf_counter() - t0


def bench_decode(loops):
    dec = decode_key
    keys = KEYS
    idx = INDEX_EAVT
    t0 = time.perf_counter()
    for _ in range(loops):
        for k in keys:
            dec(idx, k)
    return time.perf_counter() - t0


def bench_decode_batch(loops):
    keys = KEYS
    t0 = time.perf_counter()
    for _ in range(loops):
        decode_keys(INDEX_EAVT, keys)
    return time.perf_counter() - t0


# encode_keys takes one value type per call (the datoms of one attribute).
BY_TYPE = {}
for _e, _a, _t, _v, _tx, _ad in ROWS:
    BY_TYPE.setdefault(_t, []).append((_e, _a, _v, _tx, _ad))


def bench_encode_batch(loops):
    groups = list(BY_TYPE.items())
    t0 = time.perf_counter()
    for _ in range(loops):
        for t, rows in groups:
            encode_keys(INDEX_EAVT, t, rows)
    return time.perf_counter() - t0


def main():
    runner = pyperf.Runner()
    runner.metadata["description"] = "fastdatomic key codec, EAVT, mixed long/string/ref/keyword values"
    runner.bench_time_func("encode_key", bench_encode, inner_loops=N)
    runner.bench_time_func("decode_key", bench_decode, inner_loops=N)
    runner.bench_time_func("encode_keys_batch", bench_encode_batch, inner_loops=N)
    runner.bench_time_func("decode_keys_batch", bench_decode_batch, inner_loops=N)


if __name__ == "__main__":
    main()
