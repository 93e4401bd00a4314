"""Datalog query evaluation: ``q(query, *inputs)`` and ``query({"query": ..., "args": [...]})``.

Evaluation follows DataScript's relational model: the context holds relations (a tuple
of variables plus a list of value tuples) over disjoint variable sets. Each ``:where``
clause, in written order, produces a relation over its own variables (using what the
context already binds to narrow index lookups); it is hash-joined with every context
relation sharing a variable, and kept apart (a deferred product) otherwise. The find
spec projects the final product.

>>> q('[:find ?x . :in [?x ...] :where [(> ?x 2)]]', [1, 2, 3])
3
"""

from __future__ import annotations

import importlib
import math
import operator
import random
import re
import statistics
import time

from fastdatomic._core.codec import (
    TYPE_KEYWORD, INDEX_EAVT, INDEX_AEVT, INDEX_AVET, encode_value, decode_value as _decode_value,
)
from fastdatomic._core.idset import IdSet, IdList
from fastdatomic._core.join import (
    hash_join, merge_join, product, semi_join, group_by, column, sort_on,
)
from fastdatomic._core.scan import Scan, extend_many
from fastdatomic.db.database import Database
from fastdatomic.errors import FastDatomicError
from fastdatomic.query.ast import (
    Variable, SrcVar, RulesVar, Placeholder, Constant, PlainSymbol, Pull, Aggregate,
    FindRel, FindColl, FindScalar, FindTuple, BindIgnore, BindScalar, BindTuple, BindColl,
    BindRel, Pattern, Predicate, Function, RuleExpr, Not, NotJoin, Or, OrJoin, And, free_vars,
    bound_vars, scopes,
)
from fastdatomic.query.parser import parse_query, parse_rules
from fastdatomic.query.planner import choose_next, needs
from fastdatomic.query import rules as _rules
from fastdatomic.query import ranges as _ranges
from fastdatomic.types import Keyword, Symbol

__all__ = ["q", "query", "register_query_fn", "register_aggregate", "QueryError",
           "QueryTimeoutError"]


class QueryError(FastDatomicError):
    """A query that cannot be evaluated (unknown attribute or function, bad input, ...)."""

    kind = "query/error"


class QueryTimeoutError(QueryError, TimeoutError):
    """The query ran past its ``:timeout`` (milliseconds)."""

    kind = "query/timeout"


DOLLAR = SrcVar(Symbol("$"))
_PLACE = Placeholder()
_FIELDS = ("e", "a", "v", "tx", "added")
PROBE_SMALL = 64      # always look up per value when a bound var has at most this many values
PROBE_RATIO = 200     # else look up per value when values * ratio < datoms of the attribute
                      # (a lookup costs about what scanning 200 keys in C does)


def _err(msg, clause=None, **data):
    if clause is not None:
        data["clause"] = clause.to_edn()
        msg = f"{msg} in clause {clause.to_edn()}"
    return QueryError(msg, data=data)


# --- relations -----------------------------------------------------------------------------

class Rel:
    # ``subset_of`` = (var, rel): every value of ``var`` here is one of ``rel``'s (the
    # scan kept only those entities), so joining with ``rel`` when it binds ``var``
    # alone changes nothing and is skipped.
    # ``sorted_on``: the variable whose (int) values ascend down the rows, as they come
    # out of an AEVT / EAVT scan; two such relations join by merging.
    # ``absorbs``: a relation this one already holds joined in (scan.extend_many): it takes
    # that relation's place.
    __slots__ = ("vars", "rows", "subset_of", "sorted_on", "absorbs")

    def __init__(self, vars_, rows):
        self.vars = tuple(vars_)
        self.rows = rows
        self.subset_of = None
        self.sorted_on = None
        self.absorbs = None

    def __repr__(self):
        return f"Rel({[str(v) for v in self.vars]}, {len(self.rows)} rows)"


_UNIT = ((),)


def _getter(idxs):
    if len(idxs) == 1:
        i = idxs[0]
        return lambda r: (r[i],)
    return operator.itemgetter(*idxs)


def _project(rel, vars_):
    """Distinct rows of ``rel`` over ``vars_`` (all in rel)."""
    if tuple(vars_) == rel.vars:
        return Rel(vars_, list(dict.fromkeys(rel.rows)))
    if not vars_:
        return Rel((), [()] if rel.rows else [])
    g = _getter([rel.vars.index(v) for v in vars_])
    return Rel(vars_, list(dict.fromkeys(map(g, rel.rows))))


class Ctx:
    """One evaluation scope: relations, sources, rules, deadline."""

    __slots__ = ("rels", "sources", "rules", "deadline", "tables", "counts", "ticks",
                 "ranges", "satisfied", "remaining", "keep", "fused")

    def __init__(self, sources, rules, deadline, tables=None, counts=None):
        self.rels = []
        self.sources = sources
        self.rules = rules
        self.deadline = deadline
        self.tables = tables
        self.counts = {} if counts is None else counts
        self.ticks = 0
        # comparison bounds per variable that a scan may apply (query/ranges.py), and
        # the predicate clauses a scan has already made true of every row
        self.ranges = {}
        self.satisfied = set()
        # the clauses still to run and the variables the find needs (top level only):
        # a pattern leaves out a variable nothing later reads
        self.remaining = None
        self.keep = None
        # the later patterns a pattern joined in its own walk (_companions), for explain
        self.fused = []

    def child(self, sources=None):
        c = Ctx(self.sources if sources is None else sources, self.rules, self.deadline,
                self.tables, self.counts)
        return c

    def check(self):
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise QueryTimeoutError("query timed out (:timeout exceeded)")

    def bound(self):
        return {v for r in self.rels for v in r.vars}

    def rel_of(self, var):
        for r in self.rels:
            if var in r.vars:
                return r
        return None

    def values_of(self, var):
        r = self.rel_of(var)
        i = r.vars.index(var)
        return {row[i] for row in r.rows}

    def add(self, rel):
        if rel.absorbs is not None:
            old, rel.absorbs = rel.absorbs, None
            self.rels = [rel if r is old else r for r in self.rels]
            return
        keep = []
        for r in self.rels:
            if set(r.vars) & set(rel.vars):
                rel = self.join(r, rel)
            else:
                keep.append(r)
        keep.append(rel)
        self.rels = keep

    def take(self, vars_):
        """Remove and return (joined) the relations holding any of ``vars_``."""
        vs = set(vars_)
        out = Rel((), [()])
        keep = []
        for r in self.rels:
            if vs & set(r.vars):
                out = self.join(out, r)
            else:
                keep.append(r)
        self.rels = keep
        return out

    def join(self, a, b):
        if b.subset_of is not None and b.subset_of[1] is a and a.vars == (b.subset_of[0],):
            return b
        shared = [v for v in a.vars if v in b.vars]
        if not a.rows or not b.rows:
            return Rel(a.vars + tuple(v for v in b.vars if v not in a.vars), [])
        if not a.vars:
            return b
        if not b.vars:
            return a
        if not shared:
            if len(a.rows) * len(b.rows) > 100_000:
                self.check()
            return Rel(a.vars + b.vars, product(a.rows, b.rows, self.check))
        if len(shared) == 1 and a.sorted_on == shared[0] == b.sorted_on:
            v = shared[0]
            rest = tuple(i for i, x in enumerate(b.vars) if x != v)
            rows = merge_join(a.rows, a.vars.index(v), b.rows, b.vars.index(v), rest,
                              self.check if self.deadline is not None else None)
            if rows is not None:
                out = Rel(a.vars + tuple(b.vars[i] for i in rest), rows)
                out.sorted_on = v
                return out
        if len(a.rows) > len(b.rows):
            a, b = b, a
        rest = tuple(i for i, v in enumerate(b.vars) if v not in shared)
        rows = hash_join(a.rows, tuple(a.vars.index(v) for v in shared),
                         b.rows, tuple(b.vars.index(v) for v in shared), rest,
                         self.check if self.deadline is not None else None)
        return Rel(a.vars + tuple(b.vars[i] for i in rest), rows)

    def result(self, vars_):
        """The product of all relations projected on ``vars_`` (as a list, may repeat)."""
        if len(self.rels) == 1 and self.rels[0].vars == tuple(vars_):
            return self.rels[0]
        rel = Rel((), [()])
        need = set(vars_)
        for r in self.rels:
            if need & set(r.vars):
                rel = self.join(rel, r)
            elif not r.rows:
                return Rel(vars_, [])
        if not vars_:
            return Rel(vars_, [() for _ in rel.rows])
        if rel.vars == tuple(vars_):
            return rel      # (an input bound alone, no longer needed, was left aside)
        return Rel(vars_, list(map(_getter([rel.vars.index(v) for v in vars_]), rel.rows)))


# --- sources and constants ------------------------------------------------------------------

def _is_db(x):
    return isinstance(x, Database)


def _src(ctx, source, clause):
    s = source or DOLLAR
    try:
        return ctx.sources[s]
    except KeyError:
        raise _err(f"no source {s.symbol} given", clause) from None


def _kwish(x):
    if type(x) is str and x.startswith(":") and len(x) > 1:
        return Keyword(x)
    return x


_MISSING = object()


def _resolve_e(db, x):
    if type(x) is int:
        return x
    try:
        return db.entid(_kwish(x) if not isinstance(x, (list, tuple)) else [_kwish(x[0]), x[1]])
    except TypeError:
        return None


def _coerce_v(db, attr, x):
    """A query value for attribute ``attr`` in stored form (``_MISSING``: matches nothing)."""
    if attr is None:
        return x
    if attr.is_ref:
        if type(x) is int:
            return x
        e = _resolve_e(db, x)
        return _MISSING if e is None else e
    if type(x) is str and attr.vtype is not None and attr.ident is not None:
        if attr.vtype == TYPE_KEYWORD:
            return _kwish(x)
    return x


# --- data patterns ----------------------------------------------------------------------------

def _pattern(ctx, clause):
    src = _src(ctx, clause.source, clause)
    if _is_db(src):
        return _pattern_db(ctx, clause, src)
    return _pattern_coll(ctx, clause, src)


def _out_spec(elems):
    """(output vars, their positions, equality constraints for repeated vars)."""
    out_vars, pos, eqs = [], [], []
    for i, el in enumerate(elems):
        if type(el) is Variable:
            if el in out_vars:
                eqs.append((pos[out_vars.index(el)], i))
            else:
                out_vars.append(el)
                pos.append(i)
    return out_vars, pos, eqs


def _pattern_coll(ctx, clause, coll):
    elems = clause.elements
    n = len(elems)
    out_vars, pos, eqs = _out_spec(elems)
    consts = [(i, el.value) for i, el in enumerate(elems) if type(el) is Constant]
    g = _getter(pos) if pos else (lambda r: ())
    rows = []
    for t in coll:
        if len(t) < n:
            continue
        if any(t[i] != c for i, c in consts):
            continue
        if any(t[i] != t[j] for i, j in eqs):
            continue
        rows.append(tuple(g(t)))
    return Rel(out_vars, rows)


def _attr_count(ctx, db, attr):
    key = (id(db), attr.id)
    n = ctx.counts.get(key)
    if n is None:
        n = ctx.counts[key] = db.estimate("aevt", attr.id)   # tree counts: no scan
    return n


def _pattern_db(ctx, clause, db):
    """The relation of a data pattern on database ``db``: choose how to read (index,
    probes, byte-level filters), then read the rows and finish the relation."""
    elems = clause.elements + (_PLACE,) * (5 - len(clause.elements))
    e, a, v, tx, added = elems
    bound = ctx.bound()
    attr, cvals = _stored_constants(clause, db, elems)
    if cvals is None:                  # a constant no datom can have
        return Rel(_out_spec(elems)[0], [])
    out_vars, pos, eqs = _out_spec(elems)
    filters = [(_FIELDS[i], x) for i, x in cvals.items()]
    fields = [_FIELDS[i] for i in pos]

    # How to read: first the index and what to look up in it, then the filters the
    # scan applies to key bytes, then the datom streams themselves.
    e_rel, e_ids = _entity_binding(ctx, elems, attr, cvals, eqs, bound)
    plan = _choose_plan(ctx, db, elems, attr, cvals, bound, e_rel, e_ids)
    sel, vrange = _scan_filters(ctx, v, attr, cvals, plan, e_ids, bound)
    streams, datoms_index, renamed = _open_streams(db, attr, cvals, plan, sel, vrange,
                                                    e_rel)
    filters, c_ok = _residual_filters(filters, sel, eqs, plan, attr)
    c_all = c_ok and all(type(x) is Scan for x in streams)
    if c_all and ctx.remaining is not None:
        out_vars, fields = _drop_unread(ctx, out_vars, fields, vrange, bound)

    # Reading: two special cases, then rows straight from the scans (or datom by datom).
    if e_rel is not None and c_all and datoms_index == INDEX_AEVT and (
            2 not in cvals or "v_eq" in sel):
        rel = _extend_sorted(ctx, clause, db, e, e_rel, streams[0], out_vars, fields, sel,
                             vrange)
        if rel is not None:
            return rel
        # not ascending ints after all: read the pattern as usual
        streams = [db.datoms("aevt", attr.id)]
        e_ids = IdSet.of_column(e_rel.rows, e_rel.vars.index(e))
        if e_ids is not None:
            sel["e_in"] = e_ids
    field_idx = [_FIELDS.index(f) for f in fields]
    if c_all and plan is None and out_vars == [e] and datoms_index == INDEX_AVET and \
            _joined_later(ctx, e):
        return _entities_in_order(ctx, e, streams[0], field_idx, sel, vrange)
    rows, all_scans = _read_rows(ctx, streams, renamed, fields, field_idx, sel, filters,
                                 eqs, cvals, c_ok)
    if all_scans and c_ok:
        _satisfied(ctx, vrange)
    return _finish_rel(ctx, e, out_vars, rows, sel, c_all, renamed, plan, datoms_index,
                       e_ids)


def _stored_constants(clause, db, elems):
    """``(attr, cvals)``: the pattern's attribute (None unless a constant) and its
    constants in stored form, ``{position: value}``; ``cvals`` is None when a constant
    can match nothing (an entity that does not exist, a value not of the attribute, a
    false ``added`` outside a history database)."""
    a = elems[1]
    attr = None
    if type(a) is Constant:
        try:
            attr = db.attribute(_kwish(a.value))
        except (KeyError, TypeError, FastDatomicError):
            raise _err(f"unknown attribute {a.value}", clause, attribute=a.value) from None
    cvals = {}
    for i, el in enumerate(elems):
        if type(el) is not Constant:
            continue
        x = el.value
        if i == 0 or i == 3:
            x = _resolve_e(db, x)
            if x is None:
                return attr, None
        elif i == 1:
            x = attr.id
        elif i == 2:
            x = _coerce_v(db, attr, x)
            if x is _MISSING:
                return attr, None
        cvals[i] = x
    if 4 in cvals and not db.is_history and cvals[4] is not True:
        return attr, None
    return attr, cvals


def _entity_binding(ctx, elems, attr, cvals, eqs, bound):
    """``(e_rel, e_ids)`` for a ?e the context already binds: ``e_rel`` the relation
    binding ?e when it is sorted on ?e and the pattern can extend it in one walk
    (``extend_many``), else ``e_ids`` the entities ?e is bound to, as a C set (None: not
    bound, or not all int ids)."""
    e = elems[0]
    if type(e) is not Variable or e not in bound:
        return None, None
    r = ctx.rel_of(e)
    if r.sorted_on == e and attr is not None and not eqs and 3 not in cvals \
            and 4 not in cvals and not any(type(x) is Variable and x != e and x in bound
                                           for x in elems):
        # (a value already bound is a join on two columns: the hash join's job)
        return r, None
    return None, IdSet.of_column(r.rows, r.vars.index(e))


def _probe_values(ctx, db, attr, bound, el, i, e_rel, e_ids):
    """The values of ``el`` (at position ``i``) to look up one by one, when it is a
    variable the context binds to few values compared with the attribute's datoms;
    else None (the pattern is scanned instead)."""
    if type(el) is not Variable or el not in bound:
        return None
    if i == 0 and e_rel is not None:
        return None            # joined by walking the sorted relation instead
    if i == 0 and e_ids is not None:
        n = len(e_ids)
        if n <= PROBE_SMALL or (attr is not None and
                                n * PROBE_RATIO < _attr_count(ctx, db, attr)):
            return e_ids.sorted()      # probed in order: rows come out sorted on ?e
        return None
    vals = ctx.values_of(el)
    if len(vals) <= PROBE_SMALL:
        return vals
    if attr is not None and len(vals) * PROBE_RATIO < _attr_count(ctx, db, attr):
        return vals
    return None


def _choose_plan(ctx, db, elems, attr, cvals, bound, e_rel, e_ids):
    """The index lookups: ``(index, position looked up, values)``, or None to scan (one
    attribute's AEVT, an AVET value range, or all of EAVT; see ``_open_streams``).

    `known` = a constant; `probe` = a var bound in the context whose values we look up
    one by one (when few compared with the attribute's datoms).
      e known               -> EAVT [e a? v?]
      a known, v known, AVET-indexed attr -> AVET [a v]
      v known, ref attr (or a unknown and v an entity) -> VAET [v a?]
      a known               -> AEVT [a]      (then filter v / tx)
      nothing known         -> EAVT full scan (then filter)
    """
    e, a, v = elems[0], elems[1], elems[2]
    if 0 in cvals:
        return ("eavt", 0, [cvals[0]])
    vals = _probe_values(ctx, db, attr, bound, e, 0, e_rel, e_ids)
    if vals is not None:
        return ("eavt", 0, vals)
    if attr is not None and (attr.indexed or attr.is_ref):
        index = "avet" if attr.indexed else "vaet"
        if 2 in cvals:
            return (index, 2, [cvals[2]])
        vals = _probe_values(ctx, db, attr, bound, v, 2, e_rel, e_ids)
        if vals is not None:
            return (index, 2, vals)
    if attr is None and type(a) is Variable and a in bound:
        vals = ctx.values_of(a)
        if len(vals) <= PROBE_SMALL:
            return ("aevt", 1, vals)
    return None


def _scan_filters(ctx, v, attr, cvals, plan, e_ids, bound):
    """``(sel, vrange)``: the filters the scan applies to key bytes, before decoding
    (``Scan.select`` keywords), and the encoded value range from ``ctx.ranges`` (or None):
      e_in   entities already bound (a semi-join instead of decoding every datom)
      v_eq   a constant value of a scanned attribute
      range  comparison predicates on the value variable (query/ranges.py)
    """
    sel = {}
    vrange = None
    if plan is None and attr is not None:
        if e_ids is not None:
            sel["e_in"] = e_ids
        if 2 in cvals:
            enc = _encoded_const(attr, cvals[2])
            if enc is not None:
                sel["v_eq"] = enc
    if attr is not None and type(v) is Variable and v not in bound and v in ctx.ranges:
        vrange = _ranges.encoded_range(ctx.ranges[v], attr.vtype)
        if vrange is not None:
            lo, lo_incl, hi, hi_incl, _ = vrange
            sel.update(v_lo=lo, lo_incl=lo_incl, v_hi=hi, hi_incl=hi_incl)
    return sel, vrange


def _open_streams(db, attr, cvals, plan, sel, vrange, e_rel):
    """``(streams, datoms_index, renamed)``: the datom streams to read (one per probed
    value, or the one scan without a plan), ``datoms_index`` the index of that one scan
    (``INDEX_*``; None when probing), and ``renamed``: stream number -> the bound value
    its entity id was resolved from."""
    renamed = {}
    if plan is None:
        if vrange is not None and attr.indexed and "e_in" not in sel and e_rel is None:
            scan = db.encoded_value_range(attr.id, vrange[0], vrange[2])
            return [scan], INDEX_AVET, renamed
        if attr is not None:
            return [db.datoms("aevt", attr.id)], INDEX_AEVT, renamed
        return [db.datoms("eavt")], INDEX_EAVT, renamed
    index, p, vals = plan
    streams = []
    for x in vals:
        if p == 0:
            given = x
            x = _resolve_e(db, x)
            if x is None:
                continue
            if x is not given and x != given:
                # ?e is bound to an ident or lookup ref: rows must carry that value
                # to join with the relation that bound it
                renamed[len(streams)] = given
            comps = (x,) if attr is None else (x, attr.id)
            if attr is not None and 2 in cvals:
                comps = (x, attr.id, cvals[2])
        elif p == 2:
            x = _coerce_v(db, attr, x)
            if x is _MISSING:
                continue
            comps = (attr.id, x) if index == "avet" else (x, attr.id)
        else:  # attribute probe
            try:
                x = db.attribute(x).id
            except (KeyError, TypeError, FastDatomicError):
                continue
            comps = (x,)
        try:
            streams.append(db.datoms(index, *comps))
        except (FastDatomicError, TypeError, ValueError, OverflowError):
            continue  # a value that cannot be in this index matches nothing
    return streams, None, renamed


def _residual_filters(filters, sel, eqs, plan, attr):
    """``(filters, c_ok)``: the constant filters left to check on decoded datoms (less a
    value the scan compares as bytes), and whether the C scan does every check itself
    (what it cannot check: tx / added constants, repeated variables)."""
    if "v_eq" in sel:
        filters = [(f, x) for f, x in filters if f != "v"]
    v_in_prefix = plan is not None and (plan[0] in ("avet", "vaet") or
                                        (plan[0] == "eavt" and attr is not None))
    c_ok = not eqs and all(f == "e" or f == "a" or (f == "v" and v_in_prefix)
                           for f, _ in filters)
    return filters, c_ok


def _read_later(ctx, skip, ranges):
    """The variables the find spec or a clause still to run reads, leaving out the
    clauses ``skip`` (ids) and the predicates the scans' ``ranges`` apply (and those
    already satisfied): what a pattern must keep in its rows."""
    done = set(skip)
    for r in ranges:
        if r is not None:
            done.update(id(b.clause) for b in r[4])
    later = set(ctx.keep)
    for c in ctx.remaining:
        if id(c) not in done and id(c) not in ctx.satisfied:
            later |= free_vars(c)
    return later


def _drop_unread(ctx, out_vars, fields, vrange, bound):
    """``(out_vars, fields)`` less a new variable that no later clause and no find
    element reads (results are sets over the find variables, so the rows lost are
    duplicates); never all of them."""
    later = _read_later(ctx, (), (vrange,))
    drop = [i for i, x in enumerate(out_vars) if x not in later and x not in bound]
    if drop and len(drop) < len(out_vars):
        out_vars = [x for i, x in enumerate(out_vars) if i not in drop]
        fields = [f for i, f in enumerate(fields) if i not in drop]
    return out_vars, fields


def _read_rows(ctx, streams, renamed, fields, field_idx, sel, filters, eqs, cvals, c_ok):
    """``(rows, all_scans)``: the ``fields`` of every stream's datoms, stream after
    stream, straight from the C scan when it checks everything itself, else datom by
    datom in Python; ``all_scans``: every stream was read by the C scan. (May move the
    ``v_eq`` byte filter of ``sel`` back into ``filters``.)"""
    rows = []
    check = ctx.check
    n = 0
    get = operator.attrgetter(*fields) if fields else None
    single = len(fields) == 1
    all_scans = True
    e_col = fields.index("e") if "e" in fields else None
    for si, datoms in enumerate(streams):
        if si in renamed and e_col is not None:
            given, start = renamed[si], len(rows)
        else:
            given = start = None
        if type(datoms) is Scan and c_ok:
            # The common case: rows straight from the C scan, in chunks (timeout checks).
            # Constant e / a / v of a probe are in the scan's key prefix already.
            while not datoms.done:
                rows.extend(datoms.select(field_idx, -1, budget=65536, **sel))
                check()
        else:
            all_scans = False
            if "v_eq" in sel:   # not applied by a scan: filter on the value as before
                filters.append(("v", cvals[2]))
                del sel["v_eq"]
            n = _datom_rows(datoms, rows, get, single, filters, eqs, check, n)
        if given is not None:
            rows[start:] = [r[:e_col] + (given,) + r[e_col + 1:] for r in rows[start:]]
    return rows, all_scans


def _datom_rows(datoms, rows, get, single, filters, eqs, check, n):
    """The Python fallback: appends to ``rows`` the row ``get`` makes of each datom that
    passes ``filters`` and the repeated-variable equalities ``eqs``; ``n`` counts datoms
    across streams (a timeout check every 8192), returned updated."""
    for d in datoms:
        n += 1
        if not (n & 0x1FFF):
            check()
        if filters:
            ok = True
            for f, x in filters:
                if getattr(d, f) != x:
                    ok = False
                    break
            if not ok:
                continue
        if get is None:
            row = ()
        elif single:
            row = (get(d),)
        else:
            row = get(d)
        if eqs:
            full = (d.e, d.a, d.v, d.tx, d.added)
            if any(full[i] != full[j] for i, j in eqs):
                continue
        rows.append(row)
    return n


def _finish_rel(ctx, e, out_vars, rows, sel, c_all, renamed, plan, datoms_index, e_ids):
    """The pattern's relation, marked with what later joins may use: ``subset_of`` (a
    semi-join on ?e already done) and ``sorted_on`` ?e (by index order, or sorted here
    when a later pattern joins on ?e)."""
    if not out_vars:
        rows = [()] if rows else []
    rel = Rel(out_vars, rows)
    if "e_in" in sel and c_all:
        rel.subset_of = (e, ctx.rel_of(e))
    if type(e) is Variable and e in out_vars and not renamed and (
            (plan is None and datoms_index in (INDEX_EAVT, INDEX_AEVT)) or
            (plan is not None and plan[0] == "eavt" and e_ids is not None) or
            (plan is not None and plan[0] in ("avet", "vaet") and len(plan[2]) == 1)):
        # one attribute's AEVT, EAVT probed in entity order, or one value's AVET/VAET
        rel.sorted_on = e
    elif type(e) is Variable and e in out_vars and len(rows) > 1 and _joined_later(ctx, e):
        # Rows out of another index (say, an AVET range): put in entity order (a
        # radix sort of the same tuples), later patterns on ?e join them by a walk.
        ordered = sort_on(rows, out_vars.index(e), len(out_vars) == 1)
        if ordered is not None:
            rel.rows = ordered
            rel.sorted_on = e
    return rel


def _satisfied(ctx, vrange):
    # The scan applied these comparisons: every value of the (newly bound) variable
    # satisfies them, so their predicate clauses need not run.
    if vrange is not None:
        ctx.satisfied.update(id(b.clause) for b in vrange[4])


def _extend_sorted(ctx, clause, db, e, e_rel, scan, out_vars, fields, sel, vrange):
    """?e's relation is in entity order, like the pattern's AEVT scan: its rows extended
    in one walk (``extend_many``), taking its place, together with the later patterns
    ``_companions`` finds; None when its ?e values are not ascending ints after all."""
    rest = [(x, f) for x, f in zip(out_vars, fields) if x != e]
    specs = [(scan, [_FIELDS.index(f) for _, f in rest], sel.get("v_eq"), sel.get("v_lo"),
              sel.get("lo_incl", True), sel.get("v_hi"), sel.get("hi_incl", True))]
    new_vars = [x for x, _ in rest]
    fused = _companions(ctx, clause, db, e, set(e_rel.vars) | set(new_vars), vrange)
    for c, cscan, x, vr in fused:
        if x is not None:
            new_vars.append(x)
        lo, lo_incl, hi, hi_incl = vr[:4] if vr is not None else (None, True, None, True)
        specs.append((cscan, (2,) if x is not None else (), None, lo, lo_incl, hi, hi_incl))
    joined = extend_many(e_rel.rows, e_rel.vars.index(e), specs, ctx.check)
    if joined is None:
        return None
    for c, _, _, vr in fused:
        ctx.remaining.remove(c)
        ctx.fused.append(c)
        _satisfied(ctx, vr)
    _satisfied(ctx, vrange)
    rel = Rel(e_rel.vars + tuple(new_vars), joined)
    rel.sorted_on = e
    rel.absorbs = e_rel
    return rel


def _companions(ctx, clause, db, e, taken, vrange):
    """The later patterns ``[?e :attr ?x]`` (or ``[?e :attr _]``) on ``clause``'s source
    that only add a fresh variable to each ?e, or keep the ?e whose value is in a range
    (``[(> ?x 5)]``, query/ranges.py): the walk that joins ``clause`` joins them too, so
    each row is built once, not once per pattern (the result is the same in any order).
    ``[(c, its AEVT scan, ?x or None, its encoded range or None)]``; ``?x`` left out when
    nothing else reads it. ``vrange``: the range ``clause``'s own scan applies."""
    found = []
    if not ctx.remaining:
        return found
    for c in ctx.remaining:
        if type(c) is not Pattern or c.source != clause.source or len(c.elements) != 3:
            continue
        ce, ca, cv = c.elements
        if ce != e or type(ca) is not Constant or \
                type(cv) not in (Variable, Placeholder) or cv in taken:
            continue
        try:
            attr = db.attribute(_kwish(ca.value))
        except (KeyError, TypeError, FastDatomicError):
            continue                   # the pattern's own run reports it
        vr = None
        if type(cv) is Variable and cv in ctx.ranges:
            vr = _ranges.encoded_range(ctx.ranges[cv], attr.vtype)
            if vr is None:
                continue               # compared as values, by its predicate
        scan = db.datoms("aevt", attr.id)
        if type(scan) is not Scan:
            continue                   # a filtered database: read datom by datom
        if type(cv) is Variable:
            taken.add(cv)
        found.append((c, scan, cv if type(cv) is Variable else None, vr))
        if len(found) == 15:
            break
    if found:
        # a fresh variable no other clause and no find element reads is left out (the
        # predicates the scans apply do not count)
        later = _read_later(ctx, [id(f[0]) for f in found], [vrange] + [f[3] for f in found])
        found = [(c, sc, x if x in later else None, vr) for c, sc, x, vr in found]
    return found


def _entities_in_order(ctx, e, scan, field_idx, sel, vrange):
    """Entities alone out of AVET (a value range), to be joined on ?e: the ids collected
    in C and made into the relation once, in entity order."""
    ids = IdList()
    while not scan.done:
        scan.select(field_idx, -1, budget=65536, ids_out=ids, **sel)
        ctx.check()
    _satisfied(ctx, vrange)
    rel = Rel([e], ids.sorted_rows())
    rel.sorted_on = e
    return rel


def _joined_later(ctx, var):
    # a pattern still to run reads ``var`` (top level only: children do not know)
    return bool(ctx.remaining) and any(type(c) is Pattern and var in free_vars(c)
                                       for c in ctx.remaining)


def _encoded_const(attr, x):
    """The encoded form of constant ``x`` of ``attr``'s type when comparing encoded bytes
    means the same as ``==`` on values (same Python type both ways), else None."""
    if attr.vtype is None or attr.is_ref:
        return None
    try:
        enc = encode_value(attr.vtype, x)
    except Exception:   # noqa: BLE001 - a value of another type: compare as values
        return None
    back = _decode_value(enc)
    return enc if type(back) is type(x) and back == x else None


# --- functions and predicates -----------------------------------------------------------------

def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) or type(x).__name__ in ("Decimal", "Fraction")


def _rank(x):
    if x is None:
        return 0
    if isinstance(x, bool):
        return 1
    if _num(x):
        return 2
    return 3


def compare(a, b):
    """Clojure-ish ``compare``: nil first, numbers numerically, else same-type order."""
    if a is None or b is None or type(a) is bool or type(b) is bool or not (_num(a) and _num(b)):
        ra, rb = _rank(a), _rank(b)
        if ra != rb:
            return -1 if ra < rb else 1
        if ra == 0:
            return 0
        if ra == 3 and type(a) is not type(b):
            ta, tb = type(a).__name__, type(b).__name__
            return -1 if ta < tb else (1 if ta > tb else 0)
    try:
        return -1 if a < b else (1 if a > b else 0)
    except TypeError:
        ta, tb = type(a).__name__, type(b).__name__
        return -1 if ta < tb else (1 if ta > tb else 0)


class _SortKey:
    __slots__ = ("x",)

    def __init__(self, x):
        self.x = x

    def __lt__(self, other):
        return compare(self.x, other.x) < 0

    def __eq__(self, other):
        return compare(self.x, other.x) == 0


def _chain(test):
    def f(*xs):
        return all(test(compare(xs[i], xs[i + 1])) for i in range(len(xs) - 1))
    return f


def _eq(*xs):
    a = xs[0]
    return all((type(a) is bool) == (type(x) is bool) and a == x for x in xs[1:])


def _str(*xs):
    return "".join("" if x is None else (str(x).lower() if type(x) is bool else str(x)) for x in xs)


def _re(p):
    """``p`` as a compiled regex: a ``#"..."`` pattern as is, a string compiled (``re-pattern``).

    >>> _re("a+").pattern, _re(_re("a+")).pattern
    ('a+', 'a+')
    """
    if type(p) is re.Pattern:
        return p
    from fastdatomic.edn import compile_regex  # Java's (?<name>..) and a clear error
    return compile_regex(p)


def _re_result(m):
    """Clojure's shape of a match: the matched text, or ``(whole g1 g2 ...)`` when the
    regex has groups (an unmatched group is nil); nil for no match.

    >>> _re_result(re.search("b(.)", "abc")), _re_result(re.search("b", "abc"))
    (('bc', 'c'), 'b')
    """
    if m is None:
        return None
    if m.re.groups:
        return (m.group(0),) + m.groups()
    return m.group(0)


def _re_seq(p, s):
    """Clojure's ``re-seq``: every match of ``p`` in ``s`` in order, nil when none."""
    return tuple(_re_result(m) for m in _re(p).finditer(s)) or None


def _quot(a, b):
    if isinstance(a, int) and isinstance(b, int):
        qq = abs(a) // abs(b)
        return qq if (a >= 0) == (b >= 0) else -qq
    return float(math.trunc(a / b))


def _rem(a, b):
    return a - b * _quot(a, b)


def _div(a, *bs):
    if not bs:
        a, bs = 1, (a,)
    for b in bs:
        if isinstance(a, int) and isinstance(b, int) and a % b == 0:
            a = a // b
        else:
            a = a / b
    return a


def _minus(a, *bs):
    if not bs:
        return -a
    for b in bs:
        a = a - b
    return a


def _mul(*xs):
    out = 1
    for x in xs:
        out = out * x
    return out


def _get_else(db, e, a, default):
    if default is None:
        raise QueryError("get-else: nil is not a valid default")
    attr = db.attribute(_kwish(a))
    if attr.many:
        raise QueryError(f"get-else: {attr.ident} is cardinality many")
    for d in db.datoms("eavt", e, attr.id):
        return d.v
    return default


def _get_some(db, e, *attrs):
    for a in attrs:
        attr = db.attribute(_kwish(a))
        for d in db.datoms("eavt", e, attr.id):
            return (attr.id, d.v)
    return None


def _missing(db, e, a):
    attr = db.attribute(_kwish(a))
    return next(iter(db.datoms("eavt", e, attr.id)), None) is None


def _tx_ids(log, t1, t2):
    return [tx["data"][0].tx for tx in log.tx_range(t1, t2) if tx["data"]]


def _tx_data(log, tx):
    out = []
    for r in log.tx_range(tx, tx + 1 if tx < (1 << 42) else tx + 1):
        out.extend((d.e, d.a, d.v, d.tx, d.added) for d in r["data"])
    return out


BUILTINS = {
    "=": _eq, "==": _eq, "not=": lambda *xs: not _eq(*xs), "!=": lambda *xs: not _eq(*xs),
    "<": _chain(lambda c: c < 0), ">": _chain(lambda c: c > 0),
    "<=": _chain(lambda c: c <= 0), ">=": _chain(lambda c: c >= 0),
    "zero?": lambda x: x == 0, "pos?": lambda x: x > 0, "neg?": lambda x: x < 0,
    "even?": lambda x: x % 2 == 0, "odd?": lambda x: x % 2 == 1,
    "nil?": lambda x: x is None, "some?": lambda x: x is not None,
    "str": _str, "subs": lambda s, i, j=None: s[i:j] if j is not None else s[i:],
    "re-find": lambda p, s: _re_result(_re(p).search(s)),
    "re-matches": lambda p, s: _re_result(_re(p).fullmatch(s)),
    "re-seq": _re_seq,
    "re-pattern": _re,
    "+": lambda *xs: sum(xs), "-": _minus, "*": _mul, "/": _div,
    "quot": _quot, "rem": _rem, "mod": lambda a, b: a % b,
    "inc": lambda x: x + 1, "dec": lambda x: x - 1,
    "max": lambda *xs: max(xs, key=_SortKey), "min": lambda *xs: min(xs, key=_SortKey),
    "identity": lambda x: x, "count": lambda x: len(x), "ground": lambda x: x,
    "get-else": _get_else, "get-some": _get_some, "missing?": _missing,
    "tuple": lambda *xs: tuple(xs), "untuple": lambda t: tuple(t),
    "tx-ids": _tx_ids, "tx-data": _tx_data,
    "vector": lambda *xs: list(xs), "list": lambda *xs: list(xs),
    "starts-with?": lambda s, p: s.startswith(p), "ends-with?": lambda s, p: s.endswith(p),
    "includes?": lambda s, p: p in s, "upper-case": lambda s: s.upper(),
    "lower-case": lambda s: s.lower(), "true?": lambda x: x is True, "false?": lambda x: x is False,
    "not": lambda x: x is None or x is False, "contains?": lambda c, k: k in c,
}
_USER_FNS: dict = {}


def register_query_fn(name, fn):
    """Make ``fn`` callable in query predicates and function clauses as ``name``."""
    _USER_FNS[str(name)] = fn
    return fn


def _lookup_fn(sym, clause, table=None):
    name = sym.full_name if isinstance(sym, Symbol) else str(sym)
    for t in (_USER_FNS, table or BUILTINS):
        if name in t:
            return t[name]
    short = name
    if "/" in name:
        ns, short = name.rsplit("/", 1)
        if ns in ("clojure.core", "clojure.string", "datomic.api") and short in (table or BUILTINS):
            return (table or BUILTINS)[short]
        try:
            mod = importlib.import_module(ns)
            fn = getattr(mod, short)
            if callable(fn):
                return fn
        except (ImportError, AttributeError, ValueError):
            pass
    raise _err(f"unknown function {name}", clause, function=name)


def _is_builtin(sym):
    # True when ``sym`` names the built-in function (no user function shadows it).
    try:
        return _lookup_fn(sym, None) is BUILTINS.get(sym.full_name)
    except QueryError:
        return False


def _fn_of(ctx, clause, row_get):
    f = clause.fn
    if type(f) is Variable:
        return None  # per row
    return _lookup_fn(f.symbol, clause)


def _fn_rows(ctx, clause):
    """Base relation (holding all arg vars) and a per-row callable giving the call's result."""
    arg_vars = [a for a in clause.args if type(a) is Variable]
    if type(clause.fn) is Variable:
        arg_vars.append(clause.fn)
    bound = ctx.bound()
    missing = [v for v in arg_vars if v not in bound]
    if missing:
        raise _err("Insufficient bindings: " + " ".join(str(v) for v in missing) +
                   " not bound", clause)
    base = ctx.take(arg_vars)
    fixed = _fn_of(ctx, clause, None)
    getters = []
    for a in clause.args:
        if type(a) is Variable:
            getters.append((0, base.vars.index(a)))
        elif type(a) is SrcVar:
            getters.append((1, _src(ctx, a, clause)))
        else:
            getters.append((1, a.value))
    fpos = base.vars.index(clause.fn) if type(clause.fn) is Variable else None

    def call(row):
        fn = fixed if fpos is None else row[fpos]
        args = [row[x] if k == 0 else x for k, x in getters]
        return fn(*args)
    return base, call


_FAST_CMP = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}
_PLAIN_NUMBERS = (int, float)


def _fast_compare(clause, base):
    """``(op, getter_a, getter_b)`` for a built-in 2-argument comparison, else None."""
    f = clause.fn
    if type(f) is Variable or len(clause.args) != 2:
        return None
    name = f.symbol.full_name
    op = _FAST_CMP.get(name)
    if op is None or _lookup_fn(f.symbol, clause) is not BUILTINS[name]:
        return None   # a user function under the same name keeps its own semantics
    getters = []
    for a in clause.args:
        if type(a) is Variable:
            getters.append((True, base.vars.index(a)))
        elif type(a) is Constant:
            getters.append((False, a.value))
        else:
            return None
    return op, getters[0], getters[1]


def _predicate(ctx, clause):
    base, call = _fn_rows(ctx, clause)
    rows = []
    check, deadline = ctx.check, ctx.deadline
    fast = _fast_compare(clause, base)
    if fast is not None:
        # Plain numbers compare with Python's operator, one comprehension-like loop;
        # anything else (mixed types, nil, strings) takes the general comparison.
        op, (va, xa), (vb, xb) = fast
        nums = _PLAIN_NUMBERS
        n = 0
        for row in base.rows:
            x = row[xa] if va else xa
            y = row[xb] if vb else xb
            if type(x) in nums and type(y) in nums:
                if op(x, y):
                    rows.append(row)
            else:
                r = call(row)
                if r is not None and r is not False:
                    rows.append(row)
            n += 1
            if deadline is not None and not (n & 0xFFF):
                check()
        ctx.rels.append(Rel(base.vars, rows))
        return
    try:
        for i, row in enumerate(base.rows):
            if deadline is not None:
                check()
            r = call(row)
            if r is not None and r is not False:
                rows.append(row)
    except QueryError:
        raise
    except Exception as ex:
        raise _err(f"{type(ex).__name__}: {ex}", clause) from ex
    ctx.rels.append(Rel(base.vars, rows))


def _frozen(x):
    # A bound value must be hashable (relations join and de-duplicate by hash): a
    # vector (a lookup ref given as input, a function's vector result) binds as a tuple.
    if type(x) is list:
        return tuple(map(_frozen, x))
    return x


def _bind_results(binding, value):
    """Value tuples for a binding's variables (``_`` positions dropped), or [] when nothing binds."""
    t = type(binding)
    if value is None:
        return []
    if t is BindScalar:
        return [(_frozen(value),)]
    if t is BindIgnore:
        return [()]
    if t is BindColl:
        return [(_frozen(x),) for x in value]
    if t is BindTuple:
        vals = tuple(value)
        if len(vals) < len(binding.elements):
            return []
        return [tuple(_frozen(x) for x, el in zip(vals, binding.elements) if type(el) is Variable)]
    if t is BindRel:
        out = []
        n = len(binding.elements)
        for tup in value:
            tup = tuple(tup)
            if len(tup) >= n:
                out.append(tuple(_frozen(x) for x, el in zip(tup, binding.elements)
                                 if type(el) is Variable))
        return out
    raise QueryError(f"unsupported binding {binding}")


def _binding_vars(binding):
    return tuple(binding.vars())


def _function(ctx, clause):
    base, call = _fn_rows(ctx, clause)
    bvars = _binding_vars(clause.binding)
    # a var bound twice in the binding: keep first, check equality
    out = Rel(base.vars + tuple(v for v in dict.fromkeys(bvars) if v not in base.vars), [])
    new_idx = []
    eq_idx = []
    seen = {}
    for j, v in enumerate(bvars):
        if v in base.vars:
            eq_idx.append((j, base.vars.index(v)))
        elif v in seen:
            eq_idx.append((j, None, seen[v]))
        else:
            seen[v] = j
            new_idx.append(j)
    rows = out.rows
    check, deadline = ctx.check, ctx.deadline
    try:
        for i, row in enumerate(base.rows):
            if deadline is not None:
                check()
            for vals in _bind_results(clause.binding, call(row)):
                ok = True
                for eq in eq_idx:
                    if len(eq) == 2:
                        if vals[eq[0]] != row[eq[1]]:
                            ok = False
                            break
                    elif vals[eq[0]] != vals[eq[2]]:
                        ok = False
                        break
                if ok:
                    rows.append(row + tuple(vals[j] for j in new_idx))
    except QueryError:
        raise
    except Exception as ex:
        raise _err(f"{type(ex).__name__}: {ex}", clause) from ex
    ctx.add(out)


# --- not / or / and ---------------------------------------------------------------------------

def _seeded_child(ctx, base, join_vars, source):
    sources = ctx.sources
    if source is not None:
        sources = dict(ctx.sources)
        sources[DOLLAR] = _src(ctx, source, None)
    child = ctx.child(sources)
    jv = [v for v in base.vars if v in join_vars]
    if jv:
        child.rels.append(_project(base, jv))
    return child, jv


def _anti(ctx, clause, join_vars, clauses):
    bound = ctx.bound()
    jv_bound = [v for v in join_vars if v in bound]
    if type(clause) is NotJoin:
        missing = [v for v in join_vars if v not in bound]
        if missing:
            raise _err("Insufficient bindings: " + " ".join(str(v) for v in missing) +
                       " not bound in not-join", clause)
    elif not jv_bound:
        raise _err("Insufficient bindings: none of the not clause's variables is bound", clause)
    base = ctx.take(jv_bound)
    child, jv = _seeded_child(ctx, base, set(jv_bound), clause.source)
    for c in clauses:
        _clause(child, c)
    res = child.result(tuple(jv))
    ctx.rels.append(Rel(base.vars, semi_join(base.rows, tuple(base.vars.index(v) for v in jv),
                                             res.rows, False, ctx.check)))


def _or(ctx, clause, join_vars, required=()):
    bound = ctx.bound()
    miss = [v for v in required if v not in bound]
    if miss:
        raise _err("Insufficient bindings: " + " ".join(str(v) for v in miss) +
                   " required by or-join", clause)
    jv_bound = [v for v in join_vars if v in bound]
    base = ctx.take(jv_bound)
    out_vars = tuple(join_vars)
    rows = set()
    for branch in clause.clauses:
        child, _ = _seeded_child(ctx, base, set(jv_bound), clause.source)
        for c in (branch.clauses if type(branch) is And else (branch,)):
            _clause(child, c)
        have = child.bound()
        lacking = [v for v in out_vars if v not in have]
        if lacking:
            raise _err("or branch does not bind " + " ".join(str(v) for v in lacking), clause)
        rows.update(child.result(out_vars).rows)
    ctx.rels.append(base)
    ctx.add(Rel(out_vars, list(rows)))


# --- rules ------------------------------------------------------------------------------------
# Rule calls are tabled and evaluated semi-naively, stratum by stratum, in query/rules.py;
# the query runner and the clause dispatch below reach it through these two names.

_Tables = _rules.Tables


def _rule_call(ctx, clause):
    _rules.call(ctx, clause)


# --- clause dispatch --------------------------------------------------------------------------

def _clause(ctx, c):
    ctx.check()
    t = type(c)
    if t is Pattern:
        ctx.add(_pattern(ctx, c))
    elif t is Predicate:
        if id(c) not in ctx.satisfied:
            _predicate(ctx, c)
    elif t is Function:
        _function(ctx, c)
    elif t is RuleExpr:
        _rule_call(ctx, c)
    elif t is Not:
        _anti(ctx, c, sorted(free_vars(c), key=str), c.clauses)
    elif t is NotJoin:
        _anti(ctx, c, list(c.vars), c.clauses)
    elif t is Or:
        _or(ctx, c, sorted(free_vars(c), key=str))
    elif t is OrJoin:
        _or(ctx, c, list(c.rule_vars.all), c.rule_vars.required)
    elif t is And:
        for x in c.clauses:
            _clause(ctx, x)
    else:
        raise QueryError(f"unknown clause {c!r}")


# --- inputs -----------------------------------------------------------------------------------

def _bind_input(ctx, binding, value):
    t = type(binding)
    if t is BindIgnore:
        return
    if t is BindScalar:
        ctx.add(Rel((binding.var,), [(_frozen(value),)]))
        return
    if t is BindColl:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise QueryError(f"input for {binding.to_edn()} must be a collection, got {value!r}")
    if t in (BindTuple, BindRel):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise QueryError(f"input for {binding.to_edn()} must be a collection, got {value!r}")
    if t is BindTuple and len(tuple(value)) != len(binding.elements):
        raise QueryError(f"input for {binding.to_edn()} must have {len(binding.elements)} elements, "
                         f"got {value!r}")
    vars_ = binding.vars()
    rows = _bind_results(binding, value)
    uniq = tuple(dict.fromkeys(vars_))
    if len(uniq) != len(vars_):
        idx = [vars_.index(v) for v in uniq]
        rows = [tuple(r[i] for i in idx) for r in rows]
    ctx.add(Rel(uniq, list(dict.fromkeys(rows))))


# --- aggregates -------------------------------------------------------------------------------

def _agg_min_n(n, xs):
    return sorted(set(xs), key=_SortKey)[:n]


def _agg_max_n(n, xs):
    return sorted(set(xs), key=_SortKey, reverse=True)[:n]


def _median(xs):
    return statistics.median(xs)


AGGREGATES = {
    "count": lambda xs: len(xs),
    "count-distinct": lambda xs: len(set(xs)),
    "sum": lambda xs: sum(xs),
    "avg": lambda xs: sum(xs) / len(xs),
    "min": lambda xs, n=None: (min(xs, key=_SortKey) if n is None else None),
    "max": lambda xs, n=None: (max(xs, key=_SortKey) if n is None else None),
    "median": _median,
    "variance": lambda xs: statistics.pvariance(xs),
    "stddev": lambda xs: statistics.pstdev(xs),
    "distinct": lambda xs: set(xs),
    "rand": lambda n, xs: [random.choice(xs) for _ in range(n)],
    "sample": lambda n, xs: random.sample(list(set(xs)), min(n, len(set(xs)))),
}
_USER_AGGS: dict = {}


def register_aggregate(name, fn):
    """A custom aggregate: ``fn(*constant_args, values)`` where ``values`` is the group's bag."""
    _USER_AGGS[str(name)] = fn
    return fn


def _agg_fn(agg):
    name = agg.fn.symbol.full_name
    nconst = len(agg.args) - 1
    if name in ("min", "max") and nconst == 1:
        return _agg_min_n if name == "min" else _agg_max_n
    if name == "rand" and nconst == 0:
        return random.choice   # (rand ?x): one element of the aggregated values
    if name in _USER_AGGS:
        return _USER_AGGS[name]
    if name in AGGREGATES:
        return AGGREGATES[name]
    return _lookup_fn(agg.fn.symbol, agg, table={})


def _aggregate(find_elems, rel, ctx):
    """Group rows of ``rel`` (vars = find vars + with vars) and apply aggregates."""
    elem_vars = []
    for el in find_elems:
        if type(el) is Aggregate:
            elem_vars.append(el.args[-1] if type(el.args[-1]) is Variable else None)
        else:
            elem_vars.append(el if type(el) is Variable else el.var)
    group_idx = [i for i, el in enumerate(find_elems) if type(el) is not Aggregate]
    col = {v: i for i, v in enumerate(rel.vars)}
    gkey = tuple(col[elem_vars[i]] for i in group_idx)
    groups = group_by(rel.rows, gkey)
    if not groups and not group_idx:
        groups[()] = []
    single = len(gkey) == 1   # group_by keys one column by the value itself
    out = []
    for key, rows in groups.items():
        res = []
        k = iter((key,) if single else key)
        for i, el in enumerate(find_elems):
            if type(el) is not Aggregate:
                res.append(next(k))
                continue
            fn = _agg_fn(el)
            last = el.args[-1]
            vals = column(rows, col[last]) if type(last) is Variable else [last.value] * len(rows)
            consts = [_src(ctx, a, el) if type(a) is SrcVar else
                      (rows[0][col[a]] if rows else None) if type(a) is Variable else a.value
                      for a in el.args[:-1]]   # a variable argument: bound once, by :in
            name = el.fn.symbol.full_name
            if not vals and name not in ("count", "count-distinct", "distinct"):
                res.append(None)
                continue
            try:
                res.append(fn(*consts, vals))
            except Exception as ex:
                raise _err(f"aggregate failed: {type(ex).__name__}: {ex}", el) from ex
        out.append(tuple(res))
    if not rel.rows and group_idx:
        return []
    return out


# --- the query ---------------------------------------------------------------------------------

def _run(qry, inputs, timeout=None, trace=None):
    parsed = parse_query(qry)
    tmo = timeout if timeout is not None else parsed.timeout
    deadline = time.monotonic() + tmo / 1000.0 if tmo else None
    if not inputs and parsed.inputs == (DOLLAR,):
        pass  # no source given and none needed: clauses using $ report it
    elif len(inputs) != len(parsed.inputs):
        names = " ".join(i.to_edn() for i in parsed.inputs)
        raise QueryError(f"query :in [{names}] takes {len(parsed.inputs)} inputs, "
                         f"got {len(inputs)}", data={"in": names, "got": len(inputs)})
    sources, rules, patterns = {}, {}, {}
    ctx = Ctx(sources, rules, deadline, _Tables())
    for spec, value in zip(parsed.inputs, inputs):
        t = type(spec)
        if t is SrcVar:
            if not _is_db(value):
                if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                    raise QueryError(f"source {spec.symbol} must be a database or a collection "
                                     f"of tuples, got {value!r}")
                value = [tuple(x) for x in value]
            sources[spec] = value
        elif t is RulesVar:
            for r in parse_rules(value) if value else ():
                rules[r.name.symbol.full_name] = r
        elif t is PlainSymbol:
            patterns[spec] = value
        else:
            _bind_input(ctx, spec, value)
    # Written order must be valid as Datomic evaluates it (each clause's inputs bound by
    # the clauses before it or by :in); then the planner may pick any order: the result
    # is the same, only the work differs (query/planner.py).
    written = ctx.bound()
    need = {id(c): needs(c, rules, around)
            for c, around in zip(parsed.where, scopes(parsed.where, written))}
    for c in parsed.where:
        missing = need[id(c)] - written
        if missing:
            names = " ".join(sorted(str(v.symbol) for v in missing))
            raise _err(f"insufficient bindings: {names} not bound before this clause "
                       "(bind them in an earlier clause or :in)", c, missing=names)
        written |= bound_vars(c)
    scalars = {}
    for r in ctx.rels:
        if len(r.rows) == 1:
            scalars.update(zip(r.vars, r.rows[0]))
    ctx.ranges = _ranges.collect(parsed.where, scalars, _is_builtin)
    remaining = list(parsed.where)
    ctx.remaining = remaining     # popped as clauses run
    ctx.keep = set(_find_vars(parsed))
    while remaining:
        i, cost = choose_next(ctx, remaining, DOLLAR, need) if len(remaining) > 1 else (0, None)
        c = remaining.pop(i)
        _clause(ctx, c)
        if trace is not None:
            rows = sum(len(r.rows) for r in ctx.rels)
            trace.append({"clause": c.to_edn(), "estimate": cost, "rows": rows})
            for f in ctx.fused:
                trace.append({"clause": f.to_edn(), "estimate": None, "rows": rows,
                              "joined-with": c.to_edn()})
        ctx.fused.clear()
    ctx.check()
    return parsed, ctx, sources, patterns


def _find_vars(parsed):
    """The variables the find spec, :with and :order-by read, in order."""
    fvars = []
    for el in parsed.find.elements:
        if type(el) is Variable:
            fvars.append(el)
        elif type(el) is Pull:
            fvars.append(el.var)
        else:
            fvars.extend(a for a in el.args if type(a) is Variable)
    return tuple(dict.fromkeys(list(fvars) + list(parsed.with_) +
                               [o.var for o in parsed.order_by]))


def _find_rows(parsed, ctx, sources, patterns):
    elems = parsed.find.elements
    keep = _find_vars(parsed)
    missing = [v for v in keep if v not in ctx.bound()]
    if missing:
        raise QueryError("Query is referencing unbound variables " + " ".join(map(str, missing)))
    rel = ctx.result(keep)
    if (type(parsed.find) is FindRel and parsed.keys is None and not parsed.with_ and
            not parsed.order_by and parsed.limit is None and not parsed.offset and
            all(type(el) is Variable for el in elems)):
        # The common shape: a set of tuples of variables. ``set`` in _shape is the only
        # de-duplication needed, and the projection is one C-level map when any.
        if keep == tuple(elems):
            return rel.rows
        return list(map(_getter([keep.index(el) for el in elems]), rel.rows))
    rel = Rel(keep, list(dict.fromkeys(rel.rows)))   # set semantics over find + with vars
    if parsed.has_aggregates():
        rows = _aggregate(elems, rel, ctx)
        col_of = None
    else:
        col_of = {v: i for i, v in enumerate(keep)}
        rows = rel.rows
    # ordering, paging
    if parsed.order_by:
        if col_of is None:
            idx = {}
            for i, el in enumerate(elems):
                if type(el) is Variable:
                    idx[el] = i
            col_of = idx
        for ok in reversed(parsed.order_by):
            i = col_of.get(ok.var)
            if i is None:
                raise QueryError(f":order-by {ok.var} must be a find variable")
            rows = sorted(rows, key=lambda r, i=i: _SortKey(r[i]), reverse=ok.descending)
    # project to find elements
    out = []
    pulls = []
    for i, el in enumerate(elems):
        if type(el) is Pull:
            pulls.append(i)
    if col_of is not None and not parsed.has_aggregates():
        proj = []
        for el in elems:
            proj.append(col_of[el] if type(el) is Variable else col_of[el.var])
        out = list(map(_getter(proj), rows)) if proj else [() for _ in rows]
    else:
        out = list(rows)
    if not parsed.order_by and not parsed.has_aggregates():
        out = list(dict.fromkeys(out)) if not parsed.with_ else out
    if parsed.offset:
        out = out[parsed.offset:]
    if parsed.limit is not None:
        out = out[:parsed.limit]
    if pulls:
        for i in pulls:
            el = elems[i]
            src = sources.get(el.source or DOLLAR)
            pat = patterns[el.pattern] if type(el.pattern) is PlainSymbol else el.pattern
            ids = [r[i] for r in out]
            pulled = src.pull_many(pat, ids)
            out = [r[:i] + (p,) + r[i + 1:] for r, p in zip(out, pulled)]
    return out


def _shape(parsed, rows):
    f = type(parsed.find)
    ordered = bool(parsed.order_by) or parsed.limit is not None or parsed.offset is not None
    if parsed.keys is not None:
        ks = parsed.keys.result_keys()
        maps = [dict(zip(ks, r)) for r in rows]
        if f is FindTuple:
            return maps[0] if maps else None
        return maps
    if f is FindRel:
        if ordered or parsed.with_:
            return list(rows)
        try:
            return set(rows)
        except TypeError:   # unhashable values (pull maps, aggregate collections)
            return list(rows)
    if f is FindColl:
        return [r[0] for r in rows]
    if f is FindTuple:
        return rows[0] if rows else None
    if f is FindScalar:
        return rows[0][0] if rows else None
    return rows


def q(query_, *inputs, timeout=None):
    """Run a Datalog query (EDN text or data) against ``inputs`` (databases, values, rules).

    Relation finds return a ``set`` of tuples (a ``list`` with :order-by/:limit/:offset or
    when values are unhashable), ``[?x ...]`` a list, ``[?a ?b]`` one tuple, ``?x .`` a
    value (``None`` when nothing matches); ``:keys``/``:strs``/``:syms`` a list of dicts.
    """
    parsed, ctx, sources, patterns = _run(query_, inputs, timeout)
    rows = _find_rows(parsed, ctx, sources, patterns)
    return _shape(parsed, rows)


def explain(query_, *inputs, timeout=None):
    """Run a query and report the plan: the clauses in the order the planner chose, with
    each one's estimated cost and the rows bound after it, plus the result.

    >>> import fastdatomic as fd
    >>> _ = fd.create_database("fastdatomic:mem://doc-explain")
    >>> db = fd.connect("fastdatomic:mem://doc-explain").db()
    >>> plan = explain('[:find ?e :where [?e :db/ident :db/doc] [?e :db/valueType ?t]]', db)
    >>> [step["clause"] for step in plan["plan"]]
    ['[?e :db/ident :db/doc]', '[?e :db/valueType ?t]']
    """
    trace = []
    parsed, ctx, sources, patterns = _run(query_, inputs, timeout, trace)
    return {"plan": trace, "result": _shape(parsed, _find_rows(parsed, ctx, sources, patterns))}


def query(arg_map):
    """Datomic's map form: ``{"query": q, "args": [...], "timeout": ms}`` (keys may be Keywords)."""
    def get(k):
        for key in (k, Keyword(k), ":" + k):
            if key in arg_map:
                return arg_map[key]
        return None
    qry = get("query")
    if qry is None:
        raise QueryError("query map needs a :query")
    args = get("args") or []
    return q(qry, *args, timeout=get("timeout"))
