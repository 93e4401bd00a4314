# cython: language_level=3
"""C-level interface of log records and index-key derivation (see logrec.pyx)."""


cdef class KeySink:
    """One transaction's index keys, built datom by datom: the EAVT key is encoded
    once and the AEVT/AVET/VAET keys are derived from it (byte shuffles)."""
    cdef public list eavt, aevt, avet, vaet, flags
    cdef public Py_ssize_t nbytes_eavt, nbytes_aevt, nbytes_avet, nbytes_vaet
    cdef int add(self, long long e, long long a, int vtype, object v, long long tx,
                 bint added, int flags) except -1
    cdef int add_key(self, bytes k, int flags) except -1
