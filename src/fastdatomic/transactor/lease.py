"""The lease: who is the active transactor, fenced by an epoch (ARCHITECTURE §4.1–4.3).

Two records in storage, both changed only by compare-and-set:

- ``lease``: orjson ``{epoch, counter, host, alt_host, port, secret, fingerprint, pid,
  released}``. The active transactor bumps ``counter`` every heartbeat interval (a CAS
  against the bytes it last wrote). Peers read it to find and authenticate to the active.
- ``lease/epoch``: the epoch alone (ASCII digits). It changes only when a transactor takes
  the lease, and every data commit checks it in the same storage transaction, so a deposed
  transactor -- however long it was paused -- commits nothing.

Staleness is judged only on the observer's monotonic clock: a standby remembers when it
last saw ``counter`` change and takes over after two intervals without a change.

>>> from fastdatomic.storage import open_storage
>>> st = open_storage("mem")
>>> a = LeaseHolder(st, host="localhost", port=4334, heartbeat_msec=1000)
>>> a.try_acquire(), a.epoch, a.fence()
(True, 1, [('lease/epoch', b'1')])
>>> a.heartbeat(), read_lease(st)["counter"]
(True, 1)
>>> b = LeaseHolder(st, host="localhost", port=4335, heartbeat_msec=1000)
>>> b.try_acquire()                         # a's lease is fresh: b stays standby
False
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time

import orjson

__all__ = ["LEASE", "LEASE_EPOCH", "read_lease", "LeaseHolder"]

LEASE = "lease"
LEASE_EPOCH = "lease/epoch"
STUCK_AFTER = 0.1    # s a takeover CAS may wait on a frozen holder's write lock

log = logging.getLogger("fastdatomic.transactor")


def read_lease(storage) -> dict | None:
    """The current lease record, decoded, or ``None`` if no transactor ever started.

    >>> from fastdatomic.storage import open_storage
    >>> read_lease(open_storage("mem")) is None
    True
    """
    raw = storage.get_record(LEASE)
    return None if raw is None else orjson.loads(raw)


def _pid_namespace():
    # Same hostname is not enough (containers with host networking): pids are only
    # comparable inside one pid namespace.
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _is_local(lease) -> bool:
    """The holder is a process of this machine and pid namespace (its pid means something here)."""
    return (lease.get("node") == socket.gethostname() and bool(lease.get("pid"))
            and lease.get("pidns") == _pid_namespace())


def holder_is_dead(lease) -> bool:
    """The lease's holder is a process of this machine that is gone (kill -9, crash): it
    cannot heartbeat again, so a restarted transactor need not wait two intervals to be
    sure, and a peer need not wait for it to answer.

    >>> holder_is_dead({"node": "elsewhere", "pid": 1})    # not ours to judge
    False
    """
    if not _is_local(lease):
        return False
    try:
        os.kill(lease["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseHolder:
    """One transactor's view of the lease: acquire (or wait as standby), heartbeat, release.

    ``observe()`` is the standby's step: it reads the lease and returns how long (on this
    process's monotonic clock) the counter has not moved; ``try_acquire()`` takes the
    lease if it is absent, released, or stale for two heartbeat intervals.
    """

    def __init__(self, storage, *, host: str, port: int, heartbeat_msec: int,
                 alt_host: str | None = None, fingerprint: str | None = None):
        self.storage = storage
        self.host = host
        self.alt_host = alt_host
        self.port = port
        self.fingerprint = fingerprint
        self.heartbeat_msec = heartbeat_msec
        self.epoch = None            # set once acquired
        self.secret = None
        self.counter = 0
        self._raw = None             # the lease bytes we last wrote (heartbeat CAS expects them)
        self._seen = None            # (counter, epoch) last observed as standby
        self._seen_at = None         # monotonic time it last changed
        self.quiet = float("inf")    # seconds the holder's counter has not moved (standby)
        self.killed_stale = None     # pid of a frozen holder we had to kill to take over

    # --- standby side ----------------------------------------------------------

    def observe(self, raw: bytes | None = None) -> tuple[dict | None, float]:
        """``(lease, seconds since its counter last moved, on our own clock)``; ``raw`` is
        the lease record if the caller already read it.

        >>> from fastdatomic.storage import open_storage
        >>> h = LeaseHolder(open_storage("mem"), host="h", port=1, heartbeat_msec=1000)
        >>> h.observe()
        (None, inf)
        """
        if raw is None:
            raw = self.storage.get_record(LEASE)
        lease = None if raw is None else orjson.loads(raw)
        now = time.monotonic()
        if lease is None or lease.get("released"):
            self.quiet = float("inf")
            return lease, self.quiet
        key = (lease["counter"], lease["epoch"])
        if key != self._seen:
            self._seen, self._seen_at = key, now
        self.quiet = now - self._seen_at
        return lease, self.quiet

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds a live one; ``True`` if we are now active.
        ``self.quiet`` is then how long the holder's counter has not moved on our clock.

        A live lease is one whose counter moved within the last two heartbeat intervals
        of the holder's *declared* interval, as seen on our clock since we started watching.
        """
        raw = self.storage.get_record(LEASE)
        lease, quiet = self.observe(raw)
        if lease is not None and not lease.get("released") and not holder_is_dead(lease):
            limit = 2 * max(lease.get("heartbeat_msec", self.heartbeat_msec), 1000) / 1000.0
            if quiet < limit:
                return False
        old_epoch = self.storage.get_record(LEASE_EPOCH)
        epoch = (lease["epoch"] if lease else 0) + 1
        if old_epoch is not None and int(old_epoch) >= epoch:
            epoch = int(old_epoch) + 1
        secret = secrets.token_hex(32)
        new = self._record(epoch, 0, secret)
        ok = self._commit_unstuck(lease, records=[(LEASE, raw, new),
                                                  (LEASE_EPOCH, old_epoch, str(epoch).encode())])
        if not ok:
            return False   # another standby won the race
        self.epoch, self.secret, self.counter, self._raw = epoch, secret, 0, new
        return True

    def _commit_unstuck(self, lease, **commit) -> bool:
        """The takeover CAS. A stale holder that froze (SIGSTOP, a stuck VM) *inside* a
        storage write transaction keeps LMDB's writer lock, and the CAS would wait for it
        indefinitely. If the CAS has not finished within ``STUCK_AFTER`` and that holder is a
        process on this machine, kill it (it has missed two heartbeats and is deposed either
        way; the write it was in never commits). A holder elsewhere cannot be killed: then
        we wait, as for any storage. A holder frozen *outside* a write does not block the
        CAS, and when it wakes, its commits are refused by the epoch fence.
        """
        out = {}

        def run():
            try:
                out["ok"] = self.storage.commit(**commit)
            except BaseException as e:
                out["error"] = e
        th = threading.Thread(target=run, name="fd-lease-cas", daemon=True)
        th.start()
        th.join(STUCK_AFTER)
        if th.is_alive() and lease is not None and _is_local(lease) and lease["pid"] != os.getpid():
            log.warning("takeover CAS blocked for %.0f ms: the stale active (pid %d) froze inside a "
                        "storage write; killing it", STUCK_AFTER * 1000, lease["pid"])
            try:
                os.kill(lease["pid"], signal.SIGKILL)
                self.killed_stale = lease["pid"]
            except (ProcessLookupError, PermissionError):
                pass
        th.join()
        if "error" in out:
            raise out["error"]
        return out.get("ok", False)

    # --- active side -----------------------------------------------------------

    def _record(self, epoch, counter, secret, released=False) -> bytes:
        return orjson.dumps({
            "epoch": epoch, "counter": counter, "host": self.host, "alt_host": self.alt_host,
            "port": self.port, "secret": secret, "fingerprint": self.fingerprint,
            "heartbeat_msec": self.heartbeat_msec, "pid": os.getpid(),
            "node": socket.gethostname(), "pidns": _pid_namespace(), "released": released,
        })

    def fence(self) -> list:
        """The check every data commit carries: our epoch is still the current one."""
        return [(LEASE_EPOCH, str(self.epoch).encode())]

    def heartbeat(self) -> bool:
        """CAS the lease with ``counter+1``; ``False`` means we lost it (stop at once)."""
        new = self._record(self.epoch, self.counter + 1, self.secret)
        ok = self.storage.commit(records=[(LEASE, self._raw, new)], checks=self.fence())
        if ok:
            self.counter += 1
            self._raw = new
        return ok

    def release(self) -> bool:
        """Graceful stop: mark the lease released so a standby takes over at once."""
        if self.epoch is None:
            return False
        new = self._record(self.epoch, self.counter + 1, self.secret, released=True)
        return self.storage.commit(records=[(LEASE, self._raw, new)], checks=self.fence())
