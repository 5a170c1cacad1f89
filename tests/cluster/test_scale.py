"""Many small files: 1,000 files put on A (`put -r` of a generated tree) are listed by B,
with the same hashes, within 5 s. (tools/sync_bench.py measures 10,000.)

Each file is one new chunk B has to fetch before the file shows up; the time must grow about
linearly with the number of files.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from .conftest import Cluster, wait_until

FILES = 1000
LIMIT_S = 5.0


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

    a.ok("put", "-r", tree, "--name", "small")
    t0 = time.monotonic()
    want = a.ls()
    assert len(want) == FILES

    def done() -> int | None:
        got = b.ls()
        return len(got) if got == want else None

    try:
        wait_until(done, LIMIT_S + 1, f"B to list all {FILES} files", interval=0.1)
    except AssertionError:
        n = len(b.ls())
        raise AssertionError(f"after {time.monotonic() - t0:.1f} s B lists only {n} of {FILES} "
                             "files") from None
    elapsed = time.monotonic() - t0
    print(f"{FILES} files on B {elapsed:.2f} s after the put returned")
    assert elapsed <= LIMIT_S
