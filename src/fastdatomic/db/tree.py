"""Durable index trees: reading (cursor, counts) and the indexing job's merge.

A tree is a root directory segment id. Directory children are leaves (level 1)
or directories (level > 1); each child entry carries its first key and datom
count. The merge writes new segments only along paths that novelty touches:
every untouched leaf and directory keeps its id (structural sharing).
"""

from __future__ import annotations

from fastdatomic._core.segment import (
    DIR_MAX, LEAF_MAX, KeyBlock, encode_dir, encode_leaf, merge_blocks, split_block,
    decode_dir,
)
from fastdatomic.db.segments import SegmentStore, new_segment_id
from fastdatomic._core.scan import TreeCursor  # the leaf walker lives in C (hot on lookups)

__all__ = ["TreeCursor", "merge_tree", "tree_count", "count_range"]


def count_range(segs: SegmentStore, root_id: bytes | None, lo: bytes, hi: bytes | None) -> int:
    """Keys ``lo <= k < hi`` in a tree, exactly, reading only the boundary path's nodes.

    Directory entries carry their subtree's datom count, so everything strictly between
    the two boundary children is summed without being read: cheap cardinalities for
    the query planner.

    >>> from fastdatomic.storage import open_storage
    >>> segs = SegmentStore(open_storage("mem", name="doc-count-range"))
    >>> root, _ = merge_tree(segs, None, KeyBlock.from_keys([bytes([i]) for i in range(200)]))
    >>> count_range(segs, root, bytes([10]), bytes([20])), count_range(segs, root, b"", None)
    (10, 200)
    """
    if root_id is None or (hi is not None and hi <= lo):
        return 0
    return _count(segs, segs.dir(root_id), lo, hi)


def _count(segs, node, lo, hi) -> int:
    n = len(node)
    i = node.child_for(lo)
    j = n - 1 if hi is None else node.child_for(hi)
    if i == j:
        return _count_child(segs, node, i, lo, hi)
    return (_count_child(segs, node, i, lo, None) + node.count_range(i + 1, j)
            + _count_child(segs, node, j, None, hi))


def _count_child(segs, node, i, lo, hi) -> int:
    if lo is None and hi is None:
        return node.child_count(i)
    if node.level > 1:
        child = segs.dir(node.child_id(i))
        return _count(segs, child, lo if lo is not None else child.first_key(0), hi)
    leaf = segs.leaf(node.child_id(i))
    start = 0 if lo is None else leaf.lower_bound(lo)
    end = len(leaf) if hi is None else leaf.lower_bound(hi)
    return max(0, end - start)


def tree_count(segs: SegmentStore, root_id: bytes | None) -> int:
    """Datoms in a tree (from the root's child counts; no leaf is read)."""
    if root_id is None:
        return 0
    return segs.dir(root_id).total


def _pack(segs: SegmentStore, entries: list, level: int, out: list) -> list:
    """Group child entries into directory segments of at most DIR_MAX children."""
    packed = []
    for chunk in split_entries(entries, DIR_MAX):
        seg_id = new_segment_id()
        raw = encode_dir(level, chunk)
        out.append((seg_id, raw))
        segs.add_written(seg_id, decode_dir(raw), len(raw))
        packed.append((chunk[0][0], seg_id, sum(e[2] for e in chunk)))
    return packed


def split_entries(entries: list, max_n: int) -> list:
    if len(entries) <= max_n:
        return [entries]
    parts = -(-len(entries) // max_n)
    base, extra = divmod(len(entries), parts)
    out, start = [], 0
    for p in range(parts):
        size = base + (1 if p < extra else 0)
        out.append(entries[start:start + size])
        start += size
    return out


def _leaf_entries(segs: SegmentStore, block: KeyBlock, out: list) -> list:
    entries = []
    for part in split_block(block, LEAF_MAX):
        seg_id = new_segment_id()
        raw = encode_leaf(part)
        out.append((seg_id, raw))
        segs.add_written(seg_id, part, len(raw))
        entries.append((part[0], seg_id, len(part)))
    return entries


def _merge_dir(segs: SegmentStore, node_id: bytes, novelty: KeyBlock, lo: int, hi: int,
               out: list) -> list:
    node = segs.dir(node_id)
    n = len(node)
    entries = []
    changed = False
    c_lo = lo
    for i in range(n):
        c_hi = hi if i == n - 1 else novelty.lower_bound(node.first_key(i + 1), c_lo, hi)
        child = node.child_id(i)
        if c_hi == c_lo:
            entries.append((node.first_key(i), child, node.child_count(i)))
        else:
            changed = True
            if node.level == 1:
                merged = merge_blocks(segs.leaf(child), novelty, 0, -1, c_lo, c_hi)
                entries.extend(_leaf_entries(segs, merged, out))
            else:
                entries.extend(_merge_dir(segs, child, novelty, c_lo, c_hi, out))
        c_lo = c_hi
    if not changed:
        return [(node.first_key(0), node_id, node.total)]
    return _pack(segs, entries, node.level, out)


def merge_tree(segs: SegmentStore, root_id: bytes | None, novelty: KeyBlock):
    """Merge sorted ``novelty`` keys into the tree at ``root_id``.

    Returns ``(new_root_id, new_segments)``; ``new_segments`` is ``[(id, bytes), ...]``
    to write to storage before the new root is published. Segments untouched by
    novelty are shared with the old tree, which stays readable unchanged.

    >>> from fastdatomic.storage import open_storage
    >>> segs = SegmentStore(open_storage("mem", name="doc-merge"))
    >>> root, new = merge_tree(segs, None, KeyBlock.from_keys([b"a" * 10, b"b" * 10]))
    >>> tree_count(segs, root)
    2
    """
    out: list = []
    if len(novelty) == 0:
        return root_id, out
    if root_id is None:
        entries = _leaf_entries(segs, novelty, out)
        level = 0
    else:
        entries = _merge_dir(segs, root_id, novelty, 0, len(novelty), out)
        level = segs.dir(root_id).level
        if len(entries) == 1 and entries[0][1] == root_id:
            return root_id, out
    while level == 0 or len(entries) > 1:
        level += 1
        entries = _pack(segs, entries, level, out)
    return entries[0][1], out
