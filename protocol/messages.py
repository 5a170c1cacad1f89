"""Sync messages: frozen dataclasses, msgpack encoding and strict decoding.

A message is one msgpack array `[code, field, ...]` carried in one frame.
There is no per-message version: the protocol version is agreed once, in
Hello, and a message's layout is fixed for that version. Hello is the only
message whose layout must never change; a decoder ignores fields appended to
it, so a future version can still be told apart and refused with
VersionMismatch. New message types get new codes and are only sent to a peer
that announced the matching capability.

Decoding bounds msgpack itself (str, bin and array sizes, no maps, no ext
types) and then checks every field by type, length and range. Anything off
raises `BadMessage`; so does building an invalid message locally.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack

from .errors import BadMessage
from .limits import (
    HELLO_MAGIC,
    MAX_ARRAY_LEN,
    MAX_BLOB_LEN,
    MAX_CAPABILITIES,
    MAX_CAPABILITY_LEN,
    MAX_ENTRIES,
    MAX_ORIGINS,
    MAX_REASON_LEN,
    MAX_SOFTWARE_LEN,
    MAX_STR_BYTES,
    MAX_WANT,
    SIGNATURE_LEN,
)
from .records import (
    HaveRecord,
    LogEntry,
    ManifestRecord,
    MemberRecord,
    NameRecord,
    check_id,
    check_tuple,
    check_uint,
    signed_entry_from_wire,
    signed_entry_to_wire,
)

__all__ = [
    "Ack",
    "Bye",
    "ChunkData",
    "ChunkMissing",
    "Hello",
    "Message",
    "Ping",
    "Pong",
    "Pull",
    "Records",
    "Summary",
    "WantChunks",
    "decode_message",
    "encode_message",
]

_CAPABILITY_RE = re.compile(rf"[a-z0-9._\-]{{1,{MAX_CAPABILITY_LEN}}}")


def _check_text(value: object, field: str, max_chars: int) -> None:
    if type(value) is not str or len(value) > max_chars:
        raise BadMessage(f"{field}: expected a str of at most {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadMessage(f"{field}: not valid UTF-8") from None


def _check_bool(value: object, field: str) -> None:
    if type(value) is not bool:
        raise BadMessage(f"{field}: expected a bool")


@dataclass(frozen=True, slots=True)
class Hello:
    """First message each way: who we are and what we speak."""

    CODE: ClassVar[int] = 1
    protocol_version: int
    node_id: bytes
    capabilities: tuple[str, ...] = ()
    software: str = ""

    def __post_init__(self) -> None:
        check_uint(self.protocol_version, "hello.protocol_version", 0, 0xFFFF)
        check_id(self.node_id, "hello.node_id")
        check_tuple(self.capabilities, "hello.capabilities", MAX_CAPABILITIES)
        for c in self.capabilities:
            if type(c) is not str or not _CAPABILITY_RE.fullmatch(c):
                raise BadMessage("hello.capabilities: expected [a-z0-9._-] strings")
        if len(set(self.capabilities)) != len(self.capabilities):
            raise BadMessage("hello.capabilities: duplicates")
        _check_text(self.software, "hello.software", MAX_SOFTWARE_LEN)


@dataclass(frozen=True, slots=True)
class Summary:
    """What the sender has: per origin, the highest log seq (sorted by origin, seq >= 1)."""

    CODE: ClassVar[int] = 2
    vector: tuple[tuple[bytes, int], ...]

    def __post_init__(self) -> None:
        check_tuple(self.vector, "summary.vector", MAX_ORIGINS)
        prev = b""
        for item in self.vector:
            if not isinstance(item, tuple) or len(item) != 2:
                raise BadMessage("summary.vector: expected (origin, seq) pairs")
            check_id(item[0], "summary.origin")
            check_uint(item[1], "summary.seq", 1)
            if item[0] <= prev:
                raise BadMessage("summary.vector: origins must be sorted and unique")
            prev = item[0]

    @classmethod
    def from_mapping(cls, highest: Mapping[bytes, int]) -> Summary:
        """Build from {origin: highest_seq}; origins at 0 are left out."""
        return cls(tuple(sorted((o, s) for o, s in highest.items() if s)))

    def as_dict(self) -> dict[bytes, int]:
        """The vector as {origin: highest_seq}."""
        return dict(self.vector)


@dataclass(frozen=True, slots=True)
class Records:
    """A page of `origin`'s log: contiguous signed entries; `more` = the sender has further
    pages. Signatures are checked by the receiver's store, against the origin's key."""

    CODE: ClassVar[int] = 3
    origin: bytes
    entries: tuple[LogEntry, ...]
    more: bool = False

    def __post_init__(self) -> None:
        check_id(self.origin, "records.origin")
        check_tuple(self.entries, "records.entries", MAX_ENTRIES)
        _check_bool(self.more, "records.more")
        if self.more and not self.entries:
            raise BadMessage("records: more=True on an empty page")
        prev = None
        for e in self.entries:
            if type(e) is not LogEntry:
                raise BadMessage("records.entries: expected LogEntry items")
            seq, rec, sig = e
            check_uint(seq, "entry.seq", 1)
            if type(sig) is not bytes or len(sig) != SIGNATURE_LEN:
                raise BadMessage(f"records.entries: signature must be {SIGNATURE_LEN} bytes")
            if prev is not None and seq != prev + 1:
                raise BadMessage("records.entries: seqs must be contiguous and increasing")
            prev = seq
            if type(rec) is NameRecord:
                if rec.version.origin != self.origin:
                    raise BadMessage("records: name write's origin differs from the log's")
            elif type(rec) not in (ManifestRecord, HaveRecord, MemberRecord):
                raise BadMessage("records.entries: expected a Manifest, Name, Have or Member record")


@dataclass(frozen=True, slots=True)
class Pull:
    """Ask for the page of `origin`'s log after `after_seq`: the next page after more=True,
    or again, once the receiver can check entries it had to refuse (a signer it did not
    know yet). The sender answers every Pull with exactly one Records."""

    CODE: ClassVar[int] = 4
    origin: bytes
    after_seq: int

    def __post_init__(self) -> None:
        check_id(self.origin, "pull.origin")
        check_uint(self.after_seq, "pull.after_seq")


@dataclass(frozen=True, slots=True)
class WantChunks:
    """Ask for the stored (encrypted) objects of these chunks."""

    CODE: ClassVar[int] = 5
    request_id: int
    chunk_ids: tuple[bytes, ...]

    def __post_init__(self) -> None:
        check_uint(self.request_id, "want.request_id")
        check_tuple(self.chunk_ids, "want.chunk_ids", MAX_WANT)
        if not self.chunk_ids:
            raise BadMessage("want.chunk_ids: empty")
        for c in self.chunk_ids:
            check_id(c, "want.chunk_id")
        if len(set(self.chunk_ids)) != len(self.chunk_ids):
            raise BadMessage("want.chunk_ids: duplicates")


@dataclass(frozen=True, slots=True)
class ChunkData:
    """One requested chunk: its stored object, opaque to the protocol."""

    CODE: ClassVar[int] = 6
    request_id: int
    chunk_id: bytes
    blob: bytes

    def __post_init__(self) -> None:
        check_uint(self.request_id, "chunk.request_id")
        check_id(self.chunk_id, "chunk.chunk_id")
        if type(self.blob) is not bytes or len(self.blob) > MAX_BLOB_LEN:
            raise BadMessage(f"chunk.blob: expected at most {MAX_BLOB_LEN} bytes")


@dataclass(frozen=True, slots=True)
class ChunkMissing:
    """One requested chunk the sender does not have."""

    CODE: ClassVar[int] = 7
    request_id: int
    chunk_id: bytes

    def __post_init__(self) -> None:
        check_uint(self.request_id, "missing.request_id")
        check_id(self.chunk_id, "missing.chunk_id")


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness probe; the peer answers Pong with the same nonce."""

    CODE: ClassVar[int] = 8
    nonce: int

    def __post_init__(self) -> None:
        check_uint(self.nonce, "ping.nonce")


@dataclass(frozen=True, slots=True)
class Pong:
    """Answer to Ping."""

    CODE: ClassVar[int] = 9
    nonce: int

    def __post_init__(self) -> None:
        check_uint(self.nonce, "pong.nonce")


@dataclass(frozen=True, slots=True)
class Bye:
    """Last message: the sender is closing, and why."""

    CODE: ClassVar[int] = 10
    reason: str = ""

    def __post_init__(self) -> None:
        _check_text(self.reason, "bye.reason", MAX_REASON_LEN)


@dataclass(frozen=True, slots=True)
class Ack:
    """The sender now holds `origin`'s log up to `seq` (after a last page, more=False), so
    the peer knows what it has not yet acknowledged (`peer ls` shows it as lag)."""

    CODE: ClassVar[int] = 11
    origin: bytes
    seq: int

    def __post_init__(self) -> None:
        check_id(self.origin, "ack.origin")
        check_uint(self.seq, "ack.seq")


Message = (
    Hello | Summary | Records | Pull | WantChunks | ChunkData | ChunkMissing | Ping | Pong | Bye
    | Ack
)


def _fields(msg: Message) -> list[Any]:
    match msg:
        case Hello():
            return [HELLO_MAGIC, msg.protocol_version, msg.node_id, msg.capabilities, msg.software]
        case Summary():
            return [msg.vector]
        case Records():
            return [msg.origin, [signed_entry_to_wire(e) for e in msg.entries], msg.more]
        case Pull():
            return [msg.origin, msg.after_seq]
        case Ack():
            return [msg.origin, msg.seq]
        case WantChunks():
            return [msg.request_id, msg.chunk_ids]
        case ChunkData():
            return [msg.request_id, msg.chunk_id, msg.blob]
        case ChunkMissing():
            return [msg.request_id, msg.chunk_id]
        case Ping() | Pong():
            return [msg.nonce]
        case Bye():
            return [msg.reason]
    raise TypeError(f"not a protocol message: {type(msg).__name__}")


def encode_message(msg: Message) -> bytes:
    """The msgpack payload for `msg` (frame it with `framing.encode_frame`)."""
    fields = _fields(msg)
    return msgpack.packb([msg.CODE, *fields], use_bin_type=True)


def _hello(f: tuple[Any, ...]) -> Hello:
    # Layout frozen across versions; trailing fields from newer peers are ignored.
    if len(f) < 5 or type(f[0]) is not str or f[0] != HELLO_MAGIC:
        raise BadMessage("hello: not a mosaic sync Hello")
    return Hello(f[1], f[2], f[3], f[4])


def _records(f: tuple[Any, ...]) -> Records:
    check_tuple(f[1], "records.entries", MAX_ENTRIES)
    return Records(f[0], tuple(signed_entry_from_wire(e) for e in f[1]), f[2])


_DECODERS: dict[int, tuple[int, Callable[[tuple[Any, ...]], Message]]] = {
    # code: (number of fields after the code, builder); -1 = "at least" (Hello)
    Hello.CODE: (-1, _hello),
    Summary.CODE: (1, lambda f: Summary(*f)),
    Records.CODE: (3, _records),
    Pull.CODE: (2, lambda f: Pull(*f)),
    WantChunks.CODE: (2, lambda f: WantChunks(*f)),
    ChunkData.CODE: (3, lambda f: ChunkData(*f)),
    ChunkMissing.CODE: (2, lambda f: ChunkMissing(*f)),
    Ping.CODE: (1, lambda f: Ping(*f)),
    Pong.CODE: (1, lambda f: Pong(*f)),
    Bye.CODE: (1, lambda f: Bye(*f)),
    Ack.CODE: (2, lambda f: Ack(*f)),
}


def decode_message(payload: bytes) -> Message:
    """Decode and fully check one frame payload; BadMessage on anything off."""
    n = len(payload)
    try:
        obj = msgpack.unpackb(
            payload, use_list=False, raw=False, strict_map_key=True,
            max_str_len=min(MAX_STR_BYTES, n), max_bin_len=min(MAX_BLOB_LEN, n),
            max_array_len=min(MAX_ARRAY_LEN, n), max_map_len=0, max_ext_len=0,
        )
    except MemoryError:
        raise
    except Exception as exc:  # msgpack raises ValueError subclasses and more
        raise BadMessage(f"undecodable payload: {type(exc).__name__}") from exc
    if not isinstance(obj, tuple) or not obj or type(obj[0]) is not int:
        raise BadMessage("expected [code, fields...]")
    spec = _DECODERS.get(obj[0])
    if spec is None:
        raise BadMessage(f"unknown message code {obj[0]}")
    nfields, build = spec
    fields = obj[1:]
    if len(fields) != nfields and nfields != -1:
        raise BadMessage(f"message {obj[0]}: expected {nfields} fields, got {len(fields)}")
    return build(fields)
