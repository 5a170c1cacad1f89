"""The index's names: the name directory (namestore.py) as names of file IDs, and name times.

A mixin of `Index` (index.py), which owns the LMDB environment, `self.db`, the
`NameStore` in `self.names`, and the replication hook.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any

from ..errors import StorageError
from .records import BE64, U64, decode_row

if TYPE_CHECKING:
    import lmdb

    from .namestore import NameStore

MAX_TIME_KEY = 500  # names longer than LMDB's key limit allows (none since protocol 2) get no time


class NameTables:
    """The `names` and `nametimes` tables, and the file numbers names point at."""

    db: dict[str, Any]
    names: NameStore
    repl_origin: bytes | None

    if TYPE_CHECKING:
        def read(self) -> lmdb.Transaction: ...
        def _change_log(self) -> Any: ...  # index.ChangeLog (not imported: no circle)
        def _journal_name(self, txn: lmdb.Transaction, name: str) -> None: ...

    def _file_no(self, txn: lmdb.Transaction, fid: bytes) -> int | None:
        v = txn.get(fid, db=self.db["manifests"])
        return decode_row(v)[0] if v is not None else None

    def _file_id(self, txn: lmdb.Transaction, no: int) -> bytes | None:
        return txn.get(BE64.pack(no), db=self.db["files"])

    def has_names(self, txn: lmdb.Transaction, fids: set[bytes]) -> set[bytes]:
        """Which of these files some name points at (one pass over the name blocks).

        Names are not counted per file: keeping a count would rewrite a row per name
        on every put, which with LMDB's copy-on-write pages costs more than this scan.
        """
        nos = {self._file_no(txn, f): f for f in fids}
        nos.pop(None, None)
        found: set[bytes] = set()
        for _, no in self.names.iter(txn):
            f = nos.get(no)
            if f is not None:
                found.add(f)
                if len(found) == len(nos):
                    break
        return found

    # ---- names -------------------------------------------------------------
    def resolve_name(self, name: str, txn: lmdb.Transaction | None = None) -> bytes | None:
        """The file ID a name points at, or None."""
        t = txn or self.read()
        no = self.names.get(t, name)
        return self._file_id(t, no) if no is not None else None

    def iter_names(self, prefix: str = "", txn: lmdb.Transaction | None = None, start: str = ""
                   ) -> Generator[tuple[str, bytes], str | None, None]:
        """(name, file_id) for names starting with `prefix` (from `start` on), sorted; `send(name)`
        skips ahead to the first name at or after `name` (NameStore.iter)."""
        t = txn or self.read()
        scan = self.names.iter(t, prefix, start)
        skip: str | None = None
        while True:
            try:
                name, no = scan.send(skip) if skip is not None else next(scan)
            except StopIteration:
                return
            fid = self._file_id(t, no)
            skip = (yield name, fid) if fid is not None else None

    def resolve_names(self, txn: lmdb.Transaction, names: Iterable[str]) -> dict[str, bytes | None]:
        """name -> the file ID it points at (or None), for many names: each block decoded once."""
        from .namestore import _decode
        out: dict[str, bytes | None] = {}
        cur = txn.cursor(db=self.names.db)
        block, entries = None, {}
        for name in sorted(set(names)):
            bkey = self.names._find(cur, name.encode("utf-8"))
            if bkey is None:
                out[name] = None
                continue
            if bkey != block:
                block, entries = bkey, dict(_decode(cur.value()))
            no = entries.get(name)
            out[name] = self._file_id(txn, no) if no is not None else None
        return out

    def names_of(self, fid: bytes, txn: lmdb.Transaction | None = None) -> list[str]:
        """Every name that points at a file ID (scans the name blocks)."""
        t = txn or self.read()
        no = self._file_no(t, fid)
        return [n for n, x in self.names.iter(t) if x == no] if no is not None else []

    def set_names(self, txn: lmdb.Transaction, changes: list[tuple[str, bytes | None]]
                  ) -> list[tuple[str, bytes | None, bytes | None]]:
        """Point names at file IDs (None removes); returns (name, old, new) per real change.

        Once replication is enabled the change is a versioned, logged write (the change_log hook).
        """
        if self.repl_origin is not None:
            return self._change_log().write_names(self, txn, changes)
        return self.set_names_view(txn, changes)

    def set_names_view(self, txn: lmdb.Transaction, changes: list[tuple[str, bytes | None]]
                       ) -> list[tuple[str, bytes | None, bytes | None]]:
        """Change the name directory itself (no versioning)."""
        numbered: list[tuple[str, int | None]] = []
        for name, fid in changes:
            if fid is None:
                numbered.append((name, None))
                continue
            no = self._file_no(txn, fid)
            if no is None:
                raise StorageError(f"internal: name points at unknown file {fid.hex()[:16]}")
            numbered.append((name, no))
        out = []
        now = U64.pack(time.time_ns())
        times = self.db["nametimes"]
        for name, old, new in self.names.update(txn, numbered):
            old_fid = self._file_id(txn, old) if old is not None else None
            new_fid = self._file_id(txn, new) if new is not None else None
            out.append((name, old_fid, new_fid))
            self._journal_name(txn, name)
            key = name.encode("utf-8")
            if len(key) <= MAX_TIME_KEY:
                if new is None:
                    txn.delete(key, db=times)
                else:
                    txn.put(key, now, db=times)
        return out

    def name_time(self, name: str, txn: lmdb.Transaction | None = None) -> int | None:
        """When `name` was last written here (ns since the epoch), or None if unknown
        (names written before this was recorded)."""
        t = txn or self.read()
        v = t.get(name.encode("utf-8"), db=self.db["nametimes"])
        return U64.unpack(v)[0] if v is not None else None

    def set_name(self, txn: lmdb.Transaction, name: str, fid: bytes) -> bytes | None:
        """Point `name` at `fid`; returns the file ID it pointed at before, if any."""
        done = self.set_names(txn, [(name, fid)])
        return done[0][1] if done else fid

    def unset_name(self, txn: lmdb.Transaction, name: str) -> bytes | None:
        """Remove a name; returns the file ID it pointed at, or None."""
        done = self.set_names(txn, [(name, None)])
        return done[0][1] if done else None
