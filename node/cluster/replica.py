"""Replication state in LMDB: the per-origin sequence log, versioned names, and `SyncStore`.

Replication costs nothing until a node gets its first peer: `enable()` then
records the node's ID, writes every existing manifest and name into the log as
this node's own writes, and from then on every local change appends to the log
in the same transaction that makes it. Tables:

    synclog    origin(32) + seq (u64 BE) -> msgpack(entry wire form)   (protocol/records.py)
    syncvec    origin(32)                -> highest contiguous seq held (u64 LE)
    namestate  name (utf-8)              -> encode_name_state(...)       (protocol/names.py)
    waiting    file_id(32)               -> msgpack(ManifestRecord wire)  manifests whose chunks are not here yet
    wanted     chunk_id(32)              -> u32 plain length            chunks to fetch from peers
    have       file_id(32) + origin(32)  -> b"\x01" complete / b"\x00" not   which nodes hold which files
    wantedby   chunk_id(32) + file_id(32) -> b""   which waiting manifests a wanted chunk completes
    namewait   file_id(32) + name        -> b""   names to show once that file is present

The name directory (namestore.py) stays the materialised view: for each name
state, its `visible()` names point at their files, as soon as those files are
present.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence

import lmdb
import msgpack

from mosaic.protocol.names import (
    NameState,
    decode_name_state,
    encode_name_state,
    merge_name,
    new_write,
)
from mosaic.protocol.records import (
    ChunkLocation,
    HaveRecord,
    LogEntry,
    ManifestRecord,
    NameRecord,
    entry_from_wire,
    entry_to_wire,
)

from ..store.index import BE64, U64, ChunkRecord, Index, Manifest, PackRecord


def enable(index: Index, node_id: bytes) -> int:
    """Start logging: record the node ID and log every existing manifest and name."""
    if index.repl_origin is not None:
        if index.repl_origin != node_id:
            raise ValueError("this node's index was replicated under another node ID")
        return 0
    n = 0
    with index.write() as txn:
        txn.put(b"node_id", node_id, db=index.db["meta"])
        index.repl_origin = node_id
        for fid in list(index.iter_manifest_ids(txn)):
            m = index.get_manifest(fid, txn)
            assert m is not None
            log_manifest(index, txn, m)
            n += 1
        names = list(index.iter_names("", txn))
        for name, fid in names:
            rec = new_write(None, name, fid, origin=node_id, last_hlc=_last_hlc(index, txn),
                            now_ms=time.time_ns() // 1_000_000)
            txn.put(name.encode("utf-8"), encode_name_state(merge_name(None, rec)),
                    db=index.db["namestate"])
            txn.put(b"last_hlc", U64.pack(rec.version.hlc), db=index.db["meta"])
            _append_local(index, txn, rec)
            n += 1
    return n


# ---- the log ---------------------------------------------------------------
def _held(index: Index, txn: lmdb.Transaction, origin: bytes) -> int:
    v = txn.get(origin, db=index.db["syncvec"])
    return U64.unpack(v)[0] if v else 0


def _append(index: Index, txn: lmdb.Transaction, origin: bytes, entry: LogEntry) -> None:
    txn.put(origin + BE64.pack(entry.seq), msgpack.packb(entry_to_wire(entry), use_bin_type=True),
            db=index.db["synclog"])
    txn.put(origin, U64.pack(entry.seq), db=index.db["syncvec"])


def _append_local(index: Index, txn: lmdb.Transaction, record: ManifestRecord | NameRecord) -> None:
    origin = index.repl_origin
    assert origin is not None
    _append(index, txn, origin, LogEntry(_held(index, txn, origin) + 1, record))


def manifest_record(index: Index, txn: lmdb.Transaction, m: Manifest) -> ManifestRecord:
    """A manifest with location hints for every chunk whose pack is on a backend."""
    locs = []
    seen = set()
    packs: dict[bytes, PackRecord | None] = {}
    for cid, _ in m.chunks:
        if cid in seen:
            continue
        seen.add(cid)
        r = index.get_chunk(cid, txn)
        if r is None:
            continue
        if r.pack_id not in packs:
            packs[r.pack_id] = index.get_pack(r.pack_id, txn)
        p = packs[r.pack_id]
        locs.append(ChunkLocation(cid, r.pack_id, r.offset, r.stored_len, p.locations if p else ()))
    return ManifestRecord(m.file_id, m.size, m.created_ns, m.chunks, tuple(locs))


def log_manifest(index: Index, txn: lmdb.Transaction, m: Manifest) -> None:
    """Log a manifest added here (called by Index.add_manifest when enabled)."""
    _append_local(index, txn, manifest_record(index, txn, m))
    log_have(index, txn, m.file_id, True)


def log_have(index: Index, txn: lmdb.Transaction, fid: bytes, complete: bool) -> None:
    """Tell peers that this node holds a file complete (or no longer does)."""
    origin = index.repl_origin
    assert origin is not None
    txn.put(fid + origin, b"\x01" if complete else b"\x00", db=index.db["have"])
    _append_local(index, txn, HaveRecord(fid, complete))


def holders(index: Index, fid: bytes) -> dict[bytes, bool]:
    """{node ID: complete} for every node known to hold (or to have dropped) a file."""
    with index.read() as txn:
        cur = txn.cursor(db=index.db["have"])
        out = {}
        if cur.set_range(fid):
            for k, v in cur.iternext():
                if k[:32] != fid:
                    break
                out[bytes(k[32:])] = v == b"\x01"
        return out


def _state(index: Index, txn: lmdb.Transaction, name: str) -> NameState | None:
    v = txn.get(name.encode("utf-8"), db=index.db["namestate"])
    return decode_name_state(v) if v is not None else None


def _last_hlc(index: Index, txn: lmdb.Transaction) -> int:
    v = txn.get(b"last_hlc", db=index.db["meta"])
    return U64.unpack(v)[0] if v else 0


def _write_name(index: Index, txn: lmdb.Transaction, name: str, fid: bytes | None) -> NameRecord:
    state = _state(index, txn, name)
    rec = new_write(state, name, fid, origin=index.repl_origin, last_hlc=_last_hlc(index, txn),
                    now_ms=time.time_ns() // 1_000_000)
    _merge(index, txn, state, rec)
    _append_local(index, txn, rec)
    return rec


def _merge(index: Index, txn: lmdb.Transaction, state: NameState | None, rec: NameRecord
           ) -> list[tuple[str, bytes | None, bytes | None]]:
    """Fold a write into the name's state and update the visible names; returns view changes."""
    new = merge_name(state, rec)
    txn.put(b"last_hlc", U64.pack(max(_last_hlc(index, txn), rec.version.hlc)), db=index.db["meta"])
    if new is state:
        return []
    txn.put(rec.name.encode("utf-8"), encode_name_state(new), db=index.db["namestate"])
    before = state.visible() if state is not None else {}
    after = {}
    for n, f in new.visible().items():
        if txn.get(f, db=index.db["manifests"]) is not None:
            after[n] = f
        else:  # shown once the file arrives (see _refresh_names_for)
            txn.put(f + rec.name.encode("utf-8"), b"", db=index.db["namewait"])
    changes: list[tuple[str, bytes | None]] = [(n, None) for n in before if n not in after]
    changes += [(n, f) for n, f in after.items() if index.resolve_name(n, txn) != f]
    return index.set_names_view(txn, changes) if changes else []


def write_names(index: Index, txn: lmdb.Transaction, changes: list[tuple[str, bytes | None]]
                ) -> list[tuple[str, bytes | None, bytes | None]]:
    """Local name changes under replication: versioned, merged, logged."""
    out = []
    for name, fid in changes:
        old = index.resolve_name(name, txn)
        if old == fid:
            continue
        _write_name(index, txn, name, fid)
        out.append((name, old, fid))
    return out


# ---- applying what peers send ---------------------------------------------
def _apply_manifest(index: Index, txn: lmdb.Transaction, rec: ManifestRecord) -> None:
    if txn.get(rec.file_id, db=index.db["manifests"]) is not None:
        return
    locs = {loc.chunk_id: loc for loc in rec.locations}
    missing = False
    lengths = dict(rec.chunks)
    for cid, n in rec.chunks:
        if index.get_chunk(cid, txn) is not None:
            continue
        loc = locs.get(cid)
        if loc is not None and loc.backends:
            prev = index.get_pack(loc.pack_id, txn)
            if prev is None:
                index.put_pack(txn, loc.pack_id, PackRecord.hinted(loc.backends))
            elif not set(loc.backends) <= set(prev.locations):
                index.put_pack(txn, loc.pack_id, prev.adding(*loc.backends))
            index.put_chunk(txn, cid, ChunkRecord(loc.pack_id, loc.offset, loc.length, lengths[cid], 0),
                            overwrite=False)
            continue
        txn.put(cid, struct.pack("<I", n), db=index.db["wanted"])
        txn.put(cid + rec.file_id, b"", db=index.db["wantedby"])
        missing = True
    if missing:
        txn.put(rec.file_id, msgpack.packb(entry_to_wire(LogEntry(1, rec)), use_bin_type=True),
                db=index.db["waiting"])
        return
    _complete(index, txn, rec)


def _complete(index: Index, txn: lmdb.Transaction, rec: ManifestRecord) -> None:
    """Add a manifest whose chunks are all here, and show the names waiting for it."""
    origin = index.repl_origin
    index.repl_origin = None  # not a local write: do not log the manifest again
    try:
        index.add_manifest(txn, Manifest(rec.file_id, rec.size, rec.created_ns, rec.chunks))
    finally:
        index.repl_origin = origin
    if origin is not None:
        log_have(index, txn, rec.file_id, True)
    txn.delete(rec.file_id, db=index.db["waiting"])
    _refresh_names_for(index, txn, rec.file_id)


def _prefixed(txn: lmdb.Transaction, db: lmdb._Database, prefix: bytes) -> list[bytes]:
    """Keys starting with `prefix`, with the prefix cut off."""
    cur = txn.cursor(db=db)
    out = []
    if cur.set_range(prefix):
        for k in cur.iternext(values=False):
            if not k.startswith(prefix):
                break
            out.append(bytes(k[len(prefix):]))
    return out


def _refresh_names_for(index: Index, txn: lmdb.Transaction, fid: bytes) -> None:
    """Show the names that were waiting for this file."""
    changes = []
    db = index.db["namewait"]
    for raw in _prefixed(txn, db, fid):
        txn.delete(fid + raw, db=db)
        st = _state(index, txn, raw.decode("utf-8"))
        if st is None:
            continue
        for n, f in st.visible().items():
            if f == fid and index.resolve_name(n, txn) != f:
                changes.append((n, f))
    if changes:
        index.set_names_view(txn, changes)


def chunks_arrived(index: Index, txn: lmdb.Transaction, cids: set[bytes]) -> int:
    """After fetched chunks got records: complete every waiting manifest that is now whole."""
    candidates: set[bytes] = set()
    for c in cids:
        txn.delete(c, db=index.db["wanted"])
        for fid in _prefixed(txn, index.db["wantedby"], c):
            txn.delete(c + fid, db=index.db["wantedby"])
            candidates.add(fid)
    done = 0
    for fid in candidates:
        v = txn.get(fid, db=index.db["waiting"])
        if v is None:
            continue
        rec = entry_from_wire(msgpack.unpackb(v, raw=False, use_list=False)).record
        assert isinstance(rec, ManifestRecord)
        if all(index.get_chunk(c, txn) is not None for c, _ in rec.chunks):
            _complete(index, txn, rec)
            done += 1
    return done


def wanted_chunks(index: Index, limit: int = 4096) -> list[bytes]:
    """Chunk IDs the node still has to fetch from peers."""
    with index.read() as txn:
        out = []
        for k in txn.cursor(db=index.db["wanted"]).iternext(values=False):
            out.append(bytes(k))
            if len(out) >= limit:
                break
        return out


class LmdbSyncStore:
    """The node's `protocol.sync.SyncStore` over LMDB."""

    def __init__(self, index: Index):
        self.index = index

    def summary(self) -> dict[bytes, int]:
        """{origin: highest contiguous seq held}."""
        with self.index.read() as txn:
            return {bytes(k): U64.unpack(v)[0]
                    for k, v in txn.cursor(db=self.index.db["syncvec"]).iternext()}

    def entries_since(self, origin: bytes, after_seq: int, limit: int) -> Sequence[LogEntry]:
        """Entries of `origin` with seq > after_seq, in order."""
        out = []
        with self.index.read() as txn:
            cur = txn.cursor(db=self.index.db["synclog"])
            if not cur.set_range(origin + BE64.pack(after_seq + 1)):
                return out
            for k, v in cur.iternext():
                if k[:32] != origin or len(out) >= limit:
                    break
                out.append(entry_from_wire(msgpack.unpackb(v, raw=False, use_list=False)))
        return out

    def apply(self, origin: bytes, entries: Sequence[LogEntry]) -> None:
        """Append what is new (under the original origin) and fold it in; idempotent."""
        idx = self.index
        with idx.write() as txn:
            held = _held(idx, txn, origin)
            for e in entries:
                if e.seq <= held:
                    continue
                if e.seq != held + 1:
                    raise ValueError(f"gap in the log of {origin.hex()[:16]}: hold {held}, got {e.seq}")
                _append(idx, txn, origin, e)
                held = e.seq
                rec = e.record
                if isinstance(rec, ManifestRecord):
                    _apply_manifest(idx, txn, rec)
                elif isinstance(rec, HaveRecord):
                    txn.put(rec.file_id + origin, b"\x01" if rec.complete else b"\x00", db=idx.db["have"])
                else:
                    _merge(idx, txn, _state(idx, txn, rec.name), rec)


def install(index: Index) -> None:
    """Make this module the index's change log: name writes become versioned, logged records."""
    import sys
    index.change_log = sys.modules[__name__]
