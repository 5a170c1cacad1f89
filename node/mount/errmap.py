"""Mosaic errors as errno values for the kernel: an integrity failure is EIO, never wrong bytes."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pyfuse3

from ..errors import (
    BusyError,
    CapacityError,
    IntegrityError,
    MosaicError,
    NotFoundError,
    StorageError,
    UsageError,
)

log = logging.getLogger("mosaic.mount")


def errno_of(e: BaseException) -> int:
    """The errno a failed operation answers with."""
    if isinstance(e, pyfuse3.FUSEError):
        return e.errno
    if isinstance(e, OSError) and e.errno:
        return e.errno
    if isinstance(e, NotFoundError):
        return errno.ENOENT
    if isinstance(e, CapacityError):
        return errno.ENOSPC
    if isinstance(e, BusyError):
        return errno.EBUSY
    if isinstance(e, UsageError):
        return errno.EINVAL
    return errno.EIO  # IntegrityError, StorageError, HomeError, anything unexpected


@contextmanager
def fuse_errors(what: str) -> Iterator[None]:
    """Turn any error raised inside into a FUSEError (logged unless it is a plain lookup miss)."""
    try:
        yield
    except pyfuse3.FUSEError:
        raise
    except (MosaicError, OSError) as e:
        code = errno_of(e)
        if isinstance(e, (IntegrityError, StorageError)):
            log.error("%s: %s", what, e)
        elif code != errno.ENOENT:
            log.info("%s: %s", what, e)
        raise pyfuse3.FUSEError(code) from None
    except Exception:
        log.exception("%s: internal error", what)
        raise pyfuse3.FUSEError(errno.EIO) from None
