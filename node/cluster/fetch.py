"""Chunks between nodes: serving stored objects to peers and storing what peers send.

Both functions block (LMDB, the local packs, backend reads through the hub); the daemon
calls them in worker threads, and backend reads run on its loop through the hub.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..cloud.placement import choose
from ..errors import IntegrityError
from ..store import codec
from ..store.packs import PackWriter
from ..store.records import ChunkRecord, PackRecord
from .filelog import chunks_arrived, hinted_only, want_again

if TYPE_CHECKING:
    from ..cloud.cloud import Cloud


def read_object(cloud: Cloud, cid: bytes) -> bytes | None:
    """The stored (encrypted) object of a chunk, from the local store or a backend; None if
    absent. A chunk known only from a location hint that no backend could give is wanted
    from peers from then on."""
    r = cloud.index.get_chunk(cid)
    if r is None:
        return None
    if cloud.store.has_local_pack(r.pack_id):
        try:
            return cloud.local.read(r.pack_id, r.offset, r.stored_len)
        except (OSError, IntegrityError):
            pass
    for blob, _ in cloud.remote_copies(r.pack_id, r.offset, r.stored_len):
        return blob
    # Known only from a location hint and no backend gave it: want it from peers instead
    # (want_again leaves chunks of packs this node sealed alone).
    want_again(cloud.index, [cid])
    return None


def read_objects(cloud: Cloud, cids: Sequence[bytes], max_bytes: int
                 ) -> list[tuple[bytes, bytes | None]]:
    """`read_object` for the first of `cids` (at least one) until about `max_bytes` are read."""
    out: list[tuple[bytes, bytes | None]] = []
    size = 0
    for cid in cids:
        blob = read_object(cloud, cid)
        out.append((cid, blob))
        size += len(blob) if blob is not None else 64
        if size >= max_bytes:
            break
    return out


def store_objects(cloud: Cloud, objects: list[tuple[bytes, bytes]]) -> tuple[int, list[str]]:
    """Check objects fetched from a peer and store them as one local pack.

    Each object must authenticate and decode to its chunk ID (so a hostile peer
    cannot plant data). Then, in one transaction: the pack, the chunk records, its
    upload queue entries, and every waiting manifest that is now complete.
    Returns (stored, errors).
    """
    idx = cloud.index
    with idx.read() as txn:
        lengths = {}
        for cid, _ in objects:
            v = txn.get(cid, db=idx.db["wanted"])
            # not asked for, or here already (a record from a hint we could not read is replaced)
            if v is not None and (idx.get_chunk(cid, txn) is None
                                  or hinted_only(idx, txn, cid)):
                lengths[cid] = int.from_bytes(v[:4], "little")
    good: list[tuple[bytes, bytes, int]] = []
    errors = []
    for cid, blob in objects:
        n = lengths.get(cid)
        if n is None:
            continue
        try:
            codec.decode(cloud.keys.chunk_enc, cloud.keys.chunk_id, cid, blob, n, where="peer")
        except IntegrityError as e:
            errors.append(str(e))
            continue
        good.append((cid, blob, n))
    if not good:
        return 0, errors
    w = PackWriter(cloud.home, cloud.keys.pack_index)
    try:
        for cid, blob, n in good:
            w.add(cid, blob, n)
        sealed = w.seal()
    except BaseException:
        w.abort()
        raise
    copies = cloud.config.effective_copies()
    with idx.write() as txn:
        idx.put_pack(txn, sealed.pack_id, PackRecord.sealed(sealed.size, len(sealed.entries),
                                                             owner=cloud.config.node_tag))
        for e in sealed.entries:
            old = idx.get_chunk(e.chunk_id, txn)
            if old is not None and not hinted_only(idx, txn, e.chunk_id):
                continue  # stored meanwhile (another batch, a put)
            idx.put_chunk(txn, e.chunk_id, ChunkRecord(sealed.pack_id, e.offset, e.stored_len,
                                                       e.plain_len, old.refcount if old else 0),
                          verified=True)  # authenticated on arrival
        if copies:
            for b in choose(list(cloud.backend_spaces().values()), sealed.size, copies):
                idx.queue_upload(txn, sealed.pack_id, b)
        chunks_arrived(idx, txn, {c for c, _, _ in good})
    return len(good), errors
