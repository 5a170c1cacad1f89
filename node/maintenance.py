"""gc (drop unreferenced chunks, repack), verify, and per-file statistics."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable
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


def gc(node: Node, dry_run: bool = False, remote_repack_threshold: float = 0.5) -> GcReport:
    """Remove chunks no manifest references, and the space they hold.

    Pack by pack: a pack with no live chunk is deleted (locally and on its
    backends); a pack with some garbage (unreferenced chunks, or duplicate copies
    that lost a race with another writer) is rewritten with its live objects
    only (copied as they are, no re-encryption) when it is in the local store, or
    when it lives only on backends and is mostly garbage. The new pack reaches the
    old pack's backends before the old one is deleted anywhere. Runs under the
    exclusive home lock, so no put is in flight.
    """
    rep = GcReport(dry_run=dry_run)
    idx = node.index
    with HomeLock(node.home, exclusive=True):
        live: dict[bytes, list[tuple[bytes, ChunkRecord]]] = defaultdict(list)
        dead: dict[bytes, list[bytes]] = defaultdict(list)
        with idx.read() as txn:
            for k, r in idx.iter_chunks(txn):
                if r.refcount > 0:
                    live[r.pack_id].append((k, r))
                else:
                    dead[r.pack_id].append(k)
                    rep.dead_chunks += 1
                    rep.dead_bytes += r.stored_len
            packs = dict(idx.iter_packs(txn))
        for f in node.home.tmp_dir.iterdir():
            rep.temp_files += 1
            if not dry_run:
                f.unlink(missing_ok=True)
        for pid, prec in packs.items():
            alive = live.get(pid, [])
            if not alive:
                rep.packs_deleted += 1
                rep.bytes_freed += prec.size
                if not dry_run:
                    with idx.write() as txn:
                        for cid in dead.get(pid, []):
                            idx.delete_chunk(txn, cid)
                        idx.delete_pack(txn, pid)
                    delete_pack_everywhere(node, pid, prec.locations)
                continue
            if prec.n_chunks <= len(alive):
                continue  # no garbage inside (or a pack known only by location hints)
            garbage = max(0, prec.size - sum(r.stored_len for _, r in alive))
            if not prec.local and garbage < remote_repack_threshold * prec.size:
                continue
            if dry_run or _repack(node, pid, prec, alive, dead.get(pid, [])):
                rep.packs_repacked += 1
                rep.bytes_freed += garbage
        if not dry_run:
            _sweep_orphans(node)
            if node.hub is not None:  # temp objects of cancelled or crashed uploads
                for b in node.hub.backends.values():
                    try:
                        node.hub.run(b.sweep_temp)
                    except Exception:  # noqa: BLE001 - an unreachable backend is swept next time
                        pass
    return rep


def delete_pack_everywhere(node: Node, pid: bytes, backends: Iterable[str] | None = None) -> None:
    """Best-effort delete of a pack locally and on `backends` (None: every configured one)."""
    node.local.delete(pid)
    if node.hub is None:
        return
    from .remote import pack_object_name
    for b in node.hub.backends if backends is None else backends:
        if b in node.hub.backends:
            try:
                node.hub.run(node.hub.backends[b].delete, pack_object_name(pid))
            except Exception:  # noqa: BLE001 - an unreachable backend keeps an orphan for gc
                pass


def _repack(node: Node, pid: bytes, prec: PackRecord, live: list[tuple[bytes, ChunkRecord]],
            dead: list[bytes]) -> bool:
    """Rewrite a pack with its live objects; False (nothing changed) if that is not possible now."""
    from .repair import _good_copy
    idx = node.index
    here = prec.local and node.local.has(pid)
    whole = None if here else _good_copy(node, pid, avoid="")
    if whole is None and not here:
        return False
    w = PackWriter(node.home, node.keys.pack_index)
    try:
        for cid, r in sorted(live, key=lambda x: x[1].offset):
            blob = (node.local.read(pid, r.offset, r.stored_len) if whole is None
                    else whole[r.offset:r.offset + r.stored_len])
            w.add(cid, blob, r.plain_len)
        sealed = w.seal()
    except BaseException:
        w.abort()
        raise
    placed: list[str] = []
    if prec.locations:
        from backends.errors import BackendError

        from .remote import pack_object_name
        data = node.local.read_all(sealed.pack_id)
        for b in prec.locations:
            if node.hub is None or b not in node.hub.backends:
                continue
            try:
                node.hub.run(node.hub.backends[b].put, pack_object_name(sealed.pack_id), data)
                placed.append(b)
            except BackendError:
                pass
        if not placed:
            node.local.delete(sealed.pack_id)
            return False
    where = {e.chunk_id: e for e in sealed.entries}
    with idx.write() as txn:
        idx.put_pack(txn, sealed.pack_id, PackRecord(sealed.size, len(sealed.entries), True,
                                                     tuple(sorted(placed)), time.time_ns()))
        for cid, r in live:
            e = where[cid]
            idx.put_chunk(txn, cid, ChunkRecord(sealed.pack_id, e.offset, e.stored_len, r.plain_len,
                                                r.refcount))
        for cid in dead:
            idx.delete_chunk(txn, cid)
        for b in set(prec.locations) - set(placed):
            idx.queue_upload(txn, sealed.pack_id, b)
        idx.delete_pack(txn, pid)
    delete_pack_everywhere(node, pid, prec.locations)
    return True


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
            local = [pid for pid, r in node.index.iter_packs(txn) if r.local]
        for pid in local:
            err = _check_local_pack(node, pid)
            if err:
                rep.errors.append(f"pack {pid.hex()[:16]}: {err}")
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


def _check_local_pack(node: Node, pid: bytes) -> str | None:
    """None if the local pack file matches its ID and its trailer opens, else what is wrong."""
    from .packs import check_pack
    try:
        check_pack(node.keys.pack_index, pid, node.local.read_all(pid))
    except FileNotFoundError:
        return "missing from the local store"
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    except IntegrityError as e:
        return str(e)
    return None


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
