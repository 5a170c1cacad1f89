"""Authenticated, encrypted connections between nodes: TLS 1.3 + a signed challenge.

Handshake (docs/transport.md has the sequence and the threat model):

1. TCP, then TLS 1.3 (nothing older). The server presents its self-signed
   identity certificate; the client does not verify it against any CA but
   *pins* it: SHA-256 of the DER certificate must equal the node ID it dialled
   (`PeerIdMismatch` otherwise, before a single byte of application data).
2. Inside TLS the server sends `AuthChallenge(server_node_id, nonce)`; the
   client answers `AuthProof(client_cert_der, signature)` where the signature
   is the client's Ed25519 signature over
   ``b"mosaic-peer-auth v1" + server_node_id + nonce + client_node_id``.
3. The server derives the client's node ID from the certificate, checks that
   the key is Ed25519, the signature, and finally `is_trusted(id)`; it answers
   `AuthOk`, or `Bye("authentication refused")` and hangs up.
4. The connection is handed to the caller, whose `SyncSession` exchanges Hello.

Until step 3 succeeds the server sends nothing but the challenge (and the final
Bye), reads at most `AUTH_MAX_FRAME` bytes per frame, and the whole handshake is
bounded by `timeout`. Auth messages are msgpack arrays like protocol messages,
framed with `protocol.framing`, with codes 100..102 (outside the protocol's).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import ssl
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager

import trio

from mosaic.protocol.errors import (
    LocalProtocolError,
    MalformedFrame,
    PeerMismatch,
    ProtocolError,
)
from mosaic.protocol.framing import HEADER_LEN, FrameDecoder, encode_frame
from mosaic.protocol.limits import MAX_FRAME_SIZE
from mosaic.protocol.messages import Bye, Hello, Message, decode_message, encode_message

from .identity import NODE_ID_LEN, Identity, format_node_id, node_id_from_cert
from .peerauth import (
    AUTH_DOMAIN,
    AUTH_MAX_FRAME,
    DEFAULT_TIMEOUT,
    NONCE_LEN,
    REFUSAL_REASON,
    AuthChallenge,
    AuthError,
    AuthMessage,
    AuthOk,
    AuthProof,
    AuthTimeout,
    ConnectError,
    ConnectionClosed,
    PeerIdMismatch,
    Refused,
    TransportError,
    Untrusted,
    auth_signed_bytes,
    decode_auth,
    encode_auth,
    verify_proof,
)

__all__ = [
    "AUTH_DOMAIN",
    "AUTH_MAX_FRAME",
    "DEFAULT_TIMEOUT",
    "AuthChallenge",
    "AuthError",
    "AuthOk",
    "AuthProof",
    "AuthTimeout",
    "ConnectError",
    "ConnectionClosed",
    "PeerConnection",
    "PeerIdMismatch",
    "Refused",
    "TransportError",
    "Untrusted",
    "accept",
    "auth_signed_bytes",
    "client_ssl_context",
    "connect",
    "decode_auth",
    "encode_auth",
    "serve",
    "verify_proof",
]

log = logging.getLogger("mosaic.transport")
_CLOSE_TIMEOUT = 1.0
_RECV_SIZE = 64 * 1024


def client_ssl_context() -> ssl.SSLContext:
    """TLS 1.3 only; the certificate is not CA-verified but pinned after the handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_client_ctx: ssl.SSLContext | None = None
_server_ctxs: weakref.WeakKeyDictionary[Identity, ssl.SSLContext] = weakref.WeakKeyDictionary()


def _client_context() -> ssl.SSLContext:
    global _client_ctx
    if _client_ctx is None:
        _client_ctx = client_ssl_context()
    return _client_ctx


def _server_context(identity: Identity) -> ssl.SSLContext:
    ctx = _server_ctxs.get(identity)
    if ctx is None:
        if identity.cert_path is None or identity.key_path is None:
            raise TransportError("identity has no files to present in TLS")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_mode = ssl.CERT_NONE  # clients authenticate inside TLS (AuthProof)
        ctx.num_tickets = 0  # no session resumption: every connection is a full handshake
        ctx.load_cert_chain(identity.cert_path, identity.key_path)
        _server_ctxs[identity] = ctx
    return ctx


def _tls_failure(e: BaseException) -> str:
    cause = e.__cause__ or e.__context__
    return str(cause or e) or type(e).__name__


@contextmanager
def _auth_errors(what: str) -> Iterator[None]:
    """Turn anything the peer can cause during authentication into AuthError."""
    try:
        yield
    except AuthError:
        raise
    except ProtocolError as e:
        raise AuthError(f"{what}: {e}") from e
    except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
        raise AuthError(f"{what}: connection lost ({_tls_failure(e)})") from e
    except _PeerEOF:
        raise AuthError(f"{what}: peer closed the connection") from None


class _PeerEOF(Exception):
    pass


async def _read_exact(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = await stream.receive_some(n - len(buf))  # never reads past this frame
        if not data:
            raise _PeerEOF
        buf += data
    return bytes(buf)


async def _read_auth_frame(stream: trio.abc.ReceiveStream) -> bytes:
    """One frame of at most AUTH_MAX_FRAME bytes, without reading beyond it."""
    dec = FrameDecoder(AUTH_MAX_FRAME)
    header = await _read_exact(stream, HEADER_LEN)
    dec.feed(header)  # FrameTooLarge / MalformedFrame from the header alone
    try:
        body = await _read_exact(stream, int.from_bytes(header, "big"))
    except _PeerEOF:
        raise MalformedFrame("stream ended inside a frame") from None
    (payload,) = dec.feed(body)
    return payload


def _frame(msg: AuthMessage | Message) -> bytes:
    if isinstance(msg, AuthChallenge | AuthProof | AuthOk):
        return encode_frame(encode_auth(msg))
    return encode_frame(encode_message(msg))


async def _send_bye_quietly(stream: trio.abc.SendStream, reason: str) -> None:
    with trio.move_on_after(_CLOSE_TIMEOUT):
        try:
            await stream.send_all(_frame(Bye(reason)))
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass


def _check_id(value: object, what: str) -> bytes:
    if type(value) is not bytes or len(value) != NODE_ID_LEN:
        raise ValueError(f"{what} must be {NODE_ID_LEN} bytes")
    return value


# ------------------------------------------------------------------ connection

class PeerConnection(trio.abc.AsyncResource):
    """An authenticated connection carrying framed protocol messages.

    `send` and `receive` may be used from different tasks at the same time;
    concurrent sends (or receives) are serialised. A `ProtocolError` from
    `receive` means the peer broke the protocol: send Bye and `aclose()`.
    """

    def __init__(self, stream: trio.SSLStream, peer_id: bytes, local_id: bytes,
                 max_frame_size: int = MAX_FRAME_SIZE, peer_cert: bytes = b""):
        self._stream = stream
        self._peer_id = peer_id
        #: the peer's certificate (DER), whose SHA-256 is `peer_id` (its signing key)
        self.peer_cert = peer_cert
        self._local_id = local_id
        self._decoder = FrameDecoder(max_frame_size)
        self._pending: deque[bytes] = deque()
        self._send_lock = trio.Lock()
        self._recv_lock = trio.Lock()

    @property
    def peer_id(self) -> bytes:
        """The peer's authenticated node ID (32 bytes)."""
        return self._peer_id

    @property
    def local_id(self) -> bytes:
        return self._local_id

    def __repr__(self) -> str:
        return f"PeerConnection(peer={format_node_id(self._peer_id)})"

    async def send(self, msg: Message) -> None:
        """Frame and send one protocol message. ConnectionClosed if the connection is gone."""
        await self.send_many((msg,))

    async def send_many(self, msgs: Sequence[Message]) -> None:
        """Frame and send messages in order with one write (fewer TLS records and syscalls
        than one `send` each). ConnectionClosed if the connection is gone."""
        if any(isinstance(m, Hello) and m.node_id != self._local_id for m in msgs):
            raise LocalProtocolError("our Hello must carry our own node id")
        # framed for the peer's default limit, not ours
        data = b"".join([encode_frame(encode_message(m)) for m in msgs])
        if not data:
            return
        async with self._send_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                raise ConnectionClosed(f"cannot send: {_tls_failure(e)}") from e

    async def receive(self) -> Message:
        """The next protocol message. ProtocolError (FrameTooLarge, MalformedFrame,
        BadMessage, PeerMismatch for a Hello that is not the peer's) if the peer
        broke the protocol; ConnectionClosed at the end of the stream."""
        async with self._recv_lock:
            while not self._pending:
                try:
                    data = await self._stream.receive_some(_RECV_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                    raise ConnectionClosed(f"connection lost: {_tls_failure(e)}") from e
                if not data:
                    self._decoder.close()  # MalformedFrame if inside a frame
                    raise ConnectionClosed("peer closed the connection")
                self._pending.extend(self._decoder.feed(data))
            msg = decode_message(self._pending.popleft())
        if isinstance(msg, Hello) and msg.node_id != self._peer_id:
            raise PeerMismatch("Hello's node id is not the authenticated peer's")
        return msg

    async def aclose(self) -> None:
        """Close (TLS close_notify, best effort for up to 1 s, then the socket)."""
        with trio.move_on_after(_CLOSE_TIMEOUT):
            try:
                await self._stream.aclose()
            except (trio.BrokenResourceError, ssl.SSLError, OSError):
                pass  # the stream is closed either way (trio closes the socket on failure)


# ------------------------------------------------------------------ handshakes

async def connect(identity: Identity, host: str, port: int, expected_peer_id: bytes, *,
                  timeout: float = DEFAULT_TIMEOUT,
                  max_frame_size: int = MAX_FRAME_SIZE) -> PeerConnection:
    """Dial `host:port`, require the server to be `expected_peer_id`, prove who we are.

    ConnectError if TCP fails; PeerIdMismatch, Refused, AuthTimeout or AuthError
    if the handshake does; nothing is left open on failure."""
    expected = _check_id(expected_peer_id, "expected_peer_id")
    stream: trio.SSLStream | None = None
    ok = False
    try:
        with trio.fail_after(timeout):
            try:
                tcp = await trio.open_tcp_stream(host, port)
            except OSError as e:
                raise ConnectError(f"cannot connect to {host}:{port}: {e}") from e
            stream = trio.SSLStream(tcp, _client_context(), server_hostname=None)
            cert = await _client_handshake(identity, stream, expected)
        ok = True
    except trio.TooSlowError:
        if stream is None:
            raise ConnectError(f"connecting to {host}:{port} timed out after {timeout} s") from None
        raise AuthTimeout(f"handshake with {host}:{port} took more than {timeout} s") from None
    finally:
        if not ok and stream is not None:
            await trio.aclose_forcefully(stream)
    assert stream is not None
    return PeerConnection(stream, expected, identity.node_id, max_frame_size, cert)


async def _client_handshake(identity: Identity, stream: trio.SSLStream, expected: bytes) -> bytes:
    """The client side of the handshake; returns the server's certificate (DER)."""
    try:
        await stream.do_handshake()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
        raise AuthError(f"TLS handshake failed: {_tls_failure(e)}") from e
    if stream.version() != "TLSv1.3":  # minimum_version makes this unreachable
        raise AuthError(f"negotiated {stream.version()}, need TLSv1.3")
    der = stream.getpeercert(binary_form=True)
    if not der:
        raise AuthError("server presented no certificate")
    got = node_id_from_cert(der)
    if not hmac.compare_digest(got, expected):
        raise PeerIdMismatch(
            f"server is node {format_node_id(got)}, expected {format_node_id(expected)}")
    with _auth_errors("authentication"):
        challenge = decode_auth(await _read_auth_frame(stream))
        if not isinstance(challenge, AuthChallenge):
            raise AuthError(f"expected AuthChallenge, got {type(challenge).__name__}")
        if not hmac.compare_digest(challenge.server_node_id, expected):
            raise AuthError("challenge names another server node id")
        sig = identity.sign(auth_signed_bytes(expected, challenge.nonce, identity.node_id))
        await stream.send_all(_frame(AuthProof(identity.cert_der, sig)))
        verdict = decode_auth(await _read_auth_frame(stream))
    if isinstance(verdict, Bye):
        raise Refused(f"server refused us: {verdict.reason[:200]!r}")
    if not isinstance(verdict, AuthOk):
        raise AuthError(f"expected AuthOk, got {type(verdict).__name__}")
    return der


async def accept(identity: Identity, tcp_stream: trio.abc.Stream,
                 is_trusted: Callable[[bytes], bool], *,
                 timeout: float = DEFAULT_TIMEOUT,
                 max_frame_size: int = MAX_FRAME_SIZE) -> PeerConnection:
    """Run the server side of the handshake on an accepted TCP stream.

    Returns the authenticated connection, or raises an AuthError subclass
    (Untrusted, AuthTimeout, ...) after a best-effort Bye and closing the
    stream. `is_trusted(node_id)` must return True (exactly) to accept.
    Nothing is logged here (`serve` logs one line per refusal)."""
    try:
        ctx = _server_context(identity)
    except BaseException:
        await trio.aclose_forcefully(tcp_stream)
        raise
    stream = trio.SSLStream(tcp_stream, ctx, server_side=True)
    tls_up = False
    ok = False
    try:
        try:
            with trio.fail_after(timeout):
                try:
                    await stream.do_handshake()
                except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                    raise AuthError(f"TLS handshake failed: {_tls_failure(e)}") from e
                tls_up = True
                if stream.version() != "TLSv1.3":
                    raise AuthError(f"negotiated {stream.version()}, need TLSv1.3")
                nonce = secrets.token_bytes(NONCE_LEN)
                with _auth_errors("authentication"):
                    await stream.send_all(_frame(AuthChallenge(identity.node_id, nonce)))
                    proof = decode_auth(await _read_auth_frame(stream))
                if not isinstance(proof, AuthProof):
                    raise AuthError(f"expected AuthProof, got {type(proof).__name__}")
                peer_id = verify_proof(proof, identity.node_id, nonce, is_trusted)
                with _auth_errors("authentication"):
                    await stream.send_all(_frame(AuthOk()))
        except trio.TooSlowError:
            what = "authentication" if tls_up else "TLS handshake"
            raise AuthTimeout(f"{what} not completed within {timeout} s") from None
        ok = True
    except AuthError:
        if tls_up:
            await _send_bye_quietly(stream, REFUSAL_REASON)
        raise
    finally:
        if not ok:
            await trio.aclose_forcefully(stream)
    return PeerConnection(stream, peer_id, identity.node_id, max_frame_size, proof.cert_der)


def _peer_address(stream: trio.abc.Stream) -> str:
    try:
        addr = stream.socket.getpeername()  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return "?"
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = f"[{addr[0]}]" if ":" in str(addr[0]) else str(addr[0])
        return f"{host}:{addr[1]}"
    return str(addr)


async def serve(identity: Identity, host: str | None, port: int,
                is_trusted: Callable[[bytes], bool],
                handler: Callable[[PeerConnection], Awaitable[None]], *,
                timeout: float = DEFAULT_TIMEOUT,
                max_handshakes: int = 64,
                max_frame_size: int = MAX_FRAME_SIZE,
                task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
                ) -> None:
    """Listen on host:port and run `handler(conn)` for every authenticated peer,
    each in its own task, until cancelled. `task_status.started()` gets the
    listeners (port 0 picks a free port: read it from `listeners[0].socket`).

    A refused or failed handshake logs one line on "mosaic.transport" and the
    server carries on. At most `max_handshakes` connections may be
    authenticating at once; further ones are dropped at once. The connection
    is closed when the handler returns; a ProtocolError escaping the handler
    sends Bye(reason) first; other errors are logged and do not stop serving."""
    _server_context(identity)  # a broken identity fails here, not per connection
    listeners = await trio.open_tcp_listeners(port, host=host)
    limiter = trio.CapacityLimiter(max_handshakes)

    async def one(tcp: trio.abc.Stream) -> None:
        addr = _peer_address(tcp)
        try:
            await serve_one(tcp, addr)
        except Exception:  # never let one connection stop the server
            log.exception("connection from %s failed unexpectedly", addr)

    async def serve_one(tcp: trio.abc.Stream, addr: str) -> None:
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            log.warning("dropped %s: %d handshakes already in progress", addr, max_handshakes)
            await trio.aclose_forcefully(tcp)
            return
        try:
            conn = await accept(identity, tcp, is_trusted, timeout=timeout,
                                max_frame_size=max_frame_size)
        except AuthError as e:
            log.warning("refused %s: %s", addr, e)
            return
        finally:
            limiter.release()
        peer = format_node_id(conn.peer_id)
        log.debug("authenticated %s as %s", addr, peer)
        async with conn:
            try:
                await handler(conn)
            except ProtocolError as e:
                log.info("closing %s (%s): protocol error: %s", peer, addr, e)
                with trio.move_on_after(_CLOSE_TIMEOUT):
                    try:
                        await conn.send(Bye(str(e)[:1000]))
                    except (TransportError, ProtocolError):
                        pass
            except ConnectionClosed as e:
                log.debug("connection to %s (%s) ended: %s", peer, addr, e)
            except TransportError as e:
                log.info("connection to %s (%s) failed: %s", peer, addr, e)
            except Exception:
                log.exception("handler for %s (%s) failed", peer, addr)

    await trio.serve_listeners(one, listeners, task_status=task_status)
