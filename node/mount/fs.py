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

The handlers are grouped by what they serve, one mixin a module, all over the
state and helpers of `FSCore` (core.py): folder listings (folders.py), changes of
names (names.py), open files (files.py, reading through reads.py). This class adds
lookups, attributes, forget and statfs: the handlers about inodes and the mount.
"""

from __future__ import annotations

import errno
import os

import pyfuse3
import trio

from . import meta
from .core import RESERVED
from .errmap import fuse_errors
from .files import FileOps
from .folders import FolderOps
from .inodes import BY_HASH, CONTROL, DIR, FILE, HASHFILE, ROOT, STATS
from .names import NameOps


class MosaicFS(FolderOps, NameOps, FileOps):
    """The file system; one per mount."""

    supports_dot_lookup = True
    enable_writeback_cache = False

    def init(self) -> None:
        """The kernel's INIT is being answered: run `after_init` once the answer is in.

        Called inside the INIT handler, before libfuse replies; a task started now runs
        after the reply, which the kernel has processed by then (settings of the mount's
        backing device, such as its read-ahead, would be overwritten by INIT before).
        """
        if self.after_init is not None:
            self.nursery.start_soon(trio.to_thread.run_sync, self.after_init)

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
