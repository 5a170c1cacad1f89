"""RetryingBackend, against a scripted fake backend (unit tests)."""

from __future__ import annotations

import random
from collections import deque

import pytest
import trio

from mosaic.backends import (
    Backend,
    NotFound,
    ObjectInfo,
    PermanentError,
    QuotaExceeded,
    RetryingBackend,
    TransientError,
)


class Scripted(Backend):
    """Raises the queued errors in order, then succeeds."""

    kind = "fake"

    def __init__(self, *errors: Exception) -> None:
        self.name = "fake"
        self.script = deque(errors)
        self.calls = 0
        self.closed = 0

    async def _step(self) -> None:
        self.calls += 1
        if self.script:
            raise self.script.popleft()

    async def put(self, name: str, data: bytes) -> None:
        await self._step()

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        await self._step()
        return b"data"

    async def stat(self, name: str) -> ObjectInfo:
        await self._step()
        return ObjectInfo(name, 4)

    async def delete(self, name: str) -> None:
        await self._step()

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        await self._step()
        return [ObjectInfo("a", 1)]

    async def close(self) -> None:
        self.closed += 1


async def test_retries_transient_then_succeeds(autojump_clock: trio.abc.Clock) -> None:
    inner = Scripted(TransientError("t1"), TransientError("t2"))
    b = RetryingBackend(inner, attempts=5, base_delay=0.5, max_delay=2.0)
    start = trio.current_time()
    assert await b.get("x") == b"data"
    assert inner.calls == 3
    assert b.errors["TransientError"] == 2
    assert b.errors["retries"] == 2
    assert b.errors["gave_up"] == 0
    assert trio.current_time() - start <= 0.5 + 1.0  # full jitter: at most the caps
    assert b.last_error == "t2"


async def test_gives_up_after_attempts(autojump_clock: trio.abc.Clock) -> None:
    inner = Scripted(*[TransientError(f"t{i}") for i in range(10)])
    b = RetryingBackend(inner, attempts=4, base_delay=0.1, max_delay=1.0)
    with pytest.raises(TransientError, match="t3"):
        await b.put("x", b"1")
    assert inner.calls == 4
    assert b.error_counts() == {"TransientError": 4, "retries": 3, "gave_up": 1}


@pytest.mark.parametrize("exc", [PermanentError("p"), QuotaExceeded("q")])
async def test_permanent_errors_are_not_retried(exc: Exception) -> None:
    inner = Scripted(exc)
    b = RetryingBackend(inner, attempts=5)
    with pytest.raises(type(exc)):
        await b.list()
    assert inner.calls == 1
    assert b.errors[type(exc).__name__] == 1
    assert b.errors["retries"] == 0


async def test_not_found_passes_through_uncounted() -> None:
    inner = Scripted(NotFound("n"))
    b = RetryingBackend(inner)
    with pytest.raises(NotFound):
        await b.stat("x")
    assert inner.calls == 1
    assert sum(b.errors.values()) == 0


async def test_other_exceptions_pass_through() -> None:
    inner = Scripted(ValueError("caller bug"))
    b = RetryingBackend(inner)
    with pytest.raises(ValueError):
        await b.get("x", -1)
    assert inner.calls == 1


async def test_every_operation_is_wrapped(autojump_clock: trio.abc.Clock) -> None:
    for op in ("put", "get", "stat", "delete", "list", "usage"):
        inner = Scripted(TransientError("t"))
        b = RetryingBackend(inner, attempts=2)
        args = {"put": ("x", b"1"), "get": ("x",), "stat": ("x",), "delete": ("x",)}.get(op, ())
        await getattr(b, op)(*args)
        assert inner.calls == 2, op


async def test_cancellation_interrupts_backoff(autojump_clock: trio.abc.Clock) -> None:
    inner = Scripted(*[TransientError("t")] * 10)
    b = RetryingBackend(inner, attempts=10, base_delay=100, max_delay=100)
    with trio.move_on_after(1) as cs:
        await b.get("x")
    assert cs.cancelled_caught


def test_delay_is_full_jitter_and_capped() -> None:
    b = RetryingBackend(Scripted(), base_delay=0.1, max_delay=5.0, rng=random.Random(1))
    for attempt in range(12):
        cap = min(5.0, 0.1 * 2**attempt)
        ds = [b.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= cap for d in ds)
        assert max(ds) > cap * 0.8  # spread over the whole range


async def test_forwards_name_kind_and_close() -> None:
    inner = Scripted()
    async with RetryingBackend(inner) as b:
        assert (b.name, b.kind) == ("fake", "fake")
    await b.close()
    assert inner.closed == 2


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RetryingBackend(Scripted(), attempts=0)


async def test_private_error_subclasses_count_under_public_kinds(
    autojump_clock: trio.abc.Clock,
) -> None:
    from mosaic.backends._http import NoReply

    inner = Scripted(NoReply("cut"), QuotaExceeded("full"))
    b = RetryingBackend(inner, attempts=3)
    with pytest.raises(QuotaExceeded):
        await b.put("x", b"1")
    assert b.error_counts() == {"TransientError": 1, "retries": 1, "QuotaExceeded": 1}
