"""The name directory seen as folders: one level at a time, paginated, and empty folders.

Names are flat paths (`a/b/c.txt`); a folder exists while a name lies under it or
while it has a record in the `folders` table (made by mkdir, kept until rmdir).
Listing one level walks the sorted names and jumps over each sub-folder's
contents, so a folder of 100,000 files costs one page, not the whole tree.
Folder records are local to the node (they are not replicated).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

import lmdb

from ..errors import ConflictError, NotFoundError, UsageError
from .home import check_name
from .index import Index

# The code point after "/": names under "sub/" all sort before base + "sub0".
_AFTER_SLASH = chr(ord("/") + 1)


@dataclass(frozen=True)
class Child:
    """One entry of a folder: a file (with its ID) or a sub-folder (file_id None)."""

    name: str          # the last path component
    path: str          # the full name
    file_id: bytes | None

    @property
    def is_folder(self) -> bool:
        return self.file_id is None

    @property
    def key(self) -> str:
        """The order of a listing (the names' order: a folder sorts as `name/`); the cursor."""
        return self.name + "/" if self.file_id is None else self.name


def _base(folder: str) -> str:
    folder = folder.strip("/")
    return check_name(folder) + "/" if folder else ""


def _start(base: str, after: str) -> str:
    """The first name a page that follows the entry keyed `after` may hold."""
    if not after:
        return base
    if after.endswith("/"):  # past the whole sub-folder
        return base + after[:-1] + _AFTER_SLASH
    return base + after + "\0"


def _from_names(index: Index, txn: lmdb.Transaction, base: str, after: str) -> Iterator[Child]:
    names = index.iter_names(base, txn, start=_start(base, after))
    skip: str | None = None
    while True:
        try:
            name, fid = names.send(skip) if skip is not None else next(names)
        except StopIteration:
            return
        rest = name[len(base):]
        cut = rest.find("/")
        if cut < 0:
            skip = None
            yield Child(rest, name, fid)
            continue
        sub = rest[:cut]
        yield Child(sub, base + sub, None)
        skip = base + sub + _AFTER_SLASH  # past the sub-folder's contents


def _from_records(index: Index, txn: lmdb.Transaction, base: str, after: str) -> Iterator[Child]:
    cur = txn.cursor(db=index.db["folders"])
    start = _start(base, after).encode("utf-8")
    if not cur.set_range(start):
        return
    while True:
        path = cur.key().decode("utf-8")
        if not path.startswith(base):
            return
        sub = path[len(base):].split("/", 1)[0]
        yield Child(sub, base + sub, None)
        if not cur.set_range((base + sub + _AFTER_SLASH).encode("utf-8")):
            return


def list_level(index: Index, folder: str = "", after: str = "", limit: int = 1000,
               txn: lmdb.Transaction | None = None) -> tuple[list[Child], str | None]:
    """One page of `folder`'s entries in the names' order, starting after the cursor `after`.

    Returns (entries, cursor): pass the cursor as `after` for the next page; None at
    the end. A folder that does not exist raises NotFoundError (the root always exists).
    """
    base = _base(folder)
    t = txn or index.read()
    try:
        merged = heapq.merge(_from_names(index, t, base, after), _from_records(index, t, base, after),
                             key=lambda c: c.key)
        out: list[Child] = []
        last = None
        for c in merged:
            if last is not None and c.key == last.key:
                continue  # a folder both recorded and holding names
            if len(out) == limit:
                return out, out[-1].key
            out.append(c)
            last = c
        if not out and base and after == "" and not folder_exists(index, folder, t):
            raise NotFoundError(f"no such folder: {folder.strip('/')}")
        return out, None
    finally:
        if txn is None:
            t.abort()


def folder_exists(index: Index, folder: str, txn: lmdb.Transaction | None = None) -> bool:
    """True for the root, a recorded folder, or a folder that names lie under."""
    base = _base(folder)
    if not base:
        return True
    t = txn or index.read()
    try:
        if next(index.iter_names(base, t), None) is not None:
            return True
        cur = t.cursor(db=index.db["folders"])
        if cur.set_key(base[:-1].encode("utf-8")):
            return True
        # keys such as "a b" sort between "a" and "a/...": seek to "a/" itself
        return bool(cur.set_range(base.encode("utf-8"))) and cur.key().decode("utf-8").startswith(base)
    finally:
        if txn is None:
            t.abort()


def make_folder(index: Index, path: str) -> bool:
    """Record an empty folder (and its parents); False when it existed already."""
    p = check_name(path.strip("/"))
    with index.write() as txn:
        if index.names.get(txn, p) is not None:
            raise UsageError(f"a file has this name: {p}")
        parts = p.split("/")
        for i in range(1, len(parts)):
            if index.names.get(txn, "/".join(parts[:i])) is not None:
                raise UsageError(f"a file has this name: {'/'.join(parts[:i])}")
        existed = folder_exists(index, p, txn)
        txn.put(p.encode("utf-8"), b"", db=index.db["folders"])
        return not existed


def remove_folder(index: Index, path: str) -> None:
    """Remove an empty folder's record; a folder with contents is refused."""
    p = check_name(path.strip("/"))
    with index.write() as txn:
        base = p + "/"
        if next(index.iter_names(base, txn), None) is not None:
            raise UsageError(f"folder not empty: {p}")
        cur = txn.cursor(db=index.db["folders"])
        if cur.set_range(base.encode("utf-8")) and cur.key().decode("utf-8").startswith(base):
            raise UsageError(f"folder not empty: {p}")
        if not txn.delete(p.encode("utf-8"), db=index.db["folders"]):
            raise NotFoundError(f"no such folder: {p}")


def folder_records(index: Index, txn: lmdb.Transaction, folder: str) -> list[str]:
    """The recorded (empty) folders `folder` and those inside it. Two seeks: keys such as
    "a b" or "a-x" sort between "a" and "a/...", so one scan from "a" would read them too."""
    cur = txn.cursor(db=index.db["folders"])
    out = [folder] if cur.set_key(folder.encode("utf-8")) else []
    base = (folder + "/").encode("utf-8")
    if cur.set_range(base):
        for k in cur.iternext(values=False):
            if not bytes(k).startswith(base):
                break
            out.append(bytes(k).decode("utf-8"))
    return out


def move_folder(index: Index, old: str, new: str) -> int:
    """Move folder `old` (every name under it and every folder record) to `new`, in one
    transaction; `new` must not exist or be an empty folder. Returns the names moved."""
    o, n = check_name(old.strip("/")), check_name(new.strip("/"))
    if n == o or n.startswith(o + "/"):
        raise UsageError(f"cannot move a folder into itself: {o} -> {n}")
    fdb = index.db["folders"]
    with index.write() as txn:
        if not folder_exists(index, o, txn):
            raise NotFoundError(f"no such folder: {o}")
        if index.names.get(txn, n) is not None:
            raise ConflictError(f"a file has this name: {n}")
        parts = n.split("/")
        for i in range(1, len(parts)):
            if index.names.get(txn, "/".join(parts[:i])) is not None:
                raise ConflictError(f"a file has the name of a folder in this path: "
                                    f"{'/'.join(parts[:i])}")
        if next(index.iter_names(n + "/", txn), None) is not None or len(
                folder_records(index, txn, n)) > 1:
            raise ConflictError(f"folder not empty: {n}")
        moved = list(index.iter_names(o + "/", txn))
        changes: list[tuple[str, bytes | None]] = [(name, None) for name, _ in moved]
        changes += [(n + name[len(o):], fid) for name, fid in moved]
        if changes:
            index.set_names(txn, changes)
        records = folder_records(index, txn, o)
        for path in records:
            txn.delete(path.encode("utf-8"), db=fdb)
        for path in records:
            txn.put((n + path[len(o):]).encode("utf-8"), b"", db=fdb)
        return len(moved)


def remove_tree(index: Index, folder: str) -> tuple[int, int]:
    """Remove every name under `folder` and its folder records, in one transaction; files left
    with no name go (gc reclaims their space), as with `mosaic rm`. Returns (names, records)."""
    f = check_name(folder.strip("/"))
    with index.write() as txn:
        names = list(index.iter_names(f + "/", txn))
        if names:
            index.set_names(txn, [(name, None) for name, _ in names])
            fids = {fid for _, fid in names}
            for fid in fids - index.has_names(txn, fids):
                index.remove_manifest(txn, fid)
        records = folder_records(index, txn, f)
        for path in records:
            txn.delete(path.encode("utf-8"), db=index.db["folders"])
        if not names and not records:
            raise NotFoundError(f"no such folder: {f}")
    return len(names), len(records)
