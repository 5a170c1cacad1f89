"""Message encoding: round trips, exact layouts, and strict rejection of anything off."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.protocol.errors import BadMessage
from mosaic.protocol.limits import HELLO_MAGIC, MAX_BLOB_LEN, MAX_CHUNKS, MAX_UINT, MAX_WANT
from mosaic.protocol.messages import (
    Bye,
    ChunkData,
    Hello,
    Message,
    Ping,
    Records,
    Summary,
    WantChunks,
    decode_message,
    encode_message,
)
from mosaic.protocol.records import (
    ChunkLocation,
    LogEntry,
    ManifestRecord,
    NameRecord,
    Version,
    VersionRef,
    entry_to_wire,
    size_bound,
)

from .strategies import manifests, messages, name_records

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32


def raw(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def rejected(obj: Any) -> None:
    with pytest.raises(BadMessage):
        decode_message(raw(obj))


@settings(max_examples=300, deadline=None)
@given(messages)
def test_round_trip(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


def test_hello_layout_and_extension() -> None:
    h = Hello(1, A, ("chunks",), "mosaic 0.1")
    assert msgpack.unpackb(encode_message(h)) == [1, HELLO_MAGIC, 1, A, ["chunks"], "mosaic 0.1"]
    # A future version may append fields to Hello; they are ignored.
    assert decode_message(raw([1, HELLO_MAGIC, 7, A, [], "x", [1, 2], "more"])) == Hello(7, A, (), "x")


@pytest.mark.parametrize("wire", [
    [1, "other-proto", 1, A, [], ""],
    [1, b"mosaic-sync", 1, A, [], ""],
    [1, HELLO_MAGIC, 1, A, []],
    [1, HELLO_MAGIC, True, A, [], ""],
    [1, HELLO_MAGIC, 1, A[:31], [], ""],
    [1, HELLO_MAGIC, 1, A, ["Upper"], ""],
    [1, HELLO_MAGIC, 1, A, ["x", "x"], ""],
    [1, HELLO_MAGIC, 1, A, [], "s" * 257],
    [1, HELLO_MAGIC, 1 << 16, A, [], ""],
])
def test_bad_hello(wire: list[Any]) -> None:
    rejected(wire)


def test_summary_layout() -> None:
    s = Summary.from_mapping({B: 5, A: 3, C: 0})
    assert s.vector == ((A, 3), (B, 5))
    assert msgpack.unpackb(encode_message(s)) == [2, [[A, 3], [B, 5]]]
    assert s.as_dict() == {A: 3, B: 5}


@pytest.mark.parametrize("vector", [
    [[B, 1], [A, 1]],  # unsorted
    [[A, 1], [A, 2]],  # duplicate origin
    [[A, 0]],  # zero seq is left out, never sent
    [[A, -1]],
    [[A, 1 << 63]],
    [[A, 1.0]],
    [[A, 1, 2]],
    [["a" * 32, 1]],
    [A],
])
def test_bad_summary(vector: list[Any]) -> None:
    rejected([2, vector])


SIG = bytes(range(64))


def S(body: list[Any]) -> list[Any]:  # noqa: N802 - a signed entry, as on the wire
    return [SIG, body]


def _manifest_wire(seq: int = 1) -> list[Any]:
    return [seq, 1, B, 30, 5, [[C, 10], [A, 20]], [[C, B, 0, 50, ["s3", "local"]]]]


def _name_wire(seq: int = 2, origin: bytes = A) -> list[Any]:
    return [seq, 2, "docs/x.txt", B, 100, origin, [50, C], [[10, B]]]


def test_records_layout() -> None:
    wire = [3, A, [S(_manifest_wire()), S(_name_wire())], True]
    msg = decode_message(raw(wire))
    assert msg == Records(A, (
        LogEntry(1, ManifestRecord(B, 30, 5, ((C, 10), (A, 20)),
                                   (ChunkLocation(C, B, 0, 50, ("s3", "local")),)), SIG),
        LogEntry(2, NameRecord("docs/x.txt", B, Version(100, A, VersionRef(50, C),
                                                        (VersionRef(10, B),))), SIG),
    ), True)
    assert msgpack.unpackb(encode_message(msg)) == wire


def _mutated(index: int, value: Any, entry: list[Any] | None = None) -> list[Any]:
    e = list(entry or _manifest_wire())
    e[index] = value
    return [3, A, [S(e)], False]


@pytest.mark.parametrize("wire", [
    _mutated(0, 0),  # seq starts at 1
    _mutated(0, True),
    _mutated(1, 9),  # unknown record kind
    _mutated(2, B[:31]),
    _mutated(3, 31),  # size != sum of chunk lengths
    _mutated(3, -30),
    _mutated(4, 1 << 63),
    _mutated(5, [[C, 10], [A, 0]] ),  # zero-length chunk
    _mutated(5, [[C, 10], [A, 1 << 32]]),
    _mutated(5, [[C, 30, 1]]),
    _mutated(5, {"c": 1}),
    _mutated(6, [[A + b"x", B, 0, 50, []]]),
    _mutated(6, [[B, B, 0, 50, []]]),  # hint for a chunk not in the file
    _mutated(6, [[C, B, 0, 0, []]]),
    _mutated(6, [[C, B, 0, 50, ["bad name"]]]),
    _mutated(6, [[C, B, 0, 50, ["s3"] * 17]]),
    _mutated(6, [[C, B, 0, 50]]),
    [3, A, [S(_manifest_wire() + [1])], False],
    [3, A, [S(_manifest_wire(1)), S(_manifest_wire(3))], False],  # gap inside a page
    [3, A, [S(_manifest_wire(2)), S(_manifest_wire(1))], False],
    [3, A, [], True],  # more on an empty page
    [3, A, [S(_manifest_wire())], 1],
    [3, A, [S(_name_wire(origin=B))], False],  # name write from another origin
    [3, A, [S(_manifest_wire())]],
    [3, A, [_manifest_wire()], False],  # not signed
    [3, A, [[SIG[:63], _manifest_wire()]], False],  # signature of the wrong length
    [3, A, [[None, _manifest_wire()]], False],
    [3, A, [[SIG, _manifest_wire(), SIG]], False],
    [3, A, [S([1, 4, b""])], False],  # member record without a certificate
    [3, A, [S([1, 4, b"x" * 4097])], False],
])
def test_bad_records(wire: list[Any]) -> None:
    rejected(wire)


@pytest.mark.parametrize("name", [
    "", "/abs", "a//b", "a/./b", "../x", "a/..", "nul\x00", "x" * 401, "é" * 201, "tab\t", "del\x7f", "c1\x85", 7, b"x",
])
def test_bad_names(name: Any) -> None:
    rejected([3, A, [S([1, 2, name, B, 100, A, None, []])], False])


@pytest.mark.parametrize("version", [
    [100, A, [100, C], []],  # base not older than the write
    [100, A, [0, C], []],
    [100, A, [50, C], [[50, C]]],  # resolves repeats base
    [100, A, [50, C], [[20, C], [10, C]]],  # unsorted
    [100, A, [50, C], [[20, C], [20, C]]],
    [100, A, None, [[200, C]]],
    [0, A, None, []],
    [100, A, [50], []],
    [100, A, [50, C, 1], []],
])
def test_bad_versions(version: list[Any]) -> None:
    rejected([3, A, [S([1, 2, "n", B, *version])], False])


def test_names_at_the_limit() -> None:
    ok = "/".join(["x" * 99] * 4) + "y"  # 400 bytes
    msg = decode_message(raw([3, A, [S([1, 2, ok, None, 5, A, None, []])], False]))
    assert isinstance(msg, Records)


@pytest.mark.parametrize("wire", [
    [5, 1, []],
    [5, 1, [A, A]],
    [5, 1, [A] * (MAX_WANT + 1)],
    [5, -1, [A]],
    [6, 1, A],
    [6, 1, A, "blob"],
    [7, 1, A, b""],
    [8, 1 << 64 - 1],
    [8, None],
    [9, 1.5],
    [10, b"bytes"],
    [10, "r" * 1025],
    [0, 1],
    [11],
    [-1],
    [True, 1],
    [],
    {"code": 1},
    7,
    "hello",
    [4, A],
])
def test_bad_other(wire: Any) -> None:
    rejected(wire)


@pytest.mark.parametrize("payload", [
    b"",
    b"\xc1",  # never used
    raw([8, 1]) + b"\x00",  # trailing bytes
    raw([8, 1])[:-1],
    b"\x92\x08\xd4\x01\x01",  # ext type
    b"\x92\x08\xc7\x00\x05",  # empty ext
    b"\x92\x0a\xa2\xff\xfe",  # invalid UTF-8
    b"\x92\x08\xcb" + b"\x7f\xf8" + b"\x00" * 6,  # NaN
    b"\x91" * 2000 + b"\xc0",  # nesting bomb
    b"\xdd\x00\x01\x00\x00" * 50,  # arrays claiming 65536 items with no data
])
def test_undecodable(payload: bytes) -> None:
    with pytest.raises(BadMessage):
        decode_message(payload)


def test_local_construction_is_checked_too() -> None:
    with pytest.raises(BadMessage):
        ChunkData(1, A, b"x" * (MAX_BLOB_LEN + 1))
    with pytest.raises(BadMessage):
        WantChunks(1, (A, A))
    with pytest.raises(BadMessage):
        Ping(MAX_UINT + 1)
    with pytest.raises(BadMessage):
        Bye("\udc80")  # lone surrogate cannot be encoded
    with pytest.raises(BadMessage):
        ManifestRecord(A, 1, 0, ((B, 2),))
    with pytest.raises(BadMessage):
        ManifestRecord(A, 2, 0, ((B, 2),), ((B, C, 0, 1, ()),))  # type: ignore[arg-type]
    with pytest.raises(BadMessage):
        NameRecord("x", None, (5, A, None, ()))  # type: ignore[arg-type]


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(TypeError):
        encode_message("hello")  # type: ignore[arg-type]


def test_big_blob_round_trip() -> None:
    msg = ChunkData(3, A, b"\xab" * MAX_BLOB_LEN)
    payload = encode_message(msg)
    assert len(payload) < 16 * 1024 * 1024
    assert decode_message(payload) == msg


@settings(max_examples=200, deadline=None)
@given(st.one_of(manifests(), name_records()), st.integers(1, MAX_UINT))
def test_size_bound_is_an_upper_bound(rec: ManifestRecord | NameRecord, seq: int) -> None:
    assert len(raw(entry_to_wire(LogEntry(seq, rec)))) <= size_bound(rec)


def test_size_bound_worst_cases() -> None:
    loc = ChunkLocation(C, B, MAX_UINT, (1 << 32) - 1, tuple(f"{i:02}" + "b" * 62 for i in range(16)))
    big = ManifestRecord(A, 300 * ((1 << 32) - 1), MAX_UINT, ((C, (1 << 32) - 1),) * 300,
                         (loc,) * 300)
    name = NameRecord("\U0001f600" * 100, A, Version(MAX_UINT, A, VersionRef(MAX_UINT - 1, B),
                      tuple(VersionRef(i + 1, C) for i in range(256))))
    for rec in (big, name):
        assert len(raw(entry_to_wire(LogEntry(MAX_UINT, rec)))) <= size_bound(rec)


def test_manifest_too_large_to_frame_is_refused() -> None:
    loc = ChunkLocation(C, B, 0, 1, tuple("b" * 64 for _ in range(16)))
    with pytest.raises(BadMessage):
        ManifestRecord(A, MAX_CHUNKS, 0, ((C, 1),) * MAX_CHUNKS, (loc,) * MAX_CHUNKS)
    ManifestRecord(A, MAX_CHUNKS, 0, ((C, 1),) * MAX_CHUNKS)  # without hints it fits
