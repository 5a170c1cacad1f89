"""TLS 1.3 + signed-challenge transport on 127.0.0.1: the happy path and every refusal."""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
from collections.abc import Iterator
from functools import partial

import msgpack
import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mosaic.node.cluster.identity import Identity, node_id_from_cert
from mosaic.node.cluster.transport import (
    AUTH_MAX_FRAME,
    AuthChallenge,
    AuthError,
    AuthOk,
    AuthProof,
    AuthTimeout,
    ConnectError,
    ConnectionClosed,
    PeerConnection,
    PeerIdMismatch,
    Refused,
    Untrusted,
    accept,
    auth_signed_bytes,
    connect,
    decode_auth,
    encode_auth,
    verify_proof,
)
from mosaic.protocol.errors import (
    BadMessage,
    FrameTooLarge,
    LocalProtocolError,
    MalformedFrame,
    PeerMismatch,
)
from mosaic.protocol.framing import encode_frame
from mosaic.protocol.limits import PROTOCOL_VERSION
from mosaic.protocol.messages import Bye, Hello, Ping, Pong, Summary, decode_message, encode_message

from .helpers import (
    HOST,
    LOGGER,
    Server,
    raw_tls,
    read_frames,
    running_server,
    transport_lines,
    wait_for_lines,
)

T = 10  # upper bound for any one test


@pytest.fixture(scope="module")
def ids(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Identity]:
    base = tmp_path_factory.mktemp("identities")
    return {n: Identity.load_or_create(base / n) for n in ("server", "client", "stranger", "other")}


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    yield


async def assert_trusted_client_works(server: Server, client: Identity) -> None:
    before = len(server.peers)
    async with await connect(client, HOST, server.port, server.identity.node_id) as conn:
        await conn.send(Ping(7))
        assert await conn.receive() == Pong(7)
    assert server.peers[before:] == [client.node_id]


async def proof_frame(stream: trio.SSLStream, signer: Identity, *, cert_der: bytes | None = None,
                      server_id: bytes | None = None) -> tuple[bytes, AuthChallenge]:
    """Read the challenge and build a proof frame (optionally for another cert or server)."""
    (payload,) = await read_frames(stream, 1)
    challenge = decode_auth(payload)
    assert isinstance(challenge, AuthChallenge)
    cert = signer.cert_der if cert_der is None else cert_der
    sid = challenge.server_node_id if server_id is None else server_id
    sig = signer.sign(auth_signed_bytes(sid, challenge.nonce, node_id_from_cert(cert)))
    return encode_frame(encode_auth(AuthProof(cert, sig))), challenge


# ------------------------------------------------------------------ happy path

async def test_round_trip(ids: dict[str, Identity], caplog: pytest.LogCaptureFixture) -> None:
    server_id, client = ids["server"], ids["client"]
    with trio.fail_after(T):
        async with running_server(server_id, {client.node_id}) as server:
            conn = await connect(client, HOST, server.port, server_id.node_id)
            assert isinstance(conn, PeerConnection)
            assert conn.peer_id == server_id.node_id
            await conn.send(Hello(PROTOCOL_VERSION, client.node_id, ("x.y",), "tests"))
            assert await conn.receive() == Hello(PROTOCOL_VERSION, server_id.node_id)
            await conn.send(Summary(((b"\x01" * 32, 5),)))
            for i in range(3):
                await conn.send(Ping(i))
                assert await conn.receive() == Pong(i)
            await conn.send(Bye("done"))
            with pytest.raises(ConnectionClosed):
                await conn.receive()  # the handler returned, the server closed
            await conn.aclose()
            assert server.peers == [client.node_id]  # the server saw the client's ID
            assert server.received == [
                Hello(PROTOCOL_VERSION, client.node_id, ("x.y",), "tests"),
                Summary(((b"\x01" * 32, 5),)), Ping(0), Ping(1), Ping(2), Bye("done")]
    assert transport_lines(caplog) == []


async def test_handshake_is_fast_on_loopback(ids: dict[str, Identity],
                                             autojump_clock: trio.testing.MockClock) -> None:
    """A handshake is bounded by round trips alone: it never waits on a timer.

    Under the autojump clock, virtual time moves only when every task waits on a timer; ten
    handshakes in a row must take no virtual time at all. (How many milliseconds they take on
    real hardware is for the benchmarks under tools/.)
    """
    with trio.fail_after(T):
        async with running_server(ids["server"], {ids["client"].node_id}) as server:
            t0 = trio.current_time()
            for _ in range(10):
                conn = await connect(ids["client"], HOST, server.port, ids["server"].node_id)
                await conn.aclose()
            assert trio.current_time() == t0
            assert len(server.peers) == 10


async def test_hello_must_match_authenticated_ids(ids: dict[str, Identity]) -> None:
    server_id, client = ids["server"], ids["client"]
    with trio.fail_after(T):
        async with running_server(server_id, {client.node_id}) as server:
            async with await connect(client, HOST, server.port, server_id.node_id) as conn:
                with pytest.raises(LocalProtocolError):
                    await conn.send(Hello(PROTOCOL_VERSION, ids["other"].node_id))
                # bypass the local check: the server's receive() refuses a foreign Hello
                await conn._stream.send_all(encode_frame(encode_message(
                    Hello(PROTOCOL_VERSION, ids["other"].node_id))))
                assert await conn.receive() == Bye(
                    "Hello's node id is not the authenticated peer's")
            assert isinstance(server.errors[0], PeerMismatch)


# ------------------------------------------------------------ the client's pin

async def test_wrong_pin_fails_before_any_message(ids: dict[str, Identity],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(T):
        async with running_server(ids["server"], {ids["client"].node_id}) as server:
            with pytest.raises(PeerIdMismatch):
                await connect(ids["client"], HOST, server.port, ids["other"].node_id)
            lines = await wait_for_lines(caplog, 1)
            assert server.peers == []
            assert len(lines) == 1
            # the client hung up (FIN or RST) instead of sending a proof
            assert "peer closed the connection" in lines[0] or "connection lost" in lines[0]
            await assert_trusted_client_works(server, ids["client"])


async def test_challenge_naming_another_server_is_refused(ids: dict[str, Identity]) -> None:
    """A server that relays someone else's challenge cannot get a usable proof."""
    server_id = ids["server"]
    from mosaic.node.cluster.transport import _frame, _server_context

    async def evil(tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, _server_context(server_id), server_side=True)
        await stream.do_handshake()
        await stream.send_all(_frame(AuthChallenge(ids["other"].node_id, os.urandom(32))))
        await read_frames(stream)

    with trio.fail_after(T):
        async with trio.open_nursery() as n:
            (listener,) = await n.start(partial(trio.serve_tcp, evil, 0, host=HOST))
            port = listener.socket.getsockname()[1]
            with pytest.raises(AuthError, match="another server"):
                await connect(ids["client"], HOST, port, server_id.node_id)
            n.cancel_scope.cancel()


async def test_client_refuses_tls_below_1_3(ids: dict[str, Identity]) -> None:
    server_id = ids["server"]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(server_id.cert_path, server_id.key_path)

    async def old(tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, ctx, server_side=True)
        with pytest.raises(trio.BrokenResourceError):
            await stream.do_handshake()

    with trio.fail_after(T):
        async with trio.open_nursery() as n:
            (listener,) = await n.start(partial(trio.serve_tcp, old, 0, host=HOST))
            port = listener.socket.getsockname()[1]
            with pytest.raises(AuthError, match="TLS handshake failed") as info:
                await connect(ids["client"], HOST, port, server_id.node_id)
            assert not isinstance(info.value, PeerIdMismatch)
            n.cancel_scope.cancel()


async def test_connect_errors(ids: dict[str, Identity]) -> None:
    with trio.fail_after(T):
        sock = trio.socket.socket()
        await sock.bind((HOST, 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        with pytest.raises(ConnectError):
            await connect(ids["client"], HOST, port, ids["server"].node_id)
        sock.close()
        with pytest.raises(ValueError):
            await connect(ids["client"], HOST, port, b"short")


# ------------------------------------------------------------ server refusals

async def test_untrusted_client_is_refused_before_the_handler(
        ids: dict[str, Identity], caplog: pytest.LogCaptureFixture) -> None:
    server_id, stranger = ids["server"], ids["stranger"]
    with trio.fail_after(T):
        async with running_server(server_id, {ids["client"].node_id}) as server:
            with pytest.raises(Refused, match="authentication refused"):
                await connect(stranger, HOST, server.port, server_id.node_id)
            lines = await wait_for_lines(caplog, 1)
            assert len(lines) == 1
            assert "not trusted" in lines[0] and stranger.node_id_str in lines[0]

            # what an unauthenticated client gets: the challenge and a Bye, nothing else
            stream = await raw_tls(server.port)
            frame, _ = await proof_frame(stream, stranger)
            await stream.send_all(frame + encode_frame(encode_message(Ping(1))))
            rest = [decode_auth(p) for p in await read_frames(stream)]
            assert rest == [Bye("authentication refused")]
            await trio.aclose_forcefully(stream)
            assert len(await wait_for_lines(caplog, 2)) == 2

            assert server.peers == [] and server.received == []  # the handler never ran
            await assert_trusted_client_works(server, ids["client"])


async def test_proof_signed_with_another_key_is_refused(
        ids: dict[str, Identity], caplog: pytest.LogCaptureFixture) -> None:
    client, stranger = ids["client"], ids["stranger"]
    with trio.fail_after(T):
        async with running_server(ids["server"], {client.node_id}) as server:
            stream = await raw_tls(server.port)
            # the trusted client's certificate, signed by the stranger's key
            frame, _ = await proof_frame(stream, stranger, cert_der=client.cert_der)
            await stream.send_all(frame)
            assert [decode_auth(p) for p in await read_frames(stream)] == [
                Bye("authentication refused")]
            await trio.aclose_forcefully(stream)
            (line,) = await wait_for_lines(caplog, 1)
            assert "invalid signature" in line
            assert server.peers == []
            await assert_trusted_client_works(server, client)


async def test_relayed_and_replayed_proofs_are_refused(
        ids: dict[str, Identity], caplog: pytest.LogCaptureFixture) -> None:
    client = ids["client"]
    with trio.fail_after(T):
        async with running_server(ids["server"], {client.node_id}) as server:
            # signed for another server (what a relaying server would obtain)
            stream = await raw_tls(server.port)
            frame, _ = await proof_frame(stream, client, server_id=ids["other"].node_id)
            await stream.send_all(frame)
            await read_frames(stream)
            await trio.aclose_forcefully(stream)
            # a valid proof for one connection, replayed on the next
            stream = await raw_tls(server.port)
            frame, _ = await proof_frame(stream, client)
            await trio.aclose_forcefully(stream)
            stream = await raw_tls(server.port)
            await read_frames(stream, 1)
            await stream.send_all(frame)
            await read_frames(stream)
            await trio.aclose_forcefully(stream)
            lines = await wait_for_lines(caplog, 3)
            assert ["invalid signature" in line for line in lines] == [True, False, True]
            assert server.peers == []
            await assert_trusted_client_works(server, client)


def _ecdsa_cert() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mosaic")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


async def test_non_ed25519_certificate_is_refused(
        ids: dict[str, Identity], caplog: pytest.LogCaptureFixture) -> None:
    der = _ecdsa_cert()
    with trio.fail_after(T):
        async with running_server(ids["server"], {node_id_from_cert(der)}) as server:
            stream = await raw_tls(server.port)
            await read_frames(stream, 1)
            await stream.send_all(encode_frame(encode_auth(AuthProof(der, b"\x00" * 64))))
            await read_frames(stream)
            await trio.aclose_forcefully(stream)
            (line,) = await wait_for_lines(caplog, 1)
            assert "not Ed25519" in line
            assert server.peers == []


BAD_PROOFS = [
    encode_frame(b"\xc1"),                                           # not msgpack
    encode_frame(msgpack.packb({"cert": b"x"})),                     # a map
    encode_frame(msgpack.packb([101, b"cert"])),                     # missing field
    encode_frame(msgpack.packb([101, b"cert", b"s" * 64, 0])),       # extra field
    encode_frame(msgpack.packb([101, "cert", b"s" * 64])),           # str, not bin
    encode_frame(msgpack.packb([101, b"cert", b"s" * 63])),          # short signature
    encode_frame(msgpack.packb([101, b"c" * 5000, b"s" * 64])),      # certificate too long
    encode_frame(msgpack.packb([101, b"not a certificate", b"s" * 64])),
    encode_frame(encode_auth(AuthOk())),                             # wrong message
    encode_frame(encode_message(Hello(PROTOCOL_VERSION, b"\x01" * 32))),
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                            # not even a frame
    b"\x00\x00\x00\x00",                                             # empty frame
    (AUTH_MAX_FRAME + 1).to_bytes(4, "big"),                         # oversized header only
    (2**32 - 1).to_bytes(4, "big") + b"x" * 1000,
]


async def test_garbage_oversized_and_truncated_proofs_are_refused(
        ids: dict[str, Identity], caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(T):
        async with running_server(ids["server"], {ids["client"].node_id}) as server:
            for i, bad in enumerate(BAD_PROOFS):
                stream = await raw_tls(server.port)
                await read_frames(stream, 1)
                await stream.send_all(bad)
                t0 = trio.current_time()
                rest = await read_frames(stream)  # the server hangs up ...
                assert trio.current_time() - t0 < 1.5  # ... at once, not at its timeout
                assert [decode_auth(p) for p in rest] == [Bye("authentication refused")], bad
                await trio.aclose_forcefully(stream)
                assert len(await wait_for_lines(caplog, i + 1)) == i + 1
            lines = transport_lines(caplog)
            assert "FrameTooLarge" in lines[-2] or "exceeds the limit" in lines[-2]

            # truncated: a header for 100 bytes, 10 bytes, then a clean TLS close
            stream = await raw_tls(server.port)
            await read_frames(stream, 1)
            await stream.send_all((100).to_bytes(4, "big") + b"x" * 10)
            await stream.aclose()
            lines = await wait_for_lines(caplog, len(BAD_PROOFS) + 1)
            assert "stream ended inside a frame" in lines[-1]

            assert len(lines) == len(BAD_PROOFS) + 1
            assert server.peers == []
            await assert_trusted_client_works(server, ids["client"])


async def test_silent_tcp_client_times_out(ids: dict[str, Identity],
                                           caplog: pytest.LogCaptureFixture,
                                           autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(T):
        async with running_server(ids["server"], {ids["client"].node_id},
                                  timeout=0.5) as server:
            tcp = await trio.open_tcp_stream(HOST, server.port)
            t0 = trio.current_time()
            assert await tcp.receive_some(100) == b""  # dropped
            # by the handshake timeout (virtual time: exactly when it expires, not before)
            assert trio.current_time() - t0 == pytest.approx(0.5, abs=1e-6)
            await tcp.aclose()
            # TLS done, but no proof: also dropped, with a Bye
            stream = await raw_tls(server.port)
            assert [decode_auth(p) for p in await read_frames(stream)][1:] == [
                Bye("authentication refused")]
            await trio.aclose_forcefully(stream)
            lines = await wait_for_lines(caplog, 2)
            assert "TLS handshake not completed within 0.5 s" in lines[0]
            assert "authentication not completed within 0.5 s" in lines[1]
            await assert_trusted_client_works(server, ids["client"])


async def test_tls_below_1_3_is_refused(ids: dict[str, Identity],
                                        caplog: pytest.LogCaptureFixture) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with trio.fail_after(T):
        async with running_server(ids["server"], {ids["client"].node_id}) as server:
            tcp = await trio.open_tcp_stream(HOST, server.port)
            stream = trio.SSLStream(tcp, ctx, server_hostname=None)
            with pytest.raises(trio.BrokenResourceError):
                await stream.do_handshake()
            await trio.aclose_forcefully(stream)
            (line,) = await wait_for_lines(caplog, 1)
            assert "TLS handshake failed" in line
            await assert_trusted_client_works(server, ids["client"])


async def test_too_many_pending_handshakes_are_dropped(
        ids: dict[str, Identity], caplog: pytest.LogCaptureFixture,
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(T):
        async with running_server(ids["server"], {ids["client"].node_id},
                                  timeout=1.0, max_handshakes=1) as server:
            hog = await trio.open_tcp_stream(HOST, server.port)
            await trio.sleep(0.1)
            with pytest.raises(AuthError):
                await connect(ids["client"], HOST, server.port, ids["server"].node_id)
            (line,) = await wait_for_lines(caplog, 1)
            assert "handshakes already in progress" in line
            assert await hog.receive_some(10) == b""  # the hog times out
            await hog.aclose()
            await assert_trusted_client_works(server, ids["client"])


def test_verify_proof_unit(ids: dict[str, Identity]) -> None:
    server_id, client = ids["server"].node_id, ids["client"]
    nonce = os.urandom(32)
    good = AuthProof(client.cert_der, client.sign(auth_signed_bytes(server_id, nonce,
                                                                    client.node_id)))
    assert verify_proof(good, server_id, nonce, lambda i: i == client.node_id) == client.node_id
    with pytest.raises(Untrusted):
        verify_proof(good, server_id, nonce, lambda i: False)
    with pytest.raises(Untrusted):  # only True itself is trust
        verify_proof(good, server_id, nonce, lambda i: 1)  # type: ignore[arg-type, return-value]
    with pytest.raises(AuthError, match="invalid signature"):
        verify_proof(good, server_id, os.urandom(32), lambda i: True)
    # a node connecting to itself (a cloned identity) is refused even if "trusted"
    own = AuthProof(client.cert_der, client.sign(auth_signed_bytes(client.node_id, nonce,
                                                                   client.node_id)))
    with pytest.raises(AuthError, match="own node id"):
        verify_proof(own, client.node_id, nonce, lambda i: True)


def test_auth_messages_round_trip_and_are_strict() -> None:
    for msg in (AuthChallenge(b"\x01" * 32, b"\x02" * 32),
                AuthProof(b"cert", b"\x03" * 64), AuthOk()):
        assert decode_auth(encode_auth(msg)) == msg
    assert decode_auth(encode_message(Bye("no"))) == Bye("no")
    for bad in ([100, "mosaic-auth", 2, b"\x01" * 32, b"\x02" * 32],   # other version
                [100, "other", 1, b"\x01" * 32, b"\x02" * 32],
                [100, "mosaic-auth", True, b"\x01" * 32, b"\x02" * 32],
                [100, "mosaic-auth", 1, b"\x01" * 31, b"\x02" * 32],
                [102, 0], [103], [1], []):
        with pytest.raises(BadMessage):
            decode_auth(msgpack.packb(bad, use_bin_type=True))
    with pytest.raises(BadMessage):
        AuthChallenge(b"\x01" * 32, b"short")


# ------------------------------------------------- after authentication

async def _capture_handler(server: Server, conn: PeerConnection) -> None:
    server.peers.append(conn.peer_id)
    try:
        while True:
            server.received.append(await conn.receive())
    except Exception as e:
        server.errors.append(e)


@pytest.mark.parametrize(("data", "close", "error"), [
    ((1024 + 1).to_bytes(4, "big"), False, FrameTooLarge),
    ((50).to_bytes(4, "big") + b"x" * 10, True, MalformedFrame),
    (encode_frame(b"\xc1"), False, BadMessage),
    (b"", True, ConnectionClosed),
])
async def test_receive_errors_after_auth(ids: dict[str, Identity], data: bytes, close: bool,
                                         error: type[Exception]) -> None:
    with trio.fail_after(T):
        async with running_server(ids["server"], {ids["client"].node_id},
                                  handler=_capture_handler, max_frame_size=1024) as server:
            conn = await connect(ids["client"], HOST, server.port, ids["server"].node_id)
            await conn.send(Ping(1))
            if data:
                await conn._stream.send_all(data)
            if close:
                await conn.aclose()
            while not server.errors:
                await trio.sleep(0.01)
            assert server.received == [Ping(1)]
            assert type(server.errors[0]) is error
            await conn.aclose()


async def test_send_and_receive_after_close(ids: dict[str, Identity]) -> None:
    with trio.fail_after(T):
        async with running_server(ids["server"], {ids["client"].node_id}) as server:
            conn = await connect(ids["client"], HOST, server.port, ids["server"].node_id)
            await conn.aclose()
            with pytest.raises(ConnectionClosed):
                await conn.send(Ping(1))
            with pytest.raises(ConnectionClosed):
                await conn.receive()


async def test_concurrent_senders_are_serialised(ids: dict[str, Identity]) -> None:
    with trio.fail_after(T):
        async with running_server(ids["server"], {ids["client"].node_id}) as server:
            async with await connect(ids["client"], HOST, server.port,
                                     ids["server"].node_id) as conn:
                async with trio.open_nursery() as n:
                    for i in range(20):
                        n.start_soon(conn.send, Ping(i))
                got = {(await conn.receive()).nonce for _ in range(20)}  # type: ignore[union-attr]
                assert got == set(range(20))


async def test_decoded_payloads_are_protocol_messages(ids: dict[str, Identity]) -> None:
    """A big message crosses several TLS records and reads back intact."""
    with trio.fail_after(T):
        async with running_server(ids["server"], {ids["client"].node_id},
                                  handler=_capture_handler) as server:
            vector = tuple((i.to_bytes(32, "big"), i + 1) for i in range(1, 4000))
            async with await connect(ids["client"], HOST, server.port,
                                     ids["server"].node_id) as conn:
                await conn.send(Summary(vector))
                while not server.received:
                    await trio.sleep(0.01)
            assert server.received == [Summary(vector)]
            assert decode_message(encode_message(Summary(vector))) == Summary(vector)


async def test_accept_directly_times_out(ids: dict[str, Identity],
                                         autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(T):
        (listener,) = await trio.open_tcp_listeners(0, host=HOST)
        client = await trio.open_tcp_stream(HOST, listener.socket.getsockname()[1])
        server_side = await listener.accept()
        with pytest.raises(AuthTimeout):
            await accept(ids["server"], server_side, lambda i: True, timeout=0.2)
        assert await client.receive_some(10) == b""  # accept closed its stream
        await client.aclose()
        await listener.aclose()
