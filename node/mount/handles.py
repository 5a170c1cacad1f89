"""What an open file or folder of the mount keeps between requests: `Handle`, `DirHandle`."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyfuse3

from ..store.records import Manifest
from ..store.tree import Child
from .inodes import Inode
from .staging import StagedFile


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
