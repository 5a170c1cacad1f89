"""`Cloud`: a store and the backends its packs fan out to.

It starts the backend hub on first use, knows how much of each backend this
node's packs fill, and serves the store's `RemoteReads` hook (chunks that are not
local are read from the backends that hold their pack, best first).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from mosaic.backends.errors import BackendError, NotFound

from ..store.home import Config, Home
from ..store.index import Index
from ..store.keys import Keys
from ..store.packs import LocalPacks
from ..store.store import Store
from .credentials import load_secrets
from .hub import BackendHub
from .placement import BackendSpace

log = logging.getLogger("mosaic")


def _quota(options: dict) -> int | None:
    q = options.get("quota")
    return int(q) if q else None


class Cloud:
    """The fan-out layer over one store. Closing it stops the hub, not the store."""

    def __init__(self, store: Store):
        self.store = store
        self._hub: BackendHub | None = None
        self._hub_lock = threading.Lock()
        store.remote = self

    # the store's parts, as the cloud modules use them
    @property
    def index(self) -> Index:
        return self.store.index

    @property
    def local(self) -> LocalPacks:
        return self.store.local

    @property
    def keys(self) -> Keys:
        return self.store.keys

    @property
    def home(self) -> Home:
        return self.store.home

    @property
    def config(self) -> Config:
        return self.store.config

    def close(self) -> None:
        """Stop the backend hub (if it was started)."""
        if self._hub is not None:
            self._hub.close()
            self._hub = None
        if self.store.remote is self:
            self.store.remote = None

    @property
    def hub(self) -> BackendHub | None:
        """The backend hub (started on first use); None without backends."""
        if self._hub is None and self.store.config.backends:
            with self._hub_lock:
                if self._hub is None:
                    self._hub = BackendHub(self.store.config.backends,
                                           load_secrets(self.store.home, self.store.keys))
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
        """Ranges of a pack from each backend that holds it (except `skip`), best first."""
        rec = self.store.index.get_pack(pid)
        hub = self.hub
        if rec is None or not rec.locations or hub is None:
            return
        for b in sorted(rec.locations, key=hub.latency):
            if b not in hub.backends or (skip and b in skip):
                continue
            try:
                yield hub.get_range(b, pid, offset, length), b
            except NotFound as e:
                self.store.note_bad_copy(pid, f"backend {b}", f"missing ({e})")
            except BackendError as e:  # unreachable or failing: try the next copy, repair nothing
                log.info("backend %s failed a read: %s", b, e)
