"""The floor under issue #5's figures: a bare uvloop + LMDB group-commit loop, measured
in the same minute as fastdatomic.

Issue #5 sets its targets against "a bare uvloop + LMDB group-commit loop". This is that
loop, so that our figures can be read against what the machine gives in the same minute
(its disk's flush time moves by up to 2x over minutes; bench/README):

- the *server* (a subprocess, ``--serve``) reads 4-byte length-prefixed frames on loopback
  TCP with uvloop and, for all the frames one read brings, does one LMDB write
  transaction (one log record holding them, one root record) committed with
  fastdatomic's flags (``sync=True, metasync=True``: two flushes), then answers every
  frame with its ``t`` in one write: group commit with nothing else;
- the *client* is a blocking socket in the calling thread with N frames in flight:
  no event loop, no futures, no datoms.

So it has the same durable commit, wire and processes as a fastdatomic transaction, and
none of the work of one (tx data, prepare, novelty, reports, tx ids, metrics).

Run: ``python bench/bench_floor.py [--rounds 5] [--tx 1000]`` alternates rounds of the
floor and of fastdatomic (``bench/bench_network.py``'s transactor and peer; its sequential
transactions are ``--latency``'s, each with its own tx id) and prints, for 1 and 64 in
flight, the medians of each and their ratio.

Example, ``--rounds 4`` (2-core VM, a slow-disk minute; the tables are in bench/README,
"eleventh session")::

    medians of 4 rounds (1000 sequential, 4000 at 64 in flight):
    in flight           floor   fastdatomic  ours / floor
            1     503.2 p50 µs      971.2          1.93
           64      13.6 µs per tx    74.6          5.48
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

_LEN = struct.Struct(">I")
_T = struct.Struct(">Q")
# About the size of a small transaction's frame (one entity, two attributes, a tx id).
PAYLOAD = b"x" * 120


def serve(data_dir: str, port_file: str, parent: int) -> None:
    """The bare server: frames in, one durable LMDB commit per read, acks out."""
    import asyncio

    import lmdb
    import uvloop

    env = lmdb.open(data_dir, map_size=1 << 30, sync=True, metasync=True, writemap=False,
                    readahead=False, max_dbs=4)
    log_db = env.open_db(b"log")
    rec_db = env.open_db(b"records")
    state = {"t": 0}
    done = None         # set when the client disconnects or the parent process is gone

    class Server(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.buf = bytearray()
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP,
                                                          socket.TCP_NODELAY, 1)

        def data_received(self, data):
            buf = self.buf
            buf += data
            frames, pos = [], 0
            while len(buf) - pos >= 4:
                (n,) = _LEN.unpack_from(buf, pos)
                if len(buf) - pos - 4 < n:
                    break
                frames.append(bytes(buf[pos + 4:pos + 4 + n]))
                pos += 4 + n
            del buf[:pos]
            if not frames:
                return
            first = state["t"] + 1
            last = state["t"] = first + len(frames) - 1
            with env.begin(write=True) as txn:      # commits (two flushes) on exit
                txn.put(_T.pack(last), b"".join(frames), db=log_db)
                txn.put(b"root", _T.pack(last), db=rec_db)
            self.transport.write(b"".join(_T.pack(t) for t in range(first, last + 1)))

        def connection_lost(self, exc):
            done.set()                              # our one client has gone: so do we

    async def orphaned():
        # Never outlive the benchmark, even one killed before it could stop us.
        while os.getppid() == parent:        # (re-parented once the parent is gone)
            await asyncio.sleep(1.0)
        done.set()

    async def main():
        nonlocal done
        done = asyncio.Event()
        server = await asyncio.get_running_loop().create_server(Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with open(port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(port_file + ".tmp", port_file)
        watch = asyncio.ensure_future(orphaned())
        await done.wait()
        watch.cancel()
        server.close()
        env.close()

    uvloop.run(main())


class Floor:
    """A bare server subprocess and a blocking client connected to it.

    >>> f = Floor(); f.sequential(3)[0] > 0; f.close()
    True
    """

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="fd-bench-floor-")
        self.proc = self.sock = None
        try:
            port_file = os.path.join(self.dir, "port")
            self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve",
                                          os.path.join(self.dir, "data"), port_file,
                                          str(os.getpid())])
            deadline = time.monotonic() + 30
            while not os.path.exists(port_file):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the floor server did not start")
                time.sleep(0.02)
            with open(port_file) as f:
                port = int(f.read())
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            self.close()
            raise
        self.frame = _LEN.pack(len(PAYLOAD)) + PAYLOAD

    def _recv_acks(self, pending: bytearray) -> int:
        """Read at least one more ack; how many whole acks arrived."""
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the floor server closed the connection")
            pending += data
            n = len(pending) // 8
            if n:
                del pending[:n * 8]
                return n

    def sequential(self, n: int) -> list[float]:
        """``n`` round trips one at a time: the seconds each took."""
        lat, pending = [], bytearray()
        for _ in range(n):
            t0 = time.perf_counter()
            self.sock.sendall(self.frame)
            self._recv_acks(pending)
            lat.append(time.perf_counter() - t0)
        return lat

    def inflight(self, n: int, inflight: int) -> float:
        """Seconds per transaction for ``n`` frames with ``inflight`` outstanding."""
        pending = bytearray()
        t0 = time.perf_counter()
        sent = min(n, inflight)
        self.sock.sendall(self.frame * sent)
        done = 0
        while done < n:
            got = self._recv_acks(pending)
            done += got
            more = min(got, n - sent)
            if more:
                self.sock.sendall(self.frame * more)
                sent += more
        return (time.perf_counter() - t0) / n

    def close(self) -> None:
        """Stop the server (it ends with its connection) and remove its data directory."""
        if self.sock is not None:
            self.sock.close()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _ours():
    """fastdatomic's side: bench_network's transactor and peer (started once)."""
    import bench_network     # (this file's directory is on sys.path: it runs as a script)
    bench_network._system()
    return bench_network


def compare(rounds: int, n: int) -> None:
    """Alternate floor and fastdatomic rounds; print medians and ratios."""
    floor = net = None
    try:
        floor, net = Floor(), _ours()
        floor.sequential(200)
        net.latency_samples(200)
        net.run_inflight(2000, 64)
        rows = {1: ([], []), 64: ([], [])}
        for r in range(rounds):
            # ABBA: which side goes first alternates, so a drift in the machine's speed
            # within a round falls on both.
            order = ("floor", "ours") if r % 2 == 0 else ("ours", "floor")
            for side in order:
                if side == "floor":
                    rows[1][0].append(statistics.median(floor.sequential(n)))
                    rows[64][0].append(floor.inflight(4 * n, 64))
                else:
                    rows[1][1].append(statistics.median(net.latency_samples(n)))
                    rows[64][1].append(net.run_inflight(4 * n, 64) / (4 * n))
            print(f"round {r + 1}: 1 in flight floor/ours p50 {rows[1][0][-1] * 1e6:.0f}/"
                  f"{rows[1][1][-1] * 1e6:.0f} µs; 64 in flight "
                  f"{rows[64][0][-1] * 1e6:.1f}/{rows[64][1][-1] * 1e6:.1f} µs per tx",
                  flush=True)
        print(f"\nmedians of {rounds} rounds ({n} sequential, {4 * n} at 64 in flight):")
        print(f"{'in flight':>9}  {'floor':>14}  {'fastdatomic':>12}  {'ours / floor':>12}")
        for k, label in ((1, "p50 µs"), (64, "µs per tx")):
            f_, o = statistics.median(rows[k][0]) * 1e6, statistics.median(rows[k][1]) * 1e6
            print(f"{k:>9}  {f_:>8.1f} {label:<9}{o:>8.1f}  {o / f_:>12.2f}")
    finally:
        if floor is not None:
            floor.close()
        if net is not None:
            net.stop_all()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", nargs=3, metavar=("DATA_DIR", "PORT_FILE", "PARENT_PID"),
                   help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    p.add_argument("--tx", type=int, default=1000,
                   help="sequential transactions per round; 4x as many at 64 in flight")
    args = p.parse_args(argv)
    if args.serve:
        data_dir, port_file, parent = args.serve
        serve(data_dir, port_file, int(parent))
    else:
        compare(args.rounds, args.tx)


if __name__ == "__main__":
    main()
