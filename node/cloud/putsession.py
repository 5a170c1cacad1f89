"""A put session of the cloud layer: ingest into the store, place and upload packs, log the change.

`PutSession` holds the shared home lock, gives ingest a `QuotaPlacement` (which
backends each sealed pack goes to), starts each pack's upload as soon as it is
committed, and once the session closes appends the change to the index log on
the backends. When the backends cannot take the data, the put is undone and
nothing stays half-stored.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..errors import BackendPending, CapacityError, NotFoundError, StorageError, UsageError
from ..store.home import HomeLock, check_name
from ..store.ingest import Ingest, PendingPut, PutResult
from ..units import format_size
from .placement import BackendSpace, choose
from .uploads import BackgroundUploads

if TYPE_CHECKING:
    from .cloud import Cloud

Progress = Callable[[int], None]


class QuotaPlacement:
    """`copies` backends per pack, lowest fill first, within each backend's quota."""

    def __init__(self, spaces: dict[str, BackendSpace], copies: int,
                 on_placed: Callable[[bytes, list[str]], None] | None = None):
        self.spaces, self.copies, self.on_placed = spaces, copies, on_placed

    def targets(self, size: int) -> list[str]:
        """The backends for a new pack; CapacityError if fewer than `copies` have room."""
        targets = choose(list(self.spaces.values()), size, self.copies)
        if len(targets) < self.copies:
            free = sum((s.quota or 0) - s.used for s in self.spaces.values() if s.quota)
            raise CapacityError(f"not enough space on the backends for {self.copies} copies "
                                f"(about {format_size(max(free, 0))} free under the quotas)")
        return targets

    def placed(self, pid: bytes, size: int, targets: list[str]) -> None:
        """Count the pack against its backends and start its upload."""
        for b in targets:
            sp = self.spaces[b]
            self.spaces[b] = BackendSpace(sp.name, sp.used + size, sp.quota)
        if targets and self.on_placed is not None:
            self.on_placed(pid, targets)

    def backends(self) -> Iterable[str]:
        """Every backend a pack of this session may be queued for."""
        return self.spaces.keys()


class PutSession:
    """`with PutSession(cloud) as s: s.put_source(...)`; results are final once it closes.

    With `wait` (the default) the session ends once every new pack is stored on
    `copies` backends; otherwise uploads stay queued (`mosaic upload` sends them).
    """

    def __init__(self, cloud: Cloud, progress: Progress | None = None, wait: bool = True,
                 upload_progress: Progress | None = None):
        self.cloud, self.progress, self.wait = cloud, progress, wait
        self.upload_progress = upload_progress
        self.lock = HomeLock(cloud.home, exclusive=False)
        self.ing: Ingest | None = None
        self.uploads: BackgroundUploads | None = None
        self.pending: list[PendingPut] = []

    def __enter__(self) -> PutSession:
        self.lock.__enter__()
        copies = self.cloud.config.effective_copies()
        placement = None
        if copies:
            if self.wait:
                self.uploads = BackgroundUploads(self.cloud, self.upload_progress)
            placement = QuotaPlacement(self.cloud.backend_spaces(), copies,
                                       self.uploads.submit if self.uploads else None)
        self.ing = Ingest(self.cloud.store, self.progress, placement)
        return self

    def put_source(self, source: str | Path | bytes | BinaryIO,
                   name: str | None = None) -> PendingPut:
        """Queue one file (a path, bytes or a binary stream) under an optional name."""
        assert self.ing is not None
        names = (check_name(name),) if name else ()
        if isinstance(source, bytes | bytearray | memoryview):
            res = self.ing.put_stream(io.BytesIO(bytes(source)), names, len(source))
        elif isinstance(source, str | Path):
            try:
                with open(source, "rb") as f:
                    st = os.fstat(f.fileno())
                    regular = stat.S_ISREG(st.st_mode)
                    res = self.ing.put_stream(f, names, st.st_size if regular else None)
            except FileNotFoundError:
                raise NotFoundError(f"no such file: {source}") from None
            except IsADirectoryError:
                raise UsageError(f"{source} is a directory (use -r)") from None
            except PermissionError:
                raise UsageError(f"permission denied: {source}") from None
        else:
            res = self.ing.put_stream(source, names)
        self.pending.append(res)
        return res

    @property
    def results(self) -> list[PutResult]:
        """Every file's result, once the session has closed."""
        return [p.result() for p in self.pending]

    def _stop_uploads(self) -> None:
        if self.uploads is not None:
            self.uploads.cancel()

    def _backend_steps(self, ing: Ingest) -> StorageError | None:
        """Finish the uploads and append the change to the index copies.

        The local work is durable by now; a backend failure (other than a full
        backend) is returned, not raised, so the caller can report both.
        """
        failed: StorageError | None = None
        try:
            if self.uploads is not None:
                self.uploads.finish()
        except CapacityError:
            raise
        except StorageError as e:
            failed = e
        if self.cloud.config.backends and (ing.sealed or ing.name_changes):
            try:
                from .indexlog import save_changes  # only with backends: loaded on use
                save_changes(self.cloud)
            except StorageError as e:
                failed = failed or e
        return failed

    def __exit__(self, et: type | None, ev: BaseException | None, tb: object) -> None:
        ing = self.ing
        assert ing is not None
        try:
            if et is None:
                ing.close()
                pending = self._backend_steps(ing)
                if pending is not None:
                    raise BackendPending(str(pending) if str(pending).startswith("stored locally")
                                         else f"stored locally, but {pending}",
                                         results=[p.result() for p in self.pending])
            else:
                ing.abort()
                self._stop_uploads()
                if isinstance(ev, CapacityError):
                    raise ev
        except CapacityError as e:
            ing.abort()
            self._stop_uploads()
            for pid in ing.rollback():
                from .gc import delete_pack_everywhere
                delete_pack_everywhere(self.cloud, pid)
            raise CapacityError(f"{e}; nothing was stored") from None
        finally:
            self.lock.__exit__()
