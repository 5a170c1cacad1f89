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
swapped); "v" 2 documents hold:

    snapshot  seq, time, snapshot: true, packs, chunks, manifests, names
    log       seq, time, base (the snapshot it follows), packs, chunks, manifests,
              names ([name, file ID or nil for removed]), packs_gone, chunks_gone,
              manifests_gone

    packs [pack ID, size, n_chunks, [backends]]; chunks [chunk ID, pack ID, offset,
    stored_len, plain_len]; manifests [file ID, size, created_ns, chunk table]

What changed comes from the index's journal (store/index.py): each changed
record's key, stamped with a change number in the very transaction of the change,
so a crash between the local commit and the upload loses nothing; the next save
sends whatever a backend has not acknowledged. A log holds each changed record
as it is when the log is written. A backend gets a snapshot instead when it has
no copy of ours yet, when its logs since the last snapshot would outgrow
LOG_SHARE of that snapshot (at least LOG_FLOOR bytes) or number MAX_LOGS, and on
`compact`; once the snapshot is stored there, that backend's older objects are
deleted. `recover` rebuilds an empty node from the newest snapshot plus every
later log, and refuses a copy with a log missing in between.
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

from ..errors import IntegrityError, StorageError, UsageError
from ..store import envelope
from ..store.home import BackendConfig
from ..store.index import ChunkRecord, Manifest, PackRecord, decode_chunk_table, encode_chunk_table

if TYPE_CHECKING:
    from .cloud import Cloud

FORMAT = 1
DOC_VERSION = 2
#: a backend gets a snapshot instead of a log once its logs since the last snapshot would
#: exceed this share of that snapshot's size (but not below LOG_FLOOR bytes) ...
LOG_SHARE = 1.0
LOG_FLOOR = 32 << 10
#: ... or number this many
MAX_LOGS = 256
_STATE = b"index_copy:"  # meta: + backend name -> what this node knows of that backend's copy
_FLOOR = b"index_copy_floor"  # meta: the highest seq seen by `recover`; new copies number after it
log = logging.getLogger("mosaic")
_AAD = b"mosaic-index-copy v1 "


def _seal(key: bytes, name: str, doc: dict) -> bytes:
    plain = zstandard.ZstdCompressor(level=3).compress(msgpack.packb(doc, use_bin_type=True))
    return envelope.seal(key, plain, _AAD + name.encode(), bytes((FORMAT,)))


def _open(key: bytes, name: str, blob: bytes) -> dict:
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


def _prefix(cloud: Cloud) -> str:
    return f"index/{cloud.config.node_tag}/"


def _object(cloud: Cloud, kind: str, seq: int) -> str:
    return f"{_prefix(cloud)}{kind}-{seq:016x}"


def _seq_of(name: str) -> int:
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


def _forget_states(cloud: Cloud, txn: object, keep: set[str]) -> None:
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
def _snapshot_doc(cloud: Cloud, txn: object) -> dict:
    idx = cloud.index
    doc: dict = {"v": DOC_VERSION, "snapshot": True}
    doc["packs"] = [[p, r.size, r.n_chunks, list(r.locations)] for p, r in idx.iter_packs(txn)]
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
                doc["packs"].append([key, p.size, p.n_chunks, list(p.locations)])
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


def save(cloud: Cloud, compact: bool = False) -> None:
    """Bring every backend's index copy up to date with what the journal holds.

    Each backend gets one log object with the records changed since its copy last
    heard (read as they are now, so a record changed many times is sent once), or a
    full snapshot when it has none yet, when its logs since the last snapshot would
    outgrow LOG_SHARE of that snapshot (or MAX_LOGS of them), or with `compact`.
    Once a snapshot is stored, that backend's older objects are deleted. A backend
    that fails keeps its place: the journal holds its changes until a save reaches
    it. Raises StorageError (after trying every backend) if one could not be updated.
    """
    idx = cloud.index
    if not cloud.config.backends:
        with idx.read() as rtxn:
            on = idx.journal_on(rtxn)
        if on:  # nothing to keep copies on: stop journaling
            with idx.write() as txn:
                idx.set_journal(txn, False)
                _forget_states(cloud, txn, set())
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
            v = rtxn.get(_FLOOR, db=idx.db["meta"])
            floor = int(v) if v else 0
        errors: list[str] = []
        targets = [b.name for b in cloud.config.backends if b.name in hub.backends]
        first: dict[str, int] = {}  # a backend without a copy of ours: after every seq it holds
        for b in targets:
            if b not in states:
                try:
                    first[b] = max(floor, _newest_seq(cloud, b)) + 1
                except BackendError as e:
                    errors.append(f"{b}: {e}")
        plans, jseq = _plan(cloud, targets, states, first, compact)
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
            _forget_states(cloud, txn, {b.name for b in cloud.config.backends})
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
          compact: bool) -> tuple[list[_Plan], int]:
    """The object each backend needs, built from one read of the index; and its journal number."""
    idx, key = cloud.index, cloud.keys.metadata
    now = time.time_ns()
    plans = []
    with idx.read() as txn:
        jseq = idx.journal_seq(txn)
        snap: dict | None = None
        logs: dict[int, dict] = {}
        for b in targets:
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
                if st.acked >= jseq:
                    continue  # nothing new for this one
                if st.acked not in logs:
                    logs[st.acked] = _log_doc(cloud, txn, st.acked)
                name = _object(cloud, "log", seq)
                blob = _seal(key, name, {**logs[st.acked], "seq": seq, "base": st.snap, "time": now})
                if st.log_bytes + len(blob) <= max(LOG_SHARE * st.snap_bytes, LOG_FLOOR):
                    plans.append(_Plan(b, seq, kind, name, blob, st))
                    continue
                kind = "snap"
            if snap is None:
                snap = _snapshot_doc(cloud, txn)
            name = _object(cloud, "snap", seq)
            plans.append(_Plan(b, seq, kind, name, _seal(key, name, {**snap, "seq": seq, "time": now}), st))
    return plans, jseq


def _newest_seq(cloud: Cloud, backend: str) -> int:
    """The highest seq of any node's index copy on a backend (0 if none)."""
    hub = cloud.hub
    assert hub is not None
    objs = hub.run(hub.backends[backend].list, "index/")
    return max((_seq_of(o.name) for o in objs if o.name.count("/") == 2), default=0)


def _drop_superseded(cloud: Cloud, backend: str, seq: int) -> None:
    """Delete this node's objects that snapshot `seq` (stored) supersedes; best effort."""
    hub = cloud.hub
    assert hub is not None
    b = hub.backends[backend]
    try:
        for o in hub.run(b.list, _prefix(cloud)):
            s = _seq_of(o.name)
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


# ---- recovering ---------------------------------------------------------------
def recover(cloud: Cloud, backend: str, partial: bool = False) -> dict:
    """Rebuild an empty node's index from the index copy on one backend.

    The newest snapshot of the node whose objects are newest, then every log after
    it. A log missing between them (or belonging to another snapshot) is refused
    with IntegrityError; with `partial` the node is rebuilt as of the last log before
    the gap instead, with a warning.
    """
    hub = cloud.hub
    if hub is None or backend not in hub.backends:
        raise UsageError(f"no backend named {backend} (add it first with `mosaic backend add`)")
    if cloud.index.count("manifests") or cloud.index.count("packs"):
        raise UsageError("recover needs an empty node (this one already has files)")
    b = hub.backends[backend]
    try:
        objs = hub.run(b.list, "index/")
        sizes = {o.name: o.size for o in objs}  # reads are bounded by the listed sizes
    except BackendError as e:
        raise StorageError(f"cannot list {backend}: {e}") from None
    by_tag: dict[str, list[str]] = {}
    for o in objs:
        parts = o.name.split("/")
        if len(parts) == 3 and _seq_of(o.name) >= 0:
            by_tag.setdefault(parts[1], []).append(o.name)
    by_tag.pop(cloud.config.node_tag, None)  # this empty node's own copy (a save before recover)
    if not by_tag:
        raise StorageError(f"no index copy on {backend}")
    # the node whose newest object is newest
    tag = max(by_tag, key=lambda t: max(_seq_of(n) for n in by_tag[t]))
    names = sorted(by_tag[tag], key=_seq_of)
    snaps = [n for n in names if "/snap-" in n]
    if not snaps:
        raise IntegrityError(f"the index copy on {backend} has logs but no snapshot (index/{tag}/); "
                             "try another backend")
    base = _seq_of(snaps[-1])
    todo = [snaps[-1]]
    for n in names:
        s = _seq_of(n)
        if "/log-" not in n or s <= base:
            continue
        want = base + len(todo)
        if s != want:
            msg = (f"the index copy on {backend} is incomplete: log {want:016x} is missing "
                   f"(after snapshot {base:016x}, before log {s:016x}); try another backend")
            if not partial:
                raise IntegrityError(msg)
            log.warning("mosaic: %s; recovering the state as of log %016x only", msg, want - 1)
            break
        todo.append(n)
    packs: dict[bytes, list] = {}
    chunks: dict[bytes, list] = {}
    manifests: dict[bytes, list] = {}
    name_map: dict[str, bytes | None] = {}
    for n in todo:
        try:
            doc = _open(cloud.keys.metadata, n, hub.get_object(backend, n, sizes[n]))
        except BackendError as e:
            raise StorageError(f"cannot read {n} from {backend}: {e}") from None
        if doc.get("base", base) != base and not doc.get("snapshot"):
            raise IntegrityError(f"index copy {n} on {backend} follows snapshot {doc['base']:016x}, "
                                 f"not {base:016x}; try another backend")
        for p in doc["packs"]:
            packs[p[0]] = p
        for c in doc["chunks"]:
            chunks[c[0]] = c
        for m in doc["manifests"]:
            manifests[m[0]] = m
        for p in doc.get("packs_gone", ()):
            packs.pop(p, None)
        for c in doc.get("chunks_gone", ()):
            chunks.pop(c, None)
        for f in doc.get("manifests_gone", ()):
            manifests.pop(f, None)
        for nm, f in doc["names"]:
            name_map[nm] = f
    idx = cloud.index
    with idx.write() as txn:
        for pid, size, n_chunks, locs in packs.values():
            idx.put_pack(txn, pid, PackRecord(size, n_chunks, cloud.local.has(pid), (), time.time_ns()
                                              ).with_locations(locs))
        for cid, pid, off, slen, plen in chunks.values():
            if pid in packs:
                idx.put_chunk(txn, cid, ChunkRecord(pid, off, slen, plen, 0))
        for fid, size, created, table in manifests.values():
            idx.add_manifest(txn, Manifest(fid, size, created, decode_chunk_table(table)))
        idx.set_names(txn, [(nm, f) for nm, f in name_map.items() if f is not None and f in manifests])
        # every backend's copy starts again with a snapshot numbered after all of these
        idx.set_journal(txn, False)
        _forget_states(cloud, txn, set())
        txn.put(_FLOOR, str(max(_seq_of(o.name) for o in objs if o.name.count("/") == 2)).encode(),
                db=idx.db["meta"])
    return {"from": backend, "objects": len(todo), "files": len(manifests), "packs": len(packs),
            "names": sum(1 for nm, f in name_map.items() if f is not None and f in manifests)}
