"""Index scans against a naive model: tree ⊕ novelty runs, current and history views.

The scan merges a durable tree with several novelty runs and decides per (e a v) group
what a database value sees. Its merge skips comparisons while one source stays the
smallest, clips every source at the end key, and keeps tree leaves alive while a group
spans them; each of those is checked here against a plain sort of every key.
``Scan.select``'s byte-level filters are checked against filtering decoded datoms.
"""

import random

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from fastdatomic._core.codec import (
    INDEX_EAVT, INDEX_AEVT, INDEX_AVET, INDEX_VAET, TYPE_LONG, TYPE_STRING, TYPE_REF,
    encode_key, encode_value, encode_id, decode_key,
)
from fastdatomic._core.idset import IdSet
from fastdatomic._core.scan import Scan, MODE_CURRENT, MODE_HISTORY, extend_many
from fastdatomic._core.segment import KeyBlock
from fastdatomic.db.database import prefix_end
from fastdatomic.db.segments import SegmentStore
from fastdatomic.db.tree import TreeCursor, merge_tree
from fastdatomic.storage import open_storage, forget_mem_storage

_n = [0]


def _segs():
    _n[0] += 1
    name = f"scan-model-{_n[0]}"
    forget_mem_storage(name)
    return SegmentStore(open_storage("mem", name=name))


def _model(keys, start, end, mode, max_tx, min_tx):
    ks = sorted(k for k in set(keys) if k >= start and (end is None or k < end))
    if mode == MODE_HISTORY:
        return [k for k in ks if min_tx < int.from_bytes(k[-9:-1], "big") - (1 << 63) <= max_tx]
    out, i = [], 0
    while i < len(ks):
        j = i
        while j < len(ks) and ks[j][:-9] == ks[i][:-9]:
            j += 1
        best = None
        for k in ks[i:j]:
            if int.from_bytes(k[-9:-1], "big") - (1 << 63) <= max_tx:
                best = k
        if best is not None and best[-1] == 1 and \
                int.from_bytes(best[-9:-1], "big") - (1 << 63) > min_tx:
            out.append(best)
        i = j
    return out


def _scan_keys(index, segs, root, runs, start, end, mode, max_tx, min_tx):
    cursor = TreeCursor(segs, root, start) if root is not None else None
    sc = Scan(index, cursor, tuple(runs), start, end, mode, max_tx, min_tx)
    out = []
    while (k := sc.next_key()) is not None:
        out.append(k)
    return out


def _datoms(rnd, n, n_e, n_v):
    # Several versions of the same (e a v) so groups span sources and leaves.
    out = []
    for _ in range(n):
        e = 1000 + rnd.randrange(n_e)
        a = 70 + rnd.randrange(3)
        v = rnd.randrange(n_v)
        tx = 100 + rnd.randrange(50)
        out.append((e, a, v, tx, rnd.random() < 0.7))
    return out


def _sources(rnd, keys, with_tree, nruns, leaf_heavy):
    rnd.shuffle(keys)
    cut = (len(keys) // 2 if nruns else len(keys)) if with_tree else 0
    segs, root = _segs(), None
    if cut:
        root, new = merge_tree(segs, None, KeyBlock.from_keys(keys[:cut]))
        segs.storage.put_blobs(new)
    rest = keys[cut:]
    runs = []
    for i in range(nruns):
        part = rest[i::nruns]
        if part:
            runs.append(KeyBlock.from_keys(part))
    return segs, root, runs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**9), with_tree=st.booleans(), nruns=st.integers(0, 5),
       mode=st.sampled_from([MODE_CURRENT, MODE_HISTORY]),
       index=st.sampled_from([INDEX_EAVT, INDEX_AEVT, INDEX_AVET]))
def test_scan_matches_model(seed, with_tree, nruns, mode, index):
    rnd = random.Random(seed)
    ds = _datoms(rnd, rnd.choice([50, 400, 9000]), rnd.choice([5, 60, 3000]), rnd.choice([2, 40]))
    keys = [encode_key(index, e, a, TYPE_LONG, v, tx, added) for e, a, v, tx, added in ds]
    segs, root, runs = _sources(rnd, list(keys), with_tree, nruns, False)
    if root is None and not runs:
        runs = [KeyBlock.from_keys(keys)]
    assert nruns == 0 or root is None or runs or len(keys) < 2
    allk = sorted(set(keys))
    start = rnd.choice([b"", allk[rnd.randrange(len(allk))][:rnd.choice([8, 16, 20])]])
    end = rnd.choice([None, prefix_end(start) if start else None,
                      allk[rnd.randrange(len(allk))][:rnd.choice([8, 17, 30])]])
    max_tx = rnd.choice([10**6, 125, 100])
    min_tx = rnd.choice([-1, 110])
    got = _scan_keys(index, segs, root, runs, start, end, mode, max_tx, min_tx)
    assert got == _model(keys, start, end, mode, max_tx, min_tx)


def test_group_spanning_many_tree_leaves():
    # One (e a v) with thousands of versions: the group crosses several leaves and the
    # visible version sits in a leaf the scan has already left behind.
    keys = [encode_key(INDEX_EAVT, 5, 70, TYPE_LONG, 1, tx, tx % 2 == 1) for tx in range(1, 20_000)]
    keys += [encode_key(INDEX_EAVT, 6, 70, TYPE_LONG, 1, 7, True)]
    segs, root = _segs(), None
    root, new = merge_tree(segs, None, KeyBlock.from_keys(keys))
    segs.storage.put_blobs(new)
    got = _scan_keys(INDEX_EAVT, segs, root, [], b"", None, MODE_CURRENT, 9, -1)
    assert [decode_key(INDEX_EAVT, k).e for k in got] == [5, 6]
    assert decode_key(INDEX_EAVT, got[0]).tx == 9


def _select_model(index, keys, fields, e_in, v_eq, lo, lo_incl, hi, hi_incl):
    out = []
    for k in _model(keys, b"", None, MODE_CURRENT, 10**6, -1):
        d = decode_key(index, k)
        vb = encode_value(TYPE_LONG, d.v) if index != INDEX_VAET else encode_value(TYPE_REF, d.v)
        if e_in is not None and d.e not in e_in:
            continue
        if v_eq is not None and vb != v_eq:
            continue
        if lo is not None and (vb < lo or (vb == lo and not lo_incl)):
            continue
        if hi is not None and (vb > hi or (vb == hi and not hi_incl)):
            continue
        full = (d.e, d.a, d.v, d.tx, d.added)
        out.append(tuple(full[f] for f in fields))
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**9),
       index=st.sampled_from([INDEX_EAVT, INDEX_AEVT, INDEX_AVET, INDEX_VAET]),
       fields=st.lists(st.integers(0, 4), max_size=4))
def test_select_filters_match_decoded_filtering(seed, index, fields):
    rnd = random.Random(seed)
    ds = _datoms(rnd, 600, 80, 30)
    vt = TYPE_REF if index == INDEX_VAET else TYPE_LONG
    keys = [encode_key(index, e, a, vt, v, tx, added) for e, a, v, tx, added in ds]
    segs, root, runs = _sources(rnd, list(keys), True, 3, False)
    e_set = {1000 + rnd.randrange(80) for _ in range(rnd.randrange(0, 40))}
    e_in = rnd.choice([None, e_set])
    vals = [encode_value(vt, x) for x in range(-2, 33)]
    v_eq = rnd.choice([None, None, rnd.choice(vals)])
    lo, hi = rnd.choice([None, rnd.choice(vals)]), rnd.choice([None, rnd.choice(vals)])
    lo_incl, hi_incl = rnd.random() < 0.5, rnd.random() < 0.5
    cursor = TreeCursor(segs, root, b"")
    sc = Scan(index, cursor, tuple(runs), b"", None, MODE_CURRENT, 10**6, -1)
    kw = dict(v_eq=v_eq, v_lo=lo, lo_incl=lo_incl, v_hi=hi, hi_incl=hi_incl)
    if e_in is not None:
        kw["e_in"] = IdSet.of_column([(x,) for x in e_in], 0)
    got = []
    while True:   # in chunks, as the engine reads it
        chunk = sc.select(fields, 7, **kw)
        got.extend(chunk)
        if len(chunk) < 7:
            break
    assert got == _select_model(index, keys, fields, e_in, v_eq, lo, lo_incl, hi, hi_incl)


def test_select_decodes_strings_and_skips_unwanted_values():
    keys = [encode_key(INDEX_AEVT, e, 72, TYPE_STRING, f"name-{e}", 9, True) for e in range(1, 50)]
    sc = Scan(INDEX_AEVT, None, (KeyBlock.from_keys(keys),), encode_id(72),
              prefix_end(encode_id(72)), MODE_CURRENT, 10**6, -1)
    got = sc.select((0, 2), -1, e_in=IdSet.of_column([(3,), (40,), (99,)], 0),
                    v_lo=encode_value(TYPE_STRING, "name-3"), lo_incl=False)
    assert got == [(40, "name-40")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**9), with_tree=st.booleans(), nruns=st.integers(0, 4),
       ascending=st.booleans())
def test_entity_values_after_seeks_match_model(seed, with_tree, nruns, ascending):
    # One scan repositioned entity after entity (pull_many), forwards and backwards.
    rnd = random.Random(seed)
    ds = _datoms(rnd, rnd.choice([300, 12000]), rnd.choice([40, 3000]), 5)
    keys = [encode_key(INDEX_EAVT, e, a, TYPE_LONG, v, tx, added) for e, a, v, tx, added in ds]
    segs, root, runs = _sources(rnd, list(keys), with_tree, nruns, False)
    if root is None and not runs:
        runs = [KeyBlock.from_keys(keys)]
    max_tx = rnd.choice([10**6, 120])
    want_all = _model(keys, b"", None, MODE_CURRENT, max_tx, -1)
    es = sorted({e for e, *_ in ds} | {1, 999_999})
    picks = rnd.sample(es, min(len(es), 60))
    if ascending:
        picks.sort()
    sc = Scan(INDEX_EAVT, TreeCursor(segs, root, b"") if root is not None else None,
              tuple(runs), b"", None, MODE_CURRENT, max_tx, -1)
    for e in picks:
        expect = {}
        for k in want_all:
            d = decode_key(INDEX_EAVT, k)
            if d.e == e:
                expect.setdefault(d.a, []).append(d.v)
        assert sc.entity_values(encode_id(e), encode_id(e + 1)) == expect, e
    # and an [e a] range: only that attribute's values
    e = picks[0]
    want = [decode_key(INDEX_EAVT, k).v for k in want_all
            if decode_key(INDEX_EAVT, k).e == e and decode_key(INDEX_EAVT, k).a == 71]
    got = sc.entity_values(encode_id(e) + encode_id(71), encode_id(e) + encode_id(72))
    assert got == ({71: want} if want else {})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**9), index=st.sampled_from([INDEX_EAVT, INDEX_AEVT]),
       fields=st.lists(st.sampled_from([1, 2, 3]), max_size=2))
def test_extend_is_a_join_on_the_entity(seed, index, fields):
    # extend_many with one scan walks rows sorted on an entity column alongside it: the same
    # rows as joining each row with its entity's visible datoms.
    rnd = random.Random(seed)
    ds = _datoms(rnd, rnd.choice([200, 6000]), rnd.choice([30, 2500]), 20)
    keys = [encode_key(index, e, a, TYPE_LONG, v, tx, added) for e, a, v, tx, added in ds]
    segs, root, runs = _sources(rnd, list(keys), True, rnd.randrange(0, 4), False)
    if root is None and not runs:
        runs = [KeyBlock.from_keys(keys)]
    es = sorted(rnd.choice([e for e, *_ in ds]) for _ in range(rnd.randrange(1, 80)))
    es += [10**9] if rnd.random() < 0.3 else []          # an entity with no datoms
    rows = [(e, f"r{i}") for i, e in enumerate(es)]
    lo = rnd.choice([None, encode_value(TYPE_LONG, rnd.randrange(20))])
    want = []
    for k in _model(keys, b"", None, MODE_CURRENT, 10**6, -1):
        d = decode_key(index, k)
        if lo is not None and encode_value(TYPE_LONG, d.v) < lo:
            continue
        full = (d.e, d.a, d.v, d.tx, d.added)
        for r in rows:
            if r[0] == d.e:
                want.append(r + tuple(full[f] for f in fields))
    sc = Scan(index, TreeCursor(segs, root, b"") if root is not None else None,
              tuple(runs), b"", None, MODE_CURRENT, 10**6, -1)
    assert extend_many(rows, 0, [(sc, fields, None, lo, True, None, True)]) == want


# --- extend_many: several patterns on one sorted ?e in one walk -------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**9), nscans=st.integers(1, 4), mode=st.sampled_from(
    [MODE_CURRENT, MODE_HISTORY]))
def test_extend_many_is_a_join_of_every_scan(seed, nscans, mode):
    # Each scan reads one attribute (AEVT), as the engine uses it; entities may have no,
    # one or several datoms of an attribute (a product then), and rows repeat entities.
    rnd = random.Random(seed)
    ds = _datoms(rnd, rnd.choice([200, 1500]), rnd.choice([30, 500]), 6)
    keys = [encode_key(INDEX_AEVT, e, a, TYPE_STRING, f"s{v}", tx, added)
            for e, a, v, tx, added in ds]
    max_tx = rnd.choice([10**6, 125])
    visible = [decode_key(INDEX_AEVT, k) for k in _model(keys, b"", None, mode, max_tx, -1)]
    specs, per_scan = [], []
    for s in range(nscans):
        a = 70 + s % 3
        start = encode_id(a)
        segs, root, runs = _sources(rnd, list(keys), rnd.random() < 0.5, rnd.randrange(0, 4),
                                    False)
        if root is None and not runs:
            runs = [KeyBlock.from_keys(keys)]
        sc = Scan(INDEX_AEVT, TreeCursor(segs, root, start) if root is not None else None,
                  tuple(runs), start, prefix_end(start), mode, max_tx, -1)
        fields = rnd.choice([(2,), (), (2, 3), (0,)])
        specs.append((sc, fields, None, None, True, None, True))
        full = [(d.e, d.a, d.v, d.tx, d.added) for d in visible if d.a == a]
        per_scan.append([(t[0], tuple(t[f] for f in fields)) for t in full])
    es = sorted(rnd.choice([e for e, *_ in ds] + [10**9]) for _ in range(rnd.randrange(1, 60)))
    rows = [(e, f"r{i}") for i, e in enumerate(es)]
    want = []
    for e in dict.fromkeys(es):
        combos = [()]
        for matches in per_scan:
            combos = [c + vals for c in combos for ee, vals in matches if ee == e]
        for r in rows:
            if r[0] == e:
                want.extend(r + c for c in combos)
    got = extend_many(rows, 0, specs)
    if nscans == 1:
        # one scan keeps its own order: datom by datom, then row by row
        assert sorted(got, key=repr) == sorted(want, key=repr)
    else:
        assert got == want


def test_extend_many_refuses_what_it_cannot_walk():
    keys = [encode_key(INDEX_AEVT, e, 70, TYPE_LONG, 1, 5, True) for e in (1, 2)]

    def spec():
        sc = Scan(INDEX_AEVT, None, (KeyBlock.from_keys(keys),), b"", None, MODE_CURRENT, 9, -1)
        return (sc, (2,), None, None, True, None, True)
    assert extend_many([(2,), (1,)], 0, [spec(), spec()]) is None     # not ascending
    assert extend_many([("x",)], 0, [spec()]) is None                 # not an entity id
    assert extend_many([], 0, [spec()]) == []
    with pytest.raises(ValueError, match="1 to 16 scans"):
        extend_many([(1,)], 0, [])
    two_attrs = [encode_key(INDEX_AEVT, e, a, TYPE_LONG, 1, 5, True) for a in (70, 71) for e in (1, 2)]
    sc = Scan(INDEX_AEVT, None, (KeyBlock.from_keys(two_attrs),), b"", None, MODE_CURRENT, 9, -1)
    with pytest.raises(ValueError, match="one attribute"):
        extend_many([(1,), (2,)], 0, [(sc, (2,), None, None, True, None, True), spec()])


# --- the value cache: a block keeps the strings scans decode from it --------------------

def _name_block(n, length=8):
    return KeyBlock.from_keys([encode_key(INDEX_AEVT, e, 72, TYPE_STRING, f"{e:0{length}d}", 9, True)
                               for e in range(1, n + 1)])


def _names(kb):
    sc = Scan(INDEX_AEVT, None, (kb,), b"", None, MODE_CURRENT, 10**6, -1)
    return [v for (v,) in sc.select((2,), -1)]


def test_a_block_hands_out_the_same_string_objects_again():
    kb = _name_block(50)
    first, second = _names(kb), _names(kb)
    assert first == second == [f"{e:08d}" for e in range(1, 51)]
    assert all(a is b for a, b in zip(first, second))
    # extend_many reads values through the same cache
    sc = Scan(INDEX_AEVT, None, (kb,), b"", None, MODE_CURRENT, 10**6, -1)
    ext = extend_many([(3,)], 0, [(sc, (2,), None, None, True, None, True)])
    assert ext == [(3, "00000003")] and ext[0][1] is first[2]


def test_the_segment_cache_charges_the_values_a_leaf_keeps():
    # object-cache-max bounds decoded leaves and the strings they keep: a leaf whose
    # value cache grew is charged for it when next fetched, and evicts others if need be
    segs = _segs()
    keys = [encode_key(INDEX_AEVT, e, 72, TYPE_STRING, f"name-{e}", 9, True) for e in range(1, 400)]
    root, new = merge_tree(segs, None, KeyBlock.from_keys(keys))
    segs.storage.put_blobs(new)
    fresh = SegmentStore(segs.storage)
    start = encode_id(72)
    sc = Scan(INDEX_AEVT, TreeCursor(fresh, root, start), (), start, prefix_end(start),
              MODE_CURRENT, 10**6, -1)
    assert len(sc.select((2,), -1)) == 399
    before = fresh.cached_bytes
    leaves = [fresh.leaf(sid) for sid in list(fresh._cache) if type(fresh._cache[sid]) is KeyBlock]
    kept = sum(kb.vals_bytes for kb in leaves)
    assert kept > 399 * 56
    assert fresh.cached_bytes == before + kept
    fresh.cache_max_bytes = before           # now over budget: the oldest go
    fresh.add_written(b"w" * 16, KeyBlock.from_keys([b"k"]), 1)
    assert fresh.cached_bytes <= before


def test_pull_reads_strings_through_the_same_cache():
    # entity_values / entity_maps (pull) reposition the scan per entity and decode the
    # values through the block's cache too
    keys = [encode_key(INDEX_EAVT, e, 72, TYPE_STRING, f"name-{e}", 9, True) for e in range(1, 20)]
    kb = KeyBlock.from_keys(keys)

    def pull(e):
        sc = Scan(INDEX_EAVT, None, (kb,), b"", None, MODE_CURRENT, 10**6, -1)
        return sc.entity_values(encode_id(e), encode_id(e + 1))[72][0]
    first, second = pull(7), pull(7)
    assert first == "name-7" and first is second
    sc = Scan(INDEX_EAVT, None, (kb,), b"", None, MODE_CURRENT, 10**6, -1)
    none = object()
    maps = sc.entity_maps([7], [(72, "name", False, None, none)], none)
    assert maps[0]["name"] is first
