"""Hostile input: whatever the peer sends, only ProtocolError comes out, and the
store is not touched unless a message is fully valid."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosaic.protocol.errors import BadMessage, FrameTooLarge, MalformedFrame, ProtocolError
from mosaic.protocol.framing import FrameDecoder, encode_frame
from mosaic.protocol.limits import PROTOCOL_VERSION
from mosaic.protocol.memstore import MemoryStore
from mosaic.protocol.messages import Hello, Message, Summary, decode_message, encode_message
from mosaic.protocol.sync import SyncSession

from .helpers import nid
from .strategies import messages

ME, PEER = nid("me"), nid("peer")
LIMIT = 64 * 1024

leaves = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
          | st.text(max_size=20) | st.binary(max_size=40))
objects = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=25,
)
# Arrays that start like a message, to reach every per-type decoder.
message_like = st.builds(lambda code, rest: [code, *rest], st.integers(-1, 12),
                         st.lists(objects, max_size=8))


def live_session() -> tuple[SyncSession, MemoryStore]:
    """A session ready for Records: handshake done, peer claims lots of data."""
    store = MemoryStore(ME)
    s = SyncSession(ME, store)
    s.receive(Hello(PROTOCOL_VERSION, PEER))
    s.receive(Summary(((PEER, 1000),)))
    return s, store


def pump(pieces: list[bytes]) -> tuple[MemoryStore, list[Message]]:
    """Feed raw stream pieces through framing, decoding and the session."""
    session, store = live_session()
    decoder = FrameDecoder(max_size=LIMIT)
    accepted: list[Message] = []
    try:
        for piece in pieces:
            for payload in decoder.feed(piece):
                msg = decode_message(payload)
                session.receive(msg)
                accepted.append(msg)
        decoder.close()
    except ProtocolError:
        pass  # the only acceptable failure
    return store, accepted


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_random_bytes(pieces: list[bytes]) -> None:
    store, _ = pump(pieces)
    assert store.apply_calls == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=4))
def test_random_payloads_in_valid_frames(payloads: list[bytes]) -> None:
    store, _ = pump([encode_frame(p) for p in payloads])
    assert store.apply_calls == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(objects | message_like, min_size=1, max_size=4))
def test_random_msgpack_objects(objs: list[Any]) -> None:
    store, _ = pump([encode_frame(msgpack.packb(o, use_bin_type=True)) for o in objs])
    assert store.apply_calls == 0


def _mutate(tree: Any, rng: random.Random, value: Any) -> Any:
    """Replace one random node of a decoded message tree with `value`."""
    if not isinstance(tree, list) or not tree or rng.random() < 0.25:
        return value
    i = rng.randrange(len(tree))
    return [*tree[:i], _mutate(tree[i], rng, value), *tree[i + 1 :]]


@settings(max_examples=300, deadline=None)
@given(messages, st.randoms(use_true_random=False), objects)
def test_mutated_valid_messages(msg: Message, rng: random.Random, value: Any) -> None:
    tree = msgpack.unpackb(encode_message(msg))
    payload = msgpack.packb(_mutate(tree, rng, value), use_bin_type=True)
    try:
        decoded = decode_message(payload)
    except BadMessage:
        return
    assert decode_message(encode_message(decoded)) == decoded  # whatever passes is sound
    pump([encode_frame(payload)])  # and the session copes with it


@settings(max_examples=200, deadline=None)
@given(messages, st.randoms(use_true_random=False))
def test_byte_flips_in_valid_messages(msg: Message, rng: random.Random) -> None:
    payload = bytearray(encode_message(msg))
    for _ in range(rng.randint(1, 4)):
        payload[rng.randrange(len(payload))] = rng.randrange(256)
    try:
        decoded = decode_message(bytes(payload))
    except BadMessage:
        return
    assert decode_message(encode_message(decoded)) == decoded
    pump([encode_frame(bytes(payload))])


@settings(max_examples=200, deadline=None)
@given(messages, st.data())
def test_truncated_messages_and_frames(msg: Message, data: Any) -> None:
    payload = encode_message(msg)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(BadMessage):
        decode_message(payload[:cut])
    frame = encode_frame(payload)
    dec = FrameDecoder()
    assert dec.feed(frame[: data.draw(st.integers(1, len(frame) - 1))]) == []
    with pytest.raises(MalformedFrame):
        dec.close()


@settings(max_examples=100, deadline=None)
@given(st.integers(LIMIT + 1, 2**32 - 1), st.binary(max_size=64))
def test_oversize_frames_are_refused_at_the_header(size: int, body: bytes) -> None:
    dec = FrameDecoder(max_size=LIMIT)
    with pytest.raises(FrameTooLarge):
        dec.feed(size.to_bytes(4, "big") + body)
    store, _ = pump([size.to_bytes(4, "big"), body])
    assert store.apply_calls == 0


def test_a_valid_records_page_does_reach_the_store() -> None:
    """Control for the tests above: the pump does apply genuine records."""
    from mosaic.protocol.messages import Records
    from mosaic.protocol.records import LogEntry

    from .helpers import make_manifest

    page = Records(PEER, (LogEntry(1, make_manifest(random.Random(1)), bytes(64)),))
    store, accepted = pump([encode_frame(encode_message(page))])
    assert accepted == [page] and store.apply_calls == 1
