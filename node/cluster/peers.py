"""Known peers: node ID -> address, when added, last seen, connection state, lag, last error."""

from __future__ import annotations

import time

import msgpack

from ..store.index import Index


class Peers:
    """The `peers` table."""

    def __init__(self, index: Index):
        self.index = index
        self.db = index.db["peers"]

    def _get(self, txn, peer_id: bytes) -> dict | None:
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

    def update(self, changes: list[tuple[bytes, dict]]) -> None:
        """Set fields of known peers' records, in order, in one transaction (unknown peers,
        e.g. removed meanwhile, are skipped)."""
        with self.index.write() as txn:
            for peer_id, fields in changes:
                rec = self._get(txn, peer_id)
                if rec is None:
                    continue
                rec.update(fields)
                txn.put(peer_id, msgpack.packb(rec, use_bin_type=True), db=self.db)

    @staticmethod
    def seen_fields(connected: bool) -> dict:
        """A connection came up or went down."""
        return {"last_seen": time.time(), "connected": connected,
                **({"error": None} if connected else {})}

    @staticmethod
    def lag_fields(entries: int) -> dict:
        """The peer is `entries` log entries behind us."""
        return {"lag": entries, "last_seen": time.time()}

    @staticmethod
    def error_fields(error: str) -> dict:
        """A dial failed."""
        return {"error": error[:200], "connected": False}
