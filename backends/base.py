"""The `Backend` interface: named bytes on one storage service.

A backend knows nothing of chunks, keys or nodes. Names are short ASCII paths
(`packs/ab/abcdef...`); values are opaque bytes. Every method is async (trio);
backends built on blocking libraries run them in worker threads under a
capacity limiter.

Contract (checked by the shared conformance suite in tests/):
- `put` is atomic: a reader sees the whole new value or the old state, never a
  partial object; a failed or short upload leaves nothing visible. Overwrite is
  allowed and replaces the value.
- `get(name, offset, length)` returns `value[offset:offset+length]` clipped at
  the end (a range at or past the end gives b""); `length=None` reads to the end.
  A missing object raises `NotFound`.
- `stat` returns `ObjectInfo` or raises `NotFound`.
- `delete` of a missing object is not an error (idempotent, like S3).
- `list(prefix)` returns every object whose name starts with `prefix`, sorted by
  name, without temporary or hidden objects.
- `usage()` reports bytes and objects stored under this backend and its quota.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass

from .errors import InvalidName

_NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_.\-]*(/[a-z0-9_][a-z0-9_.\-]*)*$")


def validate_name(name: str) -> str:
    """Return `name` if it is a valid object name, else raise `InvalidName`.

    No crap in, no crap out: lowercase ASCII letters, digits, `_`, `-`, `.`,
    `/`-separated, no empty or dot-leading components, at most 512 characters.
    """
    if not isinstance(name, str) or len(name) > 512 or not _NAME_RE.match(name):
        raise InvalidName(f"invalid object name: {name!r}")
    return name


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its name and size in bytes."""

    name: str
    size: int


@dataclass(frozen=True)
class Usage:
    """Bytes and objects stored on a backend, and its quota (None: unlimited)."""

    used: int
    objects: int
    quota: int | None = None


class Backend(abc.ABC):
    """Named bytes on one storage service. See the module docstring for the contract."""

    #: the name the user gave this backend (`mosaic backend add KIND NAME ...`)
    name: str
    #: the kind: "dir", "s3", "webdav", "rclone"
    kind: str = ""

    @abc.abstractmethod
    async def put(self, name: str, data: bytes) -> None:
        """Store `data` under `name`, atomically; replace any old value."""

    @abc.abstractmethod
    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read `length` bytes at `offset` (to the end if None); NotFound if missing."""

    @abc.abstractmethod
    async def stat(self, name: str) -> ObjectInfo:
        """Size of `name`; NotFound if missing."""

    @abc.abstractmethod
    async def delete(self, name: str) -> None:
        """Remove `name`; a missing object is not an error."""

    @abc.abstractmethod
    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose name starts with `prefix`, sorted by name."""

    async def usage(self) -> Usage:
        """Bytes and objects stored; backends with a cheaper way override this."""
        objs = await self.list("")
        return Usage(used=sum(o.size for o in objs), objects=len(objs), quota=None)

    async def sweep_temp(self, older_than: float = 3600.0) -> int:
        """Remove temporary objects older than `older_than` seconds left behind by
        crashed or cancelled puts; return how many. Never touches real objects.
        Backends without temporary objects (S3) have nothing to do."""
        return 0

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads. Safe to call twice."""

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
