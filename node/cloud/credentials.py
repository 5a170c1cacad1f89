"""Backend credentials, encrypted under the node key (never in config.toml or logs).

`HOME/secrets.bin` = b"MOSSEC1\\n" | nonce (24 B) | XChaCha20-Poly1305(msgpack {backend: {secret: value}}),
associated data b"mosaic-secrets v1", key = the metadata subkey.
"""

from __future__ import annotations

import msgpack
import nacl.utils

from ..errors import KeyFileError
from ..store import aead
from ..store.home import Home, atomic_write
from ..store.keys import Keys

_MAGIC = b"MOSSEC1\n"
_AAD = b"mosaic-secrets v1"


def load_secrets(home: Home, keys: Keys) -> dict[str, dict[str, str]]:
    """Every backend's credentials (empty if none are stored)."""
    path = home.root / "secrets.bin"
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return {}
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 24 + 16:
        raise KeyFileError("secrets.bin is damaged")
    body = blob[len(_MAGIC):]
    plain = aead.decrypt(memoryview(body)[24:], _AAD, body[:24], keys.metadata, "secrets.bin")
    data = msgpack.unpackb(bytes(plain), raw=False)
    if not isinstance(data, dict):
        raise KeyFileError("secrets.bin is damaged")
    return data


def save_secrets(home: Home, keys: Keys, secrets: dict[str, dict[str, str]]) -> None:
    """Encrypt and store every backend's credentials (atomically, mode 0600)."""
    plain = msgpack.packb(secrets, use_bin_type=True)
    nonce = nacl.utils.random(24)
    out = bytearray(len(_MAGIC) + 24 + len(plain) + aead.TAG_SIZE)
    out[:len(_MAGIC)] = _MAGIC
    out[len(_MAGIC):len(_MAGIC) + 24] = nonce
    aead.encrypt_into(out, len(_MAGIC) + 24, plain, _AAD, nonce, keys.metadata)
    atomic_write(home.root / "secrets.bin", bytes(out), mode=0o600)
