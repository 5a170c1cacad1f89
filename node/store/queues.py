"""The index's work queues and event log: uploads to do, copies to repair, transfers done.

A mixin of `Index` (index.py), which owns the LMDB environment and `self.db`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .records import BE64, decode_row, encode_row

if TYPE_CHECKING:
    import lmdb


class QueueTables:
    """The `uploads`, `repairs` and `events` tables."""

    db: dict[str, Any]

    # ---- upload queue ------------------------------------------------------
    def queue_upload(self, txn: lmdb.Transaction, pid: bytes, backend: str) -> None:
        """Queue a pack for upload to a backend."""
        txn.put(pid + backend.encode(), b"", db=self.db["uploads"])

    def dequeue_upload(self, txn: lmdb.Transaction, pid: bytes, backend: str) -> None:
        """Remove a queued upload."""
        txn.delete(pid + backend.encode(), db=self.db["uploads"])

    def iter_uploads(self, txn: lmdb.Transaction) -> Iterator[tuple[bytes, str]]:
        """(pack_id, backend) of every queued upload."""
        for k in txn.cursor(db=self.db["uploads"]).iternext(values=False):
            yield k[:32], k[32:].decode()

    # ---- repairs and events ------------------------------------------------
    def queue_repair(self, txn: lmdb.Transaction, pid: bytes, backend: str, reason: str) -> None:
        """Remember that a backend's copy of a pack is missing or corrupt."""
        txn.put(pid + backend.encode(), reason.encode("utf-8")[:200], db=self.db["repairs"])

    def clear_repair(self, txn: lmdb.Transaction, pid: bytes, backend: str) -> None:
        """Forget a repaired copy."""
        txn.delete(pid + backend.encode(), db=self.db["repairs"])

    def iter_repairs(self, txn: lmdb.Transaction) -> Iterator[tuple[bytes, str, str]]:
        """(pack_id, backend, reason) of every copy waiting for repair."""
        for k, v in txn.cursor(db=self.db["repairs"]).iternext():
            yield k[:32], k[32:].decode(), v.decode("utf-8", "replace")

    def add_event(self, txn: lmdb.Transaction, kind: str, backend: str, nbytes: int,
                  seconds: float, error: str | None = None) -> None:
        """Log a transfer or an error (kept for `status`; trimmed to the last 10,000)."""
        key = BE64.pack(time.time_ns()) + os.urandom(4)
        txn.put(key, encode_row([kind, backend, nbytes, seconds, error]), db=self.db["events"])
        if txn.stat(self.db["events"])["entries"] > 10_000:
            cur = txn.cursor(db=self.db["events"])
            if cur.first():
                cur.delete()

    def iter_events(self, since_ns: int, txn: lmdb.Transaction | None = None
                    ) -> Iterator[tuple[int, str, str, int, float, str | None]]:
        """(time_ns, kind, backend, bytes, seconds, error) of events since `since_ns`."""
        t = txn or self.read()
        cur = t.cursor(db=self.db["events"])
        if not cur.set_range(BE64.pack(since_ns)):
            return
        for k, v in cur.iternext():
            kind, backend, nbytes, seconds, error = decode_row(v)
            yield BE64.unpack(k[:8])[0], kind, backend, nbytes, seconds, error
