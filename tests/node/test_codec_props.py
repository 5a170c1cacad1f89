"""Properties of stored objects (node/codec.py) and pack files (node/packs.py)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mosaic.node.errors import IntegrityError, StorageError
from mosaic.node.store import codec
from mosaic.node.store.home import Home
from mosaic.node.store.packs import (
    MAGIC,
    PackEntry,
    PackWriter,
    build_trailer,
    pack_id_of,
    parse_pack,
)

COMMON = settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

keys = st.binary(min_size=32, max_size=32)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """Empty, tiny, incompressible, compressible and mixed chunk contents."""
    kind = draw(st.sampled_from(["binary", "random", "zeros", "text", "empty"]))
    if kind == "empty":
        return b""
    if kind == "binary":
        return draw(st.binary(max_size=3000))
    n = draw(st.integers(1, 70_000))
    rng = random.Random(draw(st.integers(0, 2**32)))
    if kind == "random":
        return rng.randbytes(n)
    if kind == "zeros":
        return bytes(n)
    return (b"the quick brown fox %d jumps over the lazy dog\n" % rng.randrange(100) * (n // 40 + 1))[:n]


def _encode(data: bytes, enc_key: bytes, id_key: bytes, level: int = 3) -> tuple[bytes, bytes]:
    cid = codec.chunk_id(id_key, data)
    return cid, bytes(codec.encode(enc_key, cid, data, level))


@COMMON
@given(data=payloads(), enc_key=keys, id_key=keys, level=st.sampled_from([0, 1, 3, 9]))
def test_round_trip(data: bytes, enc_key: bytes, id_key: bytes, level: int) -> None:
    cid, blob = _encode(data, enc_key, id_key, level)
    assert len(cid) == 32
    assert bytes(codec.decode(enc_key, id_key, cid, blob, len(data))) == data
    assert bytes(codec.decode(enc_key, id_key, cid, blob)) == data
    assert len(blob) <= len(data) + codec.OVERHEAD
    if level == 0:
        assert blob[1] == codec.COMP_RAW


def test_incompressible_data_is_stored_raw_and_compressible_data_shrinks() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    noise = os.urandom(50_000)
    cid, blob = _encode(noise, k1, k2)
    assert blob[1] == codec.COMP_RAW and len(blob) == len(noise) + codec.OVERHEAD
    text = b"mosaic " * 10_000
    cid, blob = _encode(text, k1, k2)
    assert blob[1] == codec.COMP_ZSTD and len(blob) < len(text) // 10
    assert bytes(codec.decode(k1, k2, cid, blob, len(text))) == text


def test_a_probed_chunk_is_compressed_only_if_its_end_shrinks() -> None:
    """probe=True (ingest sets it after a chunk that did not shrink) samples the chunk's
    end: noise is stored raw without compressing it whole, text still compresses, and
    a chunk that turns from noise into text is compressed; all decode the same."""
    k1, k2 = os.urandom(32), os.urandom(32)
    noise, text = os.urandom(60_000), b"mosaic keeps every byte " * 2_500
    turning = os.urandom(30_000) + text[:30_000]
    for data, compressed in ((noise, False), (text, True), (turning, True)):
        cid = codec.chunk_id(k2, data)
        obj = codec.encode_parts(k1, cid, data, probe=True)
        assert codec.is_compressed(obj) is compressed
        assert codec.decode(k1, k2, cid, b"".join(obj), len(data)) == data
        assert codec.is_compressed(codec.encode_parts(k1, cid, data)) is compressed


def test_probing_skips_whole_chunk_compression_of_noise(zstd_inputs: list[int]) -> None:
    """The probe compresses only a sample of an incompressible chunk, never all of it."""
    data = os.urandom(100_000)
    cid = codec.chunk_id(os.urandom(32), data)
    codec.encode_parts(os.urandom(32), cid, data, probe=True)
    assert zstd_inputs == [codec.PROBE_BYTES]
    zstd_inputs.clear()
    codec.encode_parts(os.urandom(32), cid, data)
    assert zstd_inputs == [len(data)]


def test_nonces_are_fresh() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    data = b"same data twice"
    cid = codec.chunk_id(k2, data)
    a, b = codec.encode(k1, cid, data), codec.encode(k1, cid, data)
    assert a[2:26] != b[2:26] and a != b


@COMMON
@given(data=payloads(), enc_key=keys, id_key=keys, st_data=st.data())
def test_any_flipped_byte_is_detected(data: bytes, enc_key: bytes, id_key: bytes,
                                      st_data: st.DataObject) -> None:
    cid, blob = _encode(data, enc_key, id_key)
    i = st_data.draw(st.integers(0, len(blob) - 1), label="index")
    x = st_data.draw(st.integers(1, 255), label="xor")
    bad = bytearray(blob)
    bad[i] ^= x
    with pytest.raises(IntegrityError) as ei:
        codec.decode(enc_key, id_key, cid, bytes(bad), len(data))
    assert cid.hex()[:16] in str(ei.value)
    with pytest.raises(IntegrityError):
        codec.decode(enc_key, id_key, cid, bytes(bad))


@COMMON
@given(data=payloads(), enc_key=keys, id_key=keys, st_data=st.data())
def test_truncation_and_extension_are_detected(data: bytes, enc_key: bytes, id_key: bytes,
                                               st_data: st.DataObject) -> None:
    cid, blob = _encode(data, enc_key, id_key)
    cut = st_data.draw(st.integers(0, len(blob) - 1), label="cut")
    with pytest.raises(IntegrityError):
        codec.decode(enc_key, id_key, cid, blob[:cut], len(data))
    with pytest.raises(IntegrityError):
        codec.decode(enc_key, id_key, cid, blob[:cut])
    extra = st_data.draw(st.binary(min_size=1, max_size=32), label="extra")
    with pytest.raises(IntegrityError):
        codec.decode(enc_key, id_key, cid, blob + extra)


@COMMON
@given(d1=payloads(), d2=payloads(), enc_key=keys, id_key=keys)
def test_object_swap_is_detected(d1: bytes, d2: bytes, enc_key: bytes, id_key: bytes) -> None:
    assume(d1 != d2)
    c1, b1 = _encode(d1, enc_key, id_key)
    c2, b2 = _encode(d2, enc_key, id_key)
    with pytest.raises(IntegrityError):
        codec.decode(enc_key, id_key, c2, b1)
    with pytest.raises(IntegrityError):
        codec.decode(enc_key, id_key, c1, b2, len(d1))
    with pytest.raises(IntegrityError):  # a random ID, too
        codec.decode(enc_key, id_key, os.urandom(32), b1)


@COMMON
@given(data=payloads(), k1=keys, k2=keys, id_key=keys, other_id=keys)
def test_wrong_keys_fail(data: bytes, k1: bytes, k2: bytes, id_key: bytes, other_id: bytes) -> None:
    assume(k1 != k2 and id_key != other_id)
    cid, blob = _encode(data, k1, id_key)
    with pytest.raises(IntegrityError):
        codec.decode(k2, id_key, cid, blob, len(data))
    # the right encryption key but another ID key: the ID check fails
    with pytest.raises(IntegrityError):
        codec.decode(k1, other_id, cid, blob, len(data))


def test_wrong_plain_length_fails() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    for data in (os.urandom(3000), b"z" * 3000):
        cid, blob = _encode(data, k1, k2)
        for n in (0, 1, len(data) - 1, len(data) + 1):
            with pytest.raises(IntegrityError):
                codec.decode(k1, k2, cid, blob, n)


def test_chunk_id_is_keyed() -> None:
    data = b"some chunk"
    k1, k2 = os.urandom(32), os.urandom(32)
    assert codec.chunk_id(k1, data) != codec.chunk_id(k2, data)
    assert codec.chunk_id(k1, data) == codec.chunk_id(k1, bytearray(data))
    import blake3
    assert codec.chunk_id(k1, data) != blake3.blake3(data).digest()


# ---- packs ------------------------------------------------------------------------------

def _pack_bytes(key: bytes, chunks: list[bytes]) -> tuple[bytes, list[PackEntry]]:
    """A pack built in memory the way PackWriter lays it out."""
    body = bytearray(MAGIC)
    entries = []
    for c in chunks:
        cid = os.urandom(32)
        blob = codec.encode(os.urandom(32), cid, c)
        entries.append(PackEntry(cid, len(body), len(blob), len(c)))
        body += blob
    return bytes(body) + build_trailer(key, entries), entries


pack_contents = st.lists(st.binary(max_size=2000), min_size=0, max_size=12)


@COMMON
@given(chunks=pack_contents, key=keys)
def test_parse_pack_round_trip(chunks: list[bytes], key: bytes) -> None:
    data, entries = _pack_bytes(key, chunks)
    assert parse_pack(key, data) == entries


@COMMON
@given(chunks=pack_contents, key=keys, st_data=st.data())
def test_flipped_trailer_byte_is_detected(chunks: list[bytes], key: bytes,
                                          st_data: st.DataObject) -> None:
    data, entries = _pack_bytes(key, chunks)
    trailer_start = (entries[-1].offset + entries[-1].stored_len) if entries else len(MAGIC)
    i = st_data.draw(st.integers(trailer_start, len(data) - 1), label="index")
    bad = bytearray(data)
    bad[i] ^= st_data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(IntegrityError):
        parse_pack(key, bytes(bad))


@COMMON
@given(chunks=pack_contents, key=keys, other=keys, st_data=st.data())
def test_bad_packs_are_rejected(chunks: list[bytes], key: bytes, other: bytes,
                                st_data: st.DataObject) -> None:
    assume(key != other)
    data, _ = _pack_bytes(key, chunks)
    with pytest.raises(IntegrityError):
        parse_pack(other, data)
    cut = st_data.draw(st.integers(0, len(data) - 1), label="cut")
    with pytest.raises(IntegrityError):
        parse_pack(key, data[:cut])
    bad = bytearray(data)
    bad[st_data.draw(st.integers(0, len(MAGIC) - 1), label="magic")] ^= 0x20
    with pytest.raises(IntegrityError):
        parse_pack(key, bytes(bad))


def test_pack_writer_seals_a_parseable_pack(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.create_dirs()
    key, enc, idk = os.urandom(32), os.urandom(32), os.urandom(32)
    w = PackWriter(home, key)
    plain = [os.urandom(n) for n in (1, 100, 5000, 20000)] + [b"x" * 9000]
    for p in plain:
        cid = codec.chunk_id(idk, p)
        w.add(cid, bytes(codec.encode(enc, cid, p)), len(p))
    sealed = w.seal()
    data = home.pack_path(sealed.pack_id).read_bytes()
    assert len(data) == sealed.size
    assert pack_id_of(data) == sealed.pack_id
    entries = parse_pack(key, data)
    assert tuple(entries) == sealed.entries
    for e, p in zip(entries, plain, strict=True):
        assert bytes(codec.decode(enc, idk, e.chunk_id, data[e.offset:e.offset + e.stored_len],
                                  e.plain_len)) == p
    assert list(home.tmp_dir.iterdir()) == []
    # flipping an object byte is caught by the pack ID (the trailer does not cover objects)
    bad = bytearray(data)
    bad[entries[2].offset + 30] ^= 1
    assert pack_id_of(bytes(bad)) != sealed.pack_id
    # and each trailer byte by parse_pack
    end = entries[-1].offset + entries[-1].stored_len
    for i in range(end, len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x80
        with pytest.raises(IntegrityError):
            parse_pack(key, bytes(bad))


class _ShortWriter:
    """A raw file whose write() may store fewer bytes than asked and says so.

    That is the contract of an unbuffered `FileIO.write` (a signal, RLIMIT_FSIZE,
    or a disk filling up mid-write): the caller must write the rest.
    """

    def __init__(self, f):  # noqa: ANN001
        self.f = f

    def write(self, b) -> int:  # noqa: ANN001
        b = memoryview(b)
        return self.f.write(b[:max(1, len(b) // 2)])

    def fileno(self) -> int:
        return self.f.fileno()

    def close(self) -> None:
        self.f.close()


def test_pack_writer_handles_short_writes(tmp_path: Path) -> None:
    """A short write must not produce a sealed pack that disagrees with its ID and table."""
    home = Home(tmp_path / "home")
    home.create_dirs()
    key, enc, idk = os.urandom(32), os.urandom(32), os.urandom(32)
    w = PackWriter(home, key)
    w.f = _ShortWriter(w.f)
    plain = [os.urandom(3000), os.urandom(5000)]
    try:
        for p in plain:
            cid = codec.chunk_id(idk, p)
            w.add(cid, bytes(codec.encode(enc, cid, p)), len(p))
        sealed = w.seal()
    except StorageError:
        return  # refusing is fine too
    data = home.pack_path(sealed.pack_id).read_bytes()
    assert len(data) == sealed.size, "sealed pack is shorter than recorded (short write ignored)"
    assert pack_id_of(data) == sealed.pack_id
    assert tuple(parse_pack(key, data)) == sealed.entries


def test_pack_writer_that_cannot_start_leaves_nothing(tmp_path: Path) -> None:
    """A disk that is full when a pack is created: StorageError, and no temp file left.

    Run in a child with RLIMIT_FSIZE=0, so writing the magic fails with EFBIG like
    ENOSPC does (what `mosaic put` reports as "disk full while creating a pack").
    """
    code = textwrap.dedent("""
        import os, resource, sys
        from pathlib import Path
        from mosaic.node.errors import StorageError
        from mosaic.node.store.home import Home
        from mosaic.node.store.packs import PackWriter
        h = Home(Path(sys.argv[1]))
        h.create_dirs()
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        try:
            PackWriter(h, os.urandom(32))
            print("created")
        except StorageError as e:
            print("refused")
        print(sorted(os.listdir(h.tmp_dir)))
    """)
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "home")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["refused", "[]"], r.stdout
