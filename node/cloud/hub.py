"""The node's side of its backends: a trio loop in a helper thread, uploads and fetches.

Backends are async (trio). The node's API is synchronous, so the node runs one
trio event loop in a background thread (`BackendHub`) that owns every backend
connection, and calls into it with `trio.from_thread.run`. The daemon, which
runs inside trio already, can use the backends directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from mosaic.backends import Backend, open_backend
from mosaic.backends.errors import BackendError, NotFound
from mosaic.backends.retry import RetryingBackend

from ..errors import StorageError
from ..store.home import BackendConfig

T = TypeVar("T")
FAILURE_PENALTY_S = 30.0  # a failed read ranks its backend behind every working one


def pack_object_name(pid: bytes) -> str:
    """The object name of a pack on a backend: `packs/ab/abcdef...`."""
    h = pid.hex()
    return f"packs/{h[:2]}/{h}"


class BackendHub:
    """A trio loop in a helper thread that owns the configured backends."""

    def __init__(self, configs: tuple[BackendConfig, ...], secrets: dict[str, dict], parallel: int = 8):
        self.configs = configs
        self.secrets = secrets
        self.parallel = parallel
        self.backends: dict[str, Backend] = {}
        self._latency: dict[str, float] = {}
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, name="mosaic-backends", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # noqa: BLE001 - reported to the opener
            self._error = self._error or e
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        try:
            for c in self.configs:
                inner = open_backend(c.kind, c.name, dict(c.options), self.secrets.get(c.name))
                # Few, quick retries: a read has other copies to try, and the upload
                # queue retries later anyway.
                self.backends[c.name] = RetryingBackend(inner, attempts=2, max_delay=1.0)
        except BackendError as e:
            self._error = StorageError(f"cannot open backend: {e}")
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        for b in self.backends.values():
            with trio.move_on_after(10):
                await b.close()

    def run(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run an async function on the hub's loop from a plain thread."""
        assert self._token is not None
        return trio.from_thread.run(afn, *args, trio_token=self._token)

    def close(self) -> None:
        """Close every backend and stop the loop."""
        if self._token is not None and self._stop is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join(timeout=30)

    # ---- operations --------------------------------------------------------
    def latency(self, backend: str) -> float:
        """Measured latency of small reads (EWMA, seconds; 0 before the first one)."""
        return self._latency.get(backend, 0.0)

    def _observe(self, backend: str, seconds: float) -> None:
        old = self._latency.get(backend)
        self._latency[backend] = seconds if old is None else 0.8 * old + 0.2 * seconds

    def get_range(self, backend: str, pid: bytes, offset: int, length: int) -> bytes:
        """A byte range of a pack on one backend (a failure counts as a very slow read)."""
        t = time.monotonic()
        try:
            data = self.run(self.backends[backend].get, pack_object_name(pid), offset, length)
        except BaseException:
            self._observe(backend, max(FAILURE_PENALTY_S, time.monotonic() - t))
            raise
        self._observe(backend, time.monotonic() - t)
        return data

    def put_many(self, jobs: list[tuple[str, bytes, Callable[[], bytes]]],
                 done: Callable[[str, bytes, BaseException | None], None],
                 parallel: int | None = None) -> None:
        """Upload packs in parallel: each job is (backend, pack_id, loader of the bytes).

        `done(backend, pack_id, error)` is called from the hub thread after each job.
        """
        async def one(limiter: trio.CapacityLimiter, bname: str, pid: bytes,
                      load: Callable[[], bytes]) -> None:
            async with limiter:
                err: BaseException | None = None
                try:
                    data = await trio.to_thread.run_sync(load)
                    await self.backends[bname].put(pack_object_name(pid), data)
                except (BackendError, OSError) as e:
                    err = e
                await trio.to_thread.run_sync(done, bname, pid, err)

        async def all_jobs() -> None:
            limiter = trio.CapacityLimiter(parallel or self.parallel)
            async with trio.open_nursery() as n:
                for bname, pid, load in jobs:
                    n.start_soon(one, limiter, bname, pid, load)

        self.run(all_jobs)

    def fetch_many(self, jobs: list[tuple[bytes, list[str]]],
                   done: Callable[[bytes, bytes | None, str, list[str]], None]) -> None:
        """Fetch whole packs in parallel, each from the first backend of its list that works.

        `done(pack_id, data_or_None, backend_used, errors)` runs in a worker thread per pack,
        so it may verify and write to disk.
        """
        async def one(limiter: trio.CapacityLimiter, pid: bytes, sources: list[str]) -> None:
            async with limiter:
                errors: list[str] = []
                for b in sources:
                    try:
                        data = await self.backends[b].get(pack_object_name(pid))
                    except NotFound:
                        errors.append(f"{b}: missing")
                        continue
                    except BackendError as e:
                        errors.append(f"{b}: {e}")
                        continue
                    ok = await trio.to_thread.run_sync(done, pid, data, b, errors)
                    if ok:
                        return
                await trio.to_thread.run_sync(done, pid, None, "", errors)

        async def all_jobs() -> None:
            limiter = trio.CapacityLimiter(self.parallel)
            async with trio.open_nursery() as n:
                for pid, sources in jobs:
                    n.start_soon(one, limiter, pid, sources)

        self.run(all_jobs)
