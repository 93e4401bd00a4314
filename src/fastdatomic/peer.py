"""The networked peer: connections to databases in ``dev`` storage through the transactor.

A peer process reads the lease in storage to find the active transactor, connects and
authenticates (the secret is in storage, never on the wire), subscribes to each database
it uses, and from then on receives every transaction's novelty in ``t`` order. Index
segments and the log it reads **straight from storage** (the LMDB environment), with an
LRU cache bounded by ``object-cache-max``. Queries run here, never in the transactor.

One background thread runs a uvloop event loop with one connection to the transactor,
shared by every database this process uses. User threads hand it requests through a deque,
waking it once per batch rather than once per request; transactions go as TRANSACT_BIN
(tx-data in the binary encoding of ``_core.txwire``) and come back as one ACKS frame per
group commit, after their novelty. The acks are answered before that novelty is applied:
the user threads they wake send their next transactions first, so the transactor commits
those while this peer applies the last group (a reader applies pending novelty itself, so
``db()`` after ``transact`` still includes it). When the transactor goes away the peer keeps
answering ``db()`` from its last value, watches the lease, and reconnects to whichever
transactor becomes active (ARCHITECTURE §4.6–4.8), with no action from application code.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import itertools
import concurrent.futures
import logging
import os
import secrets
import threading
import time
from operator import itemgetter

from fastdatomic import edn
from fastdatomic._core.frame import FrameDecoder, encode_frame, encode_frames
from fastdatomic._core.logrec import decode_log
from fastdatomic._core.txwire import EDN as _EDN, FORMAT_VERSION as _TX_WIRE_VERSION, TxWire
from fastdatomic._core.txcore import uuid4 as _uuid4
from fastdatomic.connection import TxFuture, TxReportQueue, _ConnectionCommon, _check_tx_id
from fastdatomic.db import catalog
from fastdatomic.db.report import TxReport, report_for_existing
from fastdatomic.db.schema import DB_TX_UUID
from fastdatomic.db.segments import SegmentStore
from fastdatomic import errors as E
from fastdatomic.transactor import protocol as P
from fastdatomic.transactor.lease import holder_is_dead, read_lease

__all__ = ["PeerSystem", "PeerConnection", "peer_system", "shutdown_peers"]

log = logging.getLogger("fastdatomic.peer")

DEFAULT_OBJECT_CACHE = 128 << 20
RECENT_REPORTS = 4096          # (db_before, db_after, keys) kept per database for tx reports
LEASE_POLL = 0.02              # s between lease reads while looking for an active transactor
CONNECT_WAIT = 30.0            # s a request waits for a transactor before failing (not committed)
SUBSCRIBE_WAIT = 5.0           # s connect() waits for its database's subscription to be live
SUBSCRIBE_RETRY = 0.02         # s between SUBSCRIBEs of a database the transactor has not published yet
DEFERRED_APPLY = 0.005         # s at most between answering acks and applying their novelty
YIELD_EVERY = 16               # requests queued for one wake-up of the loop thread between GIL yields
SYNC_INDEX_POLL = 0.05         # s between looks at the root in storage while sync_index waits
MAX_FRAME = 1 << 30

# tx-data in binary (TRANSACT_BIN); EDN's list type and name check keep it EDN's twin.
_TXWIRE = TxWire(edn.Form, edn.dumps)

_ERRORS_BY_KIND = {}
for _name in dir(E):
    _cls = getattr(E, _name)
    if isinstance(_cls, type) and issubclass(_cls, E.FastDatomicError):
        _ERRORS_BY_KIND.setdefault(_cls.kind, _cls)


def _error_from(payload: bytes) -> Exception:
    """Rebuild the transactor's error (same class and kind) from an ERROR payload."""
    try:
        msg = P.loads(payload, "ERROR")
    except E.ProtocolError as e:
        return e
    cls = getattr(E, msg.get("class", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, E.FastDatomicError)):
        cls = _ERRORS_BY_KIND.get(msg.get("kind"), E.FastDatomicError)
    data = msg.get("data") or {}
    if isinstance(msg.get("data_edn"), str):      # the data as it was (keywords, forms, values)
        try:
            data = edn.loads(msg["data_edn"], tags=edn.BYTES_TAGS)
        except E.FastDatomicError:
            pass
    err = cls(msg.get("message", "error"), data=data, hint=msg.get("hint"))
    if cls is E.FastDatomicError:
        err.kind = msg.get("kind", err.kind)
    return err


def _too_large(kind, nbytes, limit) -> Exception:
    """The error for a request larger than the transactor's ``max-frame-bytes`` (never sent)."""
    data = {"outcome": "not-committed", "bytes": nbytes, "max_frame_bytes": limit}
    what = P.KIND_NAMES.get(kind, kind)
    if kind in (P.TRANSACT, P.TRANSACT_BIN):
        return E.TxTooLargeError(
            f"transaction of {nbytes} bytes (its {what} request) exceeds the transactor's "
            f"max-frame-bytes {limit}: it was not sent (definitely not committed)", data=data,
            hint="split the transaction into smaller ones, or raise max-frame-bytes in the "
                 "transactor properties")
    return E.ProtocolError(f"{what} request of {nbytes} bytes exceeds the transactor's "
                           f"max-frame-bytes {limit}: it was not sent", data=data,
                           hint="raise max-frame-bytes in the transactor properties")


class _PeerDb:
    """This process's view of one database: the latest value plus recent reports."""

    def __init__(self, system, name, db):
        self.system = system
        self.name = name
        self.applied = db           # the value with every novelty record applied so far
        # Novelty received but not applied yet (log records, in t order). A group commit's
        # acks are answered before its novelty is applied, so the user threads they wake
        # can send their next transactions at once; the loop thread applies it after
        # sending those (or within DEFERRED_APPLY), and any reader first (``db``).
        self.pending: list[bytes] = []
        # t -> the report of a transaction acknowledged while its novelty was pending:
        # filled in when the novelty is applied.
        self.awaited: dict[int, _AwaitedTxReport] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        # t -> (db_before, db_after, keys), oldest first. An OrderedDict: dropping a plain
        # dict's first key again and again leaves a run of deleted slots that every
        # ``next(iter(d))`` walks (it was a tenth of the peer's time per transaction).
        self.recent: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self.queues: list[TxReportQueue] = []
        self.gone = None
        # Set once our SUBSCRIBE on the current connection is answered: from then on the
        # transactor streams this database's novelty to us, each transaction with its
        # tempids, rather than our reading it back from the log. ``subscribed_on`` is that
        # connection (one SUBSCRIBE per connection).
        self.subscribed = threading.Event()
        self.subscribed_on = None
        # t -> tempids of transactions whose novelty is on its way (TEMPIDS frames)
        self.tempids: dict[int, dict] = {}

    @property
    def db(self):
        """The latest value: novelty received so far is applied first (on this thread)."""
        if self.pending:
            self.apply_pending()
        return self.applied

    def apply(self, records):
        """Apply log records (bytes, as stored) in order, after any pending ones; older ones
        are skipped. ``t`` values are not contiguous (entity ids share the counter), so
        completeness comes from the stream itself: a (re)subscription starts at our basis
        and the transactor sends every record after it, in order."""
        with self.lock:
            self.pending.extend(records)
            self._apply_pending_locked()

    def defer(self, records):
        """Queue log records to apply later (``apply_pending``), in order (loop thread)."""
        with self.lock:
            self.pending.extend(records)

    def apply_pending(self):
        """Apply the novelty received so far (any thread)."""
        with self.lock:
            self._apply_pending_locked()

    def _apply_pending_locked(self):
        records, self.pending = self.pending, []
        if records:
            db = self.applied
            for rec in records:
                db = self._apply_one(db, rec)
            self.applied = db
            if self.awaited:
                # Passed without their novelty (not subscribed yet when they committed):
                # those reports read storage when read.
                for t in [t for t in self.awaited if t <= db.basis_t]:
                    del self.awaited[t]
            self.changed.notify_all()

    def await_report(self, t, tempids, tx_id):
        """The report of ``t``, acknowledged now (loop thread): complete if its novelty is
        applied already, else one filled in when it is; None if its novelty never came
        here (the caller then reads storage)."""
        with self.lock:
            if t <= self.applied.basis_t or not self.pending:
                return None
            if len(self.awaited) >= RECENT_REPORTS:
                self.awaited.clear()     # never applied (a lost connection): read storage
            report = self.awaited[t] = _AwaitedTxReport(self, t, tempids, tx_id)
            return report

    def stored_report(self, t, tx_id) -> TxReport:
        """The report of committed ``t`` from storage (what was not streamed to us, or a
        retry's earlier transaction): views of the latest value, caught up to ``t``."""
        if self.db.basis_t < t:
            self.catch_up(t)       # not subscribed when it committed: read storage, never wait
        return report_for_existing(self.system.storage, self.db, t, tx_id)

    def _apply_one(self, db, rec):
        t, next_n, keys, flags = decode_log(rec)
        if t <= db.basis_t:
            return db
        after = db.apply_keys(t, next_n, keys, flags)
        awaited = self.awaited.pop(t, None) if self.awaited else None
        if awaited is not None:
            awaited._fill(db, after, keys)    # acknowledged already: nobody asks again
        else:
            recent = self.recent
            recent[t] = (db, after, keys)
            if len(recent) > RECENT_REPORTS:
                recent.popitem(last=False)    # inserted in t order: the first is the oldest
        tempids = self.tempids.pop(t, None) if self.tempids else None
        if self.queues:
            # The tx id is on the transaction entity; the tempids came just before, from
            # the transactor (a log record has none: {} for what was read from the log).
            datoms = _datoms(keys)
            tx_id = next((d.v for d in datoms if d.a == DB_TX_UUID), None)
            report = TxReport(db, after, datoms, tempids or {}, t, tx_id)
            for q in tuple(self.queues):
                q.offer(report)
        return after

    def forget_reports(self, t):
        """Drop the kept reports up to ``t``: their acks have been read (one group commit's
        ACKS follows its novelty, before any later novelty), so nothing asks for them
        again. Values let go of this early die young, which keeps the garbage collector
        from walking thousands of them in every full collection."""
        recent = self.recent
        while recent and next(iter(recent)) <= t:
            recent.popitem(last=False)

    def adopt_index(self):
        """A new durable index is in storage: follow the root (log first, then trees)."""
        self.catch_up()

    def catch_up(self, target_t=None):
        """Bring this value up to the root in storage (no transactor needed)."""
        root, _ = catalog.read_root(self.system.storage, self.name)
        if target_t is not None and self.db.basis_t >= target_t and \
                root["index_basis_t"] <= self.applied.index_basis_t:
            return
        with self.lock:
            self._apply_pending_locked()
            db = catalog.advance(self.system.storage, self.applied, root)
            if db is not self.applied:
                self.applied = db
                self.changed.notify_all()

    def wait_for(self, t, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            self._apply_pending_locked()
            while self.applied.basis_t < t:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.changed.wait(left)
                self._apply_pending_locked()
        return True


class _PeerTxReport(TxReport):
    """A report whose datoms are decoded from the log record's keys only when read."""

    @property
    def tx_data(self):
        data = self._tx_data
        if data and type(data[0]) is bytes:
            data = self._tx_data = _datoms(data)
        return data


_BEFORE, _AFTER = TxReport.db_before, TxReport.db_after     # the base class's slots


class _AwaitedTxReport(_PeerTxReport):
    """The report of a transaction acknowledged before this peer applied its novelty:
    ``db_before``, ``db_after`` and ``tx_data`` are filled in when the novelty is applied,
    or on first read, which applies it."""

    def __init__(self, pdb, t, tempids, tx_id):
        # (not the base's __init__: db_before and db_after are read-only properties here)
        self._tx_data = None
        self.tempids, self.t, self.tx_id, self.duplicate = tempids, t, tx_id, False
        self._pdb = pdb

    def _fill(self, before, after, keys):
        _BEFORE.__set__(self, before)
        _AFTER.__set__(self, after)
        self._tx_data = keys
        self._pdb = None

    def _complete(self):
        pdb = self._pdb
        if pdb is not None:
            pdb.apply_pending()
            if self._pdb is not None:
                # Its novelty never came here (the connection was lost first): storage.
                self._pdb = None
                r = pdb.stored_report(self.t, self.tx_id)
                self._fill(r.db_before, r.db_after, r.tx_data)

    @property
    def db_before(self):
        self._complete()
        return _BEFORE.__get__(self)

    @property
    def db_after(self):
        self._complete()
        return _AFTER.__get__(self)

    @property
    def tx_data(self):
        self._complete()
        return _PeerTxReport.tx_data.__get__(self)


class _Request:
    """One request from a user thread, from the outbox deque until its answer; the answer
    (or error) resolves ``fut``, a ``concurrent.futures.Future`` the caller may cancel
    until it is sent. The request lets go of ``fut`` once it resolved it."""

    __slots__ = ("kind", "msg", "fut", "deadline")

    def __init__(self, kind, msg, fut, deadline):
        self.kind, self.msg, self.fut, self.deadline = kind, msg, fut, deadline

    def take(self) -> bool:
        """Claim it for sending (loop thread); False if the caller gave up first."""
        return self.fut.set_running_or_notify_cancel()

    def gone(self) -> bool:
        return self.fut is None or self.fut.done()

    def answer(self, reply: dict):
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_result(reply)

    def acked(self, t, tempids, duplicate):
        """The answer of a transaction, from an ACKS frame."""
        self.answer({"t": t, "tempids": tempids, "duplicate": duplicate})

    def fail(self, err: BaseException):
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_exception(err)


class _TxRequest(_Request):
    """A transaction: its answer becomes the ``TxReport`` of ``fut`` (a ``TxFuture``, running
    from the start so that ``cancel()`` says False); ``cancel()`` here takes it back while
    it is not yet sent (``transact``'s timeout). The future refers to the request
    (``fut.request``), not the other way round once it is resolved: no reference cycle
    per transaction for the garbage collector to find."""

    __slots__ = ("conn", "tx_id", "unsent")

    def __init__(self, payload, fut, deadline, conn, tx_id, unsent):
        self.kind, self.msg, self.fut, self.deadline = P.TRANSACT_BIN, payload, fut, deadline
        self.conn, self.tx_id = conn, tx_id
        self.unsent = unsent        # the system's unsent requests: one pop claims this one
        unsent[self] = None

    def take(self) -> bool:
        # dict.pop is atomic under the GIL: the sender and cancel() cannot both win.
        return self.unsent.pop(self, True) is None

    def cancel(self) -> bool:
        """Take the transaction back if it was not sent yet (it then never is)."""
        return self.take()

    def gone(self) -> bool:
        return self not in self.unsent

    def answer(self, reply: dict):
        self.acked(reply["t"], reply.get("tempids", {}), reply.get("duplicate"))

    def acked(self, t, tempids, duplicate):
        fut, self.fut = self.fut, None
        if fut is None:
            return
        try:
            report = self.conn._report(t, tempids, duplicate, self.tx_id)
        except BaseException as e:
            fut.set_exception(e)
            return
        if not fut.done():
            fut.set_result(report)


def _datoms(keys):
    from fastdatomic._core.codec import INDEX_EAVT, decode_key
    return [decode_key(INDEX_EAVT, k) for k in keys]


class _Client(asyncio.Protocol):
    """The socket to the active transactor (event loop thread)."""

    def __init__(self, system):
        self.system = system
        self.decoder = FrameDecoder(MAX_FRAME)
        self.transport = None
        self.outbox = []
        self.handshake = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()
        self.max_frame_bytes = None      # the transactor's, from WELCOME
        self.tx_wire = None              # the transactor's TRANSACT_BIN version, from WELCOME

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            system = self.system
            novelty = []     # consecutive NOVELTY frames: applied together, under one lock
            for kind, req_id, payload in self.decoder.feed(data):
                if kind == P.NOVELTY:
                    novelty.append(payload)
                    continue
                if novelty:
                    # Before ACKS, answer first: the threads these acks wake send their
                    # next transactions before this thread applies the novelty (see
                    # _PeerDb.pending), so the transactor works meanwhile.
                    system._on_novelty(novelty, defer=kind == P.ACKS)
                    novelty = []
                system._on_frame(self, kind, req_id, payload)
            if novelty:
                system._on_novelty(novelty)
        except E.ProtocolError as e:
            log.warning("protocol error from transactor: %s", e)
            self.transport.close()

    def connection_lost(self, exc):
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError(f"connection lost during handshake: {exc}"))
        if not self.lost.done():
            self.lost.set_result(exc)

    def send(self, kind, req_id, payload):
        self.transport.write(encode_frame(kind, req_id, payload))

    def queue(self, kind, req_id, payload):
        """Send with the other requests of this loop iteration: one write, one syscall."""
        if not self.outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self.outbox.append((kind, req_id, payload))

    def _flush(self):
        out, self.outbox = self.outbox, []
        if out and not self.transport.is_closing():
            self.transport.write(encode_frames(out))


class PeerSystem:
    """Everything one process shares for one storage: storage, segment cache, the loop
    thread and the connection to the active transactor."""

    def __init__(self, data_dir: str, object_cache_max: int = DEFAULT_OBJECT_CACHE):
        from fastdatomic.storage import open_storage
        self.data_dir = os.path.abspath(data_dir)
        if not os.path.exists(os.path.join(self.data_dir, "data.mdb")):
            raise E.StorageUnavailableError(
                f"no fastdatomic storage at {self.data_dir}: start a transactor with "
                f"data-dir={self.data_dir} first", data={"path": self.data_dir})
        self.storage = open_storage("dev", path=self.data_dir)
        self.segs = SegmentStore(self.storage, object_cache_max)
        self.dbs: dict[str, _PeerDb] = {}
        self.pending: dict[int, _Request] = {}   # req_id -> request, sent
        self.waiting: list[_Request] = []        # not yet sent: no transactor connected
        self.outq = collections.deque()          # from user threads, for the loop thread
        self.unsent: dict = {}                   # transactions not yet sent (or cancelled)
        self.wake_pending = False                # a _drain is scheduled on the loop
        self.deferred: set[_PeerDb] = set()      # databases with novelty to apply
        self.apply_timer = None                  # ... at the latest when this fires
        self.next_req = 1
        self.client: _Client | None = None
        self.epoch = None
        self.connected = threading.Event()
        self.connect_failed = False              # the last attempt to reach the active failed
        self.dbs_lock = threading.Lock()
        self.closed = False
        self.reconnects = 0
        self.loop = None
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True,
                                       name=f"fd-peer-{os.path.basename(self.data_dir)}")
        self.thread.start()
        started.wait()

    # --- the loop thread -------------------------------------------------------------

    def _run(self, started):
        import uvloop
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.maintainer = self.loop.create_task(self._maintain())
        started.set()
        try:
            self.loop.run_until_complete(self.maintainer)
        except asyncio.CancelledError:
            pass                 # close(): stop at once, whatever the loop was waiting for
        finally:
            # No timer of this loop may fire once the interpreter is finalizing: uvloop's
            # callback would then crash the process (close() and the atexit hook join us).
            self._closed_down()
            self.loop.close()

    def _closed_down(self):
        """The loop thread's last act: drop the connection, answer every request."""
        client, self.client = self.client, None
        if client is not None and client.transport is not None:
            client.transport.abort()
        self._fail_pending()
        self._refuse_unsent()

    async def _maintain(self):
        """Stay connected to the active transactor; after a loss, find the new one."""
        failures = 0
        while not self.closed:
            self._flush_waiting()
            lease = read_lease(self.storage)
            if lease is None or lease.get("released"):
                await asyncio.sleep(LEASE_POLL)
                continue
            self.connect_failed = False          # trying again: connect() may wait for it
            try:
                await self._connect(lease)
            except (OSError, ConnectionError, asyncio.TimeoutError, E.FastDatomicError) as e:
                failures += 1
                self.connect_failed = True
                if failures % 50 == 1:
                    log.info("cannot reach transactor at %s:%s (%s); watching the lease",
                             lease.get("host"), lease.get("port"), e)
                await self._await_lease_change(lease, LEASE_POLL * min(failures, 10))
                continue
            failures = 0
            self.connect_failed = False
            self.connected.set()
            self._flush_waiting()
            # Connected: watch for the connection to drop or the lease to move on.
            client = self.client
            while not self.closed and not client.lost.done():
                await asyncio.wait([client.lost], timeout=0.05)
                cur = read_lease(self.storage)
                if cur is None or cur.get("epoch") != self.epoch or cur.get("released"):
                    log.info("lease moved to epoch %s: reconnecting", cur and cur.get("epoch"))
                    client.transport.abort()
                    break
            self.connected.clear()
            for pdb in list(self.dbs.values()):
                pdb.subscribed.clear()
                pdb.subscribed_on = None
            self.client = None
            self._fail_pending()
            self.reconnects += 1

    async def _await_lease_change(self, lease, delay):
        """Back off up to ``delay`` s, but return as soon as the lease moves (a new active)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while not self.closed and loop.time() < deadline:
            await asyncio.sleep(min(LEASE_POLL, max(deadline - loop.time(), 0)))
            cur = read_lease(self.storage)
            if cur is None or cur.get("epoch") != lease.get("epoch") or \
                    cur.get("released") != lease.get("released"):
                return

    async def _connect(self, lease):
        loop = asyncio.get_running_loop()
        ssl_ctx = None
        if lease.get("fingerprint"):
            from fastdatomic.transactor.tls import client_context
            ssl_ctx = client_context()
        hosts = [h for h in (lease.get("host"), lease.get("alt_host")) if h]
        last = None
        for host in hosts:
            try:
                transport, client = await asyncio.wait_for(
                    loop.create_connection(lambda: _Client(self), host, lease["port"], ssl=ssl_ctx),
                    timeout=2.0)
                break
            except (OSError, asyncio.TimeoutError) as e:
                last = e
        else:
            raise ConnectionError(f"no route to transactor {hosts}:{lease.get('port')}: {last}")
        if ssl_ctx is not None:
            from fastdatomic.transactor.tls import fingerprint
            der = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
            if fingerprint(der) != lease["fingerprint"]:
                transport.abort()
                raise E.AuthenticationError("the transactor's certificate does not match the "
                                            "fingerprint published in storage")
        try:
            await asyncio.wait_for(self._handshake(client, lease), timeout=5.0)
        except BaseException:
            transport.abort()
            raise
        self.client = client
        self.epoch = lease["epoch"]
        # (Re)subscribe every database from its local basis; the transactor catches us up.
        for pdb in list(self.dbs.values()):
            self._subscribe(pdb)

    async def _handshake(self, client, lease):
        challenge = await client.handshake
        nonce = bytes.fromhex(challenge["nonce"])
        cnonce = secrets.token_bytes(16)
        client.handshake = asyncio.get_running_loop().create_future()
        client.send(P.AUTH, 0, P.dumps({"cnonce": cnonce.hex(), "pid": os.getpid(),
                                        "mac": P.peer_mac(lease["secret"], nonce, cnonce),
                                        "acks": 1, "tempids": 1}))
        welcome = await client.handshake
        if welcome.get("mac") != P.transactor_mac(lease["secret"], cnonce, nonce):
            raise E.AuthenticationError("the transactor could not prove it holds the storage secret")
        limit = welcome.get("max_frame_bytes")
        client.max_frame_bytes = limit if isinstance(limit, int) and limit > 0 else None
        client.tx_wire = welcome.get("tx_wire")

    def _on_novelty(self, payloads, defer=False):
        """Apply NOVELTY payloads (in stream order), one lock per run of one database; with
        ``defer``, queue them for ``_apply_deferred`` instead: after the next drain of the
        user threads' requests, or within DEFERRED_APPLY (loop thread)."""
        for name, run in itertools.groupby(map(P.parse_novelty, payloads), key=itemgetter(0)):
            pdb = self.dbs.get(name)
            if pdb is None:
                continue
            records = [rec for _, rec in run]
            # A tx report queue has its reports before the transact call returns.
            if defer and not pdb.queues:
                pdb.defer(records)
                self.deferred.add(pdb)
            else:
                pdb.apply(records)
        if self.deferred and self.apply_timer is None:
            self.apply_timer = self.loop.call_later(DEFERRED_APPLY, self._deferred_due)

    def _deferred_due(self):
        # Timers run before the loop's other callbacks: send what the user threads queued
        # meanwhile first (the drain then applies the novelty).
        self.apply_timer = None
        if self.outq:
            self._drain()
        else:
            self._apply_deferred()

    def _apply_deferred(self):
        if self.apply_timer is not None:
            self.apply_timer.cancel()
            self.apply_timer = None
        deferred, self.deferred = self.deferred, set()
        for pdb in deferred:
            pdb.apply_pending()

    def _on_frame(self, client, kind, req_id, payload):
        if kind == P.ACKS:
            pending = self.pending
            last = None
            for rid, t, tempids, duplicate in P.parse_acks(payload):
                req = pending.pop(rid, None)
                if req is not None:
                    req.acked(t, tempids, duplicate)
                    last = (req.conn._db, t)
            if last is not None:
                last[0].forget_reports(last[1])
        elif kind in (P.REPLY, P.ERROR) and req_id:
            req = self.pending.pop(req_id, None)
            if req is not None:
                if kind == P.REPLY:
                    req.answer(P.loads(payload, "REPLY"))
                else:
                    req.fail(_error_from(payload))
        elif kind == P.TEMPIDS:
            if not any(p.queues for p in self.dbs.values()):
                return                   # only tx reports use them
            name, pairs = P.parse_tempids(payload)
            pdb = self.dbs.get(name)
            if pdb is not None and pdb.queues:
                pending = pdb.tempids
                if len(pending) > RECENT_REPORTS:
                    pending.clear()      # never claimed (novelty lost with a connection)
                pending.update(pairs)
        elif kind == P.INDEXED:
            msg = P.loads(payload, "INDEXED")
            pdb = self.dbs.get(msg.get("db"))
            if pdb is not None:
                self.loop.run_in_executor(None, pdb.adopt_index)
        elif kind == P.DB_GONE:
            msg = P.loads(payload, "DB_GONE")
            pdb = self.dbs.pop(msg.get("db"), None)
            if pdb is not None:
                pdb.gone = f"database {pdb.name!r} was deleted"
        elif kind == P.CHALLENGE and not client.handshake.done():
            client.handshake.set_result(P.loads(payload, "CHALLENGE"))
        elif kind == P.WELCOME and not client.handshake.done():
            client.handshake.set_result(P.loads(payload, "WELCOME"))
        elif kind == P.ERROR:
            err = _error_from(payload)
            if not client.handshake.done():
                client.handshake.set_exception(err)
            log.warning("transactor closed the connection: %s", err)

    def _send_request(self, kind, msg, fut=None):
        """Send a request now (loop thread); its reply resolves ``fut``."""
        req = _Request(kind, msg, fut or concurrent.futures.Future(), 0.0)
        self._send(req)
        return req.fut

    def _send(self, req):
        """Send ``req`` on the current connection (loop thread), or fail it as not sent."""
        client = self.client
        if not req.take():
            return              # the caller gave up before it was sent: never send it
        if client is None:
            req.fail(E.TransactorUnavailableError(
                "no transactor connection: the request was not sent",
                data={"outcome": "not-committed"}))
            return
        kind, msg = req.kind, req.msg
        if kind == P.TRANSACT_BIN and client.tx_wire != _TX_WIRE_VERSION:
            kind, msg = P.TRANSACT, _legacy_transact(msg)     # a transactor of before TRANSACT_BIN
        try:
            payload = msg if type(msg) is bytes else P.dumps(msg)
        except TypeError as e:
            req.fail(E.InvalidTxDataError(f"request cannot be sent: {e}",
                                          data={"outcome": "not-committed"}))
            return
        limit = client.max_frame_bytes
        if limit is not None and len(payload) > limit:
            # The transactor would refuse the frame and drop the connection (failing every
            # other request in flight): refuse it here, before sending, and say why.
            req.fail(_too_large(kind, len(payload), limit))
            return
        req_id = self.next_req
        self.next_req = (req_id % 0xFFFFFFFE) + 1
        self.pending[req_id] = req
        client.queue(kind, req_id, payload)

    def _fail_pending(self):
        pending, self.pending = self.pending, {}
        for req in pending.values():
            req.fail(E.TransactorUnavailableError(
                "the connection to the transactor was lost before the answer: the outcome is "
                "unknown; retry with the same tx_id (idempotent) or ask tx_outcome",
                data={"outcome": "unknown"}))

    # --- called from user threads ----------------------------------------------------------

    def _submit(self, req: "_Request"):
        """Queue ``req`` for the loop thread (any thread; never blocks).

        Requests wait in a deque; the loop is woken once for all that arrive before it
        drains them, not once per request (a wake-up is a system call and a thread switch).

        A thread queueing a burst holds the GIL the woken loop thread needs to send it:
        without a pause the loop would wait until that thread blocks, or for Python's
        5 ms switch interval, and the whole burst would reach the transactor as one
        group, after which both processes take turns. Every ``YIELD_EVERY`` requests
        queued for one wake-up, the caller lets go of the GIL for a moment
        (``time.sleep(0)``: it returns at once when no other thread wants it), so the
        loop sends what is queued and the transactor starts on it while the caller
        queues the rest (64 and 256 in flight: 4-15 % more transactions per second,
        measured in ABBA rounds; bench/README, tenth session).
        """
        q = self.outq
        q.append(req)
        if self.closed:
            self._refuse_unsent()           # the loop thread may have ended already
        elif not self.wake_pending:
            self.wake_pending = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:            # the loop is closed: this system was shut down
                self._refuse_unsent()
        elif len(q) % YIELD_EVERY == 0:
            time.sleep(0)                   # the loop thread's turn to send these

    def _refuse_unsent(self):
        """Fail every request not sent yet (this system is closed; any thread)."""
        for q in (self.outq, self.waiting):
            while q:
                try:
                    req = q.pop()
                except IndexError:
                    break
                if req.take():
                    req.fail(E.TransactorUnavailableError(
                        "this peer system is closed: the request was not sent (definitely not "
                        "committed)", data={"outcome": "not-committed"}))

    def _drain(self):
        # Cleared first: a request queued from now on schedules another drain.
        self.wake_pending = False
        q = self.outq
        while q:
            req = q.popleft()
            if self.client is not None:
                self._send(req)
            else:
                self.waiting.append(req)
        if self.client is not None:
            # Out now, in one write: the user threads already batched them for this wake-up
            # (waiting for the next loop iteration would add its latency to each of them).
            self.client._flush()
        if self.deferred:
            self._apply_deferred()      # the requests are out: now the novelty

    def request(self, kind, msg, timeout=None) -> concurrent.futures.Future:
        """Send ``msg`` to the active transactor; never blocks the caller.

        While no transactor is connected the request waits (up to ``timeout`` seconds,
        default ``CONNECT_WAIT``) for one; if none comes it fails as *not committed*.
        """
        fut = concurrent.futures.Future()
        deadline = time.monotonic() + (CONNECT_WAIT if timeout is None else timeout)
        self._submit(_Request(kind, msg, fut, deadline))
        return fut

    def _flush_waiting(self):
        """On connect: send what waited; otherwise fail what waited too long."""
        waiting, self.waiting = self.waiting, []
        now = time.monotonic()
        for req in waiting:
            if self.client is not None:
                self._send(req)
            elif now >= req.deadline:
                if req.take():
                    req.fail(E.TransactorUnavailableError(
                        "no active transactor reachable: the request was not sent (definitely "
                        "not committed)", data={"outcome": "not-committed"}))
            elif not req.gone():
                self.waiting.append(req)

    def call(self, kind, msg, timeout=30.0) -> dict:
        return self.request(kind, msg, timeout).result(timeout)

    def database(self, name) -> _PeerDb:
        """The local state of ``name``, loaded from storage and subscribed on first use."""
        with self.dbs_lock:         # two threads connecting at once share one _PeerDb
            pdb = self.dbs.get(name)
            new = pdb is None
            if new:
                db = catalog.load_database(self.storage, name, segs=self.segs)
                pdb = self.dbs[name] = _PeerDb(self, name, db)
        if new:
            # Decided on the loop thread, which also (re)subscribes every database on
            # connect: exactly one SUBSCRIBE per connection, whenever this lands.
            try:
                self.loop.call_soon_threadsafe(self._subscribe_if_connected, pdb)
            except RuntimeError:    # this peer system was shut down: storage reads only
                return pdb
        if threading.get_ident() != self.thread.ident:
            self._await_subscription(pdb)      # at once when it is live already
        return pdb

    def _await_subscription(self, pdb):
        # connect() returns once the transactor answered the subscription (or after
        # SUBSCRIBE_WAIT): a transaction another peer commits after that reaches this
        # one's tx report queue with its tempids. db() never waits; nor does connect()
        # while no transactor can answer (none holds the lease, its holder is dead, or
        # our last attempt to reach it failed).
        deadline = time.monotonic() + SUBSCRIBE_WAIT
        while not pdb.subscribed.wait(0.05):
            if time.monotonic() >= deadline or self.connect_failed or \
                    not self._transactor_expected():
                return

    def _transactor_expected(self) -> bool:
        """Connected, or a transactor holds the lease and is not known to be dead."""
        if self.connected.is_set():
            return True
        lease = read_lease(self.storage)
        return lease is not None and not lease.get("released") and not holder_is_dead(lease)

    def _subscribe_if_connected(self, pdb):
        if self.client is not None and pdb.subscribed_on is not self.client:
            self._subscribe(pdb)

    def _subscribe(self, pdb, deadline=None):
        """Subscribe to ``pdb``'s novelty from its basis (loop thread); ``pdb.subscribed``
        is set when the transactor answers (after the catch-up from the log), also with an
        error (then ``db()`` goes on reading storage, and a reconnect subscribes again).

        "No such database" is asked again every ``SUBSCRIBE_RETRY`` s for up to
        ``SUBSCRIBE_WAIT`` s: storage had it (we loaded it), so another peer created it a
        moment ago and the transactor publishes it just after its commit."""
        client = pdb.subscribed_on = self.client
        pdb.subscribed.clear()
        if deadline is None:
            deadline = time.monotonic() + SUBSCRIBE_WAIT

        def answered(fut):
            if pdb.subscribed_on is not client:
                return              # failed with a lost connection: the reconnect subscribes
            if isinstance(fut.exception(), E.DatabaseNotFoundError) and not self.closed \
                    and not pdb.gone and time.monotonic() < deadline:
                self.loop.call_later(SUBSCRIBE_RETRY, self._subscribe_again, pdb, client,
                                     deadline)
                return
            pdb.subscribed.set()
        self._send_request(P.SUBSCRIBE, {"db": pdb.name, "from_t": pdb.db.basis_t}
                           ).add_done_callback(answered)

    def _subscribe_again(self, pdb, client, deadline):
        if self.client is client and pdb.subscribed_on is client and not self.closed:
            self._subscribe(pdb, deadline)

    def close(self):
        """Disconnect and stop the loop thread (join ``self.thread`` to wait for it);
        connections of this system stop updating."""
        self.closed = True
        try:
            # The loop thread then drops the connection and answers what is pending.
            self.loop.call_soon_threadsafe(self.maintainer.cancel)
        except RuntimeError:
            pass                 # the loop is closed already


_systems: dict[str, PeerSystem] = {}
_systems_lock = threading.Lock()


def shutdown_peers():
    """Close every peer system of this process and wait (2 s each at most) for its loop
    thread to end. It runs at interpreter exit by itself (``atexit``): a loop thread still
    running while the interpreter finalizes would crash the process.

    >>> shutdown_peers()
    """
    with _systems_lock:
        systems = list(_systems.values())
        _systems.clear()
    for s in systems:
        s.close()
        s.thread.join(2.0)


# Before the interpreter finalizes; handlers run last-registered first, so an application's
# own exit handlers, registered after this import, may still use their connections.
atexit.register(shutdown_peers)


def peer_system(data_dir: str, object_cache_max: int = DEFAULT_OBJECT_CACHE) -> PeerSystem:
    """The process-wide ``PeerSystem`` of ``data_dir`` (made on first use)."""
    key = os.path.abspath(data_dir)
    with _systems_lock:
        system = _systems.get(key)
        if system is None or system.closed:
            system = _systems[key] = PeerSystem(key, object_cache_max)
        return system


def _legacy_transact(payload: bytes) -> dict:
    """A TRANSACT_BIN payload as the JSON TRANSACT request of earlier transactors."""
    db, tx_id, db_id, tx_data, flags = _TXWIRE.decode_transact(payload)
    text = tx_data if flags & _EDN else edn.dumps(tx_data, default=edn.tagged_bytes)
    msg = {"db": db, "tx": text}
    if tx_id is not None:
        msg["tx_id"] = str(tx_id)
    if db_id is not None:
        msg["db_id"] = db_id
    return msg


def _transact_payload(name, tx_id, db_id, tx_data, fresh=False) -> bytes:
    """The TRANSACT_BIN payload of ``tx_data``: binary, else (a value with no binary form,
    or EDN text given by the caller) its EDN text. ``TypeError``/``ValueError`` when
    neither can carry it. ``fresh``: ``tx_id`` was made for this request.

    >>> import uuid
    >>> len(_transact_payload("db", uuid.UUID(int=1), None, [{":a/b": 1}])) > 20
    True
    >>> _TXWIRE.decode_transact(_transact_payload("db", None, None, "[]"))[3:]
    ('[]', 1)
    """
    if isinstance(tx_data, str):
        return _TXWIRE.transact_payload_edn(name, tx_id, db_id, tx_data, fresh)
    payload = _TXWIRE.transact_payload(name, tx_id, db_id, tx_data, fresh)
    if payload is None:
        payload = _TXWIRE.transact_payload_edn(name, tx_id, db_id, _wire_text(tx_data), fresh)
    return payload


def _wire_text(tx_data) -> str:
    """``tx_data`` as EDN text for the transactor. Values EDN has no form for travel as the
    in-process system takes them: bytes as ``#fastdatomic/bytes``, naive datetimes as UTC."""
    try:
        return edn.dumps(tx_data, default=edn.tagged_bytes)
    except ValueError:
        return edn.dumps(_naive_as_utc(tx_data), default=edn.tagged_bytes)


def _naive_as_utc(x):
    from datetime import datetime, timezone
    if isinstance(x, datetime):
        return x.replace(tzinfo=timezone.utc) if x.utcoffset() is None else x
    if isinstance(x, dict):
        return {_naive_as_utc(k): _naive_as_utc(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        items = [_naive_as_utc(v) for v in x]
        return (edn.Form(items) if isinstance(x, edn.Form) else tuple(items) if isinstance(x, tuple)
                else frozenset(items) if isinstance(x, (set, frozenset)) else items)
    return x


def _unsendable(db, tx_data, err) -> Exception:
    """The error for tx-data that cannot be written as EDN (a value of a type no attribute
    takes): the one the transaction gives in-process (``with_`` on the local value, so
    e.g. a wrong-type error naming the attribute), else an invalid-tx-data error."""
    try:
        db.with_(tx_data)
    except E.FastDatomicError as e:
        return e
    except Exception:
        pass
    return E.InvalidTxDataError(f"tx-data cannot be sent to the transactor: {err}",
                                data={"reason": str(err)})


class PeerConnection(_ConnectionCommon):
    """A connection to one database through the active transactor (the ``Connection`` API)."""

    def __init__(self, uri, system: PeerSystem, name: str):
        self.uri = uri
        self.system = system
        self.name = name
        self._db = system.database(name)
        self.storage = system.storage
        self._report_queues = self._db.queues

    def db(self):
        """The latest local value, immediately, also while no transactor is reachable (and,
        as in-process, the last value once the database was deleted)."""
        return self._db.db

    def transact(self, tx_data, *, tx_id=None, timeout=None) -> TxReport:
        """Send ``tx_data`` to the transactor; returns its ``TxReport`` once durable.

        On failure the error says whether the transaction is definitely not committed
        (``data["outcome"] == "not-committed"``) or its outcome is unknown; retrying with
        the same ``tx_id`` is always safe.
        """
        fut = self.transact_async(tx_data, tx_id=tx_id, _timeout=timeout)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            if fut.request.cancel():
                raise E.TransactorUnavailableError(
                    f"no active transactor within {timeout} s: the transaction was not sent "
                    "(definitely not committed)", data={"outcome": "not-committed"}) from None
            raise E.TransactTimeoutError(
                f"no answer within {timeout} s: the outcome is unknown; retry with tx_id={fut.tx_id} "
                "(idempotent) or ask tx_outcome", data={"outcome": "unknown"}) from None

    def transact_async(self, tx_data, *, tx_id=None, _timeout=None) -> TxFuture:
        """Queue ``tx_data``; returns a ``TxFuture`` (``.result()`` or ``await``)."""
        fresh = tx_id is None       # made here, for this request: it cannot be committed yet
        tx_id = _check_tx_id(tx_id) or _uuid4()
        pdb = self._db
        if pdb.gone:
            raise E.DatabaseNotFoundError(f"cannot transact: {pdb.gone}")
        out = TxFuture()
        # Sent at once and not taken back: cancel() must say False rather than let a
        # "cancelled" transaction commit (in-process, a queued one can still be cancelled).
        out.set_running_or_notify_cancel()
        try:
            # db_id: a connection to a deleted database never writes into a re-created namesake.
            payload = _transact_payload(self.name, tx_id, pdb.applied.db_id, tx_data, fresh)
        except (TypeError, ValueError) as e:
            out.set_exception(_unsendable(pdb.db, tx_data, e))
            return out
        deadline = time.monotonic() + (CONNECT_WAIT if _timeout is None else _timeout)
        req = _TxRequest(payload, out, deadline, self, tx_id, self.system.unsent)
        out.request, out.tx_id = req, tx_id
        self.system._submit(req)
        return out

    def _report(self, t, tempids, duplicate, tx_id) -> TxReport:
        """The report of an acknowledged transaction (loop thread). Its novelty came before
        the ack on this connection: still pending (a report filled in when it is applied),
        or applied (its ``(db_before, db_after)`` are in ``recent``); a retry's earlier
        transaction, or one committed before we subscribed, is read from storage."""
        pdb = self._db
        if not duplicate:
            report = pdb.await_report(t, tempids, tx_id)    # its novelty is pending
            if report is not None:
                return report
        seen = pdb.recent.get(t)
        if seen is None or duplicate:
            # A retry of a committed transaction, or one we caught up on from the log.
            report = pdb.stored_report(t, tx_id)
            report.duplicate = bool(duplicate)
            report.tempids = tempids
            return report
        before, after, keys = seen
        return _PeerTxReport(before, after, keys, tempids, t, tx_id)

    def sync(self, t=None, timeout=None):
        """A value including every transaction committed so far: the basis is read from
        storage (linearizable, ARCHITECTURE §4.6), the novelty from the transactor or the log.
        """
        if t is None:
            root, _ = catalog.read_root(self.storage, self.name)
            t = root["basis_t"]
        if not self._db.wait_for(t, 0.05 if timeout is None else min(timeout, 0.05)):
            self._db.catch_up(t)
        return self.db()

    def request_index(self) -> bool:
        """Ask the transactor for an indexing job now, whatever the size of the novelty
        (Datomic's ``request-index``). The job runs in the background and covers every
        transaction this connection sent before; ``sync_index(t)`` waits for it. False
        when there is nothing to index (the durable index already covers every
        transaction). Example (``tests/test_request_index.py`` runs it)::

            r = conn.transact([{":person/name": "Requested"}])
            conn.request_index()                       # True
            conn.sync_index(r.t, timeout=30)           # a value with index_basis_t >= r.t
        """
        if self._db.gone:
            raise E.DatabaseNotFoundError(f"cannot index: {self._db.gone}")
        reply = self.system.call(P.REQUEST_INDEX, {"db": self.name})
        return bool(reply.get("requested"))

    def _indexed_value(self, t):
        pdb = self._db
        if pdb.db.index_basis_t >= t:
            return pdb.db
        # The root in storage says where the durable index is (the INDEXED message may
        # not have come yet, or there is no transactor right now).
        root, _ = catalog.read_root(self.storage, self.name)
        if root["index_basis_t"] >= t:     # (a deleted database raises here)
            pdb.catch_up()
            if pdb.db.index_basis_t >= t:
                return pdb.db
        return None

    def _await_index(self, t, secs):
        # A new value (novelty or an adopted index) wakes us; we also look at the root in
        # storage every SYNC_INDEX_POLL, as no transactor may be there to tell us.
        pdb = self._db
        with pdb.lock:
            if pdb.applied.index_basis_t < t:
                pdb.changed.wait(SYNC_INDEX_POLL if secs is None else min(SYNC_INDEX_POLL, secs))

    def tx_report_queue(self, maxsize=10_000) -> TxReportQueue:
        """A new bounded queue receiving the report of every later transaction (see
        ``Connection.tx_report_queue``); novelty received before it is applied first,
        so no earlier transaction's report lands in it."""
        self._db.apply_pending()
        return super().tx_report_queue(maxsize)

    def release(self):
        """Release this connection (the process keeps its peer system)."""

    def __repr__(self):
        return f"<PeerConnection {self.uri} basis-t={self._db.db.basis_t}>"
