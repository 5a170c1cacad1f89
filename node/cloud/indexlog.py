"""An encrypted copy of the index on every backend: a snapshot plus logs of the changes since.

So that a node can be rebuilt from its backends alone (`mosaic recover --from`),
every change to the index (a put, rm, mv, import, gc, upload, repair, drain, ...)
reaches every backend as a log object holding only what changed; a full snapshot
is written now and then. Objects (on every backend):

    index/<node tag>/snap-<seq 16 hex>   the whole index
    index/<node tag>/log-<seq 16 hex>    the records changed since the previous object

Each backend has its own gap-free sequence: a snapshot, then logs numbered on
from it. Each object is a msgpack map (zstd, then XChaCha20-Poly1305 under the
metadata subkey with the object name as associated data, so objects cannot be
swapped); "v" 3 documents hold:

    snapshot  seq, time, gc_epoch, snapshot: true, packs, chunks, manifests, names
    log       seq, time, gc_epoch, base (the snapshot it follows), prev (the seq of
              the object it follows), packs, chunks, manifests, names ([name, file
              ID or nil for removed]), packs_gone, chunks_gone, manifests_gone

    packs [pack ID, size, n_chunks, [backends], owner (node tag; "" another node's;
    nil unknown)]; chunks [chunk ID, pack ID, offset, stored_len, plain_len];
    manifests [file ID, size, created_ns, chunk table]

    gc_epoch is the backend's gc epoch (registry.py), read before the index was read
    for the object: the published index state gc waits for (docs/gc.md). "v" 2
    documents (no gc_epoch, prev or owner) are read as well.

What changed comes from the index's journal (store/index.py): each changed
record's key, stamped with a change number in the very transaction of the change,
so a crash between the local commit and the upload loses nothing; the next save
sends whatever a backend has not acknowledged. A log holds each changed record
as it is when the log is written. A backend gets a snapshot instead when it has
no copy of ours yet, when its logs since the last snapshot would outgrow
LOG_SHARE of that snapshot (at least LOG_FLOOR bytes) or number MAX_LOGS, and on
`compact`; once the snapshot is stored there, that backend's older objects are
deleted. Reading a copy back (`recover`, `list_copies`, gc's view of other nodes'
copies) is in indexrecover.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack
import zstandard

from mosaic.backends.errors import BackendError

from ..errors import IntegrityError, StorageError
from ..store import envelope
from ..store.home import BackendConfig
from ..store.records import (
    PackRecord,
    encode_chunk_table,
)
from .registry import read_epoch, register

if TYPE_CHECKING:
    from .cloud import Cloud

FORMAT = 1
DOC_VERSION = 3
#: a backend gets a snapshot instead of a log once its logs since the last snapshot would
#: exceed this share of that snapshot's size (but not below LOG_FLOOR bytes) ...
LOG_SHARE = 1.0
LOG_FLOOR = 32 << 10
#: ... or number this many
MAX_LOGS = 256
_STATE = b"index_copy:"  # meta: + backend name -> what this node knows of that backend's copy
FLOOR_KEY = b"index_copy_floor"  # meta: the highest seq seen by `recover`; new copies number after it
_EPOCH = b"published_epoch:"  # gcmarks: + backend name -> the gc epoch its newest object carries
log = logging.getLogger("mosaic")
_AAD = b"mosaic-index-copy v1 "


def seal_copy(key: bytes, name: str, doc: dict) -> bytes:
    """One object of an index copy: msgpack, zstd, sealed with `name` as associated data."""
    plain = zstandard.ZstdCompressor(level=3).compress(msgpack.packb(doc, use_bin_type=True))
    return envelope.seal(key, plain, _AAD + name.encode(), bytes((FORMAT,)))


def open_copy(key: bytes, name: str, blob: bytes) -> dict:
    """The document of an index-copy object; IntegrityError if it is not one, or not `name`."""
    if len(blob) < 1 + envelope.OVERHEAD or blob[0] != FORMAT:
        raise IntegrityError(f"index copy {name} has an unknown format")
    plain = envelope.open(key, memoryview(blob)[1:], _AAD + name.encode(), f"index copy {name}")
    try:
        doc = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(plain, max_output_size=1 << 31),
                              raw=False)
    except (zstandard.ZstdError, ValueError, msgpack.UnpackException):
        raise IntegrityError(f"index copy {name} is malformed") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"index copy {name} is malformed")
    return doc


def copy_prefix(cloud: Cloud) -> str:
    """Where this node's index copy lives on a backend."""
    return f"index/{cloud.config.node_tag}/"


def _object(cloud: Cloud, kind: str, seq: int) -> str:
    return f"{copy_prefix(cloud)}{kind}-{seq:016x}"


def seq_of(name: str) -> int:
    """The sequence number in an index-copy object's name (-1 if it has none)."""
    try:
        return int(name.rsplit("-", 1)[1], 16)
    except (IndexError, ValueError):
        return -1


# ---- what this node knows of each backend's copy (meta b"index_copy:" + backend name) ----
@dataclass
class _State:
    ident: str  # the backend's kind and options: another bucket under the same name starts over
    next: int  # seq of the next object
    acked: int  # the journal change number the copy includes
    snap: int  # seq of the newest snapshot
    snap_bytes: int
    log_bytes: int  # bytes of the logs since that snapshot
    logs: int  # how many
    inflight: str = ""  # "snap": a snapshot at `next` was started and may be stored already

    def pack(self) -> bytes:
        return msgpack.packb([self.ident, self.next, self.acked, self.snap, self.snap_bytes,
                              self.log_bytes, self.logs, self.inflight])

    @classmethod
    def unpack(cls, raw: bytes) -> _State:
        return cls(*msgpack.unpackb(raw, raw=False))


def _ident(cfg: BackendConfig) -> str:
    opts = sorted((k, str(v)) for k, v in cfg.options.items() if k != "quota")
    return hashlib.blake2b(repr((cfg.kind, opts)).encode(), digest_size=8).hexdigest()


def _states(cloud: Cloud, txn: object) -> dict[str, _State]:
    """The state of every configured backend's copy that is still valid."""
    db = cloud.index.db["meta"]
    out = {}
    for b in cloud.config.backends:
        raw = txn.get(_STATE + b.name.encode(), db=db)  # type: ignore[attr-defined]
        if raw is not None:
            st = _State.unpack(raw)
            if st.ident == _ident(b):
                out[b.name] = st
    return out


def forget_states(cloud: Cloud, txn: object, keep: set[str]) -> None:
    """Drop what this node knows of the copy on every backend not in `keep`."""
    db = cloud.index.db["meta"]
    cur = txn.cursor(db=db)  # type: ignore[attr-defined]
    stale = []
    if cur.set_range(_STATE):
        for k in cur.iternext(values=False):
            if not k.startswith(_STATE):
                break
            if k[len(_STATE):].decode() not in keep:
                stale.append(k)
    for k in stale:
        txn.delete(k, db=db)  # type: ignore[attr-defined]


class _OneSaver:
    """One saver per home at a time (flock on HOME/index-copies.lock): each backend's
    sequence of objects is numbered, stored and acknowledged by one process."""

    def __init__(self, cloud: Cloud):
        self.path = cloud.home.root / "index-copies.lock"
        self.fd = -1

    def __enter__(self) -> _OneSaver:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# ---- the documents ----------------------------------------------------------
def _pack_entry(pid: bytes, r: PackRecord) -> list:
    """[pack ID, size, n_chunks, [backends], owner] (owner "" foreign, None unknown)."""
    return [pid, r.size, r.n_chunks, list(r.locations), r.owner]


def _snapshot_doc(cloud: Cloud, txn: object) -> dict:
    idx = cloud.index
    doc: dict = {"v": DOC_VERSION, "snapshot": True}
    doc["packs"] = [_pack_entry(p, r) for p, r in idx.iter_packs(txn)]
    doc["chunks"] = [[c, r.pack_id, r.offset, r.stored_len, r.plain_len] for c, r in idx.iter_chunks(txn)]
    doc["manifests"] = []
    for fid in idx.iter_manifest_ids(txn):
        m = idx.get_manifest(fid, txn)
        assert m is not None
        doc["manifests"].append([fid, m.size, m.created_ns, encode_chunk_table(m.chunks)])
    doc["names"] = [[n, f] for n, f in idx.iter_names("", txn)]
    return doc


def _log_doc(cloud: Cloud, txn: object, after: int) -> dict:
    """The records changed since journal change `after`, as they are now (or gone)."""
    idx = cloud.index
    doc: dict = {"v": DOC_VERSION, "packs": [], "chunks": [], "manifests": [], "names": [],
                 "packs_gone": [], "chunks_gone": [], "manifests_gone": []}
    names: list[str] = []
    for kind, key in idx.iter_journal(txn, after):
        if kind == "p":
            p = idx.get_pack(key, txn)
            if p is None:
                doc["packs_gone"].append(key)
            else:
                doc["packs"].append(_pack_entry(key, p))
        elif kind == "c":
            c = idx.get_chunk(key, txn)
            if c is None:
                doc["chunks_gone"].append(key)
            else:
                doc["chunks"].append([key, c.pack_id, c.offset, c.stored_len, c.plain_len])
        elif kind == "m":
            m = idx.get_manifest(key, txn)
            if m is None:
                doc["manifests_gone"].append(key)
            else:
                doc["manifests"].append([key, m.size, m.created_ns, encode_chunk_table(m.chunks)])
        elif kind == "n":
            names.append(key.decode("utf-8"))
    doc["names"] = [[n, f] for n, f in idx.resolve_names(txn, names).items()]
    return doc


# ---- saving -----------------------------------------------------------------
@dataclass
class _Plan:
    backend: str
    seq: int
    kind: str  # "snap" or "log"
    name: str
    blob: bytes
    state: _State | None


def save(cloud: Cloud, compact: bool = False, publish: bool = False) -> None:
    """Bring every backend's index copy up to date with what the journal holds.

    Each backend gets one log object with the records changed since its copy last
    heard (read as they are now, so a record changed many times is sent once), or a
    full snapshot when it has none yet, when its logs since the last snapshot would
    outgrow LOG_SHARE of that snapshot (or MAX_LOGS of them), or with `compact`.
    Once a snapshot is stored, that backend's older objects are deleted. A backend
    that fails keeps its place: the journal holds its changes until a save reaches
    it. With `publish`, every backend gets a new object even if nothing changed (gc
    needs each node's index state newer than its marks: docs/gc.md). The node is
    registered on each backend (registry.py) before its first object there. Raises
    StorageError (after trying every backend) if one could not be updated.
    """
    idx = cloud.index
    if not cloud.config.backends:
        with idx.read() as rtxn:
            on = idx.journal_on(rtxn)
        if on:  # nothing to keep copies on: stop journaling
            with idx.write() as txn:
                idx.set_journal(txn, False)
                forget_states(cloud, txn, set())
        return
    hub = cloud.hub
    assert hub is not None
    with _OneSaver(cloud):
        with idx.read() as rtxn:
            on = idx.journal_on(rtxn)
        if not on:  # from now on every change is journaled; what came before is in the snapshots
            with idx.write() as txn:
                idx.set_journal(txn, True)
        with idx.read() as rtxn:
            # with the journal just started, no copy can be continued by a log
            states = _states(cloud, rtxn) if on else {}
            v = rtxn.get(FLOOR_KEY, db=idx.db["meta"])
            floor = int(v) if v else 0
        errors: list[str] = []
        targets = []
        epochs: dict[str, int] = {}  # read before the index is: see docs/gc.md
        for b in (b.name for b in cloud.config.backends if b.name in hub.backends):
            try:
                register(cloud, b)
                try:
                    epochs[b] = read_epoch(cloud, b)
                except IntegrityError as e:  # no gc waits on this copy until a gc rewrites it
                    log.warning("mosaic: %s: %s", b, e)
                    epochs[b] = -1
            except BackendError as e:
                errors.append(f"{b}: {e}")
                continue
            targets.append(b)
        first: dict[str, int] = {}  # a backend without a copy of ours: after every seq it holds
        for b in targets:
            if b not in states:
                try:
                    first[b] = max(floor, _newest_seq(cloud, b)) + 1
                except BackendError as e:
                    errors.append(f"{b}: {e}")
        plans, jseq = _plan(cloud, targets, states, first, compact, publish, epochs)
        marks = [p for p in plans if p.kind == "snap" and p.state is not None and not p.state.inflight]
        if marks:  # a crash after storing the snapshot must not be followed by a log of the same seq
            with idx.write() as txn:
                for p in marks:
                    assert p.state is not None
                    p.state.inflight = "snap"
                    txn.put(_STATE + p.backend.encode(), p.state.pack(), db=idx.db["meta"])
        done: list[_Plan] = []
        for p in plans:
            try:
                hub.run(hub.backends[p.backend].put, p.name, p.blob)
            except BackendError as e:
                errors.append(f"{p.backend}: {e}")
                continue
            done.append(p)
        with idx.write() as txn:
            for p in done:
                if p.kind == "snap":
                    st = _State(_ident(_config(cloud, p.backend)), p.seq + 1, jseq, p.seq, len(p.blob), 0, 0)
                else:
                    assert p.state is not None
                    st = p.state
                    st.next, st.acked, st.log_bytes, st.logs = p.seq + 1, jseq, st.log_bytes + len(p.blob), st.logs + 1
                states[p.backend] = st
                txn.put(_STATE + p.backend.encode(), st.pack(), db=idx.db["meta"])
                txn.put(_EPOCH + p.backend.encode(), str(epochs.get(p.backend, 0)).encode(),
                        db=idx.db["gcmarks"])
            forget_states(cloud, txn, {b.name for b in cloud.config.backends})
            # changes every copy has heard are forgotten (a backend without a copy gets a snapshot)
            idx.trim_journal(txn, min((st.acked for st in states.values()), default=jseq))
        for p in done:
            if p.kind == "snap":
                _drop_superseded(cloud, p.backend, p.seq)
    if errors:
        raise StorageError(f"could not store the index copy on {errors[0]}")


def _config(cloud: Cloud, backend: str) -> BackendConfig:
    return next(b for b in cloud.config.backends if b.name == backend)


def _plan(cloud: Cloud, targets: list[str], states: dict[str, _State], first: dict[str, int],
          compact: bool, publish: bool = False, epochs: dict[str, int] | None = None
          ) -> tuple[list[_Plan], int]:
    """The object each backend needs, built from one read of the index; and its journal number."""
    idx, key = cloud.index, cloud.keys.metadata
    now = time.time_ns()
    plans = []
    with idx.read() as txn:
        jseq = idx.journal_seq(txn)
        snap: dict | None = None
        logs: dict[int, dict] = {}
        for b in targets:
            epoch = (epochs or {}).get(b, 0)
            st = states.get(b)
            if st is None:
                if b not in first:
                    continue
                seq, kind = first[b], "snap"
            else:
                seq = st.next
                kind = "snap" if compact or st.inflight == "snap" or st.logs >= MAX_LOGS else "log"
            if kind == "log":
                assert st is not None
                if st.acked >= jseq and not publish:
                    continue  # nothing new for this one
                if st.acked not in logs:
                    logs[st.acked] = _log_doc(cloud, txn, st.acked)
                name = _object(cloud, "log", seq)
                blob = seal_copy(key, name, {**logs[st.acked], "seq": seq, "base": st.snap,
                                         "prev": seq - 1, "time": now, "gc_epoch": epoch})
                if st.log_bytes + len(blob) <= max(LOG_SHARE * st.snap_bytes, LOG_FLOOR):
                    plans.append(_Plan(b, seq, kind, name, blob, st))
                    continue
                kind = "snap"
            if snap is None:
                snap = _snapshot_doc(cloud, txn)
            name = _object(cloud, "snap", seq)
            plans.append(_Plan(b, seq, kind, name, seal_copy(key, name, {**snap, "seq": seq, "time": now,
                                                                      "gc_epoch": epoch}), st))
    return plans, jseq


def _newest_seq(cloud: Cloud, backend: str) -> int:
    """The highest seq of any node's index copy on a backend (0 if none)."""
    hub = cloud.hub
    assert hub is not None
    objs = hub.run(hub.backends[backend].list, "index/")
    return max((seq_of(o.name) for o in objs if o.name.count("/") == 2), default=0)


def _drop_superseded(cloud: Cloud, backend: str, seq: int) -> None:
    """Delete this node's objects that snapshot `seq` (stored) supersedes; best effort."""
    hub = cloud.hub
    assert hub is not None
    b = hub.backends[backend]
    try:
        for o in hub.run(b.list, copy_prefix(cloud)):
            s = seq_of(o.name)
            if s < seq or (s == seq and "/log-" in o.name):
                hub.run(b.delete, o.name)
    except BackendError as e:  # left for the next snapshot to delete
        log.info("could not delete old index copies on %s: %s", backend, e)


def save_changes(cloud: Cloud) -> None:
    """Append what changed to every backend's index copy (after a put, rm, mv, gc, ...)."""
    save(cloud)


def compact(cloud: Cloud) -> None:
    """Store a full snapshot on every backend now and delete the objects it supersedes."""
    save(cloud, compact=True)


def published_epoch(cloud: Cloud, backend: str) -> int:
    """The gc epoch this node's newest index copy object on `backend` carries (-1: none)."""
    idx = cloud.index
    with idx.read() as txn:
        v = txn.get(_EPOCH + backend.encode(), db=idx.db["gcmarks"])
    return int(v) if v else -1


def publish(cloud: Cloud) -> None:
    """Store a new object of this node's index copy on every backend, changed or not."""
    save(cloud, publish=True)
