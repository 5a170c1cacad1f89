"""The index's change journal: what the backends' index copies have not heard yet.

Each changed record's key is stamped with a change number in the very transaction of
the change (cloud/indexlog.py reads and trims it). A mixin of `Index` (index.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .records import U64

if TYPE_CHECKING:
    import lmdb


class JournalTables:
    """The `journal` table and its switch and counter in `meta`."""

    db: dict[str, Any]
    env: lmdb.Environment
    _jtxn: lmdb.Transaction | None
    _jseq: int | None

    # ---- change journal (what the backends' index copies have not heard yet) -----
    def _journal(self, txn: lmdb.Transaction, key: bytes, extra: bytes = b"") -> None:
        """Note that the record at `key` changed in this transaction (if the journal is on)."""
        if txn is not self._jtxn:  # the first change of a transaction: is the journal on?
            self._jtxn = txn
            self._jseq = None
            if txn.get(b"journal", db=self.db["meta"]) is not None:
                v = txn.get(b"journal_seq", db=self.db["meta"])
                self._jseq = (U64.unpack(v)[0] if v else 0) + 1
                txn.put(b"journal_seq", U64.pack(self._jseq), db=self.db["meta"])
        if self._jseq is not None:
            txn.put(key, U64.pack(self._jseq) + extra, db=self.db["journal"])

    def _journal_name(self, txn: lmdb.Transaction, name: str) -> None:
        raw = name.encode("utf-8")
        if len(raw) < self.env.max_key_size():
            self._journal(txn, b"n" + raw)
        else:
            import hashlib  # only for names past LMDB's key limit: not loaded at start-up
            self._journal(txn, b"N" + hashlib.blake2b(raw).digest(), raw)

    def journal_on(self, txn: lmdb.Transaction) -> bool:
        """True while changes are journaled."""
        return txn.get(b"journal", db=self.db["meta"]) is not None

    def set_journal(self, txn: lmdb.Transaction, on: bool) -> None:
        """Start journaling changes, or stop and forget the journal."""
        if on:
            txn.put(b"journal", b"1", db=self.db["meta"])
        else:
            txn.delete(b"journal", db=self.db["meta"])
            txn.drop(self.db["journal"], delete=False)
        self._jtxn = None

    def journal_seq(self, txn: lmdb.Transaction) -> int:
        """The number of the newest journaled change (0 if none)."""
        v = txn.get(b"journal_seq", db=self.db["meta"])
        return U64.unpack(v)[0] if v else 0

    def iter_journal(self, txn: lmdb.Transaction, after: int = 0) -> Iterator[tuple[str, bytes]]:
        """(kind, key) of records changed after change number `after`: kind "p" (pack ID),
        "c" (chunk ID), "m" (file ID) or "n" (utf-8 name)."""
        for k, v in txn.cursor(db=self.db["journal"]).iternext():
            if U64.unpack_from(v)[0] > after:
                if k[:1] == b"N":
                    yield "n", bytes(v[8:])
                else:
                    yield k[:1].decode(), bytes(k[1:])

    def trim_journal(self, txn: lmdb.Transaction, upto: int) -> int:
        """Forget changes numbered `upto` or lower (every copy has them); returns how many."""
        db = self.db["journal"]
        done = [k for k, v in txn.cursor(db=db).iternext() if U64.unpack_from(v)[0] <= upto]
        for k in done:
            txn.delete(k, db=db)
        return len(done)
