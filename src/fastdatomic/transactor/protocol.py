"""The peer <-> transactor protocol: message kinds, payloads and the authentication handshake.

Every message is one frame (``_core.frame``: magic, version, kind, request id, length).
Control payloads are orjson objects; novelty payloads are binary (the log record bytes
exactly as stored, so a peer applies the same bytes the log holds).

The conversation::

    transactor                                  peer
    CHALLENGE {nonce, epoch}            ──►
                                        ◄──     AUTH {cnonce, mac = HMAC(secret, "peer" nonce cnonce)}
    WELCOME {mac = HMAC(secret, "transactor" cnonce nonce), epoch}  ──►   (peer checks it)
                                        ◄──     SUBSCRIBE / TRANSACT / CREATE_DB / ... (req_id n)
    NOVELTY(db, log record) ...         ──►     (to every subscriber, in t order)
    REPLY(req_id n) or ERROR(req_id n)  ──►

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
    "CHALLENGE", "AUTH", "WELCOME", "ERROR", "REPLY", "TRANSACT", "SUBSCRIBE", "UNSUBSCRIBE",
    "NOVELTY", "INDEXED", "CREATE_DB", "DELETE_DB", "LIST_DBS", "STATUS", "DB_GONE",
    "peer_mac", "transactor_mac", "dumps", "loads", "novelty_payload", "parse_novelty",
    "error_payload", "KIND_NAMES",
]

# Message kinds (the frame's kind byte).
CHALLENGE = 1      # transactor -> peer, on connect
AUTH = 2           # peer -> transactor
WELCOME = 3        # transactor -> peer: authenticated {mac, epoch, max_frame_bytes}
ERROR = 4          # transactor -> peer: a request failed (req_id) or the connection is closed (0):
                   # {kind, message, hint, data, data_edn (data with its keywords), class}
REPLY = 5          # transactor -> peer: a request succeeded (req_id)
TRANSACT = 10      # {db, tx: EDN text, tx_id: uuid, db_id?}    -> REPLY {t, tempids, duplicate}
                   # (db_id: the database the peer connected to; a re-created namesake refuses)
SUBSCRIBE = 11     # {db, from_t}: novelty after from_t, then live -> REPLY {basis_t, db_id}
UNSUBSCRIBE = 12   # {db}
NOVELTY = 13       # binary: u16 name length, name, log record
INDEXED = 14       # {db, index_basis_t}: a new durable index is in storage
DB_GONE = 15       # {db}: the database was deleted
CREATE_DB = 20     # {db} -> REPLY {created}
DELETE_DB = 21     # {db} -> REPLY {deleted}
LIST_DBS = 22      # {} -> REPLY {names}
STATUS = 23        # {} -> REPLY {role, epoch, databases, ...}

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
    raw = name.encode()
    return _U16.pack(len(raw)) + raw + record


def parse_novelty(payload: bytes) -> tuple[str, bytes]:
    """``(db name, log record)`` of a NOVELTY payload."""
    (n,) = _U16.unpack_from(payload, 0)
    return payload[2:2 + n].decode(), payload[2 + n:]


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
