"""`FSCore`: the state of one mount and the helpers every group of handlers shares.

Inode and handle look-ups, checks of names and of write access, the attributes the
kernel is given, index reads of a name, and index writes (on worker threads, one at
a time, so the event loop never waits on LMDB's writer lock). The handlers themselves
are in the mixins `MosaicFS` (fs.py) is made of.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from typing import TypeVar

import pyfuse3
import trio

from ..cluster.engine import Engine
from ..errors import UsageError
from ..store.home import check_name
from . import meta
from .chunks import ChunkCache, ChunkSource
from .handles import DirHandle, Handle
from .inodes import BY_HASH, CONTROL, DIR, HASHFILE, ROOT, STATS, Inode, InodeTable
from .staging import staging_dir
from .stats import MountStats

T = TypeVar("T")
ENTRY_TIMEOUT = 30.0   # s; changes from elsewhere are pushed out by the watcher sooner
BLKSIZE = 128 << 10    # st_blksize: what cp and friends use as their buffer size
RESERVED = {".by-hash": BY_HASH, ".mosaic": CONTROL}


def _join(folder: str, leaf: str) -> str:
    return f"{folder}/{leaf}" if folder else leaf


class FSCore(pyfuse3.Operations):
    """One mount's state (engine, inodes, open handles, chunk cache) and shared helpers."""

    def __init__(self, engine: Engine, nursery: trio.Nursery, stats: MountStats,
                 read_only: bool = False, cache_bytes: int = 64 << 20):
        super().__init__()
        self.engine, self.index = engine, engine.index
        self.read_only, self.stats = read_only, stats
        self.nursery = nursery
        self.table = InodeTable()
        self.cache = ChunkCache(cache_bytes, stats)
        self.source = ChunkSource(engine.store, self.cache, stats, engine.config.workers)
        self.handles: dict[int, Handle | DirHandle] = {}
        self._next_fh = 1
        self.writer = trio.Lock()            # index writes, one at a time, off the loop
        self.uid, self.gid = os.getuid(), os.getgid()
        self.started_ns = time.time_ns()
        self._stage_dir = None if read_only else staging_dir(engine)
        self.after_init: Callable[[], object] | None = None  # run once the kernel took INIT

    async def _write(self, fn: Callable[..., T], *args: object) -> T:
        """Run an index-writing call on a worker thread, one at a time."""
        async with self.writer:
            return await trio.to_thread.run_sync(fn, *args)

    def _node(self, ino: int) -> Inode:
        node = self.table.get(ino)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _fh(self, h: Handle | DirHandle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = h
        return fh

    def _writable(self) -> None:
        if self.read_only:
            raise pyfuse3.FUSEError(errno.EROFS)

    @staticmethod
    def _leaf(name: bytes) -> str:
        try:
            leaf = name.decode("utf-8")
        except UnicodeDecodeError:
            raise pyfuse3.FUSEError(errno.EINVAL) from None
        if "/" in leaf or leaf in ("", ".", ".."):
            raise pyfuse3.FUSEError(errno.EINVAL)
        return leaf

    def _child_path(self, parent: Inode, name: bytes, creating: bool = False) -> str:
        """The full name of entry `name` in folder `parent` (checked when creating)."""
        if parent.kind != DIR:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        leaf = self._leaf(name)
        if parent.ino == ROOT and leaf in RESERVED:
            raise pyfuse3.FUSEError(errno.EPERM)
        path = _join(parent.path, leaf)
        if creating:
            try:
                if check_name(path) != path:
                    raise pyfuse3.FUSEError(errno.EINVAL)
            except UsageError:
                raise pyfuse3.FUSEError(errno.EINVAL) from None
        return path

    def _attr(self, node: Inode, size: int = 0, mtime_ns: int = 0) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = a.attr_timeout = ENTRY_TIMEOUT
        if node.kind == DIR or node.ino in (BY_HASH, CONTROL):
            a.st_mode = stat.S_IFDIR | (0o755 if node.kind == DIR and not self.read_only else 0o555)
            a.st_nlink = 2
            mtime_ns = mtime_ns or self.started_ns
        else:
            ro = self.read_only or node.kind == HASHFILE or node.ino == STATS
            a.st_mode = stat.S_IFREG | (0o444 if ro else 0o644)
            a.st_nlink = 1
            a.st_size = size
            a.st_blocks = (size + 511) // 512
        if node.ino == STATS:
            a.attr_timeout = a.entry_timeout = 0
        a.st_blksize = BLKSIZE
        a.st_uid, a.st_gid = self.uid, self.gid
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = mtime_ns
        return a

    def _file_attr(self, node: Inode, m: meta.FileMeta) -> pyfuse3.EntryAttributes:
        node.fid = m.fid
        node.extra["meta"] = m
        return self._attr(node, m.size, m.mtime_ns)

    def _staged_attr(self, node: Inode) -> pyfuse3.EntryAttributes:
        assert node.staged is not None
        last = node.extra.get("meta")
        return self._attr(node, node.staged.size(), last.mtime_ns if last else time.time_ns())

    def _special_attr(self, node: Inode) -> pyfuse3.EntryAttributes:
        if node.ino == STATS:
            return self._attr(node, len(self.stats.render()), time.time_ns())
        return self._attr(node)

    def _stat_path(self, path: str) -> meta.FileMeta | bool:
        with self.index.read() as txn:
            return meta.lookup(self.index, txn, path)
