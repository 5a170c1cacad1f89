"""kill -9 during gc, cache trim, repair, recover and a daemon's fetch, at 20+ seeded moments each.

Each scenario is built once (in process, dir backends) and copied aside. The operation is
run once through the CLI to count its steps (tests/integration/kill_cli.py: backend calls,
index commits, local pack deletions); then, for each of KILLS kill points drawn with a
fixed seed among those steps, the homes and backends are restored from the copy and the
operation runs again and SIGKILLs itself at that step. After each kill: `check` is clean on
every node, every file that was readable before is readable byte-identical (with the cache
trimmed to nothing, so from the backends), and running the operation again completes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import blake3
import pytest

from mosaic import Node
from mosaic.node.cloud.cache import trim
from mosaic.node.cloud.gc import gc
from mosaic.node.cloud.indexrecover import recover
from mosaic.node.cloud.repair import repair, scrub
from mosaic.node.cloud.uploads import upload_pending
from mosaic.node.store.check import check
from tests.cloud.conftest import make_joined, make_node

from .kill_cli import run_forked

pytestmark = pytest.mark.slow  # ~100 CLI runs in all

KILLS = int(os.environ.get("MOSAIC_KILLS", "20"))
FINISH_EVERY = int(os.environ.get("MOSAIC_KILL_FINISH_EVERY", "4"))  # run the operation to the end
KILL_CLI = Path(__file__).resolve().with_name("kill_cli.py")
REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    for k in ("MOSAIC_TEST_KILL_AT", "MOSAIC_TEST_STEPS_FILE", "MOSAIC_TEST_TRACE_FILE",
              "MOSAIC_PASSPHRASE", "MOSAIC_DEBUG"):
        env.pop(k, None)
    env.update(extra)
    return env


def _rand(rng: random.Random, lo: int, hi: int) -> bytes:
    return rng.randbytes(rng.randint(lo, hi))


@dataclass
class Scenario:
    """Homes and backends under `work`, and the files each home must keep readable."""

    work: Path
    homes: dict[str, Path]
    readable: dict[str, dict[str, bytes]]  # home key -> name -> bytes
    op_home: str
    args: tuple[str, ...]

    def save(self) -> Path:
        snap = self.work.with_name(self.work.name + "-saved")
        shutil.copytree(self.work, snap, symlinks=True)
        return snap

    def restore(self, snap: Path) -> None:
        shutil.rmtree(self.work)
        shutil.copytree(snap, self.work, symlinks=True)

    def run(self, kill_at: int = 0) -> tuple[int, int]:
        """(exit status, steps) of the operation, in a forked child killed at step `kill_at`."""
        return run_forked(["--home", str(self.homes[self.op_home]), *self.args], kill_at)


def _count(sc: Scenario, snap: Path) -> int:
    rc, n = sc.run()
    assert rc in (0, 8), f"{sc.args} exited with {rc}"
    sc.restore(snap)
    return n


def _verify(sc: Scenario, finish: Callable[[dict[str, Node]], None] | None) -> None:
    nodes = {k: Node.open(h) for k, h in sc.homes.items()}
    try:
        for k, n in nodes.items():
            rep = check(n.store)
            assert rep.ok, (k, rep.problems)
        if finish is not None:
            finish(nodes)  # the operation again, to the end
        for k, n in nodes.items():
            trim(n.cloud, 0)
            for name, data in sc.readable.get(k, {}).items():
                assert n.get(name) == data, (k, name)
            assert check(n.store).ok, k
    finally:
        for n in nodes.values():
            n.close()


def _kill_loop(sc: Scenario, finish: Callable[[dict[str, Node]], None], seed: int,
               kills: int = KILLS) -> None:
    """Kill the operation at `kills` seeded steps; after each: check clean and everything
    readable (from the backends); every FINISH_EVERY-th time, the operation is also run to the
    end first."""
    snap = sc.save()
    total = _count(sc, snap)
    assert total >= kills, f"only {total} steps"
    points = sorted(random.Random(seed).sample(range(1, total + 1), kills))
    for i, at in enumerate(points):
        rc, _ = sc.run(at)
        assert rc == -signal.SIGKILL, (at, rc)
        try:
            _verify(sc, finish if i % FINISH_EVERY == 0 else None)
        except AssertionError as e:
            raise AssertionError(f"after a kill at step {at} of {total}: {e}") from None
        sc.restore(snap)
    print(f"{' '.join(sc.args)}: {total} steps, killed at {points}")


# ---- scenarios -----------------------------------------------------------------------
def _gc_scenario(work: Path, stage: str) -> Scenario:
    """A and B share a backend; B imported some of A's files; both removed some. The gc
    killed is A's first one (it marks), B's after it (B moves off the packs A dropped), or
    A's third (it deletes them: every mark was confirmed and published since)."""
    rng = random.Random(11)
    a = make_node(work, "a", backends=1, pack_size=64 * 1024)
    fa = {f"a/{i:02d}": _rand(rng, 3_000, 40_000) for i in range(14)}
    for name, data in fa.items():
        a.put(data, name=name)
    b = make_joined(work, "b", a)
    shared = sorted(fa)[::2]
    b.import_(a.export([blake3.blake3(fa[n]).hexdigest() for n in shared]))
    fb = {f"b/{i}": _rand(rng, 3_000, 30_000) for i in range(4)}
    for name, data in fb.items():
        b.put(data, name=name)
    for name in sorted(fa)[:6]:
        a.rm(name)
    b.rm(shared[-1])
    for n in (a, b):
        n.save_index_copy()
        trim(n.cloud, 0)
    before = {"mark": [], "move": [a], "delete": [a, b, a, b]}[stage]
    for n in before:
        gc(n.cloud)
    if stage == "delete":
        assert any(1 for _ in (Path(a.config.backends[0].options["path"]) / "gc" / "marks").iterdir())
    readable = {"a": {e.name: fa[e.name] for e in a.ls()},
                "b": {e.name: (fa | fb)[e.name] for e in b.ls()}}
    homes = {"a": a.home.root, "b": b.home.root}
    a.close()
    b.close()
    return Scenario(work, homes, readable, "b" if stage == "move" else "a", ("gc",))


@pytest.mark.parametrize("stage", ["mark", "move", "delete"])
def test_kill_during_gc(tmp_path: Path, stage: str) -> None:
    """KILLS kills over the three stages of gc (a third of them each, rounded up)."""
    sc = _gc_scenario(tmp_path / "w", stage)

    def finish(nodes: dict[str, Node]) -> None:
        for _ in range(2):
            for n in nodes.values():
                assert not gc(n.cloud).errors
    _kill_loop(sc, finish, seed=1, kills=-(-KILLS // 3))


def test_kill_during_trim(tmp_path: Path) -> None:
    rng = random.Random(12)
    a = make_node(tmp_path / "w", "a", backends=1, pack_size=64 * 1024)
    files = {f"f/{i:02d}": _rand(rng, 5_000, 20_000) for i in range(14)}
    for name, data in files.items():
        a.put(data, name=name)
    sc = Scenario(tmp_path / "w", {"a": a.home.root}, {"a": files}, "a", ("cache", "trim", "--to", "0"))
    a.close()

    def finish(nodes: dict[str, Node]) -> None:
        trim(nodes["a"].cloud, 0)
    _kill_loop(sc, finish, seed=2)


def test_kill_during_repair(tmp_path: Path) -> None:
    rng = random.Random(13)
    a = make_node(tmp_path / "w", "a", backends=2, pack_size=64 * 1024)
    a.home.write_config(replace(a.config, copies=2))
    a.close()
    a = Node.open(a.home.root)
    files = {f"f/{i:02d}": _rand(rng, 5_000, 20_000) for i in range(18)}
    for name, data in files.items():
        a.put(data, name=name)
    d1 = Path(next(b.options for b in a.config.backends if b.name == "d1")["path"])
    packs = sorted(p for p in (d1 / "packs").rglob("*") if p.is_file())
    for p in packs[::2]:
        p.unlink()  # lost on d1
    packs[1].write_bytes(packs[1].read_bytes()[:-10] + os.urandom(10))  # corrupt on d1
    scrub(a.cloud)  # queues the repairs
    trim(a.cloud, 0)
    sc = Scenario(tmp_path / "w", {"a": a.home.root}, {"a": files}, "a", ("repair",))
    a.close()

    def finish(nodes: dict[str, Node]) -> None:
        n = nodes["a"]
        upload_pending(n.cloud, raise_on_error=False)
        rep = repair(n.cloud)
        assert not rep.failed, rep.failed
        with n.index.read() as txn:
            assert all(len(r.locations) == 2 for _, r in n.index.iter_packs(txn))
    _kill_loop(sc, finish, seed=3)


def test_kill_during_recover(tmp_path: Path) -> None:
    rng = random.Random(14)
    work = tmp_path / "w"
    a = make_node(work, "a", backends=1, pack_size=64 * 1024)
    files = {f"f/{i:02d}": _rand(rng, 2_000, 9_000) for i in range(16)}
    for name, data in files.items():  # one index copy object per put
        a.put(data, name=name)
    a.rm("f/00")
    a.save_index_copy()
    files.pop("f/00")
    tag = a.config.node_tag
    f = make_joined(work, "f", a)
    f.save_index_copy()  # a fresh node's own (empty) copy, as after `backend add` and a save
    fresh_tag = f.config.node_tag
    sc = Scenario(work, {"a": a.home.root, "f": f.home.root}, {"a": files}, "f",
                  ("recover", "--from", "d0", "--node", tag))
    a.close()
    f.close()

    def finish(nodes: dict[str, Node]) -> None:
        n = nodes["f"]
        with n.index.read() as txn:  # a recover that stopped after its commit
            unfinished = txn.get(b"recover:tag", db=n.index.db["gcmarks"]) is not None
        if unfinished or n.index.count("manifests") == 0:
            recover(n.cloud, "d0", node=tag)  # run again: it finishes (or starts over)
        assert n.config.node_tag == tag
        d0 = Path(n.config.backends[0].options["path"])  # the fresh node's own copy is gone
        assert not list((d0 / "index" / fresh_tag).glob("*"))
        assert not (d0 / "gc" / "nodes" / fresh_tag).exists()
        trim(n.cloud, 0)
        for name, data in files.items():
            assert n.get(name) == data, name
    _kill_loop(sc, finish, seed=4)


# ---- a daemon's fetch ----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(home: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(KILL_CLI), "--home", str(home), "serve",
                             "--listen", f"127.0.0.1:{_free_port()}"],
                            env=_env(**env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=REPO, start_new_session=True)


def _all_local(home: Path, packs: set[str]) -> bool:
    return packs <= {p.name for p in (home / "packs").rglob("*") if p.is_file()}


def _wait(pred: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_kill_during_a_daemons_fetch(tmp_path: Path) -> None:
    """The daemon fetches pinned files that are not local from the backend (keep_pins)."""
    rng = random.Random(15)
    work = tmp_path / "w"
    a = make_node(work, "a", backends=1, pack_size=64 * 1024)
    files = {f"p/{i:02d}": _rand(rng, 5_000, 15_000) for i in range(12)}
    for name, data in files.items():
        a.put(data, name=name)
    trim(a.cloud, 0)
    with a.index.write() as txn:  # `mosaic pin` while the backend was away: not local
        for e in a.ls():
            txn.put(e.file_id, b"", db=a.index.db["pins"])
    with a.index.read() as txn:
        packs = {pid.hex() for pid, _ in a.index.iter_packs(txn)}
    home = a.home.root
    a.close()
    sc = Scenario(work, {"a": home}, {"a": files}, "a", ("serve",))
    snap = sc.save()
    trace = tmp_path / "trace"
    p = _serve(home, MOSAIC_TEST_TRACE_FILE=str(trace))
    try:
        _wait(lambda: _all_local(home, packs), "the pinned packs")
        time.sleep(0.2)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(TIMEOUT)
    lines = trace.read_text().splitlines()
    fetch = [int(ln.split()[0]) for ln in lines if ln.split()[1:2] == ["get"] and "packs/" in ln]
    first, last = fetch[0], max(int(ln.split()[0]) for ln in lines if "commit" in ln
                                and int(ln.split()[0]) > fetch[-1]) if fetch else (0, 0)
    assert last - first + 1 >= KILLS, (first, last)
    sc.restore(snap)
    points = sorted(random.Random(5).sample(range(first, last + 1), KILLS))
    addr = f"127.0.0.1:{_free_port()}"
    for i, at in enumerate(points):
        rc, _ = run_forked(["--home", str(home), "serve", "--listen", addr], at, TIMEOUT)
        assert rc == -signal.SIGKILL, (at, rc)
        _verify(sc, lambda nodes: None)
        if i % 4 == 0:  # a restarted daemon finishes the fetch
            q = _serve(home)
            try:
                _wait(lambda: _all_local(home, packs), "the pinned packs after a restart")
            finally:
                q.send_signal(signal.SIGTERM)
                q.wait(TIMEOUT)
            _verify(sc, lambda nodes: None)
        sc.restore(snap)
    print(f"serve: fetch steps {first}..{last}, killed at {points}; {json.dumps(len(packs))} packs")
