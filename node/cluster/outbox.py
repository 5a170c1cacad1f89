"""What a daemon queues without waiting: each connection's outgoing messages (bounded:
a peer that does not read is cut off) and the updates of the peers table (written in
batches by one task)."""

from __future__ import annotations

import logging
import math

import trio

from mosaic.protocol.messages import Records
from mosaic.protocol.records import size_bound

from .peers import Peers

log = logging.getLogger("mosaic.daemon")


class PeerTooSlow(Exception):
    """The peer does not read what we send it: its outbox passed the high-water mark."""


class Outbox:
    """Outgoing messages of one connection, written by one task.

    Nothing that reads from the connection ever waits for the socket to take
    data (two peers that both block writing while neither reads would deadlock);
    bulk senders wait for room instead.
    """

    HIGH = 8 << 20  # bulk senders (chunk replies) wait below this
    HIGH_MSGS = 4096  # ... and below this many queued messages
    LIMIT = 64 << 20  # above this (bytes, estimated) the peer is cut off
    LIMIT_MSGS = 20_000  # ... or above this many queued messages (a flood of small answers)
    WRITE_BYTES = 256 << 10  # queued messages are sent together up to about this much

    def __init__(self) -> None:
        self.send_ch, self.recv_ch = trio.open_memory_channel(math.inf)
        self.queued = 0
        self.count = 0
        self.room = trio.Event()
        self.room.set()

    @staticmethod
    def weight(m: object) -> int:
        """Estimated bytes of a queued message."""
        if isinstance(m, Records):
            return 64 + sum(size_bound(e.record) for e in m.entries)
        return len(getattr(m, "blob", b"")) + 64

    def put(self, msgs: list) -> None:
        """Queue messages; PeerTooSlow if the peer is above the high-water mark."""
        for m in msgs:
            n = self.weight(m)
            self.queued += n
            self.count += 1
            self.send_ch.send_nowait((m, n))
        if self.queued > self.LIMIT or self.count > self.LIMIT_MSGS:
            raise PeerTooSlow(f"peer does not read: {self.count} messages "
                              f"({self.queued >> 20} MiB) queued for it")
        if (self.queued > self.HIGH or self.count > self.HIGH_MSGS) and self.room.is_set():
            self.room = trio.Event()

    async def wait_room(self) -> None:
        """Wait until the queue is below the high-water mark."""
        await self.room.wait()

    async def writer(self, conn) -> None:
        """Send what is queued, many small messages per write (one TLS record, one syscall)."""
        async for first in self.recv_ch:
            batch = [first]
            size = first[1]
            while size < self.WRITE_BYTES:
                try:
                    item = self.recv_ch.receive_nowait()
                except trio.WouldBlock:
                    break
                batch.append(item)
                size += item[1]
            await conn.send_many([m for m, _ in batch])
            self.queued -= size
            self.count -= len(batch)
            if self.queued <= self.HIGH // 2 and self.count <= self.HIGH_MSGS // 2:
                self.room.set()


class PeerNotes:
    """Updates of the peers table, queued by any task without waiting and written in
    order, in batches (one transaction each), by one task in a worker thread."""

    def __init__(self, peers: Peers):
        self.peers = peers
        self.send_ch, self.recv_ch = trio.open_memory_channel(math.inf)

    def note(self, peer_id: bytes, fields: dict) -> None:
        self.send_ch.send_nowait((peer_id, fields))

    def _batch(self) -> list[tuple[bytes, dict]]:
        out = []
        while True:
            try:
                out.append(self.recv_ch.receive_nowait())
            except trio.WouldBlock:
                return out

    async def writer(self) -> None:
        while True:
            first = await self.recv_ch.receive()
            try:
                await trio.to_thread.run_sync(self.peers.update, [first, *self._batch()])
            except Exception as e:  # peer bookkeeping never stops the daemon
                log.warning("cannot record peer state: %s", e)

    async def flush(self) -> None:
        """Write what is still queued (at shutdown)."""
        batch = self._batch()
        if batch:
            await trio.to_thread.run_sync(self.peers.update, batch)
