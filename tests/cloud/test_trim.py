"""cache trim never evicts the last good copy, nor a pinned file's packs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mosaic import Node
from mosaic.node.cloud.cache import trim
from mosaic.node.cloud.hub import pack_object_name
from mosaic.node.cloud.repair import repair
from mosaic.node.store.check import check


def _packs(node: Node) -> dict[bytes, object]:
    with node.index.read() as txn:
        return dict(node.index.iter_packs(txn))


def _backend_file(node: Node, backend: str, pid: bytes) -> Path:
    opts = next(b.options for b in node.config.backends if b.name == backend)
    return Path(opts["path"]) / pack_object_name(pid)


def test_trim_evicts_confirmed_copies(node_factory: Callable[..., Node]) -> None:
    node = node_factory()
    data = os.urandom(300_000)
    node.put(data, name="a")
    evicted, freed = trim(node.cloud, 0)
    assert evicted == len(_packs(node)) and freed > 0
    assert all(not r.local for r in _packs(node).values())
    assert node.get("a") == data  # read back from the backend
    assert check(node.store).ok


def test_trim_keeps_a_pack_whose_backend_copy_is_gone(node_factory: Callable[..., Node]) -> None:
    node = node_factory()
    data = os.urandom(300_000)
    node.put(data, name="a")
    victim = sorted(_packs(node))[0]
    _backend_file(node, "d0", victim).unlink()
    trim(node.cloud, 0)
    rec = _packs(node)[victim]
    assert rec.local and node.store.local.has(victim)      # the last good copy stays
    assert "d0" not in rec.locations                  # the missing copy no longer counts
    with node.index.read() as txn:
        assert (victim, "d0") in {(p, b) for p, b, _ in node.index.iter_repairs(txn)}
    trim(node.cloud, 0)                                # a second trim keeps it too
    assert _packs(node)[victim].local
    assert node.get("a") == data
    rep = repair(node.cloud)
    assert rep.repaired == 1 and _backend_file(node, "d0", victim).is_file()
    assert "d0" in _packs(node)[victim].locations      # counted again once repaired
    assert check(node.store).ok


def test_trim_keeps_a_copy_of_the_wrong_size(node_factory: Callable[..., Node]) -> None:
    node = node_factory()
    node.put(os.urandom(200_000), name="a")
    victim = sorted(_packs(node))[0]
    f = _backend_file(node, "d0", victim)
    f.write_bytes(f.read_bytes()[:-10])
    trim(node.cloud, 0)
    assert _packs(node)[victim].local and node.store.local.has(victim)


def test_trim_keeps_packs_while_a_repair_is_queued(node_factory: Callable[..., Node]) -> None:
    node = node_factory()
    node.put(os.urandom(200_000), name="a")
    victim = sorted(_packs(node))[0]
    with node.index.write() as txn:
        node.index.queue_repair(txn, victim, "d0", "test")
    trim(node.cloud, 0)
    assert _packs(node)[victim].local


def test_trim_keeps_pinned_files(node_factory: Callable[..., Node]) -> None:
    node = node_factory()
    pinned = os.urandom(200_000)
    other = os.urandom(200_000)
    rp = node.put(pinned, name="pinned")
    node.put(other, name="other")
    with node.index.write() as txn:
        txn.put(rp.file_id, b"", db=node.index.db["pins"])
    trim(node.cloud, 0)
    with node.index.read() as txn:
        m = node.index.get_manifest(rp.file_id, txn)
        pinned_packs = {node.index.get_chunk(c, txn).pack_id for c, _ in m.chunks}
    recs = _packs(node)
    assert all(recs[p].local and node.store.local.has(p) for p in pinned_packs)
    assert any(not r.local for p, r in recs.items() if p not in pinned_packs)


def test_trim_keeps_copies_it_cannot_confirm(node_factory: Callable[..., Node]) -> None:
    node = node_factory()
    node.put(os.urandom(200_000), name="a")
    root = Path(node.config.backends[0].options["path"])
    os.rename(root, str(root) + ".away")  # the backend folder is gone (an unmounted disk)
    try:
        trim(node.cloud, 0)
        assert all(r.local for r in _packs(node).values())
    finally:
        os.rename(str(root) + ".away", root)
