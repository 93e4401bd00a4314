"""The peer <-> transactor protocol: message kinds, payloads and the authentication handshake.

Every message is one frame (``_core.frame``: magic, version, kind, request id, length).
Control payloads are orjson objects; novelty payloads are binary (the log record bytes
exactly as stored, so a peer applies the same bytes the log holds); transactions travel
as TRANSACT_BIN, tx-data in the binary encoding of ``_core.txwire`` (EDN text when a
value has no binary form).

The conversation::

    transactor                                  peer
    CHALLENGE {nonce, epoch}            ──►
                                        ◄──     AUTH {cnonce, mac = HMAC(secret, "peer" nonce cnonce), acks}
    WELCOME {mac = HMAC(secret, "transactor" cnonce nonce), epoch, tx_wire}  ──►   (peer checks it)
                                        ◄──     SUBSCRIBE / TRANSACT_BIN / CREATE_DB / ... (req_id n)
    NOVELTY(db, log record) ...         ──►     (to every subscriber, in t order)
    REPLY(req_id n) or ERROR(req_id n)  ──►     (or, for transactions, one ACKS per group commit)

The secret lives only in storage (the lease record, ARCHITECTURE §4.10) and never crosses
the wire: only holders of storage can compute the MACs, in both directions.

>>> nonce, cnonce = b"n" * 16, b"c" * 16
>>> peer_mac("00" * 32, nonce, cnonce) == peer_mac("00" * 32, nonce, cnonce)
True
>>> peer_mac("00" * 32, nonce, cnonce) == transactor_mac("00" * 32, cnonce, nonce)
False
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import orjson

__all__ = [
    "CHALLENGE", "AUTH", "WELCOME", "ERROR", "REPLY", "ACKS", "TRANSACT", "TRANSACT_BIN", "SUBSCRIBE",
    "UNSUBSCRIBE",
    "NOVELTY", "INDEXED", "CREATE_DB", "DELETE_DB", "LIST_DBS", "STATUS", "DB_GONE",
    "REQUEST_INDEX",
    "peer_mac", "transactor_mac", "dumps", "loads", "novelty_payload", "parse_novelty",
    "acks_payload", "parse_acks", "TEMPIDS", "tempids_payload", "parse_tempids",
    "error_payload", "KIND_NAMES",
]

# Message kinds (the frame's kind byte).
CHALLENGE = 1      # transactor -> peer, on connect
AUTH = 2           # peer -> transactor
WELCOME = 3        # transactor -> peer: authenticated {mac, epoch, max_frame_bytes}
ERROR = 4          # transactor -> peer: a request failed (req_id) or the connection is closed (0):
                   # {kind, message, hint, data, data_edn (data with its keywords), class}
REPLY = 5          # transactor -> peer: a request succeeded (req_id)
ACKS = 6           # transactor -> peer (req_id 0): the transactions of one group commit that
                   # succeeded, [[req_id, t, tempids, duplicate], ...], after their novelty;
                   # sent instead of one REPLY each to peers whose AUTH says {"acks": 1}
TRANSACT = 10      # {db, tx: EDN text, tx_id: uuid, db_id?}    -> REPLY {t, tempids, duplicate}
                   # (db_id: the database the peer connected to; a re-created namesake refuses)
TRANSACT_BIN = 16  # binary (``_core.txwire``): db, tx_id, db_id, then tx-data as a binary value
                   # or EDN text (flag)                      -> REPLY as TRANSACT
                   # (peers send it when WELCOME says ``tx_wire``: the format version)
SUBSCRIBE = 11     # {db, from_t}: novelty after from_t, then live -> REPLY {basis_t, db_id}
UNSUBSCRIBE = 12   # {db}
NOVELTY = 13       # binary: u16 name length, name, log record
TEMPIDS = 17       # transactor -> peer (req_id 0): {db, tempids: [[t, tempids], ...]} of the
                   # transactions whose NOVELTY follows, so every peer's tx reports carry
                   # their tempids as in Datomic (a log record has none); sent to peers
                   # whose AUTH says {"tempids": 1}
INDEXED = 14       # {db, index_basis_t}: a new durable index is in storage
DB_GONE = 15       # {db}: the database was deleted
CREATE_DB = 20     # {db} -> REPLY {created}
DELETE_DB = 21     # {db} -> REPLY {deleted}
LIST_DBS = 22      # {} -> REPLY {names}
STATUS = 23        # {} -> REPLY {role, epoch, databases, ...}
REQUEST_INDEX = 24  # {db} -> REPLY {requested, basis_t}: start an indexing job now

KIND_NAMES = {v: k for k, v in dict(globals()).items() if k.isupper() and isinstance(v, int)
              and k not in ("KIND_NAMES",)}

_U16 = struct.Struct(">H")


def peer_mac(secret_hex: str, nonce: bytes, cnonce: bytes) -> str:
    """The peer's proof that it read the secret from storage (hex HMAC-SHA256).

    >>> len(peer_mac("ab" * 32, b"x" * 16, b"y" * 16))
    64
    """
    return hmac.new(bytes.fromhex(secret_hex), b"peer" + nonce + cnonce, hashlib.sha256).hexdigest()


def transactor_mac(secret_hex: str, cnonce: bytes, nonce: bytes) -> str:
    """The transactor's proof to the peer (a different message, so a MAC cannot be reflected).

    >>> transactor_mac("ab" * 32, b"y" * 16, b"x" * 16) != peer_mac("ab" * 32, b"x" * 16, b"y" * 16)
    True
    """
    return hmac.new(bytes.fromhex(secret_hex), b"transactor" + cnonce + nonce,
                    hashlib.sha256).hexdigest()


def dumps(obj) -> bytes:
    """A control payload.

    >>> dumps({"db": "people"})
    b'{"db":"people"}'
    """
    return orjson.dumps(obj)


def loads(payload: bytes, what: str) -> dict:
    """Decode a control payload; ``ProtocolError`` naming the message if it is not a JSON object.

    >>> loads(b'{"db":"x"}', "SUBSCRIBE")
    {'db': 'x'}
    >>> loads(b'[1]', "SUBSCRIBE")
    Traceback (most recent call last):
    ...
    fastdatomic.errors.ProtocolError: SUBSCRIBE payload is not a JSON object but list
    """
    from fastdatomic.errors import ProtocolError
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise ProtocolError(f"{what} payload is not a JSON object: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} payload is not a JSON object but {type(obj).__name__}")
    return obj


def novelty_payload(name: str, record: bytes) -> bytes:
    """The NOVELTY payload: database name, then the log record as stored.

    >>> parse_novelty(novelty_payload("people", b"rec"))
    ('people', b'rec')
    """
    prefix = _NOVELTY_PREFIX.get(name)
    if prefix is None:
        raw = name.encode()
        prefix = _U16.pack(len(raw)) + raw
        if len(_NOVELTY_PREFIX) < 10_000:
            _NOVELTY_PREFIX[name] = prefix
    return prefix + record


_NOVELTY_PREFIX: dict[str, bytes] = {}


def parse_novelty(payload: bytes) -> tuple[str, bytes]:
    """``(db name, log record)`` of a NOVELTY payload."""
    (n,) = _U16.unpack_from(payload, 0)
    return payload[2:2 + n].decode(), payload[2 + n:]


def acks_payload(acks: list) -> bytes:
    """The ACKS payload: ``[[req_id, t, tempids, duplicate], ...]`` (tempid keys as text).

    >>> parse_acks(acks_payload([[7, 1001, {"datomic.tx": 13194139534313}, False]]))
    [[7, 1001, {'datomic.tx': 13194139534313}, False]]
    """
    return orjson.dumps(acks, option=orjson.OPT_NON_STR_KEYS, default=str)


def parse_acks(payload: bytes) -> list:
    """The acknowledgements of an ACKS payload; ``ProtocolError`` if it is not one.

    >>> parse_acks(b'{"t": 1}')
    Traceback (most recent call last):
    ...
    fastdatomic.errors.ProtocolError: ACKS payload is not a list of [req_id, t, tempids, duplicate]
    """
    from fastdatomic.errors import ProtocolError
    try:
        acks = orjson.loads(payload)
    except orjson.JSONDecodeError:
        acks = None
    if type(acks) is not list or (acks and (type(acks[0]) is not list or len(acks[0]) != 4)):
        raise ProtocolError("ACKS payload is not a list of [req_id, t, tempids, duplicate]")
    return acks


def tempids_payload(name: str, pairs: list) -> bytes:
    """The TEMPIDS payload: the tempids of each transaction ``t`` of one group commit.

    >>> parse_tempids(tempids_payload("people", [[1001, {"ann": 17592186045418}]]))
    ('people', [[1001, {'ann': 17592186045418}]])
    """
    return orjson.dumps({"db": name, "tempids": pairs}, option=orjson.OPT_NON_STR_KEYS,
                        default=str)


def parse_tempids(payload: bytes) -> tuple[str, list]:
    """``(db name, [[t, tempids], ...])`` of a TEMPIDS payload; ``ProtocolError`` if it is
    not one.

    >>> parse_tempids(b'{"db": "x", "tempids": 3}')
    Traceback (most recent call last):
    ...
    fastdatomic.errors.ProtocolError: TEMPIDS payload is not {db, tempids: [[t, {tempid: id}], ...]}
    """
    from fastdatomic.errors import ProtocolError
    msg = loads(payload, "TEMPIDS")
    name, pairs = msg.get("db"), msg.get("tempids")
    if type(name) is not str or type(pairs) is not list or not all(
            type(x) is list and len(x) == 2 and type(x[0]) is int and type(x[1]) is dict
            for x in pairs):
        raise ProtocolError("TEMPIDS payload is not {db, tempids: [[t, {tempid: id}], ...]}")
    return name, pairs


def error_payload(err: BaseException) -> bytes:
    """An ERROR payload carrying a fastdatomic error's kind, message, hint and data.

    >>> from fastdatomic.errors import CasFailedError
    >>> loads(error_payload(CasFailedError("cas failed on :a/b")), "ERROR")["kind"]
    'db.error/cas-failed'
    """
    kind = getattr(err, "kind", "fastdatomic.error/internal")
    message = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
    data = getattr(err, "data", None) or {}
    obj = {"kind": kind, "message": message, "hint": getattr(err, "hint", None),
           "data": data, "class": type(err).__name__}
    try:
        return orjson.dumps(obj, default=repr, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # ``data`` may hold what JSON cannot (a tx form keyed by keywords, a huge int): the
        # error must still reach the peer, so send a printable copy.
        return orjson.dumps(_jsonable(obj))


def _jsonable(x, depth=0):
    """A JSON-safe copy of ``x``: str keys, lists for sequences, ``str()`` for the rest.

    >>> from fastdatomic.types import Keyword
    >>> _jsonable({Keyword("a/b"): (1, 2 ** 70)})
    {':a/b': [1, '1180591620717411303424']}
    """
    if x is None or isinstance(x, (str, bool, float)):
        return x
    if isinstance(x, int):
        return x if -(1 << 63) <= x < (1 << 64) else str(x)
    if depth > 50:
        return "..."
    if isinstance(x, dict):
        return {k if isinstance(k, str) else str(k): _jsonable(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in x]
    return str(x)
