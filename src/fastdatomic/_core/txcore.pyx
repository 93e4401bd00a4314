# cython: language_level=3
"""The transaction fast path: the common shape of tx-data in one typed loop.

``fastdatomic.db.tx.prepare`` first offers a transaction to ``TxCore.run``. The fast
path takes transactions whose every form asserts on an entity the transaction
creates (or on the transaction entity itself) with plain attributes:

- map forms without ``:db/id``, or with a string tempid or ``"datomic.tx"`` as ``:db/id``;
- ``[:db/add tempid attr value]`` list forms;
- attributes that are not unique, have no ``:db.attr/preds``, are not tuples, not schema
  attributes, not components of a composite tuple and not the transaction's own
  ``:db/txInstant`` / ``:fastdatomic.tx/uuid``;
- values already of the attribute's type (anything else goes through the codec exactly
  as the general path does), and refs given as ids, idents, tempids or lookup refs.

For these it does what the general pipeline does, in the same order, with the same
results: tempids registered and entities allocated in order of first use (entity
before value), card-many duplicates dropped, card-one repeats of the same value dropped,
the transaction's ``:db/txInstant`` and uuid datoms appended, and every datom's index
keys encoded (``KeySink``). It never raises for bad tx-data: on anything else, or
anything wrong, ``run`` returns ``None`` and the caller runs the general pipeline,
which then raises the proper error. So the fast path decides only *how fast*, never
*what*.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.ref cimport PyObject
from libc.string cimport memcpy, memset
from posix.unistd cimport getpid
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME
from cpython.datetime cimport import_datetime

from fastdatomic._core.logrec cimport KeySink
from fastdatomic._core.codec cimport TYPE_REF, TYPE_KEYWORD, utc_from_us

import os as _os
import uuid as _uuid_mod

from fastdatomic._core.codec import encode_value, decode_value
from fastdatomic.types import Keyword

cdef extern from "Python.h":
    long long _as_ll "PyLong_AsLongLongAndOverflow"(object o, int* overflow)
    object PyLong_FromLongLong(long long v)

__all__ = ["AttrInfo", "TxCore", "uuid4", "utc_now", "utc_from_timestamp", "SKIP"]

import_datetime()

cdef object _KEYWORD = Keyword
cdef object _UUID = _uuid_mod.UUID
cdef object _SAFE_UNKNOWN = _uuid_mod.SafeUUID.unknown
cdef object _obj_setattr = object.__setattr__
cdef object _urandom = _os.urandom
cdef object _from_bytes = int.from_bytes
cdef object _KW_DB_ID = Keyword("db/id")
cdef object _KW_DB_ADD = Keyword("db/add")
cdef object _NONE = object()

cdef enum:
    PART_SHIFT = 42
    PART_TX = 3
    PART_USER = 4
    CACHE_MAX = 100000            # entries per key cache (keys come from users)
    OWN_ATTRS = 32                # card-one attributes of one map checked without a dict

cdef long long ID_MASK = (1LL << PART_SHIFT) - 1

SKIP = object()                    # classifier answer for a map key that is :db/id


cdef enum:
    RANDOM_BUF = 4096

cdef unsigned char _random[RANDOM_BUF]
cdef Py_ssize_t _random_pos = RANDOM_BUF
cdef long _random_pid = -1


def uuid4():
    """A random (version 4) ``uuid.UUID``, as ``uuid.uuid4()`` makes it, without its
    per-call system call and argument checks (one per transaction).

    Random bytes come from ``os.urandom`` in 4 KiB batches. No two calls ever get the
    same bytes: taking 16 bytes never releases the GIL, a refill overwrites the
    whole buffer with fresh bytes, and a forked child (another pid) refills first.

    >>> u = uuid4(); u.version, u.variant == _uuid_mod.RFC_4122, u != uuid4()
    (4, True, True)
    """
    global _random_pos, _random_pid
    cdef unsigned char b[16]
    cdef long pid = getpid()
    cdef bytes fresh
    if _random_pos + 16 > RANDOM_BUF or pid != _random_pid:
        fresh = _urandom(RANDOM_BUF)
        memcpy(_random, PyBytes_AS_STRING(fresh), RANDOM_BUF)
        _random_pos = 0
        _random_pid = pid
    memcpy(b, _random + _random_pos, 16)
    memset(_random + _random_pos, 0, 16)
    _random_pos += 16
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    u = _UUID.__new__(_UUID)
    _obj_setattr(u, "int", _from_bytes(PyBytes_FromStringAndSize(<char*>b, 16), "big"))
    _obj_setattr(u, "is_safe", _SAFE_UNKNOWN)
    return u


def utc_now():
    """``datetime.now(timezone.utc)`` (the system clock, microseconds rounded down),
    built from ``clock_gettime`` without the timezone round trip.

    >>> from datetime import datetime, timezone, timedelta
    >>> abs(utc_now() - datetime.now(timezone.utc)) < timedelta(seconds=1), utc_now().tzinfo
    (True, datetime.timezone.utc)
    """
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return _utc_datetime(ts.tv_sec, ts.tv_nsec // 1000)


def utc_from_timestamp(long long secs, long long micros):
    """The UTC datetime ``secs`` seconds plus ``micros`` microseconds after the epoch (what
    ``utc_now`` builds; tests compare it with ``datetime``'s own arithmetic).

    >>> utc_from_timestamp(-1, 5)
    datetime.datetime(1969, 12, 31, 23, 59, 59, 5, tzinfo=datetime.timezone.utc)
    """
    return _utc_datetime(secs, micros)


cdef object _utc_datetime(long long secs, long long micros):
    return utc_from_us(secs * 1000000 + micros)    # the codec's civil-date conversion


cdef class AttrInfo:
    """What the fast path needs of one attribute it can take."""
    cdef readonly object id         # the attribute id as a Python int (shared by datoms)
    cdef readonly long long aid
    cdef readonly int vtype
    cdef readonly int flags         # log/index flags: 1 AVET, 2 VAET
    cdef readonly bint many
    cdef readonly bint is_ref
    cdef readonly object fast_type  # Python type already in stored form, or None

    def __init__(self, id, int vtype, int flags, bint many, fast_type):
        self.id = id
        self.aid = id
        self.vtype = vtype
        self.flags = flags
        self.many = many
        self.is_ref = vtype == TYPE_REF
        self.fast_type = fast_type

    def __repr__(self):
        return f"<AttrInfo id={self.aid} vtype={self.vtype} many={self.many}>"


cdef inline bint _same(object a, object b):
    # tx._same: floats by bits (so -0.0 != 0.0 and NaN == NaN), else same type and equal.
    if type(a) is float and type(b) is float:
        return a.hex() == b.hex()
    return (type(a) is type(b) and a == b) or (a is None and b is None)


cdef inline object _hashable(object v):
    # tx._hashable for values in stored form (never lists: tuples take the general path).
    cdef object t = type(v)
    if t is str or t is int or t is bool or t is _KEYWORD:
        return v
    if t is float:
        return ("f", v.hex())
    if isinstance(v, (list, bytearray)):
        return tuple(v) if isinstance(v, list) else bytes(v)
    return v


cdef class _Run:
    """State of one transaction on the fast path."""
    cdef TxCore core
    cdef object db
    cdef long long t
    cdef long long tx
    cdef object tx_obj
    cdef long long next_n
    cdef dict tempids          # name -> eid, in order of first use
    cdef set asserted          # tempid names that are the entity of an assertion
    cdef list value_names      # tempid names used as ref values
    cdef dict card             # (e, a) -> value, card-one
    cdef set seen              # (e, a, v), card-many
    cdef list datoms
    cdef KeySink sink
    cdef Py_ssize_t ops
    cdef Py_ssize_t max_ops      # tx.MAX_TX_DATOMS: larger transactions take the general path
    cdef bint has_auto_names   # a user tempid named "#auto-..." (kept out of the report)
    # A map without :db/id is an entity no other form can name, so its card-one
    # attributes are checked for repeats among themselves, without the (e, a) dict.
    cdef bint own_entity
    cdef int nown
    cdef long long own_attrs[OWN_ATTRS]

    cdef object alloc(self):
        if self.next_n > ID_MASK:
            return None
        e = PyLong_FromLongLong((<long long>PART_USER << PART_SHIFT) | self.next_n)
        self.next_n += 1
        return e

    cdef object tempid(self, str name):
        # The entity id of a string tempid, allocated at first use.
        cdef PyObject* p = PyDict_GetItem(self.tempids, name)
        if p != NULL:
            return <object>p
        e = self.alloc()
        if e is None:
            return None
        PyDict_SetItem(self.tempids, name, e)
        if name.startswith("#auto-"):
            self.has_auto_names = True
        return e

    cdef object ref_value(self, object v):
        # The entity id a ref value names, or None (general path: error or not handled).
        cdef object tv = type(v)
        cdef long long x
        cdef int ovf = 0
        cdef PyObject* p
        if tv is int:
            x = _as_ll(v, &ovf)
            if ovf or x < 0 or ((x & ID_MASK) >= self.t and (x >> PART_SHIFT) != PART_TX):
                return None
            return v
        if tv is str:
            if v == "datomic.tx":
                return self.tx_obj
            if (<str>v).startswith(":"):
                try:
                    v = _KEYWORD(v)
                except Exception:
                    return None
                tv = _KEYWORD
            else:
                e = self.tempid(<str>v)
                if e is not None:
                    self.value_names.append(v)
                return e
        if tv is _KEYWORD:
            p = PyDict_GetItem(self.core.idents, v)
            return <object>p if p != NULL else None
        if tv is list or tv is tuple:
            if len(v) != 2:
                return None
            try:
                return self.core.lookup_ref(self.db, v)
            except Exception:
                return None
        return None

    cdef object value(self, AttrInfo info, object v):
        # v in stored form, or _NONE when the general path must judge it.
        cdef int ovf = 0
        if v is None:
            return _NONE
        if info.is_ref:
            e = self.ref_value(v)
            return _NONE if e is None else e
        fast = info.fast_type
        if fast is not None and type(v) is fast:
            if fast is int:
                _as_ll(v, &ovf)
                if ovf:
                    return _NONE
            return v
        if info.vtype == TYPE_KEYWORD:
            return _NONE
        try:
            return decode_value(encode_value(info.vtype, v))
        except Exception:
            return _NONE

    cdef bint emit(self, object e, AttrInfo info, object v) except -1:
        # One assertion [e a v] with e already an entity id; False: not for the fast path.
        cdef object a = info.id
        cdef object key
        cdef PyObject* prev
        cdef long long ev
        cdef int i
        v = self.value(info, v)
        if v is _NONE:
            return False
        self.ops += 1
        if self.ops > self.max_ops:
            return False
        if info.many:
            key = (e, a, _hashable(v))
            if key in self.seen:
                return True
            self.seen.add(key)
        elif self.own_entity and self.nown < OWN_ATTRS:
            for i in range(self.nown):
                if self.own_attrs[i] == info.aid:
                    return False                   # one attribute twice in a map: general path
            self.own_attrs[self.nown] = info.aid
            self.nown += 1
        else:
            if self.own_entity:
                for i in range(self.nown):
                    if self.own_attrs[i] == info.aid:
                        return False
            key = (e, a)
            prev = PyDict_GetItem(self.card, key)
            if prev != NULL:
                if _same(<object>prev, v):
                    return True
                return False                       # datoms-conflict
            PyDict_SetItem(self.card, key, v)
        self.datoms.append((e, a, v, True))
        ev = e
        try:
            self.sink.add(ev, info.aid, info.vtype, v, self.tx, True, info.flags)
        except Exception:
            return False                           # the codec refuses it: let the general path say why
        return True

    cdef object entity(self, object ref):
        # A map's :db/id or a list form's e: the tx entity, or a tempid (allocated later).
        if type(ref) is str:
            if ref == "datomic.tx":
                return self.tx_obj
            if (<str>ref).startswith(":"):
                return None                        # an existing entity: general path
            return ref
        return None

    cdef bint map_form(self, dict m) except -1:
        cdef PyObject* p = PyDict_GetItem(m, _KW_DB_ID)
        cdef object ref, e = None, name = None, info_o
        cdef AttrInfo info
        cdef dict keys = self.core.map_keys
        if p == NULL:
            p = PyDict_GetItem(m, ":db/id")
        if p != NULL:
            if len(m) == 1:
                return False
            ref = self.entity(<object>p)
            if ref is None:
                return False
            if type(ref) is str:
                name = ref
            else:
                e = ref
        self.own_entity = p == NULL
        self.nown = 0
        for k, v in m.items():
            p = PyDict_GetItem(keys, k)
            if p == NULL:
                info_o = self.core.classify_map_key(k)
                if info_o is SKIP:
                    continue
                if info_o is None:
                    return False
            else:
                info_o = <object>p
                if info_o is SKIP:
                    continue
                if info_o is False:
                    return False
            info = <AttrInfo>info_o
            if info.many and isinstance(v, (list, tuple, set, frozenset)):
                for x in v:
                    if isinstance(x, dict):
                        return False               # nested map: general path
                    if e is None:
                        e = self.map_entity(name)
                        if e is None:
                            return False
                    if not self.emit(e, info, x):
                        return False
            else:
                if type(v) is dict:
                    return False                   # nested map: general path
                if e is None:
                    e = self.map_entity(name)
                    if e is None:
                        return False
                if not self.emit(e, info, v):
                    return False
        return True

    cdef object map_entity(self, object name):
        # The entity of a map's first assertion: a new id, or the one its tempid names
        # (None: the general path decides).
        cdef object e = self.alloc() if name is None else self.tempid(name)
        if e is not None and name is not None:
            self.asserted.add(name)
        return e

    cdef bint list_form(self, object form) except -1:
        cdef PyObject* p
        cdef object op, a, ref, e, info_o, ta
        if len(form) != 4:
            return False
        op = form[0]
        if not (op is _KW_DB_ADD or (type(op) is str and op == ":db/add")):
            return False
        a = form[2]
        ta = type(a)
        if ta is not str and ta is not _KEYWORD and ta is not int:
            return False
        p = PyDict_GetItem(self.core.list_attrs, a)
        if p == NULL:
            info_o = self.core.classify_list_attr(a)
            if info_o is None:
                return False
        else:
            info_o = <object>p
            if info_o is False:
                return False
        ref = self.entity(form[1])
        if ref is None:
            return False
        self.own_entity = False
        if type(ref) is str:
            e = self.tempid(<str>ref)
            if e is None:
                return False
            self.asserted.add(ref)
        else:
            e = ref
        return self.emit(e, <AttrInfo>info_o, form[3])


cdef class TxCore:
    """The fast path's view of one schema: caches from tx-data keys to ``AttrInfo``.

    Built once per ``Schema`` (``fastdatomic.db.tx`` supplies the classifiers, which
    hold Datomic's rules for what a key means); a schema change makes a new one.
    """
    cdef readonly dict map_keys       # map-form key -> AttrInfo | SKIP | False
    cdef readonly dict list_attrs     # list-form attribute -> AttrInfo | False
    cdef object map_classifier
    cdef object list_classifier
    cdef readonly dict idents
    cdef object lookup_ref
    cdef object inst_a, uuid_a
    cdef int inst_vt, uuid_vt, inst_flags, uuid_flags

    def __init__(self, map_classifier, list_classifier, dict idents, lookup_ref,
                 inst_a, int inst_vt, int inst_flags, uuid_a, int uuid_vt, int uuid_flags):
        self.map_keys = {}
        self.list_attrs = {}
        self.map_classifier = map_classifier
        self.list_classifier = list_classifier
        self.idents = idents
        self.lookup_ref = lookup_ref
        self.inst_a = inst_a
        self.inst_vt = inst_vt
        self.inst_flags = inst_flags
        self.uuid_a = uuid_a
        self.uuid_vt = uuid_vt
        self.uuid_flags = uuid_flags

    cdef object classify_map_key(self, object k):
        cdef object tk = type(k)
        if tk is not str and tk is not _KEYWORD:
            return None
        info = self.map_classifier(k)
        if len(self.map_keys) < CACHE_MAX:
            self.map_keys[k] = False if info is None else info
        return info

    cdef object classify_list_attr(self, object a):
        info = self.list_classifier(a)
        if len(self.list_attrs) < CACHE_MAX:
            self.list_attrs[a] = False if info is None else info
        return info

    def run(self, tx_data, db, long long t, when, tx_uuid, Py_ssize_t max_ops):
        """``(datoms, tempids, next_n, sink)`` of ``tx_data`` against ``db`` (whose next
        ``t`` is ``t``), or ``None`` when the general path must take it.

        ``when`` is the transaction's ``:db/txInstant`` (already monotonic), ``tx_uuid``
        its uuid; ``sink`` holds the index keys of ``datoms``. Past ``max_ops`` operations
        the general path takes over (and refuses the transaction).
        """
        cdef _Run r
        cdef object tf
        if type(tx_data) is not list and type(tx_data) is not tuple:
            return None
        r = _Run.__new__(_Run)
        r.core = self
        r.db = db
        r.t = t
        r.tx = (<long long>PART_TX << PART_SHIFT) | t
        r.tx_obj = PyLong_FromLongLong(r.tx)
        r.next_n = t + 1
        r.tempids = {}
        r.asserted = set()
        r.value_names = []
        r.card = {}
        r.seen = set()
        r.datoms = []
        r.sink = KeySink()
        r.ops = 0
        r.max_ops = max_ops
        r.has_auto_names = False
        r.own_entity = False
        for form in tx_data:
            tf = type(form)
            if tf is dict:
                if not r.map_form(<dict>form):
                    return None
            elif (tf is list or tf is tuple) and len(form) > 0:
                if not r.list_form(form):
                    return None
            else:
                return None
        for name in r.value_names:
            if name not in r.asserted:
                return None                        # a tempid used only as a value
        try:
            r.datoms.append((r.tx_obj, self.inst_a, when, True))
            r.sink.add(r.tx, self.inst_a, self.inst_vt, when, r.tx, True, self.inst_flags)
            r.datoms.append((r.tx_obj, self.uuid_a, tx_uuid, True))
            r.sink.add(r.tx, self.uuid_a, self.uuid_vt, tx_uuid, r.tx, True, self.uuid_flags)
        except Exception:
            return None
        tempids = r.tempids
        if r.has_auto_names:
            tempids = {k: v for k, v in tempids.items() if not k.startswith("#auto-")}
        tempids["datomic.tx"] = r.tx_obj
        return (r.datoms, tempids, r.next_n, r.sink)
