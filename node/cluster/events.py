"""The daemon's event stream: what happened, for faces that show it live (SSE, the web UI).

Events are published on the daemon's trio loop; each subscriber has a bounded
buffer, and a subscriber that falls behind loses events (it is told so by a
`lagged` event) rather than growing the daemon's memory.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

SUBSCRIBER_BUFFER = 256
HISTORY = 256


@dataclass(frozen=True)
class Event:
    """One thing that happened: a kind (`put`, `rm`, `mv`, `peer`, `changed`, `error`, ...)."""

    seq: int
    kind: str
    at: float
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "at": self.at, **self.data}


class EventBus:
    """Fan-out of events to any number of bounded subscribers; loop-only."""

    def __init__(self, history: int = HISTORY):
        self._seq = itertools.count(1)
        self._subscribers: set[trio.MemorySendChannel] = set()
        self.recent: deque[Event] = deque(maxlen=history)

    def publish(self, kind: str, **data: Any) -> Event:
        """Record an event and hand it to every subscriber that has room."""
        ev = Event(next(self._seq), kind, time.time(), data)
        self.recent.append(ev)
        for ch in list(self._subscribers):
            try:
                ch.send_nowait(ev)
            except trio.WouldBlock:  # a slow subscriber: it loses this event
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(ch)
        return ev

    @contextmanager
    def subscribe(self, buffer: int = SUBSCRIBER_BUFFER) -> Iterator[trio.MemoryReceiveChannel]:
        """A receive channel of the events published while the block runs."""
        send, recv = trio.open_memory_channel(buffer)
        self._subscribers.add(send)
        try:
            yield recv
        finally:
            self._subscribers.discard(send)
            send.close()
            recv.close()
