"""The query engine's C kernels (_core/join.pyx, _core/idset.pyx) against plain Python."""

import gc

from hypothesis import given, settings, strategies as st

from fastdatomic._core.idset import IdSet, IdList
from fastdatomic._core.join import hash_join, product, semi_join, group_by, column, sort_on

vals = st.one_of(st.integers(-3, 6), st.sampled_from(["a", "b", None]))
rows2 = st.lists(st.tuples(vals, vals), max_size=30)
rows3 = st.lists(st.tuples(vals, vals, vals), max_size=30)


@settings(max_examples=200, deadline=None)
@given(a=rows2, b=rows3, ka=st.sampled_from([(0,), (1,), (0, 1)]),
       kb=st.sampled_from([(0,), (2,), (1, 2)]))
def test_hash_join_is_the_nested_loop_join(a, b, ka, kb):
    if len(ka) != len(kb):
        kb = kb[:len(ka)] if len(kb) > len(ka) else kb + (0,)
    rest = tuple(i for i in range(3) if i not in kb)
    want = [x + tuple(y[i] for i in rest) for y in b for x in a
            if tuple(x[i] for i in ka) == tuple(y[i] for i in kb)]
    assert sorted(hash_join(a, ka, b, kb, rest), key=repr) == sorted(want, key=repr)


@settings(max_examples=100, deadline=None)
@given(a=rows2, b=rows3)
def test_product(a, b):
    assert product(a, b) == [x + y for x in a for y in b]


@settings(max_examples=200, deadline=None)
@given(a=rows3, other=st.lists(st.tuples(vals, vals), max_size=20), keep=st.booleans())
def test_semi_and_anti_join(a, other, keep):
    present = set(other)
    want = [r for r in a if ((r[2], r[0]) in present) == keep]
    assert semi_join(a, (2, 0), other, keep) == want
    present1 = {o[0] for o in other}
    assert semi_join(a, (1,), [(o[0],) for o in other], keep) == [r for r in a if (r[1] in present1) == keep]


def test_join_rows_of_atomic_values_are_not_tracked_by_the_gc():
    out = hash_join([(1, "x")], (0,), [(1, 2.5), (1, [3])], (0,), (1,))
    assert out == [(1, "x", 2.5), (1, "x", [3])]
    assert not gc.is_tracked(out[0])      # ints, str, float: never part of a cycle
    assert gc.is_tracked(out[1])          # holds a list: the collector must see it


def test_join_checks_the_deadline_on_long_probes():
    calls = []
    hash_join([(i,) for i in range(10)], (0,), [(i % 10,) for i in range(200_000)], (0,), (),
              lambda: calls.append(1))
    assert len(calls) == 200_000 // 65536


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-2**63, 2**63 - 1), max_size=60), st.integers(-2**63, 2**63 - 1))
def test_idset_membership(xs, y):
    s = IdSet.of_column([(x, "v") for x in xs], 0)
    assert len(s) == len(set(xs))
    assert s.sorted() == sorted(set(xs))
    assert (y in s) == (y in set(xs))


def test_idset_refuses_what_is_not_an_id():
    def of(*xs):
        return IdSet.of_column([(x,) for x in xs], 0)
    assert of(1, "a") is None
    assert of(1, True) is None          # a boolean is not an entity id
    assert of(2**64) is None
    assert of(1, 2.0) is None
    s = of(-2**63, 0)                    # the empty-slot marker is a member too
    assert -2**63 in s and 0 in s and 1 not in s and "x" not in s and len(s) == 2


@settings(max_examples=150, deadline=None)
@given(a=rows3, key=st.sampled_from([(), (0,), (2, 1)]))
def test_group_by_and_column(a, key):
    want = {}
    for r in a:
        want.setdefault(r[key[0]] if len(key) == 1 else tuple(r[i] for i in key), []).append(r)
    got = group_by(a, key)
    assert got == want and list(got) == list(want)     # first-seen order
    assert column(a, 1) == [r[1] for r in a]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), st.integers(0, 3)), max_size=60))
def test_sort_on_is_a_stable_sort_by_the_int(rows):
    assert sort_on(rows, 0) == sorted(rows, key=lambda r: r[0])
    ones = [(r[0],) for r in rows]
    assert sort_on(ones, 0, True) == sorted(set(ones))
    assert sort_on([(1,), ("x",)], 0) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-2**63, 2**63 - 1), max_size=3000))
def test_id_list_sorted_rows(xs):
    lst = IdList()
    for x in xs:
        lst.append(x)
    assert len(lst) == len(xs)
    assert lst.sorted_rows() == [(x,) for x in sorted(set(xs))]
