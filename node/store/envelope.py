"""The one authenticated-encryption envelope: XChaCha20-Poly1305 (IETF), random nonce.

    [header] | nonce (24 bytes, random) | ciphertext | Poly1305 tag (16 bytes)

Every encrypted thing Mosaic stores uses it: chunk objects (codec.py), pack
trailers (packs.py), the sealed master key (keys.py), secrets.bin
(cloud/credentials.py) and the index copies on backends (cloud/indexlog.py).
Each caller chooses its own header bytes (stored in the clear before the
nonce, and normally also bound into `aad`) and its own associated data, so
the formats in docs/format.md are exactly what they were before this module.

Built only on PyNaCl's public API (`nacl.bindings` and `nacl.utils.random`).
"""

from __future__ import annotations

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt as _decrypt,
)
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_encrypt as _encrypt,
)
from nacl.exceptions import CryptoError
from nacl.utils import random as _random

from ..errors import IntegrityError

__all__ = ["KEY_SIZE", "NONCE_SIZE", "OVERHEAD", "TAG_SIZE", "open", "seal", "seal_parts"]

KEY_SIZE = 32
NONCE_SIZE = 24
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE
"""Bytes an envelope adds to its plaintext (not counting a caller's header)."""

Buffer = bytes | bytearray | memoryview


def seal(key: bytes, plaintext: Buffer, aad: bytes, header: bytes = b"") -> bytes:
    """`header || nonce || XChaCha20-Poly1305(key, nonce, plaintext, aad)`, nonce random.

    `header` is only copied in front; bind it to the ciphertext by putting it
    into `aad` as well.
    """
    return b"".join(seal_parts(key, plaintext, aad, header))


def seal_parts(key: bytes, plaintext: Buffer, aad: bytes, header: bytes = b""
               ) -> tuple[bytes, bytes]:
    """`seal`'s result as its two parts, `header || nonce` and the ciphertext with its tag.

    For writers that hand both to one `writev` (a pack): the ciphertext is not
    copied again to join them.
    """
    _check(key, aad)
    nonce = _random(NONCE_SIZE)
    msg = plaintext if type(plaintext) is bytes else bytes(plaintext)
    return header + nonce, _encrypt(msg, aad, nonce, key)


def open(key: bytes, blob: Buffer, aad: bytes, what: str) -> bytes:
    """The plaintext of `nonce || ciphertext` (a caller's header already cut off).

    Raises IntegrityError naming `what` (one line, never key material) if the
    blob is too short or does not authenticate under `key` and `aad`.
    """
    _check(key, aad)
    view = memoryview(blob)
    if len(view) < OVERHEAD:
        raise IntegrityError(f"{what} is truncated")
    try:
        return _decrypt(bytes(view[NONCE_SIZE:]), aad, bytes(view[:NONCE_SIZE]), key)
    except CryptoError:
        raise IntegrityError(f"{what} failed authentication (corrupt or tampered)") from None


def _check(key: bytes, aad: bytes) -> None:
    # PyNaCl checks these too, but raises subclasses of CryptoError, which open()
    # must keep for "does not authenticate".
    if type(key) is not bytes or len(key) != KEY_SIZE:
        raise ValueError(f"an envelope key is {KEY_SIZE} bytes")
    if type(aad) is not bytes:
        raise TypeError("envelope associated data must be bytes")
