"""Small sealed documents that the nodes sharing a backend keep on it for gc.

Two kinds of object, each a msgpack map sealed with XChaCha20-Poly1305 under the
metadata subkey (the key every node of the cluster derives from the shared master
key), with the object's own name as associated data, so a document cannot be
forged without the key, nor moved to another name:

    gc/nodes/<node tag>    the node registry: a node that writes to this backend
                           {"tag", "time" (ns, when it registered)}
    gc/marks/<pack hex>    a mark: this pack object was unreferenced when marked
                           {"pack", "by" (tag), "time" (ns), "kind" ("owned" or
                           "orphan"), "epoch" (the gc epoch its marker wrote after
                           storing it; absent until then), "confirm" (a second
                           epoch, written once every node had published a state
                           of "epoch" without the pack; absent until then)}
    gc/epoch               the backend's gc epoch {"epoch": n}: a counter a marker
                           raises after storing its marks; every index copy object
                           carries the epoch its node read before reading its index

The registry is written when a backend is added and on every index save, and
deleted by `backend nodes --forget` (a node that is gone for good). See docs/gc.md.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgpack

from mosaic.backends.errors import NotFound

from ..errors import IntegrityError
from ..store import envelope

if TYPE_CHECKING:
    from .cloud import Cloud

NODES = "gc/nodes/"
MARKS = "gc/marks/"
EPOCH = "gc/epoch"
FORMAT = 1
DOC_MAX = 64 << 10  # the most read of one of these documents
_AAD = b"mosaic-gc v1 "
_REGISTERED = b"registered:"  # gcmarks table: + backend name -> the tag registered there
log = logging.getLogger("mosaic")


def seal_doc(key: bytes, name: str, doc: dict) -> bytes:
    """The sealed bytes of a registry or mark document stored as `name`."""
    return envelope.seal(key, msgpack.packb(doc, use_bin_type=True), _AAD + name.encode(),
                         bytes((FORMAT,)))


def open_doc(key: bytes, name: str, blob: bytes) -> dict:
    """The document stored as `name`; IntegrityError if it does not authenticate."""
    if len(blob) < 1 + envelope.OVERHEAD or blob[0] != FORMAT:
        raise IntegrityError(f"{name} has an unknown format")
    plain = envelope.open(key, memoryview(blob)[1:], _AAD + name.encode(), name)
    try:
        doc = msgpack.unpackb(plain, raw=False)
    except (ValueError, msgpack.UnpackException):
        raise IntegrityError(f"{name} is malformed") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"{name} is malformed")
    return doc


def read_doc(cloud: Cloud, backend: str, name: str) -> dict | None:
    """A sealed document from a backend; None if it is missing. IntegrityError if it does not
    authenticate, BackendError if the backend fails."""
    hub = cloud.hub
    assert hub is not None
    try:
        blob = hub.run(hub.backends[backend].get, name, 0, DOC_MAX)
    except NotFound:
        return None
    return open_doc(cloud.keys.metadata, name, blob)


def write_doc(cloud: Cloud, backend: str, name: str, doc: dict) -> None:
    """Seal and store a document (BackendError if the backend fails)."""
    hub = cloud.hub
    assert hub is not None
    hub.run(hub.backends[backend].put, name, seal_doc(cloud.keys.metadata, name, doc))


# ---- the node registry ------------------------------------------------------------
def node_object(tag: str) -> str:
    """The registry object of node `tag`."""
    return f"{NODES}{tag}"


def register(cloud: Cloud, backend: str) -> None:
    """Record this node in the backend's registry, once (remembered in the gcmarks table).

    Raises BackendError if the backend fails (the next save tries again)."""
    tag = cloud.config.node_tag
    if not tag:
        return
    idx = cloud.index
    key = _REGISTERED + backend.encode()
    with idx.read() as txn:
        if txn.get(key, db=idx.db["gcmarks"]) == tag.encode():
            return
    write_doc(cloud, backend, node_object(tag), {"tag": tag, "time": time.time_ns()})
    with idx.write() as txn:
        txn.put(key, tag.encode(), db=idx.db["gcmarks"])


def forget_registration(cloud: Cloud, backend: str | None = None) -> None:
    """Forget that this node registered on `backend` (every backend if None), so the next
    save registers again (after a node's tag changed, or a backend was replaced)."""
    idx = cloud.index
    with idx.write() as txn:
        db = idx.db["gcmarks"]
        if backend is not None:
            txn.delete(_REGISTERED + backend.encode(), db=db)
            return
        cur = txn.cursor(db=db)
        keys = []
        if cur.set_range(_REGISTERED):
            for k in cur.iternext(values=False):
                if not k.startswith(_REGISTERED):
                    break
                keys.append(bytes(k))
        for k in keys:
            txn.delete(k, db=db)


@dataclass(frozen=True)
class Registry:
    """The nodes registered on a backend, and the registry objects that did not open."""

    tags: frozenset[str]
    unreadable: tuple[str, ...] = field(default=())


def registered(cloud: Cloud, backend: str, names: list[str] | None = None) -> Registry:
    """Read the registry (`names`: the backend's object names under NODES if already listed).

    An object that does not authenticate is skipped with a warning: without the key
    nobody can add a node, so it cannot hold anything back."""
    hub = cloud.hub
    assert hub is not None
    if names is None:
        names = [o.name for o in hub.run(hub.backends[backend].list, NODES)]
    tags, bad = set(), []
    for n in names:
        tag = n[len(NODES):]
        if not tag or "/" in tag:
            continue
        try:
            doc = read_doc(cloud, backend, n)
        except IntegrityError as e:
            log.warning("mosaic: skipping %s on %s: %s", n, backend, e)
            bad.append(n)
            continue
        if doc is not None and doc.get("tag") == tag:
            tags.add(tag)
    return Registry(frozenset(tags), tuple(bad))


def unregister(cloud: Cloud, backend: str, tag: str) -> bool:
    """Remove node `tag` from the backend's registry; False if it was not there."""
    hub = cloud.hub
    assert hub is not None
    b = hub.backends[backend]
    try:
        hub.run(b.stat, node_object(tag))
    except NotFound:
        return False
    hub.run(b.delete, node_object(tag))
    return True


# ---- marks -------------------------------------------------------------------------
def mark_object(pid: bytes) -> str:
    """The mark object of a pack."""
    return f"{MARKS}{pid.hex()}"


def pack_of_mark(name: str) -> bytes | None:
    """The pack ID a mark object's name is about (None if it is not a mark's name)."""
    try:
        pid = bytes.fromhex(name[len(MARKS):])
    except ValueError:
        return None
    return pid if name.startswith(MARKS) and len(pid) == 32 else None


@dataclass(frozen=True)
class Mark:
    """A pack marked unreferenced on one backend at `time` (ns) by node `by`.

    `epoch` is the gc epoch written after the mark was stored (None: not yet); `confirm`
    the one written once every node had published a state of `epoch` without the pack."""

    pack: bytes
    by: str
    time: int
    kind: str  # "owned" (its owner dropped it) or "orphan" (no node knew it)
    epoch: int | None = None
    confirm: int | None = None

    def doc(self) -> dict:
        """The mark's document."""
        d: dict = {"pack": self.pack, "by": self.by, "time": self.time, "kind": self.kind}
        if self.epoch is not None:
            d["epoch"] = self.epoch
        if self.confirm is not None:
            d["confirm"] = self.confirm
        return d

    @classmethod
    def from_doc(cls, pid: bytes, doc: dict) -> Mark:
        """The mark in a document read from `mark_object(pid)`."""
        if doc.get("pack") != pid:
            raise IntegrityError(f"mark {pid.hex()} names another pack")
        e, c = doc.get("epoch"), doc.get("confirm")
        return cls(pid, str(doc.get("by", "")), int(doc.get("time", 0)), str(doc.get("kind", "")),
                   None if e is None else int(e), None if c is None or e is None else int(c))


# ---- the gc epoch ----------------------------------------------------------------
def read_epoch(cloud: Cloud, backend: str) -> int:
    """The backend's gc epoch (0 before the first mark). IntegrityError if the object does
    not authenticate, BackendError if the backend fails."""
    doc = read_doc(cloud, backend, EPOCH)
    return 0 if doc is None else int(doc.get("epoch", 0))


def raise_epoch(cloud: Cloud, backend: str, at_least: int = 0) -> int:
    """Write epoch max(current + 1, at_least) and return it. Called only after the marks it
    covers are stored: an index copy object that carries this epoch (or a later one) was
    planned from an index read after the write, so after those marks existed."""
    try:
        cur = read_epoch(cloud, backend)
    except IntegrityError as e:  # a damaged epoch object: start above anything it could be
        log.warning("mosaic: %s on %s: %s; replacing it", EPOCH, backend, e)
        cur = time.time_ns()
    new = max(cur + 1, at_least)
    write_doc(cloud, backend, EPOCH, {"epoch": new})
    return new


# ---- listing and forgetting nodes (`mosaic backend nodes`) -------------------------
def node_list(cloud: Cloud, backend: str) -> list[dict]:
    """The nodes gc waits for on a backend: registered ones and those with an index copy."""
    hub = cloud.hub
    assert hub is not None
    objs = hub.run(hub.backends[backend].list, "")
    reg = registered(cloud, backend, [o.name for o in objs if o.name.startswith(NODES)])
    copies: dict[str, int] = {}
    for o in objs:
        parts = o.name.split("/")
        if len(parts) == 3 and parts[0] == "index":
            copies[parts[1]] = copies.get(parts[1], 0) + 1
    return [{"node": t, "registered": t in reg.tags, "index_copy": copies.get(t, 0)}
            for t in sorted(reg.tags | set(copies))]


def forget_node(cloud: Cloud, backend: str, tag: str) -> bool:
    """Remove a node that is gone for good from a backend: its registry entry and index copy
    (gc no longer waits for it). False if the backend had neither."""
    hub = cloud.hub
    assert hub is not None
    b = hub.backends[backend]
    found = unregister(cloud, backend, tag)
    for o in hub.run(b.list, f"index/{tag}/"):
        hub.run(b.delete, o.name)
        found = True
    return found
