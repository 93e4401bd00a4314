# cython: language_level=3
r"""Wire frames of the peer <-> transactor protocol: versioned, length-prefixed binary.

This is the framing layer only (``_core``, no I/O): ``net`` decides what a message
``kind`` means and what a payload holds. One frame, integers big-endian::

    magic    2 bytes  b"FD"
    version  u8       PROTOCOL_VERSION
    kind     u8       message kind, 0..255 (the caller's message table)
    req_id   u32      chosen by the sender of a request, echoed in its reply
    length   u32      payload length in bytes
    payload  length bytes

``FrameDecoder`` checks every header as soon as its bytes arrive, so a stranger
(an HTTP client, a wrong version, an oversize length) is refused before any of its
payload is buffered, and the decoder is dead after the first protocol error.

>>> wire = encode_frames([(1, 7, b"hello"), (2, 7, b"")])
>>> wire[:HEADER_BYTES]
b'FD\x01\x01\x00\x00\x00\x07\x00\x00\x00\x05'
>>> dec = FrameDecoder(max_frame_bytes=1024)
>>> dec.feed(wire[:15]), dec.pending
([], 15)
>>> dec.feed(wire[15:])
[(1, 7, b'hello'), (2, 7, b'')]
>>> dec.feed(b"GET / HTTP/1.1\r\n")
Traceback (most recent call last):
  ...
fastdatomic.errors.ProtocolError: bad magic b'GE' at stream offset 29: not a fastdatomic frame (an HTTP client?)
"""

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.long cimport PyLong_Check
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.string cimport memcpy
from libc.stdint cimport uint32_t, uint64_t

from fastdatomic.errors import ProtocolError

cdef extern from "Python.h":
    long long _as_ll "PyLong_AsLongLongAndOverflow"(object o, int* overflow) except? -1

__all__ = ["MAGIC", "PROTOCOL_VERSION", "HEADER_BYTES", "DEFAULT_MAX_FRAME_BYTES",
           "encode_frame", "encode_frames", "FrameDecoder"]

MAGIC = b"FD"
PROTOCOL_VERSION = 1
HEADER_BYTES = FRAME_HEADER_BYTES
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024

cdef enum:
    MAGIC_0 = 0x46                # 'F'
    MAGIC_1 = 0x44                # 'D'
    VERSION = 1
    MAX_KIND = 255
    OPEN = 0
    FAILED = 1
    ENDED = 2

cdef long long MAX_U32 = 0xFFFFFFFF
# Copies at least this large release the GIL: below it, re-acquiring the GIL from a
# busy interpreter can cost more than the copy itself.
cdef Py_ssize_t NOGIL_COPY = 1 << 20


# ---------------------------------------------------------------------------
# big-endian header access

cdef inline uint32_t get_u32(const unsigned char* p) noexcept nogil:
    return ((<uint32_t>p[0]) << 24) | ((<uint32_t>p[1]) << 16) | ((<uint32_t>p[2]) << 8) | p[3]


cdef inline void put_u32(unsigned char* p, uint32_t x) noexcept nogil:
    p[0] = <unsigned char>(x >> 24)
    p[1] = <unsigned char>(x >> 16)
    p[2] = <unsigned char>(x >> 8)
    p[3] = <unsigned char>x


cdef inline void put_header(unsigned char* p, int kind, uint32_t req_id, uint32_t length) noexcept nogil:
    p[0] = MAGIC_0
    p[1] = MAGIC_1
    p[2] = VERSION
    p[3] = <unsigned char>kind
    put_u32(p + 4, req_id)
    put_u32(p + 8, length)


cdef inline void copy(unsigned char* dst, const unsigned char* src, Py_ssize_t n) noexcept:
    if n >= NOGIL_COPY:
        with nogil:
            memcpy(dst, src, n)
    elif n > 0:
        memcpy(dst, src, n)


cdef inline bytes bytes_of(const unsigned char* p, Py_ssize_t n):
    cdef bytes b
    if n < NOGIL_COPY:
        return PyBytes_FromStringAndSize(<const char*>p, n)
    b = PyBytes_FromStringAndSize(NULL, n)
    copy(<unsigned char*>PyBytes_AS_STRING(b), p, n)
    return b


# ---------------------------------------------------------------------------
# encoding

cdef long long header_field(object v, long long hi, str name, str where) except -1:
    # kind and req_id: ints in 0..hi, else an error that names the field.
    cdef int overflow = 0
    cdef long long x
    if not PyLong_Check(v):
        raise TypeError(f"{where}{name} must be an int, not {type(v).__name__}")
    x = _as_ll(v, &overflow)
    if overflow or x < 0 or x > hi:
        raise ValueError(f"{where}{name} {v!r} out of range 0..{hi}")
    return x


cdef int check_payload_size(Py_ssize_t n, str where) except -1:
    if n > MAX_U32:
        raise ValueError(f"{where}payload of {n} bytes does not fit a frame (at most {MAX_U32} bytes)")
    return 0


def encode_frame(kind, req_id, payload):
    r"""One frame: the 12-byte header then ``payload`` (bytes, bytearray or memoryview).

    Raises ``ValueError`` naming the field when ``kind`` is outside 0..255 or
    ``req_id`` outside 0..2**32-1.

    >>> encode_frame(3, 258, b"ab")
    b'FD\x01\x03\x00\x00\x01\x02\x00\x00\x00\x02ab'
    >>> encode_frame(3, 1, memoryview(b"ab")) == encode_frame(3, 1, bytearray(b"ab"))
    True
    >>> encode_frame(256, 1, b"")
    Traceback (most recent call last):
      ...
    ValueError: kind 256 out of range 0..255
    """
    cdef int k = <int>header_field(kind, MAX_KIND, "kind", "")
    cdef uint32_t r = <uint32_t>header_field(req_id, MAX_U32, "req_id", "")
    cdef Py_buffer view
    cdef bytes out
    cdef unsigned char* o
    cdef Py_ssize_t n
    if PyBytes_CheckExact(payload):     # the usual case, without a buffer export
        n = PyBytes_GET_SIZE(payload)
        check_payload_size(n, "")
        out = PyBytes_FromStringAndSize(NULL, FRAME_HEADER_BYTES + n)
        o = <unsigned char*>PyBytes_AS_STRING(out)
        put_header(o, k, r, <uint32_t>n)
        copy(o + FRAME_HEADER_BYTES, <const unsigned char*>PyBytes_AS_STRING(payload), n)
        return out
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        check_payload_size(view.len, "")
        out = PyBytes_FromStringAndSize(NULL, FRAME_HEADER_BYTES + view.len)
        o = <unsigned char*>PyBytes_AS_STRING(out)
        put_header(o, k, r, <uint32_t>view.len)
        copy(o + FRAME_HEADER_BYTES, <const unsigned char*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return out


cdef struct Item:
    Py_buffer view
    uint32_t req_id
    int kind


def encode_frames(items):
    r"""Many ``(kind, req_id, payload)`` frames in one buffer, for one socket write.

    Equal to joining ``encode_frame`` of each item, with one allocation in all.
    Errors name the item: ``frame 2: req_id -1 out of range 0..4294967295``.

    >>> encode_frames([(1, 1, b"a"), (2, 1, b"bc")]) == encode_frame(1, 1, b"a") + encode_frame(2, 1, b"bc")
    True
    >>> encode_frames([])
    b''
    """
    cdef list seq = list(items)
    cdef Py_ssize_t n = len(seq), got = 0, i, total = 0, pos = 0
    cdef Item* its
    cdef Item* it
    cdef bytes out
    cdef unsigned char* o
    if n == 0:
        return b""
    its = <Item*>PyMem_Malloc(n * sizeof(Item))
    if its == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            item = seq[i]
            where = f"frame {i}: "
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise TypeError(f"{where}expected a (kind, req_id, payload) tuple, got {type(item).__name__}")
            kind, req_id, payload = item
            it = &its[i]
            it.kind = <int>header_field(kind, MAX_KIND, "kind", where)
            it.req_id = <uint32_t>header_field(req_id, MAX_U32, "req_id", where)
            PyObject_GetBuffer(payload, &it.view, PyBUF_SIMPLE)
            got += 1
            check_payload_size(it.view.len, where)
            total += FRAME_HEADER_BYTES + it.view.len
        out = PyBytes_FromStringAndSize(NULL, total)
        o = <unsigned char*>PyBytes_AS_STRING(out)
        for i in range(n):
            it = &its[i]
            put_header(o + pos, it.kind, it.req_id, <uint32_t>it.view.len)
            copy(o + pos + FRAME_HEADER_BYTES, <const unsigned char*>it.view.buf, it.view.len)
            pos += FRAME_HEADER_BYTES + it.view.len
    finally:
        for i in range(got):
            PyBuffer_Release(&its[i].view)
        PyMem_Free(its)
    return out


# ---------------------------------------------------------------------------
# decoding

cdef str stranger(const unsigned char* h, Py_ssize_t n):
    # A guess at who sent a non-frame, for the error message.
    cdef Py_ssize_t i
    if h[0] == 0x16:
        return " (a TLS client?)"
    for i in range(n):
        if not (0x41 <= h[i] <= 0x5A):
            return ""
    return " (an HTTP client?)"


@cython.auto_pickle(False)    # a decoder is one connection's state, not a value
cdef class FrameDecoder:
    r"""Incremental decoder of one connection's byte stream into frames.

    ``feed`` returns every frame completed by the new bytes, in order, as
    ``(kind, req_id, payload)`` and keeps the partial rest. Frames larger than
    ``max_frame_bytes`` (payload bytes) are refused from their header alone.
    A protocol error raises ``ProtocolError`` with ``data["reason"]`` (``"magic"``,
    ``"version"``, ``"oversize"``, ``"truncated"``), ``data["offset"]`` (the stream
    offset of the bad frame) and ``data["frames"]`` (frames this ``feed`` completed
    before the error); the decoder is then closed. One decoder belongs to one
    connection and one thread.

    Every input byte is copied once, into its frame's payload: whole frames are cut
    straight from the fed buffer, and a frame that spans feeds gets its payload
    allocated when its header arrives and filled in place.

    >>> dec = FrameDecoder(16)
    >>> frame = encode_frame(9, 1, b"x" * 10)
    >>> [dec.feed(frame[i:i + 4]) for i in range(0, len(frame), 4)]
    [[], [], [], [], [], [(9, 1, b'xxxxxxxxxx')]]
    >>> dec.frames, dec.pending, dec.closed
    (1, 0, False)
    >>> dec.feed(encode_frame(9, 2, b"y" * 17))
    Traceback (most recent call last):
      ...
    fastdatomic.errors.ProtocolError: frame of 17 bytes at stream offset 22 exceeds max-frame-bytes 16 (hint: ...)
    >>> dec.closed
    True
    """

    def __cinit__(self, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES):
        self.max_frame_bytes = <uint32_t>header_field(max_frame_bytes, MAX_U32, "max_frame_bytes", "")
        self.body = None
        self.state = OPEN

    @property
    def pending(self):
        """Bytes received that are not yet part of a complete frame."""
        if self.body is not None:
            return FRAME_HEADER_BYTES + self.body_n
        return self.hdr_n

    @property
    def frames(self):
        """How many frames this decoder has returned."""
        return self.nframes

    @property
    def closed(self):
        """True after a protocol error or ``eof()``: ``feed`` raises from then on."""
        return self.state != OPEN

    def __repr__(self):
        return (f"<FrameDecoder frames={self.nframes} pending={self.pending} "
                f"max_frame_bytes={self.max_frame_bytes}{' closed' if self.state != OPEN else ''}>")

    def feed(self, data):
        r"""Add bytes from the stream (bytes-like); return the frames they complete.

        >>> dec = FrameDecoder()
        >>> frame = encode_frame(1, 2, b"abc")
        >>> dec.feed(frame + frame[:4])
        [(1, 2, b'abc')]
        >>> dec.feed(frame[4:]), dec.frames
        ([(1, 2, b'abc')], 2)
        """
        cdef Py_buffer view
        if self.state != OPEN:
            raise self._closed_error()
        if self.busy:
            raise RuntimeError("FrameDecoder.feed re-entered: a decoder belongs to one connection and one thread")
        self.busy = True
        try:
            if PyBytes_CheckExact(data):
                return self._feed(<const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            try:
                return self._feed(<const unsigned char*>view.buf, view.len)
            finally:
                PyBuffer_Release(&view)
        finally:
            self.busy = False

    def eof(self):
        """The peer closed the stream: raise ``ProtocolError`` (reason ``"truncated"``)
        if it stopped inside a frame, else return None. The decoder is closed after.

        >>> dec = FrameDecoder()
        >>> dec.feed(encode_frame(1, 2, b"abc")[:-1])
        []
        >>> dec.eof()
        Traceback (most recent call last):
          ...
        fastdatomic.errors.ProtocolError: truncated frame at stream offset 0: the stream ended after 14 of its 15 bytes
        >>> FrameDecoder().eof() is None
        True
        """
        cdef Py_ssize_t pending
        if self.state == FAILED:
            raise self._closed_error()
        pending = self.pending
        self.state = ENDED
        if pending == 0:
            return None
        if self.body is not None:
            expected = FRAME_HEADER_BYTES + self.body_len
            msg = (f"truncated frame at stream offset {self.start}: "
                   f"the stream ended after {pending} of its {expected} bytes")
        else:
            expected = None
            msg = (f"truncated frame at stream offset {self.start}: "
                   f"the stream ended after {pending} of its {FRAME_HEADER_BYTES} header bytes")
        raise self._fail("truncated", msg, {"pending": pending, "expected": expected}, [])

    cdef object _closed_error(self):
        if self.state == FAILED:
            return ProtocolError("decoder closed after an earlier protocol error", data={"reason": "closed"})
        return ProtocolError("decoder closed: eof() was called, the stream has ended", data={"reason": "closed"})

    cdef object _fail(self, str reason, str message, dict data, list done, str hint=None):
        self.state = FAILED
        self.body = None
        data["reason"] = reason
        data["offset"] = self.start
        data["frames"] = done
        return ProtocolError(message, data=data, hint=hint)

    cdef int _check_header(self, const unsigned char* h, Py_ssize_t n, list done) except -1:
        # Checks the first n (1..12) header bytes, so a stranger is refused early.
        cdef uint32_t length
        if h[0] != MAGIC_0 or (n >= 2 and h[1] != MAGIC_1):
            magic = PyBytes_FromStringAndSize(<const char*>h, 2 if n >= 2 else 1)
            raise self._fail("magic", f"bad magic {magic!r} at stream offset {self.start}: "
                             f"not a fastdatomic frame{stranger(h, 2 if n >= 2 else 1)}",
                             {"magic": magic}, done)
        if n >= 3 and h[2] != VERSION:
            raise self._fail("version", f"protocol version {h[2]} at stream offset {self.start} "
                             f"is not supported (this side speaks version {VERSION})",
                             {"version": h[2]}, done)
        if n == FRAME_HEADER_BYTES:
            length = get_u32(h + 8)
            if length > self.max_frame_bytes:
                raise self._fail("oversize", f"frame of {length} bytes at stream offset {self.start} "
                                 f"exceeds max-frame-bytes {self.max_frame_bytes}",
                                 {"length": length, "max_frame_bytes": self.max_frame_bytes}, done,
                                 "raise max-frame-bytes on the receiving side if frames this large are legitimate")
        return 0

    cdef list _feed(self, const unsigned char* p, Py_ssize_t n):
        cdef list done = []
        cdef Py_ssize_t i = 0, take
        cdef const unsigned char* h
        cdef Py_ssize_t length
        cdef int kind
        cdef uint32_t req_id
        while i < n:
            if self.body is not None:
                # Inside a payload that spans feeds: fill it in place.
                take = self.body_len - self.body_n
                if take > n - i:
                    take = n - i
                copy(<unsigned char*>PyBytes_AS_STRING(self.body) + self.body_n, p + i, take)
                self.body_n += take
                i += take
                if self.body_n < self.body_len:
                    break
                done.append((self.body_kind, self.body_req_id, self.body))
                self.body = None
                self.start += FRAME_HEADER_BYTES + self.body_len
                self.nframes += 1
                continue
            if self.hdr_n == 0 and n - i >= FRAME_HEADER_BYTES:
                h = p + i                   # the common case: a whole header in this feed
                i += FRAME_HEADER_BYTES
            else:
                take = FRAME_HEADER_BYTES - self.hdr_n
                if take > n - i:
                    take = n - i
                memcpy(self.hdr + self.hdr_n, p + i, take)
                self.hdr_n += take
                i += take
                if self.hdr_n < FRAME_HEADER_BYTES:
                    self._check_header(self.hdr, self.hdr_n, done)
                    break
                h = self.hdr
                self.hdr_n = 0
            self._check_header(h, FRAME_HEADER_BYTES, done)
            kind = h[3]
            req_id = get_u32(h + 4)
            length = get_u32(h + 8)
            if n - i >= length:
                done.append((kind, req_id, bytes_of(p + i, length)))
                i += length
                self.start += FRAME_HEADER_BYTES + length
                self.nframes += 1
            else:
                self.body = PyBytes_FromStringAndSize(NULL, length)
                self.body_len = length
                self.body_n = 0
                self.body_kind = kind
                self.body_req_id = req_id
        return done
