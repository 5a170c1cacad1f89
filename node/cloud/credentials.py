"""Backend credentials, encrypted under the node key (never in config.toml or logs).

`HOME/secrets.bin` = b"MOSSEC1\\n" | nonce (24 B) | XChaCha20-Poly1305(msgpack {backend: {secret: value}}),
associated data b"mosaic-secrets v1", key = the metadata subkey.
"""

from __future__ import annotations

import msgpack

from ..errors import KeyFileError
from ..store import envelope
from ..store.atomic import atomic_write
from ..store.home import Home
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
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + envelope.OVERHEAD:
        raise KeyFileError("secrets.bin is damaged")
    plain = envelope.open(keys.metadata, memoryview(blob)[len(_MAGIC):], _AAD, "secrets.bin")
    data = msgpack.unpackb(plain, raw=False)
    if not isinstance(data, dict):
        raise KeyFileError("secrets.bin is damaged")
    return data


def save_secrets(home: Home, keys: Keys, secrets: dict[str, dict[str, str]]) -> None:
    """Encrypt and store every backend's credentials (atomically, mode 0600)."""
    blob = envelope.seal(keys.metadata, msgpack.packb(secrets, use_bin_type=True), _AAD, _MAGIC)
    atomic_write(home.root / "secrets.bin", blob, mode=0o600)
