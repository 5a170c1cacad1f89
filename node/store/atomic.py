"""Writing a file whole or not at all: the one temp-file-and-rename helper.

    1. a temp file is created with O_CREAT | O_EXCL | O_NOFOLLOW, an unpredictable
       name and its final mode (a key file is 0600 from its first moment);
    2. the content is written and fsynced;
    3. the temp file is renamed over the destination (or hard-linked to it,
       for "create unless it exists");
    4. the folder is fsynced, so the rename itself survives a crash.

The destination is never opened: a symlink, FIFO or device standing there is
replaced as a directory entry, not followed or written into. On any error the
temp file is removed and the old destination is left as it was.

`atomic_write` is the whole thing for bytes in memory; `TempFile` is the same
steps for writers that stream (packs, restored files).
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Iterable

__all__ = ["TEMP_MARK", "TempFile", "atomic_write", "create_new", "fsync_dir", "write_fully"]

TEMP_MARK = ".mosaic-"
"""Every temp file's name contains this (`.<destination name>.mosaic-<16 hex>`)."""

_NAME_MAX = 255
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TRIES = 3


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename (or link, or unlink) in it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_fully(fd: int, data: bytes | bytearray | memoryview) -> int:
    """Write every byte of `data` at `fd`'s position (os.write may write fewer)."""
    view = memoryview(data).cast("B")
    n = len(view)
    while view:
        done = os.write(fd, view)
        if done <= 0:  # pragma: no cover - a regular file never returns 0 for a non-empty write
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[done:]
    return n


_serial = itertools.count()
_prefix = [b"", -1]  # this process's random prefix and the pid it was drawn in (forks draw anew)


def _temp_suffix() -> str:
    """16 hex: 6 random bytes drawn once a process, then a 2-byte serial; O_EXCL guards the rest."""
    if _prefix[1] != os.getpid():
        _prefix[:] = [os.urandom(6), os.getpid()]
    return (_prefix[0] + (next(_serial) & 0xFFFF).to_bytes(2, "big")).hex()


def _temp_name(stem: str) -> str:
    name = f".{stem}{TEMP_MARK}{_temp_suffix()}"
    if len(os.fsencode(name)) > _NAME_MAX:  # a long destination name: keep only the mark
        name = f"{TEMP_MARK}{_temp_suffix()}"
    return name


class TempFile:
    """A new, exclusively created temp file in `folder`; `commit` puts it in place.

    Use it as a context manager: leaving the block without a commit (an error,
    an early return) closes and removes the temp file.
    """

    def __init__(self, folder: str | os.PathLike[str], mode: int = 0o600, stem: str = "") -> None:
        self.folder = os.fspath(folder)
        self.fd = -1
        for attempt in range(_TRIES):
            self.path = os.path.join(self.folder, _temp_name(stem))
            try:
                self.fd = os.open(self.path, _FLAGS, mode)
                break
            except FileExistsError:  # planted, or the serial wrapped onto a live temp file
                _prefix[1] = -1  # draw a new random prefix for the next name
                if attempt == _TRIES - 1:
                    raise
        self.done = False

    @classmethod
    def beside(cls, dest: str | os.PathLike[str], mode: int = 0o600) -> TempFile:
        """A temp file in `dest`'s folder (so the rename is atomic), named after it."""
        head, tail = os.path.split(os.fspath(dest))
        return cls(head or ".", mode, tail)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append every byte of `data`."""
        return write_fully(self.fd, data)

    def _close(self, durable: bool) -> None:
        fd, self.fd = self.fd, -1
        try:
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    def commit(self, dest: str | os.PathLike[str], durable: bool = True) -> None:
        """fsync, close and rename over `dest` (which must be in the same file system),
        then fsync `dest`'s folder. `durable=False` skips both fsyncs (restored files:
        atomic for readers, not promised to survive a power cut)."""
        self._close(durable)
        os.rename(self.path, dest)
        self.done = True
        if durable:
            fsync_dir(os.path.dirname(os.fspath(dest)) or ".")

    def commit_new(self, dest: str | os.PathLike[str]) -> bool:
        """Put the file at `dest` only if nothing is there (atomic with hard links,
        checked-then-renamed where the file system has none); False if it existed."""
        self._close(True)
        try:
            os.link(self.path, dest, follow_symlinks=False)
        except FileExistsError:
            return False  # __exit__/discard removes the temp file
        except OSError as e:  # no hard links here (FAT, some FUSE/network file systems)
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS,
                               errno.EXDEV, errno.EMLINK):
                raise
            if os.path.lexists(dest):
                return False
            os.rename(self.path, dest)
            self.done = True
        self.discard()
        fsync_dir(os.path.dirname(os.fspath(dest)) or ".")
        return True

    def discard(self) -> None:
        """Close and remove the temp file (if it is still there); never raises OSError."""
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1
        if not self.done:
            self.done = True
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __enter__(self) -> TempFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def atomic_write(path: str | os.PathLike[str], data: bytes | bytearray | memoryview | Iterable[bytes],
                 mode: int = 0o644, durable: bool = True) -> None:
    """Replace `path` with `data` (bytes, or an iterable of bytes parts) whole or not at all.

    The temp file has `mode` (less the umask) from its creation; see the module doc.
    """
    with TempFile.beside(path, mode) as t:
        if isinstance(data, bytes | bytearray | memoryview):
            t.write(data)
        else:
            for part in data:
                t.write(part)
        t.commit(path, durable)


def create_new(path: str | os.PathLike[str], data: bytes, mode: int) -> bool:
    """Durably create `path` holding `data` with exactly `mode`, unless it exists (False)."""
    with TempFile.beside(path, mode) as t:
        os.fchmod(t.fd, mode)  # exactly `mode`, whatever the umask
        t.write(data)
        return t.commit_new(path)
