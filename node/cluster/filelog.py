r"""Replicated files: manifests logged with location hints, which nodes hold which file, and
the chunks wanted from peers until a peer's manifest is whole here.

    waiting    file_id(32)               -> msgpack(ManifestRecord wire)  manifests whose chunks are not here yet
    wanted     chunk_id(32)              -> u32 plain length + origin(32)  chunks to fetch from peers
    wantedby   chunk_id(32) + file_id(32) -> b""   which waiting manifests a wanted chunk completes
    have       file_id(32) + origin(32)  -> b"\x01" complete / b"\x00" not   which nodes hold which files
    meta       b"expired:" + file_id      -> b""   waiting files whose wanted chunks expired

Location hints name backends by their backend ID (the identity marker of `backend add`): a
hint is used only for a backend this node has under the same ID; otherwise the chunk is
wanted from peers.
"""

from __future__ import annotations

import struct
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import lmdb
import msgpack

from mosaic.protocol.records import (
    ChunkLocation,
    HaveRecord,
    LogEntry,
    ManifestRecord,
    entry_from_wire,
    entry_to_wire,
)

from ..store.home import Home
from ..store.index import Index
from ..store.placements import distinct_chunks
from ..store.records import ChunkRecord, Manifest, PackRecord
from .namelog import Views, names_waiting_for, show
from .synclog import append_local, prefixed_items, prefixed_keys

_WANT = struct.Struct("<I")
_EXPIRED = b"expired:"


# ---- this node's backend IDs (per index, re-read when config.toml changes) ----------
@dataclass(frozen=True)
class _BackendIds:
    mtime: float  # of config.toml (-1: none)
    id_of: dict[str, str]  # backend name -> backend ID
    name_of: dict[str, str]  # backend ID -> backend name


_backend_ids_of: weakref.WeakKeyDictionary[Index, _BackendIds] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _backend_ids(index: Index) -> _BackendIds:
    """This node's backend names and IDs from config.toml (re-read when it changes)."""
    home = Home(Path(index.env.path()).parent)
    try:
        mtime = home.config_path.stat().st_mtime
    except OSError:
        mtime = -1.0
    with _lock:
        known = _backend_ids_of.get(index)
    if known is not None and known.mtime == mtime:
        return known
    id_of: dict[str, str] = {}
    if mtime >= 0:
        for b in home.read_config().backends:
            bid = b.options.get("backend_id")
            if isinstance(bid, str) and bid:
                id_of[b.name] = bid
    known = _BackendIds(mtime, id_of, {v: k for k, v in id_of.items()})
    with _lock:
        _backend_ids_of[index] = known
    return known


# ---- this node's files -----------------------------------------------------------
def manifest_record(index: Index, txn: lmdb.Transaction, m: Manifest) -> ManifestRecord:
    """A manifest with location hints for every chunk whose pack is on a backend."""
    locs = []
    for cid, r, p in distinct_chunks(index, txn, m):
        if r is None:
            continue
        ids = _hint_ids(index, p.locations) if p else ()
        if ids:  # a backend without an ID (no marker) cannot be told apart: no hint
            locs.append(ChunkLocation(cid, r.pack_id, r.offset, r.stored_len, ids))
    return ManifestRecord(m.file_id, m.size, m.created_ns, m.chunks, tuple(locs))


def _hint_ids(index: Index, names: Sequence[str]) -> tuple[str, ...]:
    id_of = _backend_ids(index).id_of
    return tuple(sorted({id_of[n] for n in names if n in id_of}))


def log_manifest(index: Index, txn: lmdb.Transaction, m: Manifest) -> None:
    """Log a manifest added here (called by Index.add_manifest when enabled)."""
    append_local(index, txn, manifest_record(index, txn, m))
    log_have(index, txn, m.file_id, True)


def log_all_manifests(index: Index, txn: lmdb.Transaction) -> int:
    """Log every manifest of the index (when replication is enabled); returns how many."""
    n = 0
    for fid in list(index.iter_manifest_ids(txn)):
        m = index.get_manifest(fid, txn)
        assert m is not None
        log_manifest(index, txn, m)
        n += 1
    return n


def log_have(index: Index, txn: lmdb.Transaction, fid: bytes, complete: bool) -> None:
    """Tell peers that this node holds a file complete (or no longer does)."""
    origin = index.repl_origin
    assert origin is not None
    txn.put(fid + origin, b"\x01" if complete else b"\x00", db=index.db["have"])
    append_local(index, txn, HaveRecord(fid, complete))


def holders(index: Index, fid: bytes) -> dict[bytes, bool]:
    """{node ID: complete} for every node known to hold (or to have dropped) a file."""
    with index.read() as txn:
        return {k[32:]: v == b"\x01" for k, v in prefixed_items(txn, index.db["have"], fid)}


# ---- peers' files ----------------------------------------------------------------
def apply_have(index: Index, txn: lmdb.Transaction, rec: HaveRecord, origin: bytes) -> None:
    """Record that `origin` holds a file (or no longer does); a file waiting for chunks that
    expired is wanted again once a node holds it."""
    txn.put(rec.file_id + origin, b"\x01" if rec.complete else b"\x00", db=index.db["have"])
    if rec.complete:
        _rewant_file(index, txn, rec.file_id, origin)


def apply_manifest(index: Index, txn: lmdb.Transaction, rec: ManifestRecord, origin: bytes,
                   views: Views | None = None) -> None:
    """Add a peer's manifest: at once if its chunks are here (or on a backend of ours, by
    its location hints); else it waits and its missing chunks are wanted from peers."""
    if txn.get(rec.file_id, db=index.db["manifests"]) is not None:
        return
    locs = {loc.chunk_id: loc for loc in rec.locations}
    missing = False
    lengths = dict(rec.chunks)
    name_of = _backend_ids(index).name_of if locs else {}
    for cid, n in rec.chunks:
        if index.get_chunk(cid, txn) is not None:
            continue
        loc = locs.get(cid)
        mine = sorted({name_of[b] for b in loc.backends if b in name_of}) if loc is not None else []
        if loc is not None and mine:  # a backend of ours, the very same store (same backend ID)
            prev = index.get_pack(loc.pack_id, txn)
            if prev is None:
                index.put_pack(txn, loc.pack_id, PackRecord.hinted(mine))
            elif not set(mine) <= set(prev.locations):
                index.put_pack(txn, loc.pack_id, prev.adding(*mine))
            index.put_chunk(txn, cid, ChunkRecord(loc.pack_id, loc.offset, loc.length, lengths[cid], 0),
                            overwrite=False, verified=False)
            continue
        if txn.get(cid, db=index.db["wanted"]) is None:
            txn.put(cid, _WANT.pack(n) + origin, db=index.db["wanted"])
        txn.put(cid + rec.file_id, b"", db=index.db["wantedby"])
        missing = True
    if missing:
        txn.put(rec.file_id, msgpack.packb(entry_to_wire(LogEntry(1, rec)), use_bin_type=True),
                db=index.db["waiting"])
        return
    _complete(index, txn, rec, views)


def _complete(index: Index, txn: lmdb.Transaction, rec: ManifestRecord,
              views: Views | None = None) -> None:
    """Add a manifest whose chunks are all here, and show the names waiting for it (now, or
    by adding the changes to `views` for the caller to apply in one go)."""
    origin = index.repl_origin
    index.repl_origin = None  # not a local write: do not log the manifest again
    try:
        index.add_manifest(txn, Manifest(rec.file_id, rec.size, rec.created_ns, rec.chunks),
                           verified=False)
    finally:
        index.repl_origin = origin
    if origin is not None:
        log_have(index, txn, rec.file_id, True)
    txn.delete(rec.file_id, db=index.db["waiting"])
    changes = names_waiting_for(index, txn, rec.file_id)
    if views is not None:
        views += changes
    elif changes:
        index.set_names_view(txn, changes)


def _waiting(index: Index, txn: lmdb.Transaction, fid: bytes) -> ManifestRecord | None:
    v = txn.get(fid, db=index.db["waiting"])
    if v is None:
        return None
    rec = entry_from_wire(msgpack.unpackb(v, raw=False, use_list=False)).record
    assert isinstance(rec, ManifestRecord)
    return rec


def chunks_arrived(index: Index, txn: lmdb.Transaction, cids: set[bytes]) -> int:
    """After fetched chunks got records: complete every waiting manifest that is now whole."""
    candidates: set[bytes] = set()
    for c in cids:
        txn.delete(c, db=index.db["wanted"])
        for fid in prefixed_keys(txn, index.db["wantedby"], c):
            txn.delete(c + fid, db=index.db["wantedby"])
            candidates.add(fid)
    done = 0
    views: Views = []  # one update of the name directory for all
    for fid in candidates:
        rec = _waiting(index, txn, fid)
        if rec is not None and all(index.get_chunk(c, txn) is not None for c, _ in rec.chunks):
            _complete(index, txn, rec, views)
            done += 1
    show(index, txn, views)
    return done


# ---- the wanted chunks -----------------------------------------------------------
def wanted_chunks(index: Index, limit: int = 4096, *, after: bytes = b"",
                  skip: set[bytes] | frozenset[bytes] = frozenset(), origin_share: int = 0,
                  scan: int = 0) -> tuple[list[bytes], bytes]:
    """Up to `limit` chunk IDs to fetch from peers, and the cursor to pass as `after` next.

    The queue rotates: the scan starts after `after` and wraps around, so entries that
    no peer can serve do not hold back the ones behind them. IDs in `skip` (asked
    already, or backing off) are passed over. With `origin_share`, at most that many
    IDs come from the manifests of one origin on a first pass; the rest of the batch
    is filled on a second pass. At most `scan` entries are read (default 16 x limit).
    """
    scan = scan or 16 * limit
    picked: list[bytes] = []
    spare: list[bytes] = []
    per_origin: dict[bytes, int] = {}
    last = after
    with index.read() as txn:
        for k, v in _rotate(txn, index.db["wanted"], after, scan):
            last = k
            if k in skip:
                continue
            o = bytes(v[4:36])
            if origin_share and per_origin.get(o, 0) >= origin_share:
                if len(spare) < limit:
                    spare.append(k)
                continue
            per_origin[o] = per_origin.get(o, 0) + 1
            picked.append(k)
            if len(picked) >= limit:
                break
    picked += spare[: limit - len(picked)]
    return picked, last


def _rotate(txn: lmdb.Transaction, db: lmdb._Database, after: bytes, most: int
            ) -> Iterator[tuple[bytes, bytes]]:
    """Up to `most` (key, value) pairs of `db` from just after `after`, wrapping around once."""
    cur = txn.cursor(db=db)
    n = 0
    first: bytes | None = None
    ok = cur.set_range(after) if after else cur.first()
    if ok and after and bytes(cur.key()) == after:
        ok = cur.next()
    while n < most:
        if not ok:
            ok = cur.first()  # wrap around
            if not ok:
                return
        k = bytes(cur.key())
        if first is None:
            first = k
        elif k == first:
            return  # went all the way round
        yield k, bytes(cur.value())
        n += 1
        ok = cur.next()


def wanted_count(index: Index) -> int:
    """How many chunks are wanted."""
    return index.count("wanted")


def expire_wanted(index: Index, cids: Sequence[bytes]) -> int:
    """Stop wanting chunks of files that no other node holds (a node that left, a manifest
    nobody has the chunks of). Their manifests stay waiting; a Have record of a holder
    wants them again (see `apply_have`). Returns how many entries expired."""
    me = index.repl_origin
    n = 0
    with index.write() as txn:
        for cid in cids:
            if txn.get(cid, db=index.db["wanted"]) is None:
                continue
            fids = prefixed_keys(txn, index.db["wantedby"], cid)
            if any(_held_elsewhere(index, txn, f, me) for f in fids):
                continue
            txn.delete(cid, db=index.db["wanted"])
            for f in fids:
                txn.delete(cid + f, db=index.db["wantedby"])
                txn.put(_EXPIRED + f, b"", db=index.db["meta"])
            n += 1
    return n


def _held_elsewhere(index: Index, txn: lmdb.Transaction, fid: bytes, me: bytes | None) -> bool:
    return any(v == b"\x01" and k[32:] != me
               for k, v in prefixed_items(txn, index.db["have"], fid))


def _rewant_file(index: Index, txn: lmdb.Transaction, fid: bytes, origin: bytes) -> None:
    """A node holds a waiting file whose wanted chunks expired: want them again."""
    if not txn.delete(_EXPIRED + fid, db=index.db["meta"]):
        return
    rec = _waiting(index, txn, fid)
    if rec is None:
        return
    for cid, n in rec.chunks:
        if index.get_chunk(cid, txn) is None and txn.get(cid, db=index.db["wanted"]) is None:
            txn.put(cid, _WANT.pack(n) + origin, db=index.db["wanted"])
            txn.put(cid + fid, b"", db=index.db["wantedby"])


def hinted_only(index: Index, txn: lmdb.Transaction, cid: bytes) -> bool:
    """True if this node knows the chunk only from a location hint (a pack sealed elsewhere,
    not in the local store)."""
    r = index.get_chunk(cid, txn)
    if r is None:
        return False
    p = index.get_pack(r.pack_id, txn)
    return p is not None and not p.local and p.owner == ""


def want_again(index: Index, cids: Sequence[bytes]) -> int:
    """Chunks known only by a location hint whose backend read failed: want them from peers
    (`fetch.store_objects` then replaces the hinted record). Returns how many are wanted."""
    n = 0
    with index.write() as txn:
        for cid in cids:
            if not hinted_only(index, txn, cid) or txn.get(cid, db=index.db["wanted"]):
                continue
            r = index.get_chunk(cid, txn)
            assert r is not None
            txn.put(cid, _WANT.pack(r.plain_len) + bytes(32), db=index.db["wanted"])
            n += 1
    return n
