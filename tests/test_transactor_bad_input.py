"""Bad input never hurts the system (ARCHITECTURE §4.9, issue 5 item 8), with real processes.

One transactor subprocess on loopback serves the whole module; a well-behaved peer
(``fastdatomic.connect``) is connected to it throughout. Each test attacks the transactor
from raw sockets -- garbage, HTTP, wrong version, oversize and truncated frames, failed or
missing authentication, malformed requests, invalid transactions, idle and slow clients,
many bad connections at once -- and checks what the offending connection gets (an ERROR
frame naming the problem, then the connection closed; or an ERROR for that request only
when the framing is intact), then that nothing else was hurt:

(a) the well-behaved peer keeps transacting and keeps receiving novelty on the SAME
    connection (it never had to reconnect);
(b) the transactor keeps its heartbeat (the lease ``counter`` keeps increasing);
(c) no acknowledged transaction is lost (each is read back from storage).

Limits are set small in the properties so that every test is short: ``max-frame-bytes``
64k, ``auth-timeout-msec`` 1000, ``peer-backlog-max`` 256k. Every loop here is bounded in
count and in time.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
import uuid

import orjson
import pytest

import fastdatomic as fd
from fastdatomic import edn, peer as peer_mod
from fastdatomic._core.frame import FrameDecoder, encode_frame
from fastdatomic._core.txwire import TxWire
from fastdatomic.db import catalog
from fastdatomic.errors import TxTooLargeError
from fastdatomic.transactor import protocol as P
from fastdatomic.transactor.lease import read_lease
from transactor_helper import start_transactor, wait_until

MAX_FRAME = 64 << 10
AUTH_TIMEOUT_MSEC = 1000
PEER_BACKLOG = 256 << 10
DB = "items"
SCHEMA = """[{:db/ident :item/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one
              :db/unique :db.unique/identity}
             {:db/ident :item/label :db/valueType :db.type/string
              :db/cardinality :db.cardinality/one}]"""
IO_TIMEOUT = 5.0


# --- a tiny blocking raw client ----------------------------------------------------------------

class Closed(Exception):
    """The transactor closed the connection."""


class RawClient:
    """A blocking socket speaking frames by hand (the test's view of the wire)."""

    def __init__(self, lease, rcvbuf=None):
        self.lease = lease
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:     # before connect, so the window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.connect((lease["host"], lease["port"]))
        self.decoder = FrameDecoder(1 << 30)
        self.frames: list[tuple[int, int, bytes]] = []
        self.eof = False
        self.received = 0

    def close(self):
        self.sock.close()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send(self, kind, req_id, payload: bytes | dict):
        if isinstance(payload, dict):
            payload = P.dumps(payload)
        self.send_raw(encode_frame(kind, req_id, payload))

    def _fill(self, deadline):
        """Read once more from the socket; ``Closed`` at EOF or reset."""
        if self.eof:
            raise Closed()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no frame from the transactor in time")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        except socket.timeout:
            raise TimeoutError("no frame from the transactor in time") from None
        if not data:
            self.eof = True
            raise Closed()
        self.received += len(data)
        self.frames.extend(self.decoder.feed(data))

    def read_frame(self, timeout=IO_TIMEOUT):
        """The next frame; ``Closed`` if the connection ended first."""
        deadline = time.monotonic() + timeout
        while not self.frames:
            self._fill(deadline)
        return self.frames.pop(0)

    def reply(self, req_id, timeout=IO_TIMEOUT):
        """The REPLY or ERROR for ``req_id`` (skipping pings and novelty)."""
        deadline = time.monotonic() + timeout
        for _ in range(100_000):
            kind, rid, payload = self.read_frame(max(deadline - time.monotonic(), 0.001))
            if kind in (P.REPLY, P.ERROR) and rid == req_id:
                return kind, orjson.loads(payload)
            assert kind in (P.NOVELTY, P.INDEXED), (kind, rid, payload[:200])
        raise AssertionError("unbounded stream of frames")

    def read_until_closed(self, timeout=IO_TIMEOUT):
        """Every frame up to the transactor closing the connection (which it must do in time)."""
        deadline = time.monotonic() + timeout
        out = []
        for _ in range(1_000_000):
            try:
                out.append(self.read_frame(max(deadline - time.monotonic(), 0.001)))
            except Closed:
                return out
        raise AssertionError("unbounded stream of frames")

    def challenge(self):
        kind, req_id, payload = self.read_frame()
        assert (kind, req_id) == (P.CHALLENGE, 0)
        return orjson.loads(payload)

    def authenticate(self):
        """CHALLENGE -> AUTH -> WELCOME with the secret read from storage."""
        nonce = bytes.fromhex(self.challenge()["nonce"])
        cnonce = os.urandom(16)
        self.send(P.AUTH, 0, {"cnonce": cnonce.hex(),
                              "mac": P.peer_mac(self.lease["secret"], nonce, cnonce)})
        kind, _, payload = self.read_frame()
        assert kind == P.WELCOME, payload
        welcome = orjson.loads(payload)
        assert welcome["mac"] == P.transactor_mac(self.lease["secret"], cnonce, nonce)
        return welcome


def header(kind=P.TRANSACT, req_id=1, length=0, magic=b"FD", version=1) -> bytes:
    return magic + struct.pack(">BBII", version, kind, req_id, length)


def expect_error_then_close(client, kind, *words, timeout=IO_TIMEOUT):
    """The connection ends with exactly one ERROR (req_id 0) of ``kind`` whose message holds
    every one of ``words``; returns the parsed ERROR payload."""
    frames = client.read_until_closed(timeout)
    errors = [orjson.loads(p) for k, r, p in frames if k == P.ERROR]
    others = [k for k, r, p in frames if k not in (P.ERROR, P.CHALLENGE)]
    assert len(errors) == 1, frames
    assert not others, frames
    err = errors[0]
    assert err["kind"] == kind, err
    for w in words:
        assert w in err["message"], err
    assert frames[-1][0] == P.ERROR and frames[-1][1] == 0   # the last word, then closed
    return err


def expect_request_error(client, req_id, kind, *words):
    """An ERROR for ``req_id`` only; the connection stays open."""
    k, msg = client.reply(req_id)
    assert k == P.ERROR, msg
    assert msg["kind"] == kind, msg
    for w in words:
        assert w in msg["message"], msg
    return msg


# --- the system under attack ----------------------------------------------------------------------

class System:
    """The transactor process, its storage (through the peer) and a well-behaved peer."""

    def __init__(self, dir_):
        self.dir = dir_
        self.data_dir = os.path.join(dir_, "data")
        self.tx = start_transactor(dir_, max_frame_bytes="64k",
                                   auth_timeout_msec=AUTH_TIMEOUT_MSEC,
                                   peer_backlog_max="256k")
        self.uri = f"fastdatomic:dev://{self.data_dir}/{DB}"
        assert fd.create_database(self.uri) is True
        self.conn = fd.connect(self.uri)
        self.conn.transact(SCHEMA)
        self.storage = self.conn.storage
        self.acked: dict[int, int] = {}          # item n -> t, acknowledged by the transactor
        self.next_n = 0
        self.counter_at_start = 0
        self.reconnects_at_start = self.conn.system.reconnects

    @property
    def log_path(self):
        return os.path.join(self.dir, "transactor-log", "transactor.log")

    def log_text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def lease(self):
        return read_lease(self.storage)

    def new_n(self):
        self.next_n += 1
        return self.next_n

    def raw(self, **kw) -> RawClient:
        return RawClient(self.lease(), **kw)

    def authed(self, **kw) -> RawClient:
        c = self.raw(**kw)
        c.authenticate()
        return c

    def transact(self, label="good"):
        """One transaction by the well-behaved peer; remembered as acknowledged."""
        n = self.new_n()
        r = self.conn.transact([{":item/n": n, ":item/label": label}])
        self.acked[n] = r.t
        return r

    def raw_transact(self, client, req_id, n, label="raw"):
        client.send(P.TRANSACT, req_id, {"db": DB, "tx": f'[{{:item/n {n} :item/label "{label}"}}]',
                                         "tx_id": str(uuid.uuid4())})
        kind, msg = client.reply(req_id)
        assert kind == P.REPLY, msg
        self.acked[n] = msg["t"]
        return msg["t"]

    def assert_unharmed(self):
        """(a) the good peer transacts and receives novelty on its same connection, (b) the
        heartbeat goes on, (c) every acknowledged transaction is in storage."""
        assert self.tx.proc.poll() is None, "\n".join(self.tx.output[-20:])
        # (a) its own transaction, then one from another connection that reaches it as novelty
        #     (db() is never synced here: only pushed novelty can move it).
        self.transact()
        other = self.authed()
        try:
            t = self.raw_transact(other, 7, self.new_n())
        finally:
            other.close()
        wait_until(lambda: self.conn.db().basis_t >= t, timeout=5.0)
        assert self.conn.system.reconnects == self.reconnects_at_start, \
            "the well-behaved peer lost its connection"
        # (b) the heartbeat kept its cadence (interval 1 s).
        wait_until(lambda: self.lease()["counter"] > self.counter_at_start, timeout=3.0)
        assert self.lease()["epoch"] == self.epoch
        # (c) read back from storage, not from the peer's memory.
        db = catalog.load_database(self.storage, DB)
        present = {n: db.entity([":item/n", n]) is not None for n in self.acked}
        missing = [n for n, ok in present.items() if not ok]
        assert not missing, f"acknowledged items lost: {missing}"
        assert db.basis_t >= max(self.acked.values())

    def close(self):
        shutdown = getattr(peer_mod, "shutdown_peers", None)
        if shutdown is not None:
            shutdown()
        else:
            self.conn.system.close()
        self.tx.stop()


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    s = System(str(tmp_path_factory.mktemp("bad-input")))
    s.epoch = s.lease()["epoch"]
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _mark(system):
    system.counter_at_start = system.lease()["counter"]


# --- malformed frames, before authentication ------------------------------------------------------

def test_random_garbage_is_refused_at_the_first_bytes(system):
    c = system.raw()
    c.challenge()
    garbage = bytes(random.Random(5).randrange(256) for _ in range(4096))
    c.send_raw(b"\x00" + garbage)          # never starts with the magic
    err = expect_error_then_close(c, "fastdatomic.error/protocol", "bad magic",
                                  "not a fastdatomic frame")
    assert err["data"]["reason"] == "magic" and err["data"]["offset"] == 0
    system.assert_unharmed()


def test_an_http_request_on_the_peer_port(system):
    c = system.raw()
    c.send_raw(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    expect_error_then_close(c, "fastdatomic.error/protocol", "bad magic b'GE'", "HTTP client")
    system.assert_unharmed()


def test_a_tls_hello_on_a_plain_port(system):
    c = system.raw()
    c.send_raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64)
    expect_error_then_close(c, "fastdatomic.error/protocol", "bad magic", "TLS client")
    system.assert_unharmed()


def test_wrong_protocol_version(system):
    c = system.raw()
    c.challenge()
    c.send_raw(header(P.AUTH, 0, 2, version=2) + b"{}")
    err = expect_error_then_close(c, "fastdatomic.error/protocol", "protocol version 2",
                                  "not supported", "version 1")
    assert err["data"]["reason"] == "version"
    system.assert_unharmed()


@pytest.mark.parametrize("authenticated", [False, True], ids=["before-auth", "after-auth"])
def test_oversize_frame_is_refused_at_its_header(system, authenticated):
    c = system.authed() if authenticated else system.raw()
    # Only the header: the refusal must not wait for (or buffer) the payload.
    c.send_raw(header(P.TRANSACT, 3, MAX_FRAME + 1))
    err = expect_error_then_close(c, "fastdatomic.error/protocol", f"{MAX_FRAME + 1} bytes",
                                  f"exceeds max-frame-bytes {MAX_FRAME}")
    assert err["data"]["reason"] == "oversize" and "max-frame-bytes" in err["hint"]
    # A header announcing 4 GB is refused just the same.
    c2 = system.raw()
    c2.send_raw(header(P.AUTH, 0, 0xFFFFFFFF))
    expect_error_then_close(c2, "fastdatomic.error/protocol", "exceeds max-frame-bytes")
    system.assert_unharmed()


def test_a_frame_of_exactly_max_frame_bytes_is_accepted(system):
    c = system.authed()
    n = system.new_n()
    tx = f'[{{:item/n {n} :item/label "%s"}}]'
    body = {"db": DB, "tx": tx, "tx_id": str(uuid.uuid4())}
    pad = MAX_FRAME - len(P.dumps({**body, "tx": tx % ""}))
    body["tx"] = tx % ("x" * pad)
    assert len(P.dumps(body)) == MAX_FRAME
    c.send(P.TRANSACT, 4, body)
    kind, msg = c.reply(4)
    assert kind == P.REPLY, msg
    system.acked[n] = msg["t"]
    c.close()
    system.assert_unharmed()


@pytest.mark.parametrize("cut", ["in-header", "in-payload"])
def test_truncated_frame_then_hang_up(system, cut):
    c = system.authed()
    n = system.new_n()
    frame = encode_frame(P.TRANSACT, 5, P.dumps({
        "db": DB, "tx": f"[{{:item/n {n} :item/label \"half\"}}]", "tx_id": str(uuid.uuid4())}))
    c.send_raw(frame[:7] if cut == "in-header" else frame[:-3])
    c.sock.shutdown(socket.SHUT_WR)
    # The transactor just drops the connection.
    assert all(k == P.ERROR for k, _, _ in c.read_until_closed())
    system.assert_unharmed()
    assert catalog.load_database(system.storage, DB).entity([":item/n", n]) is None


# --- authentication ----------------------------------------------------------------------------------

def test_wrong_mac_is_unauthorized(system):
    c = system.raw()
    nonce = bytes.fromhex(c.challenge()["nonce"])
    cnonce = os.urandom(16)
    wrong_secret = "00" * 32
    c.send(P.AUTH, 0, {"cnonce": cnonce.hex(), "mac": P.peer_mac(wrong_secret, nonce, cnonce)})
    err = expect_error_then_close(c, "fastdatomic.error/unauthorized", "authentication failed")
    assert system.lease()["secret"] not in str(err)        # the secret never crosses the wire
    system.assert_unharmed()


def test_a_mac_replayed_for_another_nonce_is_unauthorized(system):
    # A MAC good for one connection's challenge is worthless on another connection.
    a, b = system.raw(), system.raw()
    nonce_a = bytes.fromhex(a.challenge()["nonce"])
    b.challenge()
    cnonce = os.urandom(16)
    b.send(P.AUTH, 0, {"cnonce": cnonce.hex(),
                       "mac": P.peer_mac(system.lease()["secret"], nonce_a, cnonce)})
    expect_error_then_close(b, "fastdatomic.error/unauthorized", "authentication failed")
    a.close()
    system.assert_unharmed()


@pytest.mark.parametrize("mac", ["", "é" * 64, 12345, None, ["x"]])
def test_a_mac_of_the_wrong_shape_is_unauthorized(system, mac):
    c = system.raw()
    c.challenge()
    c.send(P.AUTH, 0, {"cnonce": os.urandom(16).hex(), "mac": mac})
    expect_error_then_close(c, "fastdatomic.error/unauthorized", "authentication failed")
    system.assert_unharmed()


@pytest.mark.parametrize("payload,words", [
    (b"not json", ["AUTH payload is not a JSON object"]),
    (b"[1, 2]", ["AUTH payload is not a JSON object"]),
    (b'{"cnonce": "zz", "mac": "00"}', ["AUTH needs hex 'cnonce' and 'mac'"]),
    (b'{"mac": "00"}', ["AUTH needs hex 'cnonce' and 'mac'"]),
])
def test_malformed_auth(system, payload, words):
    c = system.raw()
    c.challenge()
    c.send(P.AUTH, 0, payload)
    expect_error_then_close(c, "fastdatomic.error/protocol", *words)
    system.assert_unharmed()


@pytest.mark.parametrize("kind", [P.TRANSACT, P.TRANSACT_BIN, P.LIST_DBS, P.SUBSCRIBE, 99])
def test_a_request_before_auth(system, kind):
    c = system.raw()
    c.challenge()
    c.send(kind, 1, {"db": DB, "tx": "[]"})
    expect_error_then_close(c, "fastdatomic.error/protocol", "before authentication",
                            "the first message must be AUTH")
    system.assert_unharmed()


def test_an_idle_client_is_closed_after_the_auth_timeout(system):
    c = system.raw()
    t0 = time.monotonic()
    c.challenge()
    err = expect_error_then_close(c, "fastdatomic.error/unauthorized",
                                  "no authentication within", timeout=3.0)
    waited = time.monotonic() - t0
    assert AUTH_TIMEOUT_MSEC / 1000 * 0.8 <= waited <= 3.0, waited
    assert err["hint"]
    system.assert_unharmed()


def test_an_authenticated_client_is_not_timed_out(system):
    c = system.authed()
    time.sleep(AUTH_TIMEOUT_MSEC / 1000 + 0.3)
    c.send(P.LIST_DBS, 9, {})
    kind, msg = c.reply(9)
    assert kind == P.REPLY and DB in msg["names"]
    c.close()
    system.assert_unharmed()


# --- well-framed but bad requests: an ERROR for that request, the connection stays usable --------------

def _still_usable(system, c, req_id=500):
    c.send(P.LIST_DBS, req_id, {})
    kind, msg = c.reply(req_id)
    assert kind == P.REPLY and DB in msg["names"], msg
    system.raw_transact(c, req_id + 1, system.new_n())


def test_an_unknown_message_kind_after_auth(system):
    c = system.authed()
    for req_id, kind in enumerate((99, 0, 255, P.WELCOME, P.NOVELTY, P.AUTH), start=1):
        c.send(kind, req_id, b"{}")
        expect_request_error(c, req_id, "fastdatomic.error/protocol", f"unknown message kind {kind}")
    _still_usable(system, c)
    c.close()
    system.assert_unharmed()


@pytest.mark.parametrize("kind", [P.TRANSACT, P.SUBSCRIBE, P.UNSUBSCRIBE, P.CREATE_DB,
                                  P.DELETE_DB])
def test_malformed_json_payloads(system, kind):
    name = P.KIND_NAMES[kind]
    c = system.authed()
    bad = [
        (b"{not json", "payload is not a JSON object"),
        (b"", "payload is not a JSON object"),
        (b"\xff\xfe\x00", "payload is not a JSON object"),
        (b"[1, 2, 3]", "payload is not a JSON object but list"),
        (b'"text"', "payload is not a JSON object but str"),
        (b"[" * 5000, "payload is not a JSON object"),
        (b'{"db": 5}', "needs a database name 'db'"),
        (b'{}', "needs a database name 'db'"),
    ]
    for i, (payload, words) in enumerate(bad, start=1):
        c.send(kind, i, payload)
        msg = expect_request_error(c, i, "fastdatomic.error/protocol", words)
        if "JSON" in words:
            assert name in msg["message"]
    _still_usable(system, c)
    c.close()
    system.assert_unharmed()


def test_subscribe_with_bad_arguments(system):
    c = system.authed()
    c.send(P.SUBSCRIBE, 1, {"db": DB, "from_t": "zero"})
    expect_request_error(c, 1, "fastdatomic.error/protocol", "'from_t' must be an integer")
    c.send(P.SUBSCRIBE, 2, {"db": "no-such-db"})
    expect_request_error(c, 2, "db.error/db-not-found", "no-such-db")
    c.send(P.CREATE_DB, 3, {"db": "bad name/with slash"})
    k, msg = c.reply(3)
    assert k == P.ERROR and "bad name/with slash" in msg["message"], msg
    _still_usable(system, c)
    c.close()
    system.assert_unharmed()


def test_transact_with_bad_requests_gets_an_error_for_each(system):
    c = system.authed()
    good = "[{:item/n %d :item/label \"ok\"}]"
    cases = [
        ({"db": DB, "tx": good % system.new_n(), "tx_id": "not-a-uuid"},
         "db.error/invalid-tx-data", ["tx_id 'not-a-uuid' is not a UUID"]),
        ({"db": DB, "tx": good % system.new_n(), "tx_id": 12345},
         "db.error/invalid-tx-data", ["is not a UUID"]),
        ({"db": DB, "tx": "[{:item/n 1 :item/label \"unterminated}]", "tx_id": str(uuid.uuid4())},
         "edn/syntax", ["unterminated string"]),
        ({"db": DB, "tx": "[{:item/n", "tx_id": str(uuid.uuid4())},
         "edn/syntax", ["unterminated"]),
        ({"db": DB, "tx": "[" * 3000 + "]" * 3000, "tx_id": str(uuid.uuid4())},
         "edn/syntax", ["nesting deeper"]),
        ({"db": DB, "tx": "#evil 1", "tx_id": str(uuid.uuid4())},
         "edn/syntax", ["unknown tag #evil"]),
        ({"db": DB, "tx": "[{:no/such-attr 1}]", "tx_id": str(uuid.uuid4())},
         "db.error/not-an-entity", ["no/such-attr", "is not an attribute"]),
        ({"db": DB, "tx": "[{:item/n \"not a long\"}]", "tx_id": str(uuid.uuid4())},
         None, [":item/n"]),
        ({"db": DB, "tx": "[[:db/add]]", "tx_id": str(uuid.uuid4())}, None, []),
        ({"db": DB, "tx": "42", "tx_id": str(uuid.uuid4())}, None, []),
        ({"db": DB, "tx": ["not", "edn", "text"], "tx_id": str(uuid.uuid4())},
         "db.error/invalid-tx-data", ["EDN text"]),
        ({"db": "no-such-db", "tx": "[]", "tx_id": str(uuid.uuid4())},
         "db.error/db-not-found", ["no-such-db"]),
    ]
    for i, (body, kind, words) in enumerate(cases, start=1):
        c.send(P.TRANSACT, i, body)
        k, msg = c.reply(i)
        assert k == P.ERROR, (body, msg)
        if kind is not None:
            assert msg["kind"] == kind, (body, msg)
        assert msg["message"], msg
        for w in words:
            assert w in msg["message"], (body, msg)
    _still_usable(system, c)
    c.close()
    # The well-behaved peer's API reports the same errors, and its connection stays up.
    with pytest.raises(fd.FastDatomicError, match="is not an attribute"):
        system.conn.transact([{":no/such-attr": 1}])
    system.assert_unharmed()


WIRE = TxWire(edn.Form, edn.dumps)


def test_malformed_binary_transactions_get_an_error_each(system):
    # TRANSACT_BIN (binary tx-data, _core.txwire): a payload that does not decode fails
    # alone, as "malformed TRANSACT_BIN ... at byte N", and the connection stays usable.
    c = system.authed()
    head = b"\x01\x00" + bytes([len(DB)]) + DB.encode()
    good = WIRE.transact_payload(DB, uuid.uuid4(), None, [{":item/n": system.new_n()}])
    cases = [
        (b"", "1 bytes needed, 0 left"),
        (b"\x07" + head[1:] + b"\x0e\x00", "format version 7 is not supported"),
        (b"\x01\x80" + head[2:] + b"\x0e\x00", "unknown flags 0x80"),
        (head + b"\x63", "unknown tag 0x63"),
        (head + b"\x0e\x01" * 5000 + b"\x00", "nesting deeper than"),
        (head + b"\x0e\xff\xff\xff\xff\x0f", "exceeds the"),
        (head + b"\x10\x01\x0e\x00\x00", "map key of unhashable type list"),
        (head + b"\x0e\x01\x06\x02\xc3\x28", "text is not UTF-8"),
        (head + b"\x0e\x01\x12\x09", "name reference 9"),
        (head + b"\x0e\x01\x0a" + b"\xff" * 13, "invalid instant"),
        (head + b"\x0e\x01\x0b\x03NaN", "invalid decimal"),
        (good[:-1], "truncated"),
        (good + b"\x00", "1 bytes after the tx-data"),
        (b"\x01\x01" + head[2:] + b"\xff\xfe", "EDN text is not UTF-8"),
    ]
    for i, (payload, words) in enumerate(cases, start=1):
        c.send(P.TRANSACT_BIN, i, payload)
        msg = expect_request_error(c, i, "fastdatomic.error/protocol", "malformed TRANSACT_BIN",
                                   words)
        assert msg["data"]["reason"] == "txwire" and msg["data"]["outcome"] == "not-committed"
    # Decoded, but not a transaction: the errors the EDN path gives.
    bad = [
        (WIRE.transact_payload_edn(DB, uuid.uuid4(), None, "[{:item/n"), "edn/syntax"),
        (WIRE.transact_payload(DB, uuid.uuid4(), None, [{":no/such-attr": 1}]),
         "db.error/not-an-entity"),
        (WIRE.transact_payload("bad name/with slash", None, None, []), None),
        (WIRE.transact_payload("no-such-db", None, None, []), "db.error/db-not-found"),
    ]
    for i, (payload, kind) in enumerate(bad, start=100):
        c.send(P.TRANSACT_BIN, i, payload)
        k, msg = c.reply(i)
        assert k == P.ERROR and (kind is None or msg["kind"] == kind), msg
    # Random bytes after a good header: each gets an answer of its own (an empty vector is a
    # valid, empty transaction), and nothing else happens.
    rng = random.Random(55)
    for i in range(200, 400):
        c.send(P.TRANSACT_BIN, i, head + bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
        k, msg = c.reply(i)
        assert k in (P.REPLY, P.ERROR), msg
    # Well-formed binary and EDN-text requests on the same connection.
    for i, payload in enumerate([
            WIRE.transact_payload(DB, uuid.uuid4(), None,
                                  [{":item/n": (n1 := system.new_n()), ":item/label": "bin"}]),
            WIRE.transact_payload_edn(DB, uuid.uuid4(), None,
                                      f'[{{:item/n {(n2 := system.new_n())} :item/label "edn"}}]')],
            start=500):
        c.send(P.TRANSACT_BIN, i, payload)
        k, msg = c.reply(i)
        assert k == P.REPLY, msg
        system.acked[n1 if i == 500 else n2] = msg["t"]
    _still_usable(system, c, 600)
    c.close()
    system.assert_unharmed()


def test_invalid_transactions_in_one_group_commit_with_valid_ones(system):
    # Pipelined in one write, so they share group commits: each invalid one fails alone
    # (its error data holds keyword-keyed tx forms, which must still reach the peer), every
    # valid one is acknowledged, and the other peer's novelty and acks are not held up.
    c = system.authed()
    sent = {}
    wire = []
    for req_id in range(1, 41):
        n = system.new_n()
        if req_id % 2:
            tx = f'[{{:item/n {n} :item/label "batch"}}]'
        else:
            tx = f'[{{:item/n {n} :no/such-attr {req_id}}}]'
        sent[req_id] = n
        wire.append(encode_frame(P.TRANSACT, req_id, P.dumps({"db": DB, "tx": tx})))
    fut = system.conn.transact_async([{":item/n": (good_n := system.new_n())}])
    c.send_raw(b"".join(wire))
    for req_id, n in sent.items():
        kind, msg = c.reply(req_id)
        if req_id % 2:
            assert kind == P.REPLY, msg
            system.acked[n] = msg["t"]
        else:
            assert kind == P.ERROR and msg["kind"] == "db.error/not-an-entity", msg
            assert msg["data"]["form"][":no/such-attr"] == req_id
    system.acked[good_n] = fut.result(10).t
    c.close()
    system.assert_unharmed()


# --- clients that do not read ---------------------------------------------------------------------

def test_a_slow_subscriber_is_cut_off_without_unbounded_buffering(system):
    slow = system.authed(rcvbuf=4096)
    slow.send(P.SUBSCRIBE, 1, {"db": DB, "from_t": system.conn.db().basis_t})
    # ... and never reads. The good peer writes ~40 KB transactions until the transactor gives
    # up on the slow one (kernel buffers take a few MB first), then 2 MB more.
    label = "s" * (40 << 10)
    pushed = 0
    cut_at = None
    t0 = time.monotonic()
    for i in range(1000):
        assert time.monotonic() - t0 < 30, "the slow subscriber was never cut off"
        ns = [system.new_n() for _ in range(8)]
        futs = [system.conn.transact_async([{":item/n": n, ":item/label": label}]) for n in ns]
        for n, f in zip(ns, futs):
            system.acked[n] = f.result(10).t
        pushed += 8 * len(label)
        if cut_at is None and "too slow" in system.log_text():
            cut_at = pushed
        if cut_at is not None and pushed > cut_at + (2 << 20):
            break
    assert cut_at is not None
    # Now it reads: what was queued for it, then the ERROR saying why, then the end.
    frames = slow.read_until_closed(timeout=10.0)
    assert frames[-1][0] == P.ERROR, [f[0] for f in frames[-3:]]
    err = orjson.loads(frames[-1][2])
    assert "too slow" in err["message"] and "reconnect" in err["message"]
    # Bounded: it got what was queued when it was cut off (kernel buffers plus at most
    # peer-backlog-max and one batch), nothing of the 2 MB written after.
    assert slow.received < cut_at + PEER_BACKLOG + (512 << 10), (slow.received, cut_at)
    assert slow.received < pushed - (1 << 20), (slow.received, pushed)
    system.assert_unharmed()


def test_many_concurrent_bad_connections_while_a_good_peer_transacts(system):
    stop = threading.Event()
    done, failures = [], []

    def good_peer():
        for _ in range(10_000):
            if stop.is_set():
                return
            try:
                done.append(system.transact("during-attack"))
            except Exception as e:    # pragma: no cover - reported below
                failures.append(e)
                return

    worker = threading.Thread(target=good_peer)
    worker.start()
    try:
        rng = random.Random(50)
        clients = [system.raw() for _ in range(50)]
        for i, c in enumerate(clients):
            kind = i % 5
            if kind == 0:
                c.send_raw(b"\x00" + bytes(rng.randrange(256) for _ in range(512)))
            elif kind == 1:
                c.send_raw(b"GET / HTTP/1.0\r\n\r\n")
            elif kind == 2:
                c.send_raw(header(P.AUTH, 0, 2, version=7) + b"{}")
            elif kind == 3:
                c.send_raw(header(P.AUTH, 0, MAX_FRAME + 1))
            else:
                c.send(P.TRANSACT, 1, {"db": DB, "tx": "[]"})
        for i, c in enumerate(clients):
            frames = c.read_until_closed(timeout=10.0)
            assert frames and frames[-1][0] == P.ERROR, (i, frames)
            c.close()
    finally:
        stop.set()
        worker.join(20)
    assert not failures, failures
    assert len(done) > 0
    system.assert_unharmed()


# --- the peer API ---------------------------------------------------------------------------------

def test_an_oversized_transaction_through_the_peer_api(system):
    n = system.new_n()
    with pytest.raises(TxTooLargeError) as info:
        system.conn.transact([{":item/n": n, ":item/label": "x" * (MAX_FRAME + 10)}], timeout=10)
    err = info.value
    assert "max-frame-bytes" in str(err) and str(MAX_FRAME) in str(err)
    assert err.data["outcome"] == "not-committed"
    # Nothing was sent: the connection is the same one, and nothing was committed.
    assert catalog.load_database(system.storage, DB).entity([":item/n", n]) is None
    system.assert_unharmed()
