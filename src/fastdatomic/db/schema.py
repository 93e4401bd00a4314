"""Schema as data: the bootstrap attributes, and the attribute cache of a database value.

Attributes are entities with ``:db/ident``, ``:db/valueType``, ``:db/cardinality`` and
friends, exactly as in Datomic. Bootstrap entities live in ``:db.part/db`` with small
ids; the genesis transaction (t = 0) asserts them. A database value keeps a
``Schema``: attribute id -> ``Attribute``, and ident <-> id for every entity with a
``:db/ident``.
"""

from __future__ import annotations

from fastdatomic._core.codec import (
    TYPE_BOOLEAN, TYPE_LONG, TYPE_DOUBLE, TYPE_FLOAT, TYPE_BIGINT, TYPE_BIGDEC, TYPE_INSTANT,
    TYPE_STRING, TYPE_KEYWORD, TYPE_SYMBOL, TYPE_UUID, TYPE_URI, TYPE_BYTES, TYPE_REF, TYPE_TUPLE,
)
from fastdatomic.types import Keyword

__all__ = ["Attribute", "Schema", "BOOTSTRAP", "bootstrap_datoms", "VALUE_TYPE_IDENTS"]

K = Keyword

# --- bootstrap entity ids (:db.part/db) ----------------------------------------
PART_DB_E = 0
DB_ADD = 1
DB_RETRACT = 2
PART_TX_E = 3
PART_USER_E = 4
DB_IDENT = 10
DB_INSTALL_PARTITION = 11
DB_INSTALL_VALUETYPE = 12
DB_INSTALL_ATTRIBUTE = 13
DB_VALUETYPE = 40
DB_CARDINALITY = 41
DB_UNIQUE = 42
DB_ISCOMPONENT = 43
DB_INDEX = 44
DB_NOHISTORY = 45
DB_FULLTEXT = 46
DB_TXINSTANT = 50
DB_DOC = 51
DB_TUPLEATTRS = 52
DB_TUPLETYPE = 53
DB_TUPLETYPES = 54
DB_ATTR_PREDS = 55
DB_ENSURE = 56
DB_ENTITY_ATTRS = 57
DB_ENTITY_PREDS = 58
DB_FN = 59               # :db/fn — a symbol naming a Python transaction function
DB_TX_UUID = 60          # :fastdatomic.tx/uuid — idempotent transactions (ARCHITECTURE §4.7)
CARD_ONE = 36
CARD_MANY = 37
UNIQUE_VALUE = 38
UNIQUE_IDENTITY = 39

# :db.type/* entity id -> codec type code
VALUE_TYPE_IDENTS = {
    20: (K("db.type/ref"), TYPE_REF),
    21: (K("db.type/keyword"), TYPE_KEYWORD),
    22: (K("db.type/long"), TYPE_LONG),
    23: (K("db.type/string"), TYPE_STRING),
    24: (K("db.type/boolean"), TYPE_BOOLEAN),
    25: (K("db.type/instant"), TYPE_INSTANT),
    27: (K("db.type/bytes"), TYPE_BYTES),
    28: (K("db.type/double"), TYPE_DOUBLE),
    29: (K("db.type/float"), TYPE_FLOAT),
    30: (K("db.type/uuid"), TYPE_UUID),
    31: (K("db.type/uri"), TYPE_URI),
    32: (K("db.type/bigint"), TYPE_BIGINT),
    33: (K("db.type/bigdec"), TYPE_BIGDEC),
    34: (K("db.type/symbol"), TYPE_SYMBOL),
    35: (K("db.type/tuple"), TYPE_TUPLE),
}
_FAST_TYPE = {TYPE_STRING: str, TYPE_LONG: int, TYPE_BOOLEAN: bool, TYPE_DOUBLE: float,
              TYPE_KEYWORD: Keyword}
TYPE_ENTITY = {code: eid for eid, (_, code) in VALUE_TYPE_IDENTS.items()}
TYPE_BY_IDENT = {kw: code for kw, code in VALUE_TYPE_IDENTS.values()}

# Bootstrap attributes: id -> (ident, value type entity, cardinality, unique, extra)
_ATTRS = [
    (DB_IDENT, "db/ident", 21, CARD_ONE, UNIQUE_IDENTITY, {}),
    (DB_VALUETYPE, "db/valueType", 20, CARD_ONE, None, {}),
    (DB_CARDINALITY, "db/cardinality", 20, CARD_ONE, None, {}),
    (DB_UNIQUE, "db/unique", 20, CARD_ONE, None, {}),
    (DB_ISCOMPONENT, "db/isComponent", 24, CARD_ONE, None, {}),
    (DB_INDEX, "db/index", 24, CARD_ONE, None, {}),
    (DB_NOHISTORY, "db/noHistory", 24, CARD_ONE, None, {}),
    (DB_FULLTEXT, "db/fulltext", 24, CARD_ONE, None, {}),
    (DB_TXINSTANT, "db/txInstant", 25, CARD_ONE, None, {DB_INDEX: True}),
    (DB_DOC, "db/doc", 23, CARD_ONE, None, {}),
    (DB_TUPLEATTRS, "db/tupleAttrs", 35, CARD_ONE, None, {DB_TUPLETYPE: 21}),
    (DB_TUPLETYPE, "db/tupleType", 20, CARD_ONE, None, {}),
    (DB_TUPLETYPES, "db/tupleTypes", 35, CARD_ONE, None, {DB_TUPLETYPE: 21}),
    (DB_ATTR_PREDS, "db.attr/preds", 34, CARD_MANY, None, {}),
    (DB_ENSURE, "db/ensure", 20, CARD_MANY, None, {}),
    (DB_ENTITY_ATTRS, "db.entity/attrs", 21, CARD_MANY, None, {}),
    (DB_ENTITY_PREDS, "db.entity/preds", 34, CARD_MANY, None, {}),
    (DB_INSTALL_PARTITION, "db.install/partition", 20, CARD_MANY, None, {}),
    (DB_INSTALL_VALUETYPE, "db.install/valueType", 20, CARD_MANY, None, {}),
    (DB_INSTALL_ATTRIBUTE, "db.install/attribute", 20, CARD_MANY, None, {}),
    (DB_FN, "db/fn", 34, CARD_ONE, None, {}),
    (DB_TX_UUID, "fastdatomic.tx/uuid", 30, CARD_ONE, UNIQUE_IDENTITY, {}),
]

# Plain idents (no attribute): partitions, tx-data operations, enum values.
_IDENTS = {
    PART_DB_E: "db.part/db", DB_ADD: "db/add", DB_RETRACT: "db/retract",
    PART_TX_E: "db.part/tx", PART_USER_E: "db.part/user",
    CARD_ONE: "db.cardinality/one", CARD_MANY: "db.cardinality/many",
    UNIQUE_VALUE: "db.unique/value", UNIQUE_IDENTITY: "db.unique/identity",
    **{eid: kw.full_name for eid, (kw, _) in VALUE_TYPE_IDENTS.items()},
}

# Schema attributes whose change means the attribute cache must be rebuilt.
SCHEMA_ATTRS = frozenset({
    DB_IDENT, DB_VALUETYPE, DB_CARDINALITY, DB_UNIQUE, DB_ISCOMPONENT, DB_INDEX,
    DB_NOHISTORY, DB_TUPLEATTRS, DB_TUPLETYPE, DB_TUPLETYPES, DB_ATTR_PREDS, DB_FULLTEXT,
})

FIRST_FREE_N = 1000  # first entity number handed out after bootstrap (t and ids share it)


def bootstrap_datoms():
    """The genesis transaction's ``(e, a, v)`` triples, values already in stored form.

    >>> any(e == 10 and a == 10 for e, a, v in bootstrap_datoms())   # :db/ident names itself
    True
    """
    out = []
    for eid, ident in _IDENTS.items():
        out.append((eid, DB_IDENT, K(ident)))
    for eid, ident, vtype, card, unique, extra in _ATTRS:
        out.append((eid, DB_IDENT, K(ident)))
        out.append((eid, DB_VALUETYPE, vtype))
        out.append((eid, DB_CARDINALITY, card))
        if unique is not None:
            out.append((eid, DB_UNIQUE, unique))
        for a, v in extra.items():
            out.append((eid, a, v))
        out.append((PART_DB_E, DB_INSTALL_ATTRIBUTE, eid))
    return out


BOOTSTRAP = bootstrap_datoms()


class Attribute:
    """What the database knows about one attribute.

    >>> a = Schema.bootstrap().attr(Keyword("db/ident"))
    >>> a.id, a.unique, a.indexed, a.many
    (10, 'identity', True, False)
    """

    __slots__ = ("id", "ident", "vtype", "many", "unique", "indexed", "component",
                 "no_history", "tuple_attrs", "tuple_type", "tuple_types", "preds", "fulltext",
                 "fast_type")

    def __init__(self, id: int, ident: Keyword):
        self.id = id
        self.ident = ident
        self.vtype = None
        self.many = False
        self.unique = None          # None | "value" | "identity"
        self.indexed = False        # in AVET: :db/index true or unique
        self.component = False
        self.no_history = False
        self.tuple_attrs = None     # tuple of attribute idents (composite tuple)
        self.tuple_type = None      # codec type code (homogeneous tuple)
        self.tuple_types = None     # tuple of codec type codes (heterogeneous tuple)
        self.preds = ()
        self.fulltext = False
        self.fast_type = None       # Python type already in stored form (str for strings, ...)

    @property
    def is_ref(self) -> bool:
        return self.vtype == TYPE_REF

    def __repr__(self):
        return f"<Attribute {self.ident} id={self.id}>"


class Schema:
    """Ident <-> id for all named entities, and ``Attribute`` for every installed attribute.

    Built from the current datoms of schema attributes (``from_facts``), so it is
    always what the database value's own datoms say.
    """

    __slots__ = ("attrs", "by_ident", "idents", "ident_of", "composites", "no_history", "map_keys",
                 "unique_ids", "vtypes", "index_flags", "tx_core")

    def __init__(self, attrs, by_ident, idents, ident_of):
        self.attrs = attrs          # id -> Attribute
        self.by_ident = by_ident    # Keyword -> Attribute
        self.idents = idents        # Keyword -> id
        self.ident_of = ident_of    # id -> Keyword
        # Derived once per schema: consulted on every transaction and history read.
        self.composites = tuple(a for a in attrs.values() if a.tuple_attrs)
        self.no_history = frozenset(a.id for a in attrs.values() if a.no_history)
        self.map_keys = {}          # tx-data map key -> Attribute, filled by transactions
        self.unique_ids = frozenset(a.id for a in attrs.values() if a.unique is not None)
        # Per attribute id: value type and the optional indexes (1 AVET, 2 VAET) its datoms join.
        self.vtypes = {a.id: a.vtype for a in attrs.values()}
        self.index_flags = {a.id: (1 if a.indexed else 0) | (2 if a.vtype == TYPE_REF else 0)
                            for a in attrs.values()}
        self.tx_core = None         # the transaction fast path's caches (db.tx), built on first use

    @staticmethod
    def from_facts(facts) -> "Schema":
        """Build from ``(e, a, v)`` facts that are current (schema attributes only needed).

        >>> Schema.from_facts(BOOTSTRAP).idents[Keyword("db.part/user")]
        4
        """
        by_e: dict[int, dict] = {}
        for e, a, v in facts:
            if a in SCHEMA_ATTRS:
                props = by_e.setdefault(e, {})
                if a == DB_ATTR_PREDS:
                    props.setdefault(a, []).append(v)
                else:
                    props[a] = v
        idents, ident_of, attrs, by_ident = {}, {}, {}, {}
        for e, props in by_e.items():
            ident = props.get(DB_IDENT)
            if ident is not None:
                idents[ident] = e
                ident_of[e] = ident
            vt = props.get(DB_VALUETYPE)
            if vt is None or ident is None:
                continue
            at = Attribute(e, ident)
            at.vtype = VALUE_TYPE_IDENTS[vt][1] if vt in VALUE_TYPE_IDENTS else None
            at.many = props.get(DB_CARDINALITY) == CARD_MANY
            u = props.get(DB_UNIQUE)
            at.unique = "identity" if u == UNIQUE_IDENTITY else "value" if u == UNIQUE_VALUE else None
            at.indexed = bool(props.get(DB_INDEX)) or at.unique is not None
            at.component = bool(props.get(DB_ISCOMPONENT))
            at.no_history = bool(props.get(DB_NOHISTORY))
            at.fulltext = bool(props.get(DB_FULLTEXT))
            tt = props.get(DB_TUPLETYPE)
            if tt is not None:
                at.tuple_type = VALUE_TYPE_IDENTS[tt][1] if tt in VALUE_TYPE_IDENTS else None
            tts = props.get(DB_TUPLETYPES)
            if tts is not None:
                at.tuple_types = tuple(TYPE_BY_IDENT.get(t) for t in tts)
            tas = props.get(DB_TUPLEATTRS)
            if tas is not None:
                at.tuple_attrs = tas
            at.preds = tuple(props.get(DB_ATTR_PREDS, ()))
            at.fast_type = _FAST_TYPE.get(at.vtype)
            attrs[e] = at
            by_ident[ident] = at
        return Schema(attrs, by_ident, idents, ident_of)

    @staticmethod
    def bootstrap() -> "Schema":
        """The schema of a new database."""
        return _BOOTSTRAP_SCHEMA

    def attr(self, x) -> Attribute | None:
        """The ``Attribute`` for an id or ident, or ``None``."""
        if type(x) is int:
            return self.attrs.get(x)
        return self.by_ident.get(x)


_BOOTSTRAP_SCHEMA = Schema.from_facts(BOOTSTRAP)
