"""Renaming a folder: every name under it and every empty-folder record, in one transaction.

`Engine.mv` renames one name; a folder rename must move them all or none. The
caller holds the home lock (shared) as every index writer does.
"""

from __future__ import annotations

from ..errors import NotFoundError, UsageError
from ..store.home import check_name
from ..store.index import Index
from ..store.tree import folder_exists


def _under(path: str, base: str) -> bool:
    return path == base or path.startswith(base + "/")


def move_folder(index: Index, old: str, new: str) -> int:
    """Move folder `old` to `new` (which must not exist, or be an empty folder); returns names moved."""
    o, n = check_name(old), check_name(new)
    if _under(n, o):
        raise UsageError(f"cannot move a folder into itself: {o} -> {n}")
    folders = index.db["folders"]
    with index.write() as txn:
        if not folder_exists(index, o, txn):
            raise NotFoundError(f"no such folder: {o}")
        if index.resolve_name(n, txn) is not None:
            raise UsageError(f"a file has this name: {n}")
        if next(index.iter_names(n + "/", txn), None) is not None:
            raise UsageError(f"folder not empty: {n}")
        moved = list(index.iter_names(o + "/", txn))
        changes: list[tuple[str, bytes | None]] = [(name, None) for name, _ in moved]
        changes += [(n + name[len(o):], fid) for name, fid in moved]
        if changes:
            index.set_names(txn, changes)
        records = []
        cur = txn.cursor(db=folders)
        if cur.set_range(o.encode("utf-8")):
            for k in cur.iternext(values=False):
                path = bytes(k).decode("utf-8")
                if not path.startswith(o):
                    break
                if _under(path, o):
                    records.append(path)
        cur = txn.cursor(db=folders)
        if cur.set_range((n + "/").encode("utf-8")):
            key = bytes(cur.key()).decode("utf-8")
            if key.startswith(n + "/"):
                raise UsageError(f"folder not empty: {n}")
        for path in records:
            txn.delete(path.encode("utf-8"), db=folders)
        for path in records:
            txn.put((n + path[len(o):]).encode("utf-8"), b"", db=folders)
        return len(moved)
