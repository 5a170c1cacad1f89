"""Three nodes sharing two dir backends: seeded random rounds of put, import, sync, rm, trim
and gc; then gc on every node until nothing changes.

Every file a node still names is then readable on that node byte-identical (with its cache
trimmed to nothing, so from the backends), `check` is clean on every node, and once the
grace period has passed (a clock handed to gc, never a sleep) the backends hold no pack
object that no node references, and hardly more bytes than the live files need.

The nodes are opened in process (the Node API); each command is followed by what the CLI
does after it (`save_index_copy`). "sync" is a fresh export of every file of one node
imported by another (what replication carries: the files and where their packs are).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from mosaic import Node
from mosaic.node.cloud.cache import trim
from mosaic.node.cloud.gc import GRACE_S, gc
from mosaic.node.store.check import check

ROUNDS = int(os.environ.get("MOSAIC_GC_ROUNDS", "60"))
MAX_SETTLE = 12  # gc cycles over every node before "nothing changes" must hold


def _b3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


class World:
    """Three nodes of one key sharing backends d0 and d1, and every content ever put."""

    def __init__(self, nodes: list[Node], seed: int):
        self.nodes = nodes
        self.rng = random.Random(seed)
        self.content: dict[bytes, bytes] = {}
        self.counter = 0
        self.log: list[str] = []
        self.totals = {"marked": 0, "marks_confirmed": 0, "remote_deleted": 0, "packs_moved": 0,
                       "marks_cancelled": 0}

    def gc(self, n: Node, now: float, max_unused: float = 0.5) -> bool:
        rep = gc(n.cloud, now=now, remote_repack_threshold=max_unused)
        assert not rep.errors, rep.errors
        for k in self.totals:
            self.totals[k] += getattr(rep, k)
        return rep.changed

    def data(self) -> bytes:
        if self.content and self.rng.random() < 0.2:  # the same content again (dedup)
            return self.content[self.rng.choice(sorted(self.content))]
        size = self.rng.choice([1_000, 5_000, 12_000, 30_000, 70_000])
        data = self.rng.randbytes(self.rng.randint(size // 2, size))
        self.content[_b3(data)] = data
        return data

    def step(self, now: float) -> None:
        rng = self.rng
        i = rng.randrange(3)
        n = self.nodes[i]
        op = rng.choices(["put", "import", "sync", "rm", "gc", "trim"], [34, 14, 8, 16, 20, 8])[0]
        self.log.append(f"{op}@{i}")
        if op == "put":
            self.counter += 1
            n.put(self.data(), name=f"n{i}/f{self.counter:04d}")
        elif op in ("import", "sync"):
            src = self.nodes[rng.choice([j for j in range(3) if j != i])]
            entries = src.ls()
            if not entries:
                return
            if op == "import":
                picked = rng.sample(entries, min(len(entries), rng.randint(1, 3)))
                # (one hash once: export() would list a file twice, and import refuses that)
                n.import_(src.export(sorted({e.file_id.hex() for e in picked})))
            else:
                n.import_(src.export())
        elif op == "rm":
            entries = n.ls()
            if not entries:
                return
            for e in rng.sample(entries, min(len(entries), rng.randint(1, 2))):
                n.rm(e.name)
        elif op == "gc":
            self.gc(n, now)
            return  # gc publishes its own index state
        else:
            trim(n.cloud, 0)
            self.read_some(n)
            return
        n.save_index_copy()

    def read_some(self, n: Node) -> None:
        entries = n.ls()
        for e in self.rng.sample(entries, min(len(entries), 3)):
            assert n.get(e.name) == self.content[e.file_id], (e.name, self.log[-30:])

    def settle(self, now: float, max_unused: float = 0.5) -> int:
        """gc on every node, in turn, until a whole cycle changes nothing; the cycles run.
        `max_unused`: packs with more garbage than this share are rewritten."""
        for cycle in range(1, MAX_SETTLE + 1):
            changed = False
            for n in self.nodes:
                changed |= self.gc(n, now, max_unused)
            if not changed:
                return cycle
        raise AssertionError(f"gc still changes things after {MAX_SETTLE} cycles")

    def check_readable(self) -> None:
        for i, n in enumerate(self.nodes):
            trim(n.cloud, 0)
            for e in n.ls():
                assert n.get(e.name) == self.content[e.file_id], f"node {i}: {e.name}"
            rep = check(n.store)
            assert rep.ok, (i, rep.problems)


def _stored(dirs: list[Path]) -> dict[bytes, tuple[int, int]]:
    """Pack ID -> (bytes stored over every backend, number of copies)."""
    out: dict[bytes, tuple[int, int]] = {}
    for d in dirs:
        for p in (d / "packs").rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                size, copies = out.get(bytes.fromhex(p.name), (0, 0))
                out[bytes.fromhex(p.name)] = (size + p.stat().st_size, copies + 1)
    return out


def _referenced(nodes: list[Node], stored: dict[bytes, tuple[int, int]]) -> tuple[set[bytes], int]:
    """Packs any node's index knows, and the bytes the live chunks of all nodes need on the
    backends: each chunk's stored length (once per pack and offset) times its pack's copies."""
    packs: set[bytes] = set()
    live: dict[tuple[bytes, int], int] = {}
    for n in nodes:
        with n.index.read() as txn:
            packs |= {pid for pid, _ in n.index.iter_packs(txn)}
            for _cid, r in n.index.iter_chunks(txn):
                if r.refcount > 0:
                    live[(r.pack_id, r.offset)] = r.stored_len * stored.get(r.pack_id, (0, 0))[1]
    return packs, sum(live.values())


def _explain(nodes: list[Node], stored: dict[bytes, tuple[int, int]]) -> None:
    live: dict[bytes, dict[int, int]] = {}
    for n in nodes:
        with n.index.read() as txn:
            for _cid, r in n.index.iter_chunks(txn):
                if r.refcount > 0:
                    live.setdefault(r.pack_id, {})[r.offset] = r.stored_len
    for pid, (size, copies) in sorted(stored.items()):
        used = sum(live.get(pid, {}).values()) * copies
        if size > 1.05 * used:
            owners = [i for i, n in enumerate(nodes) if n.index.get_pack(pid) is not None]
            print(f"  pack {pid.hex()[:12]} {size} bytes, {used} live, known to {owners}, "
                  f"owner {[n.index.get_pack(pid).owner for n in nodes if n.index.get_pack(pid)]}")


Stored = Callable[[], dict[bytes, tuple[int, int]]]


def run_rounds(tmp_path: Path, node_factory: Callable[..., Node],
               join_factory: Callable[[str, Node], Node], rounds: int, seed: int) -> World:
    """Nodes a, b and c on two shared dir backends."""
    a = node_factory("a", backends=2)
    nodes = [a, join_factory("b", a), join_factory("c", a)]
    dirs = [Path(b.options["path"]) for b in a.config.backends]
    return run_world(nodes, lambda: _stored(dirs), rounds, seed)


def run_world(nodes: list[Node], stored_now: Stored, rounds: int, seed: int) -> World:
    """The rounds, the settling and every check, on three nodes sharing their backends;
    `stored_now` lists the pack objects on those backends."""
    for n in nodes:
        n.save_index_copy()  # registered on both backends before anything happens
    w = World(nodes, seed)
    now = time.time()
    for _ in range(rounds):
        w.step(now)
    w.settle(now)
    w.check_readable()
    # after the grace period: orphans go too, and the backends hold what the nodes use
    later = now + GRACE_S + 60
    w.settle(later, max_unused=0.04)
    w.check_readable()
    stored = stored_now()
    packs, live_bytes = _referenced(nodes, stored)
    assert set(stored) <= packs, f"{len(set(stored) - packs)} pack objects no node references"
    total = sum(size for size, _ in stored.values())
    _explain(nodes, stored)
    print(f"{rounds} rounds: {len(stored)} packs, {total} bytes stored, {live_bytes} live "
          f"({total / max(live_bytes, 1):.3f}x); names {[len(n.ls()) for n in nodes]}; "
          f"ops {sorted(Counter(x.split('@')[0] for x in w.log).items())}; gc {w.totals}")
    assert w.totals["marks_confirmed"] and w.totals["remote_deleted"], "nothing collected"
    assert total <= 1.05 * live_bytes + 4096, (total, live_bytes)
    for n in nodes:  # every mark was acted on: nothing waits
        rep = gc(n.cloud, now=later)
        assert not (rep.marks_waiting or rep.changed), rep
    return w


@pytest.mark.parametrize("seed", [1, 2])
def test_random_rounds(tmp_path: Path, node_factory: Callable[..., Node],
                       join_factory: Callable[[str, Node], Node], seed: int) -> None:
    run_rounds(tmp_path, node_factory, join_factory, ROUNDS, seed)


@pytest.mark.slow
def test_two_hundred_rounds(tmp_path: Path, node_factory: Callable[..., Node],
                            join_factory: Callable[[str, Node], Node]) -> None:
    w = run_rounds(tmp_path, node_factory, join_factory, 200, 200)
    assert w.totals["packs_moved"], "no node had to move off a pack another node dropped"
