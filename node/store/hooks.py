"""What the store asks of the layers above it, declared here so the store imports none of them.

The cloud layer implements `RemoteReads` (chunks that are not local come from
backends) and `PackPlacement` (which backends a sealed pack goes to); the cluster
layer implements `ChangeLog` (replicated, versioned writes). A store opened with
no hooks is a purely local store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import lmdb

    from .index import Index, Manifest


class RemoteReads(Protocol):
    """Copies of pack ranges that live elsewhere (backends)."""

    def remote_copies(self, pid: bytes, offset: int, length: int,
                      skip: set[str] | None = None) -> Iterator[tuple[bytes, str]]:
        """(bytes, where) for each other copy of `length` bytes at `offset` of a pack, best first."""
        ...


class PackPlacement(Protocol):
    """Where a sealed pack goes; called by ingest from its sealer thread."""

    def targets(self, size: int) -> list[str]:
        """The backends a new pack of `size` bytes is queued for; raises CapacityError if none fit."""
        ...

    def placed(self, pid: bytes, size: int, targets: list[str]) -> None:
        """The pack and its upload entries are committed: count the space, start uploads."""
        ...

    def backends(self) -> Iterable[str]:
        """Every backend a pack may have been queued for (used to undo a put)."""
        ...


class ChangeLog(Protocol):
    """Replication's view of index writes, made in the writer's transaction."""

    def log_manifest(self, index: Index, txn: lmdb.Transaction, m: Manifest) -> None:
        """A manifest was added."""
        ...

    def log_have(self, index: Index, txn: lmdb.Transaction, fid: bytes, have: bool) -> None:
        """This node now holds (or no longer holds) a whole file."""
        ...

    def write_names(self, index: Index, txn: lmdb.Transaction,
                    changes: list[tuple[str, bytes | None]]
                    ) -> list[tuple[str, bytes | None, bytes | None]]:
        """Versioned name writes; returns (name, old, new) per real change."""
        ...
