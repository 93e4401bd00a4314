"""Immutable database values over storage: segments, trees, novelty, schema, log.

Shared by both sides: the transactor writes through it and the peer reads through it.
"""
