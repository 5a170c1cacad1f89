"""The signed replication log in LMDB: each origin's entries, where its chain stands, the
member keys entries are checked against, and the identity this node signs its own with.

    synclog    origin(32) + seq (u64 BE) -> msgpack([sig, entry body])  (protocol/records.py)
    syncvec    origin(32)                -> highest contiguous seq held (u64 LE)
    meta       b"head:" + origin          -> chain(32) + sig(64)   where the origin's signed log stands
               b"member:" + node ID       -> Ed25519 public key (32)   nodes whose logs are accepted
               b"logformat"               -> b"3"   signed logs, hashed name keys

Every entry is signed (protocol/signing.py): this node's own entries with its identity
key (HOME/identity.key, loaded once per process), and a peer's page is applied only after
`admit_page` checked it against the origin's member key (syncstore.py). A member is a node
some accepted origin vouched for with a MemberRecord; this node vouches for each peer it
was told to trust (`peer add`) when it first meets it (`vouch`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import lmdb
import msgpack

from mosaic.protocol.records import (
    LogEntry,
    MemberRecord,
    Record,
    entry_from_wire,
    signed_entry_to_wire,
)
from mosaic.protocol.signing import GENESIS, LogHead, cert_node_key, sign_entry

from ..errors import StorageError
from ..store.index import Index
from ..store.records import BE64, U64

if TYPE_CHECKING:  # the identity (cryptography, ~40 ms to load) is loaded when a node signs
    from .identity import Identity

LOG_FORMAT = b"3"
_HEAD = b"head:"
_MEMBER = b"member:"
_SIGNED_PREFIX = b"\x92\xc4\x40"  # msgpack: array of 2, then bin8 of 64 bytes (the signature)

# ---- this node's signer (per index, loaded once) ------------------------------------
_identities: weakref.WeakKeyDictionary[Index, Identity] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def use_identity(index: Index, identity: Identity) -> None:
    """Sign this index's log entries with `identity` (else it is loaded from HOME on first use)."""
    with _lock:
        _identities[index] = identity


def signer(index: Index) -> Identity:
    """The identity this node signs its entries with (loaded from HOME on first use)."""
    with _lock:
        ident = _identities.get(index)
    if ident is None:
        from .identity import Identity
        loaded = Identity.load_or_create(Path(index.env.path()).parent)
        with _lock:
            ident = _identities.setdefault(index, loaded)
    if index.repl_origin is not None and ident.node_id != index.repl_origin:
        raise StorageError("this node's identity.key is not the one its log was written with")
    return ident


# ---- the log ---------------------------------------------------------------------
def held(index: Index, txn: lmdb.Transaction, origin: bytes) -> int:
    """The highest contiguous seq of `origin` held here (0: none)."""
    v = txn.get(origin, db=index.db["syncvec"])
    return U64.unpack(v)[0] if v else 0


def head(index: Index, txn: lmdb.Transaction, origin: bytes) -> LogHead:
    """Where `origin`'s signed log stands here (GENESIS before its first entry)."""
    v = txn.get(_HEAD + origin, db=index.db["meta"])
    return LogHead.from_bytes(v) if v is not None else GENESIS


def set_head(index: Index, txn: lmdb.Transaction, origin: bytes, new: LogHead) -> None:
    """Record where `origin`'s signed log stands now."""
    txn.put(_HEAD + origin, new.to_bytes(), db=index.db["meta"])


def append(index: Index, txn: lmdb.Transaction, origin: bytes, entry: LogEntry,
           new_head: LogHead | None, body: bytes | None = None) -> None:
    """Store a signed entry (as msgpack [sig, body]); `new_head` None: the caller stores it."""
    if body is None:
        value = msgpack.packb(signed_entry_to_wire(entry), use_bin_type=True)
    else:
        value = _SIGNED_PREFIX + entry.sig + body
    txn.put(origin + BE64.pack(entry.seq), value, db=index.db["synclog"])
    txn.put(origin, U64.pack(entry.seq), db=index.db["syncvec"])
    if new_head is not None:
        set_head(index, txn, origin, new_head)


def append_local(index: Index, txn: lmdb.Transaction, record: Record) -> None:
    """Sign `record` as this node's next entry and append it to its own log."""
    origin = index.repl_origin
    assert origin is not None
    entry, new_head = sign_entry(signer(index).sign, origin, head(index, txn, origin),
                                 held(index, txn, origin) + 1, record)
    append(index, txn, origin, entry, new_head)


def sign_again(index: Index, txn: lmdb.Transaction, sign: Callable[[bytes], bytes]) -> None:
    """Format 3 (signed logs): this node's own entries are signed again (its chain starts
    over); other origins' entries are dropped (their nodes sign them; they come back by
    sync and are applied idempotently)."""
    origin = index.repl_origin
    assert origin is not None
    log_db, vec_db = index.db["synclog"], index.db["syncvec"]
    new_head = GENESIS
    rows = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=log_db).iternext()]
    for k, v in rows:
        if k[:32] != origin:
            txn.delete(k, db=log_db)
            continue
        seq, rec, _ = entry_from_wire(msgpack.unpackb(v, raw=False, use_list=False))
        entry, new_head = sign_entry(sign, origin, new_head, seq, rec)
        txn.put(k, msgpack.packb(signed_entry_to_wire(entry), use_bin_type=True), db=log_db)
    set_head(index, txn, origin, new_head)
    for k in [bytes(k) for k in txn.cursor(db=vec_db).iternext(values=False)]:
        if k != origin:
            txn.delete(k, db=vec_db)


# ---- members ---------------------------------------------------------------------
def member_key(index: Index, node_id: bytes, txn: lmdb.Transaction | None = None) -> bytes | None:
    """The public key of a member node (whose entries this node accepts), or None."""
    t = txn or index.read()
    v = t.get(_MEMBER + node_id, db=index.db["meta"])
    return bytes(v) if v is not None else None


def members(index: Index) -> dict[bytes, bytes]:
    """{node ID: public key} of every member this node knows."""
    with index.read() as txn:
        return {k[len(_MEMBER):]: v for k, v in prefixed_items(txn, index.db["meta"], _MEMBER)}


def learn_member(index: Index, txn: lmdb.Transaction, cert: bytes) -> bytes:
    """Accept the node of this certificate as a member (if it is not one); its node ID."""
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
        learn_member(index, txn, cert)
        append_local(index, txn, MemberRecord(cert))
        return True


# ---- prefix scans (the replication tables key by ID + ID) ---------------------------
def prefixed_items(txn: lmdb.Transaction, db: lmdb._Database, prefix: bytes
                   ) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) for keys starting with `prefix`."""
    cur = txn.cursor(db=db)
    if cur.set_range(prefix):
        for k, v in cur.iternext():
            if not k.startswith(prefix):
                break
            yield bytes(k), bytes(v)


def prefixed_keys(txn: lmdb.Transaction, db: lmdb._Database, prefix: bytes) -> list[bytes]:
    """Keys starting with `prefix`, with the prefix cut off."""
    cur = txn.cursor(db=db)
    out = []
    if cur.set_range(prefix):
        for k in cur.iternext(values=False):
            if not k.startswith(prefix):
                break
            out.append(bytes(k[len(prefix):]))
    return out
