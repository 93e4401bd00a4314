"""Immutable database values: ``(durable trees at index basis) + novelty up to basis t``.

A ``Database`` never changes. ``as_of``, ``since``, ``history`` and ``filter`` are
cheap views (new values sharing everything); adding a transaction returns a new
value. Reads merge the tree and the novelty runs in the Cython scan kernel.

>>> from fastdatomic.db.catalog import create_database, load_database
>>> from fastdatomic.storage import open_storage
>>> st = open_storage("mem", name="doc-database")
>>> _ = create_database(st, "people")
>>> db = load_database(st, "people")
>>> db.entid(Keyword("db/ident")), db.ident(10), db.basis_t
(10, Keyword('db/ident'), 0)
"""

from __future__ import annotations

from datetime import datetime

from fastdatomic._core.codec import (
    INDEX_EAVT, INDEX_AEVT, INDEX_AVET, INDEX_VAET, TYPE_REF, TYPE_KEYWORD,
    encode_id, encode_value, encode_key,
)
from fastdatomic._core.logrec import encode_tx, sink_of_log
from fastdatomic._core.scan import Scan, MODE_CURRENT, MODE_HISTORY
from fastdatomic.db.schema import Schema, SCHEMA_ATTRS, Attribute, DB_IDENT
from fastdatomic.db.segments import SegmentStore
from fastdatomic.db.tree import TreeCursor, count_range
from fastdatomic.errors import InvalidIndexError, NotAnEntityError
from fastdatomic.ids import t_to_tx, tx_to_t, is_tx
from fastdatomic.types import Keyword

__all__ = ["Database", "index_code", "prefix_end"]

_INDEX_BY_NAME = {
    "eavt": INDEX_EAVT, "aevt": INDEX_AEVT, "avet": INDEX_AVET, "vaet": INDEX_VAET,
}
# Which datom component stands at each position of each index.
_ORDER = {
    INDEX_EAVT: ("e", "a", "v", "tx"),
    INDEX_AEVT: ("a", "e", "v", "tx"),
    INDEX_AVET: ("a", "v", "e", "tx"),
    INDEX_VAET: ("v", "a", "e", "tx"),
}


# The usual ways to name an index, resolved without parsing (datoms() is a hot path).
_INDEX_FAST = {}
for _name, _code in _INDEX_BY_NAME.items():
    _INDEX_FAST[_name] = _INDEX_FAST[":" + _name] = _INDEX_FAST[Keyword(_name)] = _code
    _INDEX_FAST[_name.upper()] = _code


def index_code(index) -> int:
    """Index code from ``:eavt``, ``"eavt"``, ``"EAVT"`` or a code.

    >>> index_code(Keyword("avet")), index_code("eavt")
    (2, 0)
    """
    if isinstance(index, int) and index in _ORDER:
        return index
    code = _INDEX_FAST.get(index)
    if code is not None:
        return code
    name = index.name if isinstance(index, Keyword) else str(index).lstrip(":")
    code = _INDEX_BY_NAME.get(name.lower())
    if code is None:
        raise InvalidIndexError(f"unknown index {index!r}; expected one of :eavt :aevt :avet :vaet")
    return code


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound).

    >>> prefix_end(b"ab\\xff"), prefix_end(b"")
    (b'ac', None)
    """
    p = prefix.rstrip(b"\xff")
    if not p:
        return None
    return p[:-1] + bytes([p[-1] + 1])


def _as_ident(x):
    # Idents may be given as Keyword or as ":ns/name" text in id positions.
    if type(x) is str and x.startswith(":"):
        return Keyword(x)
    return x


class Database:
    """An immutable database value.

    Fields are read-only by convention; views and ``apply`` return new values.
    """

    __slots__ = ("db_id", "name", "segs", "roots", "index_basis_t", "memindex", "basis_t",
                 "next_n", "schema", "as_of_t", "since_t", "history_mode", "pred", "tx_instant")

    def __init__(self, *, db_id, name, segs: SegmentStore, roots, index_basis_t, memindex,
                 basis_t, next_n, schema, as_of_t=None, since_t=None, history_mode=False,
                 pred=None, tx_instant=None):
        self.db_id = db_id
        self.name = name
        self.segs = segs
        self.roots = tuple(roots)
        self.index_basis_t = index_basis_t
        self.memindex = memindex
        self.basis_t = basis_t
        self.next_n = next_n
        self.schema = schema
        self.as_of_t = as_of_t
        self.since_t = since_t
        self.history_mode = history_mode
        self.pred = pred
        self.tx_instant = tx_instant

    def _view(self, **changes) -> "Database":
        new = self._copy()
        for name, value in changes.items():
            setattr(new, name, value)
        if "roots" in changes:
            new.roots = tuple(new.roots)
        return new

    def _copy(self) -> "Database":
        # Explicit copies: this runs once per transaction and per view.
        new = object.__new__(Database)
        new.db_id = self.db_id
        new.name = self.name
        new.segs = self.segs
        new.roots = self.roots
        new.index_basis_t = self.index_basis_t
        new.memindex = self.memindex
        new.basis_t = self.basis_t
        new.next_n = self.next_n
        new.schema = self.schema
        new.as_of_t = self.as_of_t
        new.since_t = self.since_t
        new.history_mode = self.history_mode
        new.pred = self.pred
        new.tx_instant = self.tx_instant
        return new

    # --- views ----------------------------------------------------------------

    def _resolve_t(self, t) -> int:
        if isinstance(t, datetime):
            return self._t_at_instant(t)
        if not isinstance(t, int) or isinstance(t, bool):
            raise TypeError(f"t must be a t, a transaction id or a datetime, got {t!r}")
        return tx_to_t(t) if is_tx(t) else t

    def _t_at_instant(self, when: datetime) -> int:
        # :db/txInstant is monotonic, so the last transaction at or before `when`
        # is the last AVET datom whose value is <= when.
        a = self.schema.idents[Keyword("db/txInstant")]
        lo = encode_id(a)
        hi = prefix_end(lo + encode_value(self.schema.attrs[a].vtype, when))
        last = None
        for d in self._view(as_of_t=None, since_t=None, history_mode=False,
                            pred=None)._scan(INDEX_AVET, lo, hi, MODE_CURRENT):
            last = d
        return tx_to_t(last.e) if last is not None else -1

    def as_of(self, t) -> "Database":
        """The database as it was at ``t`` (a t, a tx id, or a datetime).

        >>> db.as_of(0).basis_t
        0
        """
        return self._view(as_of_t=self._resolve_t(t))

    def since(self, t) -> "Database":
        """Only datoms added after ``t`` (current values whose transaction is newer than ``t``).

        >>> list(db.since(db.basis_t).datoms("aevt", ":db/ident"))
        []
        """
        return self._view(since_t=self._resolve_t(t))

    def history(self) -> "Database":
        """Every assertion and retraction, with its transaction (``added`` tells which).

        >>> db.history().is_history
        True
        """
        return self._view(history_mode=True)

    def filter(self, pred) -> "Database":
        """A view holding only datoms for which ``pred(db, datom)`` is true (filters compose).

        >>> db.filter(lambda _db, d: d.a == 10).is_filtered
        True
        """
        prev = self.pred
        combined = pred if prev is None else (lambda db_, d: prev(db_, d) and pred(db_, d))
        return self._view(pred=combined)

    @property
    def is_history(self) -> bool:
        return self.history_mode

    @property
    def is_filtered(self) -> bool:
        return self.pred is not None

    # --- identity ---------------------------------------------------------------

    def entid(self, x):
        """The entity id of an id, ident (``Keyword`` or ``":ns/name"``) or lookup ref; ``None`` if none.

        >>> db.entid(":db/ident"), db.entid([":db/ident", Keyword("db/doc")])
        (10, 51)
        """
        if type(x) is int:
            return x
        x = _as_ident(x)
        if type(x) is Keyword:
            return self.schema.idents.get(x)
        if isinstance(x, (list, tuple)) and len(x) == 2:
            return self._lookup_ref(x[0], x[1])
        raise TypeError(f"not an entity identifier: {x!r} (expected id, ident or lookup ref)")

    def entid_strict(self, x) -> int:
        """Like ``entid`` but raises ``NotAnEntityError`` naming ``x`` when nothing matches.

        >>> db.entid_strict(":db.part/nope")
        Traceback (most recent call last):
        ...
        fastdatomic.errors.NotAnEntityError: ':db.part/nope' does not name an entity in this database
        """
        e = self.entid(x)
        if e is None:
            raise NotAnEntityError(f"{x!r} does not name an entity in this database",
                                   data={"entity": x})
        return e

    def _lookup_ref(self, attr, value):
        at = self.attribute(attr)
        if at.unique is None:
            raise InvalidIndexError(
                f"lookup ref {[attr, value]!r}: attribute {at.ident} is not :db/unique",
                hint="lookup refs need a :db.unique/identity or :db.unique/value attribute")
        if at.vtype == TYPE_REF:
            value = self.entid_strict(value)
        prefix = encode_id(at.id) + encode_value(at.vtype, value)
        scan = self._scan(INDEX_AVET, prefix, prefix_end(prefix), None)
        d = next(iter(scan), None)
        return None if d is None else d.e

    def ident(self, eid):
        """The ``Keyword`` ident of an entity id, or ``None``.

        >>> db.ident(db.entid(":db.part/user"))
        Keyword('db.part/user')
        """
        return self.schema.ident_of.get(eid)

    def attribute(self, x) -> Attribute:
        """The ``Attribute`` for an id or ident; ``NotAnEntityError`` when it isn't one.

        >>> db.attribute(":db/ident").unique
        'identity'
        """
        x = _as_ident(x)
        at = self.schema.attr(x)
        if at is None:
            raise NotAnEntityError(f"{x!r} is not an attribute of this database",
                                   data={"attribute": x})
        return at

    # --- pull and entities -----------------------------------------------------------

    def _no_history(self, what):
        if self.history_mode:
            raise InvalidIndexError(f"{what} is not available on a history database "
                                    "(it shows retractions); use db.as_of(t) instead")

    def pull(self, pattern, eid):
        """The entity ``eid`` shaped by a pull ``pattern`` (EDN text or data); ``None`` if absent.

        >>> db.pull("[:db/ident :db/cardinality]", ":db/ident")[Keyword("db/ident")]
        Keyword('db/ident')
        """
        from fastdatomic.db.pull import pull  # builds on this module
        self._no_history("pull")
        return pull(self, pattern, eid)

    def pull_many(self, pattern, eids):
        """``pull`` for each of ``eids``, in order (``None`` where an entity does not resolve).

        >>> [m[Keyword("db/ident")] for m in db.pull_many("[:db/ident]", [":db/ident", ":db/doc"])]
        [Keyword('db/ident'), Keyword('db/doc')]
        """
        from fastdatomic.db.pull import pull_many
        self._no_history("pull")
        return pull_many(self, pattern, eids)

    def entity(self, eid):
        """A lazy ``Entity`` for ``eid``: navigable both ways, ``touch()`` loads it all.

        >>> db.entity(":db/ident")[":db/ident"]
        Keyword('db/ident')
        """
        from fastdatomic.db.entity import entity
        self._no_history("entity")
        return entity(self, eid)

    # --- index access -------------------------------------------------------------

    def _scan(self, index: int, start: bytes, end, mode=None):
        root = self.roots[index]
        cursor = TreeCursor(self.segs, root, start) if root is not None else None
        max_t = self.basis_t if self.as_of_t is None else min(self.as_of_t, self.basis_t)
        min_tx = t_to_tx(self.since_t) if self.since_t is not None else -1
        if mode is None:
            mode = MODE_HISTORY if self.history_mode else MODE_CURRENT
        scan = Scan(index, cursor, self.memindex.runs[index], start, end, mode,
                    t_to_tx(max_t) if max_t >= 0 else -1, min_tx)
        if mode == MODE_HISTORY and self.schema.no_history:
            scan = self._hide_past_values(scan, max_t)
        if self.pred is not None:
            pred = self.pred
            return (d for d in scan if pred(self, d))
        return scan

    def _hide_past_values(self, scan, max_t):
        # :db/noHistory: past values are not retained, so history shows only the
        # assertions still current at this value's basis.
        no_history = self.schema.no_history
        current = self._view(as_of_t=max_t, since_t=None, history_mode=False, pred=None)
        for d in scan:
            if d.a not in no_history:
                yield d
            elif d.added:
                at = self.schema.attrs[d.a]
                prefix = encode_id(d.e) + encode_id(d.a) + encode_value(at.vtype, d.v)
                cur = next(iter(current._scan(INDEX_EAVT, prefix, prefix_end(prefix), MODE_CURRENT)), None)
                if cur is not None and cur.tx == d.tx:
                    yield d

    def _prefix(self, index: int, components) -> bytes:
        if index == INDEX_EAVT and len(components) == 2 and type(components[0]) is int:
            # [e a]: the point-lookup shape, resolved without the general loop.
            at = self.schema.attr(_as_ident(components[1]))
            if at is not None:
                return encode_id(components[0]) + encode_id(at.id)
        order = _ORDER[index]
        if len(components) > 4:
            raise InvalidIndexError(f"at most 4 components for an index, got {len(components)}")
        parts = []
        attr = None
        for role, c in zip(order, components):
            if role == "a":
                attr = self.attribute(c)
                if index == INDEX_AVET and not attr.indexed:
                    raise InvalidIndexError(
                        f"attribute {attr.ident} is not in the AVET index",
                        hint="set :db/index true (or :db/unique) on the attribute")
                if index == INDEX_VAET and not attr.is_ref:
                    raise InvalidIndexError(f"attribute {attr.ident} is not a ref; VAET holds refs only")
                parts.append(encode_id(attr.id))
            elif role in ("e", "tx"):
                e = self.entid_strict(c)
                parts.append(encode_id(t_to_tx(e) if role == "tx" and not is_tx(e) else e))
            else:  # v
                if index == INDEX_VAET or (attr is not None and attr.is_ref):
                    parts.append(encode_value(TYPE_REF, self.entid_strict(c)))
                elif attr is None:
                    raise InvalidIndexError("a value component needs its attribute first")
                else:
                    parts.append(encode_value(attr.vtype, _as_ident(c) if attr.vtype == TYPE_KEYWORD else c))
        return b"".join(parts)

    def datoms(self, index, *components):
        """Datoms of ``index`` whose leading components equal ``components``, in index order.

        >>> [d.v for d in db.datoms("eavt", 10, ":db/ident")]
        [Keyword('db/ident')]
        """
        index = index_code(index)
        prefix = self._prefix(index, components)
        return self._scan(index, prefix, prefix_end(prefix))

    def seek_datoms(self, index, *components):
        """Datoms of ``index`` from the first at or after ``components`` to the end of the index.

        >>> next(iter(db.seek_datoms("eavt", 10))).e
        10
        """
        index = index_code(index)
        return self._scan(index, self._prefix(index, components), None)

    def index_range(self, attr, start=None, end=None):
        """AVET datoms of ``attr`` with ``start <= v < end`` (``None`` leaves a side open).

        >>> [d.e for d in db.index_range(":db/ident", Keyword("db/ident"), Keyword("db/index"))]
        [10]
        """
        at = self.attribute(attr)
        if not at.indexed:
            raise InvalidIndexError(f"attribute {at.ident} is not in the AVET index",
                                    hint="set :db/index true (or :db/unique) on the attribute")
        a = encode_id(at.id)
        lo = a if start is None else a + encode_value(at.vtype, start)
        hi = prefix_end(a) if end is None else a + encode_value(at.vtype, end)
        return self._scan(INDEX_AVET, lo, hi)

    def _avet_bounds(self, attr_id: int, lo: bytes | None, hi: bytes | None):
        # Keys of AVET for attr_id whose encoded value lies in [lo, hi] (None: open).
        a = encode_id(attr_id)
        return (a if lo is None else a + lo), prefix_end(a if hi is None else a + hi)

    def encoded_value_range(self, attr_id: int, lo: bytes | None, hi: bytes | None):
        """AVET datoms of the (indexed) attribute ``attr_id`` whose *encoded* value lies in
        ``[lo, hi]`` (``None`` leaves a side open): what the query engine scans for a
        comparison predicate on an indexed attribute (``query/ranges.py``).

        >>> from fastdatomic._core.codec import encode_value, TYPE_KEYWORD
        >>> a = db.attribute(":db/ident").id
        >>> k = encode_value(TYPE_KEYWORD, Keyword("db/ident"))
        >>> [d.e for d in db.encoded_value_range(a, k, k)]
        [10]
        """
        start, end = self._avet_bounds(attr_id, lo, hi)
        return self._scan(INDEX_AVET, start, end)

    def estimate_value_range(self, attr_id: int, lo: bytes | None, hi: bytes | None) -> int:
        """Upper bound of ``len(encoded_value_range(attr_id, lo, hi))`` from tree counts
        and binary searches only (history included), as ``estimate`` is.

        >>> a = db.attribute(":db/ident").id
        >>> db.estimate_value_range(a, None, None) >= db.count_datoms("aevt", ":db/ident")
        True
        """
        return self._estimate_keys(INDEX_AVET, *self._avet_bounds(attr_id, lo, hi))

    def _estimate_keys(self, index: int, lo: bytes, hi) -> int:
        total = count_range(self.segs, self.roots[index], lo, hi)
        for run in self.memindex.runs[index]:
            total += (len(run) if hi is None else run.lower_bound(hi)) - run.lower_bound(lo)
        return total

    def count_datoms(self, index, *components) -> int:
        """How many datoms ``datoms(index, *components)`` yields, without materialising them.

        >>> db.count_datoms("eavt", ":db/ident", ":db/ident")
        1
        """
        it = self.datoms(index, *components)
        if isinstance(it, Scan):
            return it.count()
        return sum(1 for _ in it)

    def estimate(self, index, *components) -> int:
        """How many datoms of ``index`` start with ``components``, from tree counts and
        binary searches only (no scan): history datoms included, so an upper bound for
        the current view. What the query planner ranks clauses by.

        >>> db.estimate("aevt", ":db/ident") >= db.count_datoms("aevt", ":db/ident")
        True
        """
        index = index_code(index)
        lo = self._prefix(index, components)
        return self._estimate_keys(index, lo, prefix_end(lo))

    # --- writing: a new value with one transaction's datoms ---------------------

    def with_(self, tx_data, *, tx_id=None):
        """Apply ``tx_data`` to this value only (nothing is stored): Datomic's ``with``.

        Returns a ``TxReport`` whose ``db_after`` can take further ``with_`` calls.

        >>> r = db.with_([{":db/ident": Keyword("color/teal")}])
        >>> r.db_after.entid(":color/teal") is not None, db.entid(":color/teal") is None
        (True, True)
        """
        from fastdatomic.db.tx import prepare          # tx and report build on this module
        from fastdatomic.db.report import TxReport, lookup_tx, report_for_existing
        if isinstance(tx_data, str):
            from fastdatomic.edn import loads
            tx_data = loads(tx_data)
        base = self._view(as_of_t=None, since_t=None, history_mode=False, pred=None)
        if tx_id is not None:
            done = lookup_tx(base, tx_id)
            if done is not None:  # like transact: the same tx_id never applies twice
                return report_for_existing(self.segs.storage, base, done, tx_id)
        r = prepare(base, tx_data, tx_uuid=tx_id)
        return TxReport(self, r.db_after, r.datoms, r.tempids, r.t, r.tx_uuid)

    def apply(self, datoms, t: int, next_n: int, tx_instant=None):
        """A new value with ``datoms`` (``(e, a, v, added)``, stored form) added at ``t``.

        The caller (the transaction layer) has already applied Datomic's semantics.
        Returns ``(new_db, eavt_keys, flags)``; keys and flags make the log record.
        """
        schema = self.schema
        try:
            sink, touches_schema = encode_tx(
                datoms if type(datoms) is list else list(datoms), schema.vtypes,
                schema.index_flags, SCHEMA_ATTRS, t_to_tx(t))
        except KeyError as e:
            raise NotAnEntityError(f"attribute id {e.args[0]} is not installed",
                                   data={"attribute": e.args[0]}) from None
        new = self.apply_sink(sink, t, next_n, tx_instant)
        if touches_schema:
            new = _with_schema(new, load_schema(new))
        return new, sink.eavt, sink.flags

    def apply_sink(self, sink, t: int, next_n: int, tx_instant) -> "Database":
        """A new value with one transaction's keys (a ``KeySink``) added at ``t``; the
        schema is left as it is (the caller knows whether the keys touch it)."""
        new = self._copy()
        new.memindex = self.memindex.add((sink.eavt, sink.aevt, sink.avet, sink.vaet),
                                         sink.run_nbytes())
        new.basis_t = t
        new.next_n = next_n
        new.as_of_t = None
        new.since_t = None
        new.history_mode = False
        new.pred = None
        new.tx_instant = tx_instant
        return new

    def apply_keys(self, t: int, next_n: int, eavt_keys, flags) -> "Database":
        """A new value from a log record's keys (replay on a peer or a standby)."""
        sink, touches_schema = sink_of_log(
            eavt_keys if type(eavt_keys) is list else list(eavt_keys),
            flags if type(flags) is list else list(flags), SCHEMA_ATTRS)
        # _copy and three fields rather than _view(**changes): this runs per transaction
        new = self._copy()
        new.memindex = self.memindex.add(sink.keys(), sink.run_nbytes())
        new.basis_t = t
        new.next_n = next_n
        if touches_schema:
            new = _with_schema(new, load_schema(new))
        return new

    def __repr__(self):
        extra = "".join([
            f" as-of={self.as_of_t}" if self.as_of_t is not None else "",
            f" since={self.since_t}" if self.since_t is not None else "",
            " history" if self.history_mode else "",
            " filtered" if self.pred is not None else "",
        ])
        return f"#db {{:name {self.name!r} :basis-t {self.basis_t}{extra}}}"


def _with_schema(db: Database, schema: Schema) -> Database:
    """Install a new schema; attributes that just became indexed get their AVET keys.

    Datomic builds AVET for a newly indexed attribute in the background; here the
    keys of all its datoms (history included) join the memory index at once, so the
    attribute answers AVET reads from this value on. Replay does the same, so a value
    rebuilt from the log equals the writer's.
    """
    old = db.schema
    db.schema = schema
    backfill = [at for at in schema.attrs.values()
                if at.indexed and not (old.attrs.get(at.id) and old.attrs[at.id].indexed)
                and at.id in old.attrs]
    if backfill:
        keys = []
        hist = db._view(as_of_t=None, since_t=None, history_mode=True, pred=None)
        for at in backfill:
            prefix = encode_id(at.id)
            for d in hist._scan(INDEX_AEVT, prefix, prefix_end(prefix), MODE_HISTORY):
                keys.append(encode_key(INDEX_AVET, d.e, d.a, at.vtype, d.v, d.tx, d.added))
        if keys:
            db.memindex = db.memindex.add(([], [], keys, []))
    return db


def load_schema(db: Database) -> Schema:
    """Rebuild the attribute cache from a database value's current schema datoms."""
    base = db._view(as_of_t=None, since_t=None, history_mode=False, pred=None)
    facts = []
    for a in SCHEMA_ATTRS:
        prefix = encode_id(a)
        for d in base._scan(INDEX_AEVT, prefix, prefix_end(prefix), MODE_CURRENT):
            facts.append((d.e, d.a, d.v))
    schema = Schema.from_facts(facts)
    # A renamed ident keeps resolving to its entity (Datomic), unless reused by another.
    prefix = encode_id(DB_IDENT)
    for d in base._scan(INDEX_AEVT, prefix, prefix_end(prefix), MODE_HISTORY):
        if not d.added and d.v not in schema.idents:
            schema.idents[d.v] = d.e
            if d.e in schema.attrs:
                schema.by_ident[d.v] = schema.attrs[d.e]
    return schema
