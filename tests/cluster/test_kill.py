"""SIGKILL a node while it is fetching chunks; after a restart it resumes and nothing is lost.

A–B–C. Each round puts a 16–22 MiB random file on A (C stores fetched chunks in batches of
8 MiB, so two or three packs); as soon as C has stored part of it (a new pack appears under
C/packs while C still cannot return the file) C is killed with SIGKILL after a further random
delay (seeded), and restarted. At the end every file is byte-identical on every
node, all nodes hold the same manifests and names, and `verify --all` passes everywhere.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from .conftest import Cluster, converged, parallel, wait_until

pytestmark = pytest.mark.slow  # long end-to-end: `just test-fast` leaves it out

ROUNDS = 3


def _pack_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in (home / "packs").rglob("*") if p.is_file())


def test_sigkill_while_fetching_resumes_and_loses_nothing(cluster: Cluster) -> None:
    rng = random.Random(4)
    a, b, c = cluster.add_nodes("A", "B", "C")
    cluster.link((a, b), (b, c))
    cluster.start()
    wait_until(lambda: a.connected_to(b) and c.connected_to(b), 10, "A–B and B–C sessions",
               diagnose=cluster.logs)

    files: dict[str, tuple[str, bytes]] = {}
    partial_kills = 0
    for r in range(ROUNDS):
        data = rng.randbytes(rng.randint(16, 22) << 20)
        name = f"big/{r}.bin"
        before = _pack_bytes(c.home)
        h = a.put_bytes(data, name)
        files[name] = (h, data)
        wait_until(lambda before=before: _pack_bytes(c.home) > before, 30,
                   f"C to store part of {name}", interval=0.02, diagnose=cluster.logs)
        time.sleep(rng.uniform(0.0, 0.08))  # transfers take a fraction of a second here
        c.kill()
        mid = c.run("exists", h).rc == 1
        partial_kills += mid
        print(f"round {r}: killed C {'while' if mid else 'after'} fetching {name} "
              f"({len(data) >> 20} MiB, C held {_pack_bytes(c.home) >> 20} MiB of packs)")
        c.start()
    assert partial_kills >= 1, "no kill hit C in the middle of a transfer"

    want_names = {n: h for n, (h, _) in files.items()}
    wait_until(lambda: converged([a, b, c]) == (want_names, set(want_names.values())), 60,
               "A, B and C to hold every file", interval=0.2, diagnose=cluster.logs)
    for node in (a, b, c):
        for name, (h, data) in files.items():
            assert node.get_bytes(name) == data, (node.name, name)
            assert node.get_bytes(h) == data, (node.name, h)
    for node, r in zip((a, b, c), parallel([lambda n=n: n.run("verify", "--all")
                                              for n in (a, b, c)]), strict=True):
        assert r.rc == 0, f"[{node.name}] {r}"
        assert f"verified {ROUNDS} files" in r.text, r.text
    # the daemons are still healthy: a further put reaches C
    h = a.put_bytes(b"after the storm\n", "after.txt")
    wait_until(lambda: c.get_bytes("after.txt") == b"after the storm\n", 10, "after.txt on C",
               diagnose=cluster.logs)
    assert c.ls()["after.txt"] == h
