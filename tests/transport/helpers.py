"""A test server on 127.0.0.1, raw TLS clients that misbehave, and log polling."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import pytest
import trio

from mosaic.node.cluster.identity import Identity
from mosaic.node.cluster.transport import (
    ConnectionClosed,
    PeerConnection,
    client_ssl_context,
    serve,
)
from mosaic.protocol.framing import FrameDecoder
from mosaic.protocol.limits import PROTOCOL_VERSION
from mosaic.protocol.messages import Bye, Hello, Ping, Pong

HOST = "127.0.0.1"
LOGGER = "mosaic.transport"


@dataclass
class Server:
    identity: Identity
    port: int = 0
    peers: list[bytes] = field(default_factory=list)  # every connection the handler saw
    received: list[object] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


async def echo_handler(server: Server, conn: PeerConnection) -> None:
    """Answer Hello with Hello and Ping with Pong; record everything."""
    server.peers.append(conn.peer_id)
    while True:
        try:
            msg = await conn.receive()
        except ConnectionClosed:
            return
        except Exception as e:
            server.errors.append(e)
            raise
        server.received.append(msg)
        if isinstance(msg, Hello):
            await conn.send(Hello(PROTOCOL_VERSION, server.identity.node_id))
        elif isinstance(msg, Ping):
            await conn.send(Pong(msg.nonce))
        elif isinstance(msg, Bye):
            return


@asynccontextmanager
async def running_server(identity: Identity, trusted: set[bytes], *, timeout: float = 3.0,
                         handler: Callable[[Server, PeerConnection], Awaitable[None]]
                         = echo_handler, **kw: object) -> AsyncIterator[Server]:
    server = Server(identity)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(
            serve, identity, HOST, 0, lambda node_id: node_id in trusted,
            partial(handler, server), timeout=timeout, **kw))
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


async def raw_tls(port: int) -> trio.SSLStream:
    """A TLS 1.3 connection to the server that does nothing else yet."""
    tcp = await trio.open_tcp_stream(HOST, port)
    stream = trio.SSLStream(tcp, client_ssl_context(), server_hostname=None)
    await stream.do_handshake()
    return stream


async def read_frames(stream: trio.SSLStream, count: int | None = None) -> list[bytes]:
    """Frames until `count` were read, or until the server hangs up."""
    dec = FrameDecoder()
    out: list[bytes] = []
    while count is None or len(out) < count:
        try:
            data = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            break
        if not data:
            break
        out += dec.feed(data)
    return out


def transport_lines(caplog: pytest.LogCaptureFixture,
                    level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno >= level]


async def wait_for_lines(caplog: pytest.LogCaptureFixture, n: int) -> list[str]:
    """Wait (the caller bounds it) until the server logged `n` warning lines."""
    while len(transport_lines(caplog)) < n:
        await trio.sleep(0.01)
    await trio.sleep(0.05)  # and check that no second line follows
    return transport_lines(caplog)
