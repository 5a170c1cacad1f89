"""`FolderOps`: listing folders (opendir, readdir, releasedir), one index page at a time.

A listing carries every entry's attributes (readdirplus), read in the page's one read
transaction. `/.by-hash` lists nothing (its files are found by lookup only) and
`/.mosaic` lists its one file, `stats`.
"""

from __future__ import annotations

import errno

import pyfuse3

from ..errors import NotFoundError
from ..store.tree import Child, list_level
from . import meta
from .core import RESERVED, FSCore
from .errmap import fuse_errors
from .handles import DirHandle
from .inodes import BY_HASH, CONTROL, DIR, FILE, ROOT, STATS, Inode

PAGE = 256             # entries per index page while listing a folder


class FolderOps(FSCore):
    """The handlers that list folders."""

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
