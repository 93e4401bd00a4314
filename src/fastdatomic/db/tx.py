"""Transaction processing: tx-data -> the final datoms of one transaction (Datomic's rules).

Shared by the in-process ``mem`` connection and the transactor, so both apply exactly
the same semantics. The pipeline, each step against the database *before* the
transaction unless said otherwise:

1. **expand**: list forms, map forms (nested maps, reverse refs), ``:db/retractEntity``,
   ``:db/cas`` and user transaction functions (called with db-before, expanded recursively);
2. **resolve**: idents and lookup refs to entity ids, string tempids, ``"datomic.tx"``;
3. **upsert**: tempids that assert a ``:db.unique/identity`` value take the existing
   entity; tempids asserting the same new identity value become one entity;
4. **allocate** new entity ids (``t`` and new entities share one counter, as in Datomic);
5. **datoms**: values checked and put in stored form, attribute predicates, card-one
   replacement, redundancy elimination, ``datoms-conflict``, ``unique-conflict``,
   composite tuples, the transaction entity (monotonic ``:db/txInstant``, tx UUID);
6. **after**: entity specs (``:db/ensure``) and schema rules checked on db-after.

The common shape (every form asserts plain attributes on entities the transaction
creates) is first offered to the Cython fast path, ``_core.txcore``, which does steps
1-5 in one typed loop with the same results; whatever it does not take, or finds
wrong, runs the pipeline above, which is the reference (``tests/test_tx_fast_path.py``
holds the two to the same answers).

Nothing is written here: the result goes to ``DatabaseWriter.commit_batch``.
"""

from __future__ import annotations

import importlib
import uuid as uuid_mod
from datetime import datetime, timedelta

from fastdatomic._core.codec import (
    INDEX_AVET, INDEX_EAVT, TYPE_REF, TYPE_TUPLE, TYPE_KEYWORD,
    encode_id, encode_value, decode_value,
)
from fastdatomic._core.txcore import AttrInfo, TxCore, SKIP, utc_now, uuid4 as _uuid4
from fastdatomic.db.database import Database, prefix_end
from fastdatomic.db import schema as S
from fastdatomic.errors import (
    AttrPredFailedError, CasFailedError, DatomsConflictError, EntitySpecFailedError,
    FastDatomicError, InvalidAlterAttributeError, InvalidTxDataError, NotAnEntityError,
    TxCancelledError, TxTooLargeError, UniqueConflictError, WrongTypeError, InvalidValueError,
)
from fastdatomic.ids import PART_USER, entity_id, t_to_tx, is_tx
from fastdatomic.types import Keyword, Symbol

__all__ = ["TxResult", "prepare", "cancel", "register_tx_fn", "TX_TEMPID", "MAX_TX_DATOMS"]

TX_TEMPID = "datomic.tx"
MAX_TX_DATOMS = 1_000_000          # larger transactions are rejected (TxTooLargeError)
MAX_FN_DEPTH = 64                  # transaction functions expanding into functions

K = Keyword
_ADD, _RETRACT = K("db/add"), K("db/retract")
_RETRACT_ENTITY = (K("db/retractEntity"), K("db.fn/retractEntity"))
_CAS = (K("db/cas"), K("db.fn/cas"))
_DB_ID, _DB_ENSURE = K("db/id"), K("db/ensure")
_RETRACT_ALL = object()            # value slot of [:db/retract e a]

_TX_FNS: dict = {}                 # Symbol or Keyword -> callable, registered in-process


def register_tx_fn(name, fn):
    """Make ``fn(db, *args) -> tx-data`` callable from tx-data as ``[name arg ...]``.

    ``name`` is a Keyword (an ident) or a Symbol; a Symbol ``pkg.mod/fn`` that is not
    registered is imported from Python (like Datomic's classpath functions).

    >>> register_tx_fn(Keyword("my/inc"), lambda db, e, a, n: [])
    """
    if isinstance(name, str) and not isinstance(name, (Keyword, Symbol)):
        name = Keyword(name) if name.startswith(":") else Symbol(name)
    _TX_FNS[name] = fn


def cancel(message: str, data: dict | None = None):
    """Cancel the running transaction from inside a transaction function.

    >>> try:
    ...     cancel("balance too low", {"account": 1})
    ... except TxCancelledError as e:
    ...     e.kind, str(e)
    ('db.error/cancelled', 'balance too low')
    """
    raise TxCancelledError(message, data=data or {})


class TempId:
    """A temporary id inside one transaction (string tempids and nested maps)."""

    __slots__ = ("name", "eid", "parent")

    def __init__(self, name):
        self.name = name
        self.eid = None
        self.parent = None

    def root(self) -> "TempId":
        t = self
        while t.parent is not None:
            t = t.parent
        return t

    def __repr__(self):
        return f"TempId({self.name!r})"


class TxResult:
    """What a transaction turns into: final datoms plus what the report needs."""

    __slots__ = ("db_before", "db_after", "datoms", "t", "next_n", "tempids", "tx_instant",
                 "keys", "flags", "tx_uuid")

    def __init__(self, db_before, db_after, datoms, t, next_n, tempids, tx_instant, keys,
                 flags, tx_uuid):
        self.db_before = db_before
        self.db_after = db_after
        self.datoms = datoms
        self.t = t
        self.next_n = next_n
        self.tempids = tempids
        self.tx_instant = tx_instant
        self.keys = keys
        self.flags = flags
        self.tx_uuid = tx_uuid


_IDENT_TEXT: dict = {}   # ":ns/name" -> Keyword, so map keys given as text parse once


def _ident(x):
    """An ident given as Keyword or ':ns/name' text, else None."""
    if type(x) is Keyword:
        return x
    if type(x) is str:
        k = _IDENT_TEXT.get(x)
        if k is None and x.startswith(":") and len(x) > 1:
            k = Keyword(x)
            if len(_IDENT_TEXT) < 100_000:
                _IDENT_TEXT[x] = k
        return k
    return None


def _form(x) -> str:
    s = repr(x)
    return s if len(s) <= 200 else s[:197] + "..."


class _Tx:
    """One transaction being prepared against ``db`` (the database before it)."""

    def __init__(self, db: Database, now: datetime, tx_uuid):
        self.db = db
        self.schema = db.schema
        self.t = db.next_n
        self.tx_eid = t_to_tx(self.t)
        self.next_n = self.t + 1
        self.now = now
        self.tx_uuid = tx_uuid
        self.tempids: dict[str, TempId] = {}
        self.ops = []              # [op, e, attr, v]; op is _ADD or _RETRACT
        self.cas = []              # (e, attr, old, new, form)
        self.ensures = []          # (e, spec)
        self.auto = 0
        self.new_eids = set()      # entities allocated by this transaction: no current values
        self.plain_attrs = db.schema.map_keys   # map key -> Attribute (plain attributes only)

    # --- 1. expand ---------------------------------------------------------------

    def tempid(self, name) -> TempId:
        t = self.tempids.get(name)
        if t is None:
            t = self.tempids[name] = TempId(name)
        return t

    def attr(self, a, form):
        ident = _ident(a)
        at = self.schema.attr(ident if ident is not None else a) if not isinstance(a, bool) else None
        if at is None:
            raise NotAnEntityError(f"{a!r} is not an attribute (in {_form(form)})",
                                   data={"attribute": a, "form": form})
        return at

    def expand(self, items, depth=0):
        if isinstance(items, (str, bytes, dict)) or not hasattr(items, "__iter__"):
            raise InvalidTxDataError(
                f"transaction data must be a list of forms, got {type(items).__name__}: {_form(items)}")
        for item in items:
            if isinstance(item, dict):
                self.expand_map(item)
            elif isinstance(item, (list, tuple)) and item:
                self.expand_list(item, depth)
            else:
                raise InvalidTxDataError(
                    f"not a transaction form: {_form(item)} (expected a list like [:db/add e a v] or a map)",
                    data={"form": item})

    def expand_list(self, form, depth):
        op = form[0]
        op_id = _ident(op) if not isinstance(op, Symbol) else op
        if op_id in (_ADD, _RETRACT):
            if op_id == _ADD and len(form) != 4:
                raise InvalidTxDataError(f":db/add takes [:db/add e a v], got {_form(form)}", data={"form": form})
            if op_id == _RETRACT and len(form) not in (3, 4):
                raise InvalidTxDataError(f":db/retract takes [:db/retract e a] or [:db/retract e a v], "
                                         f"got {_form(form)}", data={"form": form})
            at = self.attr(form[2], form)
            v = form[3] if len(form) == 4 else _RETRACT_ALL
            if at.id == S.DB_ENSURE and op_id == _ADD:
                self.ensures.append((form[1], v))   # a check on db-after, not a datom
                return
            if at.tuple_attrs is not None and op_id == _ADD:
                raise InvalidTxDataError(f"composite tuple {at.ident} is maintained by the database; "
                                         f"assert its attributes instead (in {_form(form)})")
            self.ops.append([op_id, form[1], at, v, form])
        elif op_id in _RETRACT_ENTITY:
            if len(form) != 2:
                raise InvalidTxDataError(f":db/retractEntity takes [:db/retractEntity e], got {_form(form)}")
            self.retract_entity(form[1], form)
        elif op_id in _CAS:
            if len(form) != 5:
                raise InvalidTxDataError(f":db/cas takes [:db/cas e a old new], got {_form(form)}")
            at = self.attr(form[2], form)
            if at.many:
                raise InvalidTxDataError(f":db/cas needs a cardinality-one attribute, {at.ident} is many")
            self.cas.append((form[1], at, form[3], form[4], form))
        else:
            if depth >= MAX_FN_DEPTH:
                raise InvalidTxDataError(f"transaction functions nested deeper than {MAX_FN_DEPTH} at {_form(form)}")
            fn = self.tx_fn(op, form)
            try:
                result = fn(self.db, *form[1:])
            except FastDatomicError:
                raise
            except Exception as e:  # a user function's own failure cancels the transaction
                raise TxCancelledError(f"transaction function {op} failed: {type(e).__name__}: {e}",
                                       data={"form": form}) from e
            if result is None:
                return
            self.expand(result, depth + 1)

    def tx_fn(self, op, form):
        name = _ident(op) if not isinstance(op, Symbol) else op
        if name is None:
            raise InvalidTxDataError(f"not a transaction form: {_form(form)} (the first element must be "
                                     ":db/add, :db/retract, a built-in or a transaction function ident)")
        fn = _TX_FNS.get(name)
        if fn is not None:
            return fn
        sym = None
        if type(name) is Keyword:
            e = self.db.entid(name)
            fn_attr = self.schema.idents.get(K("db/fn"))
            if e is not None and fn_attr is not None:
                d = next(iter(self.db.datoms("eavt", e, fn_attr)), None)
                sym = d.v if d is not None else None
        else:
            sym = name
        if sym is None:
            raise InvalidTxDataError(f"{name} is not a transaction function: register it with "
                                     f"fastdatomic.register_tx_fn or give its entity a :db/fn (in {_form(form)})",
                                     data={"form": form})
        fn = _TX_FNS.get(sym)
        if fn is None:
            fn = _import_fn(sym, form)
        return fn

    def expand_map(self, m, parent_attr=None):
        """Expand one map form; returns its entity reference (id, ident, lookup ref or TempId)."""
        if _DB_ID in m:
            e = m[_DB_ID]
        elif ":db/id" in m:
            e = m[":db/id"]
        else:
            self.auto += 1
            e = TempId(f"#auto-{self.auto}")   # "#auto-" names stay out of report tempids
        has_unique = False
        plain = self.plain_attrs
        ops_append = self.ops.append
        for k, v in m.items():
            at = plain.get(k)
            if at is None:
                at = self.map_key(k, v, e, m)
                if at is None:
                    continue   # :db/id, :db/ensure or a reverse ref, handled
            if at.unique is not None:
                has_unique = True
            if at.many and (isinstance(v, (list, set, frozenset)) or
                            (isinstance(v, tuple) and at.vtype != TYPE_TUPLE)):
                for x in v:
                    if isinstance(x, dict):
                        x = self.nested(x, at, m)
                    ops_append([_ADD, e, at, x, m])
            else:
                if type(v) is dict:
                    v = self.nested(v, at, m)
                ops_append([_ADD, e, at, v, m])
        if parent_attr is not None and not parent_attr.component and not has_unique:
            raise InvalidTxDataError(
                f"nested map under {parent_attr.ident} must be a component or hold a unique attribute "
                f"(in {_form(m)})", data={"form": m})
        if len(m) == 1 and (_DB_ID in m or ":db/id" in m):
            raise InvalidTxDataError(f"map with only :db/id asserts nothing: {_form(m)}")
        return e

    def nested(self, x, at, m):
        if not at.is_ref:
            raise InvalidTxDataError(f"nested map under non-ref attribute {at.ident} (in {_form(m)})")
        return self.expand_map(x, at)

    def map_key(self, k, v, e, m):
        """The slow path of a map key: special keys, reverse refs, errors. Plain attribute
        keys are cached in ``plain_attrs`` (the schema does not change within a transaction)."""
        kid = _ident(k)
        if kid is None:
            raise InvalidTxDataError(f"map key {k!r} is not an attribute ident (in {_form(m)})",
                                     data={"form": m})
        if kid == _DB_ID:
            return None
        if kid == _DB_ENSURE:
            for spec in (v if isinstance(v, (list, tuple, set, frozenset)) else [v]):
                self.ensures.append((e, spec))
            return None
        if kid.name.startswith("_"):
            fwd = Keyword(kid.ns, kid.name[1:]) if kid.ns else Keyword(kid.name[1:])
            at = self.attr(fwd, m)
            if not at.is_ref:
                raise InvalidTxDataError(f"reverse attribute {kid} needs a ref attribute (in {_form(m)})")
            for x in (v if isinstance(v, (list, set, frozenset)) else [v]):
                src = self.expand_map(x, at) if isinstance(x, dict) else x
                self.ops.append([_ADD, src, at, e, m])
            return None
        at = self.attr(kid, m)
        if at.tuple_attrs is not None:
            raise InvalidTxDataError(f"composite tuple {at.ident} is maintained by the database; "
                                     f"assert its attributes instead (in {_form(m)})")
        if len(self.plain_attrs) < 100_000:
            self.plain_attrs[k] = at
        return at

    def retract_entity(self, ref, form):
        e = self.resolve_existing(ref, form)
        seen = set()
        self._retract_tree(e, seen)
        # References to it, and to its components, from other entities go too.
        for target in seen:
            for d in self.db.datoms("vaet", target):
                if d.e not in seen:
                    self.ops.append([_RETRACT, d.e, self.schema.attrs[d.a], target, form])

    def _retract_tree(self, e, seen):
        if e in seen:
            return
        seen.add(e)
        for d in self.db.datoms("eavt", e):
            at = self.schema.attrs[d.a]
            if at.tuple_attrs is not None:
                continue  # maintained: goes with its components
            self.ops.append([_RETRACT, e, at, d.v, None])
            if at.component:
                self._retract_tree(d.v, seen)

    # --- 2. resolve ---------------------------------------------------------------

    def resolve_existing(self, ref, form):
        """An entity reference that must name an existing entity (no tempids)."""
        if isinstance(ref, str) and not ref.startswith(":") or isinstance(ref, TempId):
            raise InvalidTxDataError(f"{ref!r} must name an existing entity, not a tempid (in {_form(form)})")
        return self.resolve(ref, form)

    def resolve(self, ref, form):
        """Entity id, or TempId, for an entity reference in tx-data."""
        if type(ref) is int:
            if ref < 0 or (ref & ((1 << 42) - 1)) >= self.t and not is_tx(ref):
                raise NotAnEntityError(f"entity id {ref} has not been allocated; use a tempid for new entities "
                                       f"(in {_form(form)})", data={"entity": ref, "form": form})
            return ref
        if isinstance(ref, TempId):
            return ref
        if type(ref) is str:
            if ref == TX_TEMPID:
                return self.tx_eid
            if ref.startswith(":"):
                ref = Keyword(ref)
            else:
                return self.tempid(ref)
        if type(ref) is Keyword:
            e = self.db.entid(ref)
            if e is None:
                raise NotAnEntityError(f"ident {ref} names no entity (in {_form(form)})",
                                       data={"entity": ref, "form": form})
            return e
        if isinstance(ref, (list, tuple)) and len(ref) == 2:
            try:
                e = self.db.entid(ref)
            except FastDatomicError as err:
                raise type(err)(f"lookup ref {_form(ref)}: {err.message} (in {_form(form)})",
                                data={"form": form}) from None
            if e is None:
                raise NotAnEntityError(f"lookup ref {_form(ref)} names no entity (in {_form(form)})",
                                       data={"entity": ref, "form": form})
            return e
        raise InvalidTxDataError(f"{ref!r} is not an entity reference (id, tempid, ident or lookup ref) "
                                 f"in {_form(form)}", data={"form": form})

    def value(self, at, v, form):
        """A value in stored form (refs resolved, types checked)."""
        if v is None:
            raise InvalidTxDataError(f"nil is not a value for {at.ident} (in {_form(form)}); "
                                     "use :db/retract to remove a value", data={"form": form})
        if at.is_ref:
            if not isinstance(v, (int, str, Keyword, list, tuple, TempId)) or type(v) is bool:
                raise WrongTypeError(f"value {v!r} of ref attribute {at.ident} is not an entity reference "
                                     f"(id, tempid, ident or lookup ref) (in {_form(form)})",
                                     data={"attribute": at.ident, "value": v, "form": form})
            return self.resolve(v, form)
        fast = at.fast_type
        if fast is not None and type(v) is fast and (fast is not int or -_I64 <= v < _I64):
            return v   # already in stored form; the codec still checks it when encoding the key
        if at.vtype == TYPE_KEYWORD and type(v) is not Keyword:
            raise WrongTypeError(f"value {v!r} of {at.ident} is not a keyword (in {_form(form)})",
                                 data={"attribute": at.ident, "value": v, "form": form},
                                 hint="pass fastdatomic.Keyword(...) or write :ns/name in EDN")
        if at.vtype == TYPE_TUPLE:
            v = self.tuple_value(at, v, form)
        try:
            return decode_value(encode_value(at.vtype, v))
        except (WrongTypeError, InvalidValueError) as e:
            raise type(e)(f"value {_form(v)} does not fit {at.ident}: {e.message} (in {_form(form)})",
                          data={"attribute": at.ident, "value": v, "form": form}) from None

    def tuple_value(self, at, v, form):
        if not isinstance(v, (list, tuple)):
            raise WrongTypeError(f"value {v!r} of tuple attribute {at.ident} is not a tuple (in {_form(form)})")
        v = tuple(v)
        if not 2 <= len(v) <= 8:
            raise InvalidValueError(f"tuple value of {at.ident} must have 2 to 8 elements, got {len(v)}")
        types = at.tuple_types or ((at.tuple_type,) * len(v) if at.tuple_type else None)
        if types is not None:
            if len(types) != len(v):
                raise WrongTypeError(f"tuple value {v!r} of {at.ident} needs {len(types)} elements")
            out = []
            for t, x in zip(types, v):
                if x is None:
                    out.append(None)
                elif t == TYPE_REF:
                    out.append(self.resolve(x, form))
                else:
                    try:
                        out.append(decode_value(encode_value(t, x)))
                    except (WrongTypeError, InvalidValueError) as e:
                        raise WrongTypeError(f"tuple element {x!r} of {at.ident}: {e.message}") from None
            return tuple(out)
        return v

    # --- 3./4. upsert and allocate ------------------------------------------------

    def resolve_all(self):
        resolve, value, tempids = self.resolve, self.value, self.tempids
        for op in self.ops:
            e = op[1]
            te = type(e)
            if te is str and e in tempids:
                op[1] = tempids[e]
            elif te is not TempId:
                op[1] = resolve(e, op[4])
            if op[3] is not _RETRACT_ALL:
                op[3] = value(op[2], op[3], op[4])
        self.cas = [(self.resolve(e, f), at, None if old is None else self.value(at, old, f),
                     self.value(at, new, f), f) for e, at, old, new, f in self.cas]
        for e, at, _, new, f in self.cas:
            self.ops.append([_ADD, e, at, new, f])
        self.ensures = [(self.resolve(e, None), spec) for e, spec in self.ensures]

    def upsert(self):
        """Resolve tempids through :db.unique/identity values (iterating until stable)."""
        claims = {}
        changed = True
        while changed:
            changed = False
            for op, e, at, v, form in self.ops:
                if op is not _ADD or at.unique != "identity" or not isinstance(e, TempId):
                    continue
                if isinstance(v, TempId):
                    r = v.root()
                    if r.eid is None:
                        continue
                    v = r.eid
                root = e.root()
                existing = self.lookup_unique(at, v)
                if existing is not None:
                    if root.eid is None:
                        root.eid = existing
                        changed = True
                    elif root.eid != existing:
                        raise UniqueConflictError(
                            f"tempid {root.name!r} upserts to two entities, {root.eid} and {existing} "
                            f"(through {at.ident} {v!r})", data={"tempid": root.name})
                else:
                    other = claims.get((at.id, _hashable(v)))
                    if other is None:
                        claims[(at.id, _hashable(v))] = root
                    elif other.root() is not root:
                        # Two tempids asserting the same new identity value are one entity.
                        o = other.root()
                        if o.eid is not None and root.eid is not None and o.eid != root.eid:
                            raise UniqueConflictError(f"{at.ident} {v!r} claimed by two entities")
                        root.parent = o
                        if o.eid is None:
                            o.eid = root.eid
                        changed = True

    def lookup_unique(self, at, v):
        return _lookup_unique(self.db, at, v)

    def allocate(self):
        ops = self.ops
        asserted = set()
        value_tempids = False
        for op in ops:
            e = op[1]
            if type(e) is TempId and op[0] is _ADD:
                asserted.add(e if e.parent is None else e.root())
            if type(op[3]) is TempId:
                value_tempids = True
        for op in (ops if value_tempids else ()):
            v = op[3]
            if type(v) is TempId:
                r = v if v.parent is None else v.root()
                if r.eid is None and r not in asserted:
                    raise InvalidTxDataError(
                        f"tempid {v.name!r} is used only as a value; it must also be the entity of an "
                        f"assertion (in {_form(op[4])})", data={"tempid": v.name, "form": op[4]})
        new_eids = self.new_eids

        def eid_of(x):
            r = x if x.parent is None else x.root()
            if r.eid is None:
                r.eid = entity_id(PART_USER, self.next_n)
                new_eids.add(r.eid)
                self.next_n += 1
            return r.eid
        all_new = True   # only assertions, all on entities this transaction creates
        tx_eid = self.tx_eid
        for op in ops:
            e = op[1]
            if type(e) is TempId:
                op[1] = e = e.eid if e.parent is None and e.eid is not None else eid_of(e)
            if all_new and (op[0] is not _ADD or (e not in new_eids and e != tx_eid)):
                all_new = False
            v = op[3]
            if type(v) is TempId:
                op[3] = eid_of(v)
            elif type(v) is tuple and op[2].vtype == TYPE_TUPLE:
                op[3] = tuple(eid_of(x) if type(x) is TempId else x for x in v)
        self.all_new = all_new and not self.cas
        self.cas = [(eid_of(e) if type(e) is TempId else e, at, old,
                     eid_of(new) if type(new) is TempId else new, f)
                    for e, at, old, new, f in self.cas]
        self.ensures = [(eid_of(e) if type(e) is TempId else e, spec) for e, spec in self.ensures]
        tempids = {}
        for name, t in self.tempids.items():
            tempids[name] = t.root().eid
        tempids[TX_TEMPID] = self.tx_eid
        return tempids

    # --- 5. datoms ----------------------------------------------------------------

    def current(self, e, at):
        """Current values of e's attribute in db-before."""
        if e in self.new_eids or e == self.tx_eid:
            return []
        prefix = encode_id(e) + encode_id(at.id)
        return [d.v for d in self.db._scan(INDEX_EAVT, prefix, prefix_end(prefix))]

    def datoms(self):
        if self.all_new:
            return self.datoms_of_new_entities()
        adds = {}       # (e, a, hashable v) -> (at, v, form)
        retracts = {}
        plain = _PLAIN_HASH
        touches_tx_attrs = False
        for op, e, at, v, form in self.ops:
            if at.id in _TX_ATTRS:
                touches_tx_attrs = True
            if op is _ADD:
                adds[(e, at.id, v if type(v) in plain else _hashable(v))] = (at, v, form)
            elif v is _RETRACT_ALL:
                for cur in self.current(e, at):
                    retracts[(e, at.id, _hashable(cur))] = (at, cur, form)
            else:
                retracts[(e, at.id, v if type(v) in plain else _hashable(v))] = (at, v, form)
        self.touches_tx_attrs = touches_tx_attrs
        # :db/cas checks see db-before.
        for e, at, old, new, form in self.cas:
            cur = self.current(e, at)
            cur_v = cur[0] if cur else None
            if not _same(cur_v, old):
                raise CasFailedError(f":db/cas failed on {at.ident} of {e}: expected {old!r}, found {cur_v!r} "
                                     f"(in {_form(form)})", data={"entity": e, "attribute": at.ident,
                                                                   "expected": old, "current": cur_v})
        # One pass over the assertions: conflicts, predicates, card-one, redundancy.
        card_one = {}
        out = []
        new_eids = self.new_eids
        tx_eid = self.tx_eid
        for key, (at, v, form) in adds.items():
            e, a, _ = key
            if retracts and key in retracts:
                raise DatomsConflictError(f"datom [{e} {at.ident} {v!r}] is both asserted and retracted "
                                          f"in one transaction", data={"datom": (e, at.ident, v)})
            if at.preds:
                self.check_preds(at, v, form)
            if not at.many:
                prev = card_one.get((e, a), _NONE)
                if prev is not _NONE:
                    raise DatomsConflictError(
                        f"two values for cardinality-one {at.ident} of entity {e} in one transaction: "
                        f"{prev!r} and {v!r}", data={"entity": e, "attribute": at.ident})
                card_one[(e, a)] = v
            if e in new_eids or e == tx_eid:
                out.append((e, a, v, True))   # nothing to replace or repeat on a new entity
                continue
            cur = self.current(e, at)
            if any(_same(c, v) for c in cur):
                continue  # redundant: already true
            if not at.many:
                for c in cur:
                    if (e, a, _hashable(c)) not in retracts:
                        retracts[(e, a, _hashable(c))] = (at, c, form)
            out.append((e, a, v, True))
        for (e, a, hv), (at, v, form) in retracts.items():
            if any(_same(c, v) for c in self.current(e, at)):
                out.append((e, a, v, False))
        out.extend(self.composite_tuples(out))
        self.check_unique(out)   # after composites: unique composite tuples are checked too
        return out

    def datoms_of_new_entities(self):
        """``datoms()`` when every operation asserts on an entity this transaction creates:
        nothing to replace, repeat or retract, so one pass checks conflicts (the bulk-load path)."""
        out = []
        card = {}
        seen = set()
        plain = _PLAIN_HASH
        unique_ids = self.schema.unique_ids
        touches = maybe_unique = False
        for op, e, at, v, form in self.ops:
            a = at.id
            if at.many:
                k = (e, a, v if type(v) in plain else _hashable(v))
                if k in seen:
                    continue
                seen.add(k)
            else:
                k = (e, a)
                prev = card.get(k, _NONE)
                if prev is not _NONE:
                    if _same(prev, v):
                        continue
                    raise DatomsConflictError(
                        f"two values for cardinality-one {at.ident} of entity {e} in one transaction: "
                        f"{prev!r} and {v!r}", data={"entity": e, "attribute": at.ident})
                card[k] = v
            if at.preds:
                self.check_preds(at, v, form)
            if a in unique_ids:
                maybe_unique = True
            if a in _TX_ATTRS:
                touches = True
            out.append((e, a, v, True))
        self.touches_tx_attrs = touches
        out.extend(self.composite_tuples(out))
        if maybe_unique or self.schema.composites:
            self.check_unique(out)
        return out

    def check_preds(self, at, v, form):
        for p in at.preds:
            fn = _TX_FNS.get(p) or _import_fn(p, form)
            try:
                ok = fn(v)
            except Exception as e:
                ok = False
                why = f"{type(e).__name__}: {e}"
            else:
                why = "returned false"
            if not ok:
                raise AttrPredFailedError(f"value {v!r} of {at.ident} failed predicate {p} ({why})",
                                          data={"attribute": at.ident, "value": v, "pred": p})

    def check_unique(self, datoms):
        _check_unique(self.db, datoms)

    def composite_tuples(self, datoms):
        """Assert/retract composite tuples whose component attributes changed."""
        composites = self.schema.composites
        if not composites:
            return []
        touched = {}
        for e, a, v, added in datoms:
            touched.setdefault(e, []).append((a, v, added))
        out = []
        for at in composites:
            comp_ids = [self.schema.idents.get(k) for k in at.tuple_attrs]
            for e, changes in touched.items():
                if not any(a in comp_ids for a, _, _ in changes):
                    continue
                values = []
                for cid in comp_ids:
                    cat = self.schema.attrs[cid]
                    cur = self.current(e, cat)
                    val = cur[0] if cur else None
                    for a, v, added in changes:
                        if a == cid:
                            if added:
                                val = v
                            elif _same(val, v):
                                val = None
                    values.append(val)
                new = tuple(values)
                old = self.current(e, at)
                old_v = old[0] if old else None
                if old_v is not None and _same(old_v, new):
                    continue
                if old_v is not None:
                    out.append((e, at.id, old_v, False))
                if any(x is not None for x in new):
                    out.append((e, at.id, new, True))
        return out

    def tx_datoms(self, datoms):
        """The transaction entity's own datoms: :db/txInstant (monotonic) and the tx UUID."""
        for e, a, v, added in (datoms if self.touches_tx_attrs else ()):
            if (a == S.DB_TX_UUID or a == S.DB_TXINSTANT) and (e != self.tx_eid or not added):
                # Past transactions' identity and time are facts of the log: never rewritten,
                # and the tx uuid lives only on transaction entities (idempotent retries
                # depend on both).
                what = "retracted" if e == self.tx_eid or not added else f"asserted on entity {e}"
                raise InvalidTxDataError(
                    f"{self.schema.ident_of.get(a)} of a transaction cannot be {what}; it belongs to "
                    "the transaction entity that carries it", data={"entity": e, "attribute": a})
        inst_a = S.DB_TXINSTANT
        mine = [d for d in datoms if d[0] == self.tx_eid] if self.touches_tx_attrs else ()
        user_inst = [v for e, a, v, added in mine if a == inst_a and added]
        prev = self.db.tx_instant
        if user_inst:
            when = user_inst[0]
            if prev is not None and when < prev:
                raise InvalidTxDataError(f":db/txInstant {when.isoformat()} is before the previous "
                                         f"transaction's {prev.isoformat()}")
        else:
            when = self.now
            if prev is not None and when <= prev:
                when = prev + timedelta(microseconds=1)  # monotonic even if the clock steps back
            datoms.append((self.tx_eid, inst_a, when, True))
        user_uuid = [v for e, a, v, added in mine if a == S.DB_TX_UUID and added]
        if user_uuid:
            if self.tx_uuid_given and user_uuid[0] != self.tx_uuid:
                raise InvalidTxDataError(f"transaction asserts :fastdatomic.tx/uuid {user_uuid[0]} but was "
                                         f"submitted with tx_id {self.tx_uuid}")
            self.tx_uuid = user_uuid[0]
        else:
            datoms.append((self.tx_eid, S.DB_TX_UUID, self.tx_uuid, True))
        return when

    # --- 6. after -------------------------------------------------------------------

    def check_after(self, db_after, datoms):
        for e, spec in self.ensures:
            spec_e = db_after.entid(spec)
            if spec_e is None:
                raise EntitySpecFailedError(f"entity spec {spec!r} does not exist")
            attrs = [d.v for d in db_after.datoms("eavt", spec_e, S.DB_ENTITY_ATTRS)]
            preds = [d.v for d in db_after.datoms("eavt", spec_e, S.DB_ENTITY_PREDS)]
            missing = [a for a in attrs if db_after.entid(a) is None or
                       next(iter(db_after.datoms("eavt", e, db_after.entid(a))), None) is None]
            if missing:
                raise EntitySpecFailedError(f"entity {e} fails spec {db_after.ident(spec_e) or spec}: "
                                            f"missing required {', '.join(map(str, missing))}",
                                            data={"entity": e, "spec": spec, "missing": missing})
            for p in preds:
                fn = _TX_FNS.get(p) or _import_fn(p, None)
                try:
                    ok, why = bool(fn(db_after, e)), "returned false"
                except Exception as err:  # a raising predicate fails the spec, never escapes raw
                    ok, why = False, f"raised {type(err).__name__}: {err}"
                if not ok:
                    raise EntitySpecFailedError(f"entity {e} fails spec {db_after.ident(spec_e) or spec}: "
                                                f"predicate {p} {why}",
                                                data={"entity": e, "spec": spec, "pred": p})
        check_schema(self.db, db_after, datoms)


_I64 = 1 << 63
_NONE = object()
_TX_ATTRS = frozenset({S.DB_TX_UUID, S.DB_TXINSTANT})
_PLAIN_HASH = frozenset({str, int, bool, Keyword})   # hashable as they are


def _hashable(v):
    # Values as dict keys: floats keep -0.0 apart from 0.0 and NaN equal to itself.
    if type(v) is float:
        return ("f", v.hex())
    if isinstance(v, (list, bytearray)):
        return tuple(v) if isinstance(v, list) else bytes(v)
    return v


def _same(a, b):
    if type(a) is float and type(b) is float:
        return a.hex() == b.hex()
    return type(a) is type(b) and a == b or (a is None and b is None)


def _check_unique(db, datoms):
    unique_ids = db.schema.unique_ids
    if not any(d[1] in unique_ids for d in datoms):
        return
    schema = db.schema
    retracted = {(e, a, _hashable(v)) for e, a, v, added in datoms if not added}
    seen = {}
    for e, a, v, added in datoms:
        if not added or a not in unique_ids:
            continue
        at = schema.attrs[a]
        key = (a, _hashable(v))
        if key in seen and seen[key] != e:
            raise UniqueConflictError(f"{at.ident} {v!r} asserted for two entities, {seen[key]} and {e}",
                                      data={"attribute": at.ident, "value": v})
        seen[key] = e
        holder = _lookup_unique(db, at, v)
        if holder is not None and holder != e and (holder, a, _hashable(v)) not in retracted:
            raise UniqueConflictError(f"{at.ident} {v!r} already belongs to entity {holder}; "
                                      f"entity {e} cannot have it too",
                                      data={"attribute": at.ident, "value": v, "holder": holder})


def _lookup_unique(db, at, v):
    prefix = encode_id(at.id) + encode_value(at.vtype, v)
    d = next(iter(db._scan(INDEX_AVET, prefix, prefix_end(prefix))), None)
    return None if d is None else d.e


def _import_fn(sym, form):
    name = str(sym)
    mod, _, fn = name.rpartition("/")
    if not mod:
        mod, _, fn = name.rpartition(".")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError, ValueError) as e:
        raise InvalidTxDataError(f"function {name} could not be loaded ({e}); register it with "
                                 f"fastdatomic.register_tx_fn (in {_form(form)})") from None


def check_schema(before: Database, after: Database, datoms):
    """Datomic's schema rules: complete new attributes, legal alterations only."""
    schema_changes = {}
    for e, a, v, added in datoms:
        if a in S.SCHEMA_ATTRS:
            schema_changes.setdefault(e, []).append((a, v, added))
    for e, changes in schema_changes.items():
        old = before.schema.attrs.get(e)
        new = after.schema.attrs.get(e)
        ident = after.schema.ident_of.get(e) or e
        touched = {a for a, _, _ in changes}
        if old is None and S.DB_VALUETYPE in touched:
            props = {a for a in S.SCHEMA_ATTRS if next(iter(after.datoms("eavt", e, a)), None) is not None}
            for need, what in ((S.DB_IDENT, ":db/ident"), (S.DB_CARDINALITY, ":db/cardinality")):
                if need not in props:
                    raise InvalidAlterAttributeError(f"new attribute {ident} needs {what}",
                                                     data={"entity": e})
            if new is not None and new.vtype == TYPE_TUPLE and not (
                    new.tuple_attrs or new.tuple_type or new.tuple_types):
                raise InvalidAlterAttributeError(f"tuple attribute {ident} needs :db/tupleAttrs, "
                                                 ":db/tupleType or :db/tupleTypes")
            if new is not None and new.tuple_attrs:
                for k in new.tuple_attrs:
                    if after.schema.attr(k) is None:
                        raise InvalidAlterAttributeError(f"composite tuple {ident}: {k} is not an attribute")
            continue
        if old is None:
            continue
        if S.DB_VALUETYPE in touched:
            raise InvalidAlterAttributeError(f"cannot change :db/valueType of {old.ident}",
                                             data={"attribute": old.ident})
        if touched & {S.DB_TUPLEATTRS, S.DB_TUPLETYPE, S.DB_TUPLETYPES}:
            raise InvalidAlterAttributeError(f"cannot change the tuple shape of {old.ident}")
        if S.DB_FULLTEXT in touched:
            raise InvalidAlterAttributeError(f"cannot change :db/fulltext of {old.ident}",
                                             data={"attribute": old.ident})
        required = (S.DB_IDENT, S.DB_VALUETYPE, S.DB_CARDINALITY)
        if new is None or any(next(iter(after.datoms("eavt", e, a)), None) is None for a in required):
            raise InvalidAlterAttributeError(f"cannot remove {old.ident}'s :db/ident, :db/valueType or "
                                             ":db/cardinality", data={"attribute": old.ident})
        if old.many and not new.many:
            for d_e, n in _values_per_entity(before, old):
                if n > 1:
                    raise InvalidAlterAttributeError(
                        f"cannot make {old.ident} cardinality one: entity {d_e} has {n} values")
        if new.unique is not None and old.unique is None:
            seen = {}
            for d in before.datoms("aevt", old.id):
                k = _hashable(d.v)
                if k in seen and seen[k] != d.e:
                    raise InvalidAlterAttributeError(
                        f"cannot make {old.ident} unique: value {d.v!r} is held by {seen[k]} and {d.e}")
                seen[k] = d.e


def _values_per_entity(db, at):
    last, n = None, 0
    for d in db.datoms("aevt", at.id):
        if d.e != last:
            if last is not None:
                yield last, n
            last, n = d.e, 0
        n += 1
    if last is not None:
        yield last, n


# --- the fast path (_core.txcore) ----------------------------------------------------

_FAST_PATH = True    # tests switch it off to compare both paths


def _fast_attr(schema, at):
    """``AttrInfo`` for an attribute the fast path may take, else None (see txcore)."""
    a = at.id
    if (at.unique is not None or at.preds or at.vtype is None or at.vtype == TYPE_TUPLE
            or at.tuple_attrs is not None or a in _TX_ATTRS or a in S.SCHEMA_ATTRS
            or a == S.DB_ENSURE or a in _composite_parts(schema)):
        return None
    return AttrInfo(a, at.vtype, schema.index_flags[a], at.many, at.fast_type)


def _composite_parts(schema):
    return {schema.idents.get(k) for at in schema.composites for k in at.tuple_attrs}


def _tx_core(schema) -> TxCore:
    """The fast path's caches for ``schema`` (one per schema value)."""
    def map_key(k):
        # What _Tx.expand_map / map_key make of a map key, when it is a plain attribute.
        kid = _ident(k)
        if kid is None or kid == _DB_ENSURE or kid.name.startswith("_"):
            return None
        if kid == _DB_ID:
            return SKIP
        at = schema.attr(kid)
        return None if at is None else _fast_attr(schema, at)

    def list_attr(a):
        # What _Tx.attr makes of a list form's attribute (an ident, ':ns/name' or an id).
        ident = _ident(a)
        at = schema.attr(ident if ident is not None else a)
        return None if at is None else _fast_attr(schema, at)

    inst, tx_uuid = schema.attrs[S.DB_TXINSTANT], schema.attrs[S.DB_TX_UUID]
    return TxCore(map_key, list_attr, schema.idents, _lookup_ref,
                  inst.id, inst.vtype, schema.index_flags[inst.id],
                  tx_uuid.id, tx_uuid.vtype, schema.index_flags[tx_uuid.id])


def _lookup_ref(db, ref):
    return db.entid(ref)


def _prepare_fast(db, tx_data, tx_uuid, check_uuid, now):
    schema = db.schema
    core = schema.tx_core
    if core is None:
        core = schema.tx_core = _tx_core(schema)
    prev = db.tx_instant
    try:   # tx_datoms' rule: monotonic even if the clock steps back
        when = now if prev is None or now > prev else prev + timedelta(microseconds=1)
    except TypeError:
        return None    # a naive `now`: the general path says so where it says it
    t = db.next_n
    out = core.run(tx_data, db, t, when, tx_uuid, MAX_TX_DATOMS)
    if out is None:
        return None
    datoms, tempids, next_n, sink = out
    if check_uuid:
        # A caller-chosen uuid may collide with a committed one (a generated one cannot).
        _check_unique(db, [datoms[len(datoms) - 1]])
    # Positional: this runs once per transaction.
    return TxResult(db, db.apply_sink(sink, t, next_n, when), datoms, t, next_n, tempids, when,
                    sink.eavt, sink.flags, tx_uuid)


def prepare(db: Database, tx_data, *, tx_uuid=None, now: datetime | None = None,
            uuid_checked: bool = False) -> TxResult:
    """Turn ``tx_data`` into the final datoms of one transaction against ``db`` (pure).

    ``uuid_checked=True`` says the caller already knows ``tx_uuid`` is not committed in
    ``db`` (the transactor's idempotency table), so the index is not asked again.

    Raises a ``TransactionError`` (stable ``kind``) naming the offending form; nothing
    is applied then. ``result.db_after`` is the database value after the transaction.

    >>> from fastdatomic.storage import open_storage
    >>> from fastdatomic.db.catalog import create_database, load_database
    >>> st = open_storage("mem", name="doc-tx-prepare")
    >>> _ = create_database(st, "d")
    >>> r = prepare(load_database(st, "d"), [{":db/ident": Keyword("color/red")}])
    >>> r.db_after.entid(":color/red") == r.tempids["#auto-1"] if False else r.db_after.entid(":color/red") > 0
    True
    """
    given = tx_uuid is not None
    if tx_uuid is None:
        tx_uuid = _uuid4()
    elif not isinstance(tx_uuid, uuid_mod.UUID):
        raise InvalidTxDataError(f"transaction id must be a uuid.UUID, got {tx_uuid!r}")
    now = now or utc_now()
    if _FAST_PATH:
        r = _prepare_fast(db, tx_data, tx_uuid, given and not uuid_checked, now)
        if r is not None:
            return r
    tx = _Tx(db, now, tx_uuid)
    tx.tx_uuid_given = given
    tx.expand(tx_data)
    if len(tx.ops) > MAX_TX_DATOMS:
        raise TxTooLargeError(f"transaction has {len(tx.ops)} operations, more than the limit of {MAX_TX_DATOMS}")
    tx.resolve_all()
    tx.upsert()
    tempids = tx.allocate()
    datoms = tx.datoms()
    tx_instant = tx.tx_datoms(datoms)
    if (given and not uuid_checked) or tx.tx_uuid is not tx_uuid:
        # A caller-chosen uuid may collide with a committed one (a generated one cannot).
        tx.check_unique([d for d in datoms if d[0] == tx.tx_eid])
    db_after, keys, flags = db.apply(datoms, tx.t, tx.next_n, tx_instant)
    tx.check_after(db_after, datoms)
    return TxResult(db_before=db, db_after=db_after, datoms=datoms, t=tx.t, next_n=tx.next_n,
                    tempids={k: v for k, v in tempids.items() if not k.startswith("#auto-")},
                    tx_instant=tx_instant, keys=keys, flags=flags, tx_uuid=tx.tx_uuid)
