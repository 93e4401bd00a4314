# cython: language_level=3
"""Layout of the incremental frame decoder (see frame.pyx for the wire format)."""

from libc.stdint cimport uint32_t, uint64_t


cdef enum:
    FRAME_HEADER_BYTES = 12


cdef class FrameDecoder:
    """Turns a byte stream into frames; holds at most one partial frame."""
    cdef readonly uint32_t max_frame_bytes
    cdef unsigned char hdr[FRAME_HEADER_BYTES]   # the current frame's header, while incomplete
    cdef Py_ssize_t hdr_n         # header bytes of the current frame received so far
    cdef bytes body               # the current frame's payload, allocated whole and filled in place
    cdef Py_ssize_t body_len
    cdef Py_ssize_t body_n        # payload bytes received so far
    cdef int body_kind
    cdef uint32_t body_req_id
    cdef uint64_t start           # stream offset of the current frame's first byte
    cdef uint64_t nframes
    cdef int state                # OPEN, FAILED (a protocol error) or ENDED (eof() was called)
    cdef bint busy                # inside feed(): the GIL may be released during a copy

    cdef object _closed_error(self)
    cdef list _feed(self, const unsigned char* p, Py_ssize_t n)
    cdef int _check_header(self, const unsigned char* h, Py_ssize_t n, list done) except -1
    cdef object _fail(self, str reason, str message, dict data, list done, str hint=*)
