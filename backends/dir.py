"""`DirBackend`: objects are files under a local (or mounted) folder.

Object `packs/ab/abcd` is the file `<path>/packs/ab/abcd`. `put` writes a
hidden temp file (`.tmp-<random>`) in the target folder, fsyncs it, renames it
over the target with `os.replace` and fsyncs the folder, so a crash leaves the
old value or the new one, never a torn file. All blocking I/O runs in worker
threads under a per-backend `trio.CapacityLimiter`.

The root folder itself is never created implicitly: only `create_root()` (which
`mosaic backend add` calls) makes it. While it is missing (a NAS that is not
mounted, a removed disk) every operation raises `RootMissing`, a TransientError:
puts are not written to the local disk in its place, and gets, stats, lists and
deletes report the backend unreachable rather than "not found" or "empty".
Folders below an existing root are created as needed.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

from ._common import (
    TEMP_PREFIX,
    check_range,
    could_contain,
    folder_of,
    is_object_name,
    prefix_can_match,
)
from .base import Backend, ObjectInfo, Usage, validate_name
from .errors import BackendError, NotFound, PermanentError, QuotaExceeded, TransientError

T = TypeVar("T")

_QUOTA_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# errors that may clear up on their own (busy disks, network file systems, fd limits)
_TRANSIENT_ERRNOS = {
    errno.EIO,
    errno.EAGAIN,
    errno.EINTR,
    errno.EBUSY,
    errno.ETIMEDOUT,
    errno.ESTALE,
    errno.EMFILE,
    errno.ENFILE,
    errno.ENOMEM,
    errno.ENOLCK,
    errno.ECONNRESET,
    errno.EHOSTDOWN,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
    errno.ENETUNREACH,
}
# a path component is a file or a folder where the other was expected: no such object
_MISSING_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}

_CHUNK = 1 << 20


class RootMissing(TransientError):
    """The backend's root folder does not exist (not mounted?): the backend is unreachable."""


def _write_all(fd: int, data: memoryview) -> None:
    """Write every byte of `data` to `fd` (a module function so tests can break it)."""
    while data:
        n = os.write(fd, data[:_CHUNK])
        data = data[n:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirBackend(Backend):
    """Objects stored as files under `path`; `fsync=False` trades durability for speed."""

    kind = "dir"
    #: os.replace swaps names atomically: readers never see a gap
    atomic_overwrite = True

    def __init__(self, name: str, path: str | os.PathLike[str], fsync: bool = True,
                 max_threads: int = 8, quota: int | None = None) -> None:
        if quota is not None and quota < 0:
            raise ValueError("quota must be >= 0")
        self.name = name
        self.root = Path(path).absolute()
        self.fsync = fsync
        #: bytes this backend may hold (None: unlimited); puts beyond it raise QuotaExceeded
        self.quota = quota
        self._used: int | None = None  # running total while a quota is enforced
        self._used_lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(max_threads)
        self._known_dirs: set[Path] = set()  # folders known to exist (and be durable)
        self._closed = False

    # -- helpers -------------------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.root / validate_name(name)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _read(self, fn: Callable[..., T], *args: object) -> T:
        """`_run` for a read: abandoned (left to finish in its thread) if the caller is
        cancelled, so a folder on a hung network mount cannot hold a reader that has
        another copy to try. Writes are always waited for."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter,
                                             abandon_on_cancel=True)

    def _root_missing(self, op: str, name: str) -> RootMissing:
        what = f"{op} {name!r}" if name else op
        return RootMissing(f"dir {self.name}: {what}: folder {self.root} is missing "
                           "(not mounted?)")

    def _check_root(self, op: str, name: str) -> None:
        """RootMissing unless the root folder exists (in a worker thread)."""
        if not self.root.is_dir():
            raise self._root_missing(op, name)

    def _in_root(self, op: str, name: str, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in a worker thread; a "no such file" there while the root folder is
        missing is RootMissing (the whole backend is away), not a missing object."""
        try:
            return fn(*args)
        except OSError as e:
            if e.errno in _MISSING_ERRNOS and not self.root.is_dir():
                raise self._root_missing(op, name) from e
            raise

    def _error(self, exc: OSError, op: str, name: str, missing_ok: bool = False) -> BackendError:
        code = exc.errno
        what = f"dir {self.name}: {op} {name!r}: {exc.strerror or exc}"
        if code in _MISSING_ERRNOS and missing_ok:
            return NotFound(what)
        if code in _QUOTA_ERRNOS:
            return QuotaExceeded(what)
        if code in _TRANSIENT_ERRNOS:
            return TransientError(what)
        return PermanentError(what)

    def _ensure_dir(self, folder: Path) -> None:
        """Create `folder` and missing parents below the root; fsync each new folder's parent.

        RootMissing if the root itself is missing: it is never created here."""
        if folder in self._known_dirs:
            return
        self._make_dirs(folder, below_root=True)
        self._known_dirs.add(folder)

    def _make_dirs(self, folder: Path, below_root: bool) -> None:
        """Create `folder` and its missing parents, fsyncing each new folder's parent;
        with `below_root`, RootMissing rather than creating the root or anything above it."""
        missing: list[Path] = []
        p = folder
        while not p.is_dir():
            if below_root and p == self.root:
                raise self._root_missing("put", "")
            missing.append(p)
            if p == p.parent:
                if below_root:
                    raise self._root_missing("put", "")
                break
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                if not d.is_dir():
                    raise
            if self.fsync:
                _fsync_dir(d.parent)

    # -- blocking implementations (worker threads) ---------------------------

    def _reserve(self, path: Path, size: int) -> int:
        """Account for writing `size` bytes at `path` under the quota; the delta."""
        if self.quota is None:
            return 0
        with self._used_lock:
            if self._used is None:
                self._used = sum(s for _, s in self._walk(""))
            try:
                old = os.stat(path).st_size
            except (FileNotFoundError, NotADirectoryError):
                old = 0
            delta = size - old
            if delta > 0 and self._used + delta > self.quota:
                raise QuotaExceeded(
                    f"dir {self.name}: put {path.name!r}: quota of {self.quota} bytes "
                    f"exceeded ({self._used} used, {size} more)"
                )
            self._used += delta
            return delta

    def _unreserve(self, delta: int) -> None:
        if delta and self._used is not None:
            with self._used_lock:
                self._used -= delta

    def _put_sync(self, path: Path, data: bytes) -> None:
        delta = self._reserve(path, len(data))
        try:
            self._write_sync(path, data)
        except BaseException:
            self._unreserve(delta)
            raise

    def _write_sync(self, path: Path, data: bytes) -> None:
        folder = path.parent
        self._ensure_dir(folder)
        tmp = folder / f"{TEMP_PREFIX}{os.urandom(8).hex()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            # someone removed the folder under us: forget it and try once more
            self._known_dirs.discard(folder)
            self._ensure_dir(folder)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                _write_all(fd, memoryview(data).cast("B"))
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if self.fsync:
            _fsync_dir(folder)

    @staticmethod
    def _get_sync(path: Path, offset: int, length: int | None) -> bytes:
        with open(path, "rb", buffering=0) as f:
            st = os.fstat(f.fileno())
            if not stat_mod.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file")
            end = st.st_size if length is None else min(st.st_size, offset + length)
            if offset >= end:
                return b""
            want = end - offset
            buf = bytearray(want)
            view = memoryview(buf)
            got = 0
            while got < want:
                n = os.preadv(f.fileno(), [view[got:]], offset + got)
                if n == 0:  # the file shrank under us (only by outside meddling)
                    break
                got += n
            return bytes(view[:got])

    @staticmethod
    def _stat_sync(path: Path) -> int:
        st = os.stat(path)
        if not stat_mod.S_ISREG(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file")
        return st.st_size

    def _delete_sync(self, path: Path) -> None:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            self._check_root("delete", path.relative_to(self.root).as_posix())
            return
        if stat_mod.S_ISDIR(st.st_mode):
            return  # a folder is not an object: nothing to delete
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        self._unreserve(st.st_size)

    def _walk(self, prefix: str) -> list[tuple[str, int]]:
        """(name, size) of every object starting with `prefix`, unsorted."""
        self._check_root("list", prefix)
        out: list[tuple[str, int]] = []
        start = folder_of(prefix)
        stack = [start]
        while stack:
            rel = stack.pop()
            try:
                it = os.scandir(self.root / rel if rel else self.root)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue  # temp files and anything hidden
                    child = f"{rel}/{entry.name}" if rel else entry.name
                    try:
                        if entry.is_dir():
                            if could_contain(child, prefix):
                                stack.append(child)
                        elif entry.is_file() and child.startswith(prefix) and is_object_name(child):
                            out.append((child, entry.stat().st_size))
                    except FileNotFoundError:
                        continue  # removed while we walked
        return out

    def _sweep_sync(self, older_than: float) -> int:
        self._check_root("sweep", "")
        cutoff = time.time() - older_than
        removed = 0
        stack = [self.root]
        while stack:
            try:
                it = os.scandir(stack.pop())
            except (FileNotFoundError, NotADirectoryError):
                continue
            with it:
                for e in it:
                    try:
                        if e.name.startswith(TEMP_PREFIX):
                            st = e.stat(follow_symlinks=False)
                            if stat_mod.S_ISREG(st.st_mode) and st.st_mtime <= cutoff:
                                os.unlink(e.path)
                                removed += 1
                        elif not e.name.startswith(".") and e.is_dir(follow_symlinks=False):
                            stack.append(Path(e.path))
                    except FileNotFoundError:
                        continue
        return removed

    def _create_root_sync(self) -> None:
        self._make_dirs(self.root, below_root=False)

    # -- Backend -------------------------------------------------------------

    async def create_root(self) -> None:
        """Create the root folder (and missing parents) if needed: the one place it is made.

        `mosaic backend add` calls this; every other operation treats a missing root as
        the backend being unreachable (RootMissing)."""
        try:
            await self._run(self._create_root_sync)
        except OSError as e:
            raise self._error(e, "create", "") from e

    async def put(self, name: str, data: bytes) -> None:
        """Write a temp file, fsync, rename over `name`, fsync the folder."""
        path = self._path(name)
        try:
            await self._run(self._in_root, "put", name, self._put_sync, path, data)
        except OSError as e:
            raise self._error(e, "put", name) from e

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read the byte range with positional reads (only the bytes asked for)."""
        check_range(offset, length)
        path = self._path(name)
        try:
            return await self._read(self._in_root, "get", name, self._get_sync, path, offset,
                                    length)
        except OSError as e:
            raise self._error(e, "get", name, missing_ok=True) from e

    async def stat(self, name: str) -> ObjectInfo:
        """Size of the file; NotFound if missing or a folder."""
        path = self._path(name)
        try:
            size = await self._read(self._in_root, "stat", name, self._stat_sync, path)
        except OSError as e:
            raise self._error(e, "stat", name, missing_ok=True) from e
        return ObjectInfo(name, size)

    async def delete(self, name: str) -> None:
        """Unlink the file; missing is fine. Empty folders are left in place."""
        path = self._path(name)
        try:
            await self._run(self._delete_sync, path)
        except OSError as e:
            raise self._error(e, "delete", name) from e

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Walk only the folders that can hold names starting with `prefix`."""
        if not prefix_can_match(prefix):
            return []
        try:
            found = await self._run(self._walk, prefix)
        except OSError as e:
            raise self._error(e, "list", prefix) from e
        return [ObjectInfo(n, s) for n, s in sorted(found)]

    async def usage(self) -> Usage:
        """Sum of file sizes from one directory walk (no sorting, no objects built).

        `quota` is the configured quota (None: unlimited), not the disk size.
        """
        try:
            found = await self._run(self._walk, "")
        except OSError as e:
            raise self._error(e, "usage", "") from e
        used = sum(s for _, s in found)
        if self.quota is not None:
            with self._used_lock:
                self._used = used  # resync the running total with the disk
        return Usage(used=used, objects=len(found), quota=self.quota)

    async def sweep_temp(self, older_than: float = 3600.0) -> int:
        """Unlink `.tmp-*` files (from crashes mid-put) older than `older_than` seconds."""
        try:
            return await self._run(self._sweep_sync, older_than)
        except OSError as e:
            raise self._error(e, "sweep", "") from e

    async def close(self) -> None:
        """Nothing to release; safe to call twice."""
        self._closed = True
