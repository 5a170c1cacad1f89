"""An upload's bytes cut into chunks as they arrive: which chunks are final, and the
streams that carry them into the store as segments.

FastCDC cuts depend only on the bytes from the previous cut on, so every chunk but
the last one cut so far is final; the last one stays open until more bytes arrive
(or the upload is complete). The next request continues the cut from the open chunk,
the upload's tail (`Chain`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from blake3 import blake3

from .bodies import BodyPipe


class Cutter:
    """Chunks of a stream, telling which are final: all but the last one cut so far."""

    def __init__(self, chunks: Iterator[bytes]):
        self.it = chunks
        self.held: bytes | None = None
        self.ended = False

    def next_final(self) -> bytes | None:
        """The next final chunk, or None once the stream ended (`held` is then the open one)."""
        while not self.ended:
            nxt = next(self.it, None)
            if nxt is None:
                self.ended = True
                return None
            prev, self.held = self.held, nxt
            if prev is not None:
                return prev
        return None


class SegmentStream:
    """A readable stream of final chunks, up to about `budget` bytes, for one put.

    When the stream has ended and `flush()` says the upload is complete, the open
    chunk is final too and ends the segment.
    """

    def __init__(self, cutter: Cutter, budget: int, hasher: blake3, flush: Callable[[], bool]):
        self.cutter, self.budget, self.hasher, self.flush = cutter, budget, hasher, flush
        self.sent = 0
        self.buf = memoryview(b"")
        self.done = False

    def _more(self) -> bool:
        if self.done or self.sent >= self.budget:
            return False
        c = self.cutter.next_final()
        if c is None and self.cutter.held is not None and self.flush():
            c, self.cutter.held = self.cutter.held, None
        if c is None:
            self.done = True
            return False
        self.hasher.update(c)
        self.sent += len(c)
        self.buf = memoryview(c)
        return True

    def prime(self) -> bool:
        """Fetch the first chunk: False if this segment would be empty."""
        return self._more()

    def readinto(self, b: memoryview) -> int:
        while not self.buf:
            if not self._more():
                return 0
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


class Chain:
    """The old tail's bytes, then the request body."""

    def __init__(self, first: bytes, rest: BodyPipe):
        self.first, self.rest = memoryview(first), rest

    def readinto(self, b: memoryview) -> int:
        if self.first:
            n = min(len(b), len(self.first))
            b[:n] = self.first[:n]
            self.first = self.first[n:]
            return n
        return self.rest.readinto(b)
