"""Pure-Python reference for the key codec's *intended order* (tuple-based, no bytes).

Each value gets a sort key built from Python tuples, never from the encoding, so
tests can check that sorting encoded bytes agrees with it:

* cross-type: by tag order (nil < boolean < long/ref < bigint < double < float <
  bigdec < instant < string < keyword < symbol < uuid < uri < bytes < tuple);
* double/float: Java ``Double.compareTo``: -inf < ... < -0.0 < 0.0 < ... < +inf < NaN;
* bigdec: numeric value, then exponent (1.00 < 1.0 < 1), then for zeros -0 < +0;
* instant: microseconds since the epoch (naive taken as UTC);
* keyword/symbol: no namespace first, then namespace, then name (``Keyword.__lt__``);
* tuple: element-wise, a shorter prefix first, nil lowest.

>>> sorted([0.0, float("nan"), -0.0, float("-inf")], key=lambda x: value_key(TYPE_DOUBLE, x))
[-inf, -0.0, 0.0, nan]
"""

from __future__ import annotations

import math
import struct
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from fastdatomic._core.codec import (
    TYPE_BOOLEAN, TYPE_LONG, TYPE_DOUBLE, TYPE_FLOAT, TYPE_BIGINT, TYPE_BIGDEC, TYPE_INSTANT,
    TYPE_STRING, TYPE_KEYWORD, TYPE_SYMBOL, TYPE_UUID, TYPE_URI, TYPE_BYTES, TYPE_REF, TYPE_TUPLE,
    INDEX_EAVT, INDEX_AEVT, INDEX_AVET, INDEX_VAET,
)
from fastdatomic.types import Keyword, Symbol, URI

# The documented tag order (spec), written out independently of codec.pxd.
TAG_NIL = 0x02
TAGS = {
    TYPE_BOOLEAN: 0x10, TYPE_LONG: 0x20, TYPE_REF: 0x20, TYPE_BIGINT: 0x21,
    TYPE_DOUBLE: 0x30, TYPE_FLOAT: 0x31, TYPE_BIGDEC: 0x38, TYPE_INSTANT: 0x40,
    TYPE_STRING: 0x50, TYPE_KEYWORD: 0x51, TYPE_SYMBOL: 0x52, TYPE_UUID: 0x60,
    TYPE_URI: 0x61, TYPE_BYTES: 0x70, TYPE_TUPLE: 0x80,
}

_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def to_float32(x: float) -> float:
    """Round a double to binary32 (round-to-nearest; overflow goes to +-inf, like a C cast)."""
    if math.isnan(x):
        return math.nan
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def double_key(x: float):
    if math.isnan(x):
        return (1, 0.0, 0.0)
    return (0, x, math.copysign(1.0, x))


def bigdec_key(d: Decimal):
    t = d.as_tuple()
    return (d, t.exponent, 0 if t.sign else 1)


def instant_micros(dt: datetime) -> int:
    if dt.tzinfo is None or dt.utcoffset() is None:
        return (dt.replace(tzinfo=None) - _EPOCH_NAIVE) // _US
    return (dt - _EPOCH_UTC) // _US


def named_key(k):
    return (k.ns is not None, k.ns or "", k.name)


def _body_key(vtype: int, v):
    if vtype == TYPE_BOOLEAN:
        return int(v)
    if vtype in (TYPE_LONG, TYPE_REF, TYPE_BIGINT):
        return int(v)
    if vtype == TYPE_DOUBLE:
        return double_key(float(v))
    if vtype == TYPE_FLOAT:
        return double_key(to_float32(float(v)))
    if vtype == TYPE_BIGDEC:
        return bigdec_key(v if isinstance(v, Decimal) else Decimal(v))
    if vtype == TYPE_INSTANT:
        return instant_micros(v)
    if vtype == TYPE_STRING:
        return v
    if vtype in (TYPE_KEYWORD, TYPE_SYMBOL):
        return named_key(v)
    if vtype == TYPE_UUID:
        return v.int
    if vtype == TYPE_URI:
        return v.value
    if vtype == TYPE_BYTES:
        return bytes(v)
    if vtype == TYPE_TUPLE:
        return tuple(elem_key(x) for x in v)
    raise ValueError(f"unknown vtype {vtype}")


def elem_type(x) -> int | None:
    """The value type a tuple element is encoded as (None for nil)."""
    if x is None:
        return None
    if isinstance(x, bool):
        return TYPE_BOOLEAN
    if isinstance(x, int):
        return TYPE_BIGINT
    if isinstance(x, float):
        return TYPE_DOUBLE
    if isinstance(x, Decimal):
        return TYPE_BIGDEC
    if isinstance(x, datetime):
        return TYPE_INSTANT
    if isinstance(x, str):
        return TYPE_STRING
    if isinstance(x, Keyword):
        return TYPE_KEYWORD
    if isinstance(x, Symbol):
        return TYPE_SYMBOL
    if isinstance(x, uuid.UUID):
        return TYPE_UUID
    if isinstance(x, URI):
        return TYPE_URI
    if isinstance(x, (bytes, bytearray, memoryview)):
        return TYPE_BYTES
    if isinstance(x, (tuple, list)):
        return TYPE_TUPLE
    raise TypeError(x)


def elem_key(x):
    t = elem_type(x)
    if t is None:
        return (TAG_NIL, 0)
    return (TAGS[t], _body_key(t, x))


def value_key(vtype: int, v):
    """Sort key of ``v`` stored as ``vtype`` (comparable across types by tag)."""
    return (TAGS[vtype], _body_key(vtype, v))


def datom_key(index: int, e: int, a: int, vtype: int, v, tx: int, added: bool):
    """Sort key of a datom in ``index`` (ids are signed 64-bit ints)."""
    vk = value_key(vtype, v)
    added = int(bool(added))
    if index == INDEX_EAVT:
        return (e, a, vk, tx, added)
    if index == INDEX_AEVT:
        return (a, e, vk, tx, added)
    if index == INDEX_AVET:
        return (a, vk, e, tx, added)
    if index == INDEX_VAET:
        return (vk, a, e, tx, added)
    raise ValueError(index)


# --- what decode(encode(v)) should give -----------------------------------------

def expected_decoded(vtype: int, v):
    """The value decode_value(encode_value(vtype, v)) must return."""
    if vtype == TYPE_DOUBLE:
        return float(v)
    if vtype == TYPE_FLOAT:
        return to_float32(float(v))
    if vtype == TYPE_BIGDEC:
        return v if isinstance(v, Decimal) else Decimal(v)
    if vtype == TYPE_INSTANT:
        return _EPOCH_UTC + timedelta(microseconds=instant_micros(v))
    if vtype == TYPE_BYTES:
        return bytes(v)
    if vtype == TYPE_TUPLE:
        return tuple(_expected_elem(x) for x in v)
    return v


def _expected_elem(x):
    t = elem_type(x)
    if t is None:
        return None
    return expected_decoded(t, x)


def same_value(a, b) -> bool:
    """Strict equality: type-exact, floats by bit pattern (all NaNs equal),
    Decimals by as_tuple(), datetimes including tzinfo, tuples recursively."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, datetime):
        return a == b and a.tzinfo == b.tzinfo
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, (Keyword, Symbol)):
        return a is b
    return a == b
