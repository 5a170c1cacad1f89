"""The name directory (path -> file ID), stored as compressed sorted blocks in LMDB.

A flat LMDB table with one row per name costs ~200 bytes a name (long shared
path prefixes, half-full B-tree pages). Here names live in sorted blocks of up
to BLOCK_MAX entries, each block one LMDB row keyed by its first name and
compressed with zstd, which folds the shared prefixes away (~40 bytes a name,
most of it the file number the name points at). Invariants: blocks are non-empty, sorted,
non-overlapping, and each is keyed by its first name.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Generator, Iterable

import lmdb
import msgpack
import zstandard

BLOCK_MAX = 512
# zstd contexts are not thread-safe: one pair per thread (the HTTP face and the mount read
# names from many worker threads at once; a shared decompressor corrupts concurrent decodes)
_local = threading.local()

Entry = tuple[str, int]  # (name, file number; the index maps numbers to file IDs)


def _contexts() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    c = getattr(_local, "zstd", None)
    if c is None:
        c = _local.zstd = (zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor())
    return c


def _decode(v: bytes) -> list[list]:
    return msgpack.unpackb(_contexts()[1].decompress(v), raw=False)


def _encode(entries: list[list]) -> bytes:
    return _contexts()[0].compress(msgpack.packb(entries, use_bin_type=True))


class NameStore:
    """Names in compressed blocks inside one LMDB table."""

    def __init__(self, db: lmdb._Database):
        self.db = db

    def _find(self, cur: lmdb.Cursor, key: bytes) -> bytes | None:
        """The key of the block that holds (or would hold) `key`; None if empty."""
        if cur.set_range(key):
            if cur.key() == key:
                return cur.key()
            if cur.prev():
                return cur.key()
            cur.first()
            return cur.key()
        if cur.last():
            return cur.key()
        return None

    def get(self, txn: lmdb.Transaction, name: str) -> bytes | None:
        """The file ID `name` points at, or None."""
        cur = txn.cursor(db=self.db)
        bkey = self._find(cur, name.encode("utf-8"))
        if bkey is None:
            return None
        entries = _decode(cur.value())
        i = bisect.bisect_left(entries, [name])
        if i < len(entries) and entries[i][0] == name:
            return entries[i][1]
        return None

    def update(self, txn: lmdb.Transaction, changes: Iterable[tuple[str, bytes | None]]
               ) -> list[tuple[str, bytes | None, bytes | None]]:
        """Set (file ID) or remove (None) many names; returns (name, old, new) for real changes."""
        items = sorted(dict(changes).items())
        out: list[tuple[str, bytes | None, bytes | None]] = []
        cur = txn.cursor(db=self.db)
        i = 0
        while i < len(items):
            bkey = self._find(cur, items[i][0].encode("utf-8"))
            entries: list[list] = _decode(cur.value()) if bkey is not None else []
            nxt = cur.key() if bkey is not None and cur.next() else None
            j = i
            while j < len(items) and (nxt is None or items[j][0].encode("utf-8") < nxt):
                j += 1
            changed = False
            for name, fid in items[i:j]:
                k = bisect.bisect_left(entries, [name])
                old = entries[k][1] if k < len(entries) and entries[k][0] == name else None
                if old == fid:
                    continue
                changed = True
                out.append((name, old, fid))
                if fid is None:
                    del entries[k]
                elif old is None:
                    entries.insert(k, [name, fid])
                else:
                    entries[k][1] = fid
            if changed:
                if bkey is not None:
                    txn.delete(bkey, db=self.db)
                for s in range(0, len(entries), BLOCK_MAX):
                    part = entries[s:s + BLOCK_MAX]
                    txn.put(part[0][0].encode("utf-8"), _encode(part), db=self.db)
            i = j
        return out

    def iter(self, txn: lmdb.Transaction, prefix: str = "", start: str = ""
             ) -> Generator[Entry, str | None, None]:
        """(name, file number) for names starting with `prefix` and not below `start`, in order.

        The consumer may `send(name)` to skip ahead: the generator then yields the first
        entry at or after `name`, searching the block it has decoded before reading others
        (a folder listing jumps over each sub-folder's contents this way).
        """
        first = max(prefix, start)
        cur = txn.cursor(db=self.db)
        if self._find(cur, first.encode("utf-8")) is None:
            return
        entries = _decode(cur.value())
        i = bisect.bisect_left(entries, [first])
        while True:
            while i < len(entries):
                name, no = entries[i]
                if not name.startswith(prefix):
                    return
                skip = yield name, no
                if skip is None:
                    i += 1
                    continue
                i = bisect.bisect_left(entries, [skip], i + 1)
                if i == len(entries) and cur.next():  # past this block: find the right one
                    if skip.encode("utf-8") >= cur.key():
                        self._find(cur, skip.encode("utf-8"))
                        entries = _decode(cur.value())
                        i = bisect.bisect_left(entries, [skip])
                    else:
                        entries, i = _decode(cur.value()), 0
                    continue
                if i == len(entries):
                    return
            if not cur.next():
                return
            entries, i = _decode(cur.value()), 0

    def count(self, txn: lmdb.Transaction) -> int:
        """Number of names (reads every block)."""
        return sum(len(_decode(v)) for v in txn.cursor(db=self.db).iternext(keys=False))
