"""pyperf benchmark of the wire framing: encode_frame, FrameDecoder.feed.

Seeded data: 1000 small frames (payloads of 20..200 random bytes, kinds and req_ids
random), one 100-byte frame, one 1 MiB payload.

- ``encode_frame_100B``: one frame with a 100-byte payload.
- ``decode_1000_small``: 1000 small frames from one buffer, in one ``feed``; the time
  is per frame (pyperf ``inner_loops`` = 1000).
- ``decode_1MiB_in_64KiB_chunks``: one frame with a 1 MiB payload, fed in 16 chunks
  of 64 KiB (plus the header's 12 bytes); the time is per frame.

    PYTHONPATH=src python bench/bench_frame.py -o /tmp/frame.json      # full run
    PYTHONPATH=src python bench/bench_frame.py --fast                  # quick look
"""

from __future__ import annotations

import random
import time

import pyperf

from fastdatomic._core.frame import FrameDecoder, encode_frame, encode_frames

N_SMALL = 1000
CHUNK = 64 * 1024
BIG = 1024 * 1024


def make_small_frames(seed: int = 42):
    rnd = random.Random(seed)
    return [(rnd.randrange(256), rnd.randrange(2**32), rnd.randbytes(rnd.randrange(20, 201)))
            for _ in range(N_SMALL)]


SMALL = make_small_frames()
SMALL_WIRE = encode_frames(SMALL)
PAYLOAD_100 = random.Random(7).randbytes(100)
BIG_WIRE = encode_frame(3, 99, random.Random(8).randbytes(BIG))
BIG_CHUNKS = [BIG_WIRE[i:i + CHUNK] for i in range(0, len(BIG_WIRE), CHUNK)]


def bench_encode_100(loops):
    enc = encode_frame
    payload = PAYLOAD_100
    t0 = time.perf_counter()
    for i in range(loops):
        enc(5, 12345, payload)
    return time.perf_counter() - t0


def bench_decode_small(loops):
    wire = SMALL_WIRE
    t0 = time.perf_counter()
    for _ in range(loops):
        frames = FrameDecoder().feed(wire)
    dt = time.perf_counter() - t0
    assert len(frames) == N_SMALL
    return dt


def bench_decode_big_chunked(loops):
    chunks = BIG_CHUNKS
    t0 = time.perf_counter()
    for _ in range(loops):
        dec = FrameDecoder()
        for c in chunks:
            out = dec.feed(c)
    dt = time.perf_counter() - t0
    assert len(out) == 1 and len(out[0][2]) == BIG
    return dt


def main():
    runner = pyperf.Runner()
    runner.metadata["description"] = "fastdatomic wire frames: encode, decode small frames, decode a chunked 1 MiB frame"
    runner.bench_time_func("encode_frame_100B", bench_encode_100)
    runner.bench_time_func("decode_1000_small", bench_decode_small, inner_loops=N_SMALL)
    runner.bench_time_func("decode_1MiB_in_64KiB_chunks", bench_decode_big_chunked)


if __name__ == "__main__":
    main()
