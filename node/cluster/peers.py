"""Known peers: node ID -> address, when added, last seen, connection state, last error."""

from __future__ import annotations

import time

import msgpack

from ..store.index import Index


class Peers:
    """The `peers` table."""

    def __init__(self, index: Index):
        self.index = index
        self.db = index.db["peers"]

    def _get(self, txn, peer_id: bytes) -> dict | None:  # noqa: ANN001
        v = txn.get(peer_id, db=self.db)
        return msgpack.unpackb(v, raw=False) if v is not None else None

    def get(self, peer_id: bytes) -> dict | None:
        """A peer's record, or None if unknown."""
        with self.index.read() as txn:
            return self._get(txn, peer_id)

    def all(self) -> dict[bytes, dict]:
        """Every known peer."""
        with self.index.read() as txn:
            return {bytes(k): msgpack.unpackb(v, raw=False)
                    for k, v in txn.cursor(db=self.db).iternext()}

    def add(self, peer_id: bytes, addr: str | None) -> None:
        """Trust a peer (and dial it at `addr`, if given)."""
        with self.index.write() as txn:
            rec = self._get(txn, peer_id) or {"added": time.time(), "last_seen": 0.0,
                                              "connected": False, "error": None}
            rec["addr"] = addr
            txn.put(peer_id, msgpack.packb(rec, use_bin_type=True), db=self.db)

    def remove(self, peer_id: bytes) -> bool:
        """Stop trusting a peer."""
        with self.index.write() as txn:
            return txn.delete(peer_id, db=self.db)

    def _update(self, peer_id: bytes, **kw: object) -> None:
        with self.index.write() as txn:
            rec = self._get(txn, peer_id)
            if rec is None:
                return
            rec.update(kw)
            txn.put(peer_id, msgpack.packb(rec, use_bin_type=True), db=self.db)

    def seen(self, peer_id: bytes, connected: bool) -> None:
        """Record a connection coming up or going down."""
        self._update(peer_id, last_seen=time.time(), connected=connected,
                     **({"error": None} if connected else {}))

    def lag(self, peer_id: bytes, entries: int) -> None:
        """Record how many log entries the peer is behind us."""
        self._update(peer_id, lag=entries, last_seen=time.time())

    def error(self, peer_id: bytes, error: str) -> None:
        """Record a failed dial."""
        self._update(peer_id, error=error[:200], connected=False)
