"""`NameOps`: changing the name tree (mkdir, rmdir, unlink, rename).

Each change is one index write (core.py's `_write`). A folder that loses its last entry
is kept, as a file system would; a name being written but not stored yet (staged only)
can be removed or renamed too.
"""

from __future__ import annotations

import errno

import pyfuse3

from ..errors import UsageError
from ..store.tree import folder_exists, move_folder
from . import meta
from .core import FSCore
from .errmap import fuse_errors
from .inodes import DIR


class NameOps(FSCore):
    """The handlers that make, remove and move names."""

    async def _keep_parent(self, path: str) -> None:
        """Keep a folder that just lost its last entry (as a file system would)."""
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if not parent:
            return
        with self.index.read() as txn:
            if folder_exists(self.index, parent, txn):
                return
        await self._write(self.engine.mkdir, parent)

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
