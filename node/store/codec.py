"""The stored-object codec: chunk IDs, compression and authenticated encryption (pure).

Object layout (format version 1), see docs/format.md:

    offset  size  field
    0       1     format version (1)
    1       1     compression: 0 = raw, 1 = zstd
    2       24    XChaCha20-Poly1305 nonce (random)
    26      n+16  ciphertext of the (possibly compressed) chunk, with the Poly1305 tag

The associated data is b"mosaic-chunk" + version + compression + chunk ID, so
an object cannot be moved under another chunk ID or have its header altered.
"""

from __future__ import annotations

import threading

import blake3
import nacl.utils
import zstandard

from ..errors import IntegrityError
from . import aead

FORMAT_VERSION = 1
COMP_RAW = 0
COMP_ZSTD = 1
HEADER_SIZE = 26
TAG_SIZE = 16
OVERHEAD = HEADER_SIZE + TAG_SIZE
_AAD_PREFIX = b"mosaic-chunk"
DEFAULT_LEVEL = 3

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    comps = getattr(_local, "comps", None)
    if comps is None:
        comps = _local.comps = {}
    c = comps.get(level)
    if c is None:
        c = comps[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "decomp", None)
    if d is None:
        d = _local.decomp = zstandard.ZstdDecompressor()
    return d


def chunk_id(id_key: bytes, data: bytes | memoryview) -> bytes:
    """The chunk ID: BLAKE3 keyed with the chunk-ID subkey, over the plaintext."""
    return blake3.blake3(data, key=id_key).digest()


def file_id_hasher() -> blake3.blake3:
    """A hasher for file IDs: plain BLAKE3 of the whole content (what `b3sum` prints)."""
    return blake3.blake3()


def _aad(version: int, comp: int, cid: bytes) -> bytes:
    return _AAD_PREFIX + bytes((version, comp)) + cid


def encode(enc_key: bytes, cid: bytes, data: bytes | memoryview, level: int = DEFAULT_LEVEL) -> bytearray:
    """Compress (unless that does not shrink it) and encrypt one chunk into a stored object."""
    comp = COMP_RAW
    payload: bytes | memoryview = data
    if level > 0 and len(data) > 64:
        z = _compressor(level).compress(data)
        if len(z) < len(data):
            comp, payload = COMP_ZSTD, z
    nonce = nacl.utils.random(24)
    out = bytearray(HEADER_SIZE + len(payload) + TAG_SIZE)
    out[0], out[1] = FORMAT_VERSION, comp
    out[2:HEADER_SIZE] = nonce
    aead.encrypt_into(out, HEADER_SIZE, payload, _aad(FORMAT_VERSION, comp, cid), nonce, enc_key)
    return out


def decode(enc_key: bytes, id_key: bytes, cid: bytes, blob: bytes | memoryview,
           plain_len: int | None = None, where: str = "") -> bytes | bytearray:
    """Authenticate, decrypt, decompress and ID-check one stored object.

    Raises IntegrityError (naming the chunk and `where` it came from) on any
    mismatch: a flipped byte, a truncated object, a swapped object.
    """
    blob = memoryview(blob)
    label = f"chunk {cid.hex()[:16]}" + (f" from {where}" if where else "")
    if len(blob) < OVERHEAD:
        raise IntegrityError(f"{label} is truncated")
    version, comp = blob[0], blob[1]
    if version != FORMAT_VERSION or comp not in (COMP_RAW, COMP_ZSTD):
        raise IntegrityError(f"{label} has an unknown format ({version}/{comp})")
    payload = aead.decrypt(blob[HEADER_SIZE:], _aad(version, comp, cid), bytes(blob[2:HEADER_SIZE]),
                           enc_key, label)
    data: bytes | bytearray
    if comp == COMP_ZSTD:
        try:
            limit = plain_len if plain_len is not None else 64 << 20
            data = _decompressor().decompress(payload, max_output_size=limit)
        except zstandard.ZstdError:
            raise IntegrityError(f"{label} does not decompress") from None
    else:
        data = payload
    if plain_len is not None and len(data) != plain_len:
        raise IntegrityError(f"{label} has the wrong length")
    if chunk_id(id_key, data) != cid:
        raise IntegrityError(f"{label} does not match its ID")
    return data
