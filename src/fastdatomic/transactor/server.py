"""The transactor process: lease, heartbeat, network server, pipeline, /health and metrics.

``Transactor(config).run()`` is what ``fastdatomic-transactor config.properties`` does:

1. open storage, bind the peer port, start ``/health`` (503 while standby) and metrics;
2. take the lease (or wait as standby until the active misses two heartbeats);
3. load every database, start the writer thread and the heartbeat thread;
4. serve peers on the uvloop event loop, print ``System started <uri>``;
5. on SIGTERM/SIGINT: stop taking transactions, finish the queued ones, release the
   lease (a standby takes over at once), exit 0.

Fail fast (ARCHITECTURE §4.2, §4.3): a heartbeat that cannot be written in time, or a
commit refused by storage, means another transactor may be active: this one stops
acknowledging at once and exits with status 3.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import hmac
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
import uuid as uuid_mod

import orjson
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fastdatomic import edn
from fastdatomic._core.frame import FrameDecoder, encode_frame, encode_frames
from fastdatomic._core.txwire import (EDN as TXWIRE_EDN, FORMAT_VERSION as TXWIRE_VERSION,
                                      FRESH_TX_ID, TxWire)
from fastdatomic.db import catalog
from fastdatomic.errors import (
    AuthenticationError, FastDatomicError, InvalidTxDataError, ProtocolError,
    TransactorUnavailableError,
)
from fastdatomic.storage import open_storage
from fastdatomic.transactor import protocol as P
from fastdatomic.transactor.lease import LeaseHolder
from fastdatomic.transactor.metrics import TimedReads, TransactorMetrics
from fastdatomic.transactor.pipeline import Pipeline, TxRequest
from fastdatomic.transactor.standby import WarmStandby

__all__ = ["Transactor", "EXIT_FENCED"]

log = logging.getLogger("fastdatomic.transactor")

EXIT_FENCED = 3            # exit status after losing the lease
# How long a new connection has to authenticate is `auth-timeout-msec`; how many bytes may
# queue to one peer that does not read before it is cut off is `peer-backlog-max`.
CLOSE_GRACE = 5.0          # s a closed connection may take to flush its last ERROR, then abort
FENCE_GRACE = 0.25         # s a deposed active lets in-hand work hit the fence before exiting
STANDBY_POLL = 0.025       # s between a standby's lease/log polls (takeover precision)
# The cyclic garbage collector's thresholds in this process. Python's default first
# threshold (700 tracked objects allocated and not yet freed) is crossed all the time by
# the objects of the transactions in flight, which are acyclic and die by reference
# counting anyway: at 64 in flight that was ~2500 collections and 0.6 s of 9 s, 16 ms at
# worst. With 20000, two collections in 9 s (4.4 ms at worst) and 5-8 % more throughput.
GC_THRESHOLDS = (20_000, 10, 10)


class PeerSession(asyncio.Protocol):
    """One peer connection: handshake, then requests; novelty is pushed to it."""

    def __init__(self, server: "Transactor"):
        self.server = server
        self.decoder = FrameDecoder(server.config.max_frame_bytes)
        self.transport = None
        self.authed = False
        self.nonce = secrets.token_bytes(16)
        self.subs: set[str] = set()
        self.closed = False
        self.name = "?"
        self.auth_timer = None
        self.acks = False       # the peer takes a group commit's acks in one ACKS frame
        self.tempids = False    # ... and the tempids of every transaction (TEMPIDS)

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.name = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.send(P.CHALLENGE, 0, P.dumps({"nonce": self.nonce.hex(),
                                           "epoch": self.server.lease.epoch}))
        self.auth_timer = asyncio.get_running_loop().call_later(
            self.server.config.auth_timeout_msec / 1000.0, self._auth_timeout)

    def connection_lost(self, exc):
        self.closed = True
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        self.server.sessions.discard(self)
        for name in self.subs:
            self.server.subscribers.get(name, set()).discard(self)
        self.server.metrics.remote_peers.set(sum(1 for s in self.server.sessions if s.authed))

    def data_received(self, data):
        server = self.server
        if server.incoming is None:
            # Requests of every socket read of this loop iteration go to the pipeline
            # together, after the reads: one group commit for all the peers that sent.
            server.incoming = []
            asyncio.get_running_loop().call_soon(server.submit_incoming)
        try:
            frames = self.decoder.feed(data)
            for kind, req_id, payload in frames:
                if self.closed:
                    return
                self.dispatch(kind, req_id, payload)
        except (ProtocolError, AuthenticationError) as e:
            self.fail(e)
        except Exception as e:    # a bug: this connection fails alone, with a reason
            log.exception("peer %s: unexpected error", self.name)
            self.fail(e)

    def eof_received(self):
        return False

    # --- sending ------------------------------------------------------------------

    def send(self, kind, req_id, payload):
        if not self.closed:
            self.transport.write(encode_frame(kind, req_id, payload))
            self._check_backlog()

    def send_many(self, items):
        if not self.closed and items:
            self.transport.write(encode_frames(items))
            self._check_backlog()

    def _check_backlog(self):
        limit = self.server.config.peer_backlog_max
        if self.transport.get_write_buffer_size() > limit:
            # A peer that does not read its novelty would make us hold it forever.
            self.server.metrics.alarm("slow-peer")
            self.fail(ProtocolError(f"peer {self.name} is too slow: more than {limit} bytes "
                                    "(peer-backlog-max) unread; it may reconnect and catch up "
                                    "from the log"))

    def fail(self, err: BaseException):
        """Tell the peer what was wrong, then close this connection only."""
        if self.closed:
            return
        log.warning("closing peer %s: %s", self.name, err)
        self.transport.write(encode_frame(P.ERROR, 0, P.error_payload(err)))
        self.closed = True
        self.transport.close()
        # close() waits for the buffer to drain; a peer that never reads would keep it (and
        # the socket) forever: give the ERROR a moment to go out, then drop everything.
        asyncio.get_running_loop().call_later(CLOSE_GRACE, self.transport.abort)
        self.server.sessions.discard(self)
        for name in self.subs:
            self.server.subscribers.get(name, set()).discard(self)

    def _auth_timeout(self):
        if not self.authed:
            self.server.metrics.alarm("auth-timeout")
            self.fail(AuthenticationError(
                f"no authentication within {self.server.config.auth_timeout_msec} ms "
                "(auth-timeout-msec): the first message must be AUTH"))

    # --- requests -------------------------------------------------------------------

    def dispatch(self, kind, req_id, payload):
        if not self.authed:
            if kind != P.AUTH:
                raise ProtocolError(f"{P.KIND_NAMES.get(kind, kind)} before authentication: "
                                    "the first message must be AUTH")
            return self.authenticate(payload)
        # The framing is intact from here on: a bad request (unknown kind, a payload that is
        # not the JSON it should be, invalid tx-data) fails alone and the connection stays.
        try:
            handler = self.server.handlers.get(kind)
            if handler is None:
                raise ProtocolError(f"unknown message kind {kind} (request {req_id})")
            handler(self, req_id, payload)
        except FastDatomicError as e:
            self.send(P.ERROR, req_id, _error_bytes(e))
        except Exception as e:    # a bug: this request fails alone, with a reason
            log.exception("peer %s: request %d (kind %d) failed unexpectedly", self.name,
                          req_id, kind)
            self.send(P.ERROR, req_id, P.error_payload(e))

    def authenticate(self, payload):
        msg = P.loads(payload, "AUTH")
        try:
            cnonce = bytes.fromhex(msg["cnonce"])
            mac = str(msg["mac"])
        except (KeyError, ValueError, TypeError):
            raise ProtocolError("AUTH needs hex 'cnonce' and 'mac'") from None
        # As bytes: compare_digest refuses str with non-ASCII characters.
        expected = P.peer_mac(self.server.lease.secret, self.nonce, cnonce)
        if not hmac.compare_digest(mac.encode("utf-8", "replace"), expected.encode()):
            self.server.metrics.alarm("auth-failed")
            self.fail(AuthenticationError("authentication failed: the peer does not hold this "
                                          "storage's current secret"))
            return
        self.authed = True
        self.acks = msg.get("acks") == 1
        self.tempids = msg.get("tempids") == 1
        self.auth_timer.cancel()
        self.server.sessions.add(self)
        self.server.metrics.remote_peers.set(sum(1 for s in self.server.sessions if s.authed))
        self.send(P.WELCOME, 0, P.dumps({
            "mac": P.transactor_mac(self.server.lease.secret, cnonce, self.nonce),
            "epoch": self.server.lease.epoch,
            # Peers refuse larger requests themselves, with a clear error, before sending.
            "max_frame_bytes": self.server.config.max_frame_bytes,
            "tx_wire": TXWIRE_VERSION}))


def _need_db(msg, what):
    name = msg.get("db")
    if not isinstance(name, str):
        raise ProtocolError(f"{what} needs a database name 'db'")
    catalog.check_name(name)
    return name


class Transactor:
    """The transactor of one storage; ``run()`` blocks until stopped (see module doc)."""

    def __init__(self, config):
        self.config = config
        self.metrics = TransactorMetrics()
        self.sessions: set[PeerSession] = set()
        self.subscribers: dict[str, set[PeerSession]] = {}
        self.published: dict[str, int] = {}     # db -> last t sent to subscribers
        self.role = "starting"
        self.deposed = False        # set when we may have lost the lease: never ack again
        self.incoming = None        # requests read in this loop iteration, not yet submitted
        self.stopping = threading.Event()
        self.loop = None
        self.loop_thread = None
        self.to_publish = collections.deque()   # commits to publish on the loop, in order
        self.lease = None
        self.storage = None
        self.pipeline = None
        self.exit_code = 0
        self.uri = None
        self.txwire = TxWire(edn.Form, edn.dumps)
        self.names_ok: set[str] = set()     # database names already checked (TRANSACT_BIN)
        self.handlers = {
            P.TRANSACT: self.on_transact, P.TRANSACT_BIN: self.on_transact_bin,
            P.SUBSCRIBE: self.on_subscribe,
            P.UNSUBSCRIBE: self.on_unsubscribe, P.CREATE_DB: self.on_create,
            P.DELETE_DB: self.on_delete, P.LIST_DBS: self.on_list, P.STATUS: self.on_status,
            P.REQUEST_INDEX: self.on_request_index,
        }

    # --- life cycle -------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (0) or loss of the lease (``EXIT_FENCED``)."""
        import uvloop
        cfg = self.config
        proto, opts = cfg.storage_options()
        self.storage = open_storage(proto, **opts)
        self._write_pid_file()
        ssl_ctx, fp = None, None
        if cfg.encrypt_channel:
            from fastdatomic.transactor.tls import server_context
            ssl_ctx, fp = server_context()
        sock = socket.create_server((cfg.host, cfg.port), reuse_port=False)
        port = sock.getsockname()[1]
        self.lease = LeaseHolder(self.storage, host=cfg.host, alt_host=cfg.alt_host, port=port,
                                 heartbeat_msec=cfg.heartbeat_interval_msec, fingerprint=fp)
        self._start_health()
        self._start_metrics()
        self._install_signals()
        self.role = "standby"
        log.info("standby: watching the lease (heartbeat-interval-msec=%d)", cfg.heartbeat_interval_msec)
        standby = WarmStandby(self.storage, cfg.object_cache_max,
                              segment_storage=TimedReads(self.storage, self.metrics))
        while not self.stopping.is_set():
            if self.lease.try_acquire():
                break
            standby.poll()               # warm: follow every database's log meanwhile
            self.metrics.heart_monitor_msec.set(min(self.lease.quiet, 1e9) * 1000.0)
            self.stopping.wait(STANDBY_POLL)
        if self.stopping.is_set():
            sock.close()
            return 0
        t0 = time.monotonic()
        self.role = "active"
        self.metrics.active.set(1)
        self.pipeline = Pipeline(
            self.storage, self.lease.fence, self._publish_from_pipeline, self._fatal,
            metrics=self.metrics, memory_index_threshold=cfg.memory_index_threshold,
            memory_index_max=cfg.memory_index_max, group_commit_max=cfg.group_commit_max,
            object_cache_max=cfg.object_cache_max, segs=standby.segs)
        caught_up = self.pipeline.load(warm=standby.dbs, warm_ids=standby.tx_ids)
        for name, st in self.pipeline.dbs.items():
            self.published[name] = st.writer.db.basis_t
        # What is loaded now lives as long as the process: no collection need walk it again
        # (garbage of the standby phase is collected first, not frozen with it).
        gc.collect()
        gc.freeze()
        log.info("took the lease at epoch %d; databases ready in %.1f ms (%d of %d needed log "
                 "records since the last standby poll)", self.lease.epoch,
                 (time.monotonic() - t0) * 1000.0, caught_up, len(self.pipeline.dbs))
        self.pipeline.start()
        threading.Thread(target=self._heartbeat_loop, name="fd-heartbeat", daemon=True).start()
        self.loop = uvloop.new_event_loop()
        self.loop_thread = threading.get_ident()
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            self.loop.create_server(lambda: PeerSession(self), sock=sock, ssl=ssl_ctx, backlog=1024))
        data_dir = getattr(cfg, "data_dir", "")
        self.uri = f"fastdatomic:{proto}://{data_dir}/<DB-NAME>"
        banner = f"System started {self.uri}"
        print(banner, flush=True)
        log.info("%s (epoch %d, port %d%s)", banner, self.lease.epoch, port, ", TLS" if ssl_ctx else "")
        self.loop.run_until_complete(self._wait_stop())
        # Graceful stop: no new work, finish what is queued, hand the lease over.
        server.close()
        for s in list(self.sessions):
            s.transport.pause_reading()
        self.submit_incoming()     # what the loop's last iteration read, not yet submitted
        self.pipeline.stop()
        self.loop.run_until_complete(asyncio.sleep(0))   # deliver the last acks
        for s in list(self.sessions):
            s.transport.close()
        self.loop.run_until_complete(asyncio.sleep(0.05))
        if self.exit_code == 0:
            self.lease.release()
        self._remove_pid_file()
        log.info("stopped")
        return self.exit_code

    async def _wait_stop(self):
        while not self.stopping.is_set():
            await asyncio.sleep(0.05)

    def _install_signals(self):
        def stop(signum, frame):
            log.info("signal %d: stopping", signum)
            self.stopping.set()
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def _fatal(self, reason: str):
        """Lost the lease or a fenced commit failed: never ack again, exit now (§4.2)."""
        self.deposed = True
        log.critical("FENCED: %s; exiting without acknowledging anything more", reason)
        for h in logging.getLogger().handlers:
            try:
                h.flush()
            except Exception:
                pass
        os._exit(EXIT_FENCED)

    def _heartbeat_loop(self):
        hb = self.config.heartbeat_interval_msec / 1000.0
        last = time.monotonic()
        while not self.stopping.is_set():
            delay = last + hb - time.monotonic()
            if delay > 0:
                time.sleep(delay)   # not Event.wait: the stop path must not skip a heartbeat
            if self.stopping.is_set():
                return
            t0 = time.monotonic()
            late = t0 - last > 2 * hb
            if late:
                # Paused or starved past two intervals: a standby may already be active.
                # Stop acknowledging at once (§4.3); storage decides the rest.
                self.deposed = True
                self.metrics.alarm("heartbeat-late")
                log.critical("heartbeat %.3f s after the previous one (interval %.3f s): "
                             "no more acknowledgements", t0 - last, hb)
            try:
                ok = self.lease.heartbeat()
            except Exception as e:
                log.error("heartbeat failed: %s", e)
                ok = False
            now = time.monotonic()
            if not ok:
                log.critical("stale write rejected by storage: heartbeat at epoch %s", self.lease.epoch)
            if late or not ok:
                # Work already in hand meets the fence (each refused commit is logged),
                # then we go.
                time.sleep(FENCE_GRACE)
                self._fatal("the lease CAS failed: another transactor took over" if not ok else
                            "could not heartbeat within the interval")
            self.metrics.heartbeat_msec.observe((now - last) * 1000.0)
            last = t0 if now - t0 < hb else now
            self.metrics.object_cache_hit_ratio.set(self.pipeline.segs.hit_ratio)

    # --- pid file, health, metrics ---------------------------------------------------------

    def _write_pid_file(self):
        path = self.config.pid_file
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                f.write(f"{os.getpid()}\n")

    def _remove_pid_file(self):
        path = self.config.pid_file
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass

    def _start_health(self):
        cfg = self.config
        if not cfg.ping_port:
            return
        tx = self

        class Health(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] != "/health":
                    self.send_error(404, "only GET /health is served here")
                    return
                active = tx.role == "active" and not tx.stopping.is_set()
                body = P.dumps({"role": tx.role, "epoch": tx.lease.epoch if active else None})
                self.send_response(200 if active else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer((cfg.ping_host or cfg.host, cfg.ping_port), Health)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, name="fd-health", daemon=True).start()

    def _start_metrics(self):
        cfg = self.config
        if cfg.metrics_port is None:
            return
        from prometheus_client import start_http_server
        start_http_server(cfg.metrics_port, addr=cfg.ping_host or cfg.host,
                          registry=self.metrics.registry)

    # --- handlers (event loop thread) --------------------------------------------------------

    def on_transact(self, session, req_id, payload):
        msg = P.loads(payload, "TRANSACT")
        name = _need_db(msg, "TRANSACT")
        text = msg.get("tx")
        if not isinstance(text, str):
            raise InvalidTxDataError("TRANSACT needs tx-data as EDN text in 'tx'")
        tx_id = msg.get("tx_id")
        try:
            tx_id = uuid_mod.UUID(tx_id) if tx_id is not None else None
        except (ValueError, TypeError, AttributeError):
            raise InvalidTxDataError(f"tx_id {tx_id!r} is not a UUID") from None
        db_id = msg.get("db_id")
        if db_id is not None and not isinstance(db_id, str):
            raise InvalidTxDataError(f"db_id {db_id!r} is not a database id")
        req = TxRequest("tx", name, _read_edn(text), tx_id, (session, req_id), len(payload),
                        db_id=db_id)
        self._queue_tx(req)

    def on_transact_bin(self, session, req_id, payload):
        name, tx_id, db_id, tx_data, flags = self.txwire.decode_transact(payload)
        if name not in self.names_ok:
            catalog.check_name(name)
            if len(self.names_ok) < 10_000:
                self.names_ok.add(name)
        if flags & TXWIRE_EDN:
            tx_data = _read_edn(tx_data)
        self._queue_tx(TxRequest("tx", name, tx_data, tx_id, (session, req_id), len(payload),
                                 db_id=db_id, fresh_id=bool(flags & FRESH_TX_ID)))

    def _queue_tx(self, req):
        if self.incoming is not None:
            self.incoming.append(req)      # submitted after this loop iteration's reads
        else:
            self.pipeline.submit(req)

    def submit_incoming(self):
        """Hand this loop iteration's requests to the pipeline, in arrival order. With the
        writer idle and nothing queued they are committed right here (a lone transaction
        skips the hand-offs to the writer thread and back); otherwise they queue."""
        incoming, self.incoming = self.incoming, None
        if incoming and self.pipeline is not None:
            if not self.pipeline.process_now(incoming):
                self.pipeline.submit_many(incoming)

    def on_create(self, session, req_id, payload):
        name = _need_db(P.loads(payload, "CREATE_DB"), "CREATE_DB")
        self._queue_tx(TxRequest("create", name, reply=(session, req_id)))

    def on_delete(self, session, req_id, payload):
        name = _need_db(P.loads(payload, "DELETE_DB"), "DELETE_DB")
        self._queue_tx(TxRequest("delete", name, reply=(session, req_id)))

    def on_request_index(self, session, req_id, payload):
        # Through the writer's queue: the job starts from the value after every
        # transaction this peer sent before, as Datomic's request-index does.
        name = _need_db(P.loads(payload, "REQUEST_INDEX"), "REQUEST_INDEX")
        self._queue_tx(TxRequest("index", name, reply=(session, req_id)))

    def on_list(self, session, req_id, payload):
        session.send(P.REPLY, req_id, P.dumps({"names": sorted(self.pipeline.dbs)}))

    def on_status(self, session, req_id, payload):
        session.send(P.REPLY, req_id, P.dumps({
            "role": self.role, "epoch": self.lease.epoch, "pid": os.getpid(),
            "databases": {n: self.published.get(n) for n in sorted(self.pipeline.dbs)},
            "peers": sum(1 for s in self.sessions if s.authed),
            "memory_index_bytes": self.pipeline.memory_index_bytes(),
        }))

    def on_subscribe(self, session, req_id, payload):
        msg = P.loads(payload, "SUBSCRIBE")
        name = _need_db(msg, "SUBSCRIBE")
        from_t = msg.get("from_t", -1)
        if not isinstance(from_t, int):
            raise ProtocolError("SUBSCRIBE 'from_t' must be an integer")
        st = self.pipeline.dbs.get(name)
        if st is None or name not in self.published:
            from fastdatomic.errors import DatabaseNotFoundError
            raise DatabaseNotFoundError(f"database {name!r} does not exist", data={"name": name})
        basis = self.published[name]
        db_id = st.writer.db.db_id
        items = []
        if from_t < basis:
            # Catch up from the log (in storage); live novelty follows in order.
            for t, rec in self.storage.log_range(db_id, from_t + 1, basis + 1):
                items.append((P.NOVELTY, 0, P.novelty_payload(name, rec)))
        items.append((P.REPLY, req_id, P.dumps({"basis_t": basis, "db_id": db_id})))
        session.subs.add(name)
        self.subscribers.setdefault(name, set()).add(session)
        session.send_many(items)

    def on_unsubscribe(self, session, req_id, payload):
        name = _need_db(P.loads(payload, "UNSUBSCRIBE"), "UNSUBSCRIBE")
        session.subs.discard(name)
        self.subscribers.get(name, set()).discard(session)
        session.send(P.REPLY, req_id, b"{}")

    # --- publishing (writer thread or event loop -> event loop) --------------------------

    def _publish_from_pipeline(self, name, entries, outcomes, event):
        """Publish a commit's novelty and answers on the event loop, in commit order.

        Every commit joins one queue, ``to_publish``: the writer thread's wait there for
        the loop, and a commit made on the loop itself (``Pipeline.process_now``) is
        delivered after them, so it never overtakes an earlier commit (a peer skips
        novelty older than what it has).
        """
        self.to_publish.append((name, entries, outcomes, event))
        if threading.get_ident() == self.loop_thread:
            self._publish_queued()
        else:
            self.loop.call_soon_threadsafe(self._publish_queued)

    def _publish_queued(self):
        queued = self.to_publish
        while queued:
            item = queued.popleft()
            try:
                self._publish(*item)
            except Exception as e:
                log.exception("publishing a commit of %r failed", item[0])
                self._drop_unpublished(item, e)

    def _drop_unpublished(self, item, err):
        """A commit could not be published (a bug): close every connection that may have
        missed part of it, its database's subscribers and the peers awaiting an answer.
        They reconnect and subscribe again from their basis, so the log catches them up
        and a retry of an unanswered transaction finds it committed (idempotent tx id);
        a connection left open would silently skip that novelty.

        >>> from types import SimpleNamespace
        >>> class Peer:
        ...     closed = False
        ...     def fail(self, err): print("closed:", err)
        >>> t = SimpleNamespace(subscribers={"orders": {Peer()}})
        >>> Transactor._drop_unpublished(t, ("orders", [], [], None), ValueError("bug"))
        closed: cannot publish a commit of database orders: bug
        """
        name, _entries, outcomes, _event = item
        sessions = set(self.subscribers.get(name, ()))
        sessions.update(o.request.reply[0] for o in outcomes if o.request.reply is not None)
        reason = TransactorUnavailableError(
            f"cannot publish a commit of database {name}: {err}", data={"outcome": "unknown"})
        for s in sessions:
            if not s.closed:
                s.fail(reason)

    def _publish(self, name, entries, outcomes, event):
        if self.deposed:
            return              # §4.3: a possibly deposed active acknowledges nothing
        per_session: dict[PeerSession, list] = {}
        subs = self.subscribers.get(name, ())
        if entries:
            frames = [(P.NOVELTY, 0, P.novelty_payload(name, rec)) for _, _, rec in entries]
            with_tempids = _with_tempids(name, outcomes, frames) if any(
                s.tempids for s in subs) else frames
            for s in subs:
                per_session[s] = list(with_tempids if s.tempids else frames)
            self.published[name] = entries[-1][1]
        if event == "deleted":
            self.published.pop(name, None)
            gone = P.dumps({"db": name})
            for s in list(subs):
                per_session.setdefault(s, []).append((P.DB_GONE, 0, gone))
                s.subs.discard(name)
            self.subscribers.pop(name, None)
        elif isinstance(event, tuple) and event[0] == "indexed":
            msg = P.dumps({"db": name, "index_basis_t": event[1]})
            for s in subs:
                per_session.setdefault(s, []).append((P.INDEXED, 0, msg))
        acks: dict[PeerSession, list] = {}
        for o in outcomes:
            req = o.request
            if req.op == "create" and o.error is None:
                st = self.pipeline.dbs.get(name)
                if st is not None and name not in self.published:
                    self.published[name] = st.writer.db.basis_t
            if req.reply is None:
                continue
            session, req_id = req.reply
            if session.closed:
                continue
            if o.error is None and session.acks and req.op == "tx":
                r = o.result
                acks.setdefault(session, []).append([req_id, r["t"], r["tempids"], r["duplicate"]])
                continue
            try:
                if o.error is not None:
                    item = (P.ERROR, req_id, _error_bytes(o.error))
                else:
                    item = (P.REPLY, req_id, _reply_bytes(o.result))
            except Exception as e:
                # One unencodable answer must not cost every other peer its novelty and acks.
                log.exception("cannot encode the answer to request %d of %s", req_id, session.name)
                item = (P.ERROR, req_id, P.error_payload(e))
            per_session.setdefault(session, []).append(item)
        for session, items in acks.items():
            try:
                payload = P.acks_payload(items)
            except Exception as e:
                log.exception("cannot encode %d acks to %s", len(items), session.name)
                err = P.error_payload(e)
                per_session.setdefault(session, []).extend((P.ERROR, a[0], err) for a in items)
                continue
            per_session.setdefault(session, []).append((P.ACKS, 0, payload))
        for s, items in per_session.items():
            s.send_many(items)


def _with_tempids(name, outcomes, frames):
    """``frames`` (one group commit's NOVELTY) after the TEMPIDS frame of its transactions:
    a peer reads each transaction's tempids before its novelty builds the report."""
    pairs = [[o.result["t"], o.result["tempids"]] for o in outcomes
             if o.error is None and o.request.op == "tx" and isinstance(o.result, dict)
             and not o.result.get("duplicate") and o.result.get("tempids")]
    if not pairs:
        return frames
    try:
        payload = P.tempids_payload(name, pairs)
    except Exception:      # noqa: BLE001 - reports then say {} as before; novelty must go out
        log.exception("cannot encode the tempids of %d transactions of %r", len(pairs), name)
        return frames
    return [(P.TEMPIDS, 0, payload)] + frames


def _read_edn(text: str):
    # Byte strings have no EDN form: the peer writes them as #fastdatomic/bytes.
    return edn.loads(text, tags=edn.BYTES_TAGS if "#" + edn.BYTES_TAG in text else None)


def _error_bytes(err: BaseException) -> bytes:
    """The ERROR payload of a failed request, with its ``data`` also as EDN (``data_edn``):
    keywords, forms and values reach the peer as they were (JSON would make them text)."""
    payload = P.error_payload(err)
    data = getattr(err, "data", None)
    if not data:
        return payload
    try:
        text = edn.dumps(data, default=_edn_or_repr)
    except (TypeError, ValueError):
        return payload
    msg = orjson.loads(payload)
    msg["data_edn"] = text
    return orjson.dumps(msg)


def _edn_or_repr(x):
    try:
        return edn.tagged_bytes(x)
    except TypeError:
        return edn.dumps(repr(x))


def _reply_bytes(result: dict) -> bytes:
    # tempids keys are strings; values ints. default=str covers odd tempid keys.
    return orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS, default=str)


def main(argv=None) -> int:
    """``fastdatomic-transactor path/to/config.properties``."""
    import argparse
    from fastdatomic.transactor.config import load_config
    ap = argparse.ArgumentParser(prog="fastdatomic-transactor",
                                 description="Run a fastdatomic transactor (active or standby).")
    ap.add_argument("properties", help="transactor properties file, e.g. config/dev-transactor.properties")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.properties)
    except FastDatomicError as e:
        print(f"fastdatomic-transactor: {e}", file=sys.stderr)
        return 2
    _setup_logging(cfg)
    gc.set_threshold(*GC_THRESHOLDS)
    for w in cfg.warnings:
        log.warning("%s", w)
        print(f"warning: {w}", file=sys.stderr)
    # Transaction functions run here, not in peers: like Datomic's transactor classpath,
    # FASTDATOMIC_TX_FNS names modules (comma-separated, importable from PYTHONPATH) that
    # are imported at startup so they can register functions (fd.register_tx_fn) named
    # by keyword. Functions named by a qualified symbol are imported on first use anyway.
    import importlib
    for mod in filter(None, (m.strip() for m in os.environ.get("FASTDATOMIC_TX_FNS", "").split(","))):
        try:
            importlib.import_module(mod)
        except Exception as e:
            print(f"fastdatomic-transactor: FASTDATOMIC_TX_FNS: cannot import {mod!r}: {e!r}",
                  file=sys.stderr)
            return 2
        log.info("transaction functions: imported %s", mod)
    try:
        return Transactor(cfg).run()
    except FastDatomicError as e:
        log.critical("%s", e)
        print(f"fastdatomic-transactor: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        log.critical("%s", e)
        print(f"fastdatomic-transactor: {e}", file=sys.stderr)
        return 2


def _setup_logging(cfg):
    os.makedirs(cfg.log_dir, exist_ok=True)
    path = os.path.join(cfg.log_dir, "transactor.log")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
