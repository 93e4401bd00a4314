"""Comparison predicates the index answers: ``[?e :salary ?s] [(> ?s 50000)]`` as a range.

A comparison of a pattern's value variable with a constant (or with a scalar bound by
``:in``) need not be a filter over every datom of the attribute: the key codec keeps
values of one type in value order, so the comparison is a range of encoded values.
For an indexed attribute the scan reads only that range of AVET; for any other it
skips out-of-range keys in C without decoding them. Either way the predicate is then
already true of every row, and the engine does not evaluate it again.

Only comparisons whose meaning the byte order reproduces exactly are taken: ``<``,
``<=``, ``>``, ``>=`` (the built-ins, not a user function of the same name) between a
``:db.type/long`` value and a Python ``int``, or a ``:db.type/string`` value and a
``str``. Anything else (mixed numeric types, nil, instants, doubles with NaN) stays an
ordinary predicate.

>>> from fastdatomic.query.parser import parse_query
>>> pq = parse_query('[:find ?e :where [?e :salary ?s] [(> ?s 50000)] [(<= ?s 60000)]]')
>>> rs = collect(pq.where, {})
>>> [(b.op, b.value) for b in rs[pq.where[0].elements[2]]]
[('>', 50000), ('<=', 60000)]
"""

from __future__ import annotations

from fastdatomic._core.codec import TYPE_LONG, TYPE_STRING, encode_value
from fastdatomic.query.ast import Constant, Predicate, Variable

__all__ = ["Bound", "collect", "encoded_range", "FLIP"]

# ?x OP c, written the other way round: c OP ?x  ==  ?x FLIP[OP] c
FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}

# Value types whose encoded order is exactly the order the built-in comparison uses,
# and the Python type a constant must have for it.
_ORDERED = {TYPE_LONG: int, TYPE_STRING: str}


class Bound:
    """One comparison ``var op value`` taken from a predicate clause."""

    __slots__ = ("clause", "op", "value")

    def __init__(self, clause, op, value):
        self.clause = clause
        self.op = op
        self.value = value

    def __repr__(self):
        return f"Bound({self.op} {self.value!r})"


def collect(where, scalars, is_builtin=None) -> dict:
    """Comparison bounds per variable from the top-level ``where`` clauses.

    ``scalars`` maps a variable bound by ``:in`` to its single value (those count as
    constants); ``is_builtin(symbol)`` says whether a comparison symbol names the
    built-in (a user function registered under ``<`` keeps its own meaning).

    >>> from fastdatomic.query.parser import parse_query
    >>> pq = parse_query('[:find ?e :in $ ?m :where [?e :age ?a] [(< ?m ?a)]]')
    >>> m = pq.inputs[1].var
    >>> [(b.op, b.value) for b in collect(pq.where, {m: 30})[pq.where[0].elements[2]]]
    [('>', 30)]
    """
    out = {}
    for c in where:
        if type(c) is not Predicate or type(c.fn) is Variable or len(c.args) != 2:
            continue
        op = c.fn.symbol.full_name
        if op not in FLIP or (is_builtin is not None and not is_builtin(c.fn.symbol)):
            continue
        x, y = c.args
        if type(x) is Variable and x not in scalars:
            known, val = _value_of(y, scalars)
            var = x
        elif type(y) is Variable and y not in scalars:
            known, val = _value_of(x, scalars)
            var, op = y, FLIP[op]
        else:
            continue
        if known and type(val) in (int, str):
            out.setdefault(var, []).append(Bound(c, op, val))
    return out


def _value_of(el, scalars):
    # (known, value) of a comparison argument: a constant or a scalar bound by :in
    if type(el) is Constant:
        return True, el.value
    if type(el) is Variable and el in scalars:
        return True, scalars[el]
    return False, None


def encoded_range(bounds, vtype):
    """``(lo, lo_incl, hi, hi_incl, used)``: the encoded value range that ``bounds``
    allow for an attribute of ``vtype``, and the bounds it answers; ``None`` when none
    applies. ``lo``/``hi`` are ``None`` on an open side; an empty range is returned as
    is (the scan then yields nothing).

    >>> lo, lo_incl, hi, hi_incl, used = encoded_range([Bound(None, ">", 5)], TYPE_LONG)
    >>> lo == encode_value(TYPE_LONG, 5), lo_incl, hi, len(used)
    (True, False, None, 1)
    """
    want = _ORDERED.get(vtype)
    if want is None:
        return None
    lo = hi = None
    lo_incl = hi_incl = True
    used = []
    for b in bounds:
        if type(b.value) is not want:
            continue
        try:
            enc = encode_value(vtype, b.value)
        except Exception:   # noqa: BLE001 - e.g. an int past 64 bits: leave it a predicate
            continue
        used.append(b)
        if b.op in (">", ">="):
            incl = b.op == ">="
            if lo is None or enc > lo or (enc == lo and not incl):
                lo, lo_incl = enc, incl
        else:
            incl = b.op == "<="
            if hi is None or enc < hi or (enc == hi and not incl):
                hi, hi_incl = enc, incl
    if not used:
        return None
    return lo, lo_incl, hi, hi_incl, used
