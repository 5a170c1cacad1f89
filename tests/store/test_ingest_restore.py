"""Ingest (chunk, encrypt, pack, commit) and restore (read, check, reassemble) on a bare Store."""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from mosaic.node.errors import IntegrityError, NotFoundError, StorageError
from mosaic.node.store import restore
from mosaic.node.store.ingest import Ingest
from mosaic.node.store.store import Store

from .conftest import data_of, put_files

FILES = {
    "empty": b"",
    "one byte": b"x",
    "small.txt": b"hello small file\n" * 10,
    "big.bin": data_of(1, 300_000),
    "text.txt": b"".join(b"%d bottles of beer\n" % i for i in range(10_000)),
}


def _pack_files(store: Store) -> list[Path]:
    return [p for p in store.home.packs_dir.rglob("*") if p.is_file()]


def test_put_then_read_back_every_way(store: Store, tmp_path: Path) -> None:
    res = put_files(store, FILES)
    for name, data in FILES.items():
        r = res[name]
        assert r.file_id == blake3.blake3(data).digest() and r.hash == blake3.blake3(data).hexdigest()
        assert r.names == (name,) and r.size == len(data)
        m = store.index.get_manifest(r.file_id)
        assert m is not None and m.size == len(data) and r.chunks == len(m.chunks)
        assert sum(n for _, n in m.chunks) == len(data)
        assert store.index.resolve_name(name) == r.file_id
        # whole file, hash-checked
        assert b"".join(restore.read_verified(store, m)) == data
        # into a descriptor
        out = tmp_path / f"out-{r.hash[:8]}"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            progress: list[int] = []
            assert restore.restore_into(store, m, fd, progress.append) == len(data)
        finally:
            os.close(fd)
        assert out.read_bytes() == data and sum(progress) == len(data)
    assert res["big.bin"].chunks > 20  # 4 KiB average chunks
    assert len(_pack_files(store)) == 1  # one session, default 16 MiB packs
    assert list(store.home.tmp_dir.iterdir()) == []


def test_read_range_reads_exactly_the_bytes_asked(store: Store) -> None:
    data = FILES["big.bin"]
    m = store.index.get_manifest(put_files(store, {"big": data})["big"].file_id)
    assert m is not None
    offs = m.offsets()
    b1, b3 = offs[1], offs[3]
    size = len(data)
    for off, length in [(0, 0), (0, 1), (0, 10), (b1 - 1, 2), (b1, offs[2] - b1), (b1 - 100, b3 - b1 + 200),
                        (b1 + 1, 3 * 16384), (size - 10, 10), (size - 10, 100), (size, 5),
                        (size + 5, 10), (12345, None), (size - 1, None), (0, size), (0, 2 * size)]:
        got = b"".join(restore.read_range(store, m, off, length))
        want = data[off:] if length is None else data[off:off + length]
        assert got == want, (off, length)
    with pytest.raises(StorageError):
        list(restore.read_range(store, m, -1, 5))


def test_file_reader_seeks_and_reads(store: Store) -> None:
    data = FILES["big.bin"]
    m = store.index.get_manifest(put_files(store, {"big": data})["big"].file_id)
    assert m is not None
    f = io.BufferedReader(restore.FileReader(store, m), buffer_size=1000)
    assert f.read(10) == data[:10]
    assert f.seek(123_456) == 123_456 and f.read(50_000) == data[123_456:173_456]
    assert f.seek(-7, io.SEEK_END) == len(data) - 7 and f.read() == data[-7:]
    assert f.read(10) == b""
    raw = restore.FileReader(store, m)
    raw.seek(5)
    raw.seek(5, io.SEEK_CUR)
    assert raw.tell() == 10
    assert raw.read(3) == data[10:13]
    with pytest.raises(ValueError):
        raw.seek(-1)
    assert raw.readable() and raw.seekable()


def test_restore_small_files_in_groups(store: Store, tmp_path: Path) -> None:
    rng = random.Random(3)
    files = {f"f{i:03d}": rng.randbytes(rng.randint(0, 3000)) for i in range(300)}
    res = put_files(store, files)
    pairs = []
    for name, r in res.items():
        m = store.index.get_manifest(r.file_id)
        assert m is not None
        pairs.append((m, str(tmp_path / name)))
    groups = restore.group_small_files(pairs)
    assert len(groups) == 2 and [p for g in groups for p in g] == pairs  # 256 files a group, in order
    seen: list[int] = []
    total = sum(restore.restore_small_files(store, g, seen.append) for g in groups)
    assert total == sum(len(d) for d in files.values()) == sum(seen)
    for name, data in files.items():
        assert (tmp_path / name).read_bytes() == data


def test_dedup_and_refcounts(store: Store) -> None:
    block = data_of(2, 60_000)
    first = put_files(store, {"a": block, "a-again": block})
    assert first["a-again"].new_chunks == 0 and first["a-again"].new_bytes == 0
    assert first["a"].new_chunks > 0 and first["a"].file_id == first["a-again"].file_id
    packs_before = _pack_files(store)
    again = put_files(store, {"b": block})["b"]
    assert again.new_chunks == 0 and again.new_bytes == 0
    assert _pack_files(store) == packs_before  # nothing new stored, not even an empty pack
    m = store.index.get_manifest(first["a"].file_id)
    assert m is not None
    for cid, _ in m.chunks:
        r = store.index.get_chunk(cid)
        assert r is not None and r.refcount == 1  # one manifest, however many names
    assert sorted(store.index.names_of(m.file_id)) == ["a", "a-again", "b"]
    # a file that shares its first chunks with `block`
    other = put_files(store, {"c": block + b"tail" * 5000})["c"]
    assert 0 < other.new_chunks < other.chunks
    shared = [cid for cid, _ in m.chunks if store.index.get_chunk(cid).refcount == 2]  # type: ignore[union-attr]
    assert shared


def test_pack_rotation_and_streamed_input(make_store: Callable[..., Store]) -> None:
    store = make_store(pack_size=64 << 10)
    data = data_of(4, 700_000)
    ing = Ingest(store)
    p = ing.put_stream(io.BytesIO(data), ("streamed",))  # no size hint: chunk_stream
    ing.close()
    r = p.result()
    assert r.file_id == blake3.blake3(data).digest()
    packs = _pack_files(store)
    assert len(packs) >= 5
    with store.index.read() as txn:
        recs = dict(store.index.iter_packs(txn))
    assert set(recs) == {bytes.fromhex(p.name) for p in packs}
    for pid, rec in recs.items():
        assert rec.local and rec.locations == () and rec.size == store.home.pack_path(pid).stat().st_size
    m = store.index.get_manifest(r.file_id)
    assert m is not None and b"".join(restore.read_verified(store, m)) == data


def test_a_run_of_noise_is_probed_not_compressed_whole(make_store: Callable[..., Store],
                                                        zstd_inputs: list[int]) -> None:
    """After a chunk that did not shrink, ingest samples the next before compressing it:
    a run of noise costs zstd a sample a chunk, and the text after it still compresses."""
    from mosaic.node.store import codec
    store = make_store(chunk_min=16384, chunk_avg=32768, chunk_max=65536)
    rng = random.Random(7)
    noise = rng.randbytes(2_000_000)
    text = b"".join(b"line %d of a log that compresses well\n" % i for i in range(50_000))
    ing = Ingest(store)
    p = ing.put_stream(io.BytesIO(noise + text), ("mixed",))
    ing.close()
    r = p.result()
    m = store.index.get_manifest(r.file_id)
    assert m is not None and b"".join(restore.read_verified(store, m)) == noise + text
    whole = sum(n for n in zstd_inputs if n != codec.PROBE_BYTES)
    # noise: about one whole chunk a worker batch (the first, unprobed); text: all of it
    assert whole < len(text) + len(noise) // 4
    assert zstd_inputs.count(codec.PROBE_BYTES) >= len(noise) // 65536
    stored = sum(p.stat().st_size for p in _pack_files(store))
    assert stored < len(noise) + len(text) // 5


def test_result_is_final_only_after_close(store: Store) -> None:
    ing = Ingest(store)
    p = ing.put_stream(io.BytesIO(b"x" * 10_000), ("late",), size_hint=10_000)
    with pytest.raises(RuntimeError, match="not finished"):
        p.result()
    assert store.index.resolve_name("late") is None  # nothing is committed before close()
    ing.close()
    assert store.index.resolve_name("late") == p.result().file_id


def test_abort_commits_nothing_and_leaves_no_temp_file(store: Store) -> None:
    ing = Ingest(store)
    ing.put_stream(io.BytesIO(data_of(5, 6_500_000)), ("aborted",), size_hint=6_500_000)
    assert list(store.home.tmp_dir.iterdir()) != []  # a pack was being written
    ing.abort()
    assert store.index.resolve_name("aborted") is None
    assert store.index.count("manifests") == 0 and store.index.count("chunks") == 0
    assert list(store.home.tmp_dir.iterdir()) == []
    assert _pack_files(store) == []


def test_rollback_undoes_names_files_and_packs(store: Store) -> None:
    kept = put_files(store, {"kept": b"kept content " * 500})["kept"]
    ing = Ingest(store)
    ing.put_stream(io.BytesIO(data_of(6, 100_000)), ("new",), size_hint=100_000)
    ing.put_stream(io.BytesIO(b"kept content " * 500), ("kept",), size_hint=6500)  # unchanged
    ing.close()
    assert store.index.resolve_name("new") is not None
    dead = ing.rollback()
    assert len(dead) == 1
    assert store.index.resolve_name("new") is None
    assert store.index.resolve_name("kept") == kept.file_id
    assert store.index.count("manifests") == 1
    with store.index.read() as txn:
        assert dead[0] not in dict(store.index.iter_packs(txn))


def test_a_corrupt_chunk_fails_the_read_and_is_queued_for_repair(store: Store) -> None:
    data = FILES["big.bin"]
    m = store.index.get_manifest(put_files(store, {"big": data})["big"].file_id)
    assert m is not None
    cid = m.chunks[3][0]
    rec = store.index.get_chunk(cid)
    assert rec is not None
    path = store.home.pack_path(rec.pack_id)
    raw = bytearray(path.read_bytes())
    raw[rec.offset + rec.stored_len // 2] ^= 0x40
    path.write_bytes(bytes(raw))
    store.local.forget(rec.pack_id)
    with pytest.raises(IntegrityError, match=cid.hex()[:16]):
        b"".join(restore.read_verified(store, m))
    # bytes before the bad chunk are still readable, and the bad chunk is not
    assert b"".join(restore.read_range(store, m, 0, m.offsets()[3])) == data[:m.offsets()[3]]
    with pytest.raises(IntegrityError):
        list(restore.read_range(store, m, m.offsets()[3], 1))
    with store.index.read() as txn:
        repairs = list(store.index.iter_repairs(txn))
    assert [(p, b) for p, b, _ in repairs] == [(rec.pack_id, "@local")]


def test_a_missing_chunk_record_is_not_found(store: Store) -> None:
    m = store.index.get_manifest(put_files(store, {"f": b"f" * 5000})["f"].file_id)
    assert m is not None
    with store.index.write() as txn:
        store.index.delete_chunk(txn, m.chunks[0][0])
    with pytest.raises(NotFoundError, match="unknown to this node"):
        list(restore.read_verified(store, m))
