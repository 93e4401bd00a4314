"""Segments: KeyBlock order and search, leaf/dir encodings, the merge kernel.

Checked against plain Python lists of bytes (Python's bytes order is the key order).
"""

import bisect

import pytest
from hypothesis import given, settings, strategies as st

from fastdatomic._core.segment import (
    KeyBlock, merge_blocks, split_block, slice_block, encode_leaf, decode_leaf,
    encode_dir, decode_dir,
)
from fastdatomic.errors import StorageCorruptError

keys = st.lists(st.binary(min_size=0, max_size=40), max_size=300)


@settings(max_examples=200, deadline=None)
@given(keys)
def test_from_keys_sorts_and_dedups(ks):
    assert KeyBlock.from_keys(ks).keys() == sorted(set(ks))


@settings(max_examples=200, deadline=None)
@given(keys, st.binary(max_size=40))
def test_bounds_match_bisect(ks, probe):
    ref = sorted(set(ks))
    kb = KeyBlock.from_keys(ks)
    assert kb.lower_bound(probe) == bisect.bisect_left(ref, probe)
    assert kb.upper_bound(probe) == bisect.bisect_right(ref, probe)


@settings(max_examples=200, deadline=None)
@given(keys, keys, st.data())
def test_merge_equals_sorted_union(a, b, data):
    ka, kb = KeyBlock.from_keys(a), KeyBlock.from_keys(b)
    alo = data.draw(st.integers(0, len(ka)))
    ahi = data.draw(st.integers(alo, len(ka)))
    blo = data.draw(st.integers(0, len(kb)))
    bhi = data.draw(st.integers(blo, len(kb)))
    merged = merge_blocks(ka, kb, alo, ahi, blo, bhi)
    assert merged.keys() == sorted(set(ka.keys()[alo:ahi]) | set(kb.keys()[blo:bhi]))


@settings(max_examples=100, deadline=None)
@given(keys, st.integers(1, 50))
def test_split_and_slice(ks, max_n):
    kb = KeyBlock.from_keys(ks)
    parts = split_block(kb, max_n)
    assert all(0 < len(p) <= max_n for p in parts) or len(kb) == 0
    assert [k for p in parts for k in p.keys()] == kb.keys()
    if len(kb) >= 2:
        assert slice_block(kb, 1, len(kb) - 1).keys() == kb.keys()[1:-1]


@settings(max_examples=200, deadline=None)
@given(keys)
def test_leaf_round_trip(ks):
    kb = KeyBlock.from_keys(ks)
    raw = encode_leaf(kb)
    assert decode_leaf(raw).keys() == kb.keys()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=30), st.binary(min_size=16, max_size=16),
                          st.integers(0, 2**40)), max_size=100, unique_by=lambda e: e[0]),
       st.integers(1, 5))
def test_dir_round_trip(entries, level):
    entries = sorted(entries)
    node = decode_dir(encode_dir(level, entries))
    assert node.level == level
    assert node.entries() == entries
    assert node.total == sum(e[2] for e in entries)


def test_prefix_compression_is_compact():
    # Keys of one entity share their first 16 bytes; the leaf must not store them again.
    ks = [b"E" * 8 + b"A" * 8 + bytes([i]) * 4 for i in range(200)]
    assert len(encode_leaf(KeyBlock.from_keys(ks))) < sum(map(len, ks)) // 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_corrupt_segments_raise_clear_errors(garbage):
    for decode, tag in ((decode_leaf, b"L\x01"), (decode_dir, b"D\x01")):
        for raw in (garbage, tag + garbage):
            try:
                decode(raw)
            except StorageCorruptError as e:
                assert "segment" in str(e)


def test_truncated_leaf_is_reported():
    raw = encode_leaf(KeyBlock.from_keys([b"abc", b"abd", b"xyz"]))
    with pytest.raises(StorageCorruptError, match="truncated or malformed"):
        decode_leaf(raw[:-2])
    with pytest.raises(StorageCorruptError, match="version"):
        decode_leaf(b"L\x09" + raw[2:])


def test_from_sorted_rejects_unsorted():
    with pytest.raises(ValueError, match="ascending"):
        KeyBlock.from_sorted([b"b", b"a"])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=12), min_size=200, max_size=600),
       st.lists(st.binary(max_size=12), max_size=10), st.booleans())
def test_galloping_merge_of_few_into_many(big, few, overlap):
    # Few novelty keys into a big leaf take the galloping path (one memcpy per run).
    if overlap:
        few = few + big[: len(few)]
    ka, kb = KeyBlock.from_keys(big), KeyBlock.from_keys(few)
    assert merge_blocks(ka, kb).keys() == sorted(set(big) | set(few))
    assert merge_blocks(kb, ka).keys() == sorted(set(big) | set(few))
