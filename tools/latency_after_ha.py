"""Latency after HA: what peers under load see when the active transactor dies or stalls.

    .venv/bin/python tools/latency_after_ha.py --peers 4 --heartbeat-msec 1000 \\
        --fault kill --warmup 5 --after 10 --rounds 5 --out bench/results/ha-kill.json

The tool starts LMDB storage (a temporary data-dir unless ``--data-dir``), two transactors
on it (the first becomes active, the second standby; each with its own ``ping-port``), and
``--peers`` peer processes (``tools/ha_peer.py``), each running a steady transaction load
against one database and streaming a JSON line per transaction. Each round it lets the
load run ``--warmup`` seconds, then injects the fault into the active:

- ``kill``: SIGKILL, reaped at once (on one machine the standby also sees the pid is gone);
- ``kill-remote``: SIGKILL, but the process is reaped only after the takeover, so the
  standby's same-machine pid check cannot tell it died: the standby must wait out two
  heartbeats, as for an active on another machine that lost power;
- ``pause``: SIGSTOP (a GC pause, a frozen VM, a partition), SIGCONT once the standby has
  taken over; the old active must then exit with status 3 and commit nothing.

It keeps the load ``--after`` seconds after the takeover, restarts the dead transactor as
the new standby, and goes on with the next round. Every time is ``CLOCK_MONOTONIC`` (one
clock for all processes of a Linux machine). Definitions, per round:

- **fault**: the instant the signal is sent;
- **takeover**: the tool sees the lease epoch change (polled every ``--poll-msec``);
  **detection time** = takeover - fault;
- **activation**: the new active prints its ``System started`` banner (it serves peers);
- **peer recovery time** (per peer) = fault -> that peer *receives* its first
  acknowledgement through the new active (a connection of the new epoch), whether that
  acknowledges a retry of the transaction caught by the fault or a new one;
- **before**: transactions submitted at least ``--settle`` s after the round's standby was
  ready and finished before the fault (steady state); **after**: transactions submitted in
  ``[takeover, takeover + after)``; **straddling**: submitted before the takeover and
  finished after the fault (in flight across it, or sent into the gap): reported on their
  own, not in either percentile set. Latency = end of the last attempt - first submit.

At the end it stops the load and checks storage: every acknowledged transaction is in the
log exactly once at the ``t`` it was acknowledged with, nothing definitely-failed is
present, and every unknown outcome is resolved through its ``tx_id``. It prints a summary,
writes the JSON result to ``--out`` and a PNG timeline next to it (same name, ``.png``).

Everything is bounded: each wait has a timeout, ``--max-seconds`` caps the whole run, and
every child runs in its own process group, is killed on exit (also on Ctrl-C or an error),
and dies with the tool even if the tool itself is killed (``PR_SET_PDEATHSIG``). Only
loopback addresses are used.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_SCRIPT = os.path.join(ROOT, "tools", "ha_peer.py")
DB_NAME = "load"
SCHEMA = """[{:db/ident :load/peer :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
             {:db/ident :load/seq :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
             {:db/ident :load/uid :db/valueType :db.type/uuid :db/cardinality :db.cardinality/one
              :db/unique :db.unique/identity}]"""
TARGET_AFTER_RATIO = 2.0          # issue 6: p99 in the 10 s after takeover <= 2 x steady-state p99
EXIT_FENCED = 3


def target_recovery_p99(hb: float) -> float:
    """Issue 6: peer recovery p99 <= 2 x heartbeat + 250 ms (Datomic documents 2 x hb + 1 s)."""
    return 2 * hb + 0.25


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ToolError(Exception):
    """The run could not go on (a process did not start, a takeover did not happen...)."""


# --- child processes ----------------------------------------------------------------------

class Child:
    """A child process in its own process group, with a thread reading its stdout lines."""

    all: list["Child"] = []

    def __init__(self, name, argv, log_path, stdin=False, env=None):
        self.name = name
        self.log = open(log_path, "a", buffering=1)
        self.proc = subprocess.Popen(
            [sys.executable, PEER_SCRIPT, "--exec", *argv], cwd=ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self.log, start_new_session=True, env={**os.environ, **(env or {})})
        Child.all.append(self)
        self.reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self.reader.start()

    @property
    def pid(self):
        return self.proc.pid

    def _read(self):
        for raw in self.proc.stdout:
            self.on_line(now(), raw)

    def on_line(self, at, raw):
        self.log.write(raw.decode("utf-8", "replace"))

    def signal(self, sig):
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill_group(self):
        """SIGKILL the whole process group (works on stopped processes too) and reap."""
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    @classmethod
    def kill_all(cls):
        for c in reversed(cls.all):
            c.kill_group()
            try:
                c.log.close()
            except Exception:
                pass


class Transactor(Child):
    """A transactor process; ``banner_at`` is when it printed ``System started``."""

    def __init__(self, name, config_path, ping_port, log_path):
        self.config_path, self.ping_port = config_path, ping_port
        self.banner_at = None
        self.started = threading.Event()
        super().__init__(name, [sys.executable, "-m", "fastdatomic.transactor.server", config_path],
                         log_path)

    def on_line(self, at, raw):
        line = raw.decode("utf-8", "replace")
        self.log.write(line)
        if line.startswith("System started") and not self.started.is_set():
            self.banner_at = at
            self.started.set()

    def health(self, timeout=0.5):
        """``(status, role)`` of ``GET /health``, or ``(None, None)`` if it does not answer."""
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.ping_port, timeout=timeout)
            c.request("GET", "/health")
            r = c.getresponse()
            body = r.read()
            c.close()
            try:
                role = json.loads(body).get("role")
            except ValueError:
                role = None
            return r.status, role
        except OSError:
            return None, None


class Peer(Child):
    """A load peer process (``tools/ha_peer.py``): its transaction records and events."""

    def __init__(self, idx, args, data_dir, log_path):
        import orjson
        self.idx = idx
        self.loads = orjson.loads
        self.txs: list[dict] = []
        self.events: list[dict] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error = None
        super().__init__(f"peer{idx}", [
            sys.executable, PEER_SCRIPT, "--data-dir", data_dir, "--db", DB_NAME,
            "--peer", str(idx), "--rate", str(args.rate), "--attempt-timeout",
            str(args.attempt_timeout), "--give-up", str(args.give_up)], log_path, stdin=True)

    def on_line(self, at, raw):
        try:
            msg = self.loads(raw)
        except ValueError:
            self.log.write(raw.decode("utf-8", "replace"))
            return
        ev = msg.get("ev")
        if ev == "tx":
            self.txs.append(msg)
            return
        self.events.append(msg)
        if ev == "ready":
            self.ready.set()
        elif ev == "done":
            self.done.set()
        elif ev == "error":
            self.error = msg.get("error")
            self.ready.set()
            self.done.set()

    def stop(self):
        try:
            self.proc.stdin.write(b"stop\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass


# --- the lease watcher ------------------------------------------------------------------------

class EpochWatch(threading.Thread):
    """Polls the lease in storage: ``changes`` is ``[(time, epoch)]`` (epoch changes),
    ``beats`` is ``[(time, epoch, counter)]`` (every heartbeat seen)."""

    def __init__(self, storage, poll):
        super().__init__(name="epoch-watch", daemon=True)
        import orjson
        from fastdatomic.transactor.lease import LEASE, LEASE_EPOCH
        self.storage, self.key, self.lease_key, self.poll = storage, LEASE_EPOCH, LEASE, poll
        self.loads = orjson.loads
        self.changes: list[tuple[float, int]] = []
        self.beats: list[tuple[float, int, int]] = []
        self.changed = threading.Condition()
        self.stopped = False

    def epoch(self):
        raw = self.storage.get_record(self.key)
        return None if raw is None else int(raw)

    def run(self):
        last = last_lease = None
        while not self.stopped:
            e = self.epoch()
            raw = self.storage.get_record(self.lease_key)
            t = now()
            if raw != last_lease and raw is not None:
                lease = self.loads(raw)
                self.beats.append((t, lease.get("epoch"), lease.get("counter")))
                last_lease = raw
            if e != last:
                with self.changed:
                    self.changes.append((t, e))
                    self.changed.notify_all()
                last = e
            time.sleep(self.poll)

    def last_beat_before(self, at, epoch):
        """When the last heartbeat of ``epoch`` before ``at`` was seen (``None`` if none)."""
        ts = [t for t, e, c in self.beats if e == epoch and t <= at]
        return ts[-1] if ts else None

    def beat_gaps(self, start, end, epoch):
        """Spacing (s) of consecutive heartbeats of ``epoch`` seen in ``[start, end)``."""
        ts = [t for t, e, c in self.beats if e == epoch and start <= t < end]
        return [b - a for a, b in zip(ts, ts[1:])]

    def current(self):
        return self.changes[-1][1] if self.changes else None

    def wait_beyond(self, epoch, timeout, since):
        """``(time, epoch)`` when the epoch was first seen above ``epoch`` after ``since``
        (``(None, None)`` on timeout)."""
        deadline = now() + timeout
        with self.changed:
            while True:
                for t, e in self.changes:
                    if t >= since and e is not None and e > epoch:
                        return t, e
                left = deadline - now()
                if left <= 0:
                    return None, None
                self.changed.wait(left)


# --- statistics -----------------------------------------------------------------------------

def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list (``None`` if empty)."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def latency_stats(txs):
    lat = sorted((t["end"] - t["sub"]) * 1000.0 for t in txs)
    return {"n": len(lat), "p50_ms": _r(pct(lat, 50)), "p90_ms": _r(pct(lat, 90)),
            "p99_ms": _r(pct(lat, 99)), "max_ms": _r(lat[-1] if lat else None),
            "mean_ms": _r(sum(lat) / len(lat) if lat else None)}


def dist(vals, unit=1.0):
    v = sorted(x * unit for x in vals if x is not None)
    return {"n": len(v), "min": _r(v[0] if v else None, 4), "p50": _r(pct(v, 50), 4),
            "p99": _r(pct(v, 99), 4), "max": _r(v[-1] if v else None, 4),
            "mean": _r(sum(v) / len(v) if v else None, 4)}


def _r(x, nd=3):
    return None if x is None else round(x, nd)


def counts(txs):
    c = {"acknowledged": 0, "unknown": 0, "failed": 0, "retried": 0, "duplicate_acks": 0}
    for t in txs:
        c[{"ack": "acknowledged", "unknown": "unknown"}.get(t["outcome"], "failed")] += 1
        c["retried"] += bool(t["att"])
        c["duplicate_acks"] += bool(t.get("dup"))
    return c


# --- the run --------------------------------------------------------------------------------

def write_config(work, data_dir, name, args, ping_port):
    props = {
        "protocol": "dev", "host": "127.0.0.1", "port": "0", "data-dir": data_dir,
        "log-dir": os.path.join(work, f"{name}-log"), "pid-file": os.path.join(work, f"{name}.pid"),
        "heartbeat-interval-msec": str(args.heartbeat_msec),
        "encrypt-channel": "true" if args.encrypt_channel else "false",
        "ping-host": "127.0.0.1", "ping-port": str(ping_port),
    }
    path = os.path.join(work, f"{name}.properties")
    with open(path, "w") as f:
        f.write("# written by tools/latency_after_ha.py\n")
        for k, v in props.items():
            f.write(f"{k}={v}\n")
    return path


def wait_for(pred, timeout, what, interval=0.01):
    deadline = now() + timeout
    while True:
        v = pred()
        if v:
            return v
        if now() > deadline:
            raise ToolError(f"{what}: not within {timeout} s")
        time.sleep(interval)


class Run:
    def __init__(self, args):
        self.args = args
        self.hb = args.heartbeat_msec / 1000.0
        self.rounds: list[dict] = []
        self.notes: list[str] = []

    def log(self, msg):
        if not self.args.quiet:
            print(f"[{now() - self.t0:7.2f}] {msg}", flush=True)

    def start_transactor(self, name):
        port = self.ping_ports[name]
        cfg = write_config(self.work, self.data_dir, name, self.args, port)
        return Transactor(name, cfg, port, os.path.join(self.work, f"{name}.out"))

    def wait_standby(self, tx, timeout=60.0):
        """Until ``tx`` answers 503 on /health (it is up and watching the lease)."""
        def ready():
            if tx.proc.poll() is not None:
                raise ToolError(f"transactor {tx.name} exited with status {tx.proc.returncode} "
                                f"while starting as standby (see {self.work}/{tx.name}.out)")
            return tx.health()[0] == 503
        wait_for(ready, timeout, f"transactor {tx.name} ready as standby", 0.02)
        return now()

    def execute(self):
        a = self.args
        self.t0 = now()
        self.work = tempfile.mkdtemp(prefix="fd-ha-")
        self.data_dir = os.path.abspath(a.data_dir) if a.data_dir else os.path.join(self.work, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.ping_ports = {"a": free_port(), "b": free_port()}
        self.log(f"work dir {self.work}, data-dir {self.data_dir}")
        txs = {"a": self.start_transactor("a")}
        if not txs["a"].started.wait(60):
            raise ToolError(f"transactor a did not start (see {self.work}/a.out)")
        active, standby_name = txs["a"], "b"
        txs["b"] = self.start_transactor("b")
        import fastdatomic as fd
        from fastdatomic.peer import shutdown_peers
        from fastdatomic.storage import open_storage
        uri = f"fastdatomic:dev://{self.data_dir}/{DB_NAME}"
        fd.create_database(uri)
        fd.connect(uri).transact(SCHEMA, timeout=30)
        shutdown_peers()
        self.storage = open_storage("dev", path=self.data_dir)
        watch = self.watch = EpochWatch(self.storage, a.poll_msec / 1000.0)
        watch.start()
        ready_at = self.wait_standby(txs["b"])
        self.log(f"active a (pid {active.pid}), standby b (pid {txs['b'].pid}); starting {a.peers} peers")
        self.peers = [Peer(i, a, self.data_dir, os.path.join(self.work, f"peer{i}.out"))
                      for i in range(a.peers)]
        for p in self.peers:
            if not p.ready.wait(60) or p.error:
                raise ToolError(f"peer {p.idx} did not start: {p.error or 'timeout'} "
                                f"(see {self.work}/peer{p.idx}.out)")
        ready_at = max(ready_at, now())
        for r in range(1, a.rounds + 1):
            standby = txs[standby_name]
            info = self.round(r, active, standby, ready_at)
            self.rounds.append(info)
            # The dead one comes back as the new standby: there are always two.
            dead_name = active.name
            active, standby_name = standby, dead_name
            if r < a.rounds or a.restart_last:
                txs[dead_name] = self.start_transactor(dead_name)
                ready_at = self.wait_standby(txs[dead_name])
                self.log(f"transactor {dead_name} restarted as standby (pid {txs[dead_name].pid})")
        self.log("stopping the load")
        for p in self.peers:
            p.stop()
        for p in self.peers:
            if not p.done.wait(a.give_up + 15):
                self.notes.append(f"peer {p.idx} did not stop in time; killed")
                p.kill_group()
        watch.stopped = True
        return active

    def round(self, r, active, standby, ready_at):
        a = self.args
        fault_kind = a.fault
        start_epoch = self.watch.epoch()
        wait_until = ready_at + a.warmup
        while now() < wait_until:
            self._check_alive()
            time.sleep(min(0.1, max(0.0, wait_until - now())))
        old_epoch = self.watch.epoch()
        status, role = active.health()
        if old_epoch != start_epoch or status != 200:
            raise ToolError(f"round {r}: FALSE FAILOVER before the fault: the lease epoch went from "
                            f"{start_epoch} to {old_epoch} under steady load; {active.name} answers "
                            f"/health {status} {role} (see {self.work}/*-log/transactor.log)")
        self.log(f"round {r}: {fault_kind} active {active.name} (pid {active.pid}, epoch {old_epoch})")
        sig = signal.SIGSTOP if fault_kind == "pause" else signal.SIGKILL
        fault_at = now()
        active.signal(sig)
        if fault_kind == "kill":
            active.proc.wait(10)
        blocked = None
        if fault_kind == "pause":
            takeover_at, new_epoch = self.watch.wait_beyond(old_epoch, a.pause_max, fault_at)
            if takeover_at is None:
                # The standby could not take over while the active was stopped: say where
                # it waits (its main thread's kernel wait channel), then wake the active.
                blocked = {"waited_s": a.pause_max, "standby_main_thread": _where(standby.pid),
                           "paused_active_threads": _threads(active.pid)}
                self.log(f"round {r}: NO takeover during {a.pause_max} s of pause; standby main "
                         f"thread: {blocked['standby_main_thread']}; sending SIGCONT")
                blocked["sigcont_at"] = now() - fault_at
                active.signal(signal.SIGCONT)
        if blocked is not None or fault_kind != "pause":
            takeover_at, new_epoch = self.watch.wait_beyond(old_epoch, 10 * self.hb + 20, fault_at)
        if takeover_at is None:
            raise ToolError(f"round {r}: no takeover within {10 * self.hb + 20} s of the fault")
        if not standby.started.wait(30):
            raise ToolError(f"round {r}: the new active {standby.name} took the lease but did "
                            "not start serving within 30 s")
        health_at = None
        try:
            wait_for(lambda: standby.health()[0] == 200, 10, "new active /health 200", 0.005)
            health_at = now()
        except ToolError as e:
            self.notes.append(f"round {r}: {e}")
        old = {"name": active.name, "pid": active.pid, "epoch": old_epoch}
        if fault_kind == "kill-remote":
            active.proc.wait(10)     # reaped only now: the standby could not see it was gone
        if fault_kind == "pause":
            # Wake the deposed active: whatever it had in flight must be refused by storage.
            if blocked is None:
                old["sigcont_at"] = now() - fault_at
                active.signal(signal.SIGCONT)
            else:
                old["sigcont_at"] = blocked["sigcont_at"]
            try:
                active.proc.wait(max(10.0, 5 * self.hb))
            except subprocess.TimeoutExpired:
                self.notes.append(f"round {r}: the paused active {active.name} did not exit "
                                  "after SIGCONT; killed")
                active.kill_group()
            old.update(self._fenced_in_log(active.name, old_epoch))
        old["exit_status"] = active.proc.returncode
        if fault_kind == "pause":
            old["exited_fenced"] = active.proc.returncode == EXIT_FENCED
        self.log(f"round {r}: takeover by {standby.name} (epoch {new_epoch}) "
                 f"{(takeover_at - fault_at) * 1000:.0f} ms after the fault; old exit {old['exit_status']}")
        end_at = takeover_at + a.after
        while now() < end_at:
            self._check_alive()
            time.sleep(min(0.1, max(0.0, end_at - now())))
        if self.watch.epoch() != new_epoch:
            raise ToolError(f"round {r}: FALSE FAILOVER after the takeover: the lease epoch moved "
                            f"from {new_epoch} to {self.watch.epoch()} with no fault injected")
        return {"round": r, "fault": fault_kind, "old_active": old, "new_active": standby.name,
                "old_epoch": old_epoch, "new_epoch": new_epoch, "takeover_blocked": blocked,
                "_abs": {"ready": ready_at, "fault": fault_at, "takeover": takeover_at,
                         "last_beat": self.watch.last_beat_before(fault_at, old_epoch),
                         "beat_gaps": self.watch.beat_gaps(ready_at, fault_at, old_epoch),
                         "banner": standby.banner_at, "health": health_at, "end": end_at}}

    def _fenced_in_log(self, name, epoch):
        """What the deposed transactor logged after waking: its ``FENCED`` line and how many
        of its writes storage refused (its log is appended to by every life of ``name``)."""
        path = os.path.join(self.work, f"{name}-log", "transactor.log")
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return {}
        mine = f"at epoch {epoch}"
        start = max((i for i, ln in enumerate(lines) if "took the lease" in ln and mine in ln),
                    default=0)
        lines = lines[start:]
        fenced = [ln for ln in lines if "FENCED" in ln]
        return {"fenced_line": fenced[-1][-300:] if fenced else None,
                "stale_writes_rejected": sum("stale write rejected" in ln for ln in lines)}

    def _check_alive(self):
        for p in self.peers:
            if p.error:
                raise ToolError(f"peer {p.idx} failed: {p.error}")
            if p.proc.poll() is not None and not p.done.is_set():
                raise ToolError(f"peer {p.idx} exited with status {p.proc.returncode} "
                                f"(see {self.work}/peer{p.idx}.out)")


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _where(pid):
    """Where a process's main thread waits: state, kernel wait channel, kernel stack."""
    stat = _read(f"/proc/{pid}/stat") or ""
    stack = _read(f"/proc/{pid}/task/{pid}/stack")
    return {"state": stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else None,
            "wchan": _read(f"/proc/{pid}/task/{pid}/wchan"),
            "kernel_stack": stack.splitlines()[:6] if stack else None}


_SYSCALLS = {"0": "read", "1": "write", "7": "poll", "17": "pread64", "18": "pwrite64",
             "23": "select", "35": "nanosleep", "74": "fsync", "75": "fdatasync", "202": "futex",
             "230": "clock_nanosleep", "232": "epoll_wait", "281": "epoll_pwait",
             "26": "msync", "270": "pselect6"}     # x86_64


def _threads(pid):
    """What each thread of a (stopped) process was doing: ``{tid: "syscall / wchan"}``."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    out = {}
    for tid in sorted(tids, key=int):
        sc = (_read(f"/proc/{pid}/task/{tid}/syscall") or "?").split()
        name = _SYSCALLS.get(sc[0], sc[0]) if sc else "?"
        out[tid] = f"{name} / {_read(f'/proc/{pid}/task/{tid}/wchan')}"
    return out


# --- analysis -------------------------------------------------------------------------------

def analyse(run: Run, integrity: dict) -> dict:
    a = run.args
    all_txs = [t for p in run.peers for t in p.txs]
    rounds = []
    agg_before, agg_after, agg_strad, agg_recovery = [], [], [], []
    for info in run.rounds:
        ab = info.pop("_abs")
        fault, takeover, end = ab["fault"], ab["takeover"], ab["end"]
        rel = lambda x: None if x is None else round(x - fault, 4)   # noqa: E731
        before = [t for t in all_txs if t["outcome"] == "ack" and t["sub"] >= ab["ready"] + a.settle
                  and t["end"] < fault]
        after = [t for t in all_txs if takeover <= t["sub"] < end]
        strad = [t for t in all_txs if ab["ready"] <= t["sub"] < takeover and t["end"] >= fault]
        before_win = max(1e-9, fault - (ab["ready"] + a.settle))
        peers = {}
        for p in run.peers:
            first = min((t for t in p.txs if t["outcome"] == "ack" and t["end"] >= fault
                         and (t["epoch"] or 0) >= info["new_epoch"]),
                        key=lambda t: t["end"], default=None)
            lost = min((e["at"] for e in p.events if e["ev"] == "lost" and e["at"] >= fault - 0.001),
                       default=None)
            conn = min((e["at"] for e in p.events if e["ev"] == "connected"
                        and (e.get("epoch") or 0) >= info["new_epoch"] and e["at"] >= fault),
                       default=None)
            caught = [t for t in strad if t["peer"] == p.idx]
            peers[str(p.idx)] = {
                "recovery_s": rel(first["end"]) if first else None,
                "first_ack": None if first is None else {
                    "seq": first["seq"], "submitted_s": rel(first["sub"]), "duplicate": first["dup"],
                    "attempts": len(first["att"]) + 1,
                    "last_attempt_s": rel(first["att"][-1][1]) if first["att"] else rel(first["sub"])},
                "lost_s": rel(lost), "connected_s": rel(conn),
                "straddling": len(caught),
            }
            if first:
                agg_recovery.append(first["end"] - fault)
        rec = [v["recovery_s"] for v in peers.values()]
        bst, ast = latency_stats(before), latency_stats([t for t in after if t["outcome"] == "ack"])
        ratio = (ast["p99_ms"] / bst["p99_ms"]) if ast["p99_ms"] and bst["p99_ms"] else None
        rounds.append({
            **info, "_fault_abs": fault, "_beat_gaps": ab["beat_gaps"],
            "times_s": {"ready": rel(ab["ready"]), "fault": 0.0, "takeover": rel(takeover),
                        "banner": rel(ab["banner"]), "health_200": rel(ab["health"]),
                        "end": rel(end)},
            "detection_s": rel(takeover),
            # The standby's part of detection: it may take over 2 heartbeat intervals after
            # the last heartbeat it saw (plus its poll); the rest is where the fault fell.
            "last_heartbeat_s": rel(ab["last_beat"]),
            "takeover_after_last_heartbeat_s": None if ab["last_beat"] is None
            else round(takeover - ab["last_beat"], 4),
            "heartbeat_spacing_s": dist(ab["beat_gaps"]),
            "activation_s": None if ab["banner"] is None else round(ab["banner"] - takeover, 4),
            "peers": peers,
            "recovery_s": dist(rec),
            "recovered_peers": sum(v is not None for v in rec),
            "before": {**bst, "throughput_tps": round(len(before) / before_win, 1),
                       "window_s": round(before_win, 3)},
            "after": {**ast, "throughput_tps": round(
                sum(1 for t in all_txs if t["outcome"] == "ack" and takeover <= t["end"] < end) / a.after, 1),
                "window_s": a.after},
            "after_p99_ratio": _r(ratio),
            "straddling": {**latency_stats(strad), "outcomes": counts(strad)},
            "counts": counts([t for t in all_txs if ab["ready"] <= t["sub"] < end]),
        })
        agg_before += before
        agg_after += [t for t in after if t["outcome"] == "ack"]
        agg_strad += strad
    bst, ast = latency_stats(agg_before), latency_stats(agg_after)
    ratio = (ast["p99_ms"] / bst["p99_ms"]) if ast["p99_ms"] and bst["p99_ms"] else None
    det = [r["detection_s"] for r in rounds]
    rec_all = dist(agg_recovery)
    peers_expected = a.peers * len(rounds)
    target_rec = target_recovery_p99(run.hb)
    aggregate = {
        "rounds": len(rounds),
        "detection_s": dist(det),
        "takeover_after_last_heartbeat_s": dist([r["takeover_after_last_heartbeat_s"] for r in rounds]),
        "heartbeat_spacing_s": dist([g for r in rounds for g in r.pop("_beat_gaps")]),
        "activation_s": dist([r["activation_s"] for r in rounds]),
        "recovery_s": rec_all,
        "recovered": f"{len(agg_recovery)}/{peers_expected}",
        "peer_lost_after_fault_s": dist([p["lost_s"] for r in rounds for p in r["peers"].values()]),
        "peer_connected_after_fault_s": dist([p["connected_s"] for r in rounds for p in r["peers"].values()]),
        "before": bst, "after": ast, "after_p99_ratio": _r(ratio),
        "before_throughput_tps": _r(sum(r["before"]["throughput_tps"] for r in rounds) / max(1, len(rounds)), 1),
        "after_throughput_tps": _r(sum(r["after"]["throughput_tps"] for r in rounds) / max(1, len(rounds)), 1),
        "straddling": {**latency_stats(agg_strad), "outcomes": counts(agg_strad)},
        "counts": counts(all_txs),
        "old_active_exit_status": [r["old_active"]["exit_status"] for r in rounds],
        "stale_writes_rejected": sum(r["old_active"].get("stale_writes_rejected") or 0 for r in rounds),
        "takeover_blocked_rounds": [r["round"] for r in rounds if r["takeover_blocked"]],
    }
    targets = {
        "recovery_p99_s": {"target": target_rec, "measured": rec_all["p99"],
                           "met": rec_all["p99"] is not None and rec_all["p99"] <= target_rec
                           and len(agg_recovery) == peers_expected},
        "after_p99_ratio": {"target": TARGET_AFTER_RATIO, "measured": _r(ratio),
                            "met": ratio is not None and ratio <= TARGET_AFTER_RATIO},
    }
    return {"rounds": rounds, "aggregate": aggregate, "targets": targets, "integrity": integrity}


def check_integrity(run: Run) -> dict:
    """Every acknowledged transaction is in storage exactly once, at its acknowledged ``t``."""
    from fastdatomic._core.codec import INDEX_EAVT, decode_key
    from fastdatomic._core.logrec import decode_log
    from fastdatomic.db import catalog
    from fastdatomic.db.schema import DB_TX_UUID
    from fastdatomic.ids import tx_to_t
    st = run.storage
    # The writer may still be publishing the last acks' commits: storage has them already.
    db = catalog.load_database(st, DB_NAME)
    a_uid = db.entid(":load/uid")
    uid_ts: dict[str, list[int]] = {}     # load uid -> t of every log transaction asserting it
    txid_ts: dict[str, list[int]] = {}    # tx_id -> t of every log transaction carrying it
    n_log = 0
    for t, rec in st.log_range(db.db_id, None, db.basis_t + 1):
        n_log += 1
        _, _, keys, _ = decode_log(rec)
        for k in keys:
            d = decode_key(INDEX_EAVT, k)
            if not d.added:
                continue
            if d.a == a_uid:
                uid_ts.setdefault(str(d.v), []).append(tx_to_t(d.tx))
            elif d.a == DB_TX_UUID:
                txid_ts.setdefault(str(d.v), []).append(tx_to_t(d.tx))
    present = {str(d.v) for d in db.datoms("aevt", ":load/uid")}
    res = {"log_transactions": n_log, "acknowledged": 0, "acknowledged_lost": 0,
           "acknowledged_duplicated": 0, "acknowledged_wrong_t": 0, "failed": 0,
           "failed_present": 0, "unknown": 0, "unknown_resolved_committed": 0,
           "unknown_resolved_not_committed": 0, "load_entities": len(present),
           "unaccounted_entities": 0, "examples": []}
    seen = set()
    for p in run.peers:
        for tx in p.txs:
            uid = tx["uid"]
            seen.add(uid)
            n_uid, n_id = len(uid_ts.get(uid, ())), len(txid_ts.get(tx["tx_id"], ()))
            if tx["outcome"] == "ack":
                res["acknowledged"] += 1
                if uid not in present or n_uid == 0:
                    res["acknowledged_lost"] += 1
                    res["examples"].append({"lost": tx})
                elif n_uid > 1 or n_id > 1:
                    res["acknowledged_duplicated"] += 1
                    res["examples"].append({"duplicated": tx, "ts": uid_ts[uid]})
                elif uid_ts[uid][0] != tx["t"]:
                    res["acknowledged_wrong_t"] += 1
                    res["examples"].append({"wrong_t": tx, "log_t": uid_ts[uid]})
            elif tx["outcome"] == "unknown":
                res["unknown"] += 1
                committed = uid in present
                res["unknown_resolved_committed" if committed else "unknown_resolved_not_committed"] += 1
            else:
                res["failed"] += 1
                if uid in present and any(a[2] == "not-committed" for a in tx["att"]) and \
                        all(a[2] in ("not-committed", "busy") for a in tx["att"]):
                    res["failed_present"] += 1
                    res["examples"].append({"failed_present": tx})
    # Load transactions in storage that no peer reported (a peer's last line lost...).
    res["unaccounted_entities"] = len(present - seen)
    res["examples"] = res["examples"][:10]
    res["ok"] = (res["acknowledged_lost"] == 0 and res["acknowledged_duplicated"] == 0
                 and res["acknowledged_wrong_t"] == 0 and res["failed_present"] == 0)
    return res


# --- output ---------------------------------------------------------------------------------

def plot(run: Run, result: dict, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rounds = result["rounds"]
    fig, axes = plt.subplots(len(rounds), 1, figsize=(11, 3.2 * len(rounds) + 0.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, info in zip(axes[:, 0], rounds):
        fault = info["_fault_abs"]
        lo, hi = info["times_s"]["ready"], info["times_s"]["end"]
        takeover = info["times_s"]["takeover"]
        for p in run.peers:
            pts = {"ok": ([], []), "straddling": ([], []), "not acked": ([], [])}
            for t in p.txs:
                x = t["sub"] - fault
                if not lo <= x < hi:
                    continue
                kind = ("not acked" if t["outcome"] != "ack" else
                        "straddling" if x < takeover and t["end"] - fault >= 0 else "ok")
                pts[kind][0].append(x)
                pts[kind][1].append(max(t["end"] - t["sub"], 1e-5) * 1000.0)
            c = colours(p.idx % 10)
            ax.scatter(*pts["ok"], s=3, color=c, label=f"peer {p.idx}", linewidths=0)
            ax.scatter(*pts["straddling"], s=30, marker="^", color=c, edgecolors="black",
                       linewidths=0.5, zorder=3)
            if pts["not acked"][0]:
                ax.scatter(*pts["not acked"], s=30, marker="x", color=c, zorder=3)
        ax.axvline(0.0, color="red", lw=1.2, label=f"fault ({info['fault']})")
        if info["old_active"].get("sigcont_at") is not None:
            ax.axvline(info["old_active"]["sigcont_at"], color="orange", lw=1.0, ls=":",
                       label="SIGCONT to the old active")
        ax.axvline(info["times_s"]["takeover"], color="green", lw=1.2,
                   label=f"takeover (+{info['detection_s'] * 1000:.0f} ms)")
        if info["times_s"]["banner"] is not None:
            ax.axvline(info["times_s"]["banner"], color="green", lw=0.8, ls="--", label="new active serving")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylabel("latency (ms)")
        rec = info["recovery_s"]
        blocked = " - TAKEOVER BLOCKED until SIGCONT" if info.get("takeover_blocked") else ""
        ax.set_title(f"round {info['round']}{blocked}: detection {info['detection_s'] * 1000:.0f} ms, "
                     f"peer recovery max {rec['max'] * 1000 if rec['max'] is not None else float('nan'):.0f} ms, "
                     f"p99 before {info['before']['p99_ms']} ms / after {info['after']['p99_ms']} ms",
                     fontsize=9)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(loc="upper right", fontsize=7, markerscale=3, ncol=2)
    axes[-1, 0].set_xlabel("transaction submit time, s relative to the fault")
    cfg = result["config"]
    fig.suptitle(f"latency after HA: {cfg['peers']} peers x {cfg['rate']} tx/s, "
                 f"heartbeat {cfg['heartbeat_msec']} ms, fault {cfg['fault']}  "
                 f"(dots: transactions; triangles: in flight across the fault; x: not acknowledged)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(result: dict) -> str:
    ag, tg, it = result["aggregate"], result["targets"], result["integrity"]
    cfg = result["config"]
    ms = lambda d, k: "-" if d.get(k) is None else f"{d[k] * 1000:.0f} ms"  # noqa: E731
    lines = [f"latency after HA: fault={cfg['fault']} peers={cfg['peers']} rate={cfg['rate']}/s "
             f"hb={cfg['heartbeat_msec']} ms rounds={ag['rounds']}"]
    blocked = [r["round"] for r in result["rounds"] if r.get("takeover_blocked")]
    for r in result["rounds"]:
        rec = r["recovery_s"]
        act = "-" if r["activation_s"] is None else f"{r['activation_s'] * 1000:.0f} ms"
        lines.append(
            f"  round {r['round']}: detection {r['detection_s'] * 1000:.0f} ms, activation "
            f"{act}, recovery "
            f"p50 {ms(rec, 'p50')} max {ms(rec, 'max')} ({r['recovered_peers']}/{cfg['peers']} peers), "
            f"p99 before {r['before']['p99_ms']} ms after {r['after']['p99_ms']} ms, "
            f"straddling {r['straddling']['n']}, old active exit {r['old_active']['exit_status']}")
    b, a = ag["before"], ag["after"]
    lines += [
        f"detection       p50 {ms(ag['detection_s'], 'p50')}  max {ms(ag['detection_s'], 'max')}",
        f"peer recovery   p50 {ms(ag['recovery_s'], 'p50')}  p99 {ms(ag['recovery_s'], 'p99')}  "
        f"max {ms(ag['recovery_s'], 'max')}  ({ag['recovered']} peer-rounds)   "
        f"target p99 <= {tg['recovery_p99_s']['target'] * 1000:.0f} ms: "
        f"{'MET' if tg['recovery_p99_s']['met'] else 'MISSED'}",
        f"  standby       took over {ms(ag['takeover_after_last_heartbeat_s'], 'p50')} (p50), "
        f"{ms(ag['takeover_after_last_heartbeat_s'], 'max')} (max) after the last heartbeat it could see; "
        f"heartbeat spacing under load p50 {ms(ag['heartbeat_spacing_s'], 'p50')} "
        f"p99 {ms(ag['heartbeat_spacing_s'], 'p99')} max {ms(ag['heartbeat_spacing_s'], 'max')}",
        f"  breakdown     peer saw the loss p50 {ms(ag['peer_lost_after_fault_s'], 'p50')}, "
        f"takeover p50 {ms(ag['detection_s'], 'p50')}, new active serving +{ms(ag['activation_s'], 'p50')}, "
        f"peer connected to it p50 {ms(ag['peer_connected_after_fault_s'], 'p50')} "
        f"max {ms(ag['peer_connected_after_fault_s'], 'max')} (after the fault)",
        f"latency before  p50 {b['p50_ms']} ms  p99 {b['p99_ms']} ms  max {b['max_ms']} ms  "
        f"(n={b['n']}, {ag['before_throughput_tps']} tx/s)",
        f"latency after   p50 {a['p50_ms']} ms  p99 {a['p99_ms']} ms  max {a['max_ms']} ms  "
        f"(n={a['n']}, {ag['after_throughput_tps']} tx/s)   p99 ratio {ag['after_p99_ratio']} "
        f"(target <= {TARGET_AFTER_RATIO}: {'MET' if tg['after_p99_ratio']['met'] else 'MISSED'})",
        f"straddling      n={ag['straddling']['n']}  p50 {ag['straddling']['p50_ms']} ms  "
        f"max {ag['straddling']['max_ms']} ms",
        f"transactions    {ag['counts']['acknowledged']} acknowledged, {ag['counts']['unknown']} unknown, "
        f"{ag['counts']['failed']} failed, {ag['counts']['retried']} retried "
        f"({ag['counts']['duplicate_acks']} found already committed)",
        f"integrity       {it['acknowledged_lost']} acknowledged lost, {it['acknowledged_duplicated']} "
        f"duplicated, {it['acknowledged_wrong_t']} at a wrong t, {it['failed_present']} failed but "
        f"present, over {ag['rounds']} {cfg['fault']} faults ({it['acknowledged']} acknowledged): "
        f"{'OK' if it['ok'] else 'VIOLATED'}",
    ]
    if cfg["fault"] == "pause":
        lines.append(f"old active      exit status {ag['old_active_exit_status']} (3 = fenced); "
                     f"{ag['stale_writes_rejected']} of its writes refused by storage after it woke")
    if blocked:
        lines.append(f"TAKEOVER BLOCKED while the active was paused in rounds {blocked}: the standby "
                     "waited (see rounds[].takeover_blocked) until the tool woke the active")
    lines.append(f"machine         {result['machine']['cpus']} cpus, load average "
                 f"{result['machine']['loadavg_start'][0]} at the start, "
                 f"{result['machine']['loadavg_end'][0]} at the end")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="latency_after_ha", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=int, default=4, help="peer processes (default 4)")
    ap.add_argument("--rate", type=float, default=200.0,
                    help="transactions/s per peer, one at a time; 0 = as fast as possible (default 200)")
    ap.add_argument("--heartbeat-msec", type=int, default=1000, help="heartbeat-interval-msec (>= 1000)")
    ap.add_argument("--fault", choices=("kill", "kill-remote", "pause"), default="kill")
    ap.add_argument("--warmup", type=float, default=5.0, help="s of steady load before each fault")
    ap.add_argument("--after", type=float, default=10.0, help="s of load measured after each takeover")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="s after a (re)started standby is ready before the steady-state window opens")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--pause-max", type=float,
                    help="pause: s to wait for a takeover before waking the active anyway "
                         "(default 4 x heartbeat + 1)")
    ap.add_argument("--out", help="JSON result path (default bench/results/ha-<fault>-<timestamp>.json)")
    ap.add_argument("--data-dir", help="LMDB data-dir (default: a fresh temporary one)")
    ap.add_argument("--encrypt-channel", choices=("true", "false"), default="true",
                    help="transactor encrypt-channel (default true, as in the shipped config)")
    ap.add_argument("--poll-msec", type=float, default=2.0, help="lease epoch poll interval")
    ap.add_argument("--attempt-timeout", type=float, default=10.0, help="s per transact attempt")
    ap.add_argument("--give-up", type=float, default=30.0, help="s to keep retrying one transaction")
    ap.add_argument("--restart-last", action="store_true",
                    help="also restart the standby after the last round")
    ap.add_argument("--max-seconds", type=float, help="hard cap on the whole run (default: computed)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, data) afterwards")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    args.encrypt_channel = args.encrypt_channel == "true"
    if args.heartbeat_msec < 1000:
        ap.error("--heartbeat-msec must be >= 1000 (the transactor refuses less)")
    if args.peers < 1 or args.rounds < 1 or args.warmup <= args.settle or args.after <= 0:
        ap.error("need --peers >= 1, --rounds >= 1, --warmup > --settle, --after > 0")
    if not args.out:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        args.out = os.path.join(ROOT, "bench", "results", f"ha-{args.fault}-{stamp}.json")
    hb = args.heartbeat_msec / 1000.0
    args.pause_max = args.pause_max or 4 * hb + 1.0
    max_s = args.max_seconds or (60 + args.rounds * (args.warmup + args.after + 10 * hb + 45)
                                 + args.give_up + 30)

    run = Run(args)
    finished = threading.Event()

    def watchdog():
        if not finished.wait(max_s):
            print(f"latency_after_ha: still running after {max_s:.0f} s (--max-seconds): "
                  "killing every child and exiting", file=sys.stderr, flush=True)
            Child.kill_all()
            os._exit(2)
    threading.Thread(target=watchdog, daemon=True, name="watchdog").start()

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    # Started in the background by a shell, SIGINT arrives ignored: Ctrl-C must still clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 1
    try:
        wall = time.time()
        load_start = [round(x, 2) for x in os.getloadavg()]
        final_active = run.execute()
        integrity = check_integrity(run)
        result = analyse(run, integrity)
        result = {
            "tool": "tools/latency_after_ha.py", "format": 1,
            "command": " ".join([os.path.relpath(sys.executable, ROOT)
                                 if sys.executable.startswith(ROOT) else sys.executable,
                                 os.path.relpath(os.path.abspath(__file__), ROOT), *sys.argv[1:]]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wall)),
            "config": {k: getattr(args, k) for k in (
                "peers", "rate", "heartbeat_msec", "fault", "warmup", "after", "settle", "rounds",
                "encrypt_channel", "poll_msec", "attempt_timeout", "give_up")},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(), "loadavg_start": load_start,
                        "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
            "definitions": {
                "detection_s": "fault signal sent -> the tool sees the lease epoch change",
                "activation_s": "epoch change -> the new active prints 'System started'",
                "recovery_s": "fault -> the peer receives its first ack through a connection of "
                              "the new epoch",
                "before": "acked transactions submitted >= settle s after the standby was ready "
                          "and finished before the fault",
                "after": "acked transactions submitted in [takeover, takeover + after)",
                "straddling": "transactions submitted before the takeover that finished after "
                              "the fault (excluded from before/after)",
                "latency": "end of last attempt - first submit, ms (retries included)",
                "percentiles": "nearest rank",
            },
            **result,
            "notes": run.notes,
            "final_active": final_active.name,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        png = os.path.splitext(args.out)[0] + ".png"
        if not args.no_plot:
            plot(run, result, png)
            result["plot"] = os.path.basename(png)
        for info in result["rounds"]:
            info.pop("_fault_abs", None)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(summary(result))
        print(f"wrote {args.out}" + ("" if args.no_plot else f" and {png}"))
        status = 0 if result["integrity"]["ok"] else 1
    except ToolError as e:
        print(f"latency_after_ha: {e}", file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print("latency_after_ha: interrupted; cleaning up", file=sys.stderr)
        status = 130
    finally:
        finished.set()
        for c in Child.all:
            if isinstance(c, Transactor) and c.proc.returncode is None:
                c.signal(signal.SIGCONT)
        Child.kill_all()
        if getattr(run, "watch", None) is not None:
            run.watch.stopped = True
        work = getattr(run, "work", None)
        if work and (args.keep or status not in (0,)):
            print(f"work dir kept: {work}", file=sys.stderr)
        elif work:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
