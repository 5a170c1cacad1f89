"""Reading index copies back: a node's chain of objects on a backend, and `recover`.

`recover` rebuilds an empty node from one node's newest snapshot plus every later log
(`list_copies` shows whose copies a backend holds), and refuses a copy with a log
missing, out of order or not decrypting in between unless told to accept the gap. The
rebuilt node takes the old node's tag (so its ownership). The format of the objects
and how they are written: indexlog.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mosaic.backends.errors import BackendError

from ..errors import IntegrityError, NotFoundError, StorageError, UsageError
from ..store.records import ChunkRecord, Manifest, PackRecord, decode_chunk_table
from .indexlog import FLOOR_KEY, forget_states, open_copy, seq_of
from .registry import forget_registration

if TYPE_CHECKING:
    from .cloud import Cloud

log = logging.getLogger("mosaic")
_RECOVERING = b"recover:tag"  # gcmarks: the tag a recovered node is taking (until it has)
_OLD_TAG = b"recover:old"  # gcmarks: the tag it had (its empty copy is removed from backends)


# ---- reading a node's copy ----------------------------------------------------
@dataclass
class Chain:
    """A node's index copy on one backend, read from its newest readable snapshot on.

    `seq` and `time` are those of the last object applied; `gap` says why the chain
    stops early (a log missing, out of order or unreadable), None if it is whole;
    `skipped` names objects that did not decrypt (each also logged as a warning)."""

    tag: str
    objects: list[str]
    seq: int
    time: int
    packs: dict[bytes, list]
    chunks: dict[bytes, list]
    manifests: dict[bytes, list]
    names: dict[str, bytes | None]
    gap: str | None
    skipped: list[str]
    epoch: int = -1  # the gc epoch its last object applied carries (-1: none)

    def pack_refs(self) -> set[bytes]:
        """Every pack this state knows: pack records and the packs chunk records point at."""
        return set(self.packs) | {c[1] for c in self.chunks.values()}

    def live_names(self) -> int:
        """Names that lead to a file of this state."""
        return sum(1 for f in self.names.values() if f is not None and f in self.manifests)


def copies_on(objs: list) -> dict[str, list[str]]:
    """Per node tag, the names of its index copy objects in a listing of `index/`."""
    by_tag: dict[str, list[str]] = {}
    for o in objs:
        parts = o.name.split("/")
        if len(parts) == 3 and parts[0] == "index" and seq_of(o.name) >= 0 \
                and parts[2].split("-")[0] in ("snap", "log"):
            by_tag.setdefault(parts[1], []).append(o.name)
    return by_tag


def read_chain(cloud: Cloud, backend: str, tag: str, names: list[str], sizes: dict[str, int]
               ) -> Chain:
    """Apply a node's newest snapshot and every log after it, in order, stopping at a gap.

    A log missing between them, naming another predecessor or another snapshot, or
    one that does not decrypt, ends the chain there (`gap`). A snapshot that does not
    decrypt is skipped (with a warning) for the one before it. IntegrityError if no
    snapshot can be read; BackendError if the backend fails."""
    hub = cloud.hub
    assert hub is not None
    key = cloud.keys.metadata
    ordered = sorted(names, key=seq_of)
    skipped: list[str] = []

    def load(n: str) -> dict | None:
        try:
            return open_copy(key, n, hub.get_object(backend, n, sizes.get(n, 0)))
        except IntegrityError as e:
            log.warning("mosaic: skipping %s on %s: %s", n, backend, e)
            skipped.append(n)
            return None

    snap_doc, base = None, -1
    for n in reversed([n for n in ordered if "/snap-" in n]):
        snap_doc = load(n)
        if snap_doc is not None:
            base = seq_of(n)
            applied = [n]
            break
    if snap_doc is None:
        what = "no snapshot that decrypts" if skipped else "logs but no snapshot"
        raise IntegrityError(f"the index copy of node {tag} on {backend} has {what} "
                             f"(index/{tag}/)")
    c = Chain(tag, applied, base, int(snap_doc.get("time", 0)), {}, {}, {}, {}, None, skipped,
              int(snap_doc.get("gc_epoch", -1)))
    _apply(c, snap_doc)
    for n in ordered:
        s = seq_of(n)
        if "/log-" not in n or s <= base:
            continue
        want = c.seq + 1
        if s != want:
            c.gap = (f"log {want:016x} of node {tag} is missing on {backend} "
                     f"(after {c.seq:016x}, before log {s:016x})")
            break
        doc = load(n)
        if doc is None:
            c.gap = f"log {s:016x} of node {tag} on {backend} does not decrypt"
            break
        if doc.get("base", base) != base or doc.get("prev", s - 1) != s - 1:
            c.gap = (f"log {s:016x} of node {tag} on {backend} follows "
                     f"{doc.get('prev', s - 1):016x} of snapshot {doc.get('base', base):016x}, "
                     f"not {c.seq:016x} of snapshot {base:016x}")
            break
        _apply(c, doc)
        c.objects.append(n)
        c.seq, c.time, c.epoch = s, int(doc.get("time", c.time)), int(doc.get("gc_epoch", -1))
    return c


def _apply(c: Chain, doc: dict) -> None:
    for p in doc["packs"]:
        c.packs[p[0]] = p
    for ch in doc["chunks"]:
        c.chunks[ch[0]] = ch
    for m in doc["manifests"]:
        c.manifests[m[0]] = m
    for p in doc.get("packs_gone", ()):
        c.packs.pop(p, None)
    for ch in doc.get("chunks_gone", ()):
        c.chunks.pop(ch, None)
    for f in doc.get("manifests_gone", ()):
        c.manifests.pop(f, None)
    for nm, f in doc["names"]:
        c.names[nm] = f


@dataclass(frozen=True)
class CopyInfo:
    """One node's index copy found on a backend, for `recover --from` to list."""

    tag: str
    seq: int
    time: int  # ns, of its newest object read
    files: int
    names: int
    gap: str | None
    error: str | None  # why it cannot be read at all

    def to_json(self) -> dict:
        return {"node": self.tag, "seq": self.seq, "time_ns": self.time, "files": self.files,
                "names": self.names, "gap": self.gap, "error": self.error}


def _listing(cloud: Cloud, backend: str) -> tuple[list, dict[str, int]]:
    hub = cloud.hub
    if hub is None or backend not in hub.backends:
        raise UsageError(f"no backend named {backend} (add it first with `mosaic backend add`)")
    try:
        objs = hub.run(hub.backends[backend].list, "index/")
    except BackendError as e:
        raise StorageError(f"cannot list {backend}: {e}") from None
    return objs, {o.name: o.size for o in objs}  # reads are bounded by the listed sizes


def list_copies(cloud: Cloud, backend: str) -> list[CopyInfo]:
    """Every node's index copy on a backend (this node's own excluded), newest first."""
    objs, sizes = _listing(cloud, backend)
    out = []
    for tag, names in copies_on(objs).items():
        if tag == cloud.config.node_tag:
            continue
        try:
            c = read_chain(cloud, backend, tag, names, sizes)
        except IntegrityError as e:
            out.append(CopyInfo(tag, max(seq_of(n) for n in names), 0, 0, 0, None, str(e)))
            continue
        except BackendError as e:
            raise StorageError(f"cannot read the index copies on {backend}: {e}") from None
        out.append(CopyInfo(tag, c.seq, c.time, len(c.manifests), c.live_names(), c.gap, None))
    out.sort(key=lambda i: (i.error is None, i.time, i.seq), reverse=True)
    return out


# ---- recovering ---------------------------------------------------------------
def recover(cloud: Cloud, backend: str, partial: bool = False, node: str | None = None) -> dict:
    """Rebuild an empty node's index from a node's index copy on one backend.

    `node` names whose copy (its tag, as `list_copies` shows); it may be left out
    only when the backend holds one node's copy. The newest snapshot, then every log
    after it; a log missing, out of order or not decrypting stops the chain: refused
    with IntegrityError naming it, or with `partial` (`--accept-gaps`) the node is
    rebuilt as of the last good log, with a warning. The rebuilt node takes the old
    node's tag, so it owns what that node sealed and carries on its index copy and
    registry entries; its own (empty) copy and registrations are removed.
    """
    idx = cloud.index
    with idx.read() as txn:
        started = txn.get(_RECOVERING, db=idx.db["gcmarks"])
    if started is not None:  # a recover that stopped after its commit: finish taking the tag
        tag = started.decode()
        _adopt_tag(cloud, tag)
        return {"from": backend, "node": tag, "objects": 0, "files": idx.count("manifests"),
                "packs": idx.count("packs"), "names": idx.count("names"), "resumed": True,
                "warnings": []}
    if idx.count("manifests") or idx.count("packs"):
        raise UsageError("recover needs an empty node (this one already has files)")
    objs, sizes = _listing(cloud, backend)
    by_tag = copies_on(objs)
    by_tag.pop(cloud.config.node_tag, None)  # this empty node's own copy (a save before recover)
    if not by_tag:
        raise StorageError(f"no index copy on {backend}")
    warnings: list[str] = []
    if node is None:
        if len(by_tag) > 1:  # copies that cannot be read at all are no candidates
            readable = [c.tag for c in list_copies(cloud, backend) if c.error is None]
            warnings += [f"skipped the index copy of node {t}: it cannot be read"
                         for t in sorted(set(by_tag) - set(readable))]
            if len(readable) != 1:
                raise UsageError(f"{backend} holds the index copies of {len(readable)} nodes "
                                 f"({', '.join(sorted(readable))}): choose one with --node TAG "
                                 "(`mosaic recover --from NAME --list` shows them)")
            by_tag = {readable[0]: by_tag[readable[0]], **by_tag}
        node = next(iter(by_tag))
    if node not in by_tag:
        raise NotFoundError(f"no index copy of node {node} on {backend}")
    try:
        c = read_chain(cloud, backend, node, by_tag[node], sizes)
    except BackendError as e:
        raise StorageError(f"cannot read the index copy on {backend}: {e}") from None
    warnings += [f"skipped {n}: it does not decrypt" for n in c.skipped]
    if c.gap is not None:
        msg = f"the index copy on {backend} is incomplete: {c.gap}"
        if not partial:
            raise IntegrityError(f"{msg}; try another backend, or --accept-gaps to recover "
                                 "the state before it")
        warnings.append(f"{msg}; recovered the state as of {c.seq:016x} only")
        log.info("%s; recovering the state as of %016x only", msg, c.seq)
    _install(cloud, c, max(seq_of(o.name) for o in objs if o.name.count("/") == 2), node)
    _adopt_tag(cloud, node)
    return {"from": backend, "node": node, "objects": len(c.objects), "files": len(c.manifests),
            "packs": len(c.packs), "names": c.live_names(), "warnings": warnings}


def _install(cloud: Cloud, c: Chain, floor: int, tag: str) -> None:
    """Write the chain's records into the empty index, owners kept, noting (in the same
    transaction) that the node is to take `tag`, until `_adopt_tag` has."""
    idx = cloud.index
    with idx.write() as txn:
        for p in c.packs.values():
            pid, size, n_chunks, locs = p[:4]
            owner = p[4] if len(p) > 4 else None  # older copies carry no owner
            idx.put_pack(txn, pid, PackRecord(size, n_chunks, cloud.local.has(pid), (),
                                              time.time_ns(), owner).with_locations(locs))
        for cid, pid, off, slen, plen in c.chunks.values():
            if pid in c.packs:
                idx.put_chunk(txn, cid, ChunkRecord(pid, off, slen, plen, 0))
        for fid, size, created, table in c.manifests.values():
            idx.add_manifest(txn, Manifest(fid, size, created, decode_chunk_table(table)))
        idx.set_names(txn, [(nm, f) for nm, f in c.names.items()
                            if f is not None and f in c.manifests])
        # every backend's copy starts again with a snapshot numbered after all of these
        idx.set_journal(txn, False)
        forget_states(cloud, txn, set())
        txn.put(FLOOR_KEY, str(floor).encode(), db=idx.db["meta"])
        txn.put(_RECOVERING, tag.encode(), db=idx.db["gcmarks"])


def _adopt_tag(cloud: Cloud, tag: str) -> None:
    """Become node `tag` (the config's node.tag), dropping this node's own empty copy and
    registrations from every backend (best effort: gc waits for a node it still sees)."""
    from .registry import unregister
    idx = cloud.index
    old = cloud.config.node_tag
    with idx.read() as txn:
        raw = txn.get(_OLD_TAG, db=idx.db["gcmarks"])
    if raw is None and old != tag:
        with idx.write() as txn:  # remembered, so a crash from here on still cleans it up
            txn.put(_OLD_TAG, old.encode(), db=idx.db["gcmarks"])
    else:
        old = raw.decode() if raw is not None else old
    if cloud.config.node_tag != tag:
        cloud.home.write_config(replace(cloud.home.read_config(), node_tag=tag))
        cloud.store.config = replace(cloud.store.config, node_tag=tag)
    forget_registration(cloud)
    hub = cloud.hub
    if hub is not None and old and old != tag:
        for b in hub.backends:
            try:
                for o in hub.run(hub.backends[b].list, f"index/{old}/"):
                    hub.run(hub.backends[b].delete, o.name)
                unregister(cloud, b, old)
            except BackendError as e:
                log.info("could not remove the empty copy of %s on %s: %s", old, b, e)
    with idx.write() as txn:
        txn.delete(_OLD_TAG, db=idx.db["gcmarks"])
        txn.delete(_RECOVERING, db=idx.db["gcmarks"])
