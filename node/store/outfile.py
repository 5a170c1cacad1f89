"""Writing restored files: temp file in the same folder, then rename, so a reader
never sees half a file and a failure leaves nothing behind (atomic.TempFile: the
destination is replaced, never opened, so a symlink there is not followed).

Restored files are not fsynced (like `cp`): a restore that returned is complete
for every reader, and one cut by a crash is simply run again.

`writing_into` is the other way, for a destination that is not a regular file (a
device such as /dev/null, a FIFO): like `cp`, it is opened and written into, never
replaced by a regular file."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import StorageError, UsageError
from .atomic import TempFile

Progress = Callable[[int], None]
IOV_MAX = 1024


def write_all(fd: int, parts: list[bytes]) -> int:
    """Write `parts` at `fd`'s position with as few `writev` calls as the OS allows."""
    total = 0
    for k in range(0, len(parts), IOV_MAX):
        group = parts[k:k + IOV_MAX]
        want = sum(len(p) for p in group)
        done = os.writev(fd, group)
        if done < want:  # short writes are rare (signals, quotas); finish by hand
            rest = memoryview(b"".join(group))[done:]
            while rest:
                rest = rest[os.write(fd, rest):]
        total += want
    return total


def _write_error(dest: str | Path, e: OSError) -> Exception:
    if e.errno == errno.ENOSPC:
        return StorageError(f"disk full while writing {dest}")
    if e.errno == errno.EISDIR:
        return UsageError(f"{dest} is a directory")
    return StorageError(f"cannot write {dest}: {e.strerror or e}")


@contextlib.contextmanager
def _replacing(dest: str) -> Iterator[int]:
    """A descriptor on a temp file beside `dest`, renamed over it if the block succeeds.

    On any error the temp file is removed; OS errors become one-line Mosaic errors.
    """
    try:
        with TempFile.beside(dest, 0o666) as t:
            yield t.fd
            t.commit(dest, durable=False)
    except OSError as e:
        raise _write_error(dest, e) from None


@contextlib.contextmanager
def writing_into(dest: str | Path) -> Iterator[BinaryIO]:
    """An existing device or FIFO at `dest`, opened for writing (no O_CREAT: nothing new
    is made), as a buffered binary stream; OS errors become one-line Mosaic errors.

    Opening a FIFO waits for a reader, as `cp` does. A regular file found there instead
    (the destination changed since it was looked at) is refused: those are replaced
    atomically (`write_atomically`), never written in place.
    """
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise _write_error(dest, e) from None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StorageError(f"{dest} changed while it was being written (now a regular file)")
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            yield f
    except OSError as e:
        raise _write_error(dest, e) from None


def write_atomically(dest: Path, chunks: Iterator[bytes] | Callable[[int], int],
                     progress: Progress | None = None, folder_ready: bool = False) -> int:
    """Write to `dest` via a temp file in the same folder; nothing is left on error.

    `chunks` is the content in order, or a function that fills the open file
    descriptor it is given and returns the number of bytes written.
    """
    if not folder_ready:
        if dest.is_dir():
            raise UsageError(f"{dest} is a directory")
        dest.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with _replacing(str(dest)) as fd:
        if callable(chunks):
            n = chunks(fd)
        else:
            for c in chunks:
                n += write_all(fd, [c])
                if progress:
                    progress(len(c))
    return n


def write_parts(dest: str, parts: list[bytes]) -> int:
    """`write_atomically` for content already in memory, in four system calls."""
    with _replacing(dest) as fd:
        return write_all(fd, parts)


def make_folders(folders: Iterable[str | os.PathLike[str]]) -> None:
    """Create the folders and whatever is missing above them, parents first, one mkdir each
    (a tree restore makes thousands), or say in one line what stands in the way."""
    todo: set[str] = set()
    for f in map(os.fspath, folders):
        f = f or "."  # dirname of a bare file name
        while f not in todo and not os.path.isdir(f):
            todo.add(f)
            up = os.path.dirname(f)
            if up in (f, ""):  # the root, or the working folder
                break
            f = up
    for folder in sorted(todo, key=lambda p: p.count(os.sep)):
        try:
            os.mkdir(folder)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise UsageError(f"{folder} (or a folder above it) exists and is not a folder") from None
        except NotADirectoryError:
            raise UsageError(f"a folder above {folder} exists and is not a folder") from None
        except OSError as e:
            raise StorageError(f"cannot create {folder}: {e.strerror or e}") from None


def _shown(p: Path) -> str:
    """A path for an error line: control characters and undecodable bytes escaped."""
    return repr(os.fsdecode(p))[1:-1]


def output_target(dest: Path) -> tuple[str, Path]:
    """How a restored file is written to `dest`, as `cp` does:

    ("replace", path): a new or regular file, written to a temp file renamed over `path`;
    for a symlink to a regular file `path` is its target, so the link stays.
    ("into", path): an existing device or FIFO (or a symlink to one), opened and written into;
    it is never replaced by a regular file.
    UsageError for a folder, a socket or a dangling symlink.
    """
    try:
        st = dest.stat()
    except (FileNotFoundError, NotADirectoryError):
        if dest.is_symlink():
            raise UsageError(f"not writing through dangling symlink {_shown(dest)}") from None
        return "replace", dest  # a file in the way of a folder is reported when writing
    except OSError as e:
        raise UsageError(f"cannot write {_shown(dest)}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{_shown(dest)} is a directory")
    if stat.S_ISSOCK(st.st_mode):
        raise UsageError(f"{_shown(dest)} is a socket")
    if stat.S_ISREG(st.st_mode):
        return "replace", Path(os.path.realpath(dest)) if dest.is_symlink() else dest
    return "into", dest
