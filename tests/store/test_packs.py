"""Pack files on their own: PackWriter -> seal -> parse/check, and LocalPacks reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mosaic.node.errors import IntegrityError
from mosaic.node.store import codec
from mosaic.node.store.home import Home
from mosaic.node.store.packs import (
    MAGIC,
    LocalPacks,
    PackEntry,
    PackWriter,
    SealedPack,
    check_pack,
    pack_id_of,
    parse_pack,
)

KEY = bytes(range(32))


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "home")
    h.create_dirs()
    return h


def _write_pack(home: Home, objects: list[bytes], key: bytes = KEY) -> SealedPack:
    w = PackWriter(home, key)
    for i, blob in enumerate(objects):
        w.add(bytes([i]) * 32, blob, len(blob) * 2)
    return w.seal()


def test_seal_makes_a_durable_self_describing_pack(home: Home) -> None:
    objects = [os.urandom(n) for n in (100, 1, 5000, 64)]
    sp = _write_pack(home, objects)
    path = home.pack_path(sp.pack_id)
    assert path.parent.name == sp.pack_id.hex()[:2]
    data = path.read_bytes()
    assert data.startswith(MAGIC) and len(data) == sp.size
    assert pack_id_of(data) == sp.pack_id
    assert list(home.tmp_dir.iterdir()) == []
    entries = parse_pack(KEY, data)
    assert tuple(entries) == sp.entries
    assert check_pack(KEY, sp.pack_id, data) == entries
    pos = len(MAGIC)
    for i, (e, blob) in enumerate(zip(entries, objects, strict=True)):
        assert e == PackEntry(bytes([i]) * 32, pos, len(blob), 2 * len(blob))
        assert data[e.offset:e.offset + e.stored_len] == blob
        pos += len(blob)


def test_an_empty_pack_still_parses(home: Home) -> None:
    sp = _write_pack(home, [])
    assert parse_pack(KEY, home.pack_path(sp.pack_id).read_bytes()) == [] and sp.entries == ()


def test_damage_is_detected(home: Home) -> None:
    sp = _write_pack(home, [os.urandom(300), os.urandom(300)])
    data = home.pack_path(sp.pack_id).read_bytes()
    flipped = bytearray(data)
    flipped[len(MAGIC) + 10] ^= 1  # inside an object: the trailer still opens, the ID does not match
    with pytest.raises(IntegrityError, match="does not match its ID"):
        check_pack(KEY, sp.pack_id, bytes(flipped))
    assert parse_pack(KEY, bytes(flipped)) == list(sp.entries)
    tail = bytearray(data)
    tail[-10] ^= 1  # inside the sealed table
    with pytest.raises(IntegrityError, match="authentication"):
        parse_pack(KEY, bytes(tail))
    with pytest.raises(IntegrityError, match="authentication"):
        parse_pack(bytes(32), data)  # another key
    with pytest.raises(IntegrityError, match="bad magic"):
        parse_pack(KEY, b"NOTAPACK" + data[8:])
    with pytest.raises(IntegrityError):
        parse_pack(KEY, data[:-1])
    with pytest.raises(IntegrityError, match="truncated"):
        parse_pack(KEY, MAGIC + (40).to_bytes(4, "big"))


def test_abort_leaves_nothing(home: Home) -> None:
    w = PackWriter(home, KEY)
    w.add(b"\x01" * 32, b"data", 4)
    assert len(list(home.tmp_dir.iterdir())) == 1
    w.abort()
    assert list(home.tmp_dir.iterdir()) == [] and list(home.packs_dir.iterdir()) == []


def test_stored_objects_decode_from_a_pack(home: Home) -> None:
    """A pack of real codec objects: each range read back decodes to its chunk."""
    enc, idk = os.urandom(32), os.urandom(32)
    chunks = [os.urandom(2000), b"abc" * 1000, b""]
    w = PackWriter(home, KEY)
    for c in chunks:
        w.add(codec.chunk_id(idk, c), codec.encode(enc, codec.chunk_id(idk, c), c), len(c))
    sp = w.seal()
    lp = LocalPacks(home)
    for e, c in zip(sp.entries, chunks, strict=True):
        blob = lp.read(sp.pack_id, e.offset, e.stored_len)
        assert codec.decode(enc, idk, e.chunk_id, blob, e.plain_len) == c
    lp.close()


def test_objects_added_in_parts_are_laid_out_as_one(home: Home) -> None:
    """add_parts (one writev of header and ciphertext) writes what add of the joined bytes would."""
    enc, idk = os.urandom(32), os.urandom(32)
    chunks = [os.urandom(70_000), b"xyz" * 20_000, b"q"]
    objs = [codec.encode_parts(enc, codec.chunk_id(idk, c), c) for c in chunks]
    w = PackWriter(home, KEY)
    for c, parts in zip(chunks, objs, strict=True):
        w.add_parts(codec.chunk_id(idk, c), parts, len(c))
    sp = w.seal()
    data = home.pack_path(sp.pack_id).read_bytes()
    assert pack_id_of(data) == sp.pack_id and len(data) == sp.size
    assert tuple(parse_pack(KEY, data)) == sp.entries
    for e, c, parts in zip(sp.entries, chunks, objs, strict=True):
        assert data[e.offset:e.offset + e.stored_len] == b"".join(parts)
        assert codec.decode(enc, idk, e.chunk_id, data[e.offset:e.offset + e.stored_len],
                            e.plain_len) == c


def test_local_packs(home: Home) -> None:
    packs = [_write_pack(home, [os.urandom(500 + i)]) for i in range(3)]
    lp = LocalPacks(home, max_open=2)
    try:
        for _ in range(2):  # descriptors get evicted and reopened: reads stay right
            for sp in packs:
                e = sp.entries[0]
                data = home.pack_path(sp.pack_id).read_bytes()
                assert lp.read(sp.pack_id, e.offset, e.stored_len) == data[e.offset:e.offset + e.stored_len]
        assert len(lp._fds) == 2
        sp = packs[0]
        assert lp.has(sp.pack_id) and not lp.has(b"\x00" * 32)
        assert lp.read_all(sp.pack_id) == home.pack_path(sp.pack_id).read_bytes()
        with pytest.raises(IntegrityError, match="truncated"):
            lp.read(sp.pack_id, sp.size - 10, 20)
        with pytest.raises(FileNotFoundError):
            lp.read(b"\x00" * 32, 0, 1)
        # store a pack fetched from elsewhere
        blob = lp.read_all(sp.pack_id)
        lp.delete(sp.pack_id)
        assert not lp.has(sp.pack_id) and not home.pack_path(sp.pack_id).exists()
        lp.delete(sp.pack_id)  # no error when already gone
        lp.write(sp.pack_id, blob)
        assert lp.has(sp.pack_id) and check_pack(KEY, sp.pack_id, lp.read_all(sp.pack_id))
        assert list(home.tmp_dir.iterdir()) == []
    finally:
        lp.close()
    assert lp._fds == {}
