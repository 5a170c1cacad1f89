"""Errors of the node package. Each carries the CLI exit code it maps to.

Exit codes (documented in the README):
  0 success; 1 "no" answer (`exists`) or not found; 2 usage or bad input;
  3 integrity failure (corrupt chunk, hash mismatch); 4 key or passphrase error;
  5 storage error (disk full, I/O error, backend down); 6 node home missing or
  not initialised; 7 busy (locked by another process).
"""

from __future__ import annotations


class MosaicError(Exception):
    """Root of every error the node raises on purpose; `str()` is a one-line message."""

    exit_code = 2


class UsageError(MosaicError):
    """Bad arguments or malformed input (a malformed hash, bad size, ...)."""

    exit_code = 2


class ConflictError(UsageError):
    """The target is in the way: a file or a non-empty folder already has that name."""


class NotFoundError(MosaicError):
    """An unknown hash or name."""

    exit_code = 1


class IntegrityError(MosaicError):
    """Stored data failed authentication or its hash check."""

    exit_code = 3


class KeyFileError(MosaicError):
    """A wrong passphrase, a missing or damaged key file."""

    exit_code = 4


class StorageError(MosaicError):
    """The disk or a backend could not store or return data (full disk, I/O error)."""

    exit_code = 5


class CapacityError(StorageError):
    """The backends have no room for the required number of copies."""

    exit_code = 5


class BackendPending(StorageError):
    """The local work is done and durable, but a backend step did not finish; it stays queued.

    `results` carries what the operation did (for the caller to report).
    """

    exit_code = 8

    def __init__(self, message: str, results: object = None):
        super().__init__(message)
        self.results = results


class HomeError(MosaicError):
    """The node home is missing, not initialised, or already initialised."""

    exit_code = 6


class BusyError(MosaicError):
    """Another process holds a lock this operation needs."""

    exit_code = 7


class ImportFormatError(UsageError):
    """A manifest dump that is malformed or does not fit this node."""
