"""Whole-object reads from backends are bounded by the size the index expects."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mosaic import Node
from mosaic.node.cloud import hub as hubmod
from mosaic.node.cloud.cache import trim, warm
from mosaic.node.cloud.hub import pack_object_name
from mosaic.node.cloud.repair import good_copy, repair, scrub
from mosaic.node.errors import StorageError
from mosaic.node.store.check import check

BIG = 4 << 20  # the impostor object: far larger than any 64 KiB pack


def _packs(node: Node) -> dict:
    with node.index.read() as txn:
        return dict(node.index.iter_packs(txn))


def _repairs(node: Node) -> set[tuple[bytes, str]]:
    with node.index.read() as txn:
        return {(p, b) for p, b, _ in node.index.iter_repairs(txn)}


def _backend_file(node: Node, backend: str, pid: bytes) -> Path:
    opts = next(b.options for b in node.config.backends if b.name == backend)
    return Path(opts["path"]) / pack_object_name(pid)


def _setup(node_factory: Callable[..., Node], monkeypatch: pytest.MonkeyPatch,
           evict: bool = True) -> tuple[Node, bytes, bytes, list[tuple[int, int | None, int]]]:
    """Two backends; one pack's d0 copy replaced by a BIG file; d0's reads recorded as
    (offset, length asked, bytes returned)."""
    node = node_factory(backends=2)
    data = os.urandom(300_000)
    node.put(data, name="a")
    if evict:
        trim(node.cloud, 0)
    victim = max(_packs(node).items(), key=lambda kv: (kv[1].size, kv[0]))[0]  # a full pack
    _backend_file(node, "d0", victim).write_bytes(os.urandom(BIG))
    backend = node.cloud.hub.backends["d0"]
    real = backend.get
    asked: list[tuple[int, int | None, int]] = []

    async def get(name: str, offset: int = 0, length: int | None = None) -> bytes:
        out = await real(name, offset, length)
        if name == pack_object_name(victim):
            asked.append((offset, length, len(out)))
        return out

    monkeypatch.setattr(backend, "get", get)
    return node, data, victim, asked


def _bounded(asked: list[tuple[int, int | None, int]], expected: int) -> None:
    assert asked, "the impostor copy was not read at all"
    assert all(length is not None for _, length, _ in asked)
    assert sum(n for _, _, n in asked) <= expected + 1
    assert max(off + length for off, length, _ in asked) <= expected + 1


def test_warm_refuses_an_oversized_copy(node_factory, monkeypatch) -> None:
    node, data, victim, asked = _setup(node_factory, monkeypatch)
    size = _packs(node)[victim].size
    res = warm(node.cloud, None)
    assert res["cached_after"] == 1.0                    # fetched from d1 instead
    _bounded(asked, size)
    assert (victim, "d0") in _repairs(node)              # reported as a corrupt copy
    assert node.get("a") == data and check(node.store).ok


def test_warm_fails_cleanly_when_only_oversized_copies_remain(node_factory, monkeypatch) -> None:
    node, _data, victim, asked = _setup(node_factory, monkeypatch)
    _backend_file(node, "d1", victim).write_bytes(os.urandom(BIG))
    with pytest.raises(StorageError, match="larger than"):
        warm(node.cloud, None)
    _bounded(asked, _packs(node)[victim].size)
    assert {(victim, "d0"), (victim, "d1")} <= _repairs(node)


def test_scrub_reports_an_oversized_copy_as_corrupt(node_factory, monkeypatch) -> None:
    node, data, victim, asked = _setup(node_factory, monkeypatch, evict=False)
    monkeypatch.setattr(hubmod, "READ_PIECE", 4 << 10)  # hashed in pieces as they arrive
    rep = scrub(node.cloud)
    assert rep.corrupt == [(victim.hex(), "d0")] and not rep.missing
    _bounded(asked, _packs(node)[victim].size)
    assert len(asked) > 1                                # read in pieces, not whole
    assert (victim, "d0") in _repairs(node)
    rep = repair(node.cloud)
    assert not rep.failed
    assert _backend_file(node, "d0", victim).stat().st_size == _packs(node)[victim].size
    assert not scrub(node.cloud).corrupt
    assert node.get("a") == data


def test_good_copy_and_repair_skip_an_oversized_copy(node_factory, monkeypatch) -> None:
    node, data, victim, asked = _setup(node_factory, monkeypatch)
    size = _packs(node)[victim].size
    got = good_copy(node.cloud, victim, avoid="")          # d0 first: refused, then d1
    assert got is not None and len(got) == size
    _bounded(asked, size)
    assert (victim, "d0") in _repairs(node)
    asked.clear()
    rep = repair(node.cloud)
    assert not rep.failed and rep.repaired >= 1
    assert sum(n for _, _, n in asked) <= size + 1
    assert _backend_file(node, "d0", victim).read_bytes() == got
    assert node.get("a") == data and check(node.store).ok


def test_pieces_add_up_and_a_short_copy_is_corrupt(node_factory, monkeypatch) -> None:
    node = node_factory(backends=1)
    data = os.urandom(200_000)
    node.put(data, name="a")
    hub = node.cloud.hub
    pid, rec = sorted(_packs(node).items())[0]
    monkeypatch.setattr(hubmod, "READ_PIECE", 1000)
    assert hub.get_pack("d0", pid, rec.size) == node.store.local.read_all(pid)
    assert hub.get_pack("d0", pid, 0) == node.store.local.read_all(pid)   # size unknown: stat
    assert hub.check_pack("d0", pid, rec.size) == rec.size
    with pytest.raises(hubmod.CorruptCopy):
        hub.get_object("d0", pack_object_name(pid), rec.size + 1)         # one byte short
    with pytest.raises(hubmod.CorruptCopy):
        hub.get_object("d0", pack_object_name(pid), rec.size - 1)         # one byte too many
    f = _backend_file(node, "d0", pid)
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 1
    f.write_bytes(bytes(raw))
    with pytest.raises(hubmod.CorruptCopy, match="ID"):
        hub.check_pack("d0", pid, rec.size)
