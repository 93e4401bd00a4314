"""Datalog rules: tabled, semi-naive evaluation of rule calls, and the stratification check.

Layer: query. The engine (query/engine.py) hands every rule call ``(name arg ...)`` to
:func:`call`; rule bodies are evaluated back through the engine's clause dispatch, which
this module imports lazily (the engine imports this module when it loads).

Tabling ("magic sets"). A call's bound arguments (constants, or variables bound before
it) are its *seeds*; its answers are full argument tuples. One table per (rule, bound
positions, default source) keeps the seeds asked so far and the answers found for them,
so a recursive call with the same binding pattern reuses the table instead of recursing,
and bound arguments narrow the body's lookups.

Strata. Rules are grouped into the strongly connected components (SCCs) of their call
graph. Calling a rule whose SCC is not being evaluated *solves* that SCC: a fixpoint over
its tables until none gains a seed or an answer, after which every table is complete for
its seeds. A body calls rules of lower SCCs the same way, so they are complete before the
caller reads them -- which is what makes ``not`` over another rule see its full answers. A
rule that reaches itself through ``not`` / ``not-join`` has no well-defined answer:
:func:`call` raises :class:`QueryError` naming the cycle before evaluating it.

Semi-naive fixpoint. A call at the top level of a branch body to a rule of the same SCC is
a *site*. When the body reaches a site, the rows bound so far are stored there, keyed by
the callee's seed, and joined with the callee's answers known so far; later rounds push
only the callee's *new* answers (its delta) through the stored rows and evaluate the rest
of the body for the rows that matched. Each (stored row, answer) pair is joined once, so a
chain of N parents takes N rounds of O(1) work each, not N re-evaluations of everything.
A branch whose recursive call sits inside ``or`` / ``or-join`` cannot be split at the call;
it is re-evaluated whole (all seeds against all answers) after every round that changed
its SCC, as a naive fixpoint would.

>>> from fastdatomic.query.engine import q
>>> edges = [(1, 2), (2, 3), (3, 1), (4, 5)]
>>> rules = '[[(path ?a ?b) [?a ?b]] [(path ?a ?b) [?a ?m] (path ?m ?b)]]'
>>> sorted(q('[:find [?b ...] :in $ % :where (path 1 ?b)]', edges, rules))
[1, 2, 3]
"""

from __future__ import annotations

import operator
import threading
from collections import Counter

from fastdatomic.query.ast import (
    And, Constant, Not, NotJoin, Or, OrJoin, RuleExpr, Variable, free_vars,
)

__all__ = ["Tables", "Strata", "call", "stratify", "stats", "reset_stats"]

# Work done by rule evaluation, per thread (queries run concurrently, and ``+=`` on a
# shared Counter would lose counts): tests read it to check that evaluation grows
# linearly with the answers (wall-clock timings are too noisy to assert on).
#   rounds      fixpoint iterations          seed_rows   seeds evaluated through bodies
#   delta_rows  new answers pushed to sites  site_rows   rows stored at sites
#   naive       whole-branch re-evaluations (branches with a recursive call inside or)
_LOCAL = threading.local()


def _stats() -> Counter:
    c = getattr(_LOCAL, "stats", None)
    if c is None:
        c = _LOCAL.stats = Counter()
    return c

_E = None


def _engine():
    # Imported on first use: the engine imports this module at load time.
    global _E
    if _E is None:
        from fastdatomic.query import engine
        _E = engine
    return _E


def stats() -> dict:
    """Counters of the rule-evaluation work this thread's queries have done so far.

    >>> reset_stats()
    >>> from fastdatomic.query.engine import q
    >>> q('[:find [?b ...] :in $ % :where (r 1 ?b)]', [(1, 2)], '[[(r ?a ?b) [?a ?b]]]')
    [2]
    >>> stats()["seed_rows"]
    1
    """
    return dict(_stats())


def reset_stats() -> None:
    """Zero the counters :func:`stats` reports.

    >>> reset_stats(); stats().get("rounds", 0)
    0
    """
    _stats().clear()


# --- the call graph and its strata ----------------------------------------------------------

def _calls(clause, negative, out, top):
    """Append (callee name, through not?, at top level?) for each rule call in ``clause``."""
    t = type(clause)
    if t is RuleExpr:
        out.append((clause.name.symbol.full_name, negative, top))
    elif t is Not or t is NotJoin:
        for c in clause.clauses:
            _calls(c, True, out, False)
    elif t is Or or t is OrJoin or t is And:
        for c in clause.clauses:
            _calls(c, negative, out, False)


def _sccs(graph):
    """name -> SCC number; callees' SCCs are numbered before their callers' (Tarjan)."""
    index, low, comp = {}, {}, {}
    stack, on_stack = [], set()
    for root in graph:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(graph[root]))]
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph[w])))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    u = work[-1][0]
                    low[u] = min(low[u], low[v])
                if low[v] == index[v]:
                    n = len(set(comp.values()))
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp[w] = n
                        if w == v:
                            break
    return comp


class _Plan:
    """How one branch of a rule is evaluated (see the module docstring)."""

    __slots__ = ("sites", "naive", "live", "arity_ok")

    def __init__(self, sites, naive, live, arity_ok):
        self.sites = sites          # top-level clause positions that call the same SCC
        self.naive = naive          # a same-SCC call nested in or / or-join: evaluate whole
        self.live = live            # site position -> variables used from there on
        self.arity_ok = arity_ok


class Strata:
    """A rule set's call graph: its SCCs (strata), the negations inside one, branch plans.

    Built by :func:`stratify`; ``scc_of[name]`` is smaller for rules that must be complete
    first.

    >>> from fastdatomic.query.parser import parse_rules
    >>> s = stratify(parse_rules('[[(p ?x) [?x :a] (not (q ?x))] [(q ?x) [?x :b]]]'))
    >>> s.scc_of["q"] < s.scc_of["p"]
    True
    """

    __slots__ = ("edges", "scc_of", "bad", "plans", "naive_sccs", "_ok")

    def __init__(self, rules):
        names = set(rules)
        calls = {}
        for name, rule in rules.items():
            found = []
            for br in rule.branches:
                for c in br.clauses:
                    _calls(c, False, found, True)
            calls[name] = [x for x in found if x[0] in names]
        self.edges = {n: list(dict.fromkeys((m, neg) for m, neg, _ in cs)) for n, cs in calls.items()}
        self.scc_of = _sccs({n: [m for m, _ in es] for n, es in self.edges.items()})
        self.bad = {}               # SCC -> (rule, negated rule) of its first negative edge
        for n, es in self.edges.items():
            for m, neg in es:
                if neg and self.scc_of[m] == self.scc_of[n]:
                    self.bad.setdefault(self.scc_of[n], (n, m))
        self.plans = {name: [self._plan(name, rule, br) for br in rule.branches]
                      for name, rule in rules.items()}
        self.naive_sccs = {self.scc_of[n] for n, ps in self.plans.items() if any(p.naive for p in ps)}
        self._ok = set()

    def _plan(self, name, rule, br):
        scc = self.scc_of[name]
        head = br.vars.all
        clauses = br.clauses
        sites, naive = set(), False
        for j, c in enumerate(clauses):
            found = []
            _calls(c, False, found, True)
            for m, _neg, top in found:
                if m in self.scc_of and self.scc_of[m] == scc:
                    if top:
                        sites.add(j)
                    else:
                        naive = True
        live, after = {}, frozenset(head)
        for j in range(len(clauses) - 1, -1, -1):
            after = after | free_vars(clauses[j])
            if j in sites:
                live[j] = after
        return _Plan(frozenset(sites), naive, live,
                     len(head) == len(rule.branches[0].vars.all))

    def check(self, name):
        """Raise QueryError if ``name`` reaches a rule that depends on itself through ``not``."""
        if name in self._ok:
            return
        seen, todo = {name}, [name]
        while todo:
            n = todo.pop()
            scc = self.scc_of[n]
            if scc in self.bad:
                raise self._error(*self.bad[scc])
            for m, _ in self.edges[n]:
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        self._ok |= seen

    def _error(self, caller, negated):
        # The cycle: caller -not-> negated, then the shortest way back to caller.
        scc = self.scc_of[caller]
        back, todo = {negated: None}, [negated]
        while caller not in back:
            nxt = []
            for n in todo:
                for m, _ in self.edges[n]:
                    if self.scc_of[m] == scc and m not in back:
                        back[m] = n
                        nxt.append(m)
            todo = nxt
        path, n = [], caller
        while n is not None:
            path.append(n)
            n = back[n]
        cycle = [caller] + path[::-1]       # path: caller, the rule calling it, ..., negated
        names = list(dict.fromkeys(cycle))
        who = (f"rule {caller} depends on itself" if len(names) == 1 else
               f"rules {' '.join(names)} depend on themselves")
        return _engine().QueryError(
            f"{who} through negation: {caller} uses (not ({negated} ...)) and {negated} "
            f"depends on {caller} (cycle {' -> '.join(cycle)}); such rules have no "
            "well-defined answer",
            data={"rules": names, "cycle": cycle},
            hint="negate only rules that do not depend back on the rule doing the negation")


def stratify(rules) -> Strata:
    """The :class:`Strata` of a rule set: a mapping name -> Rule, or parsed Rules.

    >>> from fastdatomic.query.parser import parse_rules
    >>> s = stratify(parse_rules('[[(p ?x) [?x :a] (not (p ?x))]]'))
    >>> try:
    ...     s.check("p")
    ... except Exception as ex:
    ...     print(ex.data["cycle"])
    ['p', 'p']
    """
    if not hasattr(rules, "items"):
        rules = {r.name.symbol.full_name: r for r in rules}
    return Strata(rules)


# --- tables and sites -----------------------------------------------------------------------

def _key_fn(idxs):
    if not idxs:
        return lambda r: ()
    if len(idxs) == 1:
        i = idxs[0]
        return lambda r: (r[i],)
    return operator.itemgetter(*idxs)


class _Table:
    """Seeds asked and answers found for one (rule, bound positions, default source)."""

    __slots__ = ("key", "name", "rule", "bpos", "sources", "scc", "seeds", "fresh",
                 "answers", "pending", "index", "keyf")

    def __init__(self, key, name, rule, bpos, sources, scc):
        self.key = key
        self.name = name
        self.rule = rule
        self.bpos = bpos
        self.sources = sources      # the body's sources: the caller's, with $ as called
        self.scc = scc
        self.seeds = set()
        self.fresh = []             # seeds not yet evaluated
        self.answers = set()
        self.pending = []           # answers not yet pushed to the sites calling this table
        self.index = {}             # seed -> pushed answers with that seed
        self.keyf = _key_fn(bpos)

    def known(self, seeds):
        """Pushed answers for ``seeds`` (all answers once the table's SCC is solved)."""
        if not self.bpos:
            return self.index.get((), [])
        get = self.index.get
        return [a for s in seeds for a in get(s, ())]

    def current(self, seeds):
        """Every answer found so far for ``seeds``, pushed or not."""
        kf = self.keyf
        return self.known(seeds) + [a for a in self.pending if kf(a) in seeds]


class _Site:
    """A same-SCC call at the top level of a branch: the rows that reached it, by seed."""

    __slots__ = ("table", "branch", "pos", "callee", "vars", "rows", "by_key", "key",
                 "out_vars", "ext", "eqs")

    def __init__(self, table, branch, pos, callee, vars_, clause):
        E = _engine()
        self.table, self.branch, self.pos, self.callee = table, branch, pos, callee
        self.vars = vars_
        self.rows = set()
        self.by_key = {}
        parts = []
        for i in callee.bpos:
            a = clause.args[i]
            parts.append((True, vars_.index(a)) if type(a) is Variable else (False, a.value))
        if all(is_var for is_var, _ in parts):
            self.key = _key_fn([x for _, x in parts])
        else:
            self.key = lambda r: tuple(r[x] if is_var else x for is_var, x in parts)
        out_vars, pos, self.eqs = E._out_spec(clause.args)
        new = [(v, p) for v, p in zip(out_vars, pos) if v not in vars_]
        self.out_vars = tuple(vars_) + tuple(v for v, _ in new)
        self.ext = _key_fn([p for _, p in new]) if new else None

    def join(self, pairs):
        """Rows extended with the answers they meet: ``pairs`` of (stored rows, answers)."""
        eqs, ext = self.eqs, self.ext
        out = []
        add = out.append
        for rows, answers in pairs:
            if not rows or not answers:
                continue
            for a in answers:
                if eqs and any(a[i] != a[j] for i, j in eqs):
                    continue
                if ext is None:
                    out.extend(rows)
                else:
                    e = ext(a)
                    for r in rows:
                        add(r + e)
        return list(dict.fromkeys(out))


class Tables:
    """Rule evaluation state of one query: tables, sites, and which SCCs are being solved.

    The engine makes one per query (``Ctx.tables``) and passes rule calls to :func:`call`.

    >>> t = Tables()
    >>> t.tables, t.running
    ({}, set())
    """

    __slots__ = ("tables", "sites", "by_callee", "scc_tables", "running", "version",
                 "naive_at", "strata")

    def __init__(self):
        self.tables = {}
        self.sites = {}             # (caller key, branch, position, callee key) -> _Site
        self.by_callee = {}         # callee key -> [_Site]
        self.scc_tables = {}        # SCC -> [_Table]
        self.running = set()        # SCCs whose fixpoint is on the stack
        self.version = Counter()    # SCC -> changes (new seeds or answers) so far
        self.naive_at = {}          # SCC -> version at its last whole-branch pass
        self.strata = None

    def table(self, name, rule, bpos, sources):
        dollar = sources.get(_engine().DOLLAR)
        # The body's $ is part of the key: the same call under ($2 or ...) reads another source.
        key = (name, bpos, id(dollar))
        t = self.tables.get(key)
        if t is None:
            scc = self.strata.scc_of[name]
            t = self.tables[key] = _Table(key, name, rule, bpos, sources, scc)
            self.scc_tables.setdefault(scc, []).append(t)
        return t

    def add_seeds(self, t, seeds):
        new = seeds - t.seeds
        if new:
            t.seeds |= new
            t.fresh.extend(new)
            self.version[t.scc] += 1

    def add_answers(self, t, answers):
        new = [a for a in dict.fromkeys(answers) if a not in t.answers]
        if new:
            t.answers.update(new)
            t.pending.extend(new)
            self.version[t.scc] += 1

    def site(self, t, branch, pos, callee, vars_, clause):
        key = (t.key, branch, pos, callee.key)
        s = self.sites.get(key)
        if s is None:
            s = self.sites[key] = _Site(t, branch, pos, callee, vars_, clause)
            self.by_callee.setdefault(callee.key, []).append(s)
        return s


# --- evaluation -----------------------------------------------------------------------------

def _resolve(E, ctx, clause):
    name = clause.name.symbol.full_name
    rule = ctx.rules.get(name)
    if rule is None:
        raise E._err(f"unknown rule {name}", clause)
    arity = len(rule.branches[0].vars.all)
    if len(clause.args) != arity:
        raise E._err(f"rule {name} takes {arity} arguments, got {len(clause.args)}", clause)
    return name, rule


def _bound_positions(E, ctx, clause, name, rule):
    bound = ctx.bound()
    bpos = tuple(i for i, a in enumerate(clause.args)
                 if type(a) is Constant or (type(a) is Variable and a in bound))
    for i in range(len(rule.branches[0].vars.required)):
        if i not in bpos:
            raise E._err(f"Insufficient bindings: rule {name} requires argument {i + 1} bound",
                         clause)
    return bpos


def _sources(E, ctx, source):
    if source is None:
        return ctx.sources
    return {**ctx.sources, E.DOLLAR: E._src(ctx, source, None)}


def call(ctx, clause) -> None:
    """Evaluate the rule call ``clause`` in ``ctx``: join its answers into ``ctx``'s relations.

    The engine's clause dispatch calls this for every ``(rule arg ...)``; the answers are
    complete unless the call comes from inside the fixpoint of its own SCC.

    >>> from fastdatomic.query.engine import q
    >>> sorted(q('[:find ?a ?b :in $ % :where (r ?a ?b)]', [(1, 2), (2, 3)],
    ...          '[[(r ?a ?b) [?a ?b]] [(r ?a ?b) [?a ?m] (r ?m ?b)]]'))
    [(1, 2), (1, 3), (2, 3)]
    """
    E = _engine()
    tabs = ctx.tables
    name, rule = _resolve(E, ctx, clause)
    if tabs.strata is None:
        tabs.strata = Strata(ctx.rules)
    tabs.strata.check(name)
    bpos = _bound_positions(E, ctx, clause, name, rule)
    args = clause.args
    base = ctx.take([args[i] for i in bpos if type(args[i]) is Variable])
    if bpos:
        pick = [(0, base.vars.index(args[i])) if type(args[i]) is Variable else (1, args[i].value)
                for i in bpos]
        seeds = {tuple(row[x] if k == 0 else x for k, x in pick) for row in base.rows}
    else:
        seeds = {()}
    tab = tabs.table(name, rule, bpos, _sources(E, ctx, clause.source))
    tabs.add_seeds(tab, seeds)
    if tab.scc in tabs.running:
        # From a whole-branch pass inside this SCC's fixpoint: what is known now; the
        # pass is repeated while the SCC changes.
        ans = tab.current(seeds)
    else:
        if tab.fresh:
            _solve(ctx, tabs, tab.scc)
        ans = tab.known(seeds)
    out_vars, pos, eqs = E._out_spec(args)
    rows = [tuple(a[i] for i in pos) for a in ans if not any(a[i] != a[j] for i, j in eqs)]
    ctx.rels.append(base)
    ctx.add(E.Rel(out_vars, list(dict.fromkeys(rows))))


def _solve(ctx, tabs, scc):
    """Run the fixpoint of ``scc`` until no table in it gains a seed or an answer."""
    tabs.running.add(scc)
    try:
        tables = tabs.scc_tables[scc]
        naive = scc in tabs.strata.naive_sccs
        while True:
            ctx.check()
            _stats()["rounds"] += 1
            busy = False
            for t in list(tables):
                if t.fresh:
                    fresh, t.fresh = t.fresh, []
                    _eval_seeds(ctx, tabs, t, fresh)
                    busy = True
            for t in list(tables):
                if t.pending:
                    delta, t.pending = t.pending, []
                    _push(ctx, tabs, t, delta)
                    busy = True
            if busy:
                continue
            if naive and tabs.naive_at.get(scc) != tabs.version[scc]:
                tabs.naive_at[scc] = tabs.version[scc]
                for t in list(tables):
                    _eval_whole(ctx, tabs, t)
                continue
            break
    finally:
        tabs.running.discard(scc)


def _seeded(ctx, t, br, seeds):
    """A child context for branch ``br`` of ``t`` holding the seeds over its head variables."""
    E = _engine()
    child = ctx.child(t.sources)
    head = br.vars.all
    seed_vars = [head[i] for i in t.bpos]
    if seed_vars:
        sv = list(dict.fromkeys(seed_vars))
        if len(sv) != len(seed_vars):
            # a head like (r ?x ?x): seeds must agree on repeated variables
            idx = [seed_vars.index(v) for v in sv]
            rows = [tuple(s[i] for i in idx) for s in seeds
                    if all(s[i] == s[seed_vars.index(seed_vars[i])] for i in range(len(s)))]
        else:
            rows = list(seeds)
        child.rels.append(E.Rel(sv, rows))
    return child


def _eval_seeds(ctx, tabs, t, seeds):
    _stats()["seed_rows"] += len(seeds)
    for b, (br, plan) in enumerate(zip(t.rule.branches, tabs.strata.plans[t.name])):
        if plan.arity_ok and not plan.naive:
            _run_from(ctx, tabs, t, b, 0, _seeded(ctx, t, br, seeds))


def _eval_whole(ctx, tabs, t):
    E = _engine()
    for br, plan in zip(t.rule.branches, tabs.strata.plans[t.name]):
        if plan.arity_ok and plan.naive and t.seeds:
            _stats()["naive"] += 1
            child = _seeded(ctx, t, br, t.seeds)
            for c in br.clauses:
                E._clause(child, c)
            _collect(E, tabs, t, br, child)


def _run_from(ctx, tabs, t, b, start, child):
    """Evaluate clauses ``start..`` of branch ``b`` of ``t`` in ``child``; record answers."""
    E = _engine()
    br = t.rule.branches[b]
    plan = tabs.strata.plans[t.name][b]
    clauses = br.clauses
    for j in range(start, len(clauses)):
        c = clauses[j]
        if j in plan.sites:
            rel = _enter_site(E, tabs, t, b, j, child, c, plan.live[j])
            child = ctx.child(t.sources)
            child.rels.append(rel)
        else:
            E._clause(child, c)
    _collect(E, tabs, t, br, child)


def _enter_site(E, tabs, t, b, j, child, clause, live):
    """Store the rows reaching site ``j``, seed its callee, join them with known answers."""
    name, rule = _resolve(E, child, clause)
    bpos = _bound_positions(E, child, clause, name, rule)
    callee = tabs.table(name, rule, bpos, _sources(E, child, clause.source))
    # One relation over the variables still used: the others cannot change the answers
    # (an empty one empties them all).
    rel, dead = E.Rel((), [()]), False
    for r in child.rels:
        if live.intersection(r.vars):
            rel = child.join(rel, r)
        elif not r.rows:
            dead = True
    site = tabs.site(t, b, j, callee, rel.vars, clause)
    rows = [] if dead else rel.rows
    if rel.vars != site.vars:
        # same variables, other column order (joins put the smaller side first)
        g = _key_fn([rel.vars.index(v) for v in site.vars])
        rows = [g(r) for r in rows]
    seen = site.rows
    new = [r for r in dict.fromkeys(rows) if r not in seen]
    seen.update(new)
    _stats()["site_rows"] += len(new)
    by_key, key = site.by_key, site.key
    groups = {}
    for r in new:
        groups.setdefault(key(r), []).append(r)
    for k, rs in groups.items():
        by_key.setdefault(k, []).extend(rs)
    tabs.add_seeds(callee, set(groups))
    get = callee.index.get
    return E.Rel(site.out_vars, site.join((rs, get(k, ())) for k, rs in groups.items()))


def _push(ctx, tabs, u, delta):
    """Make ``delta`` (new answers of ``u``) known, and run it through the sites calling ``u``."""
    E = _engine()
    _stats()["delta_rows"] += len(delta)
    index, kf = u.index, u.keyf
    # Indexed first: rows reaching a site from here on meet these answers on arrival.
    groups = {}
    for a in delta:
        groups.setdefault(kf(a), []).append(a)
    for k, ans in groups.items():
        index.setdefault(k, []).extend(ans)
    for site in list(tabs.by_callee.get(u.key, ())):
        ctx.check()
        get = site.by_key.get
        rows = site.join((get(k, ()), ans) for k, ans in groups.items())
        if rows:
            child = ctx.child(site.table.sources)
            child.rels.append(E.Rel(site.out_vars, rows))
            _run_from(ctx, tabs, site.table, site.branch, site.pos + 1, child)


def _collect(E, tabs, t, br, child):
    """Add the head tuples bound in ``child`` to ``t``'s answers."""
    head = br.vars.all
    have = child.bound()
    lacking = [v for v in head if v not in have]
    if lacking:
        raise E.QueryError(f"rule {t.rule.name.symbol} does not bind " +
                           " ".join(str(v) for v in lacking))
    uniq = tuple(dict.fromkeys(head))
    res = child.result(uniq)
    if len(uniq) == len(head):
        got = res.rows
    else:
        idx = [uniq.index(v) for v in head]
        got = [tuple(r[i] for i in idx) for r in res.rows]
    tabs.add_answers(t, got)
