"""Files open for writing, staged in a local temp file (rclone's "writes" cache mode).

A file opened for writing gets a temp file in HOME/tmp/mount (made with
O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600). An existing file's bytes are copied in only
when the first write or read needs them (a truncate to zero, as `cp` and `>` do,
needs none). Closing the file puts the temp file under its name (deduplicated);
fsync does it at once. The temp file goes once the last handle is released; if the
put failed it is kept and the log says where.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from ..cluster.engine import Engine
from ..store.ingest import PutResult
from ..store.records import Manifest

log = logging.getLogger("mosaic.mount")
COPY_BLOCK = 1 << 20


def staging_dir(engine: Engine) -> Path:
    """HOME/tmp/mount, made private if missing."""
    d = engine.home.root / "tmp" / "mount"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


class StagedFile:
    """One file being written: its temp file, its name, and whether it differs from the store."""

    def __init__(self, folder: Path, name: str, base: Manifest | None):
        self.name = name
        self.base = base            # the stored version it started from (None: a new file)
        self.handles = 0            # open file handles on this staged copy
        self.path = folder / f"{secrets.token_hex(12)}.part"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o600)
        self.loaded = base is None or base.size == 0
        self.dirty = base is None   # a new file is stored on close even if empty
        self.unlinked = False       # its name was removed while open: nothing to store
        self.failed = False

    def size(self) -> int:
        """The file's current size."""
        if not self.loaded:
            assert self.base is not None
            return self.base.size
        return os.fstat(self.fd).st_size

    def load(self, engine: Engine) -> None:
        """Copy the stored version in (a worker thread's job; checked against its hash)."""
        if self.loaded:
            return
        assert self.base is not None
        pos = 0
        for part in engine.read(self.base.file_id.hex()):
            view = memoryview(part)
            while view:
                n = os.pwrite(self.fd, view, pos)
                pos += n
                view = view[n:]
        self.loaded = True

    def truncate(self, size: int) -> None:
        """Set the size (the stored bytes must be loaded first unless size is 0)."""
        if size == 0:
            self.loaded = True
        os.ftruncate(self.fd, size)
        self.dirty = True

    def write(self, offset: int, data: bytes) -> int:
        n = os.pwrite(self.fd, data, offset)
        self.dirty = True
        return n

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def commit(self, engine: Engine) -> PutResult | None:
        """Store the temp file under its name if it changed (a worker thread's job)."""
        if not self.dirty or self.unlinked:
            return None
        try:
            result = engine.put(self.path, self.name)
        except BaseException:
            self.failed = True
            raise
        self.failed = False
        self.dirty = False
        self.base = engine.resolve(result.hash)
        return result

    def discard(self) -> None:
        """Close and delete the temp file (kept, with a log line, if a put failed)."""
        os.close(self.fd)
        if self.failed and self.dirty and not self.unlinked:
            log.error("could not store %s; its bytes are kept in %s", self.name, self.path)
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
