"""gc across the nodes that share a backend: mark, wait for every node, then delete.

No global lock: a pack object that no node references is first *marked* (a sealed
mark object on the backend), the backend's gc epoch is raised after the mark is
stored, and the pack is deleted only once every node that writes to the backend
(its registry, and every node with an index copy there) has published an index
copy object carrying that epoch or a later one, that still does not reference the
pack; a pack no node owns (an orphan) waits for the grace period as well. A node
that references a marked pack cancels the mark. docs/gc.md explains the scheme and why it cannot lose a live
pack.

What this node dropped from its own index (packs it sealed and no longer needs) is
remembered in the gcmarks table (`pack:` + pack ID + backend name -> [size, time])
in the transaction that drops it, until its copy on that backend is deleted; packs
no node knows (orphans: a crash before an index commit, a lost home) are marked
just the same. Packs this node knows only through import or sync are in its index,
so it never marks them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import lmdb
import msgpack

from mosaic.backends.errors import BackendError

from ..errors import IntegrityError, MosaicError
from .indexlog import published_epoch, save
from .indexrecover import Chain, copies_on, read_chain
from .objects import pack_object_name
from .registry import (
    MARKS,
    NODES,
    Mark,
    mark_object,
    pack_of_mark,
    raise_epoch,
    read_doc,
    read_epoch,
    registered,
    write_doc,
)

if TYPE_CHECKING:
    from .cloud import Cloud

PENDING = b"pack:"  # gcmarks: + pack ID (32) + backend name -> msgpack [size, dropped_ns]
_PACKS = "packs/"
log = logging.getLogger("mosaic")


@dataclass
class CollectReport:
    """What the shared phase did on the backends (or would do, with dry_run)."""

    marked: int = 0
    confirmed: int = 0
    cancelled: int = 0
    deleted: int = 0
    bytes_deleted: int = 0
    waiting: int = 0
    waiting_for: dict[str, str] = field(default_factory=dict)  # node tag -> why
    errors: list[str] = field(default_factory=list)
    marks_present: bool = False  # some backend still holds a mark after the pass
    abandoned: set[bytes] = field(default_factory=set)  # packs this node uses that their owner dropped


# ---- what this node dropped (gcmarks table) ---------------------------------------
def queue_drops(cloud: Cloud, txn: lmdb.Transaction, pid: bytes, size: int,
                backends: Iterable[str]) -> None:
    """In the transaction that drops an owned pack's record: remember its backend copies."""
    row = msgpack.packb([size, time.time_ns()])
    for b in backends:
        txn.put(PENDING + pid + b.encode(), row, db=cloud.index.db["gcmarks"])


def pending_drops(cloud: Cloud) -> dict[str, dict[bytes, int]]:
    """Backend -> {pack ID: size} of dropped packs whose copy there is not deleted yet."""
    idx = cloud.index
    out: dict[str, dict[bytes, int]] = {}
    with idx.read() as txn:
        cur = txn.cursor(db=idx.db["gcmarks"])
        if cur.set_range(PENDING):
            for k, v in cur.iternext():
                if not k.startswith(PENDING):
                    break
                rest = k[len(PENDING):]
                out.setdefault(rest[32:].decode(), {})[bytes(rest[:32])] = msgpack.unpackb(v)[0]
    return out


def _clear_drop(cloud: Cloud, pid: bytes, backend: str) -> None:
    idx = cloud.index
    with idx.write() as txn:
        txn.delete(PENDING + pid + backend.encode(), db=idx.db["gcmarks"])


# ---- the shared phase -------------------------------------------------------------
def collect(cloud: Cloud, grace_s: float, dry_run: bool = False,
            now: float | None = None) -> CollectReport:
    """One pass over every configured backend: finish, cancel or act on marks, and mark
    what no node references. Runs under the exclusive home lock (this node's index is
    still). A backend that fails is reported and left for the next pass."""
    rep = CollectReport()
    hub = cloud.hub
    if hub is None:
        return rep
    now_ns = int((time.time() if now is None else now) * 1e9)
    drops = pending_drops(cloud)
    configured = {b.name for b in cloud.config.backends}
    for b in set(drops) - configured:  # a backend this node no longer uses: nothing to delete
        if not dry_run:
            for pid in drops[b]:
                _clear_drop(cloud, pid, b)
    mine = _mine(cloud)
    for b in sorted(configured & set(hub.backends)):
        try:
            _Pass(cloud, b, rep, int(grace_s * 1e9), now_ns, dry_run).run(drops.get(b, {}), mine)
        except (BackendError, MosaicError) as e:
            rep.errors.append(f"{b}: {e}")
    return rep


def _mine(cloud: Cloud) -> set[bytes]:
    """Every pack this node's own index knows (records, and packs chunk records point at);
    read once, under the exclusive home lock, so it stays true for the whole pass."""
    idx = cloud.index
    with idx.read() as txn:
        out = {pid for pid, _ in idx.iter_packs(txn)}
        out |= {r.pack_id for _, r in idx.iter_chunks(txn)}
    return out


class _Pass:
    """The shared phase on one backend."""

    def __init__(self, cloud: Cloud, backend: str, rep: CollectReport, grace_ns: int, now_ns: int,
                 dry_run: bool):
        self.cloud, self.b, self.rep = cloud, backend, rep
        self.grace_ns, self.now_ns, self.dry_run = grace_ns, now_ns, dry_run
        self.hub = cloud.hub
        assert self.hub is not None
        self.be = self.hub.backends[backend]

    def run(self, drops: dict[bytes, int], mine: set[bytes]) -> None:
        objs = self.hub.run(self.be.list, "")
        sizes = {o.name: o.size for o in objs}
        packs = {}
        for o in objs:
            if o.name.startswith(_PACKS):
                try:
                    pid = bytes.fromhex(o.name.rsplit("/", 1)[1])
                except ValueError:
                    continue
                if len(pid) == 32 and o.name == pack_object_name(pid):
                    packs[pid] = o.size
        me = self.cloud.config.node_tag
        copies = copies_on(objs)
        reg = registered(self.cloud, self.b, [n for n in sizes if n.startswith(NODES)])
        others = (set(reg.tags) | set(copies)) - {me}
        states = {t: self._state(t, copies.get(t), sizes) for t in sorted(others)}
        known: set[bytes] = set()
        for st in states.values():
            if st is not None:
                known |= st.pack_refs()
        known |= mine
        marks = self._marks(sizes)
        unfinished: list[Mark] = []
        confirming: list[Mark] = []
        for pid, m in marks.items():
            if pid not in packs:  # deleted (by whoever): the mark is done
                self._forget(pid, drops)
                continue
            if pid in known:
                if m.kind == "orphan":  # a node knows it after all: not garbage
                    self.rep.cancelled += 1
                    if not self.dry_run:
                        self.hub.run(self.be.delete, mark_object(pid))
                    continue
                # its owner dropped it: it waits for the nodes that still use it to move off
                if pid in mine:
                    self.rep.abandoned.add(pid)
                self.rep.waiting += 1
                self.rep.marks_present = True
                continue
            if m.epoch is None:  # its marker stopped before raising the epoch
                unfinished.append(m)
                continue
            if m.kind != "orphan" and m.by != me and m.by in others:
                self.rep.waiting += 1  # its owner's to delete (it is still a node here)
                self.rep.marks_present = True
                continue
            if not self._ready(m, states, m.epoch):
                self.rep.waiting += 1
                self.rep.marks_present = True
            elif states and (m.confirm is None or not self._ready(m, states, m.confirm)):
                # every node had dropped it: once more, so that what they sent before that
                # has been applied (and published) too; see docs/gc.md
                if m.confirm is None:
                    confirming.append(m)
                self.rep.waiting += 1
                self.rep.marks_present = True
            else:
                self.rep.deleted += 1
                self.rep.bytes_deleted += packs[pid]
                if not self.dry_run:  # the pack first: a mark without its pack is cleaned up
                    self.hub.run(self.be.delete, pack_object_name(pid))
                    self._forget(pid, drops)
        new = []
        for pid in drops:
            if pid not in packs:  # never arrived, or deleted already
                if not self.dry_run:
                    _clear_drop(self.cloud, pid, self.b)
            elif pid not in marks and pid not in mine:  # others may use it: they move off
                new.append(Mark(pid, me, self.now_ns, "owned"))
        for pid in packs:
            if pid not in marks and pid not in drops and pid not in known:
                new.append(Mark(pid, me, self.now_ns, "orphan"))
        self.rep.marked += len(new)
        self.rep.confirmed += len(confirming)
        if new or unfinished or confirming:
            self.rep.marks_present = True
            if not self.dry_run:
                self._store_marks(new, unfinished, confirming)

    def _state(self, tag: str, names: list[str] | None, sizes: dict[str, int]) -> Chain | None:
        """A node's published index state here; None (it holds deletions back) if unreadable."""
        if not names:
            self.rep.waiting_for[tag] = f"no index copy on {self.b} yet"
            return None
        try:
            c = read_chain(self.cloud, self.b, tag, names, sizes)
        except (IntegrityError, BackendError) as e:  # e.g. a snapshot replacing its logs now
            self.rep.waiting_for[tag] = f"its index copy on {self.b} cannot be read: {e}"
            return None
        if c.gap is not None:
            self.rep.waiting_for[tag] = c.gap
            return None
        return c

    def _marks(self, sizes: dict[str, int]) -> dict[bytes, Mark]:
        out = {}
        for name in sizes:
            pid = pack_of_mark(name) if name.startswith(MARKS) else None
            if pid is None:
                continue
            try:
                doc = read_doc(self.cloud, self.b, name)
                if doc is not None:
                    out[pid] = Mark.from_doc(pid, doc)
            except IntegrityError as e:  # never acted on: without the key no mark can be made
                log.warning("mosaic: ignoring %s on %s: %s", name, self.b, e)
        return out

    def _ready(self, m: Mark, states: dict[str, Chain | None], epoch: int) -> bool:
        """Every other node has published a state of `epoch` or later (none of which
        references the pack: checked before); a mark of an orphan is also older than the
        grace period."""
        late = False
        for tag, st in states.items():
            if st is None:
                late = True
            elif st.epoch < epoch:
                self.rep.waiting_for.setdefault(tag, f"has not published its index on {self.b} "
                                                     "since the newest marks")
                late = True
        if m.kind == "orphan":  # no owner vouched for it: it may be a writer's, not yet recorded
            late = late or self.now_ns < m.time + self.grace_ns
        return not late

    def _forget(self, pid: bytes, drops: dict[bytes, int]) -> None:
        if self.dry_run:
            return
        self.hub.run(self.be.delete, mark_object(pid))
        if pid in drops:
            _clear_drop(self.cloud, pid, self.b)

    def _store_marks(self, new: list[Mark], unfinished: list[Mark], confirming: list[Mark]) -> None:
        """Store the new marks, then raise the epoch, then record it in every mark: an index
        copy that carries the epoch was read from its node's index after the marks existed.
        Marks every node has published a state without their pack for get the same epoch
        as their confirmation."""
        for m in new:
            write_doc(self.cloud, self.b, mark_object(m.pack), m.doc())
        epoch = raise_epoch(self.cloud, self.b)
        for m in [*new, *unfinished]:
            write_doc(self.cloud, self.b, mark_object(m.pack), replace(m, epoch=epoch).doc())
        for m in confirming:
            write_doc(self.cloud, self.b, mark_object(m.pack), replace(m, confirm=epoch).doc())


def keep_published(cloud: Cloud) -> None:
    """Save what changed to every backend's index copy, and store a new object even if
    nothing changed on a backend whose gc epoch was raised since this node's newest object
    there: nodes whose marks wait act once every node has published a state of their epoch
    (docs/gc.md). For a daemon, every round of its upload loop (one small read per
    backend); StorageError if a backend could not be updated."""
    hub = cloud.hub
    behind = False
    if hub is not None:
        for b in cloud.config.backends:
            if b.name not in hub.backends:
                continue
            try:
                if read_epoch(cloud, b.name) > published_epoch(cloud, b.name):
                    behind = True
                    break
            except (BackendError, IntegrityError):
                continue
    save(cloud, publish=behind)
