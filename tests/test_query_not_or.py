"""not, not-join, or, or-join, and."""

import pytest

from fastdatomic.errors import FastDatomicError
from fastdatomic.query.engine import q
from test_query_data import people

N = '[?e :person/name ?n]'


def names(r):
    return sorted(x[0] for x in r)


def test_not():
    _, db, _, _ = people()
    assert names(q(f'[:find ?n :where {N} (not [?e :person/email _])]', db)) == ["Cid", "Eve"]
    assert names(q(f'[:find ?n :where {N} (not [?e :person/age ?a] [(< ?a 30)])]', db)) == ["Ann", "Cid", "Eve"]


def test_not_join():
    _, db, _, _ = people()
    # people nobody lists as a friend
    r = q(f'[:find ?n :where {N} (not-join [?e] [?x :person/friend ?e])]', db)
    assert names(r) == ["Dee"]


def test_or():
    _, db, _, _ = people()
    r = q(f'[:find ?n :where {N} (or [?e :person/age 40] [?e :person/tag :admin])]', db)
    assert names(r) == ["Ann", "Cid"]


def test_or_with_and():
    _, db, _, _ = people()
    r = q(f'[:find ?n :where {N} (or-join [?e] (and [?e :person/age ?a] [(< ?a 30)]) [?e :person/age 40])]', db)
    assert names(r) == ["Bob", "Cid", "Dee"]


def test_or_join():
    _, db, _, _ = people()
    r = q(f'[:find ?n :where {N} (or-join [?e] [?o :order/customer ?e] [?e :person/tag :dev])]', db)
    assert names(r) == ["Ann", "Bob", "Cid"]


def test_or_join_required():
    _, db, _, _ = people()
    with pytest.raises(FastDatomicError):
        q('[:find ?e :where (or-join [[?e]] [?e :person/age 40])]', db)


def test_not_unbound_errors():
    _, db, _, _ = people()
    with pytest.raises(FastDatomicError):
        q('[:find ?x :in [?x ...] :where (not-join [?y] [?y :person/age 1])]', db, [1])
