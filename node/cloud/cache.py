"""The local store as a cache: usage, LRU trimming, and warming from backends."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mosaic.backends.errors import BackendError, NotFound

from ..errors import IntegrityError, StorageError
from ..store.home import HomeLock
from ..store.packs import parse_pack
from ..store.records import PackRecord
from ..units import parse_hash
from .objects import pack_object_name

if TYPE_CHECKING:
    import lmdb

    from .cloud import Cloud


@dataclass(frozen=True)
class CacheInfo:
    """Capacity and use of the local store."""

    capacity: int
    used: int
    local_packs: int
    evictable_bytes: int

    @property
    def usage_ratio(self) -> float:
        """used / capacity."""
        return self.used / self.capacity if self.capacity else 0.0


def cache_info(cloud: Cloud) -> CacheInfo:
    """How full the local store is, and how much of it is safely stored elsewhere."""
    used = n = evictable = 0
    with cloud.index.read() as txn:
        for _, r in cloud.index.iter_packs(txn):
            if r.local:
                used += r.size
                n += 1
                if len(r.locations) >= max(1, cloud.config.effective_copies()):
                    evictable += r.size
    return CacheInfo(cloud.config.cache_capacity, used, n, evictable)


def pinned_packs(cloud: Cloud, txn: lmdb.Transaction) -> set[bytes]:
    """Every pack that holds a chunk of a pinned file."""
    idx = cloud.index
    out: set[bytes] = set()
    for fid in txn.cursor(db=idx.db["pins"]).iternext(values=False):
        m = idx.get_manifest(fid, txn)
        for cid, _ in (m.chunks if m else ()):
            r = idx.get_chunk(cid, txn)
            if r is not None:
                out.add(r.pack_id)
    return out


def pinned_not_local(cloud: Cloud) -> list[bytes]:
    """Pinned files with a chunk whose pack is not in the local store (fetchable or not)."""
    idx = cloud.index
    out: list[bytes] = []
    with idx.read() as txn:
        for fid in txn.cursor(db=idx.db["pins"]).iternext(values=False):
            m = idx.get_manifest(fid, txn)
            for cid, _ in (m.chunks if m else ()):
                r = idx.get_chunk(cid, txn)
                if r is not None and not cloud.local.has(r.pack_id):
                    out.append(fid)
                    break
    return out


def confirmed_copies(cloud: Cloud, pid: bytes, rec: PackRecord) -> tuple[list[str], list[str]]:
    """(backends whose copy exists with the recorded size, backends where it is missing or wrong).

    Unreachable backends are in neither list: their copy is unconfirmed, not gone.
    """
    hub = cloud.hub
    good: list[str] = []
    bad: list[str] = []
    if hub is None:
        return good, bad
    for b in rec.locations:
        backend = hub.backends.get(b)
        if backend is None:
            continue
        try:
            info = hub.run(backend.stat, pack_object_name(pid))
        except NotFound:
            bad.append(b)
            continue
        except BackendError:
            continue
        (good if info.size == rec.size else bad).append(b)
    return good, bad


def trim(cloud: Cloud, to: int | None = None) -> tuple[int, int]:
    """Evict least-recently-used local packs whose backend copies are confirmed; (packs, bytes).

    A pack stays local while it holds a chunk of a pinned file, while a repair is
    queued for any of its copies, or until `copies` backends were just seen to hold
    it with the right size. A copy found missing or of the wrong size loses its
    location and is queued for repair, so nothing counts it again until repaired.
    """
    target = cloud.config.cache_capacity if to is None else to
    need = max(1, cloud.config.effective_copies())  # only data with `copies` remote copies goes
    idx = cloud.index
    with HomeLock(cloud.home, exclusive=False):
        with idx.read() as txn:
            keep = pinned_packs(cloud, txn) | {pid for pid, _, _ in idx.iter_repairs(txn)}
            local = []
            used = 0
            for k, r in idx.iter_packs(txn):
                if r.local:
                    used += r.size
                    if len(r.locations) >= need and k not in keep:
                        local.append((idx.atime(k, txn) or r.created_ns, k, r))
        local.sort()
        checked: list[tuple[bytes, int, list[str], list[str]]] = []
        for _, pid, r in local:  # the network checks, outside any write transaction
            if used <= target:
                break
            good, bad = confirmed_copies(cloud, pid, r)
            checked.append((pid, r.size, good, bad))
            if len(good) >= need:
                used -= r.size
        evict: list[tuple[bytes, int]] = []
        with idx.write() as txn:  # pins and repairs as they are now, not as they were
            keep = pinned_packs(cloud, txn) | {pid for pid, _, _ in idx.iter_repairs(txn)}
            for pid, size, good, bad in checked:
                cur = idx.get_pack(pid, txn)
                if cur is None or not cur.local:
                    continue
                if bad:
                    cur = cur.with_locations(set(cur.locations) - set(bad))
                    for b in bad:
                        idx.queue_repair(txn, pid, b, "missing or wrong size (seen by trim)")
                    idx.put_pack(txn, pid, cur)
                if pid in keep or len(set(good) & set(cur.locations)) < need:
                    continue
                idx.put_pack(txn, pid, replace(cur, local=False))
                evict.append((pid, size))
        for pid, _ in evict:
            cloud.local.delete(pid)
        evicted, freed = len(evict), sum(size for _, size in evict)
    return evicted, freed


def cached_fraction(cloud: Cloud, fids: list[bytes]) -> float:
    """Share of the files' stored bytes whose pack is in the local store."""
    total = local = 0
    with cloud.index.read() as txn:
        for fid in fids:
            m = cloud.index.get_manifest(fid, txn)
            for cid, _ in (m.chunks if m else ()):
                r = cloud.index.get_chunk(cid, txn)
                if r is None:
                    continue
                total += r.stored_len
                if cloud.local.has(r.pack_id):
                    local += r.stored_len
    return local / total if total else 1.0


def warm(cloud: Cloud, hashes: list[str] | None, progress=None) -> dict:
    """Make every chunk of these files (all if None) local, fetching packs in parallel."""
    idx = cloud.index
    with idx.read() as txn:
        fids = list(idx.iter_manifest_ids(txn)) if hashes is None else [parse_hash(h) for h in hashes]
        for fid in fids:
            if idx.get_manifest(fid, txn) is None:
                from ..errors import NotFoundError
                raise NotFoundError(f"unknown hash: {fid.hex()}")
    before = cached_fraction(cloud, fids)
    need: dict[bytes, tuple[int, list[str]]] = {}  # pack -> (expected size, 0 unknown; backends)
    with idx.read() as txn:
        for fid in fids:
            m = idx.get_manifest(fid, txn)
            for cid, _ in m.chunks if m else ():
                r = idx.get_chunk(cid, txn)
                if r is None or r.pack_id in need or cloud.local.has(r.pack_id):
                    continue
                p = idx.get_pack(r.pack_id, txn)
                need[r.pack_id] = (p.size, list(p.locations)) if p else (0, [])
    errors: list[str] = []
    fetched = [0, 0]
    if need:
        if cloud.hub is None:
            raise StorageError(f"{len(need)} packs are not local and no backend is configured")
        with HomeLock(cloud.home, exclusive=False):
            def done(pid: bytes, data: bytes | None, where: str, errs: list[str]) -> bool:
                if data is None:
                    errors.append(f"pack {pid.hex()[:16]}: " + ("; ".join(errs) or "no backend holds it"))
                    return False
                try:  # the hub checked size and ID as the pieces arrived
                    entries = parse_pack(cloud.keys.pack_index, data)
                except IntegrityError as e:
                    errs.append(f"{where}: {e}")
                    cloud.store.note_bad_copy(pid, f"backend {where}", str(e))
                    return False
                try:  # a full disk is this node's problem, not the copy's: no next source
                    cloud.local.write(pid, data)
                    with idx.write() as txn:
                        r = idx.get_pack(pid, txn)
                        if r is not None:
                            idx.put_pack(txn, pid, replace(r, size=len(data), local=True,
                                                           n_chunks=r.n_chunks or len(entries)))
                        idx.touch_pack(txn, pid)
                except StorageError as e:
                    errors.append(f"pack {pid.hex()[:16]}: {e}")
                    return True
                fetched[0] += 1
                fetched[1] += len(data)
                if progress:
                    progress(len(data))
                return True

            def corrupt(pid: bytes, where: str, reason: str) -> None:
                cloud.store.note_bad_copy(pid, f"backend {where}", reason)

            cloud.hub.fetch_packs([(pid, size, srcs) for pid, (size, srcs) in need.items()],
                                  done, corrupt)
    after = cached_fraction(cloud, fids)
    if errors:
        raise StorageError(f"warm incomplete ({after:.0%} cached): {errors[0]}"
                           + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    return {"files": len(fids), "packs_fetched": fetched[0], "bytes_fetched": fetched[1],
            "cached_before": before, "cached_after": after}
