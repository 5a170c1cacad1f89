"""A hostile peer: a trusted identity that speaks the real transport and protocol and
misbehaves on purpose.

`HostilePeer` holds a real Ed25519 identity that the target trusts (`peer add`), so it
gets past TLS and authentication. It keeps its own signed log (it signs what it writes
under its own origin, like an honest node) and can also sign entries for other origins
with its own key, forge pages, send clocks from the far future, flood pings without
reading, and so on. A `Session` is one connection: Hello and Summary done, then the
test sends what it likes. Everything is bounded by `trio.fail_after`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import trio

from mosaic.node.cluster.identity import Identity
from mosaic.node.cluster.transport import ConnectionClosed, PeerConnection, connect
from mosaic.protocol.framing import encode_frame
from mosaic.protocol.limits import PROTOCOL_VERSION
from mosaic.protocol.messages import (
    Hello,
    Message,
    Ping,
    Pong,
    Records,
    Summary,
    encode_message,
)
from mosaic.protocol.records import LogEntry, Record
from mosaic.protocol.signing import GENESIS, LogHead, sign_entry

from .conftest import HOST, MosaicNode

TIMEOUT = 10.0


@dataclass
class Session:
    """One open connection of the hostile peer to the target."""

    conn: PeerConnection
    target_summary: dict[bytes, int]
    received: list[Message] = field(default_factory=list)

    async def send(self, *msgs: Message) -> None:
        for m in msgs:
            await self.conn.send(m)

    async def send_raw(self, data: bytes) -> None:
        """Bytes straight into the TLS stream (already framed, or not)."""
        await self.conn._stream.send_all(data)

    async def alive(self, nonce: int | None = None) -> bool:
        """Ping and wait for the Pong (reading whatever else comes); False if closed."""
        n = nonce if nonce is not None else random.getrandbits(62)
        try:
            with trio.fail_after(TIMEOUT):
                await self.conn.send(Ping(n))
                while True:
                    m = await self.conn.receive()
                    self.received.append(m)
                    if isinstance(m, Pong) and m.nonce == n:
                        return True
        except ConnectionClosed:
            return False

    async def drain(self, quiet: float = 0.2) -> None:
        """Read until the line is quiet for `quiet` seconds."""
        with trio.fail_after(TIMEOUT):
            while True:
                with trio.move_on_after(quiet) as cs:
                    self.received.append(await self.conn.receive())
                if cs.cancelled_caught:
                    return


class HostilePeer:
    """A trusted peer with a real identity, a signed log of its own, and bad manners."""

    def __init__(self, identity: Identity, target: MosaicNode) -> None:
        self.identity = identity
        self.target = target
        self.log: list[LogEntry] = []
        self.heads: list[LogHead] = [GENESIS]

    @property
    def node_id(self) -> bytes:
        return self.identity.node_id

    def append(self, record: Record) -> LogEntry:
        """Add a properly signed entry to its own log."""
        entry, head = sign_entry(self.identity.sign, self.node_id, self.heads[-1],
                                 len(self.log) + 1, record)
        self.log.append(entry)
        self.heads.append(head)
        return entry

    def truncate(self, n: int) -> None:
        """Forget its own entries after seq n (the target refused them)."""
        del self.log[n:]
        del self.heads[n + 1:]

    def forged(self, origin: bytes, seq: int, record: Record, head: LogHead = GENESIS
               ) -> LogEntry:
        """An entry of another origin's log, signed with *our* key."""
        entry, _ = sign_entry(self.identity.sign, origin, head, seq, record)
        return entry

    def own_page(self, after: int) -> Records:
        """Our log after seq `after`, as one page."""
        return Records(self.node_id, tuple(self.log[after:]), False)

    @contextlib.asynccontextmanager
    async def session(self, *, claim_all: bool = True) -> AsyncIterator[Session]:
        """Connect, exchange Hello and Summary (claiming to hold all the target has, so it
        pushes nothing), and yield the session; closed on the way out."""
        conn = await connect(self.identity, HOST, self.target.port, self.target.id_bytes,
                             timeout=TIMEOUT)
        try:
            with trio.fail_after(TIMEOUT):
                first = await conn.receive()
                assert isinstance(first, Hello), first
                await conn.send(Hello(PROTOCOL_VERSION, self.node_id, first.capabilities,
                                      "hostile/1"))
                while not isinstance(m := await conn.receive(), Summary):
                    pass
                theirs = m.as_dict()
                mine = dict(theirs) if claim_all else {}
                mine[self.node_id] = len(self.log)
                await conn.send(Summary.from_mapping(mine))
            yield Session(conn, theirs)
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose()


def frames(msgs: list[Message]) -> bytes:
    """Messages framed back to back (for floods sent in one write)."""
    return b"".join(encode_frame(encode_message(m)) for m in msgs)
