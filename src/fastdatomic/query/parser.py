"""Parse Datomic Datalog queries and rules into the records of :mod:`fastdatomic.query.ast`.

>>> q = parse_query('[:find ?e :where [?e :name "Ivan"]]')
>>> q.find
FindRel(elements=(Variable(symbol=Symbol('?e')),))
>>> q.where[0].to_edn()
'[?e :name "Ivan"]'

A query is EDN text, or Python data in vector form ``[":find", "?e", ":where", [...]]``
or map form ``{":find": [...], ":in": [...], ":where": [...]}`` (keys ``Keyword`` or
``":find"`` strings). Only the map form takes the extensions ``:order-by``, ``:limit``,
``:offset`` and ``:timeout``.

Python-data convention (EDN text is unambiguous; Python has no symbol literal): wherever
the grammar allows a symbol, a ``str`` stands for one by its first character -- ``"?x"`` a
variable, ``"$"``/``"$src"`` a source, ``"%"`` the rules var, ``"_"`` the placeholder,
``"..."`` the collection ellipsis and ``"."`` the scalar dot; a plain string at the head of
a *tuple* (``("pull", "?e", [...])``, ``(">", "?x", 1)``, ``("my-rule", "?a")``,
``("not", ...)``) is a function, aggregate, rule or operator name (``"not"``, ``"or"``, ...
also head lists). Tuples are EDN lists ``(..)``, lists are vectors. Every other string is a
string constant, except that a ``":ns/name"`` string in the *attribute* position of a data
pattern is a keyword. To match a string constant that looks like a variable, wrap it:
``Constant("?not-a-var")``. Values of other types (Keyword, Symbol, numbers, ...) are taken as is.

Parsed queries are cached: an LRU of ``CACHE_SIZE`` entries keyed by the EDN text, or by a
frozen, type-tagged copy of the Python data, so parsing the same query again returns the
same (immutable) :class:`Query` object. Rule sets given to :func:`parse_rules` are cached the
same way.

Validated here: the grammar's shapes, unknown query keys, unbound find / :with / predicate /
function variables, ``not``/``not-join`` joins, ``or`` branch variables, ``or-join`` rule-vars,
:keys counts, :in duplicates, aggregates outside :find, unknown source vars, a rule call
without ``%``, the map-form extensions, and rule arities. Left to the engine (TODO): anything
that needs a database or the call's arguments -- unknown attributes or idents, the number and
shape of inputs, whether rule invocations name defined rules with the right arity, whether
function and aggregate names resolve, and pull pattern syntax.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from threading import Lock

from fastdatomic import edn
from fastdatomic.errors import QueryParseError
from fastdatomic.query.ast import (
    Aggregate, And, BindColl, BindIgnore, BindRel, BindScalar, BindTuple, Constant,
    FindColl, FindRel, FindScalar, FindTuple, Function, Not, NotJoin, Or, OrderKey, OrJoin,
    Pattern, PlainSymbol, Placeholder, Predicate, Pull, Query, ReturnMap, Rule, RuleBranch,
    RuleExpr, RulesVar, RuleVars, SrcVar, Variable, bound_vars, free_vars, scopes,
)
from fastdatomic.types import Keyword, Symbol

__all__ = ["parse_query", "parse_rules", "QueryParseError", "CACHE_SIZE", "clear_cache"]

#: How many parsed queries (and rule sets) the LRU cache keeps.
CACHE_SIZE = 1024

_QUERY_KEYS = ("find", "keys", "strs", "syms", "with", "in", "where")
_MAP_ONLY_KEYS = ("order-by", "limit", "offset", "timeout")
_OPS = frozenset(("not", "not-join", "or", "or-join", "and"))
_SEQ = (list, tuple)


# --- errors ------------------------------------------------------------------------

def _show(x) -> str:
    """``x`` as EDN for a message: nodes print themselves; raw data through edn.dumps."""
    if hasattr(x, "to_edn"):
        return x.to_edn()
    try:
        return edn.dumps(x)
    except (TypeError, ValueError):
        return repr(x)


def _fail(message, form=None, **data):
    if form is not None:
        data.setdefault("clause", _show(form))
        message = f"{message} in {data['clause']}"
    raise QueryParseError(message, data=data)


def _fmt_vars(vs) -> str:
    return "#{" + " ".join(sorted(str(v.symbol) for v in vs)) + "}"


# --- terms ----------------------------------------------------------------------------

def _text(x, strings=True):
    """The symbol text of ``x`` (a Symbol, or a str in Python data), else None."""
    if type(x) is Symbol:
        return x.full_name
    if strings and type(x) is str:
        return x
    return None


def _is_kw(x, name):
    return (type(x) is Keyword and x.full_name == name) or (type(x) is str and x == ":" + name)


def _var(x):
    t = _text(x)
    if t is not None and t.startswith("?"):
        return Variable(Symbol(t))
    return None


def _src_var(x):
    t = _text(x)
    if t is not None and t.startswith("$"):
        return SrcVar(Symbol(t))
    return None


def _is(x, text):
    return _text(x) == text


def _plain_symbol(x, strings=True):
    t = _text(x, strings)
    if t and t[0] not in "?$%" and t not in ("_", "...", "."):
        return PlainSymbol(Symbol(t))
    return None


def _need_var(x, where, form):
    v = _var(x)
    if v is None:
        _fail(f"expected a variable (a symbol starting with ?) {where}, got {_show(x)}", form)
    return v


def _fn_arg(x, form):
    """fn-arg = (variable | constant | src-var)"""
    if type(x) is Constant:
        return x
    v = _var(x) or _src_var(x)
    if v is not None:
        return v
    if _is(x, "_") or _is(x, "%") or _is(x, "..."):
        _fail(f"'{_text(x)}' cannot be a function argument", form)
    if type(x) is edn.Form and x and _plain_symbol(x[0]):
        _fail("nested expressions are not allowed as arguments (bind the inner call with its "
              f"own clause): {_show(x)}", form)
    return Constant(x)


def _term(x, form, attr_pos=False):
    """(variable | constant | '_') in a data pattern or a rule call."""
    if type(x) is Constant:
        return x
    v = _var(x)
    if v is not None:
        return v
    if _is(x, "_"):
        return Placeholder()
    if _src_var(x) is not None:
        _fail(f"source var {_text(x)} is only allowed first in a clause", form)
    if attr_pos and type(x) is str and x.startswith(":") and len(x) > 1:
        return Constant(Keyword(x))
    return Constant(x)


# --- bindings ----------------------------------------------------------------------------

def _tuple_elems(items, form):
    if not items:
        _fail("a binding tuple needs at least one variable or _", form)
    out = []
    for x in items:
        if _is(x, "_"):
            out.append(Placeholder())
        else:
            out.append(_need_var(x, "in a binding", form))
    return tuple(out)


def _binding(x, form):
    """binding = (bind-scalar | bind-tuple | bind-coll | bind-rel), or '_'"""
    if _is(x, "_"):
        return BindIgnore()
    v = _var(x)
    if v is not None:
        return BindScalar(v)
    if type(x) is list:
        if len(x) == 2 and _is(x[1], "..."):
            return BindColl(_need_var(x[0], "in a collection binding [?x ...]", form))
        if len(x) == 1 and type(x[0]) is list:
            return BindRel(_tuple_elems(x[0], form))
        return BindTuple(_tuple_elems(x, form))
    if isinstance(x, tuple) and x and _plain_symbol(x[0]):
        _fail(f"aggregates and function calls are only allowed in :find, not as a binding: {_show(x)}", form)
    _fail(f"cannot parse binding {_show(x)}, expected ?x, [?a ?b], [?x ...], [[?a ?b]] or _", form)


# --- :find -------------------------------------------------------------------------------------

def _find_elem(x, form):
    """find-elem = (variable | pull-expr | aggregate)"""
    v = _var(x)
    if v is not None:
        return v
    if type(x) is edn.Form or type(x) is tuple:
        if not x:
            _fail("empty expression in :find", form)
        if _is(x[0], "pull"):
            rest = x[1:]
            src = _src_var(rest[0]) if rest else None
            if src is not None:
                rest = rest[1:]
            if len(rest) != 2:
                _fail(f"cannot parse {_show(x)}, expected (pull src-var? ?e pattern)", form)
            var = _need_var(rest[0], "as the entity of pull", form)
            pat = rest[1]
            if type(pat) is Symbol or (type(pat) is str and not pat.startswith(":")):
                name = _plain_symbol(pat)
                if name is None:
                    _fail(f"pull pattern must be a pattern literal or a pattern name, got {_show(pat)}", form)
                pat = name
            elif type(pat) is not list:
                _fail(f"pull pattern must be a vector or a pattern name, got {_show(pat)}", form)
            return Pull(src, var, pat)
        fn = _plain_symbol(x[0])
        if fn is None:
            _fail(f"cannot parse find element {_show(x)}, expected (aggregate-fn fn-arg+)", form)
        if len(x) < 2:
            _fail(f"aggregate {_show(x)} needs at least one argument", form)
        return Aggregate(fn, tuple(_fn_arg(a, form) for a in x[1:]))
    _fail(f"cannot parse find element {_show(x)}, expected a variable, (pull ...) or an aggregate", form)


def _find(items, form):
    if not items:
        _fail("the :find spec is empty", form)
    if len(items) == 2 and _is(items[1], "."):
        return FindScalar(_find_elem(items[0], form))
    if len(items) == 1 and type(items[0]) is list:
        inner = items[0]
        if len(inner) == 2 and _is(inner[1], "..."):
            return FindColl(_find_elem(inner[0], form))
        if not inner:
            _fail("an empty find tuple []", form)
        return FindTuple(tuple(_find_elem(e, form) for e in inner))
    for e in items:
        if type(e) is list or _is(e, ".") or _is(e, "..."):
            _fail(f"unknown find spec shape: {_show(e)} (expected ?a ?b, [?x ...], [?a ?b] or ?x .)", form)
    return FindRel(tuple(_find_elem(e, form) for e in items))


# --- :where clauses --------------------------------------------------------------------------

def _clause(x, in_or=False):
    if type(x) not in (list, tuple, edn.Form):
        _fail(f"cannot parse clause {_show(x)}, expected a vector or list", x)
    if not x:
        _fail("empty clause", x)
    is_list = type(x) is not list  # Form or Python tuple
    source = _src_var(x[0])
    body = x[1:] if source is not None else x
    if not body:
        _fail("a clause needs more than a source var", x)
    head = body[0]
    op = _text(head) if (type(head) is Symbol or type(head) is str) else None
    if op in _OPS:
        rest = body[1:]
        if op == "and":
            if not in_or or source is not None:
                _fail("'and' is only allowed directly inside 'or' / 'or-join'", x)
            if not rest:
                _fail("cannot parse 'and' clause, expected (and clause+)", x)
            return And(tuple(_clause(c) for c in rest))
        if op == "not":
            if not rest:
                _fail("cannot parse 'not' clause, expected (src-var? not clause+)", x)
            return Not(source, tuple(_clause(c) for c in rest))
        if op == "not-join":
            if len(rest) < 2 or type(rest[0]) is not list or not rest[0]:
                _fail("cannot parse 'not-join' clause, expected (src-var? not-join [?var+] clause+)", x)
            vars_ = tuple(_need_var(v, "in not-join vars", x) for v in rest[0])
            _distinct(vars_, "not-join vars", x)
            return NotJoin(source, vars_, tuple(_clause(c) for c in rest[1:]))
        if op == "or":
            if not rest:
                _fail("cannot parse 'or' clause, expected (src-var? or clause+)", x)
            return Or(source, tuple(_clause(c, in_or=True) for c in rest))
        # or-join
        if len(rest) < 2:
            _fail("cannot parse 'or-join' clause, expected (src-var? or-join rule-vars clause+)", x)
        return OrJoin(source, _rule_vars(rest[0], x, "or-join"), tuple(_clause(c, in_or=True) for c in rest[1:]))
    if source is None and (type(head) is edn.Form or type(head) is tuple):
        # pred-expr = [[pred fn-arg+]]; fn-expr = [[fn fn-arg+] binding]
        if len(x) > 2:
            _fail("cannot parse expression clause, expected [(pred args)] or [(fn args) binding]", x)
        if not head:
            _fail("empty function call ()", x)
        fn = _var(head[0]) or _plain_symbol(head[0])
        if fn is None:
            _fail(f"function name must be a plain symbol or a variable, got {_show(head[0])}", x)
        if len(head) < 2:
            _fail(f"function call {_show(head)} needs at least one argument", x)
        args = tuple(_fn_arg(a, x) for a in head[1:])
        if len(x) == 1:
            return Predicate(fn, args)
        return Function(fn, args, _binding(x[1], x))
    name = _plain_symbol(head, strings=is_list) if type(head) is not edn.Form else None
    if name is not None and (type(head) is Symbol or is_list):
        # rule-expr = [src-var? rule-name (variable | constant | '_')+]
        if len(body) < 2:
            _fail(f"rule call ({name.symbol}) needs at least one argument", x)
        return RuleExpr(source, name, tuple(_term(a, x) for a in body[1:]))
    # data-pattern = [src-var? (variable | constant | '_')+]
    if len(body) > 5:
        _fail(f"a data pattern has at most 5 elements [e a v tx added], got {len(body)}", x)
    return Pattern(source, tuple(_term(a, x, attr_pos=(i == 1)) for i, a in enumerate(body)))


def _rule_vars(x, form, what):
    """rule-vars = [variable+ | ([variable+] variable*)]"""
    if type(x) is not list or not x:
        _fail(f"cannot parse {what} vars {_show(x)}, expected [?var+] or [[?required+] ?var*]", form)
    required = ()
    items = x
    if type(x[0]) is list:
        if not x[0]:
            _fail(f"empty required vars [] in {what} vars", form)
        required = tuple(_need_var(v, f"in {what} required vars", form) for v in x[0])
        items = x[1:]
    free = tuple(_need_var(v, f"in {what} vars", form) for v in items)
    rv = RuleVars(required, free)
    _distinct(rv.all, f"{what} vars", form)
    return rv


def _distinct(vars_, what, form):
    seen = set()
    for v in vars_:
        if v in seen:
            _fail(f"{what} must be distinct, {v.symbol} appears twice", form)
        seen.add(v)


# --- scope checks -----------------------------------------------------------------------------

def _branches(c):
    return [b.clauses if type(b) is And else (b,) for b in c.clauses]


def _check(clauses, outer):
    """Check variable scoping of ``clauses`` given the vars ``outer`` makes available."""
    for c, others in zip(clauses, scopes(clauses, outer)):
        t = type(c)
        if t is Predicate or t is Function:
            used = {a for a in c.args if type(a) is Variable}
            if type(c.fn) is Variable:
                used.add(c.fn)
            unbound = used - others
            if unbound:
                _fail(f"Query is referencing unbound variables {_fmt_vars(unbound)}: "
                      f"no other clause or input binds them", c)
        elif t is Not:
            fv = free_vars(c)
            if not fv & others:
                _fail(f"Insufficient bindings, none of {_fmt_vars(fv)} is bound outside the 'not' clause "
                      "(a not must join the query on at least one variable)", c)
            _check(c.clauses, others)
        elif t is NotJoin:
            unbound = set(c.vars) - others
            if unbound:
                _fail(f"not-join vars must be bound, {_fmt_vars(unbound)} is not bound outside", c)
            body = frozenset().union(*(free_vars(d) for d in c.clauses))
            unused = set(c.vars) - body
            if unused:
                _fail(f"not-join vars {_fmt_vars(unused)} are not used in its body", c)
            _check(c.clauses, set(c.vars))
        elif t is Or:
            sets = [frozenset().union(*(free_vars(d) for d in br)) for br in _branches(c)]
            if any(s != sets[0] for s in sets):
                had = " ".join(_fmt_vars(s) for s in sets)
                _fail(f"All clauses in 'or' must use same set of free vars, had [{had}] "
                      "(use or-join to name the shared ones)", c)
            for br in _branches(c):
                _check(br, others)
        elif t is OrJoin:
            unbound = set(c.rule_vars.required) - others
            if unbound:
                _fail(f"Insufficient bindings: required vars {_fmt_vars(unbound)} of or-join are not bound outside", c)
            join = set(c.rule_vars.all)
            for br in _branches(c):
                fv = frozenset().union(*(free_vars(d) for d in br))
                missing = join - fv
                if missing:
                    _fail(f"or-join vars {_fmt_vars(missing)} are not used in branch "
                          f"{_show(br[0] if len(br) == 1 else And(tuple(br)))}", c)
                _check(br, join)


def _collect(node, kind, out):
    """All nodes of type ``kind`` inside ``node`` (tuples and dataclass fields walked)."""
    if type(node) is kind:
        out.append(node)
    if isinstance(node, tuple):
        for x in node:
            _collect(x, kind, out)
    elif hasattr(node, "__dataclass_fields__"):
        for f in node.__dataclass_fields__:
            _collect(getattr(node, f), kind, out)
    return out


# --- the query ----------------------------------------------------------------------------

def _key_name(k):
    if type(k) is Keyword:
        return k.full_name
    if type(k) is str and k.startswith(":"):
        return k[1:]
    return None


def _sections(q):
    if isinstance(q, dict):
        out = {}
        for k, v in q.items():
            name = _key_name(k)
            if name not in _QUERY_KEYS and name not in _MAP_ONLY_KEYS:
                _fail(f"unknown query key {_show(k)}; expected one of "
                      + " ".join(":" + n for n in _QUERY_KEYS + _MAP_ONLY_KEYS), key=_show(k))
            if name in out:
                _fail(f"query key :{name} given twice")
            if name in _MAP_ONLY_KEYS:
                out[name] = v
            else:
                if type(v) not in (list, tuple):
                    _fail(f"the value of :{name} must be a vector, got {_show(v)}")
                out[name] = list(v)
        return out
    if type(q) is not list:
        _fail(f"a query must be EDN text, a vector or a map, got {type(q).__name__}")
    out = {}
    current = None
    for x in q:
        name = _key_name(x)
        if name is not None:
            if name in _MAP_ONLY_KEYS:
                _fail(f":{name} is only allowed in the map form of a query ({{:find [...] :{name} ...}})")
            if name not in _QUERY_KEYS:
                _fail(f"unknown query key {_show(x)}; expected one of " + " ".join(":" + n for n in _QUERY_KEYS),
                      key=_show(x))
            if name in out:
                _fail(f"query key :{name} given twice")
            out[name] = current = []
        elif current is None:
            _fail(f"a query must start with :find, got {_show(x)}")
        else:
            current.append(x)
    return out


def _nonneg_int(v, name):
    if type(v) is not int or v < 0:
        _fail(f":{name} must be an integer >= 0, got {_show(v)}")
    return v


def _build(q) -> Query:
    sec = _sections(q)
    for name, items in sec.items():
        if name not in _MAP_ONLY_KEYS and not items:
            _fail(f"query key :{name} has no values")
    if "find" not in sec:
        _fail("a query needs :find")
    find = _find(sec["find"], [Keyword("find"), *sec["find"]])

    # return maps
    keys = None
    kinds = [k for k in ("keys", "syms", "strs") if k in sec]
    if len(kinds) > 1:
        _fail("only one of :keys, :syms and :strs may be given")
    if kinds:
        kind = kinds[0]
        form = [Keyword(kind), *sec[kind]]
        names = []
        for n in sec[kind]:
            p = _plain_symbol(n)
            if p is None:
                _fail(f":{kind} names must be plain symbols, got {_show(n)}", form)
            names.append(p.symbol.full_name)
        if type(find) not in (FindRel, FindTuple):
            _fail(f":{kind} needs a relation or tuple find spec, not {find.to_edn()}", form)
        if len(names) != len(find.elements):
            _fail(f"Count of :{kind} ({len(names)}) does not match count of :find ({len(find.elements)})", form)
        if len(set(names)) != len(names):
            _fail(f":{kind} names must be distinct", form)
        keys = ReturnMap(kind, tuple(names))

    # :with
    with_ = ()
    if "with" in sec:
        form = [Keyword("with"), *sec["with"]]
        for x in sec["with"]:
            if isinstance(x, tuple):
                _fail(f"aggregates are only allowed in :find, not in :with: {_show(x)}", form)
        with_ = tuple(_need_var(x, "in :with", form) for x in sec["with"])
        _distinct(with_, ":with vars", form)

    # :in
    inputs = []
    rules_var = None
    raw_in = sec.get("in", [Symbol("$")])
    in_form = [Keyword("in"), *raw_in]
    for x in raw_in:
        s = _src_var(x)
        if s is not None:
            inputs.append(s)
        elif _is(x, "%"):
            rules_var = RulesVar()
            inputs.append(rules_var)
        elif (type(x) is Symbol or type(x) is str) and _plain_symbol(x) is not None:
            inputs.append(_plain_symbol(x))  # pattern-name (a pull pattern input)
        else:
            inputs.append(_binding(x, in_form))
    seen = set()
    for i in inputs:
        for k in (i.vars() if hasattr(i, "vars") else (i,)):
            if type(k) is BindIgnore:
                continue
            if k in seen:
                _fail(f"duplicate :in input {k.to_edn()}", in_form)
            seen.add(k)
    in_vars = frozenset(v for i in inputs if hasattr(i, "vars") for v in i.vars())

    # :where
    where = []
    for idx, c in enumerate(sec.get("where", ())):
        try:
            where.append(_clause(c))
        except QueryParseError as e:
            raise _at(e, idx, c) from None
    where = tuple(where)
    try:
        _check_top(where, in_vars)
    except QueryParseError as e:
        idx = e.data.pop("_index")
        raise _at(e, idx, where[idx]) from None

    where_vars = frozenset().union(*(bound_vars(c) for c in where))
    bound = where_vars | in_vars
    unbound = [v for v in find.vars() if v not in bound]
    if unbound:
        _fail(f"Query is referencing unbound variables {_fmt_vars(unbound)}: :find uses them but "
              ":where and :in bind none of them", [Keyword("find"), *sec["find"]])
    unbound = [v for v in with_ if v not in bound]
    if unbound:
        _fail(f"Query is referencing unbound variables {_fmt_vars(unbound)} in :with",
              [Keyword("with"), *sec["with"]])
    shared = set(with_) & set(find.vars())
    if shared:
        _fail(f":find and :with must not share variables: {_fmt_vars(shared)}", [Keyword("with"), *sec["with"]])

    # sources, rules and pull pattern names
    in_sources = {i for i in inputs if type(i) is SrcVar}
    for idx, c in enumerate(where):
        for s in _collect(c, SrcVar, []):
            if s not in in_sources:
                raise _at(QueryParseError(f"Where uses unknown source var {s.symbol} (not in :in)",
                                          data={}), idx, c)
        if rules_var is None and _collect(c, RuleExpr, []):
            raise _at(QueryParseError("rule call without rules: add % to :in", data={}), idx, c)
    for e in find.elements:
        if type(e) is Pull:
            if type(e.pattern) is PlainSymbol and e.pattern not in inputs:
                _fail(f"pull pattern name {e.pattern.symbol} is not given in :in", e)
            if e.source is not None and e.source not in in_sources:
                _fail(f"unknown source var {e.source.symbol} (not in :in)", e)

    # map-form extensions
    order_by = ()
    if "order-by" in sec:
        ob = sec["order-by"]
        if type(ob) not in (list, tuple) or not ob:
            _fail(f":order-by must be a non-empty vector, got {_show(ob)}")
        ok = set(find.vars()) | set(with_)
        keys_ = []
        for x in ob:
            desc = False
            if type(x) is list:
                if len(x) != 2 or not (_is_kw(x[1], "asc") or _is_kw(x[1], "desc")):
                    _fail(f"cannot parse :order-by entry {_show(x)}, expected ?var or [?var :asc|:desc]")
                desc = _is_kw(x[1], "desc")
                x = x[0]
            if isinstance(x, tuple):
                _fail(f"aggregates are only allowed in :find, not in :order-by: {_show(x)}")
            v = _var(x)
            if v is None:
                _fail(f":order-by entries must be variables, got {_show(x)}")
            if v not in ok:
                _fail(f":order-by variable {v.symbol} is not in :find or :with")
            keys_.append(OrderKey(v, desc))
        order_by = tuple(keys_)
    limit = _nonneg_int(sec["limit"], "limit") if "limit" in sec else None
    offset = _nonneg_int(sec["offset"], "offset") if "offset" in sec else None
    timeout = _nonneg_int(sec["timeout"], "timeout") if "timeout" in sec else None

    return Query(find=find, keys=keys, with_=with_, inputs=tuple(inputs), where=where,
                 rules_var=rules_var, order_by=order_by, limit=limit, offset=offset, timeout=timeout)


def _check_top(where, in_vars):
    """Run :meth:`_check` per top-level clause, remembering which one failed (``_index``)."""
    for i, (c, others) in enumerate(zip(where, scopes(where, in_vars))):
        try:
            # check c alone, with everything the rest of the query binds as its outer scope
            _check((c,), others)
        except QueryParseError as e:
            e.data["_index"] = i
            raise


def _at(e: QueryParseError, idx: int, clause) -> QueryParseError:
    """``e`` again, naming the :where clause ``idx`` (as EDN) it happened in."""
    top = _show(clause)
    data = {**e.data, "index": idx, "where_clause": top}
    inner = data.setdefault("clause", top)
    if "clause" not in e.data:
        msg = f"{e.message} in {top} (:where clause #{idx})"
    elif inner == top:
        msg = f"{e.message} (:where clause #{idx})"
    else:
        msg = f"{e.message}, inside {top} (:where clause #{idx})"
    return QueryParseError(msg, data=data)


# --- rules ---------------------------------------------------------------------------------

def _build_rules(form) -> tuple:
    if type(form) is not list:
        _fail(f"rules must be a vector of rule definitions [[(name ?a ...) clause+] ...], got {_show(form)}")
    by_name: dict = {}
    for r in form:
        if not isinstance(r, (list, tuple)) or len(r) < 2:
            _fail("cannot parse rule, expected [(rule-name rule-vars) clause+]", r)
        head = r[0]
        if not isinstance(head, (list, tuple)) or not head:
            _fail("cannot parse rule head, expected (rule-name rule-vars)", r)
        name = _plain_symbol(head[0])
        if name is None or name.symbol.ns is not None or name.symbol.full_name in _OPS:
            _fail(f"rule name must be an unqualified plain symbol, got {_show(head[0])}", r)
        rv = _rule_vars(list(head[1:]), r, "rule")
        try:
            clauses = tuple(_clause(c) for c in r[1:])
            _check(clauses, set(rv.all))
        except QueryParseError as e:
            raise QueryParseError(f"{e.message} (in rule {_show(r)})", data={**e.data, "rule": _show(r)}) from None
        branch = RuleBranch(name, rv, clauses)
        prev = by_name.setdefault(name, [])
        if prev and prev[0].vars.arity != rv.arity:
            _fail(f"Arity mismatch for rule '{name.symbol}': {prev[0].vars.to_edn()} vs. {rv.to_edn()}", r)
        prev.append(branch)
    return tuple(Rule(n, tuple(bs)) for n, bs in by_name.items())


# --- cache and entry points -------------------------------------------------------------------

_cache: OrderedDict = OrderedDict()
_lock = Lock()


def _freeze(x):
    """A hashable key for Python data that keeps vectors, lists, strs, symbols and numbers apart."""
    t = type(x)
    if t is list:
        return ("[", *map(_freeze, x))
    if t is tuple or t is edn.Form:
        return ("(", *map(_freeze, x))
    if t is dict:
        return ("{", *((_freeze(k), _freeze(v)) for k, v in x.items()))
    if t is set or t is frozenset:
        return ("#{", frozenset(map(_freeze, x)))
    if t is str or t is Keyword or t is Symbol:
        return x
    hash(x)
    return (t, x)


def _cached(kind, q, build):
    if isinstance(q, str):
        key = (kind, q)
    else:
        try:
            key = (kind, "data", _freeze(q))
        except TypeError:  # unhashable constant: parse without the cache
            return build(copy.deepcopy(q))
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    if isinstance(q, str):
        try:
            data = edn.loads(q)
        except edn.EdnSyntaxError as e:
            raise QueryParseError(f"query text is not valid EDN: {e}", data=dict(e.data)) from None
    else:
        data = copy.deepcopy(q)  # the AST must not share lists the caller may mutate
    value = build(data)
    with _lock:
        _cache[key] = value
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def parse_query(q) -> Query:
    """Parse a Datalog query (EDN text, or Python data in vector or map form) into a :class:`Query`.

    Raises :class:`QueryParseError` naming the offending clause (as EDN, with its index in
    :where). Results are cached (LRU, ``CACHE_SIZE``): the same text or data gives the same object.
    """
    if isinstance(q, Query):
        return q
    return _cached("query", q, _build)


def parse_rules(rules):
    """Parse a rule set (the ``%`` input; EDN text or Python data) into a tuple of :class:`Rule`.

    Branches of one name are grouped in order of appearance; their arities must agree.
    """
    return _cached("rules", rules, _build_rules)


def clear_cache():
    with _lock:
        _cache.clear()
