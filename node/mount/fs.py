"""`MosaicFS`: the pyfuse3 operations over an Engine.

The tree is the name directory (`a/b/c.txt` is file c.txt in folder a/b; empty
folders from mkdir included). Two extra folders are found by lookup but not
listed (so `ls -R` and `cp -r` of the root never walk them): `/.by-hash/HASH`
opens any stored file read-only by its content hash, and `/.mosaic/stats` holds
the mount's counters (JSON). Those two names are reserved at the root.

Sizes and times come from the index only. Reads go through `ChunkSource`
(only the chunks a read needs, read-ahead for sequential reads, a bounded cache).
Writes are staged (`StagedFile`) and stored under their name on close or fsync.
Index writes run on worker threads, one at a time, so the event loop never
waits on LMDB's writer lock. `Watcher` (watch.py) keeps the kernel's caches in
step with changes made by other processes.
"""

from __future__ import annotations

import bisect
import errno
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pyfuse3
import trio

from ..cluster.engine import Engine
from ..errors import NotFoundError, UsageError
from ..store.home import check_name
from ..store.records import Manifest
from ..store.tree import Child, folder_exists, list_level, move_folder
from . import meta
from .chunks import ChunkCache, ChunkSource
from .errmap import fuse_errors, log
from .inodes import BY_HASH, CONTROL, DIR, FILE, HASHFILE, ROOT, STATS, Inode, InodeTable
from .staging import StagedFile, staging_dir
from .stats import MountStats

T = TypeVar("T")
ENTRY_TIMEOUT = 30.0   # s; changes from elsewhere are pushed out by the watcher sooner
READ_AHEAD = 8 << 20   # bytes fetched ahead of a sequential reader
BLKSIZE = 128 << 10    # st_blksize: what cp and friends use as their buffer size
RESERVED = {".by-hash": BY_HASH, ".mosaic": CONTROL}
PAGE = 256             # entries per index page while listing a folder


@dataclass(eq=False)
class Handle:
    """An open file: the version it reads (a manifest), its staged copy, or a snapshot."""

    node: Inode
    manifest: Manifest | None = None
    staged: StagedFile | None = None
    data: bytes | None = None           # /.mosaic/stats, rendered at open
    offs: list[int] = field(default_factory=list)
    last_end: int = -1                  # where the previous read ended (sequential detection)
    ahead: int = 0                      # read-ahead was started up to this chunk index
    ahead_from: int = 0                 # ... from reads at this chunk index on
    writes: bool = False


@dataclass(eq=False)
class DirHandle:
    """An open folder: the listing cursor for each readdir position handed out.

    The kernel takes a few dozen entries per request; the rest of the index page read
    for it waits in `rest` for the next request, which starts where this one stopped.
    """

    node: Inode
    cursors: list[str] = field(default_factory=lambda: [""])
    rest: list[tuple[Child, pyfuse3.EntryAttributes, Inode]] = field(default_factory=list)
    rest_id: int = -1                 # the start_id that continues with `rest`
    rest_cursor: str | None = None    # the index cursor after `rest`


def _join(folder: str, leaf: str) -> str:
    return f"{folder}/{leaf}" if folder else leaf


class MosaicFS(pyfuse3.Operations):
    """The file system; one per mount."""

    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, engine: Engine, nursery: trio.Nursery, stats: MountStats,
                 read_only: bool = False, cache_bytes: int = 64 << 20):
        super().__init__()
        self.engine, self.index = engine, engine.index
        self.read_only, self.stats = read_only, stats
        self.nursery = nursery
        self.table = InodeTable()
        self.cache = ChunkCache(cache_bytes, stats)
        self.source = ChunkSource(engine.store, self.cache, stats, engine.config.workers, nursery)
        self.handles: dict[int, Handle | DirHandle] = {}
        self._next_fh = 1
        self.writer = trio.Lock()            # index writes, one at a time, off the loop
        self.uid, self.gid = os.getuid(), os.getgid()
        self.started_ns = time.time_ns()
        self._stage_dir = None if read_only else staging_dir(engine)
        self.after_init: Callable[[], object] | None = None  # run once the kernel took INIT

    def init(self) -> None:
        """The kernel's INIT is being answered: run `after_init` once the answer is in.

        Called inside the INIT handler, before libfuse replies; a task started now runs
        after the reply, which the kernel has processed by then (settings of the mount's
        backing device, such as its read-ahead, would be overwritten by INIT before).
        """
        if self.after_init is not None:
            self.nursery.start_soon(trio.to_thread.run_sync, self.after_init)

    # ---- helpers -------------------------------------------------------------------------
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

    def _stat_path(self, path: str) -> meta.FileMeta | bool:
        with self.index.read() as txn:
            return meta.lookup(self.index, txn, path)

    def _manifest(self, node: Inode) -> Manifest:
        """The stored version a name (or hash) leads to now."""
        if node.kind == FILE and not node.extra.get("detached"):
            return self.engine.resolve(node.path)
        m = self.index.get_manifest(node.fid or b"")
        if m is None:
            raise NotFoundError(f"no such file: {node.path}")
        return m

    def _special_attr(self, node: Inode) -> pyfuse3.EntryAttributes:
        if node.ino == STATS:
            return self._attr(node, len(self.stats.render()), time.time_ns())
        return self._attr(node)

    async def _keep_parent(self, path: str) -> None:
        """Keep a folder that just lost its last entry (as a file system would)."""
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if not parent:
            return
        with self.index.read() as txn:
            if folder_exists(self.index, parent, txn):
                return
        await self._write(self.engine.mkdir, parent)

    # ---- lookups and attributes -------------------------------------------------------------
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext = None
                     ) -> pyfuse3.EntryAttributes:
        with fuse_errors("lookup"):
            parent = self._node(parent_inode)
            if name == b".":
                node = parent
            elif name == b"..":
                node = self.table.at(parent.parent_path) or self._node(ROOT)
            elif parent.ino == BY_HASH:
                return self._lookup_hash(name)
            elif parent.ino == CONTROL:
                if name != b"stats":
                    raise pyfuse3.FUSEError(errno.ENOENT)
                node = self._node(STATS)
            elif parent.ino == ROOT and name.decode("utf-8", "replace") in RESERVED:
                node = self._node(RESERVED[name.decode()])
            else:
                return self._lookup_path(self._child_path(parent, name))
            node.lookups += 1
            return self._special_attr(node) if node.kind not in (DIR, FILE) else \
                await self.getattr(node.ino)

    def _lookup_path(self, path: str) -> pyfuse3.EntryAttributes:
        known = self.table.at(path)
        if known is not None and known.staged is not None:
            known.lookups += 1
            return self._staged_attr(known)
        found = self._stat_path(path)
        if found is False:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if found is True:
            node = self.table.for_path(path, DIR)
            node.lookups += 1
            return self._attr(node)
        node = self.table.for_path(path, FILE, found.fid)
        node.lookups += 1
        return self._file_attr(node, found)

    def _lookup_hash(self, name: bytes) -> pyfuse3.EntryAttributes:
        hexid = name.decode("ascii", "replace").lower()
        if len(hexid) != 64 or any(c not in "0123456789abcdef" for c in hexid):
            raise pyfuse3.FUSEError(errno.ENOENT)
        fid = bytes.fromhex(hexid)
        with self.index.read() as txn:
            m = meta.file_meta(self.index, txn, None, fid)
        if m is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        node = self.table.for_hash(hexid, fid)
        node.lookups += 1
        return self._file_attr(node, m)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext = None
                      ) -> pyfuse3.EntryAttributes:
        with fuse_errors("getattr"):
            node = self._node(inode)
            if node.kind == DIR:
                return self._attr(node)
            if node.kind not in (FILE, HASHFILE):
                return self._special_attr(node)
            if node.staged is not None:
                return self._staged_attr(node)
            if node.kind == HASHFILE or node.extra.get("detached"):
                last = node.extra.get("meta")
                if last is None:
                    raise pyfuse3.FUSEError(errno.ENOENT)
                return self._attr(node, last.size, last.mtime_ns)
            found = self._stat_path(node.path)
            if isinstance(found, meta.FileMeta):
                return self._file_attr(node, found)
            last = node.extra.get("meta")
            if node.opens and last is not None:  # gone, but still open: the version it reads
                return self._attr(node, last.size, last.mtime_ns)
            raise pyfuse3.FUSEError(errno.ENOENT)

    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: int | None, ctx: pyfuse3.RequestContext = None) -> pyfuse3.EntryAttributes:
        with fuse_errors("setattr"):
            node = self._node(inode)
            if fields.update_size:
                self._writable()
                if node.kind != FILE:
                    raise pyfuse3.FUSEError(errno.EISDIR if node.kind == DIR else errno.EACCES)
                await self._truncate(node, attr.st_size)
            # modes, owners and times are not kept: the index has no place for them
            return await self.getattr(inode)

    async def _truncate(self, node: Inode, size: int) -> None:
        staged, own = node.staged, False
        if staged is None:  # truncate(2) on a path that is not open for writing
            staged, own = self._stage(node), True
        try:
            if size and not staged.loaded:
                await trio.to_thread.run_sync(staged.load, self.engine)
            staged.truncate(size)
            if own:
                await self._commit(node, staged)
        finally:
            if own:
                node.staged = None
                staged.discard()

    # ---- folders ---------------------------------------------------------------------------
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext = None) -> int:
        node = self._node(inode)
        if node.kind != DIR and node.ino not in (BY_HASH, CONTROL):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return self._fh(DirHandle(node))

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        with fuse_errors("readdir"):
            h = self.handles.get(fh)
            if not isinstance(h, DirHandle):
                raise pyfuse3.FUSEError(errno.EBADF)
            if h.node.ino == CONTROL:
                if start_id == 0 and pyfuse3.readdir_reply(
                        token, b"stats", self._special_attr(self._node(STATS)), 1):
                    self._node(STATS).lookups += 1
                return
            if h.node.ino == BY_HASH or start_id >= len(h.cursors):
                return  # /.by-hash is found by lookup only
            await self._list(h, start_id, token)

    async def _list(self, h: DirHandle, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        if start_id == h.rest_id:
            rows, cursor = h.rest, h.rest_cursor
        else:
            rows, cursor = self._page(h.node, h.cursors[start_id])
        last = start_id
        while True:
            for i, (c, a, node) in enumerate(rows):
                nid = len(h.cursors)
                if not pyfuse3.readdir_reply(token, c.name.encode("utf-8"), a, nid):
                    h.rest, h.rest_id, h.rest_cursor = rows[i:], last, cursor
                    return
                h.cursors.append(c.key)
                node.lookups += 1
                last = nid
            if cursor is None:  # the end: the kernel's next request, from `last`, gets nothing
                h.rest, h.rest_id, h.rest_cursor = [], last, None
                return
            rows, cursor = self._page(h.node, cursor)

    def _page(self, folder: Inode, after: str
              ) -> tuple[list[tuple[Child, pyfuse3.EntryAttributes, Inode]], str | None]:
        """One index page of a folder's entries with their attributes, and the next cursor."""
        rows = []
        with self.index.read() as txn:
            try:
                page, cursor = list_level(self.index, folder.path, after, PAGE, txn)
            except NotFoundError:
                return [], None
            times = meta.has_name_times(self.index, txn)
            for c in page:
                if folder.ino == ROOT and c.name in RESERVED:
                    continue  # shadowed by the reserved folders
                if c.file_id is None:
                    node = self.table.for_path(c.path, DIR)
                    rows.append((c, self._attr(node), node))
                    continue
                m = meta.file_meta(self.index, txn, c.path, c.file_id, times)
                if m is None:
                    continue
                node = self.table.for_path(c.path, FILE, m.fid)
                a = self._staged_attr(node) if node.staged is not None else self._file_attr(node, m)
                rows.append((c, a, node))
        return rows, cursor

    async def releasedir(self, fh: int) -> None:
        self.handles.pop(fh, None)

    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
                    ) -> pyfuse3.EntryAttributes:
        with fuse_errors("mkdir"):
            self._writable()
            path = self._child_path(self._node(parent_inode), name, creating=True)
            try:
                made = await self._write(self.engine.mkdir, path)
            except UsageError:  # a file has this name
                raise pyfuse3.FUSEError(errno.EEXIST) from None
            if not made:
                raise pyfuse3.FUSEError(errno.EEXIST)
            node = self.table.for_path(path, DIR)
            node.lookups += 1
            return self._attr(node)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        with fuse_errors("rmdir"):
            self._writable()
            path = self._child_path(self._node(parent_inode), name)
            found = self._stat_path(path)
            if found is False:
                raise pyfuse3.FUSEError(errno.ENOENT)
            if found is not True:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            try:
                await self._write(self.engine.rmdir, path)
            except UsageError:
                raise pyfuse3.FUSEError(errno.ENOTEMPTY) from None
            node = self.table.at(path)
            if node is not None:
                self.table.detach(node)
            await self._keep_parent(path)

    # ---- files: open, read ---------------------------------------------------------------
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext = None
                   ) -> pyfuse3.FileInfo:
        with fuse_errors("open"):
            node = self._node(inode)
            if node.kind == DIR:
                raise pyfuse3.FUSEError(errno.EISDIR)
            writes = (flags & os.O_ACCMODE) != os.O_RDONLY
            if node.ino == STATS:
                if writes:
                    raise pyfuse3.FUSEError(errno.EACCES)
                return self._opened(node, Handle(node, data=self.stats.render()), direct=True)
            if node.kind not in (FILE, HASHFILE):
                raise pyfuse3.FUSEError(errno.EACCES)
            if writes:
                self._writable()
                if node.kind != FILE:
                    raise pyfuse3.FUSEError(errno.EROFS)
                staged = node.staged or self._stage(node)
                staged.handles += 1
                return self._opened(node, Handle(node, staged=staged, writes=True))
            if node.staged is not None:  # a reader of a file being written sees the writes
                node.staged.handles += 1
                return self._opened(node, Handle(node, staged=node.staged), direct=True)
            m = self._manifest(node)
            keep = node.cached_fid == m.file_id
            node.cached_fid = m.file_id
            node.extra["meta"] = meta.FileMeta(m.file_id, m.size, getattr(
                node.extra.get("meta"), "mtime_ns", m.created_ns))
            return self._opened(node, Handle(node, manifest=m, offs=m.offsets()), keep=keep)

    def _opened(self, node: Inode, h: Handle, keep: bool = False, direct: bool = False
                ) -> pyfuse3.FileInfo:
        node.opens += 1
        fi = pyfuse3.FileInfo(fh=self._fh(h))
        fi.keep_cache = keep
        fi.direct_io = direct
        return fi

    def _stage(self, node: Inode) -> StagedFile:
        """Start staging a FILE for writing (from its stored version, if any)."""
        assert self._stage_dir is not None
        try:
            base = self.engine.resolve(node.path)
        except NotFoundError:
            base = None
        staged = StagedFile(self._stage_dir, node.path, base)
        node.staged = staged
        node.cached_fid = None
        return staged

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        with fuse_errors("read"):
            h = self.handles.get(fh)
            if not isinstance(h, Handle):
                raise pyfuse3.FUSEError(errno.EBADF)
            self.stats.reads += 1
            if h.data is not None:
                out = h.data[off:off + size]
            elif h.staged is not None:
                if not h.staged.loaded:
                    await trio.to_thread.run_sync(h.staged.load, self.engine)
                out = h.staged.read(off, size)
            else:
                out = await self._read_chunks(h, off, size)
            self.stats.bytes_read += len(out)
            return out

    async def _read_chunks(self, h: Handle, off: int, size: int) -> bytes | memoryview:
        m = h.manifest
        assert m is not None
        end = min(m.size, off + size)
        if off >= end:
            return b""
        first = bisect.bisect_right(h.offs, off) - 1
        last = bisect.bisect_left(h.offs, end)
        frontier = h.offs[h.ahead] if h.ahead < len(h.offs) else m.size
        # sequential: this read starts where one ended, or (the kernel's read-ahead requests
        # arrive out of order) inside the window already being fetched
        if off == h.last_end or (h.ahead and h.offs[min(h.ahead_from, len(h.offs) - 1)] <= off
                                 <= frontier):
            if frontier - end < READ_AHEAD // 2:  # refill in large batches, not per read
                start = max(h.ahead, last)
                h.ahead_from = first
                h.ahead = bisect.bisect_left(h.offs, min(m.size, end + READ_AHEAD))
                self.source.prefetch(m, start, h.ahead)
        else:  # a jump: no read-ahead until reads are sequential again
            h.ahead = h.ahead_from = 0
        h.last_end = end
        parts = await self.source.chunks(m, first, last)
        pos = h.offs[first]
        out: list[bytes | memoryview] = []
        for data in parts:  # slices are views: the bytes are copied once, by the join
            lo, hi = max(off - pos, 0), min(end - pos, len(data))
            if lo < hi:
                out.append(memoryview(data)[lo:hi] if (lo, hi) != (0, len(data)) else data)
            pos += len(data)
        return out[0] if len(out) == 1 else b"".join(out)

    # ---- files: create, write, close -----------------------------------------------------------
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        with fuse_errors("create"):
            self._writable()
            path = self._child_path(self._node(parent_inode), name, creating=True)
            found = self._stat_path(path)
            if found is True:
                raise pyfuse3.FUSEError(errno.EISDIR)
            node = self.table.for_path(path, FILE)
            if node.staged is None:
                self._stage(node)
                if isinstance(found, meta.FileMeta):  # O_CREAT on a file the kernel did not know
                    assert node.staged is not None
                    node.staged.dirty = False
            assert node.staged is not None
            node.staged.handles += 1
            node.lookups += 1
            fi = self._opened(node, Handle(node, staged=node.staged, writes=True))
            return fi, self._staged_attr(node)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        with fuse_errors("write"):
            h = self.handles.get(fh)
            if not isinstance(h, Handle) or h.staged is None or not h.writes:
                raise pyfuse3.FUSEError(errno.EBADF)
            if not h.staged.loaded:
                await trio.to_thread.run_sync(h.staged.load, self.engine)
            return h.staged.write(off, buf)

    async def _commit(self, node: Inode, staged: StagedFile) -> None:
        """Store a staged file under its name if it changed."""
        if not staged.dirty or staged.unlinked:
            return
        if not staged.loaded:
            await trio.to_thread.run_sync(staged.load, self.engine)
        result = await self._write(staged.commit, self.engine)
        if result is not None:
            self.stats.puts += 1
            self.stats.bytes_put += result.size
            if node.staged is staged or node.path == staged.name:
                node.fid = result.file_id
                node.extra["meta"] = meta.FileMeta(result.file_id, result.size, time.time_ns())

    async def flush(self, fh: int) -> None:
        with fuse_errors("flush"):
            h = self.handles.get(fh)
            if isinstance(h, Handle) and h.writes and h.staged is not None:
                await self._commit(h.node, h.staged)

    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.flush(fh)

    async def release(self, fh: int) -> None:
        h = self.handles.pop(fh, None)
        if not isinstance(h, Handle):
            return
        node = h.node
        try:
            if h.staged is not None:
                h.staged.handles -= 1
                if h.staged.handles <= 0:
                    try:
                        with fuse_errors("release"):
                            await self._commit(node, h.staged)
                    finally:
                        if node.staged is h.staged:
                            node.staged = None
                        h.staged.discard()
        finally:
            self.table.closed(node)

    # ---- names: unlink, rename -------------------------------------------------------------
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        with fuse_errors("unlink"):
            self._writable()
            path = self._child_path(self._node(parent_inode), name)
            node = self.table.at(path)
            found = self._stat_path(path)
            if found is True:
                raise pyfuse3.FUSEError(errno.EISDIR)
            if found is False and (node is None or node.staged is None):
                raise pyfuse3.FUSEError(errno.ENOENT)
            if found is not False:
                await self._write(self.engine.rm, path)
            if node is not None:
                if node.staged is not None:
                    node.staged.unlinked = True
                self.table.detach(node)
            await self._keep_parent(path)

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        with fuse_errors("rename"):
            self._writable()
            if flags & pyfuse3.RENAME_EXCHANGE:
                raise pyfuse3.FUSEError(errno.EINVAL)
            old = self._child_path(self._node(parent_inode_old), name_old)
            new = self._child_path(self._node(parent_inode_new), name_new, creating=True)
            if old == new:
                return
            src, dst = self._stat_path(old), self._stat_path(new)
            moving = self.table.at(old)
            staged_only = src is False and moving is not None and moving.staged is not None
            if src is False and not staged_only:
                raise pyfuse3.FUSEError(errno.ENOENT)
            if dst is not False and flags & pyfuse3.RENAME_NOREPLACE:
                raise pyfuse3.FUSEError(errno.EEXIST)
            if src is True:
                if isinstance(dst, meta.FileMeta):
                    raise pyfuse3.FUSEError(errno.ENOTDIR)
                try:
                    await self._write(move_folder, self.index, old, new)
                except UsageError as e:
                    code = errno.ENOTEMPTY if "not empty" in str(e) else errno.EINVAL
                    raise pyfuse3.FUSEError(code) from None
            else:
                if dst is True:
                    raise pyfuse3.FUSEError(errno.EISDIR)
                if not staged_only:
                    await self._write(self.engine.mv, old, new)
                elif isinstance(dst, meta.FileMeta):
                    await self._write(self.engine.rm, new)
            self.table.move(old, new)
            await self._keep_parent(old)

    # ---- the rest ------------------------------------------------------------------------------
    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for ino, n in inode_list:
            self.table.forget(ino, n)

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = os.statvfs(self.engine.home.root)
        out = pyfuse3.StatvfsData()
        out.f_bsize, out.f_frsize = st.f_bsize, st.f_frsize
        out.f_blocks, out.f_bfree, out.f_bavail = st.f_blocks, st.f_bfree, st.f_bavail
        with self.index.read() as txn:
            files = txn.stat(self.index.db["manifests"])["entries"]
        out.f_files, out.f_ffree, out.f_favail = files + st.f_ffree, st.f_ffree, st.f_favail
        out.f_namemax = 255
        return out

    async def finish(self) -> None:
        """At unmount: store every staged file that changed, drop every temp file."""
        for node in list(self.table.by_ino.values()):
            staged = node.staged
            if staged is None:
                continue
            try:
                await self._commit(node, staged)
            except Exception as e:  # noqa: BLE001 - kept on disk, said in the log
                log.error("storing %s at unmount failed: %s", staged.name, e)
            finally:
                node.staged = None
                staged.discard()
