"""Where a file's chunks are: each distinct chunk once, with its record and its pack's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .records import ChunkRecord, Manifest, PackRecord

if TYPE_CHECKING:
    import lmdb

    from .index import Index

Placement = tuple[bytes, ChunkRecord | None, PackRecord | None]
"""(chunk ID, its record or None if unknown, its pack's record or None if unknown)."""


def distinct_chunks(index: Index, txn: lmdb.Transaction, m: Manifest,
                    packs: dict[bytes, PackRecord | None] | None = None) -> Iterator[Placement]:
    """Each distinct chunk of `m` once, in file order, read in `txn`.

    `packs` caches pack records by pack ID; pass one dict to share it across files.
    """
    seen: set[bytes] = set()
    packs = {} if packs is None else packs
    for cid, _ in m.chunks:
        if cid in seen:
            continue
        seen.add(cid)
        r = index.get_chunk(cid, txn)
        if r is None:
            yield cid, None, None
            continue
        if r.pack_id not in packs:
            packs[r.pack_id] = index.get_pack(r.pack_id, txn)
        yield cid, r, packs[r.pack_id]
