"""The memory index's novelty: ``_core.novelty.sort_keys`` against ``KeyBlock.from_keys``
(the reference), and ``MemoryIndex``'s lazily built runs against eagerly built ones."""

import threading

import pytest
from hypothesis import given, settings, strategies as st

from fastdatomic._core.codec import encode_key, TYPE_LONG, TYPE_STRING
from fastdatomic._core.novelty import sort_keys
from fastdatomic._core.segment import KeyBlock, push_run
from fastdatomic.db import memindex as M
from fastdatomic.db.memindex import MemoryIndex

_KEY = st.binary(max_size=24)


@st.composite
def _interleaved(draw):
    # A few ascending sequences dealt out in random order, like a stream of transactions.
    seqs = [sorted(draw(st.lists(_KEY, max_size=30))) for _ in range(draw(st.integers(1, 20)))]
    out = []
    while any(seqs):
        i = draw(st.integers(0, len(seqs) - 1))
        if seqs[i]:
            out.append(seqs[i].pop(0))
    return out


def _chunks(keys, sizes):
    out, i = [], 0
    for n in sizes:
        out.append(keys[i:i + n])
        i += n
    out.append(keys[i:])
    return out


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(_KEY, max_size=300), _interleaved()), st.lists(st.integers(0, 12), max_size=40))
def test_sort_keys_is_from_keys(keys, sizes):
    got = sort_keys(_chunks(keys, sizes))
    assert got.keys() == KeyBlock.from_keys(keys).keys()
    assert got.nbytes == KeyBlock.from_keys(keys).nbytes


def test_sort_keys_many_runs_and_a_rest():
    # More ascending sequences than the sort keeps runs for: the rest is merge-sorted.
    keys = [bytes([i % 40, i // 40 % 256, 7]) for i in range(5000)]
    assert sort_keys([keys, keys[::-1]]).keys() == sorted(set(keys))


def test_sort_keys_edges():
    assert sort_keys([]).keys() == [] and sort_keys([[], []]).keys() == []
    assert sort_keys([[b""], [b"", b"\x00"]]).keys() == [b"", b"\x00"]
    with pytest.raises(TypeError):
        sort_keys([[b"a", "b"]])


def _tx_keys(t, n):
    eavt = [encode_key(0, 1000 + t * 10 + i, 70 + i % 3, TYPE_LONG, t * i, 5000 + t, True) for i in range(n)]
    eavt.append(encode_key(0, 5000 + t, 50, TYPE_STRING, f"tx{t}", 5000 + t, True))
    aevt = [encode_key(1, 1000 + t * 10 + i, 70 + i % 3, TYPE_LONG, t * i, 5000 + t, True) for i in range(n)]
    avet = [encode_key(2, 5000 + t, 50, TYPE_STRING, f"tx{t}", 5000 + t, True)]
    return (eavt, aevt, avet, [])


def _eager(adds):
    runs = [(), (), (), ()]
    for keys in adds:
        for i in range(4):
            if keys[i]:
                runs[i], _ = push_run(runs[i], keys[i])
    return [sorted(k for r in runs[i] for k in r.keys()) for i in range(4)]


def _lazy(mi):
    return [sorted(k for r in mi.runs[i] for k in r.keys()) for i in range(4)]


@pytest.mark.parametrize("fold", [1, 7, 1 << 13])
def test_every_value_reads_what_eager_runs_hold(monkeypatch, fold):
    monkeypatch.setattr(M, "FOLD_KEYS", fold)
    mi = MemoryIndex.empty()
    values, adds = [], []
    for t in range(60):
        keys = _tx_keys(t, t % 5)
        mi = mi.add(keys)
        adds.append(keys)
        values.append(mi)
        if t % 7 == 3:
            assert _lazy(mi) == _eager(adds)      # read now and then, in the middle
    for t in (59, 0, 31, 30, 58):                 # old values, in any order
        assert _lazy(values[t]) == _eager(adds[:t + 1])
        assert values[t].datom_count == sum(len(k[0]) for k in adds[:t + 1])


def test_nbytes_counts_each_add_as_a_run():
    mi = MemoryIndex.empty()
    total = 0
    for t in range(5):
        keys = _tx_keys(t, 3)
        mi = mi.add(keys)
        total += sum(KeyBlock.from_keys(k).nbytes for k in keys if k)
    assert mi.nbytes == total


def test_after_everything_is_indexed_nothing_is_left_and_nothing_weighs():
    # What a landed indexing job leaves: no keys, and 0 bytes (an empty run weighs
    # nothing), so a writer's threshold and back-pressure see an empty memory index.
    mi = MemoryIndex.empty()
    for t in range(5):
        mi = mi.add(_tx_keys(t, 3))
    rest = mi.after(1 << 62)
    assert (rest.datom_count, rest.nbytes) == (0, 0)
    assert all(not runs for runs in rest.runs)


def test_runs_stay_few():
    mi = MemoryIndex.empty()
    for t in range(3000):
        mi = mi.add(_tx_keys(t, 1))
        if t % 3 == 0:
            mi.runs
    assert all(len(r) <= 24 for r in mi.runs)


def test_two_threads_reading_one_value():
    mi = MemoryIndex.empty()
    adds = []
    for t in range(400):
        keys = _tx_keys(t, 2)
        adds.append(keys)
        mi = mi.add(keys)
    expect = _eager(adds)
    results = []
    threads = [threading.Thread(target=lambda: results.append(_lazy(mi))) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results == [expect] * 4
