"""Entity ids, partitions and the t <-> tx mapping (leaf module).

An entity id is a 64-bit integer: the partition index sits in bits 42..61 and the
entity's number within the partition in bits 0..41, as in Datomic. A transaction's
entity id is a pure function of its ``t``: ``t_to_tx(t) = (PART_TX << 42) | t``.
"""

from __future__ import annotations

__all__ = [
    "PART_DB", "PART_TX", "PART_USER", "PART_SHIFT", "MAX_T",
    "entity_id", "part", "t_to_tx", "tx_to_t", "is_tx",
]

PART_SHIFT = 42
MAX_T = (1 << PART_SHIFT) - 1  # also the largest entity number in a partition

# Partition indexes, Datomic's numbering (:db.part/db 0, :db.part/tx 3, :db.part/user 4).
PART_DB = 0
PART_TX = 3
PART_USER = 4


def entity_id(partition: int, n: int) -> int:
    """Build an entity id from a partition index and a number within it.

    >>> entity_id(PART_USER, 1)
    17592186044417
    """
    if not 0 <= n <= MAX_T:
        raise ValueError(f"entity number {n} out of range 0..{MAX_T}")
    return (partition << PART_SHIFT) | n


def part(eid: int) -> int:
    """The partition index of an entity id.

    >>> part(t_to_tx(5)) == PART_TX
    True
    """
    return eid >> PART_SHIFT


def t_to_tx(t: int) -> int:
    """The transaction entity id of basis ``t``.

    >>> t_to_tx(1000)
    13194139534312
    """
    return (PART_TX << PART_SHIFT) | t


def tx_to_t(tx: int) -> int:
    """The ``t`` of a transaction entity id (ids outside the tx partition are taken as ``t``).

    >>> tx_to_t(t_to_tx(42))
    42
    """
    return tx & MAX_T


def is_tx(eid: int) -> bool:
    """True when ``eid`` lies in the transaction partition.

    >>> is_tx(t_to_tx(1)), is_tx(17592186044417)
    (True, False)
    """
    return (eid >> PART_SHIFT) == PART_TX
