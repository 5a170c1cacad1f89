"""A put heals: storing a file again rewrites chunks whose stored object was damaged."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

from mosaic import Node
from mosaic.node.cloud.repair import repair
from mosaic.node.store import codec
from mosaic.node.store.check import check
from mosaic.node.store.index import LOCAL
from mosaic.node.store.restore import read_verified
from mosaic.node.store.store import Store
from mosaic.node.store.verify import verify

from .conftest import data_of, put_files


def _flip(store: Store, cid: bytes) -> bytes:
    """Flip one byte inside the stored object of `cid` in its local pack; returns the pack."""
    r = store.index.get_chunk(cid)
    path = store.home.pack_path(r.pack_id)
    raw = bytearray(path.read_bytes())
    raw[r.offset + codec.HEADER_SIZE + r.stored_len // 3] ^= 0x20
    store.local.forget(r.pack_id)
    path.write_bytes(bytes(raw))
    return r.pack_id


def _read(store: Store, fid: bytes) -> bytes:
    return b"".join(read_verified(store, store.index.get_manifest(fid)))


def _repairs(store: Store) -> set[tuple[bytes, str]]:
    with store.index.read() as txn:
        return {(p, b) for p, b, _ in store.index.iter_repairs(txn)}


def test_a_second_put_rewrites_a_damaged_chunk(make_store: Callable[..., Store]) -> None:
    store = make_store()
    data = data_of(1, 400_000)
    fid = put_files(store, {"a": data})["a"].file_id
    m = store.index.get_manifest(fid)
    victim = m.chunks[len(m.chunks) // 2][0]
    before = store.index.get_chunk(victim)
    bad_pack = _flip(store, victim)
    assert verify(store, [fid]).errors                       # the damage is real

    res = put_files(store, {"a": data})["a"]
    assert res.new_chunks == 1                               # only the damaged chunk again
    after = store.index.get_chunk(victim)
    assert after.pack_id != bad_pack and after.refcount == before.refcount
    assert _read(store, fid) == data
    assert check(store).ok
    assert not verify(store, [fid]).errors
    assert (bad_pack, LOCAL) in _repairs(store)              # the bad copy is queued for repair
    # every other chunk of the file stayed where it was
    with store.index.read() as txn:
        moved = {c for c, _ in m.chunks if store.index.get_chunk(c, txn).pack_id != before.pack_id}
    assert moved == {victim}


def test_a_clean_second_put_writes_nothing(make_store: Callable[..., Store]) -> None:
    store = make_store()
    data = data_of(2, 300_000)
    put_files(store, {"a": data})
    packs = store.index.count("packs")
    res = put_files(store, {"b": data})["b"]
    assert res.new_chunks == 0 and store.index.count("packs") == packs
    assert not _repairs(store) and check(store).ok


def test_a_damaged_chunk_repeated_in_a_put_is_written_once(make_store: Callable[..., Store]) -> None:
    store = make_store()
    block = os.urandom(50_000)
    data = block * 6
    fid = put_files(store, {"a": data})["a"].file_id
    m = store.index.get_manifest(fid)
    distinct = {c for c, _ in m.chunks}
    for cid in distinct:  # damage every stored object (once)
        _flip(store, cid)
    res = put_files(store, {"a": data, "b": data})
    assert res["a"].new_chunks + res["b"].new_chunks == len(distinct)
    assert _read(store, fid) == data and check(store).ok and not verify(store, [fid]).errors


def _node(tmp_path: Path, backends: int) -> Node:
    from tests.cloud.conftest import make_node
    return make_node(tmp_path, "n", backends)


def test_put_heals_then_repair_and_gc_leave_everything_clean(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    with _node(tmp_path / "local", 0) as node:             # no backend: gc drops the bad pack
        fid = node.put(data, name="a").file_id
        m = node.store.index.get_manifest(fid)
        bad = _flip(node.store, m.chunks[1][0])
        node.put(io.BytesIO(data), name="a")
        assert node.get("a") == data and check(node.store).ok
        assert not node.verify(["a"]).errors
        assert [e for e in node.verify().errors if bad.hex()[:16] not in e] == []
        node.gc()
        assert node.get("a") == data and check(node.store).ok and not node.verify().errors
    with _node(tmp_path / "cloud", 1) as node:             # a backend: repair fixes the copy
        fid = node.put(data, name="a").file_id
        m = node.store.index.get_manifest(fid)
        bad = _flip(node.store, m.chunks[1][0])
        node.put(io.BytesIO(data), name="a")
        assert node.get("a") == data and check(node.store).ok
        assert (bad, LOCAL) in _repairs(node.store)
        rep = repair(node.cloud)
        assert not rep.failed
        assert not node.verify().errors and check(node.store).ok
        assert node.get("a") == data


def test_a_pack_that_matches_its_id_is_checked_whole(make_store: Callable[..., Store],
                                                     monkeypatch) -> None:
    """A second put of a whole file hashes each pack once instead of opening every object."""
    store = make_store()
    data = data_of(3, 600_000)
    fid = put_files(store, {"a": data})["a"].file_id
    calls = []
    real = codec.authenticate
    monkeypatch.setattr(codec, "authenticate", lambda *a, **k: calls.append(1) or real(*a, **k))
    res = put_files(store, {"a": data})["a"]
    assert res.new_chunks == 0
    assert len(calls) < len(store.index.get_manifest(fid).chunks) // 2
    assert _read(store, fid) == data and not _repairs(store)


def test_damage_outside_the_objects_rewrites_nothing(make_store: Callable[..., Store]) -> None:
    """The pack fails its ID check, so each object is authenticated: none is bad."""
    store = make_store()
    data = data_of(4, 300_000)
    fid = put_files(store, {"a": data})["a"].file_id
    (pid,) = {store.index.get_chunk(c).pack_id for c, _ in store.index.get_manifest(fid).chunks}
    path = store.home.pack_path(pid)
    raw = bytearray(path.read_bytes())
    raw[3] ^= 1  # the magic, not an object
    store.local.forget(pid)
    path.write_bytes(bytes(raw))
    res = put_files(store, {"a": data})["a"]
    assert res.new_chunks == 0 and _read(store, fid) == data
