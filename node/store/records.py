"""The index's record types and their byte codecs.

Manifest, ChunkRecord and PackRecord are what the index (index.py) stores and returns; the
codecs here turn them and the integer keys and counters into the bytes of its rows (layouts in
index.py's docstring and docs/format.md). Nothing here touches LMDB.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

import msgpack

_ENTRY = struct.Struct("<32sI")
U64 = struct.Struct("<Q")  # counters, times (also used by cluster/synclog.py)
BE64 = struct.Struct(">Q")  # file and pack numbers as keys (sorted), event times
FOREIGN = ""  # PackRecord.owner of a pack sealed by another node (known by import or hint)


@dataclass(frozen=True)
class Manifest:
    """A file: its ID (plain BLAKE3), size, creation time and ordered chunk list."""

    file_id: bytes
    size: int
    created_ns: int
    chunks: tuple[tuple[bytes, int], ...]  # (chunk_id, plain length)

    def offsets(self) -> list[int]:
        """The byte offset of each chunk in the file."""
        out, pos = [], 0
        for _, n in self.chunks:
            out.append(pos)
            pos += n
        return out


@dataclass(frozen=True)
class ChunkRecord:
    """Where one chunk is stored and how many manifests reference it."""

    pack_id: bytes
    offset: int
    stored_len: int
    plain_len: int
    refcount: int


@dataclass(frozen=True)
class PackRecord:
    """One pack: size, chunk count, whether a local copy exists, its backends, and its owner.

    `owner` is the node tag (config `node.tag`) of the node that sealed the pack: only that
    node deletes, rewrites or sweeps it on a backend. "" marks a pack this node knows only
    through an import or a replication location hint (sealed elsewhere); None is a record
    written before owners were recorded (`Index.owns` decides those).
    """

    size: int
    n_chunks: int
    local: bool
    locations: tuple[str, ...]
    created_ns: int
    owner: str | None = None

    @classmethod
    def sealed(cls, size: int, n_chunks: int, owner: str | None = None) -> PackRecord:
        """A pack just written to the local store by node `owner`, not yet on any backend."""
        return cls(size, n_chunks, True, (), time.time_ns(), owner or None)

    @classmethod
    def hinted(cls, locations: Iterable[str], local: bool = False) -> PackRecord:
        """A pack known only from a location hint (size and chunk count unknown; not ours)."""
        return cls(0, 0, local, tuple(sorted(set(locations))), time.time_ns(), FOREIGN)

    def with_locations(self, locations: Iterable[str]) -> PackRecord:
        """This record with exactly these backends (sorted, distinct)."""
        return replace(self, locations=tuple(sorted(set(locations))))

    def adding(self, *backends: str) -> PackRecord:
        """This record with more backends."""
        return self.with_locations({*self.locations, *backends})


def encode_chunk_table(chunks: tuple[tuple[bytes, int], ...] | list) -> bytes:
    """n x (32-byte ID + u32 length)."""
    return b"".join(_ENTRY.pack(c, n) for c, n in chunks)


def decode_chunk_table(blob: bytes) -> tuple[tuple[bytes, int], ...]:
    """Inverse of encode_chunk_table."""
    return tuple(_ENTRY.iter_unpack(blob))


def encode_row(obj: object) -> bytes:
    """A row value as msgpack (bytes stay bytes)."""
    return msgpack.packb(obj, use_bin_type=True)


def decode_row(b: bytes) -> list:
    """Inverse of encode_row."""
    return msgpack.unpackb(b, raw=False)


def decode_pack_record(v: bytes) -> PackRecord:
    """A `packs` row as a PackRecord (the pack number is left out)."""
    row = decode_row(v)
    _, size, n, local, locs, created = row[:6]
    owner = row[6] if len(row) > 6 else None  # older rows have no owner
    return PackRecord(size, n, local, tuple(locs), created, owner)
