"""Conflict copies can be removed (and renamed) by name, and the removal is a logged write
that closes that conflict (every node that receives it drops the same copy)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosaic import Node
from mosaic.node.cluster import namelog
from mosaic.node.cluster.identity import Identity
from mosaic.node.cluster.syncstore import enable
from mosaic.protocol.hlc import make
from mosaic.protocol.names import conflict_base
from mosaic.protocol.records import NameRecord, Version

PEER = b"\x0b" * 32


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with Node.init(tmp_path / "a", no_passphrase=True) as n:
        enable(n.index, Identity.load_or_create(n.home.root).node_id)
        yield n


def _conflict(node: Node) -> tuple[str, bytes, bytes]:
    """A peer's later write of "n" folded in: (conflict copy name, our file, the peer's)."""
    mine = node.put(b"mine", name="n").file_id
    theirs = node.put(b"theirs").file_id
    rec = NameRecord("n", theirs, Version(make(int(time.time() * 1000) + 5000), PEER))
    with node.index.write() as txn:
        namelog.merge(node.index, txn, namelog.name_state(node.index, "n", txn), rec)
    names = {e.name: e.file_id for e in node.ls()}
    (c,) = [n for n in names if n != "n"]
    assert conflict_base(c) == "n" and names == {"n": theirs, c: mine}
    return c, mine, theirs


def test_rm_of_a_conflict_copy_removes_it(node: Node) -> None:
    c, mine, theirs = _conflict(node)
    assert node.rm(c) == [c]
    assert {e.name: e.file_id for e in node.ls()} == {"n": theirs}
    state = namelog.name_state(node.index, "n")
    assert state is not None and len(state.heads) == 1 and state.file_id == theirs
    assert namelog.name_state(node.index, c) is None  # no stray record
    assert not node.exists(mine.hex())  # its last name is gone: the file goes, as after any rm


def test_mv_of_a_conflict_copy_keeps_the_file_under_the_new_name(node: Node) -> None:
    c, mine, theirs = _conflict(node)
    node.mv(c, "kept")
    assert {e.name: e.file_id for e in node.ls()} == {"n": theirs, "kept": mine}


def test_a_real_name_that_looks_like_a_conflict_copy_is_an_ordinary_name(node: Node) -> None:
    name = "x.sync-conflict-20260101-000000-0a0b0c0d"
    node.put(b"data", name=name)
    assert node.rm(name) == [name]
    assert node.ls() == []
