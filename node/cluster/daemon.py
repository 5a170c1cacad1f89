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

What one peer can cost is bounded: its outbox (messages queued for it) has a
high-water mark, and a peer above it (one that sends and never reads) is
disconnected; pings are answered on the loop, without a thread hop or the store
lock. A page of entries the store refuses (bad signature, our own origin, a clock
too far ahead, an entry that cannot be applied) is logged and the session goes on;
a session that ends in an error makes the dialer back off. Wanted chunks rotate
through `WantQueue` (wantq.py), so chunks no peer has never stop the others.
"""

from __future__ import annotations

import contextlib
import functools
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
from mosaic.protocol.messages import Ack, Bye, ChunkData, ChunkMissing, Ping, Pong, WantChunks
from mosaic.protocol.sync import SessionState, SyncSession

from ..cloud.cache import pinned_not_local, warm
from ..cloud.cloud import Cloud
from ..cloud.collect import keep_published
from ..cloud.credentials import load_secrets
from ..cloud.hub import BackendHub, HubClosed
from ..cloud.uploads import upload_pending
from ..errors import BusyError, MosaicError, UsageError
from ..store.atomic import atomic_write
from ..store.home import HomeLock
from ..store.store import Store
from . import filelog, synclog, syncstore
from .engine import Engine
from .events import EventBus
from .fetch import read_objects, store_objects
from .identity import Identity
from .outbox import Outbox, PeerNotes, PeerTooSlow
from .peerauth import TransportError
from .peers import Peers
from .wantq import WantQueue

log = logging.getLogger("mosaic.daemon")

POLL_S = 0.2
ANTI_ENTROPY_S = 30.0
PINS_S = 30.0  # pinned files that are not local are fetched at start and this often
UPLOAD_S = 5.0  # upload rounds at least this often (sooner after chunks arrive from a peer)
FETCH_BATCH = 4096  # MAX_WANT: one request per round trip
FETCH_ORIGIN_SHARE = FETCH_BATCH // 4  # one origin's share of a batch (filled up if others lack)
STORE_BATCH_BYTES = 8 << 20
PAGE_ENTRIES, PAGE_BYTES = 4096, 4 << 20  # log pages: fewer round trips and transactions
SERVE_BATCH_BYTES = 1 << 20  # chunks read for a peer per thread hop (at least one)
SESSION_BACKOFF_MAX_S = 60.0  # a peer whose sessions keep failing is dialled at most this seldom
SESSION_OK_S = 30.0  # a session that lasted this long resets the back-off, however it ended
LAG_NOTE_S = 1.0  # how often a session records the peer's lag at most
LOG_REJECTIONS = 20  # refused pages logged per session (then every 100th)


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
    logged_rejections: int = 0
    lag_noted: float = 0.0
    failed: bool = False  # the session ended in an error (the dialer backs off)
    replaced: bool = False  # ended because a newer connection with the peer is kept

    async def call(self, fn, *args, thread: bool = False):
        """Call a session method, in a worker thread when it touches the store."""
        async with self.lock:
            if thread:
                return await trio.to_thread.run_sync(fn, *args)
            return fn(*args)


class Daemon:
    """State shared by the daemon's tasks."""

    def __init__(self, cloud: Cloud, identity: Identity, listen: tuple[str, int]):
        self.cloud = cloud
        self.identity = identity
        self.listen = listen
        self.peers = Peers(cloud.index)
        self.notes = PeerNotes(self.peers)
        self.live: dict[int, _Live] = {}
        self.sync_store = syncstore.LmdbSyncStore(cloud.index)
        self.cap = f"key.{cloud.keys.key_id}"
        # the sessions' store writes (applying records, storing fetched chunks) one at a time
        self.db_lock = trio.Lock()
        self.upload_soon = trio.Event()
        self.events = EventBus()
        self.engine: Engine | None = None  # the verbs, for faces served inside the daemon
        self.wants = WantQueue()
        self.summary_now: dict[bytes, int] = {}  # the log vector, as last polled

    # ---- trust --------------------------------------------------------------
    def is_trusted(self, peer_id: bytes) -> bool:
        """Only peers added with `mosaic peer add` may connect (a point read, on the loop)."""
        return self.peers.get(peer_id) is not None

    # ---- sessions -----------------------------------------------------------
    async def run_session(self, conn, outgoing: bool = False) -> bool:
        """Sync with one authenticated peer until either side goes away; False if the
        session ended in an error (the dialer then backs off).

        Two nodes that dial each other at once end up with two connections; both
        keep the one dialled by the node with the smaller ID and drop the other.
        """
        peer = conn.peer_id
        keeper_dialer = min(peer, self.identity.node_id)
        this_dialer = self.identity.node_id if outgoing else peer
        for other in [x for x in self.live.values() if x.peer_id == peer]:
            other_dialer = self.identity.node_id if other.outgoing else peer
            if this_dialer != keeper_dialer and other_dialer == keeper_dialer:
                # the other connection is the one both sides keep: say so, then hang up
                await _send_quietly(conn, [Bye(REPLACED)])
                await conn.aclose()
                return True
            if other.scope is not None:
                other.replaced = True  # its session says goodbye as it ends
                other.scope.cancel()
        cert = getattr(conn, "peer_cert", b"")
        if cert:  # trusted (peer add) and met: vouch for it, so every node learns its key
            try:
                async with self.db_lock:
                    await trio.to_thread.run_sync(synclog.vouch, self.cloud.index, cert)
            except ValueError as e:
                log.warning("peer %s: cannot vouch for it: %s", peer.hex()[:16], e)
        session = SyncSession(self.identity.node_id, self.sync_store, expected_peer_id=peer,
                              capabilities=(self.cap,), software="mosaic/0.1",
                              batch_entries=PAGE_ENTRIES, batch_bytes=PAGE_BYTES)
        live = _Live(peer, session, outgoing=outgoing)
        key = id(live)
        self.live[key] = live
        self.wants.peer_joined()
        out = Outbox()

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
            # the peer went away (closed, reset): a normal end; anything else is an error
            live.failed = (_find(e, ProtocolError) is not None or _find(e, PeerTooSlow) is not None
                           or _find(e, TransportError) is None)
            log.warning("peer %s: connection closed: %s", peer.hex()[:16], _describe(e))
            err = _protocol_error(e)
            if err is not None or _find(e, PeerTooSlow) is not None:
                # tell the peer why, if the connection still takes it
                reason = str(err if err is not None else _find(e, PeerTooSlow))
                await _send_quietly(conn, session.close(reason[:200]))
        finally:
            self.live.pop(key, None)
            self.wants.peer_left(peer)
            # a connection that replaced this one may be up already
            still = any(x.peer_id == peer for x in self.live.values())
            self.notes.note(peer, Peers.seen_fields(connected=still))
            self.events.publish("peer", peer=peer.hex(), connected=still)
            with trio.CancelScope(shield=True):
                if live.replaced:  # the peer learns it was a duplicate, not a failure
                    await _send_quietly(conn, session.close(REPLACED))
                await conn.aclose()
        return not live.failed

    async def _reader(self, conn, live: _Live, send, wants, scope: trio.CancelScope) -> None:
        """Read every frame; never block on serving the peer's requests (that is `_server`)."""
        session = live.session
        pending: list[tuple[bytes, bytes]] = []
        pending_bytes = 0
        lacking: list[bytes] = []
        while True:
            msg = await conn.receive()
            if isinstance(msg, Ping | Pong):
                # answered at once, on the loop: no thread hop, no lock (the handlers touch
                # only the session's ping nonces), so a flood costs no more than its Pongs
                await send(session.receive(msg))
                continue
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
                    self.wants.arrived(msg.chunk_id)
                else:
                    connected = {x.peer_id for x in self.live.values()
                                 if x.session.state in (SessionState.SYNCING, SessionState.IDLE)}
                    if self.wants.lacked(msg.chunk_id, live.peer_id, connected):
                        lacking.append(msg.chunk_id)  # no connected peer has it
                if pending and (pending_bytes >= STORE_BATCH_BYTES or not live.requested):
                    batch, pending, pending_bytes = pending, [], 0
                    async with self.db_lock:
                        stored, errors = await trio.to_thread.run_sync(store_objects, self.cloud, batch)
                    for e in errors:
                        log.warning("peer %s sent a bad chunk: %s", live.peer_id.hex()[:16], e)
                    if stored:
                        self.upload_soon.set()  # the new pack is queued for the backends
                    self._changed()
                if lacking and not live.requested:
                    batch_l, lacking = lacking, []
                    async with self.db_lock:
                        gone = await trio.to_thread.run_sync(filelog.expire_wanted,
                                                             self.cloud.index, batch_l)
                    if gone:
                        log.info("%d wanted chunks expired: no node holds their files", gone)
                        for cid in batch_l:
                            self.wants.arrived(cid)
                if not live.requested:
                    live.fetch_more.set()
                continue
            if isinstance(msg, Ack):  # no store write: on the loop, under the session lock
                await send(await live.call(session.receive, msg))
                self._note_lag(live)
                continue
            async with self.db_lock:
                out = await live.call(session.receive, msg, thread=True)
            self._log_rejections(live)
            if session.peer is not None and self.cap not in session.peer.capabilities:
                log.warning("peer %s uses another key; closing", live.peer_id.hex()[:16])
                await send(await live.call(session.close, "different key"))
                scope.cancel()
                return
            await send(out)
            live.fetch_more.set()  # new manifests may want chunks
            if session.state is SessionState.CLOSED:
                if session.peer_bye_reason is not None:
                    log.info("peer %s closed the session: %s", live.peer_id.hex()[:16],
                             session.peer_bye_reason or "no reason given")
                scope.cancel()
                return

    def _log_rejections(self, live: _Live) -> None:
        """Log the pages the store refused (a few per session, then every 100th)."""
        rej = live.session.rejections
        while rej:
            origin, r = rej.popleft()
            live.logged_rejections += 1
            n = live.logged_rejections
            if n <= LOG_REJECTIONS or n % 100 == 0:
                log.warning("peer %s: refused entries of %s from seq %d: %s (%d refused pages)",
                            live.peer_id.hex()[:16], origin.hex()[:16], r.seq, r.reason, n)

    def _note_lag(self, live: _Live, force: bool = False) -> None:
        """Record how many of our entries the peer has not acknowledged (throttled)."""
        now = time.monotonic()
        lag = live.session.unacknowledged(self.summary_now)
        if force or lag == 0 or now - live.lag_noted >= LAG_NOTE_S:
            live.lag_noted = now
            self.notes.note(live.peer_id, Peers.lag_fields(lag))

    async def _server(self, live: _Live, send, wants, out: Outbox) -> None:
        """Answer the peer's chunk requests beside the reader, pacing on the outbox."""
        session = live.session
        async for msg in wants:
            todo = list(msg.chunk_ids)
            while todo:  # a batch of objects per thread hop
                await out.wait_room()
                got = await trio.to_thread.run_sync(read_objects, self.cloud, todo, SERVE_BATCH_BYTES)
                todo = todo[len(got):]
                await send(await live.call(lambda got=got, rid=msg.request_id: [
                    session.chunk_reply(rid, cid, blob) for cid, blob in got]))

    async def _pusher(self, live: _Live, send) -> None:
        while True:
            with trio.move_on_after(ANTI_ENTROPY_S):
                await live.changed.wait()
            live.changed = trio.Event()
            if live.session.state in (SessionState.SYNCING, SessionState.IDLE):
                async with self.db_lock:
                    out = await live.call(live.session.local_changed, thread=True)
                await send(out)
            self._note_lag(live, force=True)

    async def _fetcher(self, live: _Live, send) -> None:
        """Ask the peer for chunks this node wants, one request at a time, back to back.

        The batch comes from the rotating queue (WantQueue + filelog.wanted_chunks): what
        other sessions asked for, what backs off and what this peer said it lacks are
        passed over, and one origin's share of a batch is capped."""
        while True:
            with trio.move_on_after(POLL_S * 5):
                await live.fetch_more.wait()
            live.fetch_more = trio.Event()
            if live.session.state not in (SessionState.SYNCING, SessionState.IDLE) or live.requested:
                continue
            ids, cursor = await trio.to_thread.run_sync(functools.partial(
                filelog.wanted_chunks, self.cloud.index, FETCH_BATCH, after=self.wants.cursor,
                skip=self.wants.skip_for(live.peer_id), origin_share=FETCH_ORIGIN_SHARE))
            if ids:
                self.wants.asked(live.peer_id, ids, cursor)
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
            self.summary_now = cur
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
                for x in list(self.live.values()):  # `peer rm`: close its connection now
                    if x.peer_id not in known and x.scope is not None:
                        log.info("peer %s was removed; closing its connection", x.peer_id.hex()[:16])
                        x.scope.cancel()
                connected = {x.peer_id for x in self.live.values()}
                for peer_id, rec in known.items():
                    if not rec.get("addr") or peer_id in connected or next_try.get(peer_id, 0) > now:
                        continue
                    try:
                        host, port = split_addr(rec["addr"])
                    except UsageError as e:
                        self.notes.note(peer_id, Peers.error_fields(str(e)))
                        next_try[peer_id] = now + 3600
                        continue

                    async def attempt(peer_id: bytes = peer_id, host: str = host, port: int = port) -> None:
                        try:
                            conn = await connect(self.identity, host, port, peer_id)
                        except (TransportError, OSError, trio.TooSlowError, ProtocolError) as e:
                            b = min(backoff.get(peer_id, 0.5) * 2, 30.0)
                            backoff[peer_id] = b
                            next_try[peer_id] = time.monotonic() + b
                            self.notes.note(peer_id, Peers.error_fields(str(e)))
                            return
                        began = time.monotonic()
                        ok = await self.run_session(conn, outgoing=True)
                        # a session that ended in an error soon backs off like a failed dial
                        ok = ok or time.monotonic() - began > SESSION_OK_S
                        b = 0.5 if ok else min(backoff.get(peer_id, 0.5) * 2, SESSION_BACKOFF_MAX_S)
                        backoff[peer_id] = b
                        next_try[peer_id] = time.monotonic() + b

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
                    # publish this node's index state when other nodes' gc waits for it
                    await trio.to_thread.run_sync(keep_published, self.cloud)
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
    found = _find(e, ProtocolError)
    return found if isinstance(found, ProtocolError) else None


def _find(e: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of `kind` inside a (possibly grouped) exception, if any."""
    if isinstance(e, kind):
        return e
    if isinstance(e, BaseExceptionGroup):
        for x in e.exceptions:
            found = _find(x, kind)
            if found is not None:
                return found
    return None


REPLACED = "another connection between these two nodes is kept"


async def _send_quietly(conn, msgs: Sequence[object]) -> None:  # noqa: ANN001 - a PeerConnection
    """Send last words (a Bye) if the connection still takes them within 2 s; never raises."""
    with trio.move_on_after(2), contextlib.suppress(Exception):
        for m in msgs:
            await conn.send(m)


def _describe(e: BaseException) -> str:
    """One line for a (possibly grouped) exception."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(_describe(x) for x in e.exceptions)
    kind = "protocol error" if isinstance(e, ProtocolError) else type(e).__name__
    return f"{kind}: {e}"


class BadAddress(UsageError, ValueError):
    """An address that is not HOST:PORT with a port in 0..65535 (exit 2)."""


class CannotListen(BusyError):
    """`serve` cannot listen: the address is in use (exit 7) or cannot be bound here."""


def split_addr(addr: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); BadAddress (exit 2) otherwise."""
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit() or len(port) > 5 or int(port) > 65535:
        shown = addr if len(addr) <= 80 else addr[:77] + "..."
        raise BadAddress(f"expected HOST:PORT with a port in 0..65535, got {shown!r}")
    return host.strip("[]"), int(port)


# A face that runs inside the daemon (the HTTP face): started with `nursery.start(service,
# daemon)`, it calls task_status.started() once it serves, and runs until cancelled.
Service = Callable[..., Awaitable[None]]


async def main(home: Path, listen: str, passphrase: str | None,
               services: Sequence[Service] = ()) -> None:
    """Run the daemon (and the faces in `services`) until SIGTERM or SIGINT.

    Errors a user can meet are MosaicErrors with one line and their exit code: a bad
    address (BadAddress, 2), a daemon already running on this home (BusyError, 7), an
    address in use (CannotListen, 7)."""
    try:
        await _main(home, listen, passphrase, services)
    except BaseExceptionGroup as eg:  # nurseries group what their tasks raise
        found = _find(eg, MosaicError)
        if found is not None:
            raise found from None
        raise


async def _main(home: Path, listen: str, passphrase: str | None,
                services: Sequence[Service]) -> None:
    host, port = split_addr(listen)
    store = await trio.to_thread.run_sync(lambda: Store.open(home, passphrase=passphrase))
    try:
        # Shared for the daemon's life: it writes the index (sync, fetched packs, uploads), so
        # gc answers busy while it runs; serve.lock marks the holder as a daemon.
        with HomeLock(store.home, exclusive=False, daemon=True):
            syncstore.install(store.index)
            identity = await trio.to_thread.run_sync(Identity.load_or_create, store.home.root)
            synclog.use_identity(store.index, identity)
            await trio.to_thread.run_sync(syncstore.upgrade, store.index)
            await trio.to_thread.run_sync(syncstore.enable, store.index, identity.node_id)
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
            try:
                listeners = await n.start(serve, d.identity, host, port, d.is_trusted,
                                          d.run_session)
            except OSError as e:
                what = e.strerror or str(e)
                raise CannotListen(f"cannot listen on {host}:{port}: {what}") from None
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
