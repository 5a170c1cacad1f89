"""`FileOps`: open files (open, read, create, write, flush, fsync, release, truncate).

A reader gets the version its name leads to at open (a manifest) and reads it through
reads.py; a writer gets a staged copy (staging.py), stored under the name on flush,
fsync, the last close, or at unmount (`finish`). A reader of a file being written
reads the staged copy.
"""

from __future__ import annotations

import errno
import os
import time

import pyfuse3
import trio

from ..errors import NotFoundError
from ..store.records import Manifest
from . import meta
from .core import FSCore
from .errmap import fuse_errors, log
from .handles import Handle
from .inodes import DIR, FILE, HASHFILE, STATS, Inode
from .reads import read_chunks
from .staging import StagedFile


class FileOps(FSCore):
    """The handlers of open files, and the staging of writes."""

    # ---- open, read ---------------------------------------------------------------------
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

    def _manifest(self, node: Inode) -> Manifest:
        """The stored version a name (or hash) leads to now."""
        if node.kind == FILE and not node.extra.get("detached"):
            return self.engine.resolve(node.path)
        m = self.index.get_manifest(node.fid or b"")
        if m is None:
            raise NotFoundError(f"no such file: {node.path}")
        return m

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
                out = await read_chunks(self.source, h, off, size)
            self.stats.bytes_read += len(out)
            return out

    # ---- create, write, truncate: staged ------------------------------------------------
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

    # ---- storing: flush, fsync, close, unmount --------------------------------------------
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
