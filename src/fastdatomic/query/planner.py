"""The query planner: which :where clause to evaluate next, by estimated cost.

Clause order never changes a query's result (every order computes the same joins and
filters); it changes how much work those take. So after each clause the planner looks
at what is bound and how large the relations are, and picks the cheapest *ready* clause
(ties keep the written order):

    clause                          ready when                    cost
    predicate / function            its inputs are bound          0   (filters shrink)
    not / not-join                  its join vars are bound       1
    data pattern                    always                        estimated rows (below)
    or / or-join / rule call        required vars are bound       rows it joins with x 4,
                                                                  or 1e9 when it joins none

A data pattern on a database, by what is known about it:

    e constant                         estimate(EAVT e a)
    e a bound variable                 rows holding e (probed entity by entity), times
                                       the share a constant or bound v keeps (AVET
                                       counts when indexed, else 1/2)
    v constant, a indexed or a ref     estimate(AVET a v) or estimate(VAET v a)
    v bound, a indexed or a ref        rows holding v
    v constant, a plain attribute      estimate(AEVT a) / 2 (scanned, then filtered)
    v compared with a constant         estimate(AVET range) when indexed, else AEVT / 2
                                       (query/ranges.py)
    a constant only                    estimate(AEVT a)
    no attribute                       every datom of the source

A pattern that shares no variable with the relations bound so far starts a product,
so its cost is multiplied by their size. Estimates come from tree directory counts
(``Database.estimate``): no clause is evaluated to plan it.
"""

from __future__ import annotations

from fastdatomic.db.database import Database
from fastdatomic.errors import FastDatomicError
from fastdatomic.query.ranges import encoded_range
from fastdatomic.query.ast import (
    Constant, Function, Not, NotJoin, Or, OrJoin, Pattern, Predicate, RuleExpr, Variable,
    free_vars,
)

__all__ = ["choose_next", "needs", "NEVER"]

NEVER = float("inf")
_OPAQUE = 1e9


def _rows_holding(ctx, var) -> int:
    rel = ctx.rel_of(var)
    return len(rel.rows) if rel is not None else 0


def _const(db, el):
    return el.value if type(el) is Constant else None


def _pattern_cost(ctx, clause, bound, default_source) -> float:
    src = ctx.sources.get(clause.source or default_source)
    if src is None:
        return _OPAQUE
    if not isinstance(src, Database):
        return float(len(src))
    db = src
    els = clause.elements + (None,) * (5 - len(clause.elements))
    e, a, v = els[0], els[1], els[2]
    if type(a) is not Constant:
        return float(db.estimate("eavt"))
    try:
        attr = db.attribute(a.value if not isinstance(a.value, str) or a.value.startswith(":")
                            else ":" + a.value)
    except FastDatomicError:
        return 0.0   # unknown attribute: the engine reports it; nothing to scan
    try:
        if type(e) is Constant:
            return float(db.estimate("eavt", e.value, attr.id))
        if type(e) is Variable and e in bound:
            # Probing bound entities: at most one row each for a cardinality-one
            # attribute, fewer when a constant value filters them. Ranking the
            # filtering pattern first shrinks what the others join with.
            rows = float(_rows_holding(ctx, e))
            if type(v) is Constant or (type(v) is Variable and v in bound):
                total = db.estimate("aevt", attr.id)
                if type(v) is Constant and total and (attr.indexed or attr.is_ref):
                    hits = db.estimate("avet" if attr.indexed else "vaet",
                                       *((attr.id, v.value) if attr.indexed else (v.value, attr.id)))
                    return rows * min(1.0, hits / total)
                return rows * 0.5
            return rows
        if type(v) is Constant:
            if attr.is_ref:
                return float(db.estimate("vaet", v.value, attr.id))
            if attr.indexed:
                return float(db.estimate("avet", attr.id, v.value))
            # Scanned whole, then filtered: cost is the scan. Slightly below the same
            # pattern without a constant, which yields every row it scans.
            return db.estimate("aevt", attr.id) * 0.5
        if type(v) is Variable and v in bound and (attr.indexed or attr.is_ref):
            return float(_rows_holding(ctx, v))
        if type(v) is Variable and v in ctx.ranges:
            # a comparison predicate on ?v: the index reads only that range
            rng = encoded_range(ctx.ranges[v], attr.vtype)
            if rng is not None:
                if attr.indexed:
                    return float(db.estimate_value_range(attr.id, rng[0], rng[2]))
                return db.estimate("aevt", attr.id) * 0.5
        return float(db.estimate("aevt", attr.id))
    except FastDatomicError:
        return 0.0   # a constant that names no entity matches nothing


def _joined_rows(ctx, vars_) -> int:
    return max((_rows_holding(ctx, v) for v in vars_), default=0)


def _rule_required(rules, clause):
    rule = rules.get(clause.name.symbol.full_name)
    if rule is None:
        return ()
    req = rule.branches[0].vars.required
    params = rule.branches[0].vars.all
    return tuple(arg for arg, p in zip(clause.args, params) if p in req and type(arg) is Variable)


def needs(clause, rules, outside=None) -> frozenset:
    """Variables that must be bound before ``clause`` can run (Datomic's rule for
    predicates, functions, not-clauses, or-join required vars and rule required vars).

    A ``not`` joins on the variables it shares with the rest of the query (``outside``);
    variables used only inside it are its own.
    """
    t = type(clause)
    if t is Predicate:
        return free_vars(clause)
    if t is Not:
        fv = free_vars(clause)
        return fv if outside is None else fv & outside
    if t is Function:
        inputs = {x for x in clause.args if type(x) is Variable}
        if type(clause.fn) is Variable:
            inputs.add(clause.fn)
        return frozenset(inputs)
    if t is NotJoin:
        return frozenset(clause.vars)
    if t is OrJoin:
        return frozenset(clause.rule_vars.required)
    if t is RuleExpr:
        return frozenset(_rule_required(rules, clause))
    return frozenset()


def clause_cost(ctx, clause, bound, default_source, need=None) -> float:
    """The estimated cost of evaluating ``clause`` now (``NEVER`` when not ready)."""
    t = type(clause)
    if not (need if need is not None else needs(clause, ctx.rules)) <= bound:
        return NEVER
    if t is Predicate or t is Function:
        return 0.0
    if t is Not or t is NotJoin:
        return 1.0
    if t is Pattern:
        cost = _pattern_cost(ctx, clause, bound, default_source)
        shared = free_vars(clause) & bound
        if bound and not shared:
            cost *= max(1, max(len(r.rows) for r in ctx.rels))
        return cost
    if t in (Or, OrJoin, RuleExpr):
        shared = free_vars(clause) & bound
        return _joined_rows(ctx, shared) * 4.0 if shared else _OPAQUE
    return _OPAQUE


def choose_next(ctx, remaining, default_source, need=None) -> tuple[int, float]:
    """Index in ``remaining`` of the clause to evaluate next, and its estimated cost.

    When nothing is ready (a query whose order the parser accepted but whose bindings
    cannot be satisfied), the first clause goes next and the engine reports the problem.
    """
    bound = ctx.bound()
    best, best_cost = 0, NEVER
    for i, clause in enumerate(remaining):
        cost = clause_cost(ctx, clause, bound, default_source,
                           need.get(id(clause)) if need is not None else None)
        if cost < best_cost:
            best, best_cost = i, cost
            if cost == 0.0:
                break
    return best, best_cost
