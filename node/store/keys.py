"""The node's master key: sealed under a passphrase with Argon2id, and its subkeys.

A random 32-byte master key is created at `init`. It is stored either sealed
(Argon2id(passphrase) -> key-encryption key, then XChaCha20-Poly1305) or, for
unattended nodes, in the clear in a file readable by the owner only. Every key
the node uses is derived from the master key with BLAKE3's key-derivation mode,
one context string per purpose, so no two purposes ever share a key.
"""

from __future__ import annotations

import base64
import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path

import blake3
import nacl.utils

from ..errors import IntegrityError, KeyFileError
from . import envelope
from .atomic import atomic_write, create_new

KEY_FORMAT = "mosaic-key"
KEY_VERSION = 1
_SEAL_AAD = b"mosaic-key v1"
# Argon2id cost: t=3, m=64 MiB (~0.2 s here), the figures borg 2 uses.
KDF_OPSLIMIT = 3
KDF_MEMLIMIT = 64 * 1024 * 1024

_CONTEXTS = {
    "chunk_id": "mosaic 2026-11-21 chunk id v1",
    "chunk_enc": "mosaic 2026-11-21 chunk encryption v1",
    "pack_index": "mosaic 2026-11-21 pack index v1",
    "chunker_seed": "mosaic 2026-11-21 chunker seed v1",
    "key_id": "mosaic 2026-11-21 key id v1",
    "metadata": "mosaic 2026-11-21 metadata v1",
    "dump_mac": "mosaic 2026-11-30 manifest dump mac v1",
}


@dataclass(frozen=True)
class Keys:
    """The subkeys derived from one master key."""

    chunk_id: bytes
    chunk_enc: bytes
    pack_index: bytes
    metadata: bytes
    dump_mac: bytes  # keyed BLAKE3 over `export` dumps (protocol/manifest_json.py)
    chunker_seed: int
    key_id: str

    def __repr__(self) -> str:  # never print key material
        return f"Keys(key_id={self.key_id})"


def derive_keys(master: bytes) -> Keys:
    """Derive every purpose's subkey from the 32-byte master key."""
    if len(master) != 32:
        raise KeyFileError("master key has the wrong length")

    def d(purpose: str, n: int = 32) -> bytes:
        return blake3.blake3(master, derive_key_context=_CONTEXTS[purpose]).digest(length=n)

    seed = int.from_bytes(d("chunker_seed", 8), "little") & ((1 << 63) - 1)
    return Keys(
        chunk_id=d("chunk_id"),
        chunk_enc=d("chunk_enc"),
        pack_index=d("pack_index"),
        metadata=d("metadata"),
        dump_mac=d("dump_mac"),
        chunker_seed=seed,
        key_id=d("key_id", 8).hex(),
    )


def new_master_key() -> bytes:
    """32 random bytes from the OS CSPRNG."""
    return nacl.utils.random(32)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: object, what: str) -> bytes:
    if not isinstance(s, str):
        raise KeyFileError(f"key file is damaged ({what})")
    try:
        return base64.b64decode(s, validate=True)
    except ValueError as e:
        raise KeyFileError(f"key file is damaged ({what})") from e


def seal(master: bytes, passphrase: str | None, params: dict) -> dict:
    """The key-file document for `master`: sealed if a passphrase is given.

    `params` holds the non-secret settings a joining node must share to dedup
    against this one (the chunker sizes).
    """
    doc: dict = {
        "format": KEY_FORMAT,
        "version": KEY_VERSION,
        "key_id": derive_keys(master).key_id,
        "params": params,
    }
    if passphrase is None:
        doc["sealed"] = False
        doc["master"] = _b64(master)
        return doc
    import nacl.pwhash.argon2id as argon2id  # only sealing and unsealing need the KDF (~4 ms to load)
    salt = nacl.utils.random(argon2id.SALTBYTES)
    kek = argon2id.kdf(32, passphrase.encode("utf-8"), salt,
                       opslimit=KDF_OPSLIMIT, memlimit=KDF_MEMLIMIT)
    sealed = envelope.seal(kek, master, _SEAL_AAD)
    nonce, ct = sealed[:envelope.NONCE_SIZE], sealed[envelope.NONCE_SIZE:]
    doc["sealed"] = True
    doc["kdf"] = {"name": "argon2id", "opslimit": KDF_OPSLIMIT, "memlimit": KDF_MEMLIMIT,
                  "salt": _b64(salt)}
    doc["nonce"] = _b64(nonce)
    doc["ciphertext"] = _b64(ct)
    return doc


def is_sealed(doc: dict) -> bool:
    """True if opening `doc` needs a passphrase."""
    return bool(doc.get("sealed"))


def unseal(doc: dict, passphrase: str | None) -> bytes:
    """The master key from a key-file document; KeyFileError on a wrong passphrase."""
    if doc.get("format") != KEY_FORMAT or doc.get("version") != KEY_VERSION:
        raise KeyFileError("not a Mosaic key file (or an unsupported version)")
    if not doc.get("sealed"):
        master = _unb64(doc.get("master"), "master")
    else:
        if passphrase is None:
            raise KeyFileError("the key is sealed: set MOSAIC_PASSPHRASE or enter the passphrase")
        kdf = doc.get("kdf")
        if not isinstance(kdf, dict) or kdf.get("name") != "argon2id":
            raise KeyFileError("key file is damaged (kdf)")
        ops, mem = kdf.get("opslimit"), kdf.get("memlimit")
        if not isinstance(ops, int) or not isinstance(mem, int) or ops < 1 or not 8192 <= mem <= 1 << 32:
            raise KeyFileError("key file is damaged (kdf parameters)")
        salt = _unb64(kdf.get("salt"), "salt")
        nonce = _unb64(doc.get("nonce"), "nonce")
        ct = _unb64(doc.get("ciphertext"), "ciphertext")
        import nacl.pwhash.argon2id as argon2id
        if len(salt) != argon2id.SALTBYTES or len(nonce) != envelope.NONCE_SIZE:
            raise KeyFileError("key file is damaged (salt or nonce)")
        if len(ct) < envelope.TAG_SIZE:
            raise KeyFileError("key file is damaged (ciphertext)")
        kek = argon2id.kdf(32, passphrase.encode("utf-8"), salt, opslimit=ops, memlimit=mem)
        try:
            master = envelope.open(kek, nonce + ct, _SEAL_AAD, "the sealed master key")
        except IntegrityError:
            raise KeyFileError("wrong passphrase") from None
    if len(master) != 32 or derive_keys(master).key_id != doc.get("key_id"):
        raise KeyFileError("key file is damaged (key id does not match)")
    return master


def read_key_file(path: Path) -> dict:
    """Load a key-file document; KeyFileError if missing or malformed."""
    try:
        doc = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"key file not found: {path}") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise KeyFileError(f"cannot read key file {path}: {type(e).__name__}") from None
    if not isinstance(doc, dict):
        raise KeyFileError(f"not a Mosaic key file: {path}")
    return doc


def key_file_text(doc: dict) -> str:
    """The key file's text (JSON)."""
    return json.dumps(doc, indent=2) + "\n"


def write_key_file(path: Path, doc: dict, exclusive: bool = False) -> None:
    """Write a key file atomically, mode 0600 from its creation (see atomic.py).

    With `exclusive`, FileExistsError if anything (even a dangling symlink) is at
    `path`: the check and the creation are one atomic step.
    """
    data = key_file_text(doc).encode("utf-8")
    if not exclusive:
        atomic_write(path, data, mode=0o600)
    elif not create_new(path, data, 0o600):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
