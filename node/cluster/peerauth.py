"""The in-channel peer authentication messages and the transport's errors.

AuthChallenge / AuthProof / AuthOk (codes 100..102) are msgpack arrays framed
like protocol messages; see node/transport.py for the handshake and
docs/transport.md for the sequence and threat model. Pure: no sockets here.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mosaic.protocol.errors import BadMessage
from mosaic.protocol.messages import Bye, decode_message

from .identity import NODE_ID_LEN, format_node_id, node_id_from_cert

DEFAULT_TIMEOUT = 10.0
"""Seconds for TCP connect + TLS handshake + authentication."""

AUTH_DOMAIN = b"mosaic-peer-auth v1"
"""Prefix of the signed message; names the purpose and version of the signature."""

AUTH_MAGIC = "mosaic-auth"
AUTH_VERSION = 1
NONCE_LEN = 32
SIGNATURE_LEN = 64
MAX_CERT_LEN = 4096
AUTH_MAX_FRAME = 8192
"""Largest frame read before authentication (a proof is ~400 bytes, a Bye ≤ 4 KiB)."""

REFUSAL_REASON = "authentication refused"


# --------------------------------------------------------------------- errors

class TransportError(Exception):
    """Root of the transport's errors."""


class ConnectError(TransportError):
    """The TCP connection could not be opened (refused, unreachable, timed out)."""


class ConnectionClosed(TransportError):
    """The peer closed the connection, or it broke (reset, TLS failure)."""


class AuthError(TransportError):
    """The TLS handshake or the peer authentication failed; the connection is closed."""


class AuthTimeout(AuthError):
    """The handshake did not complete within the timeout."""


class PeerIdMismatch(AuthError):
    """(client) The server's certificate is not the node ID we dialled."""


class Untrusted(AuthError):
    """(server) The client proved a node ID that `is_trusted` does not accept."""


class Refused(AuthError):
    """(client) The server refused our proof (we are not trusted there, or it failed)."""


# -------------------------------------------------------------- auth messages

def _check_bin(value: object, field: str, lo: int, hi: int) -> None:
    if type(value) is not bytes or not lo <= len(value) <= hi:
        size = f"{lo}" if lo == hi else f"{lo}..{hi}"
        raise BadMessage(f"{field}: expected {size} bytes")


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """Server → client, first thing after the TLS handshake."""

    CODE: ClassVar[int] = 100
    server_node_id: bytes
    nonce: bytes

    def __post_init__(self) -> None:
        _check_bin(self.server_node_id, "challenge.server_node_id", NODE_ID_LEN, NODE_ID_LEN)
        _check_bin(self.nonce, "challenge.nonce", NONCE_LEN, NONCE_LEN)


@dataclass(frozen=True, slots=True)
class AuthProof:
    """Client → server: its certificate and its signature over `auth_signed_bytes`."""

    CODE: ClassVar[int] = 101
    cert_der: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_bin(self.cert_der, "proof.cert_der", 1, MAX_CERT_LEN)
        _check_bin(self.signature, "proof.signature", SIGNATURE_LEN, SIGNATURE_LEN)


@dataclass(frozen=True, slots=True)
class AuthOk:
    """Server → client: the proof is accepted; protocol messages follow."""

    CODE: ClassVar[int] = 102


AuthMessage = AuthChallenge | AuthProof | AuthOk


def encode_auth(msg: AuthMessage) -> bytes:
    """The msgpack payload of an auth message (frame it with `encode_frame`)."""
    match msg:
        case AuthChallenge():
            fields: list[Any] = [AUTH_MAGIC, AUTH_VERSION, msg.server_node_id, msg.nonce]
        case AuthProof():
            fields = [msg.cert_der, msg.signature]
        case AuthOk():
            fields = []
        case _:
            raise TypeError(f"not an auth message: {type(msg).__name__}")
    return msgpack.packb([msg.CODE, *fields], use_bin_type=True)


def decode_auth(payload: bytes) -> AuthMessage | Bye:
    """Decode one auth-phase payload strictly (a protocol Bye is allowed too);
    BadMessage on anything else."""
    try:
        obj = msgpack.unpackb(
            payload, use_list=False, raw=False, strict_map_key=True,
            max_str_len=64, max_bin_len=MAX_CERT_LEN, max_array_len=8,
            max_map_len=0, max_ext_len=0,
        )
    except MemoryError:
        raise
    except Exception as exc:
        raise BadMessage(f"undecodable auth payload: {type(exc).__name__}") from exc
    if not isinstance(obj, tuple) or not obj or type(obj[0]) is not int:
        raise BadMessage("expected [code, fields...]")
    code, f = obj[0], obj[1:]
    if code == Bye.CODE:
        msg = decode_message(payload)
        assert isinstance(msg, Bye)
        return msg
    if code == AuthChallenge.CODE:
        if len(f) != 4 or type(f[0]) is not str or f[0] != AUTH_MAGIC:
            raise BadMessage("not a mosaic auth challenge")
        if type(f[1]) is not int or f[1] != AUTH_VERSION:
            raise BadMessage(f"unsupported auth version {f[1]!r}")
        return AuthChallenge(f[2], f[3])
    if code == AuthProof.CODE:
        if len(f) != 2:
            raise BadMessage(f"proof: expected 2 fields, got {len(f)}")
        return AuthProof(f[0], f[1])
    if code == AuthOk.CODE:
        if f:
            raise BadMessage("ok: expected no fields")
        return AuthOk()
    raise BadMessage(f"unexpected message code {code} during authentication")


def auth_signed_bytes(server_node_id: bytes, nonce: bytes, client_node_id: bytes) -> bytes:
    """What the client signs: domain, then three fixed-length fields."""
    for v, n in ((server_node_id, NODE_ID_LEN), (nonce, NONCE_LEN), (client_node_id, NODE_ID_LEN)):
        if type(v) is not bytes or len(v) != n:
            raise ValueError("auth_signed_bytes: wrong field length")
    return AUTH_DOMAIN + server_node_id + nonce + client_node_id


def verify_proof(proof: AuthProof, server_node_id: bytes, nonce: bytes,
                 is_trusted: Callable[[bytes], bool]) -> bytes:
    """The client's node ID if `proof` is valid for this challenge and trusted;
    AuthError / Untrusted otherwise. Trust is checked last, so `Untrusted`
    always names a node that really holds the key of that ID."""
    client_id = node_id_from_cert(proof.cert_der)
    try:
        pub = x509.load_der_x509_certificate(proof.cert_der).public_key()
    except Exception as e:  # malformed DER, unsupported algorithm, ...
        raise AuthError(f"malformed client certificate ({type(e).__name__})") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise AuthError(f"client certificate key is {type(pub).__name__}, not Ed25519")
    try:
        pub.verify(proof.signature, auth_signed_bytes(server_node_id, nonce, client_id))
    except InvalidSignature:
        raise AuthError(
            f"invalid signature (claimed node id {format_node_id(client_id)})") from None
    if hmac.compare_digest(client_id, server_node_id):
        raise AuthError("client uses our own node id")
    if is_trusted(client_id) is not True:
        raise Untrusted(f"node {format_node_id(client_id)} is not trusted")
    return client_id


# ------------------------------------------------------------------------ TLS
