"""Replication state in LMDB: the per-origin sequence log, versioned names, and `SyncStore`.

Replication costs nothing until a node gets its first peer: `enable()` then
records the node's ID, writes every existing manifest and name into the log as
this node's own writes, and from then on every local change appends to the log
in the same transaction that makes it. Tables:

    synclog    origin(32) + seq (u64 BE) -> msgpack([sig, entry body])  (protocol/records.py)
    syncvec    origin(32)                -> highest contiguous seq held (u64 LE)
    namestate  BLAKE3(name)(32)          -> encode_name_state(...)       (protocol/names.py)
    waiting    file_id(32)               -> msgpack(ManifestRecord wire)  manifests whose chunks are not here yet
    wanted     chunk_id(32)              -> u32 plain length + origin(32)  chunks to fetch from peers
    have       file_id(32) + origin(32)  -> b"\x01" complete / b"\x00" not   which nodes hold which files
    wantedby   chunk_id(32) + file_id(32) -> b""   which waiting manifests a wanted chunk completes
    namewait   file_id(32) + BLAKE3(name) -> name (utf-8)   names to show once that file is present
    meta       b"head:" + origin          -> chain(32) + sig(64)   where the origin's signed log stands
               b"member:" + node ID       -> Ed25519 public key (32)   nodes whose logs are accepted
               b"logformat"               -> b"3"   signed logs, hashed name keys

Every key built from a name is a BLAKE3 hash, so no name can reach LMDB's 511-byte key
limit here. Every entry is signed (protocol/signing.py): this node's own entries with
its identity key (HOME/identity.key, loaded once per process), and a peer's page is
applied only after `admit_page` checked it against the origin's member key. A member
is a node some accepted origin vouched for with a MemberRecord; this node vouches for
each peer it was told to trust (`peer add`) when it first meets it (`vouch`).

Location hints name backends by their backend ID (the identity marker of `backend
add`): a hint is used only for a backend this node has under the same ID; otherwise
the chunk is wanted from peers.

The name directory (namestore.py) stays the materialised view: for each name
state, its `visible()` names point at their files, as soon as those files are
present.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import lmdb
import msgpack
from blake3 import blake3

from mosaic.protocol.names import (
    NameState,
    closing_write,
    conflict_base,
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
    MemberRecord,
    NameRecord,
    Record,
    entry_from_wire,
    entry_to_wire,
    signed_entry_from_wire,
    signed_entry_to_wire,
)
from mosaic.protocol.signing import (
    GENESIS,
    LogHead,
    Rejection,
    admit_page,
    cert_node_key,
    entry_body,
    sign_entry,
)

from ..errors import StorageError
from ..store.home import Home
from ..store.index import Index
from ..store.records import BE64, U64, ChunkRecord, Manifest, PackRecord

if TYPE_CHECKING:  # the identity (cryptography, ~40 ms to load) is loaded when a node signs
    from .identity import Identity

log = logging.getLogger("mosaic.replica")

LOG_FORMAT = b"3"
_HEAD = b"head:"
_MEMBER = b"member:"
_WANT = struct.Struct("<I")


# ---- this node's signer and backend IDs (per index, loaded once) -------------
@dataclass
class _Context:
    root: Path
    identity: Identity | None = None
    config_mtime: float = -1.0
    id_of: dict[str, str] | None = None  # backend name -> backend ID
    name_of: dict[str, str] | None = None  # backend ID -> backend name


_contexts: weakref.WeakKeyDictionary[Index, _Context] = weakref.WeakKeyDictionary()
_ctx_lock = threading.Lock()


def _ctx(index: Index) -> _Context:
    with _ctx_lock:
        c = _contexts.get(index)
        if c is None:
            c = _contexts[index] = _Context(Path(index.env.path()).parent)
        return c


def use_identity(index: Index, identity: Identity) -> None:
    """Sign this index's log entries with `identity` (else it is loaded from HOME on first use)."""
    _ctx(index).identity = identity


def _signer(index: Index) -> Identity:
    c = _ctx(index)
    if c.identity is None:
        from .identity import Identity
        c.identity = Identity.load_or_create(c.root)
    if index.repl_origin is not None and c.identity.node_id != index.repl_origin:
        raise StorageError("this node's identity.key is not the one its log was written with")
    return c.identity


def _backend_ids(index: Index) -> tuple[dict[str, str], dict[str, str]]:
    """(name -> backend ID, backend ID -> name) from config.toml (re-read when it changes)."""
    c = _ctx(index)
    home = Home(c.root)
    try:
        mtime = home.config_path.stat().st_mtime
    except OSError:
        mtime = -1.0
    if c.id_of is None or mtime != c.config_mtime:
        id_of: dict[str, str] = {}
        if mtime >= 0:
            for b in home.read_config().backends:
                bid = b.options.get("backend_id")
                if isinstance(bid, str) and bid:
                    id_of[b.name] = bid
        c.id_of, c.name_of, c.config_mtime = id_of, {v: k for k, v in id_of.items()}, mtime
    assert c.id_of is not None and c.name_of is not None
    return c.id_of, c.name_of


def name_key(name: str) -> bytes:
    """The LMDB key for a name in the replication tables: BLAKE3 of its UTF-8 (32 bytes)."""
    return blake3(name.encode("utf-8")).digest()


def enable(index: Index, node_id: bytes) -> int:
    """Start logging: record the node ID and log every existing manifest and name."""
    if index.repl_origin is not None:
        if index.repl_origin != node_id:
            raise ValueError("this node's index was replicated under another node ID")
        return 0
    n = 0
    install(index)
    ident = _signer(index)
    if ident.node_id != node_id:
        raise ValueError("enable: node ID is not this home's identity")
    with index.write() as txn:
        txn.put(b"node_id", node_id, db=index.db["meta"])
        txn.put(b"logformat", LOG_FORMAT, db=index.db["meta"])
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
            txn.put(name_key(name), encode_name_state(merge_name(None, rec)),
                    db=index.db["namestate"])
            txn.put(b"last_hlc", U64.pack(rec.version.hlc), db=index.db["meta"])
            _append_local(index, txn, rec)
            n += 1
    return n


# ---- the log ---------------------------------------------------------------
def _held(index: Index, txn: lmdb.Transaction, origin: bytes) -> int:
    v = txn.get(origin, db=index.db["syncvec"])
    return U64.unpack(v)[0] if v else 0


def _head(index: Index, txn: lmdb.Transaction, origin: bytes) -> LogHead:
    v = txn.get(_HEAD + origin, db=index.db["meta"])
    return LogHead.from_bytes(v) if v is not None else GENESIS


_SIGNED_PREFIX = b"\x92\xc4\x40"  # msgpack: array of 2, then bin8 of 64 bytes (the signature)


def _append(index: Index, txn: lmdb.Transaction, origin: bytes, entry: LogEntry,
            head: LogHead | None, body: bytes | None = None) -> None:
    """Store a signed entry (as msgpack [sig, body]); `head` None: the caller stores it."""
    if body is None:
        value = msgpack.packb(signed_entry_to_wire(entry), use_bin_type=True)
    else:
        value = _SIGNED_PREFIX + entry.sig + body
    txn.put(origin + BE64.pack(entry.seq), value, db=index.db["synclog"])
    txn.put(origin, U64.pack(entry.seq), db=index.db["syncvec"])
    if head is not None:
        txn.put(_HEAD + origin, head.to_bytes(), db=index.db["meta"])


def _append_local(index: Index, txn: lmdb.Transaction, record: Record) -> None:
    origin = index.repl_origin
    assert origin is not None
    entry, head = sign_entry(_signer(index).sign, origin, _head(index, txn, origin),
                             _held(index, txn, origin) + 1, record)
    _append(index, txn, origin, entry, head)


# ---- members ----------------------------------------------------------------
def member_key(index: Index, node_id: bytes, txn: lmdb.Transaction | None = None) -> bytes | None:
    """The public key of a member node (whose entries this node accepts), or None."""
    t = txn or index.read()
    v = t.get(_MEMBER + node_id, db=index.db["meta"])
    return bytes(v) if v is not None else None


def members(index: Index) -> dict[bytes, bytes]:
    """{node ID: public key} of every member this node knows."""
    with index.read() as txn:
        return {bytes(k[len(_MEMBER):]): bytes(v) for k, v in _prefixed_items(
            txn, index.db["meta"], _MEMBER)}


def _learn_member(index: Index, txn: lmdb.Transaction, cert: bytes) -> bytes:
    node_id, key = cert_node_key(cert)
    if txn.get(_MEMBER + node_id, db=index.db["meta"]) is None:
        txn.put(_MEMBER + node_id, key, db=index.db["meta"])
    return node_id


def vouch(index: Index, cert: bytes) -> bool:
    """Vouch for a trusted peer met with this certificate: log a MemberRecord (signed by this
    node) unless the node is a member already. True if one was written."""
    node_id, _ = cert_node_key(cert)
    if node_id == index.repl_origin:
        raise ValueError("a node does not vouch for itself")
    if member_key(index, node_id) is not None:
        return False  # the common case (every reconnect): no write transaction
    with index.write() as txn:
        if txn.get(_MEMBER + node_id, db=index.db["meta"]) is not None:
            return False
        _learn_member(index, txn, cert)
        _append_local(index, txn, MemberRecord(cert))
        return True


# ---- signed logs and hashed name keys (format 3) ------------------------------
def upgrade(index: Index) -> bool:
    """Bring a log of an older format to format 3, once: this node's own entries are signed
    again (its chain starts over), other origins' entries are dropped (their nodes sign them;
    they come back by sync and are applied idempotently), name keys become BLAKE3 hashes."""
    if index.repl_origin is None:
        return False
    with index.read() as txn:
        if txn.get(b"logformat", db=index.db["meta"]) == LOG_FORMAT:
            return False
    origin = index.repl_origin
    sign = _signer(index).sign
    meta = index.db["meta"]
    with index.write() as txn:
        if txn.get(b"logformat", db=meta) == LOG_FORMAT:
            return False
        head = GENESIS
        cur = txn.cursor(db=index.db["synclog"])
        rows = [(bytes(k), bytes(v)) for k, v in cur.iternext()]
        for k, v in rows:
            if k[:32] != origin:
                txn.delete(k, db=index.db["synclog"])
                continue
            seq, rec, _ = entry_from_wire(msgpack.unpackb(v, raw=False, use_list=False))
            entry, head = sign_entry(sign, origin, head, seq, rec)
            txn.put(k, msgpack.packb(signed_entry_to_wire(entry), use_bin_type=True),
                    db=index.db["synclog"])
        txn.put(_HEAD + origin, head.to_bytes(), db=meta)
        for k in [bytes(k) for k in txn.cursor(db=index.db["syncvec"]).iternext(values=False)]:
            if k != origin:
                txn.delete(k, db=index.db["syncvec"])
        states = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=index.db["namestate"]).iternext()]
        for k, v in states:
            txn.delete(k, db=index.db["namestate"])
            txn.put(name_key(k.decode("utf-8")), v, db=index.db["namestate"])
        waits = [bytes(k) for k in txn.cursor(db=index.db["namewait"]).iternext(values=False)]
        for k in waits:
            txn.delete(k, db=index.db["namewait"])
            name = k[32:].decode("utf-8")
            txn.put(k[:32] + name_key(name), name.encode("utf-8"), db=index.db["namewait"])
        txn.put(b"logformat", LOG_FORMAT, db=meta)
    log.info("replication log upgraded to format %s (signed entries)", LOG_FORMAT.decode())
    return True


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
        ids = _hint_ids(index, p.locations) if p else ()
        if ids:  # a backend without an ID (no marker) cannot be told apart: no hint
            locs.append(ChunkLocation(cid, r.pack_id, r.offset, r.stored_len, ids))
    return ManifestRecord(m.file_id, m.size, m.created_ns, m.chunks, tuple(locs))


def _hint_ids(index: Index, names: Sequence[str]) -> tuple[str, ...]:
    id_of, _ = _backend_ids(index)
    return tuple(sorted({id_of[n] for n in names if n in id_of}))


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


def name_state(index: Index, name: str, txn: lmdb.Transaction | None = None) -> NameState | None:
    """The replicated state of a name (its versions), or None if replication has none."""
    return _state(index, txn or index.read(), name)


def _state(index: Index, txn: lmdb.Transaction, name: str) -> NameState | None:
    v = txn.get(name_key(name), db=index.db["namestate"])
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


def _merge(index: Index, txn: lmdb.Transaction, state: NameState | None, rec: NameRecord,
           views: list[tuple[str, bytes | None]] | None = None
           ) -> list[tuple[str, bytes | None, bytes | None]]:
    """Fold a write into the name's state and update the visible names; returns view changes
    (none if they were added to `views`, for the caller to apply in one go)."""
    new = merge_name(state, rec)
    txn.put(b"last_hlc", U64.pack(max(_last_hlc(index, txn), rec.version.hlc)), db=index.db["meta"])
    if new is state:
        return []
    txn.put(name_key(rec.name), encode_name_state(new), db=index.db["namestate"])
    before = state.visible() if state is not None else {}
    after = {}
    for n, f in new.visible().items():
        if txn.get(f, db=index.db["manifests"]) is not None:
            after[n] = f
        else:  # shown once the file arrives (see _names_waiting_for)
            txn.put(f + name_key(rec.name), rec.name.encode("utf-8"), db=index.db["namewait"])
    # the name directory drops what is already so (NameStore.update): no lookup per name here
    changes: list[tuple[str, bytes | None]] = [(n, None) for n in before if n not in after]
    changes += after.items()
    if views is not None:
        views += changes
        return []
    return index.set_names_view(txn, changes) if changes else []


def _show(index: Index, txn: lmdb.Transaction, views: list[tuple[str, bytes | None]]) -> None:
    """Apply collected name directory changes at once (the last change of a name wins)."""
    if views:
        index.set_names_view(txn, list(dict(views).items()))


def _close_conflict(index: Index, txn: lmdb.Transaction, name: str) -> bool:
    """If `name` is shown as a conflict copy (and is no live name of its own), close that
    losing head with a logged write on its base name; True if it did."""
    own = _state(index, txn, name)
    base = conflict_base(name)
    state = _state(index, txn, base) if base is not None and (own is None or own.file_id is None) else None
    rec = None if state is None else closing_write(
        state, name, origin=index.repl_origin, last_hlc=_last_hlc(index, txn),
        now_ms=time.time_ns() // 1_000_000)
    if rec is None:
        return False
    _merge(index, txn, state, rec)
    _append_local(index, txn, rec)
    return True


def write_names(index: Index, txn: lmdb.Transaction, changes: list[tuple[str, bytes | None]]
                ) -> list[tuple[str, bytes | None, bytes | None]]:
    """Local name changes under replication: versioned, merged, logged. Removing (or
    replacing) a conflict copy closes that conflict; its name then holds nothing (or the
    new file, as a name of its own)."""
    out = []
    for name, fid in changes:
        old = index.resolve_name(name, txn)
        if old == fid:
            continue
        if not (_close_conflict(index, txn, name) and fid is None):
            _write_name(index, txn, name, fid)
        out.append((name, old, fid))
    return out


# ---- applying what peers send ---------------------------------------------
def _apply_manifest(index: Index, txn: lmdb.Transaction, rec: ManifestRecord, origin: bytes,
                    views: list[tuple[str, bytes | None]] | None = None) -> None:
    if txn.get(rec.file_id, db=index.db["manifests"]) is not None:
        return
    locs = {loc.chunk_id: loc for loc in rec.locations}
    missing = False
    lengths = dict(rec.chunks)
    _, name_of = _backend_ids(index) if locs else ({}, {})
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
              views: list[tuple[str, bytes | None]] | None = None) -> None:
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
    changes = _names_waiting_for(index, txn, rec.file_id)
    if views is not None:
        views += changes
    elif changes:
        index.set_names_view(txn, changes)


def _prefixed_items(txn: lmdb.Transaction, db: lmdb._Database, prefix: bytes
                    ) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) for keys starting with `prefix`."""
    cur = txn.cursor(db=db)
    if cur.set_range(prefix):
        for k, v in cur.iternext():
            if not k.startswith(prefix):
                break
            yield bytes(k), bytes(v)


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


def _names_waiting_for(index: Index, txn: lmdb.Transaction, fid: bytes
                       ) -> list[tuple[str, bytes | None]]:
    """The view changes that show the names which were waiting for this file."""
    changes: list[tuple[str, bytes | None]] = []
    db = index.db["namewait"]
    for key, raw in list(_prefixed_items(txn, db, fid)):
        txn.delete(key, db=db)
        st = _state(index, txn, raw.decode("utf-8"))
        if st is None:
            continue
        changes += [(n, f) for n, f in st.visible().items() if f == fid]
    return changes


def chunks_arrived(index: Index, txn: lmdb.Transaction, cids: set[bytes]) -> int:
    """After fetched chunks got records: complete every waiting manifest that is now whole."""
    candidates: set[bytes] = set()
    for c in cids:
        txn.delete(c, db=index.db["wanted"])
        for fid in _prefixed(txn, index.db["wantedby"], c):
            txn.delete(c + fid, db=index.db["wantedby"])
            candidates.add(fid)
    done = 0
    views: list[tuple[str, bytes | None]] = []  # one update of the name directory for all
    for fid in candidates:
        v = txn.get(fid, db=index.db["waiting"])
        if v is None:
            continue
        rec = entry_from_wire(msgpack.unpackb(v, raw=False, use_list=False)).record
        assert isinstance(rec, ManifestRecord)
        if all(index.get_chunk(c, txn) is not None for c, _ in rec.chunks):
            _complete(index, txn, rec, views)
            done += 1
    _show(index, txn, views)
    return done


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
    wants them again (see `_rewant_file`). Returns how many entries expired."""
    me = index.repl_origin
    n = 0
    with index.write() as txn:
        for cid in cids:
            if txn.get(cid, db=index.db["wanted"]) is None:
                continue
            fids = _prefixed(txn, index.db["wantedby"], cid)
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
               for k, v in _prefixed_items(txn, index.db["have"], fid))


_EXPIRED = b"expired:"


def _rewant_file(index: Index, txn: lmdb.Transaction, fid: bytes, origin: bytes) -> None:
    """A node holds a waiting file whose wanted chunks expired: want them again."""
    if not txn.delete(_EXPIRED + fid, db=index.db["meta"]):
        return
    v = txn.get(fid, db=index.db["waiting"])
    if v is None:
        return
    rec = entry_from_wire(msgpack.unpackb(v, raw=False, use_list=False)).record
    assert isinstance(rec, ManifestRecord)
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
        """Signed entries of `origin` with seq > after_seq, in order."""
        out: list[LogEntry] = []
        with self.index.read() as txn:
            cur = txn.cursor(db=self.index.db["synclog"])
            if not cur.set_range(origin + BE64.pack(after_seq + 1)):
                return out
            for k, v in cur.iternext():
                if k[:32] != origin or len(out) >= limit:
                    break
                out.append(signed_entry_from_wire(msgpack.unpackb(v, raw=False, use_list=False)))
        return out

    def apply(self, origin: bytes, entries: Sequence[LogEntry]) -> Rejection | None:
        """Admit (signing.admit_page), append what is new under the original origin, and fold
        it in; idempotent. An entry that cannot be applied is refused with the rest of the
        page (the entries before it are kept), never raised: one bad entry of a peer does
        not end the session."""
        idx = self.index
        now_ms = time.time_ns() // 1_000_000
        with idx.write() as txn:
            held = _held(idx, txn, origin)
            fresh = [e for e in entries if e.seq > held]
            if not fresh:
                return None
            if fresh[0].seq != held + 1:
                raise ValueError(f"gap in the log of {origin.hex()[:16]}: hold {held}, got {fresh[0].seq}")
            bodies = [entry_body(e) for e in fresh]
            heads, rejection = admit_page(idx.repl_origin or b"", origin, fresh,
                                          _head(idx, txn, origin),
                                          lambda o: member_key(idx, o, txn), now_ms, bodies)
            todo = list(zip(fresh, heads, bodies, strict=False))
            if not todo:
                return rejection
            try:
                with idx.env.begin(write=True, parent=txn) as child:
                    views: list[tuple[str, bytes | None]] = []  # one directory update per page
                    for e, _, body in todo:
                        self._apply_one(child, origin, e, body, views)
                    _show(idx, child, views)
                    child.put(_HEAD + origin, todo[-1][1].to_bytes(), db=idx.db["meta"])
                return rejection
            except Exception as e:  # find the entry that fails; keep those before it
                first_error: tuple[int, Exception] = (todo[0][0].seq, e)
            for e, h, body in todo:
                try:
                    with idx.env.begin(write=True, parent=txn) as child:
                        self._apply_one(child, origin, e, body)
                        child.put(_HEAD + origin, h.to_bytes(), db=idx.db["meta"])
                except Exception as err:
                    first_error = (e.seq, err)
                    break
            seq, err = first_error
            log.warning("refused entry %d of %s: cannot apply it (%s: %s)", seq,
                        origin.hex()[:16], type(err).__name__, str(err)[:200])
            return Rejection(seq, f"cannot apply: {type(err).__name__}")

    def _apply_one(self, txn: lmdb.Transaction, origin: bytes, e: LogEntry, body: bytes,
                   views: list[tuple[str, bytes | None]] | None = None) -> None:
        idx = self.index
        _append(idx, txn, origin, e, None, body)
        rec = e.record
        if isinstance(rec, ManifestRecord):
            _apply_manifest(idx, txn, rec, origin, views)
        elif isinstance(rec, HaveRecord):
            txn.put(rec.file_id + origin, b"\x01" if rec.complete else b"\x00", db=idx.db["have"])
            if rec.complete:
                _rewant_file(idx, txn, rec.file_id, origin)
        elif isinstance(rec, MemberRecord):
            _learn_member(idx, txn, rec.cert)
        else:
            _merge(idx, txn, _state(idx, txn, rec.name), rec, views)


def install(index: Index) -> None:
    """Make this module the index's change log: name writes become versioned, logged records
    (and bring a log of an older format up to date)."""
    import sys
    index.change_log = sys.modules[__name__]
    upgrade(index)
