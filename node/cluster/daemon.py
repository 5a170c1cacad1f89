"""`mosaic serve`: the trio daemon that owns the long-running work.

Tasks: the peer listener, one dialer per known peer (reconnect with backoff),
one sync session per connection (protocol.sync over cluster.transport), a change
watcher that pushes new log entries to every session (it polls LMDB, so writes
made by CLI processes beside the daemon are pushed too), the upload queue, and
the writer of the peers table. SIGTERM and SIGINT shut it down cleanly.
Readiness is logged and written to HOME/daemon.json, which `mosaic status` reads.

One event loop: the backends are opened on the daemon's own trio loop
(`BackendHub.running`), and the synchronous engine code the daemon runs in
worker threads (uploads, remote reads, storing fetched chunks) calls back into
that loop; no "mosaic-backends" helper loop is started in this process. Nothing
that writes LMDB or fsyncs a file runs on the loop's thread: those calls go
through `trio.to_thread.run_sync`. The loop itself only does small point reads
(`is_trusted` during a handshake).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from mosaic.protocol.errors import ProtocolError
from mosaic.protocol.messages import ChunkData, ChunkMissing, WantChunks
from mosaic.protocol.sync import SessionState, SyncSession

from ..cloud.cache import pinned_not_local, warm
from ..cloud.cloud import Cloud
from ..cloud.credentials import load_secrets
from ..cloud.hub import BackendHub, HubClosed
from ..cloud.uploads import upload_pending
from ..store.atomic import atomic_write
from ..store.home import HomeLock
from ..store.store import Store
from . import replica
from .engine import Engine
from .events import EventBus
from .fetch import read_object, store_objects
from .identity import Identity
from .peers import Peers

log = logging.getLogger("mosaic.daemon")

POLL_S = 0.2
ANTI_ENTROPY_S = 30.0
PINS_S = 30.0  # pinned files that are not local are fetched at start and this often
UPLOAD_S = 5.0  # upload rounds at least this often (sooner after chunks arrive from a peer)
FETCH_BATCH = 1024
STORE_BATCH_BYTES = 8 << 20


@dataclass
class _Live:
    """One running sync session (its calls are serialised by `lock`: it is not thread-safe)."""

    peer_id: bytes
    session: SyncSession
    changed: trio.Event = field(default_factory=trio.Event)
    fetch_more: trio.Event = field(default_factory=trio.Event)
    requested: set[bytes] = field(default_factory=set)
    lock: trio.Lock = field(default_factory=trio.Lock)
    outgoing: bool = False
    scope: trio.CancelScope | None = None

    async def call(self, fn, *args, thread: bool = False):
        """Call a session method, in a worker thread when it touches the store."""
        async with self.lock:
            if thread:
                return await trio.to_thread.run_sync(fn, *args)
            return fn(*args)


class _Outbox:
    """Outgoing messages of one connection, written by one task.

    Nothing that reads from the connection ever waits for the socket to take
    data (two peers that both block writing while neither reads would deadlock);
    bulk senders wait for room instead.
    """

    HIGH = 8 << 20

    def __init__(self) -> None:
        self.send_ch, self.recv_ch = trio.open_memory_channel(math.inf)
        self.queued = 0
        self.room = trio.Event()
        self.room.set()

    def put(self, msgs: list) -> None:
        for m in msgs:
            n = len(getattr(m, "blob", b"")) + 64
            self.queued += n
            self.send_ch.send_nowait((m, n))
        if self.queued > self.HIGH and self.room.is_set():
            self.room = trio.Event()

    async def wait_room(self) -> None:
        """Wait until the queue is below the high-water mark."""
        await self.room.wait()

    async def writer(self, conn) -> None:
        async for m, n in self.recv_ch:
            await conn.send(m)
            self.queued -= n
            if self.queued <= self.HIGH // 2:
                self.room.set()


class _PeerNotes:
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


class Daemon:
    """State shared by the daemon's tasks."""

    def __init__(self, cloud: Cloud, identity: Identity, listen: tuple[str, int]):
        self.cloud = cloud
        self.identity = identity
        self.listen = listen
        self.peers = Peers(cloud.index)
        self.notes = _PeerNotes(self.peers)
        self.live: dict[int, _Live] = {}
        self.sync_store = replica.LmdbSyncStore(cloud.index)
        self.cap = f"key.{cloud.keys.key_id}"
        # the sessions' store writes (applying records, storing fetched chunks) one at a time
        self.db_lock = trio.Lock()
        self.upload_soon = trio.Event()
        self.events = EventBus()
        self.engine: Engine | None = None  # the verbs, for faces served inside the daemon

    # ---- trust --------------------------------------------------------------
    def is_trusted(self, peer_id: bytes) -> bool:
        """Only peers added with `mosaic peer add` may connect (a point read, on the loop)."""
        return self.peers.get(peer_id) is not None

    # ---- sessions -----------------------------------------------------------
    async def run_session(self, conn, outgoing: bool = False) -> None:
        """Sync with one authenticated peer until either side goes away.

        Two nodes that dial each other at once end up with two connections; both
        keep the one dialled by the node with the smaller ID and drop the other.
        """
        peer = conn.peer_id
        keeper_dialer = min(peer, self.identity.node_id)
        this_dialer = self.identity.node_id if outgoing else peer
        for other in [x for x in self.live.values() if x.peer_id == peer]:
            other_dialer = self.identity.node_id if other.outgoing else peer
            if this_dialer != keeper_dialer and other_dialer == keeper_dialer:
                await conn.aclose()  # the other connection is the one both sides keep
                return
            if other.scope is not None:
                other.scope.cancel()
        session = SyncSession(self.identity.node_id, self.sync_store, expected_peer_id=peer,
                              capabilities=(self.cap,), software="mosaic/0.1")
        live = _Live(peer, session, outgoing=outgoing)
        key = id(live)
        self.live[key] = live
        out = _Outbox()

        async def send(msgs: list) -> None:
            """Queue messages for the writer task; never blocks on the socket."""
            out.put(msgs)

        self.notes.note(peer, Peers.seen_fields(connected=True))
        log.info("peer %s connected", peer.hex()[:16])
        self.events.publish("peer", peer=peer.hex(), connected=True)
        want_send, want_recv = trio.open_memory_channel(math.inf)
        try:
            await send(session.start())
            async with trio.open_nursery() as n:
                live.scope = n.cancel_scope
                n.start_soon(out.writer, conn)
                n.start_soon(self._reader, conn, live, send, want_send, n.cancel_scope)
                n.start_soon(self._server, live, send, want_recv, out)
                n.start_soon(self._pusher, live, send)
                n.start_soon(self._fetcher, live, send)
        except Exception as e:  # one peer's failure never stops the daemon
            log.warning("peer %s: connection closed: %s", peer.hex()[:16], _describe(e))
            err = _protocol_error(e)
            if err is not None:  # tell the peer why, if the connection still takes it
                with trio.move_on_after(2), contextlib.suppress(Exception):
                    for m in session.close(str(err)[:200]):
                        await conn.send(m)
        finally:
            self.live.pop(key, None)
            # a connection that replaced this one may be up already
            still = any(x.peer_id == peer for x in self.live.values())
            self.notes.note(peer, Peers.seen_fields(connected=still))
            self.events.publish("peer", peer=peer.hex(), connected=still)
            with trio.CancelScope(shield=True):
                await conn.aclose()

    async def _reader(self, conn, live: _Live, send, wants, scope: trio.CancelScope) -> None:
        """Read every frame; never block on serving the peer's requests (that is `_server`)."""
        session = live.session
        pending: list[tuple[bytes, bytes]] = []
        pending_bytes = 0
        while True:
            msg = await conn.receive()
            if isinstance(msg, WantChunks):
                await send(await live.call(session.receive, msg))
                await wants.send(msg)
                continue
            if isinstance(msg, ChunkData | ChunkMissing):
                await send(await live.call(session.receive, msg))
                live.requested.discard(msg.chunk_id)
                if isinstance(msg, ChunkData):
                    pending.append((msg.chunk_id, msg.blob))
                    pending_bytes += len(msg.blob)
                if pending and (pending_bytes >= STORE_BATCH_BYTES or not live.requested):
                    batch, pending, pending_bytes = pending, [], 0
                    async with self.db_lock:
                        stored, errors = await trio.to_thread.run_sync(store_objects, self.cloud, batch)
                    for e in errors:
                        log.warning("peer %s sent a bad chunk: %s", live.peer_id.hex()[:16], e)
                    if stored:
                        self.upload_soon.set()  # the new pack is queued for the backends
                    self._changed()
                if not live.requested:
                    live.fetch_more.set()
                continue
            async with self.db_lock:
                out = await live.call(session.receive, msg, thread=True)
            if session.peer is not None and self.cap not in session.peer.capabilities:
                log.warning("peer %s uses another key; closing", live.peer_id.hex()[:16])
                await send(await live.call(session.close, "different key"))
                scope.cancel()
                return
            await send(out)
            live.fetch_more.set()  # new manifests may want chunks
            if session.state is SessionState.CLOSED:
                scope.cancel()
                return

    async def _server(self, live: _Live, send, wants, out: _Outbox) -> None:
        """Answer the peer's chunk requests beside the reader, pacing on the outbox."""
        async for msg in wants:
            for cid in msg.chunk_ids:
                await out.wait_room()
                blob = await trio.to_thread.run_sync(read_object, self.cloud, cid)
                await send([await live.call(live.session.chunk_reply, msg.request_id, cid, blob)])

    async def _pusher(self, live: _Live, send) -> None:
        while True:
            with trio.move_on_after(ANTI_ENTROPY_S):
                await live.changed.wait()
            live.changed = trio.Event()
            mine = await trio.to_thread.run_sync(self.sync_store.summary)
            claims = live.session.peer_claims
            lag = sum(max(0, s - claims.get(o, 0)) for o, s in mine.items())
            self.notes.note(live.peer_id, Peers.lag_fields(lag))
            if live.session.state in (SessionState.SYNCING, SessionState.IDLE):
                async with self.db_lock:
                    out = await live.call(live.session.local_changed, thread=True)
                await send(out)

    async def _fetcher(self, live: _Live, send) -> None:
        """Ask the peer for chunks this node wants, one request at a time, back to back."""
        while True:
            with trio.move_on_after(POLL_S * 5):
                await live.fetch_more.wait()
            live.fetch_more = trio.Event()
            if live.session.state not in (SessionState.SYNCING, SessionState.IDLE) or live.requested:
                continue
            wanted = await trio.to_thread.run_sync(replica.wanted_chunks, self.cloud.index, FETCH_BATCH)
            others = set().union(*(x.requested for x in self.live.values() if x is not live))
            ids = [c for c in wanted if c not in others]
            if ids:
                live.requested |= set(ids)
                await send(await live.call(live.session.want_chunks, ids))

    def _changed(self) -> None:
        for live in self.live.values():
            live.changed.set()

    # ---- background tasks ---------------------------------------------------
    async def watch_changes(self) -> None:
        """Poll the log vector (CLI processes write beside the daemon) and wake the sessions."""
        last = None
        while True:
            cur = await trio.to_thread.run_sync(self.sync_store.summary)
            if cur != last:
                if last is not None:
                    self.events.publish("changed")
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
                known = await trio.to_thread.run_sync(self.peers.all)
                now = time.monotonic()
                connected = {x.peer_id for x in self.live.values()}
                for peer_id, rec in known.items():
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
                            self.notes.note(peer_id, Peers.error_fields(str(e)))
                            return
                        backoff[peer_id] = 0.5
                        await self.run_session(conn, outgoing=True)
                        next_try[peer_id] = time.monotonic() + 0.5

                    next_try[peer_id] = now + 3600  # until the attempt finishes
                    n.start_soon(attempt)
                await trio.sleep(POLL_S)

    async def uploads(self) -> None:
        """Drain the upload queue every UPLOAD_S, and soon after a pack arrives from a peer."""
        while True:
            with trio.move_on_after(UPLOAD_S):
                await self.upload_soon.wait()
            self.upload_soon = trio.Event()
            if self.cloud.config.backends:
                try:
                    await trio.to_thread.run_sync(lambda: upload_pending(self.cloud, raise_on_error=False))
                except HubClosed:
                    return  # shutting down; the queue keeps what was not sent
                except Exception as e:  # logged, retried next round
                    log.warning("upload round failed: %s", e)
                    self.events.publish("error", what="upload", message=str(e)[:300])

    async def keep_pins(self) -> None:
        """Fetch the packs of pinned files that are not local, at start and every PINS_S.

        Pinned files arrive by sync as location hints, or were pinned while a backend
        was away; trim never evicts them once they are local.
        """
        while True:
            if self.cloud.config.backends:
                try:
                    fids = await trio.to_thread.run_sync(pinned_not_local, self.cloud)
                    if fids:
                        res = await trio.to_thread.run_sync(warm, self.cloud, [f.hex() for f in fids])
                        log.info("fetched %d packs of %d pinned files", res["packs_fetched"],
                                 len(fids))
                except HubClosed:
                    return
                except Exception as e:  # logged, retried next round
                    log.warning("fetching pinned files failed: %s", e)
            await trio.sleep(PINS_S)

    async def write_state(self, ready: bool) -> None:
        """HOME/daemon.json for `mosaic status` (written atomically, in a worker thread)."""
        doc = {"pid": os.getpid(), "listen": f"{self.listen[0]}:{self.listen[1]}",
               "node_id": self.identity.node_id_str, "ready": ready, "since": time.time()}
        await trio.to_thread.run_sync(atomic_write, self.cloud.home.root / "daemon.json",
                                      json.dumps(doc).encode())


def _protocol_error(e: BaseException) -> ProtocolError | None:
    """The ProtocolError inside a (possibly grouped) exception, if any."""
    if isinstance(e, ProtocolError):
        return e
    if isinstance(e, BaseExceptionGroup):
        for x in e.exceptions:
            found = _protocol_error(x)
            if found is not None:
                return found
    return None


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


# A face that runs inside the daemon (the HTTP face): started with `nursery.start(service,
# daemon)`, it calls task_status.started() once it serves, and runs until cancelled.
Service = Callable[..., Awaitable[None]]


async def main(home: Path, listen: str, passphrase: str | None,
               services: Sequence[Service] = ()) -> None:
    """Run the daemon (and the faces in `services`) until SIGTERM or SIGINT."""
    host, port = split_addr(listen)
    store = await trio.to_thread.run_sync(lambda: Store.open(home, passphrase=passphrase))
    try:
        # Shared for the daemon's life: it writes the index (sync, fetched packs, uploads), so
        # gc answers busy while it runs; serve.lock marks the holder as a daemon.
        with HomeLock(store.home, exclusive=False, daemon=True):
            replica.install(store.index)
            identity = await trio.to_thread.run_sync(Identity.load_or_create, store.home.root)
            await trio.to_thread.run_sync(replica.enable, store.index, identity.node_id)
            secrets = await trio.to_thread.run_sync(load_secrets, store.home, store.keys)
            async with BackendHub.running(store.config.backends, secrets) as hub:
                cloud = Cloud(store, hub=hub)
                try:
                    d = Daemon(cloud, identity, (host, port))
                    d.engine = Engine(store, cloud)
                    try:
                        await _serve(d, hub, services)
                    finally:
                        with trio.CancelScope(shield=True):
                            await d.notes.flush()
                finally:
                    cloud.close()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_shut, store)


async def _serve(d: Daemon, hub: BackendHub, services: Sequence[Service] = ()) -> None:
    """The daemon's tasks, until a signal."""
    from .transport import serve
    host, port = d.listen
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as n:
            listeners = await n.start(serve, d.identity, host, port, d.is_trusted, d.run_session)
            bound = listeners[0].socket.getsockname() if listeners else (host, port)
            d.listen = (host, bound[1])
            n.start_soon(d.notes.writer)
            n.start_soon(d.watch_changes)
            n.start_soon(d.dial)
            n.start_soon(d.uploads)
            n.start_soon(d.keep_pins)
            for service in services:
                await n.start(service, d)
            await d.write_state(True)
            log.info("ready: node %s listening on %s:%d", d.identity.node_id_str, host, bound[1])
            async for sig in signals:
                log.info("received %s, shutting down", signal.Signals(sig).name)
                hub.stop()  # backend calls in flight end now, not when they would finish
                n.cancel_scope.cancel()
                break


def _shut(store: Store) -> None:
    try:
        (store.home.root / "daemon.json").unlink(missing_ok=True)
    finally:
        store.close()
