"""Signed logs: every entry is bound to its origin by the origin's Ed25519 key.

Each origin's log is a hash chain. For entry n (body = the msgpack of
`records.entry_to_wire`, which starts with its seq):

    chain_n = BLAKE3(CHAIN_DOMAIN || origin || chain_{n-1} || sig_{n-1} || body_n)
    sig_n   = Ed25519-Sign(origin's key, SIG_DOMAIN || chain_n)

with chain_0 = 32 zero bytes and sig_0 empty. Every entry carries its own
signature, so any entry can end a page; because chain_n covers sig_{n-1} and
every earlier body, checking the signature of a page's *last* entry (after
recomputing the chain from the receiver's head) authenticates the whole page,
including the earlier signatures the receiver keeps and relays. A receiver
needs one verification per page, not per entry.

A node's key is the public key of its certificate; its node ID is the SHA-256
of the certificate's DER (docs/transport.md). Certificates travel in
`MemberRecord`s, so a signer is known once some trusted origin vouched for it.

`admit_page` is the one receive-side check both stores use: the origin must not
be the receiver, its key must be known (else the page is refused with
`retry=True`: ask again once membership changed), the signature must hold, and
no name write may carry a clock more than MAX_CLOCK_SKEW_MS ahead. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import msgpack
from blake3 import blake3

from .hlc import too_far_ahead
from .limits import ID_LEN, SIGNATURE_LEN
from .records import LogEntry, MemberRecord, NameRecord, Record, entry_to_wire

__all__ = [
    "GENESIS",
    "LogHead",
    "Rejection",
    "admit_page",
    "cert_node_key",
    "chain_step",
    "entry_body",
    "sign_entry",
    "verify_signature",
]

CHAIN_DOMAIN = b"mosaic-log-chain v1"
SIG_DOMAIN = b"mosaic-log-entry v1"


class LogHead(NamedTuple):
    """Where an origin's chain stands: the chain value and signature of its last entry."""

    chain: bytes
    sig: bytes

    def to_bytes(self) -> bytes:
        """chain (32) + sig (0 or 64), for the node's index."""
        return self.chain + self.sig

    @classmethod
    def from_bytes(cls, raw: bytes) -> LogHead:
        """Inverse of `to_bytes`."""
        return cls(bytes(raw[:ID_LEN]), bytes(raw[ID_LEN:]))


GENESIS = LogHead(bytes(ID_LEN), b"")
"""The head of an empty log."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Entries of one page that were not applied, from `seq` on, and why.

    `retry`: the page may be accepted later (its signer is not known yet), so the
    session asks for it again once the store learned new members."""

    seq: int
    reason: str
    retry: bool = False


def entry_body(entry: LogEntry) -> bytes:
    """The bytes the chain covers: msgpack of the entry's body (`records.entry_to_wire`)."""
    return msgpack.packb(entry_to_wire(entry), use_bin_type=True)


def chain_step(origin: bytes, head: LogHead, entry: LogEntry, body: bytes | None = None) -> bytes:
    """chain_n for `entry` (whose body bytes may be passed in), given the head before it."""
    if body is None:
        body = entry_body(entry)
    return blake3(CHAIN_DOMAIN + origin + head.chain + head.sig + body).digest()


def sign_entry(sign: Callable[[bytes], bytes], origin: bytes, head: LogHead, seq: int,
               record: Record) -> tuple[LogEntry, LogHead]:
    """The signed entry `seq` of `origin`'s log, and the log's new head."""
    unsigned = LogEntry(seq, record)
    chain = chain_step(origin, head, unsigned)
    sig = sign(SIG_DOMAIN + chain)
    if type(sig) is not bytes or len(sig) != SIGNATURE_LEN:
        raise ValueError("the signer must return a 64-byte Ed25519 signature")
    return LogEntry(seq, record, sig), LogHead(chain, sig)


# cryptography (x509, Ed25519) is imported inside the two functions that use it: it costs
# ~50 ms to load, and a node's replication modules (cluster/synclog.py) import this one.


def verify_signature(public_key: bytes, chain: bytes, sig: bytes) -> bool:
    """True if `sig` is the key's signature over the chain value."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, SIG_DOMAIN + chain)
    except (InvalidSignature, ValueError):
        return False
    return True


def cert_node_key(cert_der: bytes) -> tuple[bytes, bytes]:
    """(node ID, raw Ed25519 public key) of a node certificate; ValueError if it is not one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        key = cert.public_key()
        canonical = cert.public_bytes(serialization.Encoding.DER)
    except Exception as e:  # malformed DER, unsupported algorithm, ...
        raise ValueError(f"not a certificate ({type(e).__name__})") from None
    if canonical != cert_der:
        raise ValueError("certificate is not in canonical DER")
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("certificate key is not Ed25519")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(cert_der).digest(), raw


def admit_page(local_id: bytes, origin: bytes, entries: Sequence[LogEntry], head: LogHead,
               key_of: Callable[[bytes], bytes | None], now_ms: int,
               bodies: Sequence[bytes] | None = None) -> tuple[list[LogHead], Rejection | None]:
    """Check a page of `origin`'s log that starts right after `head`.

    Returns the heads after each entry that may be applied (a prefix of the page)
    and the Rejection for the rest, if any. The signature check covers the whole
    page (all or nothing); the per-entry checks stop at the first bad entry.
    `bodies` may carry each entry's `entry_body` (a store that keeps them saves encoding twice).
    """
    if not entries:
        return [], None
    first = entries[0].seq
    if origin == local_id:
        return [], Rejection(first, "entries under the receiver's own origin")
    key = key_of(origin)
    if key is None:
        return [], Rejection(first, "origin is not a known member (no trusted node vouched "
                             "for it yet)", retry=True)
    heads: list[LogHead] = []
    h = head
    for i, e in enumerate(entries):
        h = LogHead(chain_step(origin, h, e, bodies[i] if bodies is not None else None), e.sig)
        heads.append(h)
    if not verify_signature(key, h.chain, h.sig):
        return [], Rejection(first, "bad signature: not written by the origin")
    for i, e in enumerate(entries):
        problem = _entry_problem(e.record, now_ms)
        if problem is not None:
            return heads[:i], Rejection(e.seq, problem)
    return heads, None


def _entry_problem(rec: Record, now_ms: int) -> str | None:
    if type(rec) is NameRecord and too_far_ahead(rec.version.hlc, now_ms):
        return "name write's clock is too far ahead of ours"
    if type(rec) is MemberRecord:
        try:
            cert_node_key(rec.cert)
        except ValueError as e:
            return f"member record: {e}"
    return None
