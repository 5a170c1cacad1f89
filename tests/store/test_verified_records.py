"""Verified records: what arrives by import (or sync) is a claim until a read authenticates it,
ingest deduplicates against verified records only, and a put replaces a stored manifest whose
chunk list differs from what it computed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest

from mosaic.node.errors import StorageError
from mosaic.node.store import restore
from mosaic.node.store.index import Index
from mosaic.node.store.records import ChunkRecord, Manifest, PackRecord
from mosaic.node.store.store import Store
from mosaic.node.store.transfer import export, import_
from mosaic.protocol.manifest_json import seal_dump

from .conftest import data_of, put_files


def cid(i: int) -> bytes:
    return bytes([i]) * 32


def fid(i: int) -> bytes:
    return bytes([0x40 + i]) * 32


PACK, OTHER = b"\x81" * 32, b"\x82" * 32


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    d = tmp_path / "index"
    d.mkdir()
    idx = Index(d)
    with idx.write() as txn:
        idx.put_pack(txn, PACK, PackRecord.sealed(10_000, 3))
        idx.put_pack(txn, OTHER, PackRecord.hinted(["nas"]))
    yield idx
    idx.close()


def unverified(idx: Index) -> set[tuple[str, bytes]]:
    with idx.read() as txn:
        return set(idx.iter_unverified(txn))


def refcount(idx: Index, c: bytes) -> int:
    r = idx.get_chunk(c)
    assert r is not None
    return r.refcount


# ---- the index API ---------------------------------------------------------------------------

def test_claims_are_marked_and_own_records_replace_them(index: Index) -> None:
    with index.write() as txn:
        assert index.put_chunk(txn, cid(1), ChunkRecord(OTHER, 8, 50, 10, 0), overwrite=False,
                               verified=False)
        assert index.add_manifest(txn, Manifest(fid(1), 10, 1, ((cid(1), 10),)), verified=False)
        assert index.put_chunk(txn, cid(2), ChunkRecord(PACK, 8, 50, 10, 0), overwrite=False)
    assert unverified(index) == {("c", cid(1)), ("m", fid(1))}
    with index.read() as txn:
        assert not index.chunk_verified(txn, cid(1)) and index.chunk_verified(txn, cid(2))
        assert not index.manifest_verified(txn, fid(1)) and index.any_unverified(txn)
    assert refcount(index, cid(1)) == 1
    with index.write() as txn:
        # another claim never replaces a record; a put's own copy replaces a claim (same refs)
        assert not index.put_chunk(txn, cid(1), ChunkRecord(PACK, 999, 1, 10, 0),
                                   overwrite=False, verified=False)
        assert not index.put_chunk(txn, cid(2), ChunkRecord(PACK, 999, 1, 10, 0),
                                   overwrite=False, verified=True)  # verified: left alone
        assert index.put_chunk(txn, cid(1), ChunkRecord(PACK, 100, 60, 10, 0), overwrite=False,
                               verified=True)
    r = index.get_chunk(cid(1))
    assert r == ChunkRecord(PACK, 100, 60, 10, 1)
    assert index.get_chunk(cid(2)) == ChunkRecord(PACK, 8, 50, 10, 0)
    assert unverified(index) == {("m", fid(1))}


def test_a_put_replaces_a_manifest_with_another_chunk_list(index: Index) -> None:
    with index.write() as txn:
        for i in (1, 2, 3):
            index.put_chunk(txn, cid(i), ChunkRecord(PACK, 100 * i, 50, 10, 0))
        index.add_manifest(txn, Manifest(fid(1), 20, 1, ((cid(1), 10), (cid(2), 10))), verified=False)
        index.set_names(txn, [("claimed", fid(1))])
        same_no = index._file_no(txn, fid(1))
    real = Manifest(fid(1), 20, 2, ((cid(2), 10), (cid(3), 10)))
    with index.write() as txn:
        assert index.put_verified_manifest(txn, real)
        assert index._file_no(txn, fid(1)) == same_no
    assert index.get_manifest(fid(1)) == real
    assert [refcount(index, cid(i)) for i in (1, 2, 3)] == [0, 1, 1]
    assert index.resolve_name("claimed") == fid(1)  # names stay
    assert unverified(index) == set()
    with index.write() as txn:  # the same list again: nothing changes
        assert not index.put_verified_manifest(txn, real)
    assert [refcount(index, cid(i)) for i in (1, 2, 3)] == [0, 1, 1]
    with index.write() as txn, pytest.raises(StorageError, match="not stored"):
        index.put_verified_manifest(txn, Manifest(fid(1), 10, 3, ((cid(9), 10),)))


def test_an_unverified_manifest_with_the_same_list_is_verified_by_a_put(index: Index) -> None:
    m = Manifest(fid(2), 10, 1, ((cid(1), 10),))
    with index.write() as txn:
        index.put_chunk(txn, cid(1), ChunkRecord(PACK, 8, 50, 10, 0))
        index.add_manifest(txn, m, verified=False)
    with index.write() as txn:
        assert not index.put_verified_manifest(txn, m)
    assert unverified(index) == set() and refcount(index, cid(1)) == 1


def test_marks_clear_only_for_the_record_that_was_read(index: Index) -> None:
    read_at = ChunkRecord(OTHER, 8, 50, 10, 0)
    m = Manifest(fid(1), 10, 1, ((cid(1), 10),))
    with index.write() as txn:
        index.put_chunk(txn, cid(1), read_at, verified=False)
        index.add_manifest(txn, m, verified=False)
        # moved meanwhile (another claim at another place): the read proved nothing about it
        index.put_chunk(txn, cid(1), ChunkRecord(OTHER, 500, 50, 10, 1))
        assert index.mark_verified(txn, [(cid(1), read_at)],
                                   [Manifest(fid(1), 10, 1, ((cid(2), 10),))]) == 0
    assert unverified(index) == {("c", cid(1)), ("m", fid(1))}
    with index.write() as txn:
        assert index.mark_verified(txn, [(cid(1), ChunkRecord(OTHER, 500, 50, 10, 1))], [m]) == 2
    assert unverified(index) == set()


def test_removing_records_removes_their_marks(index: Index) -> None:
    with index.write() as txn:
        index.put_chunk(txn, cid(1), ChunkRecord(OTHER, 8, 50, 10, 0), verified=False)
        index.add_manifest(txn, Manifest(fid(1), 10, 1, ((cid(1), 10),)), verified=False)
    with index.write() as txn:
        index.remove_manifest(txn, fid(1))
        index.delete_chunk(txn, cid(1))
    assert unverified(index) == set()


# ---- import, reads ---------------------------------------------------------------------------

@pytest.fixture
def pair(make_store: Callable[..., Store]) -> tuple[Store, Store]:
    a = make_store("a")
    b = make_store("b", key_file=a.home.key_path)
    return a, b


def _copy_packs(src: Store, dst: Store) -> None:
    for p in src.home.packs_dir.rglob("*"):
        if p.is_file():
            (dst.home.packs_dir / p.parent.name).mkdir(exist_ok=True)
            (dst.home.packs_dir / p.parent.name / p.name).write_bytes(p.read_bytes())


def test_imported_records_are_unverified_until_read(pair: tuple[Store, Store]) -> None:
    a, b = pair
    data = {"f": data_of(1, 60_000), "g": data_of(2, 30_000)}
    put_files(a, data)
    _copy_packs(a, b)
    import_(b, export(a, None))
    with b.index.read() as txn:
        marks = set(b.index.iter_unverified(txn))
        n_chunks = txn.stat(b.index.db["chunks"])["entries"]
    assert {k for k, _ in marks} == {"c", "m"}
    assert len(marks) == n_chunks + 2
    # a partial read authenticates the chunks it decodes, not the file
    m = b.resolve("f")
    assert b"".join(restore.read_range(b, m, 0, 10)) == data["f"][:10]
    with b.index.read() as txn:
        first = m.chunks[0][0]
        assert b.index.chunk_verified(txn, first) and not b.index.manifest_verified(txn, m.file_id)
    # a whole read authenticates the file too
    assert b"".join(restore.read_verified(b, m)) == data["f"]
    with b.index.read() as txn:
        assert b.index.manifest_verified(txn, m.file_id)
        assert all(b.index.chunk_verified(txn, c) for c, _ in m.chunks)
        assert not b.index.manifest_verified(txn, b.resolve("g").file_id)


def test_a_failed_read_verifies_nothing(pair: tuple[Store, Store]) -> None:
    a, b = pair
    put_files(a, {"f": data_of(3, 20_000)})
    import_(b, export(a, None))  # no packs: nothing can be read
    before = set()
    with b.index.read() as txn:
        before = set(b.index.iter_unverified(txn))
    with pytest.raises(StorageError):
        b"".join(restore.read_verified(b, b.resolve("f")))
    with b.index.read() as txn:
        assert set(b.index.iter_unverified(txn)) == before


def forged_dump(a: Store, real: bytes, decoy_name: str) -> str:
    """A dump sealed under the node key that claims `real`'s file ID with the chunk list of
    the file stored under `decoy_name` (what a node holding wrong records could export)."""
    doc = json.loads(export(a, None))
    del doc["mac"]
    f = next(f for f in doc["files"] if decoy_name in f["names"])
    f["id"], f["names"] = blake3.blake3(real).hexdigest(), ["claimed"]
    doc["files"] = [f]
    return seal_dump(json.dumps(doc, indent=1), a.keys.dump_mac)


# ---- ingest ----------------------------------------------------------------------------------

def test_a_put_replaces_a_claimed_manifest(pair: tuple[Store, Store]) -> None:
    a, b = pair
    real, decoy = data_of(4, 50_000), data_of(5, 50_000)
    put_files(a, {"decoy": decoy})
    _copy_packs(a, b)
    import_(b, forged_dump(a, real, "decoy"))
    claimed = b.resolve("claimed")
    assert claimed.file_id == blake3.blake3(real).digest() and claimed.size == len(decoy)
    res = put_files(b, {"real": real})["real"]
    assert res.new_chunks > 0
    m = b.resolve("real")
    assert m == b.resolve("claimed") and m.size == len(real)  # one file, names kept
    assert b"".join(restore.read_verified(b, m)) == real
    with b.index.read() as txn:
        assert b.index.manifest_verified(txn, m.file_id)
        refs = {c: b.index.get_chunk(c, txn).refcount for c, _ in claimed.chunks}
    assert set(refs.values()) == {0}  # the decoy's chunks are no longer held by the claim


def test_claimed_chunk_records_are_stored_again_and_replaced(pair: tuple[Store, Store]) -> None:
    a, b = pair
    data = data_of(6, 80_000)
    put_files(a, {"f": data})
    import_(b, export(a, None))  # b has the records, not the packs
    res = put_files(b, {"f again": data})["f again"]
    assert res.new_chunks == len({c for c, _ in b.resolve("f").chunks})  # none deduplicated
    with b.index.read() as txn:
        # the put computed this very chunk list from the bytes: the manifest is verified too
        assert list(b.index.iter_unverified(txn)) == []
        for c, _ in b.resolve("f").chunks:
            r = b.index.get_chunk(c, txn)
            assert r is not None and b.local.has(r.pack_id)  # our own copy, not the claim
    assert b"".join(restore.read_verified(b, b.resolve("f"))) == data  # the imported name too
    # verified records dedup as before
    assert put_files(b, {"third": data})["third"].new_chunks == 0


def test_records_verified_by_a_read_are_deduplicated_against(pair: tuple[Store, Store]) -> None:
    a, b = pair
    data = data_of(7, 60_000)
    put_files(a, {"f": data})
    _copy_packs(a, b)
    import_(b, export(a, None))
    assert b"".join(restore.read_verified(b, b.resolve("f"))) == data
    with b.index.read() as txn:
        assert list(b.index.iter_unverified(txn)) == []
    assert put_files(b, {"g": data})["g"].new_chunks == 0
