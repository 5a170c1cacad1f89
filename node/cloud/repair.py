"""Scrubbing backends (`verify --backends`), repairing copies, and draining a backend."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from mosaic.backends.errors import BackendError, NotFound

from ..errors import StorageError
from ..store.home import HomeLock
from ..store.index import LOCAL
from ..store.packs import pack_id_of
from .objects import UNKNOWN_SIZE_LIMIT, CorruptCopy, pack_object_name
from .placement import BackendSpace, choose

if TYPE_CHECKING:
    from .cloud import Cloud



@dataclass
class ScrubReport:
    """Objects checked on backends and what was wrong."""

    checked: int = 0
    bytes: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)  # (pack hex, backend)
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)


def scrub(cloud: Cloud, sample: float = 1.0, seed: int | None = None) -> ScrubReport:
    """Fetch stored packs from every backend holding them (a random `sample` share) and check
    each against its ID; missing and corrupt copies are queued for `repair`."""
    rep = ScrubReport()
    hub = cloud.hub
    if hub is None:
        return rep
    with cloud.index.read() as txn:
        work = [(pid, b, rec.size) for pid, rec in cloud.index.iter_packs(txn)
                for b in rec.locations if b in hub.backends]
    if sample < 1.0:
        rng = random.Random(seed)
        work = [w for w in work if rng.random() < sample]
    down: set[str] = set()
    for pid, b, size in work:
        if b in down:
            continue
        try:  # bounded by the recorded size, hashed piece by piece, nothing kept
            nbytes = hub.check_pack(b, pid, size)
        except CorruptCopy:
            rep.checked += 1
            rep.corrupt.append((pid.hex(), b))
            _queue(cloud, pid, b, "corrupt")
            continue
        except NotFound:
            rep.missing.append((pid.hex(), b))
            _queue(cloud, pid, b, "missing")
            continue
        except BackendError as e:
            down.add(b)
            rep.unreachable.append(f"{b}: {e}")
            continue
        rep.checked += 1
        rep.bytes += nbytes
    return rep


def _queue(cloud: Cloud, pid: bytes, backend: str, reason: str) -> None:
    """Queue a bad copy for repair and stop counting it as a copy until it is repaired."""
    with cloud.index.write() as txn:
        cloud.index.queue_repair(txn, pid, backend, reason)
        rec = cloud.index.get_pack(pid, txn)
        if rec is not None and backend in rec.locations:
            cloud.index.put_pack(txn, pid, rec.with_locations(set(rec.locations) - {backend}))
        cloud.index.add_event(txn, "scrub-error", backend, 0, 0.0, f"{reason} pack {pid.hex()[:16]}")


def good_copy(cloud: Cloud, pid: bytes, avoid: str) -> bytes | None:
    """A verified copy of a pack: local store first, then any backend but `avoid`.

    No copy is read past the size the index records for the pack (+1 byte): one of
    another size is corrupt, reported and queued for repair like a mismatching one."""
    rec = cloud.index.get_pack(pid)
    size = rec.size if rec else 0
    if cloud.local.has(pid):
        try:
            data = _read_local(cloud, pid, size)
        except OSError:
            data = None
        if data is not None and pack_id_of(data) == pid:
            return data
    hub = cloud.hub
    for b in (rec.locations if rec else ()):
        if b == avoid or hub is None or b not in hub.backends:
            continue
        try:
            return hub.get_pack(b, pid, size)
        except CorruptCopy as e:
            cloud.store.note_bad_copy(pid, f"backend {b}", str(e))
        except BackendError:
            continue
    return None


def _read_local(cloud: Cloud, pid: bytes, size: int) -> bytes | None:
    """The local pack file if its size is the recorded one (any size when unknown), else None."""
    with open(cloud.home.pack_path(pid), "rb") as f:
        actual = os.fstat(f.fileno()).st_size
        if actual != size if size > 0 else actual > UNKNOWN_SIZE_LIMIT:
            return None
        return f.read()


@dataclass
class RepairReport:
    """Copies put back, copies added for under-replicated packs, and failures."""

    repaired: int = 0
    added: int = 0
    failed: list[str] = field(default_factory=list)


def repair(cloud: Cloud) -> RepairReport:
    """Restore missing or corrupt copies from healthy ones, and top packs up to `copies`."""
    with HomeLock(cloud.home, exclusive=False):
        return _repair(cloud)


def _repair(cloud: Cloud) -> RepairReport:
    rep = RepairReport()
    hub = cloud.hub
    with cloud.index.read() as txn:
        queued = list(cloud.index.iter_repairs(txn))
    for pid, b, _reason in queued:
        data = good_copy(cloud, pid, avoid=b)
        if data is None:
            rep.failed.append(f"pack {pid.hex()[:16]}: no healthy copy left")
            continue
        try:
            if b == LOCAL:
                cloud.local.write(pid, data)
            elif hub is not None and b in hub.backends:
                hub.run(hub.backends[b].put, pack_object_name(pid), data)
            with cloud.index.write() as txn:
                cloud.index.clear_repair(txn, pid, b)
                cur = cloud.index.get_pack(pid, txn)
                if cur is not None and b == LOCAL:
                    cloud.index.put_pack(txn, pid, replace(cur, local=True))
                elif cur is not None:
                    cloud.index.put_pack(txn, pid, cur.adding(b))
                cloud.index.add_event(txn, "repair", b, len(data), 0.0)
            rep.repaired += 1
        except (BackendError, StorageError) as e:
            rep.failed.append(f"pack {pid.hex()[:16]} on {b}: {e}")
    rep.added, more = replicate(cloud)
    rep.failed += more
    return rep


def replicate(cloud: Cloud, exclude: str | None = None) -> tuple[int, list[str]]:
    """Give every pack `copies` locations (not counting `exclude`); returns (added, errors)."""
    hub = cloud.hub
    copies = cloud.config.effective_copies()
    if hub is None or not copies:
        return 0, []
    spaces = {k: v for k, v in cloud.backend_spaces().items() if k != exclude}
    added, errors = 0, []
    with cloud.index.read() as txn:
        packs = list(cloud.index.iter_packs(txn))
    for pid, rec in packs:
        have = [b for b in rec.locations if b in spaces]
        need = copies - len(have)
        if need <= 0:
            continue
        targets = choose(list(spaces.values()), rec.size, need, exclude=set(have))
        if len(targets) < need:
            errors.append(f"pack {pid.hex()[:16]}: not enough space for {copies} copies")
        if not targets:
            continue
        data = good_copy(cloud, pid, avoid="")
        if data is None:
            errors.append(f"pack {pid.hex()[:16]}: no healthy copy to replicate from")
            continue
        for b in targets:
            try:
                hub.run(hub.backends[b].put, pack_object_name(pid), data)
            except BackendError as e:
                errors.append(f"pack {pid.hex()[:16]} to {b}: {e}")
                continue
            with cloud.index.write() as txn:
                cur = cloud.index.get_pack(pid, txn) or rec
                cloud.index.put_pack(txn, pid, cur.adding(b))
            sp = spaces[b]
            spaces[b] = BackendSpace(sp.name, sp.used + rec.size, sp.quota)
            added += 1
    return added, errors


def drain(cloud: Cloud, name: str) -> tuple[int, int, list[str]]:
    """Move every pack off backend `name` onto the others; returns (moved, deleted, errors).

    Only packs this node sealed are deleted there; another node's packs (known by import or
    location hint) are copied elsewhere like the others but only leave this node's index.
    """
    if cloud.hub is None or name not in cloud.hub.backends:
        raise StorageError(f"no backend named {name}")
    with HomeLock(cloud.home, exclusive=False):
        return _drain(cloud, name)


def _drain(cloud: Cloud, name: str) -> tuple[int, int, list[str]]:
    added, errors = replicate(cloud, exclude=name)
    if errors:
        return added, 0, errors
    deleted = 0
    tag = cloud.config.node_tag
    with cloud.index.read() as txn:
        on_it = [(pid, rec, cloud.index.owns(txn, pid, rec, tag))
                 for pid, rec in cloud.index.iter_packs(txn) if name in rec.locations]
    for pid, rec, owned in on_it:
        others = [b for b in rec.locations if b != name]
        if not others and not rec.local:
            errors.append(f"pack {pid.hex()[:16]} has no other copy")
            continue
        with cloud.index.write() as txn:
            cloud.index.put_pack(txn, pid, rec.with_locations(others))
            cloud.index.dequeue_upload(txn, pid, name)
        if not owned:
            continue  # another node's copy: not ours to delete
        try:
            cloud.hub.run(cloud.hub.backends[name].delete, pack_object_name(pid))
            deleted += 1
        except BackendError as e:
            errors.append(f"delete of pack {pid.hex()[:16]} on {name}: {e}")
    return added, deleted, errors


def status(cloud: Cloud, window_s: float = 3600.0) -> dict:
    """Pending uploads per backend, transfer rates and recent errors."""
    since = time.time_ns() - int(window_s * 1e9)
    pending: dict[str, dict[str, int]] = {b.name: {"packs": 0, "bytes": 0} for b in cloud.config.backends}
    rates: dict[str, dict[str, float]] = {}
    errors: list[dict] = []
    with cloud.index.read() as txn:
        for pid, b in cloud.index.iter_uploads(txn):
            rec = cloud.index.get_pack(pid, txn)
            p = pending.setdefault(b, {"packs": 0, "bytes": 0})
            p["packs"] += 1
            p["bytes"] += rec.size if rec else 0
        for t, kind, b, nbytes, secs, err in cloud.index.iter_events(since, txn):
            if err:
                errors.append({"time_ns": t, "kind": kind, "backend": b, "error": err})
                continue
            r = rates.setdefault(f"{kind}:{b}", {"bytes": 0, "seconds": 0.0, "count": 0})
            r["bytes"] += nbytes
            r["count"] += 1
            r["seconds"] = max(r["seconds"], secs)
        repairs = len(list(cloud.index.iter_repairs(txn)))
        want = cloud.config.effective_copies()
        under = sum(1 for _, rec in cloud.index.iter_packs(txn)
                    if want and rec.n_chunks and len(rec.locations) < want)
    return {"pending": pending, "transfers": rates, "recent_errors": errors[-20:],
            "repairs_queued": repairs, "copies_wanted": want, "under_replicated_packs": under}
