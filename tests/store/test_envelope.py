"""The one AEAD envelope (store/envelope.py) and the formats built on it.

The hex fixtures below were written by the code before envelope.py existed (four
hand-rolled XChaCha20-Poly1305 envelopes, one of them on PyNaCl's private cffi
binding): existing homes, packs, key files, secrets.bin and index copies must
stay readable. The layout tests rebuild each format with libsodium directly, from
docs/format.md, so header bytes, nonce placement and associated data are pinned.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import msgpack
import nacl.bindings as sodium
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.node.cloud import credentials, indexlog
from mosaic.node.errors import IntegrityError, KeyFileError
from mosaic.node.store import codec, envelope, keys, packs
from mosaic.node.store.home import Home

MASTER = bytes(range(100, 132))
K = keys.derive_keys(MASTER)

# ---- written by the code before envelope.py (same master key) ----------------------------

CHUNK_ZSTD = dict(
    data=b"mosaic envelope fixture " * 8,
    cid="1a74c76c5d3472ae64c7b09c73c5632c7c1a013a817a2f231d70cf671b3bc78e",
    blob="0101d271e7a42203606d61bbfa57b23e0ee9516e0c5d19dea8f9ea73b56a338055737bf21ecf85fb030826"
         "280665b5da5c2a8b5992063edb2a14d7cf6657976ba5bf037012055c16ecd3e225090a87f5e754")
CHUNK_RAW = dict(
    data=b"\x00\x01 tiny raw",
    cid="2114352c2e334b575910449e1bd2f7fd1446e6100d6403853c07dc22001c5b80",
    blob="01004f4679a411275acecabe6f98f689e94ca91adfc7d728e7a9360c28a7233c627f14135c62aa73bea78"
         "05dafb39f5f3bba0265e8")
PACK = (  # MAGIC | CHUNK_ZSTD | CHUNK_RAW | trailer | trailer length
    "4d4f535041434b31" + CHUNK_ZSTD["blob"] + CHUNK_RAW["blob"]
    + "01c6d4ddf2e7cacfb085bdd6c7e68004331a2b0e3b53fd16244d26ad609fd482d35cbcabab90ae5babc3668bae"
      "28f28cac795d8cf157b12f169f1478b85f2eb4b2e7d1075561097ef1e5745c102e56d77c55bc61a39fe69441849"
      "8386d46d9f63d2d333fdf0012a747a8ece600716056ba6f841a701e6400000077")
KEY_FILE = {  # sealed under "correct horse", Argon2id at the smallest cost (fast to open)
    "format": "mosaic-key", "version": 1, "key_id": "d045ea51d58307f4", "params": {"chunk_min": 1},
    "sealed": True,
    "kdf": {"name": "argon2id", "opslimit": 1, "memlimit": 8192, "salt": "hI8ln06PTTdT24FXNEEfbQ=="},
    "nonce": "mdmBLL8FRhHrxX2KPDa8gQWtxc8UcEKQ",
    "ciphertext": "DhkZkKGb3xn2TlzIWXx5xH8w6ZcpG/5x9e0K3zQb8nJdARPRgRNrzC3hHybic0KF"}
SECRETS = ("4d4f53534543310ac07fc8a35700570f470f8a2ead3b4931249963f1a00313d4c45052a66f84e7eaa0b18c07"
           "164f1c47b4b9fd2dbe76501f1d3f9050f6331afe9d9fb9d13cd2b52c")
INDEX_NAME = "index/abcd/log-0000000000000002"
INDEX_COPY = ("01722b9bc327fb8a90a6c14756f94ace54e6fcd2c227b217574be7aa84d32bb64bfe8d229342c132f4e4b1f3"
              "e1571aa6679fe27d510e7b3d1ac413481fa04d74c8842768d055aba0e99bbe")


@pytest.mark.parametrize("fx", [CHUNK_ZSTD, CHUNK_RAW], ids=["zstd", "raw"])
def test_old_chunk_objects_decode(fx: dict) -> None:
    blob, cid, data = bytes.fromhex(fx["blob"]), bytes.fromhex(fx["cid"]), fx["data"]
    assert codec.chunk_id(K.chunk_id, data) == cid
    assert codec.decode(K.chunk_enc, K.chunk_id, cid, blob, len(data)) == data
    assert codec.decode(K.chunk_enc, K.chunk_id, cid, memoryview(blob)) == data


def test_old_pack_parses() -> None:
    data = bytes.fromhex(PACK)
    entries = packs.parse_pack(K.pack_index, data)
    assert [(e.chunk_id.hex(), e.offset, e.stored_len, e.plain_len) for e in entries] == [
        (CHUNK_ZSTD["cid"], 8, len(CHUNK_ZSTD["blob"]) // 2, len(CHUNK_ZSTD["data"])),
        (CHUNK_RAW["cid"], 8 + len(CHUNK_ZSTD["blob"]) // 2, len(CHUNK_RAW["blob"]) // 2,
         len(CHUNK_RAW["data"]))]
    for e in entries:
        blob = data[e.offset:e.offset + e.stored_len]
        assert len(codec.decode(K.chunk_enc, K.chunk_id, e.chunk_id, blob, e.plain_len)) == e.plain_len


def test_old_key_file_unseals() -> None:
    assert keys.unseal(KEY_FILE, "correct horse") == MASTER
    with pytest.raises(KeyFileError, match="^wrong passphrase$"):
        keys.unseal(KEY_FILE, "wrong horse")
    damaged = {**KEY_FILE, "ciphertext": base64.b64encode(b"short").decode()}
    with pytest.raises(KeyFileError, match="damaged"):
        keys.unseal(damaged, "correct horse")


def test_old_secrets_file_loads(tmp_path: Path) -> None:
    (tmp_path / "secrets.bin").write_bytes(bytes.fromhex(SECRETS))
    assert credentials.load_secrets(Home(tmp_path), K) == {"s3": {"secret_key": "hunter2"}}


def test_old_index_copy_opens() -> None:
    doc = indexlog.open_copy(K.metadata, INDEX_NAME, bytes.fromhex(INDEX_COPY))
    assert doc == {"seq": 2, "names": [["a", b"x" * 32]]}
    with pytest.raises(IntegrityError, match="index copy index/abcd/log-0000000000000003"):
        indexlog.open_copy(K.metadata, "index/abcd/log-0000000000000003", bytes.fromhex(INDEX_COPY))


# ---- each format rebuilt with libsodium from docs/format.md -----------------------------

def _open_raw(key: bytes, nonce: bytes, ct: bytes, aad: bytes) -> bytes:
    return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ct, aad, nonce, key)


def _seal_raw(key: bytes, plain: bytes, aad: bytes) -> tuple[bytes, bytes]:
    nonce = os.urandom(24)
    return nonce, sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, aad, nonce, key)


def test_chunk_object_layout() -> None:
    for data, comp in ((b"abc" * 100, codec.COMP_ZSTD), (os.urandom(300), codec.COMP_RAW)):
        cid = codec.chunk_id(K.chunk_id, data)
        aad = b"mosaic-chunk" + bytes((1, comp)) + cid
        blob = codec.encode(K.chunk_enc, cid, data)
        assert blob[:2] == bytes((1, comp))
        payload = _open_raw(K.chunk_enc, blob[2:26], blob[26:], aad)
        assert (zstandard.ZstdDecompressor().decompress(payload) if comp else payload) == data
        nonce, ct = _seal_raw(K.chunk_enc, payload, aad)  # and the other way round
        assert codec.decode(K.chunk_enc, K.chunk_id, cid, bytes((1, comp)) + nonce + ct) == data


def test_pack_trailer_layout() -> None:
    entries = [packs.PackEntry(b"\x07" * 32, 8, 50, 60)]
    trailer = packs.build_trailer(K.pack_index, entries)
    body, n = trailer[:-4], int.from_bytes(trailer[-4:], "big")
    assert n == len(body) and body[0] == 1
    table = _open_raw(K.pack_index, body[1:25], body[25:], b"mosaic-pack-index v1")
    assert msgpack.unpackb(table) == [[b"\x07" * 32, 8, 50, 60]]
    nonce, ct = _seal_raw(K.pack_index, table, b"mosaic-pack-index v1")
    rebuilt = b"\x01" + nonce + ct
    pack = packs.MAGIC + b"o" * 50 + rebuilt + len(rebuilt).to_bytes(4, "big")
    assert packs.parse_pack(K.pack_index, pack) == entries


def test_key_file_layout() -> None:
    import nacl.pwhash.argon2id as argon2id
    doc = keys.seal(MASTER, "pw", {})
    salt = base64.b64decode(doc["kdf"]["salt"])
    kek = argon2id.kdf(32, b"pw", salt, opslimit=doc["kdf"]["opslimit"], memlimit=doc["kdf"]["memlimit"])
    nonce, ct = base64.b64decode(doc["nonce"]), base64.b64decode(doc["ciphertext"])
    assert len(nonce) == 24 and len(ct) == 48
    assert _open_raw(kek, nonce, ct, b"mosaic-key v1") == MASTER


def test_secrets_layout(tmp_path: Path) -> None:
    home = Home(tmp_path)
    credentials.save_secrets(home, K, {"b": {"k": "v"}})
    blob = (tmp_path / "secrets.bin").read_bytes()
    assert blob[:8] == b"MOSSEC1\n"
    plain = _open_raw(K.metadata, blob[8:32], blob[32:], b"mosaic-secrets v1")
    assert msgpack.unpackb(plain) == {"b": {"k": "v"}}
    assert (tmp_path / "secrets.bin").stat().st_mode & 0o777 == 0o600


def test_index_copy_layout() -> None:
    name = "index/t/snap-0000000000000001"
    blob = indexlog.seal_copy(K.metadata, name, {"seq": 1})
    assert blob[0] == 1
    plain = _open_raw(K.metadata, blob[1:25], blob[25:], b"mosaic-index-copy v1 " + name.encode())
    assert msgpack.unpackb(zstandard.ZstdDecompressor().decompress(plain)) == {"seq": 1}


# ---- the envelope itself ----------------------------------------------------------------

KEY = bytes(range(32))


@settings(max_examples=50, deadline=None)
@given(plain=st.binary(max_size=3000), aad=st.binary(max_size=64), header=st.binary(max_size=9))
def test_round_trip(plain: bytes, aad: bytes, header: bytes) -> None:
    blob = envelope.seal(KEY, plain, aad, header)
    assert blob[:len(header)] == header
    assert len(blob) == len(header) + len(plain) + envelope.OVERHEAD
    body = blob[len(header):]
    assert envelope.open(KEY, body, aad, "x") == plain
    assert envelope.open(KEY, memoryview(body), aad, "x") == plain
    assert envelope.open(KEY, bytearray(body), aad, "x") == plain
    assert envelope.seal(KEY, memoryview(plain), aad) != envelope.seal(KEY, bytearray(plain), aad)


def _one_line_without_key(e: IntegrityError, what: str) -> str:
    msg = str(e)
    assert what in msg and "\n" not in msg
    assert KEY.hex() not in msg and repr(KEY) not in msg
    return msg


@settings(max_examples=80, deadline=None)
@given(plain=st.binary(max_size=200), data=st.data())
def test_any_flipped_bit_fails(plain: bytes, data: st.DataObject) -> None:
    blob = bytearray(envelope.seal(KEY, plain, b"aad"))
    i = data.draw(st.integers(0, len(blob) - 1), label="byte")
    blob[i] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    with pytest.raises(IntegrityError) as ei:
        envelope.open(KEY, bytes(blob), b"aad", "object 42")
    assert "failed authentication" in _one_line_without_key(ei.value, "object 42")


def test_failures_name_what_and_nothing_else() -> None:
    blob = envelope.seal(KEY, b"secret", b"aad")
    for key, aad in ((bytes(32), b"aad"), (KEY, b"other aad")):
        with pytest.raises(IntegrityError) as ei:
            envelope.open(key, blob, aad, "thing A")
        _one_line_without_key(ei.value, "thing A")
    for cut in (0, 1, envelope.OVERHEAD - 1):
        with pytest.raises(IntegrityError, match="thing B is truncated"):
            envelope.open(KEY, blob[:cut], b"aad", "thing B")
    with pytest.raises(IntegrityError, match="failed authentication"):
        envelope.open(KEY, blob[:envelope.OVERHEAD], b"aad", "thing C")


def test_bad_arguments_are_caller_bugs_not_integrity_errors() -> None:
    for bad_key in (b"short", bytearray(32), "k" * 32):
        with pytest.raises(ValueError, match="32 bytes"):
            envelope.seal(bad_key, b"x", b"")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="32 bytes"):
            envelope.open(bad_key, b"\0" * 40, b"", "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        envelope.open(KEY, b"\0" * 40, bytearray(b"aad"), "x")  # type: ignore[arg-type]


def test_only_the_public_pynacl_api() -> None:
    """No module of the package reaches into PyNaCl's private cffi binding."""
    root = Path(envelope.__file__).resolve().parents[2]  # the source tree
    hits = [str(p) for folder in ("node", "protocol", "backends") for p in (root / folder).rglob("*.py")
            if re.search(r"nacl\._sodium|from nacl import _sodium", p.read_text("utf-8"))]
    assert hits == []
    assert not (root / "node" / "store" / "aead.py").exists()
    users = {p.name for p in (root / "node").rglob("*.py")
             if "crypto_aead_xchacha20poly1305" in p.read_text("utf-8")}
    assert users == {"envelope.py"}

