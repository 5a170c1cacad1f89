"""Which wanted chunks to ask which peer for, so that fetching always progresses.

The wanted chunks live in LMDB (`wanted`, see filelog.py); this keeps, in memory, per
entry the attempts, when it was last asked and which connected peers said they lack
it. Batches come from `filelog.wanted_chunks`, which rotates through the table from a
cursor, so chunks no peer has never hold back the ones behind them, and caps one
origin's share of a batch. A chunk that every connected peer lacks backs off
(exponentially, up to MAX_BACKOFF_S) and is handed back to the caller, which expires
it when no node holds its file any more (`filelog.expire_wanted`). A peer that
connects makes every backed-off chunk eligible again.

Not thread-safe: the daemon calls it from its trio loop only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

__all__ = ["ASK_TIMEOUT_S", "BASE_BACKOFF_S", "MAX_BACKOFF_S", "WantQueue"]

BASE_BACKOFF_S = 2.0
MAX_BACKOFF_S = 600.0
ASK_TIMEOUT_S = 30.0
"""A chunk asked from a peer that has not answered within this may be asked from another."""
MAX_TRACKED = 200_000
"""Entries with state kept at most; beyond it the oldest state is forgotten (the entry is
then simply asked for again)."""


@dataclass
class _Entry:
    attempts: int = 0
    last_asked: float = 0.0
    not_before: float = 0.0
    lacking: set[bytes] = field(default_factory=set)


class WantQueue:
    """Asking state of the wanted chunks (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.cursor = b""
        self._state: dict[bytes, _Entry] = {}
        self.in_flight: dict[bytes, bytes] = {}  # chunk ID -> the peer it was asked from

    def skip_for(self, peer: bytes) -> set[bytes]:
        """Chunk IDs not to ask `peer` for now: asked already, backing off, or lacked by it."""
        now = self.clock()
        out = set()
        for cid, e in self._state.items():
            if e.not_before > now or peer in e.lacking:
                out.add(cid)
            elif cid in self.in_flight and now - e.last_asked < ASK_TIMEOUT_S:
                out.add(cid)
        return out

    def asked(self, peer: bytes, cids: Collection[bytes], cursor: bytes) -> None:
        """`cids` were just asked from `peer`; the next batch starts after `cursor`."""
        now = self.clock()
        self.cursor = cursor
        for cid in cids:
            self.in_flight[cid] = peer
            e = self._state.get(cid)
            if e is None:
                e = self._state[cid] = _Entry()
                if len(self._state) > MAX_TRACKED:
                    del self._state[next(iter(self._state))]
            e.last_asked = now

    def arrived(self, cid: bytes) -> None:
        """The chunk came (or is no longer wanted)."""
        self.in_flight.pop(cid, None)
        self._state.pop(cid, None)

    def lacked(self, cid: bytes, peer: bytes, connected: Collection[bytes]) -> bool:
        """`peer` does not have the chunk. True if no connected peer has it: it now backs off."""
        self.in_flight.pop(cid, None)
        e = self._state.get(cid)
        if e is None:
            e = self._state[cid] = _Entry()
        e.lacking.add(peer)
        if not set(connected) <= e.lacking:
            return False
        e.attempts += 1
        e.lacking.clear()
        e.not_before = self.clock() + min(BASE_BACKOFF_S * 2 ** (e.attempts - 1), MAX_BACKOFF_S)
        return True

    def peer_left(self, peer: bytes) -> None:
        """A session ended: what it was asked for may be asked from others."""
        for cid in [c for c, p in self.in_flight.items() if p == peer]:
            del self.in_flight[cid]

    def peer_joined(self) -> None:
        """A peer connected: it may have what the others lack."""
        for e in self._state.values():
            e.not_before = 0.0
            e.lacking.clear()

    def attempts(self, cid: bytes) -> int:
        """Rounds in which every connected peer lacked the chunk."""
        e = self._state.get(cid)
        return e.attempts if e is not None else 0

    def __len__(self) -> int:
        return len(self._state)
