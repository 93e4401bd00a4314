"""Durable index trees: merge with structural sharing, cursors, old trees stay readable."""

import random

from fastdatomic._core.segment import KeyBlock, LEAF_MAX
from fastdatomic.db.segments import SegmentStore
from fastdatomic.db.tree import TreeCursor, merge_tree, tree_count
from fastdatomic.storage import open_storage, forget_mem_storage


def _segs(name):
    forget_mem_storage(name)
    return SegmentStore(open_storage("mem", name=name))


def _all_keys(segs, root, start=b""):
    if root is None:
        return []
    cur = TreeCursor(segs, root, start)
    out = []
    while (leaf := cur.next_leaf()) is not None:
        out.extend(leaf.keys())
    return out


def _reachable(segs, root):
    seen, stack = set(), [root]
    while stack:
        sid = stack.pop()
        seen.add(sid)
        node = segs.dir(sid)
        for i in range(len(node)):
            if node.level == 1:
                seen.add(node.child_id(i))
            else:
                stack.append(node.child_id(i))
    return seen


def _key(i):
    return i.to_bytes(8, "big") + b"-datom"


def test_merge_builds_multi_level_tree_and_cursor_reads_all():
    segs = _segs("tree-a")
    n = LEAF_MAX * 40
    nov = KeyBlock.from_keys([_key(i) for i in range(0, 2 * n, 2)])
    root, new = merge_tree(segs, None, nov)
    segs.storage.put_blobs(new)
    assert tree_count(segs, root) == n
    assert _all_keys(segs, root) == nov.keys()
    # A cursor started in the middle begins at the leaf that holds the start key.
    mid = _key(n)
    got = _all_keys(segs, root, mid)
    assert got[0] <= mid and got[-1] == nov.keys()[-1]


def test_merge_shares_every_untouched_segment_and_old_tree_is_unchanged():
    segs = _segs("tree-b")
    base = [_key(i) for i in range(0, 200_000, 2)]
    root1, new1 = merge_tree(segs, None, KeyBlock.from_keys(base))
    segs.storage.put_blobs(new1)
    before = _reachable(segs, root1)
    # Novelty touching one narrow range: only that path may be rewritten.
    nov = KeyBlock.from_keys([_key(i) for i in range(100_001, 100_101, 2)])
    root2, new2 = merge_tree(segs, root1, nov)
    segs.storage.put_blobs(new2)
    after = _reachable(segs, root2)
    written = {sid for sid, _ in new2}
    assert after - before == written
    # One leaf (perhaps split in two) plus the directories above it.
    assert len(written) <= 2 + 3
    assert len(before & after) >= len(before) - 3
    assert _all_keys(segs, root2) == sorted(set(base) | set(nov.keys()))
    assert _all_keys(segs, root1) == base  # the old tree reads exactly as before


def test_random_merges_match_reference():
    segs = _segs("tree-c")
    rnd = random.Random(7)
    ref, root = set(), None
    for _ in range(6):
        batch = {_key(rnd.randrange(10**7)) for _ in range(rnd.randrange(1, 20_000))}
        root, new = merge_tree(segs, root, KeyBlock.from_keys(batch))
        segs.storage.put_blobs(new)
        ref |= batch
        assert tree_count(segs, root) == len(ref)
    assert _all_keys(segs, root) == sorted(ref)


def test_empty_novelty_keeps_root():
    segs = _segs("tree-d")
    root, new = merge_tree(segs, None, KeyBlock.from_keys([b"x" * 10]))
    segs.storage.put_blobs(new)
    assert merge_tree(segs, root, KeyBlock.empty()) == (root, [])


def test_segment_cache_is_bounded():
    segs = _segs("tree-e")
    segs.cache_max_bytes = 200_000
    root, new = merge_tree(segs, None, KeyBlock.from_keys([_key(i) for i in range(100_000)]))
    segs.storage.put_blobs(new)
    _all_keys(segs, root)
    assert segs.cached_bytes <= 200_000 + 400_000  # at most one segment over the bound


def test_count_range_is_exact_on_deep_trees(monkeypatch):
    # Tiny leaves and directories make a 4+ level tree from a few hundred keys, so the
    # count walks real boundary paths and sums whole subtrees from directory counts.
    import bisect
    import fastdatomic.db.tree as tree_mod
    monkeypatch.setattr(tree_mod, "LEAF_MAX", 4)
    monkeypatch.setattr(tree_mod, "DIR_MAX", 3)
    segs = _segs("tree-count")
    rnd = random.Random(11)
    ref, root = set(), None
    for _ in range(4):
        batch = {_key(rnd.randrange(5000)) for _ in range(150)}
        root, new = merge_tree(segs, root, KeyBlock.from_keys(batch))
        segs.storage.put_blobs(new)
        ref |= batch
    assert segs.dir(root).level >= 3
    keys = sorted(ref)
    for _ in range(300):
        lo = _key(rnd.randrange(5200))
        hi = None if rnd.random() < 0.1 else _key(rnd.randrange(5200))
        want = (len(keys) if hi is None else bisect.bisect_left(keys, hi)) - bisect.bisect_left(keys, lo)
        assert tree_mod.count_range(segs, root, lo, hi) == max(0, want)
