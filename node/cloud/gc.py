"""gc: drop unreferenced chunks and the space they hold, locally and on backends."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mosaic.backends.errors import BackendError

from ..store.home import HomeLock
from ..store.index import ChunkRecord, PackRecord
from ..store.packs import PackWriter
from .hub import pack_object_name
from .repair import good_copy

if TYPE_CHECKING:
    from .cloud import Cloud


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


def gc(cloud: Cloud, dry_run: bool = False, remote_repack_threshold: float = 0.5) -> GcReport:
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
    idx = cloud.index
    with HomeLock(cloud.home, exclusive=True):
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
        for f in cloud.home.tmp_dir.iterdir():
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
                    delete_pack_everywhere(cloud, pid, prec.locations)
                continue
            if prec.n_chunks <= len(alive):
                continue  # no garbage inside (or a pack known only by location hints)
            garbage = max(0, prec.size - sum(r.stored_len for _, r in alive))
            if not prec.local and garbage < remote_repack_threshold * prec.size:
                continue
            if dry_run or _repack(cloud, pid, prec, alive, dead.get(pid, [])):
                rep.packs_repacked += 1
                rep.bytes_freed += garbage
        if not dry_run:
            _sweep_orphans(cloud)
            if cloud.hub is not None:  # temp objects of cancelled or crashed uploads
                for b in cloud.hub.backends.values():
                    try:
                        cloud.hub.run(b.sweep_temp)
                    except Exception:  # an unreachable backend is swept next time
                        pass
    return rep


def delete_pack_everywhere(cloud: Cloud, pid: bytes, backends: Iterable[str] | None = None) -> None:
    """Best-effort delete of a pack locally and on `backends` (None: every configured one)."""
    cloud.local.delete(pid)
    if cloud.hub is None:
        return
    for b in cloud.hub.backends if backends is None else backends:
        if b in cloud.hub.backends:
            try:
                cloud.hub.run(cloud.hub.backends[b].delete, pack_object_name(pid))
            except Exception:  # an unreachable backend keeps an orphan for gc
                pass


def _repack(cloud: Cloud, pid: bytes, prec: PackRecord, live: list[tuple[bytes, ChunkRecord]],
            dead: list[bytes]) -> bool:
    """Rewrite a pack with its live objects; False (nothing changed) if that is not possible now."""
    idx = cloud.index
    here = prec.local and cloud.local.has(pid)
    whole = None if here else good_copy(cloud, pid, avoid="")
    if whole is None and not here:
        return False
    w = PackWriter(cloud.home, cloud.keys.pack_index)
    try:
        for cid, r in sorted(live, key=lambda x: x[1].offset):
            blob = (cloud.local.read(pid, r.offset, r.stored_len) if whole is None
                    else whole[r.offset:r.offset + r.stored_len])
            w.add(cid, blob, r.plain_len)
        sealed = w.seal()
    except BaseException:
        w.abort()
        raise
    placed: list[str] = []
    if prec.locations:
        data = cloud.local.read_all(sealed.pack_id)
        for b in prec.locations:
            if cloud.hub is None or b not in cloud.hub.backends:
                continue
            try:
                cloud.hub.run(cloud.hub.backends[b].put, pack_object_name(sealed.pack_id), data)
                placed.append(b)
            except BackendError:
                pass
        if not placed:
            cloud.local.delete(sealed.pack_id)
            return False
    where = {e.chunk_id: e for e in sealed.entries}
    with idx.write() as txn:
        idx.put_pack(txn, sealed.pack_id, PackRecord.sealed(sealed.size, len(sealed.entries)
                                                            ).with_locations(placed))
        for cid, r in live:
            e = where[cid]
            idx.put_chunk(txn, cid, ChunkRecord(sealed.pack_id, e.offset, e.stored_len, r.plain_len,
                                                r.refcount))
        for cid in dead:
            idx.delete_chunk(txn, cid)
        for b in set(prec.locations) - set(placed):
            idx.queue_upload(txn, sealed.pack_id, b)
        idx.delete_pack(txn, pid)
    delete_pack_everywhere(cloud, pid, prec.locations)
    return True


def _sweep_orphans(cloud: Cloud) -> None:
    """Delete local pack files the index does not know (left by a crash before commit)."""
    idx = cloud.index
    with idx.read() as txn:
        for sub in cloud.home.packs_dir.iterdir():
            for f in sub.iterdir():
                try:
                    pid = bytes.fromhex(f.name)
                except ValueError:
                    continue
                if len(pid) == 32 and txn.get(pid, db=idx.db["packs"]) is None:
                    os.unlink(f)


