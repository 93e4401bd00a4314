"""The parsed form of a Datalog query: one frozen record per grammar element.

The grammar (Datomic's Query Reference, https://docs.datomic.com/query/query-data-reference.html)
is written above the records that represent it. ``[]`` means list or vector, ``?`` zero or
one, ``+`` one or more, ``|`` choice. Every node has ``to_data()`` (EDN-ready Python data:
symbols as :class:`Symbol`, lists ``(..)`` as :class:`Form`) and ``to_edn()`` (that data as text).

Collections inside nodes are tuples, so nodes are immutable (a ``Constant`` or a pull
pattern may hold a list taken from the query; treat it as read-only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastdatomic.edn import Form, dumps
from fastdatomic.types import Keyword, Symbol

__all__ = [
    "Variable", "SrcVar", "RulesVar", "Placeholder", "Constant", "PlainSymbol",
    "Pull", "Aggregate", "FindRel", "FindColl", "FindScalar", "FindTuple", "ReturnMap",
    "BindIgnore", "BindScalar", "BindTuple", "BindColl", "BindRel",
    "Pattern", "Predicate", "Function", "RuleExpr", "Not", "NotJoin", "Or", "OrJoin", "And",
    "RuleVars", "RuleBranch", "Rule", "OrderKey", "Query",
    "free_vars", "bound_vars", "ARG_TYPES",
]


def _d(x):
    return x.to_data() if hasattr(x, "to_data") else x


class _Node:
    __slots__ = ()

    def to_edn(self) -> str:
        """This node as EDN text (what error messages and explain print)."""
        return dumps(self.to_data())

    def __str__(self):
        return self.to_edn()


# --- terms ---------------------------------------------------------------------
# variable     = symbol starting with "?"
# src-var      = symbol starting with "$"
# rules-var    = the symbol "%"
# plain-symbol = symbol that does not begin with "$", "?", or "%"
# constant     = any non-variable data literal
# '_'          = placeholder (matches anything, binds nothing)

@dataclass(frozen=True, slots=True)
class Variable(_Node):
    symbol: Symbol

    def to_data(self):
        return self.symbol


@dataclass(frozen=True, slots=True)
class SrcVar(_Node):
    symbol: Symbol

    def to_data(self):
        return self.symbol


@dataclass(frozen=True, slots=True)
class RulesVar(_Node):
    def to_data(self):
        return Symbol("%")


@dataclass(frozen=True, slots=True)
class Placeholder(_Node):
    def to_data(self):
        return Symbol("_")


@dataclass(frozen=True, slots=True)
class Constant(_Node):
    value: Any

    def to_data(self):
        return self.value


@dataclass(frozen=True, slots=True)
class PlainSymbol(_Node):
    """A function, aggregate, rule or pull-pattern name."""

    symbol: Symbol

    def to_data(self):
        return self.symbol


#: What may stand as a function / predicate / aggregate argument: fn-arg = (variable | constant | src-var)
ARG_TYPES = (Variable, Constant, SrcVar)


# --- :find ---------------------------------------------------------------------
# find-spec   = ':find' (find-rel | find-coll | find-tuple | find-scalar)
# find-rel    = find-elem+
# find-coll   = [find-elem '...']
# find-scalar = find-elem '.'
# find-tuple  = [find-elem+]
# find-elem   = (variable | pull-expr | aggregate)
# pull-expr   = ['pull' src-var? variable pattern]      ; src-var: as DataScript allows
# pattern     = (pattern-name | pattern-data-literal)
# aggregate   = [aggregate-fn-name fn-arg+]
# fn-arg      = (variable | constant | src-var)

@dataclass(frozen=True, slots=True)
class Pull(_Node):
    source: SrcVar | None
    var: Variable
    pattern: Any  # PlainSymbol (a pattern-name given in :in) or the pattern data literal

    def to_data(self):
        src = (self.source.to_data(),) if self.source else ()
        return Form((Symbol("pull"), *src, self.var.to_data(), _d(self.pattern)))

    def vars(self):
        return (self.var,)


@dataclass(frozen=True, slots=True)
class Aggregate(_Node):
    fn: PlainSymbol
    args: tuple

    def to_data(self):
        return Form((self.fn.to_data(), *(_d(a) for a in self.args)))

    def vars(self):
        return tuple(a for a in self.args if isinstance(a, Variable))


def _elem_vars(e):
    return (e,) if isinstance(e, Variable) else e.vars()


class _Find(_Node):
    __slots__ = ()

    def vars(self):
        """Every variable the find spec mentions (pull and aggregate arguments included)."""
        return tuple(v for e in self.elements for v in _elem_vars(e))


@dataclass(frozen=True, slots=True)
class FindRel(_Find):
    elements: tuple

    def to_data(self):
        return [_d(e) for e in self.elements]  # spliced after :find


@dataclass(frozen=True, slots=True)
class FindColl(_Find):
    element: Any

    @property
    def elements(self):
        return (self.element,)

    def to_data(self):
        return [[_d(self.element), Symbol("...")]]


@dataclass(frozen=True, slots=True)
class FindScalar(_Find):
    element: Any

    @property
    def elements(self):
        return (self.element,)

    def to_data(self):
        return [_d(self.element), Symbol(".")]


@dataclass(frozen=True, slots=True)
class FindTuple(_Find):
    elements: tuple

    def to_data(self):
        return [[_d(e) for e in self.elements]]


# return-map-spec = (return-keys | return-syms | return-strs)
# return-keys     = ':keys' plain-symbol+
# return-syms     = ':syms' plain-symbol+
# return-strs     = ':strs' plain-symbol+

@dataclass(frozen=True, slots=True)
class ReturnMap(_Node):
    kind: str          # "keys" | "syms" | "strs"
    names: tuple       # tuple of str, one per find element

    def result_keys(self) -> tuple:
        """The map keys the engine should use: Keywords, Symbols or strs."""
        make = {"keys": Keyword, "syms": Symbol, "strs": str}[self.kind]
        return tuple(make(n) for n in self.names)

    def to_data(self):
        return [Keyword(self.kind), *(Symbol(n) for n in self.names)]


# --- bindings (:in, and the output of function expressions) ----------------------
# binding     = (bind-scalar | bind-tuple | bind-coll | bind-rel)
# bind-scalar = variable              ; and '_' (BindIgnore), as Datomic accepts
# bind-tuple  = [(variable | '_')+]
# bind-coll   = [variable '...']
# bind-rel    = [[(variable | '_')+]]

@dataclass(frozen=True, slots=True)
class BindIgnore(_Node):
    def to_data(self):
        return Symbol("_")

    def vars(self):
        return ()


@dataclass(frozen=True, slots=True)
class BindScalar(_Node):
    var: Variable

    def to_data(self):
        return self.var.to_data()

    def vars(self):
        return (self.var,)


@dataclass(frozen=True, slots=True)
class BindTuple(_Node):
    elements: tuple  # of Variable | Placeholder

    def to_data(self):
        return [_d(e) for e in self.elements]

    def vars(self):
        return tuple(e for e in self.elements if isinstance(e, Variable))


@dataclass(frozen=True, slots=True)
class BindColl(_Node):
    var: Variable

    def to_data(self):
        return [self.var.to_data(), Symbol("...")]

    def vars(self):
        return (self.var,)


@dataclass(frozen=True, slots=True)
class BindRel(_Node):
    elements: tuple  # of Variable | Placeholder

    def to_data(self):
        return [[_d(e) for e in self.elements]]

    def vars(self):
        return tuple(e for e in self.elements if isinstance(e, Variable))


# inputs = ':in' (src-var | binding | pattern-name | rules-var)+   (default: [$])


# --- :where ----------------------------------------------------------------------
# clause            = (not-clause | not-join-clause | or-clause | or-join-clause | expression-clause)
# expression-clause = (data-pattern | pred-expr | fn-expr | rule-expr)
# data-pattern      = [src-var? (variable | constant | '_')+]      ; at most 5: e a v tx added
# pred-expr         = [[pred fn-arg+]]
# fn-expr           = [[fn fn-arg+] binding]
# rule-expr         = [src-var? rule-name (variable | constant | '_')+]
# not-clause        = [src-var? 'not' clause+]
# not-join-clause   = [src-var? 'not-join' [variable+] clause+]
# or-clause         = [src-var? 'or' (clause | and-clause)+]
# or-join-clause    = [src-var? 'or-join' rule-vars (clause | and-clause)+]
# and-clause        = ['and' clause+]
# rule-vars         = [variable+ | ([variable+] variable*)]

def _src(source):
    return (source.to_data(),) if source is not None else ()


@dataclass(frozen=True, slots=True)
class Pattern(_Node):
    source: SrcVar | None  # None: the default source $
    elements: tuple        # Variable | Constant | Placeholder, 1 to 5 of them

    def to_data(self):
        return [*_src(self.source), *(_d(e) for e in self.elements)]


@dataclass(frozen=True, slots=True)
class Predicate(_Node):
    fn: PlainSymbol | Variable  # a variable: the function is an input
    args: tuple

    def to_data(self):
        return [Form((self.fn.to_data(), *(_d(a) for a in self.args)))]


@dataclass(frozen=True, slots=True)
class Function(_Node):
    fn: PlainSymbol | Variable
    args: tuple
    binding: Any  # BindScalar | BindTuple | BindColl | BindRel | BindIgnore

    def to_data(self):
        return [Form((self.fn.to_data(), *(_d(a) for a in self.args))), self.binding.to_data()]


@dataclass(frozen=True, slots=True)
class RuleExpr(_Node):
    source: SrcVar | None
    name: PlainSymbol
    args: tuple  # Variable | Constant | Placeholder

    def to_data(self):
        return Form((*_src(self.source), self.name.to_data(), *(_d(a) for a in self.args)))


@dataclass(frozen=True, slots=True)
class Not(_Node):
    source: SrcVar | None
    clauses: tuple

    def to_data(self):
        return Form((*_src(self.source), Symbol("not"), *(c.to_data() for c in self.clauses)))


@dataclass(frozen=True, slots=True)
class NotJoin(_Node):
    source: SrcVar | None
    vars: tuple  # of Variable
    clauses: tuple

    def to_data(self):
        return Form((*_src(self.source), Symbol("not-join"), [v.to_data() for v in self.vars],
                     *(c.to_data() for c in self.clauses)))


@dataclass(frozen=True, slots=True)
class And(_Node):
    clauses: tuple

    def to_data(self):
        return Form((Symbol("and"), *(c.to_data() for c in self.clauses)))


@dataclass(frozen=True, slots=True)
class Or(_Node):
    source: SrcVar | None
    clauses: tuple  # branches: a clause or an And

    def to_data(self):
        return Form((*_src(self.source), Symbol("or"), *(c.to_data() for c in self.clauses)))


@dataclass(frozen=True, slots=True)
class RuleVars(_Node):
    required: tuple  # Variables that must be bound when called ([?req] part)
    free: tuple

    @property
    def all(self):
        return self.required + self.free

    @property
    def arity(self):
        return (len(self.required), len(self.free))

    def to_data(self):
        req = [[v.to_data() for v in self.required]] if self.required else []
        return req + [v.to_data() for v in self.free]


@dataclass(frozen=True, slots=True)
class OrJoin(_Node):
    source: SrcVar | None
    rule_vars: RuleVars
    clauses: tuple

    def to_data(self):
        return Form((*_src(self.source), Symbol("or-join"), self.rule_vars.to_data(),
                     *(c.to_data() for c in self.clauses)))


# --- rules (the % input) -------------------------------------------------------------
# rule      = [[rule-head clause+]+]
# rule-head = [rule-name rule-vars]
# rule-name = unqualified plain-symbol

@dataclass(frozen=True, slots=True)
class RuleBranch(_Node):
    name: PlainSymbol
    vars: RuleVars
    clauses: tuple

    def to_data(self):
        return [Form((self.name.to_data(), *self.vars.to_data())), *(c.to_data() for c in self.clauses)]


@dataclass(frozen=True, slots=True)
class Rule(_Node):
    """All definitions (branches) of one rule name; a call matches if any branch does."""

    name: PlainSymbol
    branches: tuple

    @property
    def arity(self):
        return self.branches[0].vars.arity

    def to_data(self):
        return [b.to_data() for b in self.branches]


# --- map-form extensions -----------------------------------------------------------------
# order-by = ':order-by' [(variable | [variable (':asc' | ':desc')])+]
# limit / offset / timeout = int >= 0

@dataclass(frozen=True, slots=True)
class OrderKey(_Node):
    var: Variable
    descending: bool = False

    def to_data(self):
        return [self.var.to_data(), Keyword("desc" if self.descending else "asc")]


# --- variables a clause binds / exposes -------------------------------------------------

def free_vars(clause) -> frozenset:
    """Variables a clause shares with its surroundings (a not-join / or-join shows only its join vars)."""
    t = type(clause)
    if t is Pattern:
        return frozenset(e for e in clause.elements if type(e) is Variable)
    if t is RuleExpr:
        return frozenset(e for e in clause.args if type(e) is Variable)
    if t is Predicate or t is Function:
        out = {a for a in clause.args if type(a) is Variable}
        if type(clause.fn) is Variable:
            out.add(clause.fn)
        if t is Function:
            out.update(clause.binding.vars())
        return frozenset(out)
    if t is NotJoin:
        return frozenset(clause.vars)
    if t is OrJoin:
        return frozenset(clause.rule_vars.all)
    # Not, Or, And
    return frozenset().union(*(free_vars(c) for c in clause.clauses))


def bound_vars(clause) -> frozenset:
    """Variables a clause binds (predicates and not-clauses only filter, so bind none)."""
    t = type(clause)
    if t is Pattern or t is RuleExpr:
        return free_vars(clause)
    if t is Function:
        return frozenset(clause.binding.vars())
    if t is Predicate or t is Not or t is NotJoin:
        return frozenset()
    if t is OrJoin:
        return frozenset(clause.rule_vars.all)
    if t is Or:  # branches bind the same vars (checked); take the union to be safe
        return frozenset().union(*(bound_vars(c) for c in clause.clauses))
    return frozenset().union(*(bound_vars(c) for c in clause.clauses))  # And


# --- the query -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Query(_Node):
    find: Any                       # FindRel | FindColl | FindScalar | FindTuple
    keys: ReturnMap | None = None   # :keys / :syms / :strs
    with_: tuple = ()               # of Variable
    inputs: tuple = (SrcVar(Symbol("$")),)
    where: tuple = ()               # of clause nodes
    rules_var: RulesVar | None = None
    order_by: tuple = ()            # of OrderKey
    limit: int | None = None
    offset: int | None = None
    timeout: int | None = None

    def find_vars(self) -> tuple:
        """Variables of the find spec, in order (pull and aggregate arguments included)."""
        return self.find.vars()

    def vars_bound_by_where(self) -> frozenset:
        return frozenset().union(*(bound_vars(c) for c in self.where))

    def vars_bound_by_inputs(self) -> frozenset:
        return frozenset(v for i in self.inputs if hasattr(i, "vars") for v in i.vars())

    def sources(self) -> tuple:
        """The source vars given in :in, in order."""
        return tuple(i for i in self.inputs if type(i) is SrcVar)

    def has_aggregates(self) -> bool:
        return any(type(e) is Aggregate for e in self.find.elements)

    def to_data(self):
        """Vector form; map form when an extension (:order-by, :limit, ...) is set."""
        find = self.find.to_data()
        if self.order_by or self.limit is not None or self.offset is not None or self.timeout is not None:
            m = {Keyword("find"): find}
            if self.keys:
                m[Keyword(self.keys.kind)] = self.keys.to_data()[1:]
            if self.with_:
                m[Keyword("with")] = [v.to_data() for v in self.with_]
            m[Keyword("in")] = [i.to_data() for i in self.inputs]
            if self.where:
                m[Keyword("where")] = [c.to_data() for c in self.where]
            if self.order_by:
                m[Keyword("order-by")] = [o.to_data() for o in self.order_by]
            for k in ("limit", "offset", "timeout"):
                v = getattr(self, k)
                if v is not None:
                    m[Keyword(k)] = v
            return m
        out = [Keyword("find"), *find]
        if self.keys:
            out += self.keys.to_data()
        if self.with_:
            out += [Keyword("with"), *(v.to_data() for v in self.with_)]
        out += [Keyword("in"), *(i.to_data() for i in self.inputs)]
        if self.where:
            out += [Keyword("where"), *(c.to_data() for c in self.where)]
        return out


def scopes(clauses, outer) -> list:
    """For each clause, the variables available around it: ``outer`` plus everything the
    *other* clauses bind. What scoping checks and the planner's "needs" rules read.

    >>> from fastdatomic.types import Symbol
    >>> e, a = Variable(Symbol("?e")), Variable(Symbol("?a"))
    >>> p1 = Pattern(None, (e, Constant(1)))
    >>> p2 = Pattern(None, (e, Constant(2), a))
    >>> [sorted(str(v.symbol) for v in s) for s in scopes([p1, p2], set())]
    [['?a', '?e'], ['?e']]
    """
    binds = [bound_vars(c) for c in clauses]
    out = []
    for i in range(len(clauses)):
        around = set(outer)
        for j, b in enumerate(binds):
            if j != i:
                around |= b
        out.append(around)
    return out
