"""gc (drop unreferenced chunks, repack), verify, and per-file statistics."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import IntegrityError, MosaicError
from .home import HomeLock
from .index import ChunkRecord, PackRecord
from .packs import PackWriter
from .restore import read_verified

if TYPE_CHECKING:
    from .api import Node


@dataclass
class GcReport:
    """What gc removed (or would remove, with dry_run)."""

    dead_chunks: int = 0
    dead_bytes: int = 0
    packs_deleted: int = 0
    packs_repacked: int = 0
    bytes_freed: int = 0
    temp_files: int = 0
    dry_run: bool = False


def gc(node: Node, dry_run: bool = False, repack_threshold: float = 0.0) -> GcReport:
    """Remove chunks no manifest references; delete or repack the packs that held them.

    A pack whose dead share exceeds `repack_threshold` (0: any dead chunk) and that is
    in the local store is rewritten with its live objects only (objects are copied as
    they are; no re-encryption). Runs under the exclusive home lock.
    """
    rep = GcReport(dry_run=dry_run)
    idx = node.index
    with HomeLock(node.home, exclusive=True):
        dead: dict[bytes, list[tuple[bytes, ChunkRecord]]] = defaultdict(list)
        live: dict[bytes, list[tuple[bytes, ChunkRecord]]] = defaultdict(list)
        with idx.read() as txn:
            for k, r in idx.iter_chunks(txn):
                (dead if r.refcount <= 0 else live)[r.pack_id].append((k, r))
            packs = dict(idx.iter_packs(txn))
        for items in dead.values():
            rep.dead_chunks += len(items)
            rep.dead_bytes += sum(r.stored_len for _, r in items)
        for f in node.home.tmp_dir.iterdir():
            rep.temp_files += 1
            if not dry_run:
                f.unlink(missing_ok=True)
        if dry_run:
            for pid in dead:
                if not live.get(pid):
                    rep.packs_deleted += 1
                    rep.bytes_freed += packs.get(pid, PackRecord(0, 0, False, (), 0)).size
            return rep
        for pid, items in dead.items():
            prec = packs.get(pid)
            if not live.get(pid):
                with idx.write() as txn:
                    for cid, _ in items:
                        idx.delete_chunk(txn, cid)
                    idx.delete_pack(txn, pid)
                _delete_pack_everywhere(node, pid, prec)
                rep.packs_deleted += 1
                rep.bytes_freed += prec.size if prec else 0
                continue
            dead_bytes = sum(r.stored_len for _, r in items)
            total = dead_bytes + sum(r.stored_len for _, r in live[pid])
            if prec is None or not prec.local or dead_bytes / total <= repack_threshold:
                continue
            _repack(node, pid, prec, live[pid], [c for c, _ in items])
            rep.packs_repacked += 1
            rep.bytes_freed += dead_bytes
        _sweep_orphans(node)
    return rep


def delete_remote_copies(node: Node, pids: list[bytes]) -> None:
    """Best-effort delete of these packs on every configured backend."""
    from .remote import pack_object_name
    if node.hub is None:
        return
    for pid in pids:
        for b in node.hub.backends.values():
            try:
                node.hub.run(b.delete, pack_object_name(pid))
            except Exception:  # noqa: BLE001 - an unreachable backend keeps an orphan for gc
                pass


def _delete_pack_everywhere(node: Node, pid: bytes, rec: PackRecord | None) -> None:
    node.local.delete(pid)
    if rec and rec.locations and node.hub is not None:
        from .remote import pack_object_name
        for b in rec.locations:
            if b in node.hub.backends:
                try:
                    node.hub.run(node.hub.backends[b].delete, pack_object_name(pid))
                except Exception:  # noqa: BLE001 - an unreachable backend keeps an orphan
                    pass


def _repack(node: Node, pid: bytes, prec: PackRecord, live: list[tuple[bytes, ChunkRecord]],
            dead: list[bytes]) -> None:
    idx = node.index
    w = PackWriter(node.home, node.keys.pack_index)
    try:
        for cid, r in sorted(live, key=lambda x: x[1].offset):
            w.add(cid, node.local.read(pid, r.offset, r.stored_len), r.plain_len)
        sealed = w.seal()
    except BaseException:
        w.abort()
        raise
    where = {e.chunk_id: e for e in sealed.entries}
    with idx.write() as txn:
        idx.put_pack(txn, sealed.pack_id, PackRecord(sealed.size, len(sealed.entries), True, (),
                                                     time.time_ns()))
        for cid, r in live:
            e = where[cid]
            idx.put_chunk(txn, cid, ChunkRecord(sealed.pack_id, e.offset, e.stored_len, r.plain_len,
                                                r.refcount))
        for cid in dead:
            idx.delete_chunk(txn, cid)
        for b in prec.locations:
            idx.queue_upload(txn, sealed.pack_id, b)
        idx.delete_pack(txn, pid)
    _delete_pack_everywhere(node, pid, prec)


def _sweep_orphans(node: Node) -> None:
    """Delete local pack files the index does not know (left by a crash before commit)."""
    idx = node.index
    with idx.read() as txn:
        for sub in node.home.packs_dir.iterdir():
            for f in sub.iterdir():
                try:
                    pid = bytes.fromhex(f.name)
                except ValueError:
                    continue
                if len(pid) == 32 and txn.get(pid, db=idx.db["packs"]) is None:
                    os.unlink(f)


@dataclass
class VerifyReport:
    """Files checked and the problems found."""

    files: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


def verify(node: Node, fids: list[bytes] | None, progress=None) -> VerifyReport:  # noqa: ANN001
    """Read back every chunk of the files (all if None), checking AEAD, IDs and file hashes."""
    rep = VerifyReport()
    if fids is None:
        with node.index.read() as txn:
            fids = list(node.index.iter_manifest_ids(txn))
    for fid in fids:
        m = node.index.get_manifest(fid)
        if m is None:
            rep.errors.append(f"{fid.hex()}: unknown hash")
            continue
        rep.files += 1
        try:
            for data in read_verified(node, m):
                rep.bytes += len(data)
                if progress:
                    progress(len(data))
        except (IntegrityError, MosaicError) as e:
            rep.errors.append(f"{fid.hex()}: {e}")
    return rep


def file_stat(node: Node, fid: bytes) -> dict:
    """Size, chunks, stored bytes, dedup saving, cached fraction and locations of a file."""
    idx = node.index
    with idx.read() as txn:
        m = idx.get_manifest(fid, txn)
        assert m is not None
        distinct: dict[bytes, ChunkRecord] = {}
        for cid, _ in m.chunks:
            if cid not in distinct:
                r = idx.get_chunk(cid, txn)
                if r is not None:
                    distinct[cid] = r
        stored = sum(r.stored_len for r in distinct.values())
        shared = sum(r.plain_len for r in distinct.values() if r.refcount > 1)
        local = sum(r.stored_len for r in distinct.values() if node.local.has(r.pack_id))
        locs: dict[str, int] = defaultdict(int)
        packs: dict[bytes, PackRecord | None] = {}
        for r in distinct.values():
            if r.pack_id not in packs:
                packs[r.pack_id] = idx.get_pack(r.pack_id, txn)
            p = packs[r.pack_id]
            for b in p.locations if p else ():
                locs[b] += r.stored_len
        names = idx.names_of(fid, txn)
    unique_plain = sum(r.plain_len for r in distinct.values())
    return {
        "hash": fid.hex(), "names": names, "size": m.size, "created_ns": m.created_ns,
        "chunks": len(m.chunks), "distinct_chunks": len(distinct), "stored_bytes": stored,
        "repeated_bytes_in_file": m.size - unique_plain,
        "shared_bytes": shared,
        "dedup_saving_bytes": (m.size - unique_plain) + shared,
        "compression_ratio": (unique_plain / stored) if stored else 1.0,
        "cached_fraction": (local / stored) if stored else 1.0,
        "locations": {"local": (local / stored) if stored else 1.0,
                      **{b: n / stored for b, n in sorted(locs.items())}},
    }
