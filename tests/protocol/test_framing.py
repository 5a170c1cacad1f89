"""Length-prefixed framing: round trips at any split point, strict limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.protocol.errors import FrameTooLarge, MalformedFrame, ProtocolError
from mosaic.protocol.framing import FrameDecoder, encode_frame


def test_encode_layout() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"


def test_encode_refuses_empty_and_oversize() -> None:
    with pytest.raises(MalformedFrame):
        encode_frame(b"")
    with pytest.raises(FrameTooLarge) as info:
        encode_frame(b"x" * 11, max_size=10)
    assert (info.value.size, info.value.limit) == (11, 10)


@settings(max_examples=150, deadline=None)
@given(
    payloads=st.lists(st.binary(min_size=1, max_size=300), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=20),
)
def test_any_split_points_give_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    dec = FrameDecoder(max_size=300)
    out: list[bytes] = []
    for i, j in zip(bounds, bounds[1:], strict=False):
        out += dec.feed(stream[i:j])
    assert out == payloads
    assert dec.buffered == 0
    dec.close()


def test_byte_by_byte() -> None:
    stream = encode_frame(b"hello") + encode_frame(b"w" * 70_000)
    dec = FrameDecoder()
    out = [p for i in range(len(stream)) for p in dec.feed(stream[i : i + 1])]
    assert out == [b"hello", b"w" * 70_000]


def test_too_large_is_refused_at_the_header() -> None:
    dec = FrameDecoder(max_size=1024)
    assert dec.feed(b"\x00\x00") == []
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(b"\x04\x01")  # 1025: refused with no body bytes seen
    assert info.value.size == 1025
    assert dec.buffered == 0


def test_limit_is_inclusive() -> None:
    dec = FrameDecoder(max_size=4)
    assert dec.feed(encode_frame(b"abcd")) == [b"abcd"]


def test_huge_header_does_not_buffer() -> None:
    dec = FrameDecoder()
    with pytest.raises(FrameTooLarge):
        dec.feed(b"\xff\xff\xff\xff" + b"x" * 100)
    assert dec.buffered == 0


def test_zero_length_frame_is_malformed() -> None:
    with pytest.raises(MalformedFrame):
        FrameDecoder().feed(b"\x00\x00\x00\x00")


def test_decoder_stays_failed() -> None:
    dec = FrameDecoder(max_size=8)
    with pytest.raises(FrameTooLarge):
        dec.feed(b"\x00\x00\x00\x09")
    with pytest.raises(MalformedFrame):
        dec.feed(encode_frame(b"ok"))


@pytest.mark.parametrize("tail", [b"\x00", b"\x00\x00\x00\x05ab", b"\x00\x00\x00\x05"])
def test_truncated_stream_is_reported_on_close(tail: bytes) -> None:
    dec = FrameDecoder()
    assert dec.feed(encode_frame(b"one") + tail) == [b"one"]
    with pytest.raises(MalformedFrame):
        dec.close()


def test_bad_limit() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_size=0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_raise_only_protocol_errors(chunks: list[bytes]) -> None:
    dec = FrameDecoder(max_size=256)
    try:
        for c in chunks:
            for p in dec.feed(c):
                assert 1 <= len(p) <= 256
        dec.close()
    except ProtocolError:
        pass
