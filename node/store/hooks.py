"""What the store asks of the layers above it, declared here so the store imports none of them.

The cloud layer implements `RemoteReads` (chunks that are not local come from
backends) and `PackPlacement` (which backends a sealed pack goes to). The third
hook, `ChangeLog` (replicated, versioned writes, implemented by the cluster
layer), is declared beside the index that calls it. A store opened with no hooks
is a purely local store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol


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
