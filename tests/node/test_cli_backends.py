"""The CLI with a dir backend: cache trim, warm, gc repacks and missing copies."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from tests.conftest import (
    Cli,
    assert_one_line_error,
)
from tests.node.test_cli import _make_tree, packs_size

# ---- backends, cache, warm ---------------------------------------------------------------

def test_cache_trim_and_warm_with_a_dir_backend(node_cli: Cli, tmp_path: Path) -> None:
    bk = tmp_path / "backend"
    assert node_cli.doc("backend", "add", "dir", "b1", bk)["added"] == "b1"
    assert [b["name"] for b in node_cli.doc("backend", "ls")] == ["b1"]
    assert_one_line_error(node_cli("backend", "add", "dir", "b1", bk), 2)
    files = _make_tree(node_cli.cwd / "t", seed=13)
    node_cli.ok("put", "-r", "t")
    st = node_cli.doc("stat", "t/sub/b.bin")
    assert st["locations"] == {"local": 1.0, "b1": 1.0}
    info = node_cli.doc("cache")
    assert info["local_packs"] >= 1 and info["evictable_bytes"] == info["used"] > 0
    stored = sorted(p.relative_to(bk).as_posix() for p in bk.rglob("*") if p.is_file())
    assert any(p.startswith("packs/") for p in stored)
    assert all(p.startswith(("packs/", "index/", "gc/")) or p == "mosaic-backend.json"
               for p in stored)  # packs, the index copy and the backend's marker

    after_trim = node_cli.doc("cache", "trim", "--to", "0")
    assert after_trim["local_packs"] == 0 and after_trim["used"] == 0
    assert packs_size(node_cli.home) == (0, 0)
    assert node_cli.doc("stat", "t/sub/b.bin")["cached_fraction"] == 0.0
    for rel, data in files.items():  # reads come from the backend
        assert node_cli.ok("get", f"t/{rel}", "-").out == data
    assert node_cli.doc("stat", "t/sub/b.bin")["cached_fraction"] == 0.0  # get does not cache
    warm = node_cli.doc("warm", "--all")
    assert warm["cached_before"] == 0.0 and warm["cached_after"] == 1.0
    assert warm["packs_fetched"] >= 1 and warm["bytes_fetched"] > 0
    assert node_cli.doc("stat", "t/sub/b.bin")["cached_fraction"] == 1.0
    again = node_cli.doc("warm", "t/a.txt")
    assert again["packs_fetched"] == 0 and again["cached_after"] == 1.0
    node_cli.ok("verify", "--all")
    # with the backend gone, the local copies are all there is
    assert_one_line_error(node_cli("backend", "rm", "b1"), 2)  # it still holds packs
    node_cli.ok("backend", "rm", "b1", "--force")
    shutil.rmtree(bk)
    for rel, data in files.items():
        assert node_cli.ok("get", f"t/{rel}", "-").out == data
    assert_one_line_error(node_cli("backend", "rm", "b1"), 1)  # not found


def test_gc_repack_keeps_live_data_on_the_backend(node_cli: Cli, tmp_path: Path) -> None:
    """gc rewrites a partly dead pack; the live chunks must stay stored on the backend.

    README: with backends configured, stored data is on them too. A repack that
    deletes the old pack from the backend before the new one is uploaded leaves
    the only copy on the local disk.
    """
    bk = tmp_path / "backend"
    node_cli.ok("backend", "add", "dir", "b1", bk)
    rng = random.Random(18)
    (node_cli.cwd / "x").write_bytes(rng.randbytes(100_000))
    (node_cli.cwd / "y").write_bytes(rng.randbytes(100_000))
    node_cli.ok("put", "x", "y")  # one pack holds both
    assert node_cli.doc("stat", "y")["locations"] == {"local": 1.0, "b1": 1.0}
    node_cli.ok("rm", "x")
    assert node_cli.doc("gc")["packs_repacked"] == 1
    assert node_cli.doc("stat", "y")["locations"].get("b1") == 1.0, \
        "after gc the live file is no longer on the backend"
    # losing the local store must not lose y
    shutil.rmtree(node_cli.home / "packs")
    (node_cli.home / "packs").mkdir()
    assert node_cli.ok("cat", "y").out == (node_cli.cwd / "y").read_bytes()


def test_trim_keeps_packs_no_backend_holds(node_cli: Cli) -> None:
    (node_cli.cwd / "f").write_bytes(random.Random(14).randbytes(50_000))
    node_cli.ok("put", "f")
    before = packs_size(node_cli.home)
    doc = node_cli.doc("cache", "trim", "--to", "0")
    assert doc["local_packs"] == 1 and doc["evictable_bytes"] == 0
    assert packs_size(node_cli.home) == before
    assert node_cli.doc("warm", "--all")["cached_after"] == 1.0


def test_a_missing_backend_copy_is_a_storage_error(node_cli: Cli, tmp_path: Path) -> None:
    bk = tmp_path / "backend"
    node_cli.ok("backend", "add", "dir", "b1", bk)
    (node_cli.cwd / "f").write_bytes(random.Random(15).randbytes(50_000))
    node_cli.ok("put", "f")
    node_cli.ok("cache", "trim", "--to", "0")
    shutil.rmtree(bk / "packs")
    line = assert_one_line_error(node_cli("get", "f", "-"), 5)
    assert "Traceback" not in line
    assert_one_line_error(node_cli("warm", "--all"), 5)
