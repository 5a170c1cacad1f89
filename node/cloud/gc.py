"""gc: drop unreferenced chunks and the space they hold, locally and on backends.

Two phases. The local one (this module) drops what this node's index no longer
needs and rewrites its own packs that hold garbage; a pack it sealed and dropped
is not deleted from the backends here but remembered (gcmarks). The shared one
(collect.py) deletes a pack object on a backend only once no node that uses the
backend references it, after a mark and a grace period (docs/gc.md).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mosaic.backends.errors import BackendError

from ..errors import StorageError
from ..store.home import HomeLock
from ..store.packs import PackWriter
from ..store.records import ChunkRecord, PackRecord
from . import indexlog
from .collect import collect, queue_drops
from .objects import pack_object_name
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
    packs_moved: int = 0  # packs of other nodes, dropped by their owner, this node moved off
    # the shared phase (collect.py), over every backend
    marked: int = 0
    marks_confirmed: int = 0
    marks_cancelled: int = 0
    remote_deleted: int = 0
    remote_bytes_freed: int = 0
    marks_waiting: int = 0
    waiting_for: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True if this run removed, rewrote, marked or deleted anything."""
        return bool(self.dead_chunks or self.packs_deleted or self.packs_repacked
                    or self.temp_files or self.marked or self.marks_confirmed or self.marks_cancelled
                    or self.remote_deleted or self.packs_moved)


GRACE_S = 3600.0  # default grace: temp and orphan files younger than this belong to a live
# writer; a mark younger than this is not acted on (stale imports, clock skew: docs/gc.md)


class _Changed(Exception):
    """A pack gained a reference between gc's scan and its rewrite: leave it as it is."""


@dataclass
class _Scan:
    live: dict[bytes, list[tuple[bytes, ChunkRecord]]]
    dead: dict[bytes, list[bytes]]
    packs: dict[bytes, PackRecord]
    owned: set[bytes]


def _scan(cloud: Cloud, rep: GcReport) -> _Scan:
    """One read transaction: chunks by pack (live or not), pack records, and which we own."""
    idx = cloud.index
    tag = cloud.config.node_tag
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
        owned = {pid for pid, rec in packs.items() if idx.owns(txn, pid, rec, tag)}
    return _Scan(live, dead, packs, owned)


def _old(path: os.PathLike | str, now: float, grace_s: float = GRACE_S) -> bool:
    """True if the file was last modified more than `grace_s` ago (False if it is gone)."""
    try:
        return os.lstat(path).st_mtime < now - grace_s
    except FileNotFoundError:
        return False


def gc(cloud: Cloud, dry_run: bool = False, remote_repack_threshold: float = 0.5,
       grace_s: float = GRACE_S, now: float | None = None) -> GcReport:
    """Remove chunks no manifest references, and the space they hold.

    Pack by pack: a pack with no live chunk is deleted (locally and on its
    backends); a pack with some garbage (unreferenced chunks, or duplicate copies
    that lost a race with another writer) is rewritten with its live objects
    only (copied as they are, no re-encryption) when it is in the local store, or
    when it lives only on backends and is mostly garbage. The new pack reaches the
    old pack's backends before the old one is deleted anywhere.

    Only packs this node sealed (`Index.owns`) are rewritten; an unreferenced pack
    sealed by another node (known by import or location hint) only leaves this
    node's index (and local cache). A pack this node sealed and dropped (or replaced
    by its rewrite) leaves the local store at once and the backends through the
    shared phase (collect.py): marked, then deleted once every other node using the
    backend has published an index state newer than the mark, and again newer than
    its confirmation, that does not reference it (a pack no node owns also waits
    `grace_s`); a pack another node dropped that this node still uses is copied
    into a pack of this node's ("moved off") so that it can go. Each chunk's references are checked
    again in the transaction that deletes it, so a chunk that gained one since the
    scan is kept. Temp files and orphan pack files are swept only once older than
    `grace_s`. Runs under the exclusive home lock: no put, import, daemon or other
    writer of this home is in flight. `now` (seconds) is for tests.
    """
    rep = GcReport(dry_run=dry_run)
    with HomeLock(cloud.home, exclusive=True):
        sc = _scan(cloud, rep)
        now = time.time() if now is None else now
        for f in cloud.home.tmp_dir.iterdir():
            if _old(f, now, grace_s):
                rep.temp_files += 1
                if not dry_run:
                    f.unlink(missing_ok=True)
        empty = []
        for pid, prec in sc.packs.items():
            alive = sc.live.get(pid, [])
            if not alive:
                empty.append(pid)
                continue
            if pid not in sc.owned:
                if sc.dead.get(pid) and not dry_run:
                    _drop_dead_chunks(cloud, sc.dead[pid])
                continue  # another node's pack: never rewritten here
            if prec.n_chunks <= len(alive):
                continue  # no garbage inside (or a pack known only by location hints)
            garbage = max(0, prec.size - sum(r.stored_len for _, r in alive))
            if not prec.local and garbage < remote_repack_threshold * prec.size:
                continue
            if dry_run or _repack(cloud, pid, prec, alive, sc.dead.get(pid, [])):
                rep.packs_repacked += 1
                rep.bytes_freed += garbage
        if dry_run:
            for pid in empty:
                rep.packs_deleted += 1
                rep.bytes_freed += sc.packs[pid].size if pid in sc.owned else 0
        else:
            for pid in _drop_empty_packs(cloud, empty, sc.owned, sc.packs):
                rep.packs_deleted += 1
                if pid in sc.owned:
                    rep.bytes_freed += sc.packs[pid].size
                cloud.local.delete(pid)  # the backends' copies wait for the shared phase
            _sweep_orphans(cloud, now, grace_s)
            if cloud.hub is not None:  # temp objects of cancelled or crashed uploads
                for b in cloud.hub.backends.values():
                    try:
                        cloud.hub.run(b.sweep_temp, grace_s)
                    except Exception:  # an unreachable backend is swept next time
                        pass
        _shared(cloud, rep, grace_s, dry_run, now)
    return rep


def _shared(cloud: Cloud, rep: GcReport, grace_s: float, dry_run: bool, now: float) -> None:
    """The shared phase, with this node's index state published on every backend after it:
    the drops just made, and (while marks wait) a state newer than the marks. When this
    pass left marks, a second pass acts on those the publication made ready (a node alone
    on its backends deletes what it dropped in one run). docs/gc.md."""
    if cloud.hub is None:
        return
    passes = [collect(cloud, grace_s, dry_run, now)]
    if not dry_run:
        if passes[0].abandoned:
            _move_off(cloud, rep, passes[0].abandoned)
        _publish(cloud, rep, passes[0].marks_present)
        if passes[0].marks_present:
            passes.append(collect(cloud, grace_s, dry_run, now))
            if passes[-1].marked or passes[-1].confirmed:
                _publish(cloud, rep, True)
    last = passes[-1]
    rep.marked = sum(c.marked for c in passes)
    rep.marks_confirmed = sum(c.confirmed for c in passes)
    rep.marks_cancelled = sum(c.cancelled for c in passes)
    rep.remote_deleted = sum(c.deleted for c in passes)
    rep.remote_bytes_freed = sum(c.bytes_deleted for c in passes)
    rep.marks_waiting, rep.waiting_for = last.waiting, last.waiting_for
    rep.errors.extend(e for c in passes for e in c.errors)


def _move_off(cloud: Cloud, rep: GcReport, pids: set[bytes]) -> None:
    """Stop using packs that another node sealed and has dropped (marked): their live chunks
    are copied as they are into a new pack of this node's, and the old record is dropped
    (never the pack itself: its owner's mark deletes it once no node uses it)."""
    sc = _scan(cloud, GcReport())
    gone = []
    for pid in sorted(pids):
        prec = sc.packs.get(pid)
        if prec is None or pid in sc.owned:
            continue
        alive = sc.live.get(pid, [])
        if not alive:
            gone.append(pid)
        elif _repack(cloud, pid, prec, alive, sc.dead.get(pid, []), owned=False):
            rep.packs_moved += 1
    for pid in _drop_empty_packs(cloud, gone, set(), sc.packs):
        rep.packs_moved += 1
        cloud.local.delete(pid)


def _publish(cloud: Cloud, rep: GcReport, force: bool) -> None:
    try:
        indexlog.save(cloud, publish=force)
    except StorageError as e:
        rep.errors.append(str(e))


def _drop_empty_packs(cloud: Cloud, candidates: list[bytes], owned: set[bytes],
                      packs: dict[bytes, PackRecord]) -> list[bytes]:
    """Drop the records of packs that had no live chunk at the scan, in one transaction that
    looks at every chunk record again: a pack one of whose chunks gained a reference since (or
    a new chunk record with one) is kept. The backend copies of owned packs dropped are
    remembered for the shared phase in the same transaction. Returns the packs dropped."""
    if not candidates:
        return []
    idx = cloud.index
    want = set(candidates)
    chunks: dict[bytes, list[bytes]] = defaultdict(list)
    with idx.write() as txn:
        for cid, r in idx.iter_chunks(txn):
            if r.pack_id in want:
                if r.refcount > 0:
                    want.discard(r.pack_id)
                else:
                    chunks[r.pack_id].append(cid)
        gone = [pid for pid in candidates if pid in want]
        for pid in gone:
            for cid in chunks.get(pid, ()):
                idx.delete_chunk(txn, cid)
            if pid in owned:
                cur = idx.get_pack(pid, txn) or packs[pid]
                queue_drops(cloud, txn, pid, cur.size, cur.locations)
            idx.delete_pack(txn, pid)
            for p, b in [(p, b) for p, b in idx.iter_uploads(txn) if p == pid]:
                idx.dequeue_upload(txn, p, b)
    return gone


def _drop_dead_chunks(cloud: Cloud, cids: list[bytes]) -> None:
    """Forget unreferenced chunk records (of a pack we keep), each re-checked in the txn."""
    idx = cloud.index
    with idx.write() as txn:
        for cid in cids:
            r = idx.get_chunk(cid, txn)
            if r is not None and r.refcount == 0:
                idx.delete_chunk(txn, cid)


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
            dead: list[bytes], owned: bool = True) -> bool:
    """Rewrite a pack with its live objects; False (nothing changed) if that is not possible now.

    The new pack is this node's. The old one leaves this node's index and local store; if
    this node `owned` it, its backend copies go through the shared phase (other nodes may
    still use them), else they are left to their owner."""
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
    try:
        with idx.write() as txn:
            # References are counted again here: a chunk of the old pack that gained one since
            # the scan (dead then, or a new record) is not in the new pack, so keep the old one.
            moving = {cid for cid, _ in live}
            for cid, r in idx.iter_chunks(txn):
                if r.pack_id == pid and r.refcount > 0 and cid not in moving:
                    raise _Changed
            if idx.get_pack(pid, txn) is None:
                raise _Changed
            idx.put_pack(txn, sealed.pack_id, PackRecord.sealed(
                sealed.size, len(sealed.entries), owner=cloud.config.node_tag
            ).with_locations(placed))
            for cid, _ in live:
                cur = idx.get_chunk(cid, txn)
                if cur is None or cur.pack_id != pid:
                    continue
                e = where[cid]
                idx.put_chunk(txn, cid, ChunkRecord(sealed.pack_id, e.offset, e.stored_len,
                                                    cur.plain_len, cur.refcount))
            for cid in dead:
                cur = idx.get_chunk(cid, txn)
                if cur is not None and cur.pack_id == pid and cur.refcount == 0:
                    idx.delete_chunk(txn, cid)
            for b in set(prec.locations) - set(placed):
                idx.queue_upload(txn, sealed.pack_id, b)
            for p, b in [(p, b) for p, b in idx.iter_uploads(txn) if p == pid]:
                idx.dequeue_upload(txn, p, b)
            cur_pack = idx.get_pack(pid, txn)
            assert cur_pack is not None
            if owned:  # other nodes may use it: deleted on the backends by the shared phase
                queue_drops(cloud, txn, pid, cur_pack.size, cur_pack.locations)
            idx.delete_pack(txn, pid)
    except _Changed:
        delete_pack_everywhere(cloud, sealed.pack_id, placed)  # ours, never referenced
        return False
    cloud.local.delete(pid)
    return True


def _sweep_orphans(cloud: Cloud, now: float, grace_s: float = GRACE_S) -> None:
    """Delete local pack files the index does not know (left by a crash before commit) once
    older than `grace_s`: a younger one may be a writer's pack about to be committed."""
    idx = cloud.index
    with idx.read() as txn:
        for sub in cloud.home.packs_dir.iterdir():
            for f in sub.iterdir():
                try:
                    pid = bytes.fromhex(f.name)
                except ValueError:
                    continue
                if len(pid) == 32 and txn.get(pid, db=idx.db["packs"]) is None \
                        and _old(f, now, grace_s):
                    f.unlink(missing_ok=True)


