"""The node's side of its backends: the trio loop that owns them, uploads and fetches.

Backends are async (trio); most of the engine is synchronous. A `BackendHub`
owns every backend connection on one trio loop, and synchronous code (always in
a plain or worker thread, never on that loop's own thread) calls into it with
`trio.from_thread.run` and the loop's token. There is one such loop per process:

- the CLI and the API start the hub's own loop in a helper thread named
  "mosaic-backends" (`BackendHub(configs, secrets)`);
- the daemon, which runs a trio loop already, opens the hub on that loop
  (`async with BackendHub.running(configs, secrets) as hub:`), and the engine
  code it runs in worker threads calls back into it the same way.

While an in-loop hub runs, starting a helper-thread hub in the same process
raises RuntimeError: a second loop would hold a second set of connections.

Backend identity (a marker object on each backend) is checked by markers.py.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import blake3
import trio

from mosaic.backends import Backend, open_backend
from mosaic.backends.errors import BackendError, NotFound, TransientError
from mosaic.backends.retry import RetryingBackend

from ..errors import StorageError
from ..store.home import BackendConfig
from .markers import IdentityChecked
from .objects import UNKNOWN_SIZE_LIMIT, CorruptCopy, pack_object_name  # noqa: F401

T = TypeVar("T")
FAILURE_PENALTY_S = 30.0  # a failed read ranks its backend behind every working one
# A range read that has another copy to fall back on gives up on a backend that has not
# answered within STALL_BASE_S + 4 x its usual latency (at most 1 s of it) + the range at
# STALL_MIN_RATE: a hung service (accepting connections, never answering) then costs a
# reader seconds, not the read timeouts and retries of every request (about 13 s on S3).
STALL_BASE_S = 2.0
STALL_MIN_RATE = 1 << 20  # bytes a second
CLOSE_TIMEOUT_S = 10.0
THREAD_NAME = "mosaic-backends"  # also the OS thread name (/proc/PID/task/TID/comm)
READ_PIECE = 16 << 20  # a whole object is read (and hashed) in ranged pieces of about this size

log = logging.getLogger(__name__)


_in_loop_lock = threading.Lock()
_in_loop_hubs = 0  # hubs open on a caller's trio loop in this process right now


class HubClosed(BackendError):
    """The hub was closed (or is closing) before or during the call."""


async def _within(stall_after: float | None, what: str, call: Awaitable[T]) -> T:
    """`await call`, or TransientError if it has not answered within `stall_after` s
    (None: wait as long as it takes). For reads that have another copy to try."""
    if stall_after is None:
        return await call
    with trio.move_on_after(stall_after):
        return await call
    raise TransientError(f"{what}: no answer within {stall_after:.1f} s (another copy is tried)")


async def _read_whole(backend: Backend, name: str, expected: int,
                      sink: Callable[[bytes], None] | None = None, keep: bool = True,
                      threads: trio.CapacityLimiter | None = None,
                      stall: Callable[[int], float] | None = None) -> tuple[bytes | None, int]:
    """(the object's bytes if `keep`, its size), read in ranged pieces of about READ_PIECE.

    Never asks for more than `expected` + 1 bytes in all, so an object larger than the
    index expects costs at most that much memory and transfer. `expected` <= 0 means
    unknown: the size is stat'ed first and refused above UNKNOWN_SIZE_LIMIT. Each piece
    goes to `sink` as it arrives (in a worker thread when `threads` is given). Raises
    CorruptCopy if the size is not the expected one. With `stall`, a request of n bytes
    that has not answered within `stall(n)` seconds raises TransientError.
    """
    def limit(n: int) -> float | None:
        return stall(n) if stall is not None else None

    what = f"backend {backend.name}"
    if expected <= 0:
        expected = (await _within(limit(0), what, backend.stat(name))).size
        if expected > UNKNOWN_SIZE_LIMIT:
            raise CorruptCopy(f"{name} is {expected} bytes, more than any pack")
    parts: list[bytes] = []
    got = 0
    while True:
        left = expected + 1 - got
        want = left if left <= READ_PIECE + READ_PIECE // 4 else READ_PIECE
        piece = await _within(limit(want), what, backend.get(name, got, want))
        if len(piece) > want:  # a backend must clip; never trust it to
            piece = piece[:want]
        got += len(piece)
        if got > expected:
            raise CorruptCopy(f"{name} is larger than the expected {expected} bytes")
        if piece:
            if sink is not None:
                if threads is not None and len(piece) > 1 << 20:
                    await trio.to_thread.run_sync(sink, piece, limiter=threads)
                else:
                    sink(piece)
            if keep:
                parts.append(piece)
        if len(piece) < want:  # the end
            break
    if got != expected:
        raise CorruptCopy(f"{name} is {got} bytes, not the expected {expected}")
    data = (parts[0] if len(parts) == 1 else b"".join(parts)) if keep else None
    return data, got


async def _read_pack(backend: Backend, pid: bytes, expected: int, keep: bool,
                     threads: trio.CapacityLimiter, stall: Callable[[int], float] | None = None
                     ) -> tuple[bytes | None, int]:
    """`_read_whole` of a pack, hashed piece by piece as it arrives; CorruptCopy unless the
    bytes match the pack ID."""
    hasher = blake3.blake3()
    name = pack_object_name(pid)
    data, size = await _read_whole(backend, name, expected, hasher.update, keep, threads, stall)
    if hasher.digest() != pid:
        raise CorruptCopy("content does not match its ID (corrupt)")
    return data, size


def _refuse_second_loop() -> None:
    """RuntimeError if a helper-thread hub would be a second trio loop (or block one)."""
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("a helper-thread BackendHub cannot start on a trio loop's thread: "
                           "open it on that loop with `BackendHub.running`")
    if _in_loop_hubs:
        raise RuntimeError("this process already owns its backends on a trio loop "
                           "(BackendHub.running): use that hub, not a second loop")


def _name_os_thread(name: str) -> None:
    """Show the calling thread's name in ps/top and /proc (Linux; elsewhere nothing)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/self/task/{threading.get_native_id()}/comm").write_text(name[:15])


def _limiters(parallel: int) -> tuple[trio.CapacityLimiter, trio.CapacityLimiter]:
    """(jobs at once, worker threads for their loaders and callbacks) of one batch.

    The threads are not the loop's default limiter's: in the daemon, the thread that
    called the batch holds one of those, and so may every other worker thread; a batch
    must never wait for them."""
    return trio.CapacityLimiter(parallel), trio.CapacityLimiter(parallel)


class BackendHub:
    """The configured backends, owned by one trio loop (a helper thread's, or the caller's)."""

    def __init__(self, configs: tuple[BackendConfig, ...], secrets: dict[str, dict],
                 parallel: int = 8, *, _helper_thread: bool = True):
        """Open the backends on a new trio loop in a helper thread (see `running` for the
        daemon's mode). RuntimeError inside a trio loop or beside an in-loop hub."""
        self.configs = configs
        self.secrets = secrets
        self.parallel = parallel
        self.backends: dict[str, Backend] = {}
        self._latency: dict[str, float] = {}
        self._token: trio.lowlevel.TrioToken | None = None
        self._calls: set[trio.CancelScope] = set()  # calls in flight (touched on the loop only)
        self._closing = False
        self._thread: threading.Thread | None = None
        self._stop: trio.Event | None = None
        if not _helper_thread:
            return
        _refuse_second_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, name=THREAD_NAME, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, configs: tuple[BackendConfig, ...], secrets: dict[str, dict],
                      parallel: int = 8) -> AsyncIterator[BackendHub]:
        """Open the backends on the running trio loop for the length of the block.

        Synchronous code in other threads (`trio.to_thread.run_sync` workers) uses the
        hub as usual; its calls run as tasks of this loop. On exit, calls still in
        flight fail with HubClosed and the backends are closed."""
        global _in_loop_hubs
        hub = cls(configs, secrets, parallel, _helper_thread=False)
        try:
            hub._open()
        except BaseException:
            with trio.CancelScope(shield=True):
                await hub._close_backends()
            raise
        hub._token = trio.lowlevel.current_trio_token()
        with _in_loop_lock:
            _in_loop_hubs += 1
        try:
            yield hub
        finally:
            with _in_loop_lock:
                _in_loop_hubs -= 1
            hub.stop()
            with trio.CancelScope(shield=True):
                await hub._close_backends()

    @property
    def in_loop(self) -> bool:
        """Whether the hub runs on its opener's loop (the daemon) rather than a helper thread."""
        return self._thread is None

    def _open(self) -> None:
        try:
            for c in self.configs:
                opts = dict(c.options)
                backend_id = opts.pop("backend_id", None)  # the hub's, not the backend's
                inner = open_backend(c.kind, c.name, opts, self.secrets.get(c.name))
                # Few, quick retries: a read has other copies to try, and the upload
                # queue retries later anyway.
                b: Backend = RetryingBackend(inner, attempts=2, max_delay=1.0)
                if backend_id:
                    b = IdentityChecked(b, str(backend_id))
                self.backends[c.name] = b
        except BackendError as e:
            raise StorageError(f"cannot open backend: {e}") from None

    async def _close_backends(self) -> None:
        for b in self.backends.values():
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                await b.close()

    def _thread_main(self) -> None:
        _name_os_thread(THREAD_NAME)
        try:
            trio.run(self._main)
        except BaseException as e:  # reported to the opener
            self._error = self._error or e
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        try:
            self._open()
        except StorageError as e:
            self._error = e
            self._ready.set()
            await self._close_backends()
            return
        self._ready.set()
        await self._stop.wait()
        self.stop()
        await self._close_backends()

    async def _call(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run one call on the hub's loop, cancelled (HubClosed) if the hub stops."""
        if self._closing:
            raise HubClosed("the backends are closed")
        scope = trio.CancelScope()
        self._calls.add(scope)
        try:
            with scope:
                return await afn(*args)
        finally:
            self._calls.discard(scope)
        raise HubClosed("the backends were closed during the call")

    def run(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run an async function on the hub's loop from a plain or worker thread (not the loop's)."""
        if self._token is None:
            raise HubClosed("the backends are not open")
        return trio.from_thread.run(self._call, afn, *args, trio_token=self._token)

    def stop(self) -> None:
        """On the hub's loop: fail new calls and cancel those in flight (each raises HubClosed)."""
        self._closing = True
        for scope in list(self._calls):
            scope.cancel()

    def close(self) -> None:
        """Stop a helper-thread hub: cancel its calls, close every backend, end its loop.
        (An in-loop hub closes when its `running` block ends.)"""
        t = self._thread
        if t is not None and self._token is not None and self._stop is not None and t.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            t.join(timeout=30)

    # ---- operations --------------------------------------------------------
    def latency(self, backend: str) -> float:
        """Measured latency of small reads (EWMA, seconds; 0 before the first one)."""
        return self._latency.get(backend, 0.0)

    def _observe(self, backend: str, seconds: float) -> None:
        old = self._latency.get(backend)
        self._latency[backend] = seconds if old is None else 0.8 * old + 0.2 * seconds

    def stall_limit(self, backend: str, length: int) -> float:
        """Seconds to wait for a range read of `length` bytes before trying another copy."""
        return STALL_BASE_S + 4 * min(self.latency(backend), 1.0) + length / STALL_MIN_RATE

    def ranked(self, names: Iterable[str]) -> list[tuple[str, bool]]:
        """`names` fastest first (`latency`), each with whether another copy follows it.
        Only a copy that has one after it gets a stall deadline; the last is waited for."""
        order = sorted(names, key=self.latency)
        return [(b, i < len(order) - 1) for i, b in enumerate(order)]

    def get_range(self, backend: str, pid: bytes, offset: int, length: int,
                  stall_after: float | None = None) -> bytes:
        """A byte range of a pack on one backend (a failure counts as a very slow read).

        With `stall_after`, a read with no answer by then raises TransientError (the caller
        has another copy to try)."""
        t = time.monotonic()
        try:
            data = self.run(self._get_range, backend, pid, offset, length, stall_after)
        except BaseException:
            self._observe(backend, max(FAILURE_PENALTY_S, time.monotonic() - t))
            raise
        self._observe(backend, time.monotonic() - t)
        return data

    async def _get_range(self, backend: str, pid: bytes, offset: int, length: int,
                         stall_after: float | None) -> bytes:
        return await _within(stall_after, f"backend {backend}",
                             self.backends[backend].get(pack_object_name(pid), offset, length))

    def get_object(self, backend: str, name: str, expected_size: int) -> bytes:
        """A whole object whose size the index expects (<= 0: unknown, see `_read_whole`).

        Reads at most `expected_size` + 1 bytes; CorruptCopy if the size differs."""
        data, _ = self.run(_read_whole, self.backends[backend], name, expected_size)
        assert data is not None
        return data

    def get_pack(self, backend: str, pid: bytes, expected_size: int) -> bytes:
        """A whole pack, bounded like `get_object` and hashed as it arrives; CorruptCopy if
        its size or ID is wrong."""
        data, _ = self.run(self._pack, backend, pid, expected_size, True)
        assert data is not None
        return data

    def check_pack(self, backend: str, pid: bytes, expected_size: int) -> int:
        """Read a pack through (bounded, in pieces, nothing kept) and check it against its
        ID; returns its size, CorruptCopy if wrong."""
        return self.run(self._pack, backend, pid, expected_size, False)[1]

    async def _pack(self, backend: str, pid: bytes, expected: int,
                    keep: bool) -> tuple[bytes | None, int]:
        return await _read_pack(self.backends[backend], pid, expected, keep,
                                trio.CapacityLimiter(1))

    def put_many(self, jobs: list[tuple[str, bytes, Callable[[], bytes]]],
                 done: Callable[[str, bytes, BaseException | None], None],
                 parallel: int | None = None) -> None:
        """Upload packs in parallel: each job is (backend, pack_id, loader of the bytes).

        `done(backend, pack_id, error)` runs in a worker thread after each job. If the hub
        closes meanwhile, HubClosed is raised and unfinished jobs get no `done` (an upload
        queue keeps them).
        """
        async def one(limiter: trio.CapacityLimiter, threads: trio.CapacityLimiter, bname: str,
                      pid: bytes, load: Callable[[], bytes]) -> None:
            async with limiter:
                err: BaseException | None = None
                try:
                    data = await trio.to_thread.run_sync(load, limiter=threads)
                    await self.backends[bname].put(pack_object_name(pid), data)
                except (BackendError, OSError) as e:
                    err = e
                await trio.to_thread.run_sync(done, bname, pid, err, limiter=threads)

        async def all_jobs() -> None:
            limiter, threads = _limiters(parallel or self.parallel)
            async with trio.open_nursery() as n:
                for bname, pid, load in jobs:
                    n.start_soon(one, limiter, threads, bname, pid, load)

        self.run(all_jobs)

    def fetch_many(self, jobs: list[tuple[bytes, list[str]]],
                   done: Callable[[bytes, bytes | None, str, list[str]], None]) -> None:
        """Fetch whole packs in parallel, each from the first backend of its list that works,
        fastest first (`latency`). A backend that stops answering is given up on after
        `stall_limit` for each piece, while another copy remains; it then ranks last.

        `done(pack_id, data_or_None, backend_used, errors)` runs in a worker thread per pack,
        so it may verify and write to disk.
        """
        self._fetch(jobs, done, None)

    def fetch_packs(self, jobs: list[tuple[bytes, int, list[str]]],
                    done: Callable[[bytes, bytes | None, str, list[str]], None],
                    corrupt: Callable[[bytes, str, str], None] | None = None) -> None:
        """`fetch_many` of packs whose size the index expects (<= 0: unknown): each copy is
        read in bounded pieces and hashed as it arrives, so `done` only ever gets bytes that
        match the pack ID. A copy of the wrong size or content is skipped and reported to
        `corrupt(pack_id, backend, reason)` (in a worker thread) before the next is tried."""
        self._fetch([(pid, sources) for pid, _, sources in jobs], done,
                    {pid: size for pid, size, _ in jobs}, corrupt)

    def _fetch(self, jobs: list[tuple[bytes, list[str]]],
               done: Callable[[bytes, bytes | None, str, list[str]], None],
               sizes: dict[bytes, int] | None,
               corrupt: Callable[[bytes, str, str], None] | None = None) -> None:
        async def one(limiter: trio.CapacityLimiter, threads: trio.CapacityLimiter, pid: bytes,
                      sources: list[str]) -> None:
            async with limiter:
                errors: list[str] = []
                for b, more in self.ranked(sources):
                    stall = (lambda n, b=b: self.stall_limit(b, n)) if more else None
                    try:
                        if sizes is None:  # unchecked, but bounded like an object of unknown size
                            data, _ = await _read_whole(self.backends[b], pack_object_name(pid), 0,
                                                        stall=stall)
                        else:
                            data, _ = await _read_pack(self.backends[b], pid, sizes[pid], True,
                                                       threads, stall)
                    except CorruptCopy as e:
                        errors.append(f"{b}: {e}")
                        if corrupt is not None:
                            await trio.to_thread.run_sync(corrupt, pid, b, str(e), limiter=threads)
                        continue
                    except NotFound:
                        errors.append(f"{b}: missing")
                        continue
                    except BackendError as e:
                        if stall is not None and isinstance(e, TransientError):
                            self._observe(b, FAILURE_PENALTY_S)  # it ranks last from now on
                        errors.append(f"{b}: {e}")
                        continue
                    ok = await trio.to_thread.run_sync(done, pid, data, b, errors, limiter=threads)
                    if ok:
                        return
                await trio.to_thread.run_sync(done, pid, None, "", errors, limiter=threads)

        async def all_jobs() -> None:
            limiter, threads = _limiters(self.parallel)
            async with trio.open_nursery() as n:
                for pid, sources in jobs:
                    n.start_soon(one, limiter, threads, pid, sources)

        self.run(all_jobs)
