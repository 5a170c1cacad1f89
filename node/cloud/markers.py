"""Backend identity markers: the marker object on each backend, and the wrapper that checks it.

`mosaic backend add` leaves a marker object (`mosaic-backend.json`:
a random backend ID, the node key ID, a format version) on the backend and records the
backend ID in the backend's options (`backend_id`). The hub wraps every backend whose
config has one in `IdentityChecked`, which reads the marker before the first operation
and again at most every IDENTITY_RECHECK_S; a missing or different marker (a NAS share
that is not mounted, the wrong bucket) makes every operation raise BackendUnreachable
(a TransientError: never NotFound, never "empty"). Backends configured without a
`backend_id` are used unchecked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import trio

from mosaic.backends import Backend
from mosaic.backends.base import ObjectInfo, Usage
from mosaic.backends.errors import NotFound, TransientError

from ..errors import UsageError

log = logging.getLogger(__name__)

MARKER_NAME = "mosaic-backend.json"  # the backend's identity marker (docs/format.md)
MARKER_FORMAT = "mosaic-backend"
MARKER_VERSION = 1
MARKER_MAX = 64 << 10  # the most read of a marker
IDENTITY_RECHECK_S = 60.0  # a reachable backend's marker is read again at most this often
UNREACHABLE_RECHECK_S = 1.0  # an unreachable one is asked again after this long


class BackendUnreachable(TransientError):
    """The backend's identity marker is missing, unreadable or another backend's: the
    folder or bucket there is not the backend this node configured (not mounted?)."""


class ForeignBackend(UsageError):
    """`backend add` of a backend whose marker belongs to another key (another cluster)."""


def new_marker(key_id: str) -> dict:
    """A new backend's marker: a random backend ID, the node key ID, the format version."""
    return {"format": MARKER_FORMAT, "version": MARKER_VERSION,
            "backend_id": os.urandom(16).hex(), "key_id": key_id}


def marker_bytes(doc: dict) -> bytes:
    """The marker object's bytes (JSON, one line)."""
    return (json.dumps(doc, sort_keys=True) + "\n").encode()


def parse_marker(raw: bytes) -> dict | None:
    """The marker's fields if `raw` is a marker this version reads, else None."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if (not isinstance(doc, dict) or doc.get("format") != MARKER_FORMAT
            or not isinstance(doc.get("version"), int) or doc["version"] < 1
            or not isinstance(doc.get("backend_id"), str) or not doc["backend_id"]
            or not isinstance(doc.get("key_id"), str)):
        return None
    return doc


async def read_marker(backend: Backend) -> dict | None:
    """The backend's marker; None if there is none. UsageError if an object of that name
    is not a marker."""
    try:
        raw = await backend.get(MARKER_NAME, 0, MARKER_MAX)
    except NotFound:
        return None
    doc = parse_marker(raw)
    if doc is None:
        raise UsageError(f"backend {backend.name}: {MARKER_NAME} there is not a Mosaic backend "
                         "marker; refusing to use it")
    return doc


async def claim_backend(backend: Backend, key_id: str) -> tuple[str, bool]:
    """(backend ID, adopted) for `backend add`: the ID in the backend's marker if it has one
    of this key (a second node sharing the backend adopts it), else a new marker's.

    ForeignBackend (exit 2) if the marker belongs to another key."""
    doc = await read_marker(backend)
    adopted = doc is not None
    if doc is None:
        await backend.put(MARKER_NAME, marker_bytes(new_marker(key_id)))
        doc = await read_marker(backend)  # whoever wrote last (two adds at once) wins
        if doc is None:
            raise BackendUnreachable(f"backend {backend.name}: the marker just written "
                                     "cannot be read back")
    if doc["key_id"] != key_id:
        raise ForeignBackend(f"backend {backend.name} belongs to another key (key id "
                             f"{doc['key_id']}, this node's is {key_id}); not adding it")
    return doc["backend_id"], adopted


class IdentityChecked(Backend):
    """`inner`, used only while its marker names `backend_id`.

    The marker is read before the first operation and again once IDENTITY_RECHECK_S have
    passed (one small get); concurrent operations share one read. While it is missing or
    another backend's, every operation raises BackendUnreachable (asked again after
    UNREACHABLE_RECHECK_S); the change is logged once as a warning."""

    def __init__(self, inner: Backend, backend_id: str, recheck: float = IDENTITY_RECHECK_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.name = inner.name
        self.kind = inner.kind
        self.backend_id = backend_id
        self.recheck = recheck
        self.checks = 0  # marker reads made
        self.reachable: bool | None = None  # None: not checked yet
        self._clock = clock
        self._ok_until = -math.inf
        self._failure: str | None = None
        self._failed_until = -math.inf
        self._lock = trio.Lock()

    def __getattr__(self, attr: str) -> Any:
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)  # the retry wrapper's counters and the like

    def __repr__(self) -> str:
        return f"IdentityChecked({self.inner!r}, backend_id={self.backend_id})"

    async def _verify(self) -> None:
        self.checks += 1
        where = f"backend {self.name} is unreachable"
        try:
            raw = await self.inner.get(MARKER_NAME, 0, MARKER_MAX)
        except NotFound:
            raise BackendUnreachable(f"{where}: its marker {MARKER_NAME} is missing "
                                     "(not mounted? wrong folder or bucket?)") from None
        except TransientError as e:
            raise BackendUnreachable(f"{where}: {e}") from None
        doc = parse_marker(raw)
        if doc is None:
            raise BackendUnreachable(f"{where}: {MARKER_NAME} there is not a Mosaic backend marker")
        if doc["backend_id"] != self.backend_id:
            raise BackendUnreachable(f"{where}: its marker names backend {doc['backend_id']}, "
                                     f"not {self.backend_id} (another backend mounted there?)")

    async def ensure(self) -> None:
        """Return if the marker was seen recently, else read it; BackendUnreachable if wrong."""
        if self._clock() < self._ok_until:
            return
        async with self._lock:
            now = self._clock()
            if now < self._ok_until:
                return
            if self._failure is not None and now < self._failed_until:
                raise BackendUnreachable(self._failure)
            try:
                await self._verify()
            except BackendUnreachable as e:
                self._failure, self._failed_until = str(e), self._clock() + UNREACHABLE_RECHECK_S
                if self.reachable is not False:
                    log.warning("%s", e)
                self.reachable = False
                raise
            self._ok_until = self._clock() + self.recheck
            if self.reachable is False:
                log.warning("backend %s is reachable again (its marker is back)", self.name)
            self.reachable, self._failure = True, None

    async def put(self, name: str, data: bytes) -> None:
        """Put, once the marker is confirmed."""
        await self.ensure()
        await self.inner.put(name, data)

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Get, once the marker is confirmed."""
        await self.ensure()
        return await self.inner.get(name, offset, length)

    async def stat(self, name: str) -> ObjectInfo:
        """Stat, once the marker is confirmed."""
        await self.ensure()
        return await self.inner.stat(name)

    async def delete(self, name: str) -> None:
        """Delete, once the marker is confirmed."""
        await self.ensure()
        await self.inner.delete(name)

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """List, once the marker is confirmed."""
        await self.ensure()
        return await self.inner.list(prefix)

    async def usage(self) -> Usage:
        """Usage, once the marker is confirmed."""
        await self.ensure()
        return await self.inner.usage()

    async def sweep_temp(self, older_than: float = 3600.0) -> int:
        """Sweep, once the marker is confirmed."""
        await self.ensure()
        return await self.inner.sweep_temp(older_than)

    async def close(self) -> None:
        """Close the inner backend."""
        await self.inner.close()
