"""Replication on an index: `install` and `enable` turn it on, `upgrade` brings an older log
to the current format, and `LmdbSyncStore` is the `protocol.sync.SyncStore` through which
sync sessions read this node's log and apply what peers send.

Replication costs nothing until a node gets its first peer: `enable()` then records the
node's ID, writes every existing manifest and name into the log as this node's own writes,
and from then on every local change appends to the log in the same transaction that makes
it (`CHANGE_LOG`, the index's change log). The tables are described where they are kept:
synclog.py (the signed log and its members), namelog.py (versioned names) and filelog.py
(manifests, holders, wanted chunks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import lmdb
import msgpack

from mosaic.protocol.records import (
    HaveRecord,
    LogEntry,
    ManifestRecord,
    MemberRecord,
    signed_entry_from_wire,
)
from mosaic.protocol.signing import Rejection, admit_page, entry_body

from ..store.index import Index
from ..store.records import BE64, U64
from . import filelog, namelog, synclog
from .synclog import LOG_FORMAT

log = logging.getLogger("mosaic.replica")


class _ChangeLog:
    """The index's change log (store/index.py `ChangeLog`): replication's hooks, called by
    the index in the writer's transaction."""

    log_manifest = staticmethod(filelog.log_manifest)
    log_have = staticmethod(filelog.log_have)
    write_names = staticmethod(namelog.write_names)
    want_again = staticmethod(filelog.want_again)


CHANGE_LOG = _ChangeLog()


def install(index: Index) -> None:
    """Make replication the index's change log: name writes become versioned, logged records
    (and bring a log of an older format up to date)."""
    index.change_log = CHANGE_LOG
    upgrade(index)


def enable(index: Index, node_id: bytes) -> int:
    """Start logging: record the node ID and log every existing manifest and name."""
    if index.repl_origin is not None:
        if index.repl_origin != node_id:
            raise ValueError("this node's index was replicated under another node ID")
        return 0
    install(index)
    if synclog.signer(index).node_id != node_id:
        raise ValueError("enable: node ID is not this home's identity")
    with index.write() as txn:
        txn.put(b"node_id", node_id, db=index.db["meta"])
        txn.put(b"logformat", LOG_FORMAT, db=index.db["meta"])
        index.repl_origin = node_id
        return filelog.log_all_manifests(index, txn) + namelog.log_all_names(index, txn)


def upgrade(index: Index) -> bool:
    """Bring a log of an older format to format 3 (signed logs, hashed name keys), once;
    True if it did (synclog.sign_again, namelog.hash_name_keys)."""
    if index.repl_origin is None:
        return False
    meta = index.db["meta"]
    with index.read() as txn:
        if txn.get(b"logformat", db=meta) == LOG_FORMAT:
            return False
    sign = synclog.signer(index).sign
    with index.write() as txn:
        if txn.get(b"logformat", db=meta) == LOG_FORMAT:
            return False
        synclog.sign_again(index, txn, sign)
        namelog.hash_name_keys(index, txn)
        txn.put(b"logformat", LOG_FORMAT, db=meta)
    log.info("replication log upgraded to format %s (signed entries)", LOG_FORMAT.decode())
    return True


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
            held = synclog.held(idx, txn, origin)
            fresh = [e for e in entries if e.seq > held]
            if not fresh:
                return None
            if fresh[0].seq != held + 1:
                raise ValueError(f"gap in the log of {origin.hex()[:16]}: hold {held}, got {fresh[0].seq}")
            bodies = [entry_body(e) for e in fresh]
            heads, rejection = admit_page(idx.repl_origin or b"", origin, fresh,
                                          synclog.head(idx, txn, origin),
                                          lambda o: synclog.member_key(idx, o, txn), now_ms, bodies)
            todo = list(zip(fresh, heads, bodies, strict=False))
            if not todo:
                return rejection
            try:
                with idx.env.begin(write=True, parent=txn) as child:
                    views: namelog.Views = []  # one directory update per page
                    for e, _, body in todo:
                        self._apply_one(child, origin, e, body, views)
                    namelog.show(idx, child, views)
                    synclog.set_head(idx, child, origin, todo[-1][1])
                return rejection
            except Exception as e:  # find the entry that fails; keep those before it
                first_error: tuple[int, Exception] = (todo[0][0].seq, e)
            for e, h, body in todo:
                try:
                    with idx.env.begin(write=True, parent=txn) as child:
                        self._apply_one(child, origin, e, body)
                        synclog.set_head(idx, child, origin, h)
                except Exception as err:
                    first_error = (e.seq, err)
                    break
            seq, err = first_error
            log.warning("refused entry %d of %s: cannot apply it (%s: %s)", seq,
                        origin.hex()[:16], type(err).__name__, str(err)[:200])
            return Rejection(seq, f"cannot apply: {type(err).__name__}")

    def _apply_one(self, txn: lmdb.Transaction, origin: bytes, e: LogEntry, body: bytes,
                   views: namelog.Views | None = None) -> None:
        idx = self.index
        synclog.append(idx, txn, origin, e, None, body)
        rec = e.record
        if isinstance(rec, ManifestRecord):
            filelog.apply_manifest(idx, txn, rec, origin, views)
        elif isinstance(rec, HaveRecord):
            filelog.apply_have(idx, txn, rec, origin)
        elif isinstance(rec, MemberRecord):
            synclog.learn_member(idx, txn, rec.cert)
        else:
            namelog.merge(idx, txn, namelog.name_state(idx, rec.name, txn), rec, views)
