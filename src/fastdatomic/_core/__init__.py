"""Cython core: no I/O, only the hot paths (datoms, key codec, segments, merge)."""
