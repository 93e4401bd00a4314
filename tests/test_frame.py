"""Wire frames: encode_frame(s) against a struct-based reference, FrameDecoder on split,
garbage and truncated streams, every protocol error with its message and data."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from fastdatomic._core.frame import (
    DEFAULT_MAX_FRAME_BYTES, HEADER_BYTES, MAGIC, PROTOCOL_VERSION,
    FrameDecoder, encode_frame, encode_frames,
)
from fastdatomic.errors import ProtocolError


def ref_frame(kind, req_id, payload, version=PROTOCOL_VERSION, magic=MAGIC):
    """The wire format, spelled out with struct."""
    return struct.pack(">2sBBII", magic, version, kind, req_id, len(payload)) + bytes(payload)


frames_st = st.lists(st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1), st.binary(max_size=300)),
                     max_size=30)


def split(data, cuts):
    """data cut at the given positions (any order, duplicates allowed)."""
    pos = sorted({c % (len(data) + 1) for c in cuts}) if data else []
    bounds = [0] + pos + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def feed_all(dec, chunks):
    out = []
    for c in chunks:
        out.extend(dec.feed(c))
    return out


# --- encoding -------------------------------------------------------------------

def test_constants():
    assert MAGIC == b"FD" and PROTOCOL_VERSION == 1 and HEADER_BYTES == 12
    assert DEFAULT_MAX_FRAME_BYTES == 16 * 1024 * 1024


@settings(max_examples=200, deadline=None)
@given(frames_st)
def test_encode_matches_reference_and_round_trips(frames):
    for kind, req_id, payload in frames:
        assert encode_frame(kind, req_id, payload) == ref_frame(kind, req_id, payload)
    wire = encode_frames(frames)
    assert wire == b"".join(ref_frame(*f) for f in frames)
    dec = FrameDecoder()
    assert dec.feed(wire) == frames
    assert dec.frames == len(frames) and dec.pending == 0
    assert dec.eof() is None


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_payload_any_bytes_like(wrap):
    assert encode_frame(5, 6, wrap(b"xyz")) == ref_frame(5, 6, b"xyz")
    assert encode_frames([(5, 6, wrap(b"xyz")), [1, 2, wrap(b"")]]) == ref_frame(5, 6, b"xyz") + ref_frame(1, 2, b"")
    assert encode_frames(iter([(5, 6, wrap(b"q"))])) == ref_frame(5, 6, b"q")


def test_kind_and_req_id_boundaries():
    for kind in (0, 255):
        for req_id in (0, 2**32 - 1):
            frame = encode_frame(kind, req_id, b"p")
            assert FrameDecoder().feed(frame) == [(kind, req_id, b"p")]
    for bad in (-1, 256, 2**64):
        with pytest.raises(ValueError, match=rf"^kind {bad} out of range 0\.\.255$"):
            encode_frame(bad, 0, b"")
    for bad in (-1, 2**32, 2**70):
        with pytest.raises(ValueError, match=rf"^req_id {bad} out of range 0\.\.4294967295$"):
            encode_frame(0, bad, b"")
    with pytest.raises(TypeError, match="kind must be an int, not str"):
        encode_frame("1", 0, b"")
    with pytest.raises(TypeError, match="req_id must be an int, not float"):
        encode_frame(1, 0.0, b"")
    with pytest.raises(TypeError):
        encode_frame(1, 0, "text is not bytes")


def test_encode_frames_names_the_bad_item():
    with pytest.raises(ValueError, match=r"^frame 2: req_id -1 out of range"):
        encode_frames([(1, 1, b""), (1, 2, b""), (1, -1, b"")])
    with pytest.raises(ValueError, match=r"^frame 0: kind 300 out of range"):
        encode_frames([(300, 1, b"")])
    with pytest.raises(TypeError, match=r"^frame 1: expected a \(kind, req_id, payload\) tuple"):
        encode_frames([(1, 1, b""), (1, 1)])
    with pytest.raises(TypeError, match=r"^frame 0: expected"):
        encode_frames([b"not a tuple"])
    with pytest.raises(TypeError):
        encode_frames([(1, 1, b"ok"), (1, 2, "str payload")])   # buffers taken so far are released


# --- decoding -------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(frames_st, st.lists(st.integers(0, 10**6), max_size=40))
def test_any_split_decodes_the_same(frames, cuts):
    wire = encode_frames(frames)
    dec = FrameDecoder()
    assert feed_all(dec, split(wire, cuts)) == frames
    assert dec.pending == 0 and dec.frames == len(frames)
    assert dec.eof() is None


@settings(max_examples=100, deadline=None)
@given(frames_st)
def test_byte_at_a_time_and_pending(frames):
    wire = encode_frames(frames)
    dec = FrameDecoder()
    out, start = [], 0
    for i in range(len(wire)):
        got = dec.feed(wire[i:i + 1])
        if got:
            out.extend(got)
            start = i + 1
        assert dec.pending == i + 1 - start
    assert out == frames


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_feed_any_bytes_like(wrap):
    wire = encode_frames([(1, 2, b"abc"), (3, 4, b"")])
    dec = FrameDecoder()
    assert dec.feed(wrap(wire[:7])) == []
    assert dec.feed(wrap(wire[7:])) == [(1, 2, b"abc"), (3, 4, b"")]
    with pytest.raises(TypeError):
        dec.feed("str")
    assert dec.feed(b"") == []


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 10**6), max_size=10), st.integers(0, 64))
def test_garbage_raises_only_protocol_error(garbage, cuts, max_frame):
    dec = FrameDecoder(max_frame)
    try:
        for chunk in split(garbage, cuts):
            for kind, req_id, payload in dec.feed(chunk):
                assert 0 <= kind <= 255 and 0 <= req_id < 2**32 and len(payload) <= max_frame
        dec.eof()
    except ProtocolError as e:
        assert e.data["reason"] in ("magic", "version", "oversize", "truncated")
        assert dec.closed
        with pytest.raises(ProtocolError, match="decoder closed"):
            dec.feed(b"FD")


@settings(max_examples=200, deadline=None)
@given(frames_st, st.binary(max_size=50), st.lists(st.integers(0, 10**6), max_size=10))
def test_frames_then_garbage(frames, garbage, cuts):
    # Valid frames before garbage come out (from feed, or in e.data["frames"]) before it fails.
    wire = encode_frames(frames)
    dec = FrameDecoder()
    out = []
    try:
        for chunk in split(wire + garbage, cuts):
            out.extend(dec.feed(chunk))
    except ProtocolError as e:
        out.extend(e.data["frames"])
        assert e.data["offset"] >= len(wire)
    assert out[:len(frames)] == frames


# --- errors ----------------------------------------------------------------------

def _error(dec, data):
    with pytest.raises(ProtocolError) as info:
        dec.feed(data)
    return info.value


def test_bad_magic_http_client():
    dec = FrameDecoder()
    e = _error(dec, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert e.message == "bad magic b'GE' at stream offset 0: not a fastdatomic frame (an HTTP client?)"
    assert e.data["reason"] == "magic" and e.data["offset"] == 0 and e.data["magic"] == b"GE"
    assert e.kind == "fastdatomic.error/protocol"
    assert dec.closed


def test_bad_magic_seen_before_a_whole_header():
    # A stranger that sends one byte and waits is refused at once, not after 12 bytes.
    e = _error(FrameDecoder(), b"\x16")
    assert e.message == "bad magic b'\\x16' at stream offset 0: not a fastdatomic frame (a TLS client?)"
    e = _error(FrameDecoder(), b"F\x00")
    assert e.message == "bad magic b'F\\x00' at stream offset 0: not a fastdatomic frame"
    e = _error(FrameDecoder(), b"FD\x02")
    assert e.data["reason"] == "version" and e.data["version"] == 2


def test_bad_version_names_offset():
    dec = FrameDecoder()
    ok = encode_frame(1, 1, b"x" * 12)               # 24 bytes
    e = _error(dec, ok + ref_frame(1, 2, b"", version=7))
    assert e.message == "protocol version 7 at stream offset 24 is not supported (this side speaks version 1)"
    assert e.data["reason"] == "version" and e.data["offset"] == 24 and e.data["version"] == 7
    assert e.data["frames"] == [(1, 1, b"x" * 12)]    # completed in this feed before the error
    assert dec.frames == 1


def test_oversize_refused_from_header_alone():
    dec = FrameDecoder()
    assert dec.feed(encode_frame(0, 0, b"")) == [(0, 0, b"")]
    header = struct.pack(">2sBBII", b"FD", 1, 3, 9, 20_000_000)
    e = _error(dec, header)                             # no payload byte sent or buffered
    assert e.message == "frame of 20000000 bytes at stream offset 12 exceeds max-frame-bytes 16777216"
    assert "max-frame-bytes" in e.hint and e.hint in str(e)
    assert e.data == {"reason": "oversize", "offset": 12, "length": 20_000_000,
                      "max_frame_bytes": 16777216, "frames": []}


def test_dead_after_error():
    dec = FrameDecoder()
    _error(dec, b"XX")
    assert dec.closed
    for _ in range(2):
        with pytest.raises(ProtocolError) as info:
            dec.feed(encode_frame(1, 1, b""))
        assert info.value.message == "decoder closed after an earlier protocol error"
        assert info.value.data["reason"] == "closed"
    with pytest.raises(ProtocolError, match="decoder closed after an earlier protocol error"):
        dec.eof()


def test_max_frame_bytes_boundary():
    for max_frame in (0, 1, 1000):
        dec = FrameDecoder(max_frame_bytes=max_frame)
        assert dec.max_frame_bytes == max_frame
        assert dec.feed(encode_frame(1, 1, b"")) == [(1, 1, b"")]
        assert dec.feed(encode_frame(1, 2, b"m" * max_frame)) == [(1, 2, b"m" * max_frame)]
        e = _error(dec, encode_frame(1, 3, b"m" * (max_frame + 1)))
        assert e.data["reason"] == "oversize" and e.data["length"] == max_frame + 1
        assert e.data["offset"] == 2 * HEADER_BYTES + max_frame


def test_max_frame_bytes_validated():
    assert FrameDecoder(2**32 - 1).max_frame_bytes == 2**32 - 1
    for bad in (-1, 2**32):
        with pytest.raises(ValueError, match="max_frame_bytes"):
            FrameDecoder(bad)
    with pytest.raises(TypeError, match="max_frame_bytes"):
        FrameDecoder(1.5)


# --- end of stream ---------------------------------------------------------------

@pytest.mark.parametrize("cut", [1, 5, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 3, HEADER_BYTES + 99])
def test_truncated_stream(cut):
    good = encode_frame(2, 2, b"")
    frame = encode_frame(1, 1, b"p" * 100)
    dec = FrameDecoder()
    assert dec.feed(good + frame[:cut]) == [(2, 2, b"")]
    assert dec.pending == cut and dec.frames == 1 and not dec.closed
    with pytest.raises(ProtocolError) as info:
        dec.eof()
    e = info.value
    assert e.data["reason"] == "truncated" and e.data["offset"] == HEADER_BYTES
    assert e.data["pending"] == cut
    if cut < HEADER_BYTES:
        assert e.message == (f"truncated frame at stream offset 12: the stream ended after {cut} "
                             f"of its 12 header bytes")
        assert e.data["expected"] is None
    else:
        assert e.message == f"truncated frame at stream offset 12: the stream ended after {cut} of its 112 bytes"
        assert e.data["expected"] == 112
    assert dec.closed


def test_clean_eof_closes():
    dec = FrameDecoder()
    dec.feed(encode_frame(1, 1, b"a"))
    assert dec.eof() is None and dec.closed
    assert dec.eof() is None
    with pytest.raises(ProtocolError, match="eof"):
        dec.feed(b"")


# --- size -------------------------------------------------------------------------

def test_huge_frame_in_small_chunks():
    size = 50 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    view = memoryview(encode_frame(7, 42, payload))
    dec = FrameDecoder(max_frame_bytes=64 * 1024 * 1024)
    got = []
    for i in range(0, len(view), 4096):
        got.extend(dec.feed(view[i:i + 4096]))
        if not got:
            assert dec.pending == min(i + 4096, len(view))
    assert len(got) == 1
    kind, req_id, body = got[0]
    assert (kind, req_id) == (7, 42) and body == payload
    assert dec.pending == 0 and dec.frames == 1


def test_many_tiny_frames_in_one_feed():
    n = 100_000
    wire = encode_frames([(i % 256, i, b"") for i in range(n)])
    dec = FrameDecoder()
    out = dec.feed(wire[:-5])
    assert len(out) == n - 1 and dec.pending == HEADER_BYTES - 5
    out += dec.feed(wire[-5:])
    assert out[-1] == ((n - 1) % 256, n - 1, b"") and dec.frames == n


def test_large_frame_in_one_feed():
    # Payloads of 1 MiB and more are copied with the GIL released.
    payload = b"z" * (3 << 20)
    frames = [(1, 1, payload), (2, 2, b"tail")]
    wire = encode_frames(frames)
    assert wire == ref_frame(1, 1, payload) + ref_frame(2, 2, b"tail")
    assert FrameDecoder(4 << 20).feed(wire) == frames
