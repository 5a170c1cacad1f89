"""XChaCha20-Poly1305 (IETF) from libsodium, called through PyNaCl's own cffi binding.

The same libsodium functions that `nacl.bindings.crypto_aead_xchacha20poly1305_ietf_*`
call, without their extra copies: inputs are passed as buffers (no `bytes()`
copy of a memoryview), and the output is written straight into a caller's
bytearray at an offset (no zero-filled temporary and no second copy). Nothing
about the construction changes; this only avoids moving bytes around.
"""

from __future__ import annotations

from nacl._sodium import ffi, lib

from ..errors import IntegrityError

KEY_SIZE = 32
NONCE_SIZE = 24
TAG_SIZE = 16


def encrypt_into(out: bytearray, at: int, msg: bytes | bytearray | memoryview, aad: bytes,
                 nonce: bytes, key: bytes) -> int:
    """Encrypt `msg` into `out[at:at+len(msg)+16]`; returns the ciphertext length."""
    if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise ValueError("bad key or nonce size")
    n = len(msg)
    if len(out) < at + n + TAG_SIZE:
        raise ValueError("output buffer too small")
    clen = ffi.new("unsigned long long *")
    dst = ffi.from_buffer(out, require_writable=True) + at
    src = ffi.from_buffer(msg) if n else ffi.NULL
    rc = lib.crypto_aead_xchacha20poly1305_ietf_encrypt(
        dst, clen, src, n, aad, len(aad), ffi.NULL, nonce, key)
    if rc != 0:  # pragma: no cover - libsodium does not fail here
        raise ValueError("encryption failed")
    return int(clen[0])


def decrypt(ct: bytes | bytearray | memoryview, aad: bytes, nonce: bytes, key: bytes,
            what: str) -> bytearray:
    """Authenticate and decrypt; IntegrityError(`what` ...) if the tag does not verify."""
    if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise ValueError("bad key or nonce size")
    n = len(ct)
    if n < TAG_SIZE:
        raise IntegrityError(f"{what} is truncated")
    out = bytearray(n - TAG_SIZE)
    mlen = ffi.new("unsigned long long *")
    dst = ffi.from_buffer(out, require_writable=True) if n > TAG_SIZE else ffi.new("unsigned char[1]")
    rc = lib.crypto_aead_xchacha20poly1305_ietf_decrypt(
        dst, mlen, ffi.NULL, ffi.from_buffer(ct), n, aad, len(aad), nonce, key)
    if rc != 0:
        raise IntegrityError(f"{what} failed authentication (corrupt or tampered)")
    return out
