"""`Cloud`: a store and the backends its packs fan out to.

It uses a backend hub: the one it is given (the daemon opens it on its own
trio loop), or else one it starts on first use in a helper thread (the CLI and
the API). It knows how much of each backend this node's packs fill, and serves
the store's `RemoteReads` hook (chunks that are not local are read from the
backends that hold their pack, best first).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mosaic.backends.errors import BackendError, NotFound

from ..errors import StorageError
from ..store.store import Store, StoreParts
from .credentials import load_secrets
from .placement import BackendSpace

if TYPE_CHECKING:
    from .hub import BackendHub


log = logging.getLogger("mosaic")


def _quota(options: dict) -> int | None:
    q = options.get("quota")
    return int(q) if q else None


class Cloud(StoreParts):
    """The fan-out layer over one store. Closing it stops the hub it started, not the store
    (nor a hub it was given: its opener closes that)."""

    def __init__(self, store: Store, hub: BackendHub | None = None):
        self.store = store
        self._hub = hub
        self._own_hub = False
        self._given_hub = hub is not None
        self._hub_lock = threading.Lock()
        self.explain_read_failures = False  # see remote_copies
        store.remote = self

    def close(self) -> None:
        """Stop the backend hub if this cloud started it."""
        with self._hub_lock:
            hub, self._hub = self._hub, None
            if hub is not None and self._own_hub:
                hub.close()
        if self.store.remote is self:
            self.store.remote = None

    @property
    def hub(self) -> BackendHub | None:
        """The backend hub (the given one, or one started on first use); None without backends."""
        if not self.store.config.backends:
            return None
        if self._hub is None:
            with self._hub_lock:
                if self._hub is None:
                    if self._given_hub:
                        raise StorageError("the backends were closed")
                    from .hub import BackendHub  # trio only where backends are used
                    self._hub = BackendHub(self.store.config.backends,
                                           load_secrets(self.store.home, self.store.keys))
                    self._own_hub = True
        return self._hub

    def backend_spaces(self) -> dict[str, BackendSpace]:
        """Per backend: bytes of this node's packs stored or queued there, and its quota."""
        idx = self.store.index
        used = {b.name: 0 for b in self.store.config.backends}
        with idx.read() as txn:
            sizes: dict[bytes, int] = {}
            for pid, rec in idx.iter_packs(txn):
                sizes[pid] = rec.size
                for b in rec.locations:
                    if b in used:
                        used[b] += rec.size
            for pid, b in idx.iter_uploads(txn):
                if b in used:
                    used[b] += sizes.get(pid, 0)
        return {b.name: BackendSpace(b.name, used[b.name], _quota(b.options))
                for b in self.store.config.backends}

    def remote_copies(self, pid: bytes, offset: int, length: int,
                      skip: set[str] | None = None) -> Iterator[tuple[bytes, str]]:
        """Ranges of a pack from each backend that holds it (except `skip`), best first.

        A pack with no recorded location (imported before its owner uploaded it) is looked
        for on every backend; the bytes are authenticated by the chunk decode. With
        `explain_read_failures` set (the CLI's get and cat), a pack this node sealed of which
        no copy could be read raises StorageError naming each backend asked and why (missing,
        unreachable) rather than the reader's generic "no backend holds it". It is off
        otherwise: a daemon serving peers, or a pack sealed elsewhere, gives up quietly so
        the chunk can be wanted from peers instead."""
        rec = self.store.index.get_pack(pid)
        hub = self.hub
        if rec is None or hub is None:
            return
        probing = not rec.locations
        names = list(hub.backends) if probing else list(rec.locations)
        failures: list[str] = []
        yielded = False
        for b, more in hub.ranked(b for b in names
                                  if b in hub.backends and not (skip and b in skip)):
            # a backend that hangs is given up on while another copy is left to try
            stall = hub.stall_limit(b, length) if more else None
            try:
                blob = hub.get_range(b, pid, offset, length, stall)
            except NotFound as e:
                if not probing:
                    self.store.note_bad_copy(pid, f"backend {b}", f"missing ({e})")
                    failures.append(f"backend {b}: missing")
                continue
            except BackendError as e:  # unreachable or failing: try the next copy, repair nothing
                log.info("backend %s failed a read: %s", b, e)
                failures.append(str(e) if b in str(e) else f"backend {b}: {e}")
                continue
            yielded = True
            yield blob, b
        if failures and not yielded and self.explain_read_failures and rec.owner:
            raise StorageError(f"pack {pid.hex()[:16]} is not stored locally and its copies "
                               "cannot be read: " + "; ".join(failures))
