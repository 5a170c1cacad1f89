"""`RetryingBackend`: retry `TransientError` with capped exponential backoff.

Every backend operation is idempotent (put overwrites atomically, delete of a
missing object succeeds), so all of them may be retried. Delays use "full
jitter": a uniform draw in [0, min(max_delay, base_delay * 2**attempt)].
Errors are counted per kind (`error_counts()`), for tests and diagnostics.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from .base import Backend, ObjectInfo, Usage
from .errors import (
    BackendError,
    ConfigError,
    InvalidName,
    NotFound,
    PermanentError,
    QuotaExceeded,
    TransientError,
)

T = TypeVar("T")


_KINDS = (QuotaExceeded, InvalidName, ConfigError, PermanentError, TransientError)


def _kind(exc: BackendError) -> str:
    """The public error class an error counts under (private subclasses fold in)."""
    for cls in _KINDS:
        if isinstance(exc, cls):
            return cls.__name__
    return BackendError.__name__


class RetryingBackend(Backend):
    """Wraps `inner`; retries TransientError up to `attempts` tries in total.

    `errors` counts every error the inner backend raised, by class name
    (`TransientError`, `PermanentError`, `QuotaExceeded`, ...; NotFound is an
    answer, not a failure, and is not counted), plus `retries` (extra tries
    made) and `gave_up` (operations that failed after the last try).
    `last_error` is the message of the most recent error.
    """

    def __init__(
        self,
        inner: Backend,
        attempts: int = 5,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        *,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.inner = inner
        self.name = inner.name
        self.kind = inner.kind
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.errors: Counter[str] = Counter()
        self.last_error: str | None = None
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"RetryingBackend({self.inner!r}, attempts={self.attempts})"

    @property
    def atomic_overwrite(self) -> bool:
        """Whether the inner backend replaces values without a NotFound gap."""
        return bool(getattr(self.inner, "atomic_overwrite", True))

    def delay(self, attempt: int) -> float:
        """Sleep before retry number `attempt` (0-based): full jitter, capped."""
        cap = min(self.max_delay, self.base_delay * (2**attempt))
        return self._rng.uniform(0, cap)

    def error_counts(self) -> dict[str, int]:
        """A plain-dict copy of `errors`, for display."""
        return dict(self.errors)

    async def _retry(self, fn: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(self.attempts):
            try:
                return await fn()
            except NotFound:
                raise
            except BackendError as e:
                self.errors[_kind(e)] += 1
                self.last_error = str(e)
                if not isinstance(e, TransientError):
                    raise
                if attempt + 1 >= self.attempts:
                    self.errors["gave_up"] += 1
                    raise
                self.errors["retries"] += 1
                await trio.sleep(self.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def put(self, name: str, data: bytes) -> None:
        """Retried put."""
        await self._retry(lambda: self.inner.put(name, data))

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Retried get."""
        return await self._retry(lambda: self.inner.get(name, offset, length))

    async def stat(self, name: str) -> ObjectInfo:
        """Retried stat."""
        return await self._retry(lambda: self.inner.stat(name))

    async def delete(self, name: str) -> None:
        """Retried delete."""
        await self._retry(lambda: self.inner.delete(name))

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Retried list."""
        return await self._retry(lambda: self.inner.list(prefix))

    async def usage(self) -> Usage:
        """Retried usage (the inner backend's own, possibly cheaper, usage)."""
        return await self._retry(self.inner.usage)

    async def sweep_temp(self, older_than: float = 3600.0) -> int:
        """Retried sweep of stale temp objects."""
        return await self._retry(lambda: self.inner.sweep_temp(older_than))

    async def close(self) -> None:
        """Close the inner backend (once is enough, twice is safe)."""
        await self.inner.close()
