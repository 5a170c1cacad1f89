"""`mosaic serve`: the trio daemon that owns the long-running work.

Tasks: the peer listener, one dialer per known peer (reconnect with backoff),
one sync session per connection (protocol.sync over node.transport), a change
watcher that pushes new log entries to every session (it polls LMDB, so writes
made by CLI processes beside the daemon are pushed too), the upload queue, and
the cache janitor. SIGTERM and SIGINT shut it down cleanly. Readiness is
logged and written to HOME/daemon.json, which `mosaic status` reads.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from protocol.errors import ProtocolError
from protocol.messages import ChunkData, ChunkMissing, WantChunks
from protocol.sync import SessionState, SyncSession

from . import replica
from .api import Node
from .fetch import read_object, store_objects
from .home import atomic_write
from .peers import Peers

log = logging.getLogger("mosaic.daemon")

POLL_S = 0.2
ANTI_ENTROPY_S = 30.0
FETCH_BATCH = 256
STORE_BATCH_BYTES = 8 << 20


@dataclass
class _Live:
    """One running sync session."""

    peer_id: bytes
    session: SyncSession
    changed: trio.Event = field(default_factory=trio.Event)
    requested: set[bytes] = field(default_factory=set)


class Daemon:
    """State shared by the daemon's tasks."""

    def __init__(self, node: Node, identity, listen: tuple[str, int]):  # noqa: ANN001
        self.node = node
        self.identity = identity
        self.listen = listen
        self.peers = Peers(node.index)
        self.live: dict[int, _Live] = {}
        self.store = replica.LmdbSyncStore(node.index)
        self.cap = f"key.{node.keys.key_id}"
        self.db_lock = trio.Lock()  # one LMDB writer task at a time in this process

    # ---- trust --------------------------------------------------------------
    def is_trusted(self, peer_id: bytes) -> bool:
        """Only peers added with `mosaic peer add` may connect."""
        return self.peers.get(peer_id) is not None

    # ---- sessions -----------------------------------------------------------
    async def run_session(self, conn) -> None:  # noqa: ANN001 - transport.PeerConnection
        """Sync with one authenticated peer until either side goes away."""
        peer = conn.peer_id
        session = SyncSession(self.identity.node_id, self.store, expected_peer_id=peer,
                              capabilities=(self.cap,), software="mosaic/0.1")
        live = _Live(peer, session)
        key = id(live)
        self.live[key] = live
        send_lock = trio.Lock()

        async def send(msgs: list) -> None:
            async with send_lock:
                for m in msgs:
                    await conn.send(m)

        self.peers.seen(peer, connected=True)
        log.info("peer %s connected", peer.hex()[:16])
        try:
            await send(session.start())
            async with trio.open_nursery() as n:
                n.start_soon(self._reader, conn, live, send, n.cancel_scope)
                n.start_soon(self._pusher, live, send)
                n.start_soon(self._fetcher, live, send)
        except Exception as e:  # noqa: BLE001 - one peer's failure never stops the daemon
            log.warning("peer %s: connection closed: %s", peer.hex()[:16], _describe(e))
        finally:
            self.live.pop(key, None)
            self.peers.seen(peer, connected=False)
            with trio.CancelScope(shield=True):
                await conn.aclose()

    async def _reader(self, conn, live: _Live, send, scope: trio.CancelScope) -> None:  # noqa: ANN001
        session = live.session
        pending: list[tuple[bytes, bytes]] = []
        pending_bytes = 0
        while True:
            msg = await conn.receive()
            if isinstance(msg, WantChunks):
                out = session.receive(msg)
                await send(out)
                for cid in msg.chunk_ids:
                    blob = await trio.to_thread.run_sync(read_object, self.node, cid)
                    await send([session.chunk_reply(msg.request_id, cid, blob)])
                continue
            async with self.db_lock:
                out = await trio.to_thread.run_sync(session.receive, msg)
            if session.peer is not None and self.cap not in session.peer.capabilities:
                log.warning("peer %s uses another key; closing", live.peer_id.hex()[:16])
                await send(session.close("different key"))
                scope.cancel()
                return
            await send(out)
            if isinstance(msg, ChunkData):
                pending.append((msg.chunk_id, msg.blob))
                pending_bytes += len(msg.blob)
            if isinstance(msg, ChunkData | ChunkMissing):
                live.requested.discard(msg.chunk_id)
                if pending and (pending_bytes >= STORE_BATCH_BYTES or not live.requested):
                    batch, pending, pending_bytes = pending, [], 0
                    async with self.db_lock:
                        n, errors = await trio.to_thread.run_sync(store_objects, self.node, batch)
                    for e in errors:
                        log.warning("peer %s sent a bad chunk: %s", live.peer_id.hex()[:16], e)
                    self._changed()
            if session.state is SessionState.CLOSED:
                scope.cancel()
                return

    async def _pusher(self, live: _Live, send) -> None:  # noqa: ANN001
        while True:
            with trio.move_on_after(ANTI_ENTROPY_S):
                await live.changed.wait()
            live.changed = trio.Event()
            mine = await trio.to_thread.run_sync(self.store.summary)
            claims = live.session.peer_claims
            lag = sum(max(0, s - claims.get(o, 0)) for o, s in mine.items())
            self.peers.lag(live.peer_id, lag)
            if live.session.state in (SessionState.SYNCING, SessionState.IDLE):
                async with self.db_lock:
                    out = await trio.to_thread.run_sync(live.session.local_changed)
                await send(out)

    async def _fetcher(self, live: _Live, send) -> None:  # noqa: ANN001
        while True:
            await trio.sleep(POLL_S)
            if live.session.state not in (SessionState.SYNCING, SessionState.IDLE) or live.requested:
                continue
            wanted = await trio.to_thread.run_sync(replica.wanted_chunks, self.node.index, FETCH_BATCH)
            others = set().union(*(x.requested for x in self.live.values() if x is not live))
            ids = [c for c in wanted if c not in others]
            if ids:
                live.requested |= set(ids)
                await send(live.session.want_chunks(ids))

    def _changed(self) -> None:
        for live in self.live.values():
            live.changed.set()

    # ---- background tasks ---------------------------------------------------
    async def watch_changes(self) -> None:
        """Poll the log vector (CLI processes write beside the daemon) and wake the sessions."""
        last = None
        while True:
            cur = await trio.to_thread.run_sync(self.store.summary)
            if cur != last:
                last = cur
                self._changed()
            await trio.sleep(POLL_S)

    async def dial(self) -> None:
        """Keep a connection to every peer that has an address and is not connected."""
        from .transport import TransportError, connect
        backoff: dict[bytes, float] = {}
        next_try: dict[bytes, float] = {}
        async with trio.open_nursery() as n:
            while True:
                now = time.monotonic()
                connected = {x.peer_id for x in self.live.values()}
                for peer_id, rec in self.peers.all().items():
                    if not rec.get("addr") or peer_id in connected or next_try.get(peer_id, 0) > now:
                        continue
                    host, port = split_addr(rec["addr"])

                    async def attempt(peer_id: bytes = peer_id, host: str = host, port: int = port) -> None:
                        try:
                            conn = await connect(self.identity, host, port, peer_id)
                        except (TransportError, OSError, trio.TooSlowError, ProtocolError) as e:
                            b = min(backoff.get(peer_id, 0.5) * 2, 30.0)
                            backoff[peer_id] = b
                            next_try[peer_id] = time.monotonic() + b
                            self.peers.error(peer_id, str(e))
                            return
                        backoff[peer_id] = 0.5
                        await self.run_session(conn)
                        next_try[peer_id] = time.monotonic() + 0.5

                    next_try[peer_id] = now + 3600  # until the attempt finishes
                    n.start_soon(attempt)
                await trio.sleep(POLL_S)

    async def uploads(self) -> None:
        """Drain the upload queue now and then."""
        from .uploads import upload_pending
        while True:
            await trio.sleep(5)
            if self.node.config.backends:
                try:
                    await trio.to_thread.run_sync(lambda: upload_pending(self.node, raise_on_error=False))
                except Exception as e:  # noqa: BLE001 - logged, retried next round
                    log.warning("upload round failed: %s", e)

    def write_state(self, ready: bool) -> None:
        """HOME/daemon.json for `mosaic status`."""
        doc = {"pid": os.getpid(), "listen": f"{self.listen[0]}:{self.listen[1]}",
               "node_id": self.identity.node_id_str, "ready": ready, "since": time.time()}
        atomic_write(self.node.home.root / "daemon.json", json.dumps(doc).encode())


def _describe(e: BaseException) -> str:
    """One line for a (possibly grouped) exception."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(_describe(x) for x in e.exceptions)
    kind = "protocol error" if isinstance(e, ProtocolError) else type(e).__name__
    return f"{kind}: {e}"


def split_addr(addr: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port)."""
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    return host.strip("[]"), int(port)


async def main(home: Path, listen: str, passphrase: str | None) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    from .identity import Identity
    from .transport import serve
    node = Node.open(home, passphrase=passphrase)
    try:
        identity = Identity.load_or_create(node.home.root)
        replica.enable(node.index, identity.node_id)
        host, port = split_addr(listen)
        d = Daemon(node, identity, (host, port))
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as n:
                listeners = await n.start(serve, identity, host, port, d.is_trusted, d.run_session)
                bound = listeners[0].socket.getsockname() if listeners else (host, port)
                d.listen = (host, bound[1])
                n.start_soon(d.watch_changes)
                n.start_soon(d.dial)
                n.start_soon(d.uploads)
                d.write_state(True)
                log.info("ready: node %s listening on %s:%d", identity.node_id_str, host, bound[1])
                async for sig in signals:
                    log.info("received %s, shutting down", signal.Signals(sig).name)
                    n.cancel_scope.cancel()
                    break
    finally:
        try:
            (node.home.root / "daemon.json").unlink(missing_ok=True)
        finally:
            node.close()
