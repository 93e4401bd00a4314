"""One peer process of the latency-after-HA tool (``tools/latency_after_ha.py``).

It connects to a ``dev`` database like any application would, runs a steady load of small
transactions (one at a time, each with a fresh ``tx_id``, at ``--rate`` per second or as
fast as it can with ``--rate 0``), retries transient failures idempotently with the same
``tx_id``, and streams one JSON line per transaction on stdout. Times are
``CLOCK_MONOTONIC`` seconds, which on Linux is one clock for every process of the machine,
so the tool can put them on one axis with the fault it injected.

Lines (``orjson``, one object each):

- ``{"ev": "ready", "pid": ...}`` once connected;
- ``{"ev": "tx", "peer", "seq", "uid", "tx_id", "sched", "sub", "end", "outcome", "t",
  "epoch", "dup", "att"}`` per transaction: ``sched`` is when the rate schedule wanted it
  sent, ``sub`` when the first attempt was submitted, ``end`` when the last attempt ended;
  ``outcome`` is ``ack``, ``unknown`` (given up while an attempt's outcome was unknown) or
  ``failed`` (definitely not committed, or refused); ``epoch`` is the lease epoch of the
  connection that delivered the ack; ``att`` lists the failed attempts as
  ``[start, end, outcome]``;
- ``{"ev": "lost", "at"}`` / ``{"ev": "connected", "at", "epoch"}``: the peer library lost its
  transactor connection / finished the handshake with a transactor (instrumentation of
  ``PeerSystem``, for the time breakdown; absent if its internals change);
- ``{"ev": "done", "n"}`` at the end.

The load stops on ``stop`` or end-of-file on stdin; the process dies with its parent
(``PR_SET_PDEATHSIG``), so an interrupted tool leaves nothing behind.

``python tools/ha_peer.py --exec ARGV...`` is a second, tiny mode: set the parent-death
signal and ``exec`` ARGV (the tool starts transactors through it; the pid stays the same).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def die_with_parent():
    """Ask the kernel to SIGKILL this process when the process that started it exits."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:       # the parent is already gone
        os._exit(1)


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class Out:
    """JSON lines on stdout from several threads."""

    def __init__(self):
        import orjson
        self._dumps = orjson.dumps
        self._lock = threading.Lock()
        self._w = sys.stdout.buffer

    def emit(self, obj):
        line = self._dumps(obj) + b"\n"
        with self._lock:
            try:
                self._w.write(line)
                self._w.flush()
            except (BrokenPipeError, ValueError):
                os._exit(1)     # the tool is gone


def instrument(out: Out):
    """Report connection loss and (re)connection of the peer library, without changing it."""
    try:
        from fastdatomic.peer import PeerSystem
        orig_connect, orig_fail = PeerSystem._connect, PeerSystem._fail_pending
    except (ImportError, AttributeError):
        return

    async def _connect(self, lease):
        r = await orig_connect(self, lease)
        out.emit({"ev": "connected", "at": now(), "epoch": self.epoch})
        return r

    def _fail_pending(self):
        out.emit({"ev": "lost", "at": now(), "pending": len(self.pending)})
        return orig_fail(self)

    PeerSystem._connect, PeerSystem._fail_pending = _connect, _fail_pending


def run_load(args, out: Out, stop: threading.Event):
    import uuid
    import fastdatomic as fd
    from fastdatomic import errors as E

    conn = fd.connect(f"fastdatomic:dev://{args.data_dir}/{args.db}")
    conn.db()
    out.emit({"ev": "ready", "pid": os.getpid(), "at": now()})
    period = 1.0 / args.rate if args.rate > 0 else 0.0
    next_at = now()
    seq = 0
    while not stop.is_set():
        if period:
            delay = next_at - now()
            if delay > 0:
                if stop.wait(delay):
                    break
        sched = next_at if period else now()
        seq += 1
        uid, tx_id = uuid.uuid4(), uuid.uuid4()
        tx = f'[{{:load/peer {args.peer} :load/seq {seq} :load/uid #uuid "{uid}"}}]'
        rec = {"ev": "tx", "peer": args.peer, "seq": seq, "uid": str(uid), "tx_id": str(tx_id),
               "sched": sched, "outcome": None, "t": None, "epoch": None, "dup": False, "att": []}
        sub = rec["sub"] = now()
        give_up = sub + args.give_up
        unknown = False
        while True:
            a0 = now()
            try:
                r = conn.transact(tx, tx_id=tx_id, timeout=args.attempt_timeout)
            except E.TransactorUnavailableError as e:
                outcome = (e.data or {}).get("outcome", "unknown")
            except E.BusyError:
                outcome = "busy"
            except TimeoutError:
                outcome = "unknown"     # sent, no answer in time
            except E.FastDatomicError as e:
                rec["att"].append([a0, now(), type(e).__name__])
                rec["outcome"], rec["error"] = "failed", str(e)[:300]
                break
            else:
                rec["outcome"], rec["t"] = "ack", r.t
                rec["epoch"] = getattr(conn.system, "epoch", None)
                rec["dup"] = bool(getattr(r, "duplicate", False))
                break
            t1 = now()
            rec["att"].append([a0, t1, outcome])
            unknown = unknown or outcome != "not-committed" and outcome != "busy"
            if t1 >= give_up:
                rec["outcome"] = "unknown" if unknown else "failed"
                break
            if outcome == "busy":
                time.sleep(0.01)
        rec["end"] = now()
        out.emit(rec)
        if period:
            # A steady rate, not a catch-up burst after a stall.
            next_at = max(next_at + period, rec["end"])
    out.emit({"ev": "done", "n": seq, "at": now()})


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--exec"]:
        die_with_parent()
        os.execv(argv[1], argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--peer", type=int, required=True)
    ap.add_argument("--rate", type=float, default=200.0, help="transactions/s (0: as fast as possible)")
    ap.add_argument("--attempt-timeout", type=float, default=10.0)
    ap.add_argument("--give-up", type=float, default=30.0,
                    help="s after the first attempt to stop retrying one transaction")
    args = ap.parse_args(argv)
    die_with_parent()
    out = Out()
    instrument(out)
    stop = threading.Event()

    def watch_stdin():
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()
    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        run_load(args, out, stop)
    except BaseException as e:     # say why, then exit: the tool reports it
        out.emit({"ev": "error", "at": now(), "error": f"{type(e).__name__}: {e}"})
        os._exit(1)
    os._exit(0)    # not the peer library's shutdown: its loop thread is a daemon anyway


if __name__ == "__main__":
    main()
