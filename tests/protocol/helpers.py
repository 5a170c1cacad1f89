"""Test helpers: ids, records, and an in-memory network of sync sessions.

`Link` joins two nodes the way the node will: messages are encoded, framed,
cut into random pieces, fed to a FrameDecoder and decoded on the other side.
No sockets, no trio.
"""

from __future__ import annotations

import random
from collections import deque

from blake3 import blake3

from mosaic.protocol.framing import FrameDecoder, encode_frame
from mosaic.protocol.memstore import MemoryStore
from mosaic.protocol.messages import Message, decode_message, encode_message
from mosaic.protocol.records import ChunkLocation, ManifestRecord
from mosaic.protocol.sync import SyncSession

T0 = 1_700_000_000_000  # a fixed wall clock (ms) for name writes


def nid(label: str) -> bytes:
    """A deterministic 32-byte id."""
    return blake3(label.encode()).digest()


def make_manifest(rng: random.Random, n_chunks: int = 3, backends: tuple[str, ...] = ("s3",)
                  ) -> ManifestRecord:
    """A random valid manifest with one location hint per chunk."""
    chunks = tuple((rng.randbytes(32), rng.randint(1, 1 << 20)) for _ in range(n_chunks))
    pack = rng.randbytes(32)
    locs = tuple(ChunkLocation(c, pack, i * 100, n + 40, backends)
                 for i, (c, n) in enumerate(chunks))
    return ManifestRecord(rng.randbytes(32), sum(n for _, n in chunks), rng.randint(0, 1 << 62),
                          chunks, locs)


class Node:
    """A store plus the links it takes part in."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.id = nid(label)
        self.store = MemoryStore(self.id)
        self.links: list[Link] = []

    def changed(self) -> None:
        """Tell every session the store changed (what the node does after a write/apply)."""
        for link in list(self.links):
            link.local_changed(self)

    def add_manifests(self, rng: random.Random, n: int) -> None:
        for _ in range(n):
            self.store.add_manifest(make_manifest(rng))
        self.changed()

    def set_name(self, name: str, file_id: bytes | None, now_ms: int = T0, **kw: bool) -> None:
        self.store.set_name(name, file_id, now_ms, **kw)
        self.changed()


class Link:
    """A connection between two nodes: two sessions, two framed byte queues."""

    def __init__(self, a: Node, b: Node, rng: random.Random | None = None, **session_kw: int
                 ) -> None:
        self.nodes = (a, b)
        self.rng = rng
        self.sessions = (
            SyncSession(a.id, a.store, expected_peer_id=b.id, **session_kw),
            SyncSession(b.id, b.store, expected_peer_id=a.id, **session_kw),
        )
        self.decoders = (FrameDecoder(), FrameDecoder())
        self.queues: tuple[deque[bytes], deque[bytes]] = (deque(), deque())  # towards side i
        self.bytes_sent = [0, 0]
        self.sent: list[tuple[int, str]] = []  # (from side, message type)
        self.open = True
        a.links.append(self)
        b.links.append(self)
        self._send(0, self.sessions[0].start())

    @property
    def pending(self) -> bool:
        return self.open and bool(self.queues[0] or self.queues[1])

    def _send(self, side: int, msgs: list[Message]) -> None:
        for m in msgs:
            wire = encode_frame(encode_message(m))
            self.queues[1 - side].append(wire)
            self.bytes_sent[side] += len(wire)
            self.sent.append((side, type(m).__name__))

    def local_changed(self, node: Node) -> None:
        side = self.nodes.index(node)
        self._send(side, self.sessions[side].local_changed())

    def step(self) -> None:
        """Deliver one queued frame (in random pieces) to its receiver."""
        sides = [i for i in (0, 1) if self.queues[i]]
        side = self.rng.choice(sides) if self.rng else sides[0]
        data = self.queues[side].popleft()
        pieces = [data]
        if self.rng and len(data) > 1:
            cuts = sorted(self.rng.sample(range(1, len(data)), min(3, len(data) - 1)))
            pieces = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        node = self.nodes[side]
        before = node.store.summary()
        for piece in pieces:
            for payload in self.decoders[side].feed(piece):
                self._send(side, self.sessions[side].receive(decode_message(payload)))
        if node.store.summary() != before:
            node.changed()

    def close(self) -> None:
        """Drop the connection; bytes in flight are lost."""
        self.open = False
        for n in self.nodes:
            n.links.remove(self)


def run(links: list[Link], rng: random.Random | None = None, max_steps: int = 1_000_000) -> int:
    """Deliver frames until nothing is in flight; returns the number of deliveries."""
    steps = 0
    while True:
        live = [lk for lk in links if lk.pending]
        if not live:
            return steps
        (rng.choice(live) if rng else live[0]).step()
        steps += 1
        assert steps < max_steps, "no quiescence"
