"""Replicated log records: manifests and name writes, with their checks and wire form.

Each node keeps one append-only log per *origin* (the node that wrote the
record); `seq` numbers an origin's log from 1 without gaps. Records are frozen
dataclasses that check every field in `__post_init__`, so an invalid record can
be neither built locally nor decoded from the wire: both raise `BadMessage`.

Wire form of a log entry's body (msgpack array, see docs/protocol.md):

    [seq, 1, file_id, size, created_ns, [[chunk_id, length], ...],
             [[chunk_id, pack_id, offset, length, [backend_id, ...]], ...]]  manifest
    [seq, 2, name, file_id | nil, hlc, origin, [hlc, origin] | nil,
             [[hlc, origin], ...]]                                         name write
    [seq, 3, file_id, complete]                                            have
    [seq, 4, cert_der]                                                     member

A signed entry, as sent and stored, is `[signature, body]`: the origin's
Ed25519 signature over the log's hash chain up to this entry (protocol/signing.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import BadMessage
from .limits import (
    ID_LEN,
    MAX_BACKEND_NAME,
    MAX_BACKENDS,
    MAX_CERT_LEN,
    MAX_CHUNK_LEN,
    MAX_CHUNKS,
    MAX_LOCATIONS,
    MAX_RECORD_BYTES,
    MAX_RESOLVES,
    MAX_UINT,
    SIGNATURE_LEN,
)
from .name_rules import InvalidName, check_canonical

__all__ = [
    "ChunkLocation",
    "LogEntry",
    "ManifestRecord",
    "MemberRecord",
    "NameRecord",
    "Record",
    "Version",
    "VersionRef",
    "check_id",
    "check_name",
    "check_uint",
    "entry_from_wire",
    "entry_to_wire",
    "signed_entry_from_wire",
    "signed_entry_to_wire",
    "size_bound",
]

KIND_MANIFEST = 1
KIND_NAME = 2
KIND_HAVE = 3
KIND_MEMBER = 4
_BACKEND_RE = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_BACKEND_NAME}}}")


def check_id(value: object, field: str) -> None:
    """Raise BadMessage unless `value` is exactly 32 bytes."""
    if type(value) is not bytes or len(value) != ID_LEN:
        raise BadMessage(f"{field}: expected {ID_LEN} bytes")


def check_uint(value: object, field: str, lo: int = 0, hi: int = MAX_UINT) -> None:
    """Raise BadMessage unless `value` is an int (not bool) in lo..hi."""
    if type(value) is not int or not lo <= value <= hi:
        raise BadMessage(f"{field}: expected an integer in {lo}..{hi}")


def check_tuple(value: object, field: str, max_len: int) -> None:
    """Raise BadMessage unless `value` is a tuple of at most `max_len` items."""
    if not isinstance(value, tuple) or len(value) > max_len:
        raise BadMessage(f"{field}: expected a tuple of at most {max_len} items")


def check_name(value: object, field: str = "name") -> None:
    """Raise BadMessage unless `value` is a valid name in canonical form.

    The rule is protocol/name_rules.py's, the one the CLI, the API and the
    manifest import use: relative, no empty, `.` or `..` segment, no control
    character, valid UTF-8, at most name_rules.MAX_NAME_BYTES bytes.
    """
    try:
        check_canonical(value)
    except InvalidName as e:
        raise BadMessage(f"{field}: {e}") from None


@dataclass(frozen=True, slots=True)
class ChunkLocation:
    """Hint: chunk `chunk_id` is stored at `offset`/`length` in pack `pack_id` on the backends
    whose backend IDs (the identity markers of `mosaic backend add`) are `backends`."""

    chunk_id: bytes
    pack_id: bytes
    offset: int
    length: int
    backends: tuple[str, ...]

    def __post_init__(self) -> None:
        check_id(self.chunk_id, "location.chunk_id")
        check_id(self.pack_id, "location.pack_id")
        check_uint(self.offset, "location.offset")
        check_uint(self.length, "location.length", 1, MAX_CHUNK_LEN)
        check_tuple(self.backends, "location.backends", MAX_BACKENDS)
        for b in self.backends:
            if type(b) is not str or not _BACKEND_RE.fullmatch(b):
                raise BadMessage("location.backends: not a valid backend name")


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """A file: id, size, creation time, ordered (chunk_id, plain length) list, location hints."""

    file_id: bytes
    size: int
    created_ns: int
    chunks: tuple[tuple[bytes, int], ...]
    locations: tuple[ChunkLocation, ...] = ()

    def __post_init__(self) -> None:
        check_id(self.file_id, "manifest.file_id")
        check_uint(self.size, "manifest.size")
        check_uint(self.created_ns, "manifest.created_ns")
        check_tuple(self.chunks, "manifest.chunks", MAX_CHUNKS)
        total = 0
        for c in self.chunks:
            if not isinstance(c, tuple) or len(c) != 2:
                raise BadMessage("manifest.chunks: expected (chunk_id, length) pairs")
            cid, n = c
            if type(cid) is not bytes or len(cid) != ID_LEN:
                raise BadMessage(f"manifest.chunks: chunk id must be {ID_LEN} bytes")
            if type(n) is not int or not 0 < n <= MAX_CHUNK_LEN:
                raise BadMessage(f"manifest.chunks: length must be in 1..{MAX_CHUNK_LEN}")
            total += n
        if total != self.size:
            raise BadMessage(f"manifest: chunk lengths add up to {total}, not size {self.size}")
        check_tuple(self.locations, "manifest.locations", MAX_LOCATIONS)
        if self.locations:
            ids = {c[0] for c in self.chunks}
            for loc in self.locations:
                if type(loc) is not ChunkLocation:
                    raise BadMessage("manifest.locations: expected ChunkLocation items")
                if loc.chunk_id not in ids:
                    raise BadMessage("manifest.locations: hint for a chunk not in the file")
            if size_bound(self) > MAX_RECORD_BYTES:
                raise BadMessage(f"manifest: larger than {MAX_RECORD_BYTES} bytes encoded")


class VersionRef(NamedTuple):
    """Identity of one name write: its HLC timestamp and origin node."""

    hlc: int
    origin: bytes


def _check_ref(ref: object, field: str, below: int) -> None:
    if type(ref) is not VersionRef:
        raise BadMessage(f"{field}: expected a VersionRef")
    check_uint(ref.hlc, f"{field}.hlc", 1, below - 1)
    check_id(ref.origin, f"{field}.origin")


@dataclass(frozen=True, slots=True)
class Version:
    """When and where a name write happened, and which versions it replaced.

    `base` is the winning version the writer saw (None for a create); `resolves`
    lists further conflict heads this write deliberately closes (usually empty).
    Every replaced version has a smaller hlc, so the history is acyclic.
    """

    hlc: int
    origin: bytes
    base: VersionRef | None = None
    resolves: tuple[VersionRef, ...] = ()

    def __post_init__(self) -> None:
        check_uint(self.hlc, "version.hlc", 1)
        check_id(self.origin, "version.origin")
        if self.base is not None:
            _check_ref(self.base, "version.base", self.hlc)
        check_tuple(self.resolves, "version.resolves", MAX_RESOLVES)
        prev: VersionRef | None = None
        for r in self.resolves:
            _check_ref(r, "version.resolves", self.hlc)
            if (prev is not None and r <= prev) or r == self.base:
                raise BadMessage("version.resolves: must be sorted, unique, without base")
            prev = r

    @property
    def ref(self) -> VersionRef:
        """This version's identity."""
        return VersionRef(self.hlc, self.origin)

    @property
    def supersedes(self) -> tuple[VersionRef, ...]:
        """Every version this write replaces (base, then resolves)."""
        return self.resolves if self.base is None else (self.base, *self.resolves)


@dataclass(frozen=True, slots=True)
class NameRecord:
    """A write of `name`: point it at `file_id`, or delete it (None = tombstone)."""

    name: str
    file_id: bytes | None
    version: Version

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.file_id is not None:
            check_id(self.file_id, "name.file_id")
        if type(self.version) is not Version:
            raise BadMessage("name.version: expected a Version")


@dataclass(frozen=True, slots=True)
class HaveRecord:
    """The log's origin holds `file_id` complete (every chunk local or on its backends), or
    no longer does. Lets every node tell where a file is and count copies across nodes."""

    file_id: bytes
    complete: bool

    def __post_init__(self) -> None:
        check_id(self.file_id, "have.file_id")
        if type(self.complete) is not bool:
            raise BadMessage("have.complete: expected a bool")


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """The log's origin trusts the node of this certificate (node ID = SHA-256 of the DER):
    written when a node first meets a peer it was told to trust (`peer add`), and relayed
    with the origin's signature, so every node learns every member's key."""

    cert: bytes

    def __post_init__(self) -> None:
        if type(self.cert) is not bytes or not 1 <= len(self.cert) <= MAX_CERT_LEN:
            raise BadMessage(f"member.cert: expected 1..{MAX_CERT_LEN} bytes")


Record = ManifestRecord | NameRecord | HaveRecord | MemberRecord


def size_bound(rec: Record) -> int:
    """An upper bound on the encoded size of a log entry holding `rec` (cheap to compute)."""
    if type(rec) is HaveRecord:
        return 130
    if type(rec) is MemberRecord:
        return 90 + len(rec.cert)
    if type(rec) is ManifestRecord:
        n = 80 + 40 * len(rec.chunks)
        for loc in rec.locations:
            n += 90 + sum(len(b) + 2 for b in loc.backends)
        return n + 70
    return 220 + 4 * len(rec.name) + 44 * len(rec.version.resolves)


class LogEntry(NamedTuple):
    """One entry of an origin's log; `sig` is the origin's signature (empty until signed)."""

    seq: int
    record: Record
    sig: bytes = b""


def _ref_wire(r: VersionRef) -> list[Any]:
    return [r.hlc, r.origin]


def entry_to_wire(entry: LogEntry) -> list[Any]:
    """The msgpack-ready array for one log entry's body (what the signature covers)."""
    seq, rec = entry.seq, entry.record
    if type(rec) is MemberRecord:
        return [seq, KIND_MEMBER, rec.cert]
    if type(rec) is HaveRecord:
        return [seq, KIND_HAVE, rec.file_id, rec.complete]
    if type(rec) is ManifestRecord:
        return [seq, KIND_MANIFEST, rec.file_id, rec.size, rec.created_ns, rec.chunks,
                [[x.chunk_id, x.pack_id, x.offset, x.length, x.backends] for x in rec.locations]]
    v = rec.version
    return [seq, KIND_NAME, rec.name, rec.file_id, v.hlc, v.origin,
            None if v.base is None else _ref_wire(v.base), [_ref_wire(r) for r in v.resolves]]


def _ref_from_wire(t: object, field: str) -> VersionRef:
    if not isinstance(t, tuple) or len(t) != 2:
        raise BadMessage(f"{field}: expected [hlc, origin]")
    return VersionRef(*t)


def entry_from_wire(t: object, sig: bytes = b"") -> LogEntry:
    """Build and fully check a LogEntry from its decoded msgpack tuple (with `sig` beside it)."""
    if not isinstance(t, tuple) or len(t) < 2:
        raise BadMessage("entry: expected [seq, kind, ...]")
    seq, kind = t[0], t[1]
    check_uint(seq, "entry.seq", 1)
    if type(kind) is int and kind == KIND_MANIFEST:
        if len(t) != 7:
            raise BadMessage("manifest entry: expected 7 fields")
        locs = t[6]
        check_tuple(locs, "manifest.locations", MAX_LOCATIONS)
        for x in locs:
            if not isinstance(x, tuple) or len(x) != 5:
                raise BadMessage("manifest.locations: expected 5-field arrays")
        rec: Record = ManifestRecord(t[2], t[3], t[4], t[5], tuple(ChunkLocation(*x) for x in locs))
    elif type(kind) is int and kind == KIND_NAME:
        if len(t) != 8:
            raise BadMessage("name entry: expected 8 fields")
        base = None if t[6] is None else _ref_from_wire(t[6], "version.base")
        check_tuple(t[7], "version.resolves", MAX_RESOLVES)
        resolves = tuple(_ref_from_wire(r, "version.resolves") for r in t[7])
        rec = NameRecord(t[2], t[3], Version(t[4], t[5], base, resolves))
    elif type(kind) is int and kind == KIND_HAVE:
        if len(t) != 4:
            raise BadMessage("have entry: expected 4 fields")
        rec = HaveRecord(t[2], t[3])
    elif type(kind) is int and kind == KIND_MEMBER:
        if len(t) != 3:
            raise BadMessage("member entry: expected 3 fields")
        rec = MemberRecord(t[2])
    else:
        raise BadMessage(f"entry: unknown record kind {kind!r}")
    return LogEntry(seq, rec, sig)


def signed_entry_to_wire(entry: LogEntry) -> list[Any]:
    """`[signature, body]`: a signed entry as sent in Records and kept in the node's log."""
    if len(entry.sig) != SIGNATURE_LEN:
        raise BadMessage("entry: not signed")
    return [entry.sig, entry_to_wire(entry)]


def signed_entry_from_wire(t: object) -> LogEntry:
    """Inverse of `signed_entry_to_wire`: checks the shape (not the signature itself)."""
    if not isinstance(t, tuple) or len(t) != 2:
        raise BadMessage("entry: expected [signature, body]")
    sig = t[0]
    if type(sig) is not bytes or len(sig) != SIGNATURE_LEN:
        raise BadMessage(f"entry.signature: expected {SIGNATURE_LEN} bytes")
    return entry_from_wire(t[1], sig)
