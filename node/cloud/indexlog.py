"""An encrypted copy of the index on the backends: incremental logs plus snapshots.

So that a `put` that has returned (with its copies stored) is recoverable from
the backends alone, every put session writes a log object listing what it added
(packs with their locations, chunk records, manifests, names). Other changes
(rm, mv, import, gc, repair, drain) write a full snapshot, and so does every
64th log. Objects (on every backend):

    index/<node tag>/snap-<seq 16 hex>   full index
    index/<node tag>/log-<seq 16 hex>    what one put added

Each is zstd(msgpack) encrypted with XChaCha20-Poly1305 under the metadata
subkey, with the object name as associated data (so objects cannot be swapped).
`recover` rebuilds an empty node from the newest snapshot plus later logs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgpack
import nacl.utils
import zstandard

from mosaic.backends.errors import BackendError

from ..errors import IntegrityError, StorageError, UsageError
from ..store import aead
from ..store.index import Manifest, PackRecord, encode_chunk_table

if TYPE_CHECKING:
    from .cloud import Cloud

FORMAT = 1
SNAPSHOT_EVERY = 64
_AAD = b"mosaic-index-copy v1 "


def _seal(key: bytes, name: str, doc: dict) -> bytes:
    plain = zstandard.ZstdCompressor(level=3).compress(msgpack.packb(doc, use_bin_type=True))
    nonce = nacl.utils.random(24)
    out = bytearray(1 + 24 + len(plain) + aead.TAG_SIZE)
    out[0] = FORMAT
    out[1:25] = nonce
    aead.encrypt_into(out, 25, plain, _AAD + name.encode(), nonce, key)
    return bytes(out)


def _open(key: bytes, name: str, blob: bytes) -> dict:
    if len(blob) < 1 + 24 + aead.TAG_SIZE or blob[0] != FORMAT:
        raise IntegrityError(f"index copy {name} has an unknown format")
    plain = aead.decrypt(memoryview(blob)[25:], _AAD + name.encode(), blob[1:25], key, f"index copy {name}")
    try:
        doc = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(bytes(plain), max_output_size=1 << 31),
                              raw=False)
    except (zstandard.ZstdError, ValueError, msgpack.UnpackException):
        raise IntegrityError(f"index copy {name} is malformed") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"index copy {name} is malformed")
    return doc


def _next_seq(cloud: Cloud) -> int:
    with cloud.index.write() as txn:
        return cloud.index.next_counter(txn, b"index_copy_seq")


def _put_everywhere(cloud: Cloud, name: str, blob: bytes) -> list[str]:
    hub = cloud.hub
    errors = []
    for bname, b in (hub.backends.items() if hub else ()):
        try:
            hub.run(b.put, name, blob)
        except BackendError as e:
            errors.append(f"{bname}: {e}")
    return errors


def _prefix(cloud: Cloud) -> str:
    return f"index/{cloud.config.node_tag}/"


def write_log(cloud: Cloud, packs: Iterable[bytes], files: Iterable[bytes],
              names: Iterable[tuple[str, bytes | None]]) -> None:
    """Record what a put added; every SNAPSHOT_EVERY-th time a full snapshot instead."""
    if cloud.hub is None:
        return
    seq = _next_seq(cloud)
    if seq % SNAPSHOT_EVERY == 1:
        write_snapshot(cloud, seq)
        return
    idx = cloud.index
    doc: dict = {"seq": seq, "time": time.time_ns(), "packs": [], "chunks": [], "manifests": [], "names": []}
    with idx.read() as txn:
        for pid in set(packs):
            rec = idx.get_pack(pid, txn)
            if rec is None:
                continue
            doc["packs"].append([pid, rec.size, rec.n_chunks, list(rec.locations)])
        wanted = set()
        for fid in set(files):
            m = idx.get_manifest(fid, txn)
            if m is not None:
                doc["manifests"].append([fid, m.size, m.created_ns, encode_chunk_table(m.chunks)])
                wanted |= {c for c, _ in m.chunks}
        for cid in wanted:
            r = idx.get_chunk(cid, txn)
            if r is not None:
                doc["chunks"].append([cid, r.pack_id, r.offset, r.stored_len, r.plain_len])
    doc["names"] = [[n, f] for n, f in names]
    name = f"{_prefix(cloud)}log-{seq:016x}"
    errors = _put_everywhere(cloud, name, _seal(cloud.keys.metadata, name, doc))
    if errors:
        raise StorageError(f"could not store the index copy on {errors[0]}")


def write_snapshot(cloud: Cloud, seq: int | None = None) -> None:
    """Store the whole index on every backend and drop the older copies."""
    if cloud.hub is None:
        return
    seq = seq or _next_seq(cloud)
    idx = cloud.index
    doc: dict = {"seq": seq, "time": time.time_ns(), "snapshot": True}
    with idx.read() as txn:
        doc["packs"] = [[p, r.size, r.n_chunks, list(r.locations)] for p, r in idx.iter_packs(txn)]
        doc["chunks"] = [[c, r.pack_id, r.offset, r.stored_len, r.plain_len] for c, r in idx.iter_chunks(txn)]
        doc["manifests"] = []
        for fid in idx.iter_manifest_ids(txn):
            m = idx.get_manifest(fid, txn)
            assert m is not None
            doc["manifests"].append([fid, m.size, m.created_ns, encode_chunk_table(m.chunks)])
        doc["names"] = [[n, f] for n, f in idx.iter_names("", txn)]
    name = f"{_prefix(cloud)}snap-{seq:016x}"
    blob = _seal(cloud.keys.metadata, name, doc)
    errors = _put_everywhere(cloud, name, blob)
    if errors:
        raise StorageError(f"could not store the index snapshot on {errors[0]}")
    for b in cloud.hub.backends.values():
        try:
            for o in cloud.hub.run(b.list, _prefix(cloud)):
                if _seq_of(o.name) < seq:
                    cloud.hub.run(b.delete, o.name)
        except BackendError:
            pass


def _seq_of(name: str) -> int:
    try:
        return int(name.rsplit("-", 1)[1], 16)
    except (IndexError, ValueError):
        return -1


def recover(cloud: Cloud, backend: str) -> dict:
    """Rebuild an empty node's index from the index copies on one backend."""
    from ..store.index import ChunkRecord
    hub = cloud.hub
    if hub is None or backend not in hub.backends:
        raise UsageError(f"no backend named {backend} (add it first with `mosaic backend add`)")
    if cloud.index.count("manifests") or cloud.index.count("packs"):
        raise UsageError("recover needs an empty node (this one already has files)")
    b = hub.backends[backend]
    try:
        objs = hub.run(b.list, "index/")
    except BackendError as e:
        raise StorageError(f"cannot list {backend}: {e}") from None
    by_tag: dict[str, list[str]] = {}
    for o in objs:
        parts = o.name.split("/")
        if len(parts) == 3:
            by_tag.setdefault(parts[1], []).append(o.name)
    if not by_tag:
        raise StorageError(f"no index copy on {backend}")
    # the node whose newest object is newest
    tag = max(by_tag, key=lambda t: max(_seq_of(n) for n in by_tag[t]))
    names = sorted(by_tag[tag], key=_seq_of)
    snaps = [n for n in names if "/snap-" in n]
    start = snaps[-1] if snaps else None
    todo = ([start] if start else []) + [n for n in names if "/log-" in n and (
        start is None or _seq_of(n) > _seq_of(start))]
    packs: dict[bytes, list] = {}
    chunks: dict[bytes, list] = {}
    manifests: dict[bytes, list] = {}
    name_map: dict[str, bytes | None] = {}
    for n in todo:
        doc = _open(cloud.keys.metadata, n, hub.run(b.get, n))
        for p in doc["packs"]:
            packs[p[0]] = p
        for c in doc["chunks"]:
            chunks[c[0]] = c
        for m in doc["manifests"]:
            manifests[m[0]] = m
        if doc.get("snapshot"):
            name_map = {}
        for nm, f in doc["names"]:
            name_map[nm] = f
    idx = cloud.index
    from ..store.index import decode_chunk_table
    with idx.write() as txn:
        for pid, size, n_chunks, locs in packs.values():
            idx.put_pack(txn, pid, PackRecord(size, n_chunks, cloud.local.has(pid), (), time.time_ns()
                                              ).with_locations(locs))
        for cid, pid, off, slen, plen in chunks.values():
            if pid in packs:
                idx.put_chunk(txn, cid, ChunkRecord(pid, off, slen, plen, 0))
        for fid, size, created, table in manifests.values():
            idx.add_manifest(txn, Manifest(fid, size, created, decode_chunk_table(table)))
        idx.set_names(txn, [(nm, f) for nm, f in name_map.items() if f is not None and f in manifests])
        idx.set_counter(txn, b"index_copy_seq", max((_seq_of(n) for n in names), default=0) + 1)
    return {"from": backend, "objects": len(todo), "files": len(manifests), "packs": len(packs),
            "names": sum(1 for f in name_map.values() if f is not None)}
