"""Datomic's Pull API: hierarchical selections of entity data by pattern.

``pull(db, pattern, eid)`` applies a pattern (EDN text or Python data) to one entity and
returns a ``dict``; ``pull_many(db, pattern, eids)`` does the same for many entities,
keeping their order.

Result shape (the conventions of this module):

* keys are ``Keyword`` objects (``Keyword("person/name")``), or the ``:as`` value when
  one is given; ``:db/id`` is ``Keyword("db/id")``;
* cardinality-many attributes give a ``list`` in index order (at most ``:limit`` values,
  1000 unless told otherwise; ``:limit nil`` means no limit);
* references without a sub-pattern give ``{Keyword("db/id"): eid}`` (enum entities too);
  component references (``:db/isComponent``) without a sub-pattern are pulled with ``[*]``,
  recursively, whether named or reached by ``*``; only a component met again within one
  run of expansions (a cycle in the data) is cut to ``{:db/id e}``;
* ``*`` gives every forward attribute, never reverse ones; other specs next to it
  (``[* {:a/ref [:x]} :a/_b]``) replace or add to what it gives;
* reverse references ``:ns/_attr`` give a list of maps, or a single map when the
  attribute is a component (a component has at most one owner);
* missing attributes are left out (unless ``:default`` is given); a nested entity that
  matches nothing is left out; when nothing at all matches, the result is ``None``
  (Datomic's ``nil``). ``*`` always yields ``:db/id``, so ``[*]`` of an entity with no
  datoms is ``{:db/id e}``;
* an ``eid`` that resolves to nothing (unknown ident, lookup ref with no match) pulls
  as ``None``;
* recursion ``{:attr ...}`` is unbounded and cycle-safe: an entity already on the path
  from the root (root included) is returned as ``{:db/id e}``; ``{:attr n}`` descends at
  most ``n`` levels.

Attribute specs: ``:attr``, ``:ns/_attr``, ``:db/id``, ``*``, ``[attr :as x :limit n
:default v]`` (any combination), the legacy ``(limit :attr n)`` / ``(default :attr v)``
(lists or vectors, symbol or string head), and map specs ``{attr-spec sub}`` with ``sub``
a pattern, ``...`` or a non-negative depth. An attribute that does not exist raises
``NotAnEntityError`` naming it; anything else malformed raises ``InvalidValueError``
naming the offending element.

Parsed EDN-text patterns are cached (per text and schema).

>>> _parse_cache_size() >= 0
True
"""

from __future__ import annotations

from fastdatomic._core.codec import INDEX_EAVT, encode_id
from fastdatomic._core.scan import Scan
from fastdatomic.edn import loads
from fastdatomic.errors import InvalidValueError, NotAnEntityError
from fastdatomic.types import Keyword, Symbol

__all__ = ["pull", "pull_many", "parse_pattern", "DEFAULT_LIMIT"]

#: Datomic's default ``:limit`` for cardinality-many attributes.
DEFAULT_LIMIT = 1000

DB_ID = Keyword("db/id")
_K_AS = Keyword("as")
_K_LIMIT = Keyword("limit")
_K_DEFAULT = Keyword("default")
_WILD = (Symbol("*"), "*")
_ELLIPSIS = (Symbol("..."), "...")
_LEGACY = {Symbol("limit"): "limit", "limit": "limit",
           Symbol("default"): "default", "default": "default"}
_MISSING = object()


class _Spec:
    """One attribute spec of a compiled pattern."""

    __slots__ = ("key", "attr", "aid", "is_id", "reverse", "many", "ref", "expand",
                 "limit", "default", "sub", "rec", "rec_limit", "name")

    def __init__(self, name, attr=None, reverse=False):
        self.name = name                # what the pattern said (Keyword)
        self.key = name                 # result key (:as)
        self.attr = attr
        self.aid = attr.id if attr is not None else None
        self.is_id = attr is None
        self.reverse = reverse
        if attr is None:
            self.many = self.ref = False
        elif reverse:
            self.ref = True
            self.many = not attr.component      # a component has one owner
        else:
            self.ref = attr.is_ref
            self.many = attr.many
        self.limit = DEFAULT_LIMIT if self.many else None
        self.default = _MISSING
        self.sub = None                 # _Pattern for nested refs
        self.rec = False                # recursion: apply the enclosing pattern
        self.rec_limit = None           # depth limit for recursion (None: unbounded)
        self.expand = False             # component without sub-pattern: pull [*]

    def finish(self):
        self.expand = (self.attr is not None and not self.reverse and self.attr.component
                       and self.sub is None and not self.rec)
        return self


class _Pattern:
    """A compiled pattern: forward specs, reverse specs, wildcard flag."""

    __slots__ = ("wildcard", "fwd", "rev", "by_aid", "scan_aid")

    def __init__(self):
        self.wildcard = False
        self.fwd = []
        self.rev = []
        self.by_aid = {}
        self.scan_aid = None

    def add(self, spec):
        if spec.reverse:
            self.rev.append(spec)
        else:
            self.fwd.append(spec)
            if spec.aid is not None:
                self.by_aid[spec.aid] = spec

    def finish(self):
        # With a single forward attribute and no wildcard, scan [e a] instead of [e].
        if not self.wildcard and len(self.by_aid) == 1:
            self.scan_aid = next(iter(self.by_aid))
        return self


_WILDCARD = _Pattern()
_WILDCARD.wildcard = True


def _describe(x):
    try:
        from fastdatomic.edn import dumps
        return dumps(x)
    except Exception:  # noqa: BLE001 - only for messages
        return repr(x)


def _bad(message, element):
    return InvalidValueError(f"invalid pull pattern: {message}: {_describe(element)}",
                             data={"element": element},
                             hint="see Datomic's pull grammar: [:attr {:ref [:attr]} "
                                  "[:attr :limit n :as x :default v] *]")


def _as_keyword(x):
    if type(x) is Keyword:
        return x
    if type(x) is str and x.startswith(":") and len(x) > 1:
        return Keyword(x)
    return None


def _resolve(schema, name, element):
    kw = _as_keyword(name)
    if kw is None:
        raise _bad("expected an attribute name", element)
    if kw is DB_ID:
        return _Spec(DB_ID)
    at = schema.by_ident.get(kw)
    if at is not None:
        return _Spec(kw, at)
    if kw.name.startswith("_") and len(kw.name) > 1:
        fwd = Keyword(kw.ns or "", kw.name[1:])
        at = schema.by_ident.get(fwd)
        if at is not None:
            if not at.is_ref:
                raise _bad(f"reverse lookup {kw} needs a reference attribute, {fwd} is not", element)
            return _Spec(kw, at, reverse=True)
    raise NotAnEntityError(f"pull pattern names {kw}, which is not an attribute of this database",
                           data={"attribute": kw})


def _apply_option(spec, opt, value, element):
    if opt is _K_AS:
        spec.key = value
    elif opt is _K_LIMIT:
        if value is not None and (type(value) is not int or value < 0):
            raise _bad(":limit needs a non-negative integer or nil", element)
        if spec.many:       # a limit on a cardinality-one attribute changes nothing
            spec.limit = value
    elif opt is _K_DEFAULT:
        spec.default = value
    else:
        raise _bad(f"unknown attribute option {_describe(opt)}", element)


def _attr_spec(schema, x):
    """A spec from an attribute name, ``[attr opts...]`` or a legacy ``(limit ..)``."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise _bad("empty attribute expression", x)
        head = x[0]
        kind = _LEGACY.get(head) if isinstance(head, (Symbol, str)) else None
        if kind is not None:
            if len(x) != 3:
                raise _bad(f"({kind} attr value) takes exactly two arguments", x)
            spec = _resolve(schema, x[1], x)
            _apply_option(spec, _K_LIMIT if kind == "limit" else _K_DEFAULT, x[2], x)
            return spec
        spec = _resolve(schema, head, x)
        opts = x[1:]
        if not opts or len(opts) % 2:
            raise _bad("attribute options come in :option value pairs", x)
        for i in range(0, len(opts), 2):
            opt = _as_keyword(opts[i])
            _apply_option(spec, opt if opt is not None else opts[i], opts[i + 1], x)
        return spec
    return _resolve(schema, x, x)


def _compile(schema, data):
    if not isinstance(data, (list, tuple)) or isinstance(data, str):
        raise _bad("a pattern must be a vector", data)
    pat = _Pattern()
    for el in data:
        if isinstance(el, (Symbol, str)) and el in _WILD:
            pat.wildcard = True
        elif isinstance(el, dict):
            if not el:
                raise _bad("empty map spec", el)
            for k, v in el.items():
                spec = _attr_spec(schema, k)
                if not spec.ref:
                    raise _bad(f"{spec.name} is not a reference attribute, it takes no sub-pattern", el)
                if isinstance(v, (Symbol, str)) and v in _ELLIPSIS:
                    spec.rec = True
                elif type(v) is int:
                    if v < 0:
                        raise _bad("a recursion limit must be non-negative", el)
                    spec.rec, spec.rec_limit = True, v
                elif isinstance(v, (list, tuple)) and not isinstance(v, str):
                    spec.sub = _compile(schema, v)
                else:
                    raise _bad("a map spec value must be a pattern, ... or a recursion limit", el)
                pat.add(spec.finish())
        elif isinstance(el, (Keyword, str, list, tuple)):
            pat.add(_attr_spec(schema, el).finish())
        else:
            raise _bad("unexpected element", el)
    return pat.finish()


_CACHE: dict = {}
_CACHE_MAX = 512


def _parse_cache_size():
    return len(_CACHE)


def parse_pattern(db, pattern):
    """Compile ``pattern`` (EDN text or data) against ``db``'s schema.

    EDN text is cached per text and schema; Python data is compiled each time (it may
    be mutated by its owner between calls).
    """
    schema = db.schema
    if isinstance(pattern, str):
        hit = _CACHE.get(pattern)
        if hit is not None and hit[0] is schema:
            return hit[1]
        compiled = _compile(schema, loads(pattern))
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[pattern] = (schema, compiled)
        return compiled
    if isinstance(pattern, _Pattern):
        return pattern
    return _compile(schema, pattern)


# --- evaluation ------------------------------------------------------------------------

_WILD_SPECS: dict = {}


def _wild_spec(at):
    spec = _WILD_SPECS.get(at)
    if spec is None:
        if len(_WILD_SPECS) > 10000:
            _WILD_SPECS.clear()
        spec = _WILD_SPECS[at] = _Spec(at.ident, at).finish()
    return spec


def _ref(db, spec, pat, v, path, limits, chain):
    """The pulled value of one reference ``v`` reached through ``spec`` (None: drop it).

    ``path`` holds the entities from the root down (recursion's cycle check); ``chain`` the
    entities of the current run of component expansions, from the entity the enclosing
    pattern was applied to (their cycle check: a component reached again is ``{:db/id e}``).
    """
    if spec.rec:
        # Depth first (an exhausted depth yields nothing), then the cycle check.
        lim = limits.get(spec) if limits else None
        if lim is None:
            lim = spec.rec_limit
        if lim is not None:
            if lim <= 0:
                return None
            limits = dict(limits) if limits else {}
            limits[spec] = lim - 1
        if v in path:
            return {DB_ID: v}
        return _pull(db, pat, v, path | {v}, limits, frozenset((v,)))
    if spec.expand:
        if v in chain:
            return {DB_ID: v}
        return _pull(db, _WILDCARD, v, path | {v}, limits, chain | {v})
    if spec.sub is None:
        return {DB_ID: v}
    return _pull(db, spec.sub, v, path, limits, frozenset((v,)))


def _value(db, spec, pat, vs, path, limits, chain):
    if spec.many:
        if spec.limit is not None and len(vs) > spec.limit:
            vs = vs[:spec.limit]
        if not spec.ref:
            return vs
        out = []
        for v in vs:
            r = _ref(db, spec, pat, v, path, limits, chain)
            if r is not None:
                out.append(r)
        return out or None
    v = vs[-1]
    return _ref(db, spec, pat, v, path, limits, chain) if spec.ref else v


def _pull(db, pat, eid, path, limits, chain, vals=None):
    # ``vals`` ({attribute id: [values]}) when the caller has read the entity already
    result = {}
    if vals is None and (pat.wildcard or pat.by_aid):
        vals = {}
        scan = db.datoms("eavt", eid, pat.scan_aid) if pat.scan_aid is not None \
            else db.datoms("eavt", eid)
        cur = lst = None
        for d in scan:
            a = d.a
            if a != cur:
                cur = a
                lst = vals.get(a)
                if lst is None:
                    lst = vals[a] = []
            lst.append(d.v)
    if vals is None:
        vals = {}
    for spec in pat.fwd:
        if spec.is_id:
            result[spec.key] = eid
            continue
        vs = vals.get(spec.aid)
        r = _value(db, spec, pat, vs, path, limits, chain) if vs else None
        if r is not None:
            result[spec.key] = r
        elif spec.default is not _MISSING:
            result[spec.key] = spec.default
    if pat.wildcard:
        attrs = db.schema.attrs
        by_aid = pat.by_aid
        for a, vs in vals.items():
            if a in by_aid:
                continue
            at = attrs.get(a)
            if at is None:
                continue
            spec = _wild_spec(at)
            r = _value(db, spec, pat, vs, path, limits, chain)
            if r is not None:
                result[spec.key] = r
        if DB_ID not in result:
            result[DB_ID] = eid
    for spec in pat.rev:
        es = [d.e for d in db.datoms("vaet", eid, spec.aid)]
        r = _value(db, spec, pat, es, path, limits, chain) if es else None
        if r is None:
            if spec.default is not _MISSING:
                result[spec.key] = spec.default
            continue
        result[spec.key] = r
    return result or None


def pull(db, pattern, eid):
    """Pull ``pattern`` for the entity ``eid`` (id, ident or lookup ref): a dict or None.

    See the module docstring for the result conventions.
    """
    pat = parse_pattern(db, pattern)
    e = db.entid(eid)
    if e is None:
        return None
    root = frozenset((e,))
    return _pull(db, pat, e, root, None, root)


def pull_many(db, pattern, eids):
    """``[pull(db, pattern, e) for e in eids]``, compiling the pattern once."""
    pat = parse_pattern(db, pattern)
    out = []
    entid = db.entid
    # One EAVT scan for every entity, repositioned per entity (Scan.entity_values)
    # instead of a scan set up per entity; a filtered database reads as before.
    scan = db._scan(INDEX_EAVT, b"", None) if (pat.wildcard or pat.by_aid) else None
    if type(scan) is not Scan:
        scan = None
    a = pat.scan_aid
    flat = _flat_specs(pat) if scan is not None else None
    if flat is not None:
        # plain attributes only: the maps are built in C (Scan.entity_maps)
        es = [entid(eid) for eid in eids]
        got = iter(scan.entity_maps([e for e in es if e is not None], flat, _MISSING))
        return [None if e is None else next(got) for e in es]
    for eid in eids:
        e = entid(eid)
        if e is None:
            out.append(None)
            continue
        vals = None
        if scan is not None:
            if a is None:
                vals = scan.entity_values(encode_id(e), encode_id(e + 1))
            else:
                k = encode_id(e)
                vals = scan.entity_values(k + encode_id(a), k + encode_id(a + 1))
        root = frozenset((e,))
        out.append(_pull(db, pat, e, root, None, root, vals))
    return out


def _flat_specs(pat):
    # A pattern of plain attributes only (no refs, no reverse, no wildcard): each entity's
    # map is built straight from its values. ``None`` for any other pattern.
    if pat.wildcard or pat.rev:
        return None
    out = []
    for spec in pat.fwd:
        if spec.is_id:
            out.append((None, spec.key, False, None, _MISSING))
        elif spec.ref or spec.expand or spec.sub is not None or spec.rec:
            return None
        else:
            out.append((spec.aid, spec.key, spec.many, spec.limit, spec.default))
    return out
