"""The sync session: a sans-io state machine in the style of h11.

One `SyncSession` per connection. The node decodes frames into messages, hands
each to `receive()` and sends whatever comes back; it calls `local_changed()`
on every session after its store changed (a local write, or records applied by
another session) so news is pushed and relayed. No I/O happens here: the store
is reached only through the `SyncStore` protocol, synchronously.

Exchange (both sides run the same code; see docs/protocol.md):

    Hello ->            <- Hello          version and identity check
    Summary ->          <- Summary        {origin: highest seq} each way
    Records(o, more) -> ...               every origin where I have more
    <- Pull(o, after)                     ask for the next page when more=True
    ...                                   then IDLE: pushes on local_changed()

Entries the peer sends are checked by the store (protocol/signing.py's
`admit_page`: signed by their origin, origin not ours, clocks within bounds).
A refused page does not end the session: the store applies the good prefix
and returns a `Rejection`, which the session records in `rejections` (the node
logs them) and treats as "the peer holds nothing more that we can take" for
that origin. A page refused only because its signer is not known yet is asked
for again (Pull) as soon as the store applied something else, which may have
carried the membership record that vouches for it.

Chunk transfer rides on the same session, but the node does the I/O:
`receive()` checks WantChunks / ChunkData / ChunkMissing against the open
requests and returns nothing; the node acts on the message it just passed in
and answers requests with `chunk_reply()`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from .errors import (
    BadMessage,
    LocalProtocolError,
    PeerMismatch,
    ProtocolError,
    UnexpectedMessage,
    VersionMismatch,
)
from .limits import (
    MAX_ENTRIES,
    MAX_FRAME_SIZE,
    MAX_ORIGINS,
    MAX_RECORD_BYTES,
    MAX_WANT,
    PROTOCOL_VERSION,
)
from .messages import (
    Ack,
    Bye,
    ChunkData,
    ChunkMissing,
    Hello,
    Message,
    Ping,
    Pong,
    Pull,
    Records,
    Summary,
    WantChunks,
)
from .records import LogEntry, size_bound
from .signing import Rejection

__all__ = ["MAX_PENDING_REQUESTS", "Rejection", "SessionState", "SyncSession", "SyncStore"]

MAX_PENDING_REQUESTS = 64
"""Open WantChunks requests per direction; a peer that exceeds it is cut off."""

KEEP_REJECTIONS = 64
"""Rejections a session remembers (the node drains and logs them as they come)."""

MAX_DEFERRED = 256
"""Origins refused for an unknown signer that a session asks for again (more are dropped)."""

MAX_CLAIMS = 2 * MAX_ORIGINS
"""Origins a session tracks for the peer; pages of further unknown origins are not tracked."""


class SyncStore(Protocol):
    """What a session needs from the node's store (LMDB in the node, a dict in tests).

    Each origin's log is numbered 1, 2, 3, ... with no gaps, and a node holds a
    prefix of every origin's log. The node's own writes go to its own origin
    with seq = summary()[own id] + 1.
    """

    def summary(self) -> Mapping[bytes, int]:
        """{origin: highest seq held}; origins with nothing may be left out."""
        ...

    def entries_since(self, origin: bytes, after_seq: int, limit: int) -> Sequence[LogEntry]:
        """Up to `limit` entries of `origin`'s log with seq > after_seq, in order."""
        ...

    def apply(self, origin: bytes, entries: Sequence[LogEntry]) -> Rejection | None:
        """Check (signing.admit_page), then append entries (contiguous, starting right
        after what is held) to `origin`'s log under that origin, and index them. Must be
        idempotent: entries at or below the held seq are skipped. Returns why entries
        from some seq on were not applied (the prefix before it is), or None."""
        ...


class SessionState(enum.Enum):
    """Where a session is. SYNCING and IDLE accept the same messages."""

    AWAIT_HELLO = "await-hello"  # before the peer's Hello
    SYNCING = "syncing"  # catching up in either direction
    IDLE = "idle"  # both sides hold what the other announced; pushes only
    CLOSED = "closed"  # Bye sent or received, or a protocol error


_LIVE = frozenset(
    {Summary, Records, Pull, WantChunks, ChunkData, ChunkMissing, Ping, Pong, Bye, Ack}
)
ACCEPTS: dict[SessionState, frozenset[type]] = {
    SessionState.AWAIT_HELLO: frozenset({Hello, Bye}),
    SessionState.SYNCING: _LIVE,
    SessionState.IDLE: _LIVE,
    SessionState.CLOSED: frozenset(),
}
"""Message types each state accepts; anything else is UnexpectedMessage."""


class SyncSession:
    """One side of one connection. Feed it messages; send what it returns."""

    def __init__(
        self,
        local_node_id: bytes,
        store: SyncStore,
        *,
        expected_peer_id: bytes | None = None,
        capabilities: Iterable[str] = (),
        software: str = "mosaic",
        batch_entries: int = 1024,
        batch_bytes: int = 1 << 20,
    ) -> None:
        self._hello = Hello(PROTOCOL_VERSION, local_node_id, tuple(capabilities), software)
        self.local_node_id = local_node_id
        self.store = store
        self.expected_peer_id = expected_peer_id
        # A page is at most batch_bytes plus one entry (<= MAX_RECORD_BYTES): it fits a frame.
        self.batch_entries = max(1, min(batch_entries, MAX_ENTRIES))
        self.batch_bytes = max(1, min(batch_bytes, MAX_FRAME_SIZE - MAX_RECORD_BYTES - 65536))
        self.peer: Hello | None = None
        self.peer_bye_reason: str | None = None
        self.entries_sent = 0
        self.entries_applied = 0
        self.rejections: deque[tuple[bytes, Rejection]] = deque(maxlen=KEEP_REJECTIONS)
        self.rejected_total = 0
        self._deferred: set[bytes] = set()  # origins refused for an unknown signer
        self._state = SessionState.AWAIT_HELLO
        self._hello_sent = False
        self._bye_sent = False
        self._peer_summary = False
        self._claims: dict[bytes, int] = {}  # what the peer has told us it holds
        self._sent: dict[bytes, int] = {}  # highest seq we sent per origin
        self._paging: set[bytes] = set()  # we sent more=True, await their Pull
        self._pulling: set[bytes] = set()  # we sent Pull, await their Records
        self._pings: set[int] = set()
        self._next_request = 1
        self._wanted: dict[int, set[bytes]] = {}  # our open WantChunks
        self._serving: dict[int, set[bytes]] = {}  # their open WantChunks
        self._handlers: dict[type, Callable[[Any], list[Message]]] = {
            Hello: self._on_hello, Summary: self._on_summary, Records: self._on_records,
            Pull: self._on_pull, WantChunks: self._on_want, ChunkData: self._on_chunk,
            ChunkMissing: self._on_chunk, Ping: self._on_ping, Pong: self._on_pong,
            Bye: self._on_bye, Ack: self._on_ack,
        }

    @property
    def state(self) -> SessionState:
        """The current state."""
        return self._state

    @property
    def peer_claims(self) -> dict[bytes, int]:
        """What the peer has told us it holds: {origin: highest seq}."""
        return dict(self._claims)

    # -- calls from the node ------------------------------------------------

    def start(self) -> list[Message]:
        """Our Hello, sent first. Call before receiving anything (the dialer must; a
        side that never calls it answers the peer's Hello with its own)."""
        if self._hello_sent or self._state is not SessionState.AWAIT_HELLO:
            raise LocalProtocolError("start() called twice or too late")
        self._hello_sent = True
        return [self._hello]

    def receive(self, msg: Message) -> list[Message]:
        """Process one message from the peer; return the messages to send back.

        Raises a ProtocolError (and the session is CLOSED) if the peer broke the
        protocol; exceptions from the store propagate unchanged.
        """
        if type(msg) not in ACCEPTS[self._state]:
            was = self._state
            self._state = SessionState.CLOSED
            raise UnexpectedMessage(f"{type(msg).__name__} not allowed in state {was.name}")
        try:
            return self._handlers[type(msg)](msg)
        except ProtocolError:
            self._state = SessionState.CLOSED
            raise

    def local_changed(self) -> list[Message]:
        """Records to push after the local store changed (empty if the peer is current)."""
        if self._state not in (SessionState.SYNCING, SessionState.IDLE) or not self._peer_summary:
            return []
        local = self.store.summary()
        out = self._push(local)
        if self._deferred:  # the change may have brought the signer we were missing
            out += self._retry_deferred(local, skip=b"")
        self._settle(local)
        return out

    def ping(self, nonce: int) -> list[Message]:
        """A Ping to send; the matching Pong is then accepted once."""
        self._require_live()
        self._pings.add(nonce)
        return [Ping(nonce)]

    def want_chunks(self, chunk_ids: Iterable[bytes]) -> list[Message]:
        """WantChunks messages (batches of MAX_WANT) for these chunk ids."""
        self._require_live()
        ids = list(dict.fromkeys(chunk_ids))
        batches = [tuple(ids[i : i + MAX_WANT]) for i in range(0, len(ids), MAX_WANT)]
        if len(self._wanted) + len(batches) > MAX_PENDING_REQUESTS:
            raise LocalProtocolError("too many open chunk requests; wait for answers")
        out: list[Message] = []
        for batch in batches:
            msg = WantChunks(self._next_request, batch)
            self._wanted[self._next_request] = set(batch)
            self._next_request += 1
            out.append(msg)
        return out

    def chunk_reply(self, request_id: int, chunk_id: bytes, blob: bytes | None) -> Message:
        """Answer one chunk of a peer's WantChunks: ChunkData, or ChunkMissing if blob is None."""
        self._require_live()
        pending = self._serving.get(request_id)
        if pending is None or chunk_id not in pending:
            raise LocalProtocolError("no open request for this chunk")
        pending.discard(chunk_id)
        if not pending:
            del self._serving[request_id]
        if blob is None:
            return ChunkMissing(request_id, chunk_id)
        return ChunkData(request_id, chunk_id, blob)

    def close(self, reason: str = "") -> list[Message]:
        """Say goodbye: [Bye] unless one was already sent or received."""
        self._state = SessionState.CLOSED
        if self._bye_sent or self.peer_bye_reason is not None:
            return []
        self._bye_sent = True
        return [Bye(reason[:1024])]

    @property
    def open_requests(self) -> tuple[int, int]:
        """(our open WantChunks, the peer's open WantChunks)."""
        return len(self._wanted), len(self._serving)

    # -- handlers -----------------------------------------------------------

    def _on_hello(self, msg: Hello) -> list[Message]:
        if msg.protocol_version != PROTOCOL_VERSION:
            raise VersionMismatch(PROTOCOL_VERSION, msg.protocol_version)
        if msg.node_id == self.local_node_id:
            raise PeerMismatch("peer uses our own node id (connected to ourselves?)")
        if self.expected_peer_id is not None and msg.node_id != self.expected_peer_id:
            raise PeerMismatch("peer's node id is not the one expected")
        self.peer = msg
        out: list[Message] = []
        if not self._hello_sent:
            self._hello_sent = True
            out.append(self._hello)
        out.append(Summary.from_mapping(self.store.summary()))
        self._state = SessionState.SYNCING
        return out

    def _on_summary(self, msg: Summary) -> list[Message]:
        if self._peer_summary:
            raise UnexpectedMessage("second Summary in one session")
        self._peer_summary = True
        self._claims = msg.as_dict()
        local = self.store.summary()
        out = self._push(local)
        self._settle(local)
        return out

    def _on_records(self, msg: Records) -> list[Message]:
        if not self._peer_summary:
            raise UnexpectedMessage("Records before the peer's Summary")
        origin, entries = msg.origin, msg.entries
        self._pulling.discard(origin)
        local = self.store.summary()
        held = local.get(origin, 0)
        out: list[Message] = []
        rejection: Rejection | None = None
        if entries:
            first, last = entries[0].seq, entries[-1].seq
            if first > held + 1:
                raise BadMessage(f"gap in log {origin.hex()[:8]}: hold {held}, got {first}")
            self._claim(origin, max(self._claims.get(origin, 0), last))
            if last > held:
                fresh = entries[held + 1 - first :]
                if origin == self.local_node_id:
                    rejection = Rejection(fresh[0].seq, "entries under the receiver's own origin")
                else:
                    rejection = self.store.apply(origin, fresh)
                local = self.store.summary()
                now = local.get(origin, 0)
                self.entries_applied += now - held
                applied_any = now > held
                held = now
                if applied_any and self._deferred:
                    out += self._retry_deferred(local, skip=origin)
        if rejection is not None:
            self.rejections.append((origin, rejection))
            self.rejected_total += 1
            self._claim(origin, held)  # nothing more of this origin that we can take now
            if rejection.retry and len(self._deferred) < MAX_DEFERRED:
                self._deferred.add(origin)
        elif msg.more:
            self._pulling.add(origin)
            out.append(Pull(origin, held))
        if entries and (rejection is not None or not msg.more):
            out.append(Ack(origin, held))  # the last page: tell the peer what we hold now
        self._settle(local)
        return out

    def unacknowledged(self, local: Mapping[bytes, int]) -> int:
        """Entries we hold that the peer has not told us it holds (0 when in sync)."""
        return sum(max(0, s - self._claims.get(o, 0)) for o, s in local.items())

    def _claim(self, origin: bytes, seq: int) -> None:
        """Note what the peer holds of `origin` (new origins only up to MAX_CLAIMS)."""
        if origin in self._claims or len(self._claims) < MAX_CLAIMS:
            self._claims[origin] = seq

    def _retry_deferred(self, local: Mapping[bytes, int], skip: bytes) -> list[Message]:
        """Ask again for pages refused for an unknown signer (the store may know it now)."""
        out: list[Message] = []
        for o in sorted(self._deferred - {skip} - self._pulling):
            self._deferred.discard(o)
            self._pulling.add(o)
            out.append(Pull(o, local.get(o, 0)))
        return out

    def _on_pull(self, msg: Pull) -> list[Message]:
        # The next page after more=True, or a page asked for again: either way the peer
        # holds exactly after_seq of this origin now.
        self._paging.discard(msg.origin)
        self._claim(msg.origin, msg.after_seq)
        if msg.origin in self._sent or msg.origin in self._claims:
            self._sent[msg.origin] = msg.after_seq
        local = self.store.summary()
        page = self._page(msg.origin, local.get(msg.origin, 0))
        self._settle(local)
        # Always answer: the peer waits for this page (empty if nothing is left).
        return [page if page is not None else Records(msg.origin, (), False)]

    def _on_want(self, msg: WantChunks) -> list[Message]:
        if msg.request_id in self._serving:
            raise BadMessage("request id already open")
        if len(self._serving) >= MAX_PENDING_REQUESTS:
            raise UnexpectedMessage("too many open chunk requests")
        self._serving[msg.request_id] = set(msg.chunk_ids)
        return []

    def _on_chunk(self, msg: ChunkData | ChunkMissing) -> list[Message]:
        pending = self._wanted.get(msg.request_id)
        if pending is None or msg.chunk_id not in pending:
            raise UnexpectedMessage("chunk that was not requested (or twice)")
        pending.discard(msg.chunk_id)
        if not pending:
            del self._wanted[msg.request_id]
        return []

    def _on_ack(self, msg: Ack) -> list[Message]:
        if not self._peer_summary:
            raise UnexpectedMessage("Ack before the peer's Summary")
        self._claim(msg.origin, max(self._claims.get(msg.origin, 0), msg.seq))
        self._settle(self.store.summary())
        return []

    def _on_ping(self, msg: Ping) -> list[Message]:
        return [Pong(msg.nonce)]

    def _on_pong(self, msg: Pong) -> list[Message]:
        if msg.nonce not in self._pings:
            raise UnexpectedMessage("Pong without a Ping")
        self._pings.discard(msg.nonce)
        return []

    def _on_bye(self, msg: Bye) -> list[Message]:
        self.peer_bye_reason = msg.reason
        self._state = SessionState.CLOSED
        return []

    # -- helpers ------------------------------------------------------------

    def _require_live(self) -> None:
        if self._state not in (SessionState.SYNCING, SessionState.IDLE):
            raise LocalProtocolError(f"not allowed in state {self._state.name}")

    def _push(self, local: Mapping[bytes, int]) -> list[Message]:
        out: list[Message] = []
        for origin in sorted(local):
            if origin not in self._paging:
                page = self._page(origin, local[origin])
                if page is not None:
                    out.append(page)
        return out

    def _page(self, origin: bytes, highest: int) -> Records | None:
        after = max(self._claims.get(origin, 0), self._sent.get(origin, 0))
        if highest <= after:
            return None
        entries = self.store.entries_since(origin, after, self.batch_entries)
        if not entries or entries[0].seq != after + 1:
            raise LocalProtocolError(f"store returned no entry {after + 1} of {origin.hex()[:8]}")
        budget, count = self.batch_bytes, 0
        for e in entries:
            budget -= size_bound(e.record)
            count += 1
            if budget <= 0:
                break
        page = tuple(entries[:count])
        last = page[-1].seq
        more = last < highest
        self._sent[origin] = last
        self.entries_sent += count
        if more:
            self._paging.add(origin)
        return Records(origin, page, more)

    def _settle(self, local: Mapping[bytes, int]) -> None:
        if self._state not in (SessionState.SYNCING, SessionState.IDLE):
            return
        behind = any(local.get(o, 0) < s for o, s in self._claims.items())
        busy = behind or bool(self._paging) or bool(self._pulling) or not self._peer_summary
        self._state = SessionState.SYNCING if busy else SessionState.IDLE
