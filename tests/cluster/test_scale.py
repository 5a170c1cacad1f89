"""Many small files: 1,000 files put on A (`put -r` of a generated tree) are listed by B,
with the same hashes. (tools/sync_bench.py measures how fast, with 10,000.)

Each file is one new chunk B has to fetch before the file shows up. What keeps the time
about linear in the number of files is that B asks for chunks in batches, not file by file:
B stores each batch it fetched as one pack, so B ends up with a handful of packs, not 1,000.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from .conftest import Cluster, wait_until

pytestmark = pytest.mark.slow  # long end-to-end: `just test-fast` leaves it out

FILES = 1000
BOUND_S = 25.0  # a hang guard, below the daemons' 30 s anti-entropy round
MAX_FETCHES = FILES // 20  # fetched packs on B: batches, far fewer than one per file


def _pack_files(home: Path) -> int:
    return sum(1 for p in (home / "packs").rglob("*") if p.is_file())


def test_thousand_small_files_reach_b(cluster: Cluster, tmp_path: Path) -> None:
    rng = random.Random(6)
    tree = tmp_path / "tree"
    for i in range(FILES):
        d = tree / f"d{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04d}.txt").write_bytes(f"file {i}\n".encode() + rng.randbytes(rng.randint(50, 300)))
    a, b = cluster.add_nodes("A", "B")
    cluster.link((a, b))
    cluster.start()
    wait_until(lambda: a.connected_to(b), 10, "the A–B session", diagnose=cluster.logs)

    b_packs = _pack_files(b.home)
    a.ok("put", "-r", tree, "--name", "small")
    want = a.ls()
    assert len(want) == FILES

    def done() -> int | None:
        got = b.ls()
        return len(got) if got == want else None

    try:
        waited, _ = wait_until(done, BOUND_S, f"B to list all {FILES} files", interval=0.1)
    except AssertionError:
        n = len(b.ls())
        raise AssertionError(f"B lists only {n} of {FILES} files") from None
    fetched = _pack_files(b.home) - b_packs
    print(f"{FILES} files on B {waited:.2f} s after the put returned, in {fetched} fetched packs")
    assert 1 <= fetched <= MAX_FETCHES, f"B fetched the chunks in {fetched} batches"
