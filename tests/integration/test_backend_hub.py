"""One node, one backend hub: restoring several files at once must not open the backends twice.

`Node.get_many` (what `mosaic get -r` uses) restores small files on two threads; each
asks `node.hub` for the backends on first use. The hub (a trio loop in a thread that
owns every backend connection) must be created once; a second one would hold its own
connections and never be closed by `Node.close()`.
"""

from __future__ import annotations

import threading
from pathlib import Path

from mosaic import Node as ApiNode

from .conftest import Node


def _hub_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "mosaic-backends" and t.is_alive())


def test_get_many_starts_one_backend_hub(node: Node, tmp_path: Path) -> None:
    node.init_node()
    node.add_dir("nas", tmp_path / "nas")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(24):
        (src / f"f{i:02d}.txt").write_bytes(f"small file {i}\n".encode() * (i + 1))
    node.ok("put", "-r", src, "--name", "small", timeout=60)
    node.ok("cache", "trim", "--to", "0", timeout=30)  # every read goes to the backend

    before = _hub_threads()
    with ApiNode.open(node.home) as n:
        entries = n.ls("small/")
        assert len(entries) == 24
        n.get_many([(e.file_id.hex(), tmp_path / "out" / e.name) for e in entries])
        during = _hub_threads() - before
    for i in range(24):
        assert (tmp_path / "out" / "small" / f"f{i:02d}.txt").read_bytes() == (src / f"f{i:02d}.txt").read_bytes()
    assert during == 1, f"{during} backend hubs were started for one node (expected 1)"
