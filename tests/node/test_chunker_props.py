"""Properties of the content-defined chunker (node/chunker.py)."""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mosaic.node.errors import UsageError
from mosaic.node.store.chunker import ChunkParams, chunk_buffer, chunk_stream

SMALL = dict(min_size=1024, avg_size=4096, max_size=16384)
COMMON = settings(max_examples=40, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _make(kind: str, seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    if kind == "random":
        return rng.randbytes(size)
    if kind == "zeros":
        return bytes(size)
    if kind == "text":
        words = [rng.randbytes(rng.randint(1, 6)).hex() for _ in range(50)]
        out = bytearray()
        while len(out) < size:
            out += rng.choice(words).encode() + b" "
        return bytes(out[:size])
    # mixed: runs of random bytes and runs of one repeated byte
    out = bytearray()
    while len(out) < size:
        n = rng.randint(1, 40_000)
        out += rng.randbytes(n) if rng.random() < 0.5 else bytes([rng.randrange(256)]) * n
    return bytes(out[:size])


@st.composite
def params(draw: st.DrawFn) -> ChunkParams:
    """Valid chunk sizes (as `ChunkParams.validate` accepts) and a seed."""
    mn = draw(st.integers(64, 8192))
    avg = draw(st.integers(max(256, mn), 32768))
    # an odd minimum is rounded up to even (pyfastcdc steps two bytes at a time),
    # which needs room below avg; Node.init only makes even minimums
    assume(not (mn % 2 and mn == avg))
    mx = draw(st.integers(max(1024, avg), 131072))
    seed = draw(st.integers(0, (1 << 63) - 1))
    return ChunkParams(mn, avg, mx, seed=seed).validate()


inputs = st.tuples(st.sampled_from(["random", "zeros", "text", "mixed"]),
                   st.integers(0, 2**32), st.integers(0, 400_000)).map(lambda t: _make(*t))


class ShortReads(io.RawIOBase):
    """A stream that returns at most `step` bytes per read (like a pipe)."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step, self.pos = data, step, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        n = min(len(b), self.step, len(self.data) - self.pos)
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def _check_sizes(chunks: list[bytes], p: ChunkParams) -> None:
    for i, c in enumerate(chunks):
        assert len(c) > 0, f"empty chunk at {i}"
        assert len(c) <= p.max_size, f"chunk {i} is {len(c)} > max {p.max_size}"
        if i < len(chunks) - 1:
            assert len(c) >= p.min_size, f"chunk {i} of {len(chunks)} is {len(c)} < min {p.min_size}"


@COMMON
@given(data=inputs, p=params())
@example(data=_make("random", 49, 8520), p=ChunkParams(249, 256, 1024, seed=0))  # odd minimum
def test_buffer_reassembles_and_respects_sizes(data: bytes, p: ChunkParams) -> None:
    chunks = [bytes(c) for c in chunk_buffer(data, p)]
    assert b"".join(chunks) == data
    _check_sizes(chunks, p)
    assert (len(chunks) == 0) == (len(data) == 0)


@COMMON
@given(data=inputs, p=params(), step=st.sampled_from([1 << 20, 65536, 4097, 777]))
def test_stream_reassembles_and_matches_buffer(data: bytes, p: ChunkParams, step: int) -> None:
    """chunk_stream cuts exactly where chunk_buffer cuts, whatever the read sizes.

    Ingest uses chunk_buffer for small files and chunk_stream for the rest, so
    any difference would cost dedup between the two paths.
    """
    chunks = list(chunk_stream(ShortReads(data, step), p))
    assert all(isinstance(c, bytes) for c in chunks)
    assert b"".join(chunks) == data
    _check_sizes(chunks, p)
    assert chunks == [bytes(c) for c in chunk_buffer(data, p)]


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), p=params())
def test_small_inputs(data: bytes, p: ChunkParams) -> None:
    chunks = [bytes(c) for c in chunk_buffer(data, p)]
    assert b"".join(chunks) == data
    _check_sizes(chunks, p)
    assert list(chunk_stream(io.BytesIO(data), p)) == chunks


@COMMON
@example(seed=2333, size=383571, where=0.5927982031731935, ins=b"\x00", gear_seed=2271)
@given(seed=st.integers(0, 2**32), size=st.integers(300_000, 600_000),
       where=st.floats(0.3, 0.7), ins=st.binary(min_size=1, max_size=16),
       gear_seed=st.integers(0, (1 << 63) - 1))
def test_insertion_only_moves_nearby_boundaries(seed: int, size: int, where: float, ins: bytes,
                                                gear_seed: int) -> None:
    p = ChunkParams(**SMALL, seed=gear_seed).validate()
    a = random.Random(seed).randbytes(size)
    pos = int(size * where)
    b = a[:pos] + ins + a[pos:]
    ca = [bytes(c) for c in chunk_buffer(a, p)]
    cb = [bytes(c) for c in chunk_buffer(b, p)]
    assert b"".join(cb) == b
    margin = 4 * p.max_size  # resync happens within a few chunks (measured: < 13 KiB)

    # every chunk that ends before the edit is unchanged, in place (a chunk that ends
    # exactly at the edit may move: FastCDC's cut test reads the byte at the cut)
    before, off = [], 0
    for c in ca:
        if off + len(c) >= pos:
            break
        before.append(c)
        off += len(c)
    assert cb[:len(before)] == before
    assert off >= pos - p.max_size

    # every chunk that starts well after the edit is unchanged (as a suffix)
    after, end = [], len(a)
    for c in reversed(ca):
        if end - len(c) < pos + margin:
            break
        after.append(c)
        end -= len(c)
    after.reverse()
    assert after, "the input is long enough to have chunks well after the edit"
    assert cb[len(cb) - len(after):] == after
    assert end <= pos + margin + p.max_size
    # and only a handful of chunks differ
    changed = len(cb) - len(before) - len(after)
    assert changed <= margin // p.min_size + 2


SEED_BITS = 48  # FastCDC's masks use hash bits 0..47, so only those seed bits matter


@COMMON
@given(seed=st.integers(0, 2**32), s1=st.integers(0, (1 << 63) - 1),
       s2=st.integers(0, (1 << 63) - 1))
def test_different_seeds_give_different_boundaries(seed: int, s1: int, s2: int) -> None:
    low = (1 << SEED_BITS) - 1
    assume(s1 & low != s2 & low)
    data = random.Random(seed).randbytes(300_000)
    b1 = [len(c) for c in chunk_buffer(data, ChunkParams(**SMALL, seed=s1))]
    b2 = [len(c) for c in chunk_buffer(data, ChunkParams(**SMALL, seed=s2))]
    assert b1 != b2
    # the same seed is deterministic, and bits above the masks change nothing
    assert b1 == [len(c) for c in chunk_buffer(data, ChunkParams(**SMALL, seed=s1))]
    assert b1 == [len(c) for c in chunk_buffer(data, ChunkParams(**SMALL, seed=s1 ^ (s2 & ~low)))]


def test_every_low_seed_bit_matters() -> None:
    """Each of the 48 effective seed bits changes the cut points on its own (2^48 gear tables)."""
    data = random.Random(2).randbytes(1_000_000)
    base = [len(c) for c in chunk_buffer(data, ChunkParams(**SMALL, seed=0))]
    for bit in range(SEED_BITS):
        assert [len(c) for c in chunk_buffer(data, ChunkParams(**SMALL, seed=1 << bit))] != base, bit


def test_seeded_boundaries_do_not_follow_the_unseeded_ones() -> None:
    """With a key-derived seed, few cut points coincide with the public (seed 0) ones."""
    data = random.Random(7).randbytes(500_000)

    def cuts(seed: int) -> set[int]:
        out, pos = set(), 0
        for c in chunk_buffer(data, ChunkParams(**SMALL, seed=seed)):
            pos += len(c)
            out.add(pos)
        return out - {len(data)}

    public, keyed = cuts(0), cuts(0x1234_5678_9ABC_DEF)
    assert len(public & keyed) < 0.2 * len(public)


@pytest.mark.parametrize("sizes", [(32, 4096, 16384), (1024, 128, 16384), (1024, 4096, 512),
                                   (8192, 4096, 16384), (1024, 65536, 16384),
                                   (2 << 20, 4 << 20, 8 << 20), (1024, 8 << 20, 16 << 20),
                                   (1024, 4096, 32 << 20)])
def test_invalid_sizes_are_rejected(sizes: tuple[int, int, int]) -> None:
    with pytest.raises(UsageError):
        ChunkParams(*sizes).validate()


def test_init_wants_an_even_minimum(tmp_path) -> None:  # noqa: ANN001
    from mosaic import Node
    from mosaic.node.errors import UsageError
    with pytest.raises(UsageError, match="even"):
        Node.init(tmp_path / "h", no_passphrase=True, chunk_min=1025, chunk_avg=4096, chunk_max=16384)
    with Node.init(tmp_path / "h2", no_passphrase=True, chunk_avg=4098) as n:
        assert n.store.chunk_params.min_size % 2 == 0
