"""Decoded chunks for the mount: a bounded LRU cache, shared fetches, and read-ahead.

A kernel read is 4-128 KiB while a chunk is about a megabyte, so a decoded chunk is
kept (least recently used out first, bounded in bytes) for the reads that follow.
Chunks are read and decoded on the mount's own decoding threads
(`store.restore.decode_batch`: local pack first, else a backend through the
Cloud's remote reads), which take their next task from a queue themselves: a
thread that finishes a task does not wait for the event loop to hand it the
next one (the loop is busy answering the kernel while a file streams). A chunk
that is being fetched is awaited by every reader that wants it, never fetched
twice. Every chunk is authenticated on the way out: a corrupt one raises
IntegrityError.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import trio

from ..store.records import Manifest
from ..store.restore import chunk_records, decode_batch
from ..store.store import Store
from .stats import MountStats

DEFAULT_CACHE = 64 << 20   # bytes of decoded chunks kept
FETCH_BYTES = 2 << 20      # one worker task decodes about this much


class ChunkCache:
    """Decoded chunks by chunk ID, bounded in bytes, least recently used out first."""

    def __init__(self, capacity: int, stats: MountStats):
        self.capacity, self.stats = capacity, stats
        self._data: OrderedDict[bytes, bytes] = OrderedDict()
        self.size = 0
        stats.cache_capacity = capacity

    def get(self, cid: bytes) -> bytes | None:
        data = self._data.get(cid)
        if data is not None:
            self._data.move_to_end(cid)
        return data

    def __contains__(self, cid: bytes) -> bool:
        return cid in self._data

    def put(self, cid: bytes, data: bytes) -> None:
        if cid in self._data or len(data) > self.capacity:
            return
        self._data[cid] = data
        self.size += len(data)
        while self.size > self.capacity:
            _, old = self._data.popitem(last=False)
            self.size -= len(old)
        self.stats.cache_bytes = self.size


@dataclass(eq=False)
class _Fetch:
    """One worker task's run of chunks: readers wait on `done`, then find data or error."""

    done: trio.Event = field(default_factory=trio.Event)
    data: dict[bytes, bytes] = field(default_factory=dict)   # chunk ID -> decoded, once done
    error: BaseException | None = None


def _decode(store: Store, m: Manifest, first: int, last: int) -> list[bytes]:
    """Chunks [first, last) of a file, read and decoded (on a worker thread)."""
    items = chunk_records(store, m, first, last)
    out = decode_batch(store, items)
    store.touch({r.pack_id for _, _, r in items})
    return out


DEMAND, AHEAD = 0, 1   # task priorities: what a reader waits for, then read-ahead


class Decoders:
    """Threads that run decoding tasks from a priority queue, results back on the trio loop.

    `submit` is called on the loop's thread; `done(result, error)` runs there too
    (through the trio token). `close` drops the tasks not started and joins the
    threads, after the running ones end.
    """

    def __init__(self, threads: int):
        self._token = trio.lowlevel.current_trio_token()
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [threading.Thread(target=self._run, name=f"mosaic-decode-{i}",
                                          daemon=True) for i in range(max(1, threads))]
        for t in self._threads:
            t.start()

    def submit(self, priority: int, task: Callable[[], object],
               done: Callable[[object, BaseException | None], None]) -> None:
        """Run `task` on a decoding thread, lower `priority` first, then in order."""
        self._queue.put((priority, next(self._order), task, done))

    def _run(self) -> None:
        while True:
            _, _, task, done = self._queue.get()
            if task is None:
                return
            try:
                result, error = task(), None
            except BaseException as e:  # handed to the waiting readers, never lost
                result, error = None, e
            try:
                self._token.run_sync_soon(done, result, error)
            except trio.RunFinishedError:
                return

    def close(self) -> None:
        """Stop: queued tasks are dropped (a stop sorts before every task), running ones end."""
        for _ in self._threads:
            self._queue.put((-1, next(self._order), None, None))
        for t in self._threads:
            t.join()


class ChunkSource:
    """Decoded chunks of files, from the cache or fetched on decoding threads.

    A cached chunk is answered on the event loop's thread with no thread hop. A
    missing one is fetched with its neighbours, a run per task; readers wait on the
    task (one event per task, not per chunk), never fetching a chunk twice. Tasks a
    reader waits for go before read-ahead.
    """

    def __init__(self, store: Store, cache: ChunkCache, stats: MountStats, workers: int):
        self.store, self.cache, self.stats = store, cache, stats
        self.decoders = Decoders(workers)
        self._fetching: dict[bytes, _Fetch] = {}   # chunk ID -> the task fetching it

    def cached(self, cid: bytes) -> bool:
        """True if the chunk is decoded in the cache or on its way there."""
        return cid in self.cache or cid in self._fetching

    async def chunks(self, m: Manifest, first: int, last: int) -> list[bytes]:
        """Chunks [first, last) of `m`, decoded; fetches what is neither cached nor on its way."""
        out: list[bytes | None] = []
        waits: dict[int, _Fetch] = {}
        missing: list[int] = []
        get, fetching = self.cache.get, self._fetching
        for i in range(first, last):
            cid = m.chunks[i][0]
            data = get(cid)
            if data is not None:
                self.stats.cache_hits += 1
            else:
                f = fetching.get(cid)
                if f is not None:
                    waits[i] = f
                else:
                    missing.append(i)
            out.append(data)
        for a, b in _runs(missing):
            fetch = self._start(m, a, b, DEMAND)
            for i in range(a, b):
                waits[i] = fetch
        for f in dict.fromkeys(waits.values()):  # each task once, in order
            await f.done.wait()
            if f.error is not None:
                raise f.error
        for i, f in waits.items():
            out[i - first] = f.data[m.chunks[i][0]]
        return out  # type: ignore[return-value]

    def _start(self, m: Manifest, a: int, b: int, priority: int) -> _Fetch:
        """Queue a task for chunks [a, b) (in the background); the caller may wait on it."""
        f = _Fetch()
        for i in range(a, b):
            self._fetching.setdefault(m.chunks[i][0], f)
        self.decoders.submit(priority, partial(_decode, self.store, m, a, b),
                             partial(self._fetched, m, a, b, f))
        return f

    def prefetch(self, m: Manifest, first: int, last: int) -> None:
        """Start fetching chunks [first, last) that are neither cached nor on their way."""
        todo = [i for i in range(first, min(last, len(m.chunks)))
                if not self.cached(m.chunks[i][0])]
        for a, b in _runs(todo):
            size, start = 0, a
            for i in range(a, b):  # one worker task per ~FETCH_BYTES, so workers overlap
                size += m.chunks[i][1]
                if size >= FETCH_BYTES or i == b - 1:
                    self._start(m, start, i + 1, AHEAD)
                    self.stats.chunks_prefetched += i + 1 - start
                    size, start = 0, i + 1

    def close(self) -> None:
        """Stop the decoding threads (blocks until running tasks end; call off the loop)."""
        self.decoders.close()

    def _fetched(self, m: Manifest, a: int, b: int, f: _Fetch, datas: object,
                 error: BaseException | None) -> None:
        """A task ended (on the loop's thread): cache its chunks and wake its readers."""
        if error is not None:
            f.error = error
            self._done(m, a, b, f)
            return
        assert isinstance(datas, list)
        self.stats.chunks_decoded += b - a
        self.stats.fetch_tasks += 1
        for i, data in zip(range(a, b), datas, strict=True):
            cid = m.chunks[i][0]
            self.cache.put(cid, data)
            f.data[cid] = data
        self._done(m, a, b, f)

    def _done(self, m: Manifest, a: int, b: int, f: _Fetch) -> None:
        """The task ended: its chunks are no longer on their way; wake its readers."""
        fetching = self._fetching
        for i in range(a, b):
            cid = m.chunks[i][0]
            if fetching.get(cid) is f:
                del fetching[cid]
        f.done.set()


def _runs(idx: list[int]) -> list[tuple[int, int]]:
    """Sorted indices as half-open runs of consecutive values."""
    out: list[tuple[int, int]] = []
    for i in idx:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out
