"""One discipline for writers: every index writer shares the home lock, gc takes it alone.

gc with a daemon running answers busy (7) and deletes nothing; a write that slips in between
gc's scan and its delete loses nothing (references are re-checked in the deleting
transaction); temp files and orphan pack files are swept only once older than the grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mosaic import Node
from mosaic.node.cloud import gc as gc_mod
from mosaic.node.cloud.gc import gc
from mosaic.node.cloud.repair import drain, repair
from mosaic.node.errors import BusyError
from mosaic.node.store import transfer
from mosaic.node.store.check import check
from mosaic.node.store.home import HomeLock
from tests.conftest import MOSAIC_CMD, mosaic_env, run_mosaic

HOUR = 3600.0


def _files(node: Node) -> set[Path]:
    return {p for p in node.home.packs_dir.rglob("*") if p.is_file()}


def _backend_files(node: Node) -> set[Path]:
    d = Path(node.config.backends[0].options["path"])
    return {p for p in d.rglob("*") if p.is_file()}


@contextlib.contextmanager
def _daemon(home: Path):
    """`mosaic serve` on `home` until the block ends (ready once HOME/daemon.json names it)."""
    p = subprocess.Popen([*MOSAIC_CMD, "--home", str(home), "serve", "--listen", "127.0.0.1:0"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=mosaic_env())
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                doc = json.loads((home / "daemon.json").read_text())
                if doc.get("pid") == p.pid and doc.get("ready"):
                    break
            except (OSError, ValueError):
                pass
            assert p.poll() is None, p.stderr.read().decode()
            assert time.monotonic() < deadline, "daemon not ready"
            time.sleep(0.05)
        yield p
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_gc_while_a_daemon_runs_is_busy(node_factory: Callable[..., Node]) -> None:
    node = node_factory()
    keep, drop = os.urandom(120_000), os.urandom(120_000)
    node.put(keep, name="keep")
    node.put(drop, name="drop")
    node.rm("drop")
    home = node.home.root
    node.close()
    with _daemon(home):
        r = run_mosaic(["--home", home, "gc"], env=mosaic_env())
        assert r.rc == 7, r.err
        assert "daemon is running" in r.err
        n = Node.open(home)
        try:
            local, remote = _files(n), _backend_files(n)
            chunks = n.index.count("chunks")
            with pytest.raises(BusyError, match="daemon is running"):
                gc(n.cloud)
            assert _files(n) == local and _backend_files(n) == remote  # nothing deleted
            assert n.index.count("chunks") == chunks
        finally:
            n.close()
    n = Node.open(home)
    try:
        assert n.get("keep") == keep and check(n.store).ok
        gc(n.cloud)  # the daemon is gone: gc runs
        assert n.get("keep") == keep and check(n.store).ok
    finally:
        n.close()


@pytest.mark.parametrize("shared", [False, True], ids=["own-pack", "pack-shared-with-live-file"])
def test_import_during_gc_loses_nothing(node_factory: Callable[..., Node],
                                        monkeypatch: pytest.MonkeyPatch, shared: bool) -> None:
    node = node_factory(pack_size=1 << 20)
    x, y = os.urandom(40_000), os.urandom(40_000)
    with node.ingest() as s:  # one session: x and y share a pack
        s.put_source(x, "x")
        if shared:
            s.put_source(y, "y")
    if shared:
        packs = [{node.index.get_chunk(c).pack_id for c, _ in node.resolve(n).chunks}
                 for n in ("x", "y")]
        assert packs[0] & packs[1]
    dump = node.export(["x"])
    node.rm("x")
    # gc holds the exclusive lock in this process, so the import slips past the lock (as a
    # writer that ignored it would) and runs in a thread between gc's scan and its delete.
    monkeypatch.setattr(transfer, "HomeLock", lambda *a, **k: contextlib.nullcontext(),
                        raising=False)
    orig = node.index.iter_packs
    fired: list[dict] = []

    def iter_packs(txn):  # noqa: ANN001, ANN202
        yield from orig(txn)
        if not fired:
            t = threading.Thread(target=lambda: fired.append(transfer.import_(node.store, dump)))
            t.start()
            t.join()

    monkeypatch.setattr(node.index, "iter_packs", iter_packs)
    gc(node.cloud)
    assert fired and fired[0]["new_files"] == 1
    monkeypatch.undo()
    assert node.get("x") == x
    if shared:
        assert node.get("y") == y
    assert check(node.store).ok
    gc(node.cloud)  # a later gc keeps it too
    assert node.get("x") == x and check(node.store).ok


def test_gc_sweeps_only_old_temp_and_orphan_files(node_factory: Callable[..., Node]) -> None:
    node = node_factory()
    data = os.urandom(100_000)
    node.put(data, name="f")
    tmp = node.home.tmp_dir
    fresh_tmp, old_tmp = tmp / "pack-fresh.tmp", tmp / "pack-old.tmp"
    fresh_pack = node.home.pack_path(b"\x01" * 32)
    old_pack = node.home.pack_path(b"\x02" * 32)
    for f in (fresh_tmp, old_tmp, fresh_pack, old_pack):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"partial")
    past = time.time() - getattr(gc_mod, "GRACE_S", HOUR) - 60
    for f in (old_tmp, old_pack):
        os.utime(f, (past, past))
    rep = gc(node.cloud)
    assert rep.temp_files == 1
    assert fresh_tmp.exists() and fresh_pack.exists()  # a live writer's files
    assert not old_tmp.exists() and not old_pack.exists()
    assert node.get("f") == data and check(node.store).ok


def test_writers_wait_for_gc(node_factory: Callable[..., Node], tmp_path: Path) -> None:
    """While gc holds the lock, import, rm, mv, warm, repair, drain and upload answer busy."""
    node = node_factory(backends=2)
    data = os.urandom(60_000)
    node.put(data, name="f")
    dump = node.export()
    with HomeLock(node.home, exclusive=True):
        for call in (lambda: node.import_(dump), lambda: node.rm("f"),
                     lambda: node.mv("f", "g"), lambda: node.warm(),
                     lambda: repair(node.cloud), lambda: drain(node.cloud, "d1")):
            with pytest.raises(BusyError):
                call()
        r = run_mosaic(["--home", node.home.root, "upload"], env=mosaic_env())
        assert r.rc == 7, r.err
    assert node.get("f") == data and [e.name for e in node.ls()] == ["f"]
    assert check(node.store).ok
