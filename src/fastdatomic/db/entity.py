"""Datomic's entity API: a lazy, read-only, dict-like view of one entity in one database value.

``entity(db, eid)`` resolves ``eid`` (id, ident or lookup ref) and returns an ``Entity``
(``None`` when an ident or lookup ref names nothing; any id gives an entity, as in
Datomic, even one without datoms). Creating one reads nothing; each attribute is read
from the index on first access and then remembered; ``touch()`` reads them all.

Values, following Datomic:

* keys may be ``Keyword`` or ``":ns/name"`` text; ``e[":db/id"]`` is the id;
* cardinality-one attributes give the value, cardinality-many a ``frozenset``;
* references give ``Entity`` objects (components too), except that a reference to an
  entity with a ``:db/ident`` gives the ident ``Keyword`` (enums read as keywords);
* reverse references ``e[":ns/_attr"]`` give a ``frozenset`` of referring entities, or
  a single ``Entity`` when the attribute is a component (one owner);
* an attribute with no value gives ``None``; an ident that is not an attribute raises
  ``NotAnEntityError`` from ``e[k]`` (``get`` returns the default instead);
* ``keys()`` are the attribute ``Keyword`` s with values (forward attributes only);
* equality and hash go by (database, basis, as-of, since, id).
"""

from __future__ import annotations

from fastdatomic.errors import NotAnEntityError
from fastdatomic.types import Keyword

__all__ = ["Entity", "entity"]

DB_ID = Keyword("db/id")
_UNSET = object()


def _key(k):
    if type(k) is Keyword:
        return k
    if type(k) is str and k.startswith(":") and len(k) > 1:
        return Keyword(k)
    return None


class Entity:
    """A lazy view of entity ``id`` in database value ``db``."""

    __slots__ = ("db", "id", "_cache", "_touched")

    def __init__(self, db, eid: int):
        self.db = db
        self.id = eid
        self._cache = {}          # attribute Keyword (forward or reverse) -> value
        self._touched = False     # every forward attribute is in _cache

    # --- lookups -----------------------------------------------------------------

    def _wrap(self, at, v):
        if not at.is_ref:
            return v
        ident = self.db.schema.ident_of.get(v)
        if ident is not None and not at.component:
            return ident
        return Entity(self.db, v)

    def _forward(self, at):
        vs = [d.v for d in self.db.datoms("eavt", self.id, at.id)]
        return self._shape(at, vs)

    def _shape(self, at, vs):
        if not vs:
            return None
        if at.many:
            return frozenset(self._wrap(at, v) for v in vs)
        return self._wrap(at, vs[-1])

    def _reverse(self, at):
        es = [d.e for d in self.db.datoms("vaet", self.id, at.id)]
        if not es:
            return None
        if at.component:
            return Entity(self.db, es[0])
        return frozenset(Entity(self.db, e) for e in es)

    def _lookup(self, k):
        kw = _key(k)
        if kw is None:
            raise NotAnEntityError(f"{k!r} is not an attribute name", data={"attribute": k})
        if kw is DB_ID:
            return self.id
        cache = self._cache
        if kw in cache:
            return cache[kw]
        schema = self.db.schema
        at = schema.by_ident.get(kw)
        if at is not None:
            v = None if self._touched else self._forward(at)
        else:
            at = None
            if kw.name.startswith("_") and len(kw.name) > 1:
                at = schema.by_ident.get(Keyword(kw.ns or "", kw.name[1:]))
            if at is None or not at.is_ref:
                raise NotAnEntityError(f"{kw} is not an attribute of this database",
                                       data={"attribute": kw})
            v = self._reverse(at)
        cache[kw] = v
        return v

    def __getitem__(self, k):
        return self._lookup(k)

    def get(self, k, default=None):
        """The value of ``k``, or ``default`` when it has none or is not an attribute."""
        try:
            v = self._lookup(k)
        except NotAnEntityError:
            return default
        return default if v is None else v

    def touch(self) -> "Entity":
        """Load every attribute (components recursively); returns ``self``."""
        if not self._touched:
            schema = self.db.schema
            grouped = {}
            for d in self.db.datoms("eavt", self.id):
                grouped.setdefault(d.a, []).append(d.v)
            for a, vs in grouped.items():
                at = schema.attrs.get(a)
                if at is None:
                    continue
                if at.ident not in self._cache:
                    self._cache[at.ident] = self._shape(at, vs)
            self._touched = True
            for at in (schema.attrs.get(a) for a in grouped):
                if at is not None and at.component:
                    v = self._cache.get(at.ident)
                    for c in (v if at.many else (v,)):
                        if isinstance(c, Entity):
                            c.touch()
        return self

    def keys(self):
        """The attribute ``Keyword`` s this entity has values for."""
        self.touch()
        return [k for k, v in self._cache.items()
                if v is not None and self.db.schema.by_ident.get(k) is not None]

    def values(self):
        return [self._cache[k] for k in self.keys()]

    def items(self):
        return [(k, self._cache[k]) for k in self.keys()]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def __contains__(self, k):
        kw = _key(k)
        if kw is None:
            return False
        if kw is DB_ID:
            return True
        try:
            return self._lookup(kw) is not None
        except NotAnEntityError:
            return False

    # --- identity ------------------------------------------------------------------

    def _ident(self):
        db = self.db
        basis = db.basis_t if db.as_of_t is None else min(db.as_of_t, db.basis_t)
        return (db.db_id, basis, db.since_t, db.history_mode, id(db.pred) if db.pred else None,
                self.id)

    def __eq__(self, other):
        if type(other) is not Entity:
            return NotImplemented
        return self.id == other.id and (self.db is other.db or self._ident() == other._ident())

    def __hash__(self):
        return hash(self.id)

    def __setitem__(self, k, v):
        raise TypeError("entities are read-only; transact to change the database")

    def __repr__(self):
        parts = [f":db/id {self.id}"]
        for k, v in self._cache.items():
            if v is None:
                continue
            parts.append(f"{k} {_show(v)}")
        return "{" + ", ".join(parts) + "}"


def _show(v):
    if isinstance(v, Entity):
        return f"{{:db/id {v.id}}}"
    if isinstance(v, frozenset):
        return "#{" + " ".join(sorted(_show(x) for x in v)) + "}"
    if isinstance(v, Keyword):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def entity(db, eid):
    """The ``Entity`` for ``eid`` (id, ident or lookup ref), or ``None`` if it names nothing."""
    e = db.entid(eid)
    if e is None:
        return None
    return Entity(db, e)
