"""gc across the nodes sharing a backend (cloud/collect.py, docs/gc.md).

A pack its owner dropped is marked, and deleted only once every node using the backend
has published an index state newer than the mark that does not reference it; a node
still using it moves off it first; a registered node that never published holds
deletions back until it is forgotten; objects no node knows wait for the grace period;
marks and registry entries that do not authenticate are ignored.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from mosaic import Node
from mosaic.node.cloud import registry
from mosaic.node.cloud.cache import trim
from mosaic.node.cloud.collect import keep_published
from mosaic.node.cloud.gc import GRACE_S, gc
from mosaic.node.cloud.hub import pack_object_name
from mosaic.node.store.check import check


def _dir(node: Node, name: str = "d0") -> Path:
    return Path(next(b.options for b in node.config.backends if b.name == name)["path"])


def _packs(node: Node) -> set[bytes]:
    with node.index.read() as txn:
        return {pid for pid, _ in node.index.iter_packs(txn)}


def _on_backend(node: Node) -> set[bytes]:
    return {bytes.fromhex(p.name) for p in (_dir(node) / "packs").rglob("*") if p.is_file()}


def _readable(node: Node, files: dict[str, bytes]) -> None:
    trim(node.cloud, 0)  # from the backend, not the cache
    for name, data in files.items():
        assert node.get(name) == data, name
    assert check(node.store).ok


def _shared_pair(node_factory: Callable[..., Node], join_factory: Callable[[str, Node], Node]
                 ) -> tuple[Node, Node, dict[str, bytes]]:
    a = node_factory("a")
    files = {"x": os.urandom(120_000), "y": os.urandom(40_000)}
    for name, data in files.items():
        a.put(data, name=name)
    b = join_factory("b", a)
    b.import_(a.export())
    b.save_index_copy()
    return a, b, files


def test_the_owner_waits_for_a_node_that_uses_its_pack(
        node_factory: Callable[..., Node], join_factory: Callable[[str, Node], Node]) -> None:
    a, b, files = _shared_pair(node_factory, join_factory)
    a_packs = _packs(a)
    for name in files:
        a.rm(name)
    a.save_index_copy()
    rep = gc(a.cloud)
    assert rep.marked == len(a_packs) and rep.remote_deleted == 0 and rep.marks_waiting
    assert a_packs <= _on_backend(a)  # B still uses them
    _readable(b, files)
    # B moves off the packs A dropped (copies its live chunks into a pack of its own)
    rep_b = gc(b.cloud)
    assert rep_b.packs_moved == len(a_packs)
    assert not (_packs(b) & a_packs)
    # now nobody uses A's packs. A's next gc confirms the marks (a second epoch, so that
    # anything B sent before it moved off has been applied and published too) ...
    rep = gc(a.cloud)
    assert rep.marks_confirmed == len(a_packs) and rep.remote_deleted == 0, rep
    assert gc(a.cloud).remote_deleted == 0  # B has published nothing since
    # ... and deletes them once B has published a state of that epoch without them
    gc(b.cloud)
    rep = gc(a.cloud)
    assert rep.remote_deleted == len(a_packs), rep
    assert not (a_packs & _on_backend(a))
    assert not list((_dir(a) / "gc" / "marks").iterdir())
    _readable(b, files)


def test_a_dropped_pack_no_other_node_uses_goes_at_once(
        node_factory: Callable[..., Node], join_factory: Callable[[str, Node], Node]) -> None:
    a, b, files = _shared_pair(node_factory, join_factory)
    b.rm("x")
    b.save_index_copy()
    gc(b.cloud)  # B forgets the pack that held only x; A still uses it
    assert _packs(a) <= _on_backend(a)
    _readable(a, files)
    before = _packs(a)
    a.rm("y")
    a.save_index_copy()
    gc(a.cloud)  # y's pack: B still names y, so it stays; x is still A's
    assert before <= _on_backend(a)
    _readable(b, {"y": files["y"]})


def test_a_registered_node_that_never_published_holds_deletions_back(
        node_factory: Callable[..., Node], join_factory: Callable[[str, Node], Node]) -> None:
    a = node_factory("a")
    a.put(os.urandom(80_000), name="x")
    c = join_factory("c", a)
    registry.register(c.cloud, "d0")  # `backend add` registers it; it has saved nothing yet
    ctag = c.config.node_tag
    dropped = _packs(a)
    a.rm("x")
    a.save_index_copy()
    rep = gc(a.cloud)
    assert rep.remote_deleted == 0 and ctag in rep.waiting_for
    assert dropped <= _on_backend(a)
    assert registry.forget_node(a.cloud, "d0", ctag)  # `backend nodes d0 --forget TAG`
    rep = gc(a.cloud)
    assert rep.remote_deleted == len(dropped) and not (dropped & _on_backend(a))


def test_a_node_that_publishes_late_is_waited_for(
        node_factory: Callable[..., Node], join_factory: Callable[[str, Node], Node]) -> None:
    """Marks are acted on only after a state with the mark's epoch from every other node."""
    a, b, files = _shared_pair(node_factory, join_factory)
    b.rm("x")
    b.rm("y")
    b.save_index_copy()
    gc(b.cloud)  # B drops its records of A's packs (foreign: left on the backend)
    dropped = _packs(a)
    a.rm("x")
    a.rm("y")
    a.save_index_copy()
    rep = gc(a.cloud)
    assert rep.marked == len(dropped) and rep.remote_deleted == 0
    assert b.config.node_tag in rep.waiting_for
    b.save_index_copy()  # nothing changed on B: no new state, still waiting
    assert gc(a.cloud).remote_deleted == 0
    gc(b.cloud)  # B's gc publishes its state (marks are waiting)
    rep = gc(a.cloud)
    assert rep.marks_confirmed == len(dropped) and rep.remote_deleted == 0
    gc(b.cloud)
    assert gc(a.cloud).remote_deleted == len(dropped)


def test_a_daemon_keeps_its_state_published(
        node_factory: Callable[..., Node], join_factory: Callable[[str, Node], Node]) -> None:
    """`keep_published` (each round of a daemon's upload loop) publishes when the epoch moved."""
    a, b, _files = _shared_pair(node_factory, join_factory)
    b.rm("x")
    b.rm("y")
    b.save_index_copy()
    gc(b.cloud)
    dropped = _packs(a)
    a.rm("x")
    a.rm("y")
    a.save_index_copy()
    gc(a.cloud)  # marks: the epoch moves

    def copy_objects() -> int:
        return len(list((_dir(b) / "index" / b.config.node_tag).iterdir()))
    n = copy_objects()
    keep_published(b.cloud)
    assert copy_objects() == n + 1  # a state of the new epoch
    keep_published(b.cloud)
    assert copy_objects() == n + 1  # nothing new: nothing stored
    assert gc(a.cloud).marks_confirmed == len(dropped)
    keep_published(b.cloud)
    assert gc(a.cloud).remote_deleted == len(dropped)


def test_orphans_wait_for_the_grace_period(node_factory: Callable[..., Node]) -> None:
    a = node_factory("a")
    files = {"x": os.urandom(60_000)}
    a.put(files["x"], name="x")
    stray = os.urandom(32)
    path = _dir(a) / pack_object_name(stray)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(5000))  # e.g. a node that crashed after an upload, before its commit
    rep = gc(a.cloud)
    assert rep.marked == 1 and rep.remote_deleted == 0 and path.exists()
    assert gc(a.cloud).remote_deleted == 0  # younger than the grace period
    rep = gc(a.cloud, now=time.time() + GRACE_S + 1)
    assert rep.remote_deleted == 1 and not path.exists()
    _readable(a, files)


def test_forged_marks_and_registrations_are_ignored(node_factory: Callable[..., Node]) -> None:
    a = node_factory("a")
    files = {"x": os.urandom(60_000)}
    a.put(files["x"], name="x")
    live = next(iter(_packs(a)))
    d0 = _dir(a)
    forged = d0 / registry.mark_object(live)
    forged.parent.mkdir(parents=True, exist_ok=True)
    forged.write_bytes(b"\x01" + os.urandom(200))  # not sealed under the key
    ghost = d0 / registry.node_object("0123456789abcdef")
    ghost.write_bytes(b"\x01" + os.urandom(200))
    for _ in range(2):
        rep = gc(a.cloud, grace_s=0)
        assert rep.remote_deleted == 0 and "0123456789abcdef" not in rep.waiting_for
    assert live in _on_backend(a)
    _readable(a, files)


def test_dry_run_writes_nothing(node_factory: Callable[..., Node]) -> None:
    a = node_factory("a")
    a.put(os.urandom(60_000), name="x")
    a.put(os.urandom(60_000), name="y")
    a.rm("x")
    a.save_index_copy()
    before = sorted(p for p in _dir(a).rglob("*") if p.is_file())
    rep = gc(a.cloud, dry_run=True)
    assert rep.packs_deleted == 1 and rep.dead_chunks
    assert sorted(p for p in _dir(a).rglob("*") if p.is_file()) == before
