"""A node deletes, rewrites or sweeps on a backend only the packs it sealed.

Node B joins with A's key file, shares A's dir backend and imports A's export: B's rm + gc (and
warm + rm + gc) must leave A's packs on the backend, so A reads everything byte-identical even
after trimming its cache to nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import msgpack

from mosaic import Node
from mosaic.node.cloud.cache import trim
from mosaic.node.cloud.gc import gc
from mosaic.node.cloud.hub import pack_object_name
from mosaic.node.store.check import check
from mosaic.node.store.records import PackRecord


def _packs(node: Node) -> dict[bytes, PackRecord]:
    with node.index.read() as txn:
        return dict(node.index.iter_packs(txn))


def _backend_dir(node: Node, name: str = "d0") -> Path:
    return Path(next(b.options for b in node.config.backends if b.name == name)["path"])


def _setup(node_factory: Callable[..., Node], join_factory: Callable[[str, Node], Node]
           ) -> tuple[Node, Node, dict[str, bytes]]:
    a = node_factory("a")
    files = {"x": os.urandom(200_000), "y": os.urandom(150_000), "z": os.urandom(30_000)}
    for name, data in files.items():
        a.put(data, name=name)
    b = join_factory("b", a)
    assert b.config.node_tag != a.config.node_tag
    b.import_(a.export())
    return a, b, files


def _a_survives(a: Node, files: dict[str, bytes]) -> None:
    d0 = _backend_dir(a)
    for pid, rec in _packs(a).items():  # every copy A counts on is still on the backend
        assert "d0" in rec.locations and (d0 / pack_object_name(pid)).is_file()
    trim(a.cloud, 0)  # `mosaic cache trim --to 0`
    assert not any(r.local for r in _packs(a).values())
    for name, data in files.items():
        assert a.get(name) == data
    assert check(a.store).ok


def test_rm_and_gc_on_b_keep_a_packs(node_factory: Callable[..., Node],
                                     join_factory: Callable[[str, Node], Node]) -> None:
    a, b, files = _setup(node_factory, join_factory)
    for name in files:
        b.rm(name)
    rep = gc(b.cloud)
    assert rep.packs_deleted == len(_packs(a))
    assert _packs(b) == {} and b.index.count("chunks") == 0  # dropped from B's own index
    assert check(b.store).ok
    _a_survives(a, files)


def test_warm_and_gc_on_b_keep_a_packs(node_factory: Callable[..., Node],
                                       join_factory: Callable[[str, Node], Node]) -> None:
    a, b, files = _setup(node_factory, join_factory)
    b.warm()
    assert all(r.local for r in _packs(b).values())
    b.rm("x")  # a pack shared by x and y now holds garbage: B must not rewrite it either
    gc(b.cloud)
    assert b.get("y") == files["y"] and b.get("z") == files["z"]
    assert check(b.store).ok
    for name in ("y", "z"):
        b.rm(name)
    gc(b.cloud)
    assert _packs(b) == {} and check(b.store).ok
    assert not any(p.is_file() for p in b.home.packs_dir.rglob("*"))  # its cache is emptied
    _a_survives(a, files)


def test_owners_are_recorded(node_factory: Callable[..., Node],
                             join_factory: Callable[[str, Node], Node]) -> None:
    from mosaic.node.store.records import FOREIGN
    a, b, files = _setup(node_factory, join_factory)
    assert all(r.owner == a.config.node_tag for r in _packs(a).values())
    assert all(r.owner == FOREIGN for r in _packs(b).values())  # known by import only
    b.warm()
    b.put(os.urandom(50_000), name="mine")
    mine = b.resolve("mine").chunks[0][0]
    pid = b.index.get_chunk(mine).pack_id
    assert {p: r.owner for p, r in _packs(b).items()}[pid] == b.config.node_tag
    assert all(r.owner == FOREIGN for p, r in _packs(b).items() if p != pid)  # warm keeps it
    assert check(b.store).ok and check(a.store).ok


def test_owner_still_collects_its_own_packs(node_factory: Callable[..., Node]) -> None:
    a = node_factory("a")
    keep = os.urandom(100_000)
    a.put(keep, name="keep")
    a.put(os.urandom(200_000), name="gone")
    before = set(_packs(a))
    a.rm("gone")
    rep = gc(a.cloud)
    dropped = before - set(_packs(a))
    assert dropped
    d0 = _backend_dir(a)
    # alone on its backend, the node marks what it dropped, publishes its index state and
    # deletes the marked packs in the same run (docs/gc.md)
    assert rep.marked == len(dropped) and rep.remote_deleted == len(dropped)
    assert not any((d0 / pack_object_name(p)).exists() for p in dropped)
    assert not list((d0 / "gc" / "marks").iterdir())
    assert a.get("keep") == keep and check(a.store).ok


def test_records_without_owner(node_factory: Callable[..., Node]) -> None:
    """Rows written before owners were recorded: local or queued packs are ours, hints are not."""
    a = node_factory("a")
    a.put(os.urandom(100_000), name="f")
    idx = a.index
    pid = next(iter(_packs(a)))
    with idx.write() as txn:  # rewrite as an old six-element row
        row = msgpack.unpackb(txn.get(pid, db=idx.db["packs"]), raw=False)
        txn.put(pid, msgpack.packb(row[:6], use_bin_type=True), db=idx.db["packs"])
    tag = a.config.node_tag
    with idx.read() as txn:
        rec = idx.get_pack(pid, txn)
        assert rec.owner is None
        assert idx.owns(txn, pid, rec, tag)  # local
        assert not idx.owns(txn, pid, replace(rec, local=False), tag)  # a hint
    with idx.write() as txn:
        idx.queue_upload(txn, pid, "d0")
    with idx.read() as txn:
        assert idx.owns(txn, pid, replace(rec, local=False), tag)  # queued for upload here
        assert not idx.owns(txn, pid, replace(rec, owner=""), tag)
        assert not idx.owns(txn, pid, replace(rec, owner="someone-else"), tag)
