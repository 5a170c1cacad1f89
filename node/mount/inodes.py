"""Inode numbers for the paths the kernel knows, with its lookup counts.

A path of the name directory (a file's name or a folder, "" for the root) gets an
inode number the first time the kernel looks it up and keeps it while the kernel
holds a reference (lookup count) or a file is open on it. A rename moves the inode
(and those of everything under a folder) to the new path, as the kernel expects.
Memory grows with what the kernel caches, not with the tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyfuse3

if TYPE_CHECKING:
    from .staging import StagedFile

ROOT = pyfuse3.ROOT_INODE
BY_HASH, CONTROL, STATS = ROOT + 1, ROOT + 2, ROOT + 3
FIRST_DYNAMIC = ROOT + 16

DIR, FILE, HASHFILE, SPECIAL = "dir", "file", "hash", "special"


@dataclass(eq=False)
class Inode:
    """One inode: what it is, where it is, and who holds it."""

    ino: int
    kind: str                    # DIR, FILE, HASHFILE or SPECIAL
    path: str                    # the name or folder ("" root); the hex hash for HASHFILE
    fid: bytes | None = None     # FILE/HASHFILE: the file it showed last
    lookups: int = 0
    opens: int = 0
    staged: StagedFile | None = None   # a FILE open for writing
    cached_fid: bytes | None = None    # the file whose bytes the kernel may hold in page cache
    extra: dict = field(default_factory=dict)

    @property
    def parent_path(self) -> str:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""

    @property
    def leaf(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class InodeTable:
    """Inodes by number and by (kind group, path)."""

    def __init__(self) -> None:
        self.by_ino: dict[int, Inode] = {}
        self.by_path: dict[str, Inode] = {}   # names and folders
        self.by_hash: dict[str, Inode] = {}   # /.by-hash/ entries
        self._next = FIRST_DYNAMIC
        self._add(Inode(ROOT, DIR, ""))
        self.by_path[""] = self.by_ino[ROOT]
        self._add(Inode(BY_HASH, SPECIAL, ".by-hash"))
        self._add(Inode(CONTROL, SPECIAL, ".mosaic"))
        self._add(Inode(STATS, SPECIAL, ".mosaic/stats"))

    def _add(self, node: Inode) -> Inode:
        self.by_ino[node.ino] = node
        return node

    def get(self, ino: int) -> Inode | None:
        return self.by_ino.get(ino)

    def at(self, path: str) -> Inode | None:
        return self.by_path.get(path)

    def for_path(self, path: str, kind: str, fid: bytes | None = None) -> Inode:
        """The inode of a name or folder, made if new (or if the path changed kind)."""
        node = self.by_path.get(path)
        if node is not None and node.kind == kind:
            if fid is not None and node.staged is None:
                node.fid = fid
            return node
        if node is not None:
            self.detach(node)
        node = self._add(Inode(self._take(), kind, path, fid))
        self.by_path[path] = node
        return node

    def for_hash(self, hexid: str, fid: bytes) -> Inode:
        node = self.by_hash.get(hexid)
        if node is None:
            node = self._add(Inode(self._take(), HASHFILE, hexid, fid))
            self.by_hash[hexid] = node
        return node

    def _take(self) -> int:
        n = self._next
        self._next += 1
        return n

    def detach(self, node: Inode) -> None:
        """The path no longer leads to this inode (removed, replaced); it lives while held."""
        if node.kind == HASHFILE:
            if self.by_hash.get(node.path) is node:
                del self.by_hash[node.path]
        elif self.by_path.get(node.path) is node:
            del self.by_path[node.path]
        node.extra["detached"] = True
        self._maybe_drop(node)

    def move(self, old: str, new: str) -> None:
        """A rename: the inode at `old` (and every inode under it) now lives at `new`."""
        gone = self.by_path.get(new)
        if gone is not None:
            if gone.staged is not None:
                gone.staged.unlinked = True  # replaced: its writer's close stores nothing
            self.detach(gone)
        moved = [n for p, n in self.by_path.items() if p == old or p.startswith(old + "/")]
        for n in moved:
            del self.by_path[n.path]
        for n in moved:
            n.path = new + n.path[len(old):]
            if n.staged is not None:
                n.staged.name = n.path
            self.by_path[n.path] = n

    def forget(self, ino: int, count: int) -> None:
        node = self.by_ino.get(ino)
        if node is None or ino < FIRST_DYNAMIC:
            return
        node.lookups = max(0, node.lookups - count)
        self._maybe_drop(node, from_forget=True)

    def _maybe_drop(self, node: Inode, from_forget: bool = False) -> None:
        if node.ino < FIRST_DYNAMIC or node.lookups > 0 or node.opens > 0:
            return
        if not from_forget and not node.extra.get("detached"):
            return
        self.by_ino.pop(node.ino, None)
        if node.kind == HASHFILE:
            if self.by_hash.get(node.path) is node:
                del self.by_hash[node.path]
        elif self.by_path.get(node.path) is node:
            del self.by_path[node.path]

    def closed(self, node: Inode) -> None:
        """A handle on the inode was released."""
        node.opens = max(0, node.opens - 1)
        self._maybe_drop(node, from_forget=node.lookups == 0)

    def files(self) -> list[Inode]:
        """Every FILE inode still at its path."""
        return [n for n in self.by_path.values() if n.kind == FILE]

    def dirs(self) -> list[Inode]:
        """Every folder inode still at its path (not the root)."""
        return [n for n in self.by_path.values() if n.kind == DIR and n.path]
