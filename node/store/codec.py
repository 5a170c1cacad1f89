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
import zstandard

from ..errors import IntegrityError
from . import envelope

FORMAT_VERSION = 1
COMP_RAW = 0
COMP_ZSTD = 1
HEADER_SIZE = 2 + envelope.NONCE_SIZE
TAG_SIZE = envelope.TAG_SIZE
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


Encoded = tuple[bytes, bytes]
"""A stored object as two parts: its header with the nonce, and its ciphertext with the tag."""

_HEADERS = {c: bytes((FORMAT_VERSION, c)) for c in (COMP_RAW, COMP_ZSTD)}


def encode(enc_key: bytes, cid: bytes, data: bytes | memoryview, level: int = DEFAULT_LEVEL) -> bytes:
    """Compress (unless that does not shrink it) and encrypt one chunk into a stored object."""
    return b"".join(encode_parts(enc_key, cid, data, level))


def encode_parts(enc_key: bytes, cid: bytes, data: bytes | memoryview,
                 level: int = DEFAULT_LEVEL, probe: bool = False) -> Encoded:
    """`encode`'s object as its header and its ciphertext, for a pack writer's `writev`.

    `probe`: look at a sample before compressing the whole chunk (`_worth_compressing`);
    ingest sets it after a chunk that did not shrink. The result of `decode` is the same
    either way; a chunk whose last 4 KiB do not shrink is stored raw even if the rest would.
    """
    comp = COMP_RAW
    payload: bytes | memoryview = data
    if level > 0 and len(data) > 64 and (not probe or _worth_compressing(data, level)):
        z = _compressor(level).compress(data)
        if len(z) < len(data):
            comp, payload = COMP_ZSTD, z
    return envelope.seal_parts(enc_key, payload, _aad(FORMAT_VERSION, comp, cid), _HEADERS[comp])


def is_compressed(obj: Encoded) -> bool:
    """True if an encoded object holds its chunk compressed (its header says so)."""
    return obj[0][1] == COMP_ZSTD


PROBE_BYTES = 4096


def _worth_compressing(data: bytes | memoryview, level: int) -> bool:
    """True unless the last 4 KiB of `data`, compressed alone, do not shrink.

    Incompressible data (media, archives, encrypted files) comes in long runs, and
    zstd spends about 30 us on a 48 KiB chunk of it for nothing; the sample costs
    about 6 us. Only chunks after one that did not shrink are probed (`encode_parts`),
    so the sample is the chunk's end: where a run of such data gives way to text.
    """
    if len(data) <= 2 * PROBE_BYTES:
        return True
    sample = memoryview(data)[-PROBE_BYTES:]
    return len(_compressor(level).compress(sample)) < PROBE_BYTES


def authenticate(enc_key: bytes, cid: bytes, blob: bytes | memoryview, where: str = "") -> None:
    """Check that a stored object is intact and belongs to chunk `cid`, cheaply.

    AEAD open only, no decompression and no ID hash: the associated data binds the
    chunk ID and the header, so an object that authenticates is the one that was
    sealed for `cid` (under this node's key). Raises IntegrityError otherwise.
    """
    _open(enc_key, cid, blob, where)


def _open(enc_key: bytes, cid: bytes, blob: bytes | memoryview, where: str
          ) -> tuple[int, bytes, str]:
    """(compression, authenticated payload, label for errors) of one stored object."""
    blob = memoryview(blob)
    label = f"chunk {cid.hex()[:16]}" + (f" from {where}" if where else "")
    if len(blob) < OVERHEAD:
        raise IntegrityError(f"{label} is truncated")
    version, comp = blob[0], blob[1]
    if version != FORMAT_VERSION or comp not in (COMP_RAW, COMP_ZSTD):
        raise IntegrityError(f"{label} has an unknown format ({version}/{comp})")
    return comp, envelope.open(enc_key, blob[2:], _aad(version, comp, cid), label), label


def decode(enc_key: bytes, id_key: bytes, cid: bytes, blob: bytes | memoryview,
           plain_len: int | None = None, where: str = "") -> bytes:
    """Authenticate, decrypt, decompress and ID-check one stored object.

    Raises IntegrityError (naming the chunk and `where` it came from) on any
    mismatch: a flipped byte, a truncated object, a swapped object.
    """
    comp, payload, label = _open(enc_key, cid, blob, where)
    data: bytes
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
