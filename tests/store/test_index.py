"""The LMDB index on its own: manifests and chunk refcounts, names, packs, queues."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosaic.node.errors import HomeError, StorageError
from mosaic.node.store.index import LOCAL, Index
from mosaic.node.store.records import ChunkRecord, Manifest, PackRecord


def cid(i: int) -> bytes:
    return bytes([i]) * 32


def pid(i: int) -> bytes:
    return bytes([0x80 + i]) * 32


def fid(i: int) -> bytes:
    return bytes([0x40 + i]) * 32


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    d = tmp_path / "index"
    d.mkdir()
    idx = Index(d)
    yield idx
    idx.close()


def _store_chunks(idx: Index, pack: bytes, chunks: list[tuple[bytes, int]]) -> None:
    with idx.write() as txn:
        idx.put_pack(txn, pack, PackRecord.sealed(10_000, len(chunks)))
        for i, (c, n) in enumerate(chunks):
            assert idx.put_chunk(txn, c, ChunkRecord(pack, 8 + 100 * i, n + 42, n, 0), overwrite=False)


def test_manifest_takes_one_reference_per_distinct_chunk(index: Index) -> None:
    _store_chunks(index, pid(1), [(cid(1), 10), (cid(2), 20), (cid(3), 30)])
    a = Manifest(fid(1), 40, 123, ((cid(1), 10), (cid(1), 10), (cid(2), 20)))
    b = Manifest(fid(2), 50, 456, ((cid(2), 20), (cid(3), 30)))
    with index.write() as txn:
        assert index.add_manifest(txn, a) is True
        assert index.add_manifest(txn, b) is True
        assert index.add_manifest(txn, a) is False  # already there: no second reference
    assert index.get_manifest(fid(1)) == a and index.get_manifest(fid(2)) == b
    refs = {c: index.get_chunk(c).refcount for c in (cid(1), cid(2), cid(3))}  # type: ignore[union-attr]
    assert refs == {cid(1): 1, cid(2): 2, cid(3): 1}
    assert list(index.iter_manifest_ids()) == [fid(1), fid(2)]
    with index.write() as txn:
        index.set_names(txn, [("x/a", fid(1)), ("x/a2", fid(1)), ("b", fid(2))])
        assert index.remove_manifest(txn, fid(1)) is True
        assert index.remove_manifest(txn, fid(1)) is False
    assert index.get_manifest(fid(1)) is None
    refs = {c: index.get_chunk(c).refcount for c in (cid(1), cid(2), cid(3))}  # type: ignore[union-attr]
    assert refs == {cid(1): 0, cid(2): 1, cid(3): 1}  # records stay (gc removes them), at 0
    assert dict(index.iter_names()) == {"b": fid(2)}  # its names went with it
    assert index.count("manifests") == 1 and index.count("files") == 1


def test_a_manifest_needs_durable_chunks(index: Index) -> None:
    _store_chunks(index, pid(1), [(cid(1), 10)])
    with pytest.raises(StorageError, match="was not stored"), index.write() as txn:
        index.add_manifest(txn, Manifest(fid(1), 20, 0, ((cid(1), 10), (cid(9), 10))))
    # the failed transaction left nothing, not even the first chunk's reference
    assert index.get_manifest(fid(1)) is None
    assert index.get_chunk(cid(1)).refcount == 0  # type: ignore[union-attr]


def test_chunk_records(index: Index) -> None:
    _store_chunks(index, pid(1), [(cid(1), 10)])
    r = index.get_chunk(cid(1))
    assert r == ChunkRecord(pid(1), 8, 52, 10, 0)
    assert index.has_chunk(cid(1)) and not index.has_chunk(cid(2))
    with index.write() as txn:
        assert index.put_chunk(txn, cid(1), ChunkRecord(pid(1), 99, 1, 1, 0), overwrite=False) is False
        assert index.get_chunk(cid(1), txn) == r
        with pytest.raises(StorageError, match="has no record"):
            index.put_chunk(txn, cid(2), ChunkRecord(pid(7), 8, 1, 1, 0))
        index.delete_chunk(txn, cid(1))
    assert index.get_chunk(cid(1)) is None
    with index.read() as txn:
        assert list(index.iter_chunks(txn)) == []


def test_names_set_unset_and_iterate(index: Index) -> None:
    _store_chunks(index, pid(1), [(cid(1), 1)])
    with index.write() as txn:
        for i in (1, 2):
            index.add_manifest(txn, Manifest(fid(i), 1, 0, ((cid(1), 1),)))
        assert index.set_name(txn, "docs/a", fid(1)) is None
        assert index.set_name(txn, "docs/b", fid(1)) is None
        assert index.set_name(txn, "docs/a", fid(2)) == fid(1)  # returns what it pointed at
        assert index.set_name(txn, "docs/a", fid(2)) == fid(2)  # unchanged
        assert index.set_name(txn, "other", fid(2)) is None
        done = index.set_names(txn, [("z", fid(1)), ("docs/b", None), ("never", None)])
        assert done == [("docs/b", fid(1), None), ("z", None, fid(1))]
        assert index.unset_name(txn, "z") == fid(1)
        assert index.unset_name(txn, "z") is None
        with pytest.raises(StorageError, match="unknown file"):
            index.set_names(txn, [("bad", fid(9))])
    assert index.resolve_name("docs/a") == fid(2) and index.resolve_name("docs/b") is None
    assert list(index.iter_names()) == [("docs/a", fid(2)), ("other", fid(2))]
    assert list(index.iter_names("docs/")) == [("docs/a", fid(2))]
    assert list(index.iter_names("zzz")) == []
    assert sorted(index.names_of(fid(2))) == ["docs/a", "other"] and index.names_of(fid(1)) == []
    with index.read() as txn:
        assert index.has_names(txn, {fid(1), fid(2), fid(9)}) == {fid(2)}


def test_pack_records_and_numbers(index: Index) -> None:
    with index.write() as txn:
        index.put_pack(txn, pid(1), PackRecord.sealed(1000, 3))
        index.put_pack(txn, pid(2), PackRecord.hinted(["s3", "dav", "s3"]))
        index.put_chunk(txn, cid(1), ChunkRecord(pid(2), 8, 10, 5, 0))
    p1, p2 = index.get_pack(pid(1)), index.get_pack(pid(2))
    assert p1 is not None and (p1.size, p1.n_chunks, p1.local, p1.locations) == (1000, 3, True, ())
    assert p2 is not None and (p2.size, p2.local, p2.locations) == (0, False, ("dav", "s3"))
    assert p2.adding("b2", "s3").locations == ("b2", "dav", "s3")
    assert p2.with_locations([]).locations == ()
    with index.write() as txn:  # replacing a record keeps its pack number: chunk rows still resolve
        index.put_pack(txn, pid(2), p2.adding("b2"))
    assert index.get_chunk(cid(1)).pack_id == pid(2)  # type: ignore[union-attr]
    assert index.get_pack(pid(2)).locations == ("b2", "dav", "s3")  # type: ignore[union-attr]
    with index.read() as txn:
        assert dict(index.iter_packs(txn)).keys() == {pid(1), pid(2)}
        assert index.atime(pid(1), txn) == 0
    index.touch_packs({pid(1)})
    with index.read() as txn:
        assert index.atime(pid(1), txn) > 0
    with index.write() as txn:
        index.delete_pack(txn, pid(1))
    assert index.get_pack(pid(1)) is None
    with index.read() as txn:
        assert index.atime(pid(1), txn) == 0
    assert index.count("packnos") == 1


def test_upload_and_repair_queues(index: Index) -> None:
    with index.write() as txn:
        index.queue_upload(txn, pid(1), "s3")
        index.queue_upload(txn, pid(1), "dav")
        index.queue_upload(txn, pid(2), "s3")
        index.dequeue_upload(txn, pid(1), "dav")
        index.queue_repair(txn, pid(3), LOCAL, "corrupt")
        index.queue_repair(txn, pid(3), "s3", "missing")
        index.clear_repair(txn, pid(3), "s3")
    with index.read() as txn:
        assert sorted(index.iter_uploads(txn)) == [(pid(1), "s3"), (pid(2), "s3")]
        assert list(index.iter_repairs(txn)) == [(pid(3), LOCAL, "corrupt")]


def test_events_since(index: Index) -> None:
    with index.write() as txn:
        index.add_event(txn, "upload", "s3", 100, 0.5)
        index.add_event(txn, "error", "s3", 0, 0.1, "boom")
    ev = list(index.iter_events(0))
    assert {e[1:] for e in ev} == {("upload", "s3", 100, 0.5, None), ("error", "s3", 0, 0.1, "boom")}
    assert list(index.iter_events(max(e[0] for e in ev) + 1)) == []


def test_a_failed_write_transaction_changes_nothing(index: Index) -> None:
    with pytest.raises(RuntimeError), index.write() as txn:
        index.put_pack(txn, pid(1), PackRecord.sealed(1, 1))
        raise RuntimeError("boom")
    assert index.get_pack(pid(1)) is None
    assert index.count("packs") == 0


def test_reopen_keeps_data_and_refuses_another_schema(tmp_path: Path) -> None:
    d = tmp_path / "index"
    d.mkdir()
    idx = Index(d)
    _store_chunks(idx, pid(1), [(cid(1), 10)])
    idx.close()
    idx = Index(d)
    assert idx.get_chunk(cid(1)) == ChunkRecord(pid(1), 8, 52, 10, 0)
    assert idx.repl_origin is None
    with idx.write() as txn:
        txn.put(b"schema", b"99", db=idx.db["meta"])
    idx.close()
    with pytest.raises(HomeError, match="schema 99"):
        Index(d)


def test_a_replicated_index_refuses_unlogged_writes(tmp_path: Path) -> None:
    """Once the node has a replication origin, only the cluster layer may write manifests/names."""
    d = tmp_path / "index"
    d.mkdir()
    idx = Index(d)
    _store_chunks(idx, pid(1), [(cid(1), 1)])
    with idx.write() as txn:
        txn.put(b"node_id", os.urandom(32), db=idx.db["meta"])
    idx.close()
    idx = Index(d)
    try:
        assert idx.repl_origin is not None
        with pytest.raises(StorageError, match="mosaic.Node"), idx.write() as txn:
            idx.add_manifest(txn, Manifest(fid(1), 1, 0, ((cid(1), 1),)))
        assert idx.get_manifest(fid(1)) is None
    finally:
        idx.close()


def test_an_unopenable_index_is_a_home_error(tmp_path: Path) -> None:
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    with pytest.raises(HomeError, match="cannot open the index"):
        Index(f)
