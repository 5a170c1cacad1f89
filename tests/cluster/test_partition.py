"""A–B–C; B goes down, A and C write on their own (including the same name), B comes back.

Afterwards every node lists the same names with the same hashes and holds the same manifests
(well inside the daemons' 30 s anti-entropy round: the nodes catch up as soon as they meet). The name both sides wrote has one winner everywhere, the later write (greatest
(hlc, origin)), and the other version stays visible on every node as
NAME.sync-conflict-YYYYMMDD-HHMMSS-<first 8 hex digits of the losing node's ID>.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import time

import pytest

from .conftest import Cluster, converged, wait_until

pytestmark = pytest.mark.slow  # long end-to-end: `just test-fast` leaves it out

CATCH_UP_BOUND_S = 20.0  # a hang guard, below the 30 s anti-entropy round; speed: tools/
CONFLICT_RX = re.compile(r"^shared/notes\.txt\.sync-conflict-(\d{8})-(\d{6})-([0-9a-f]{8})(-\d+)?$")


def test_partition_heals_and_conflict_converges(cluster: Cluster) -> None:
    rng = random.Random(2)
    a, b, c = cluster.add_nodes("A", "B", "C")
    cluster.link((a, b), (b, c))
    cluster.start()
    wait_until(lambda: a.connected_to(b) and c.connected_to(b), 10, "A–B and B–C sessions",
               diagnose=cluster.logs)

    # a common starting point
    base = rng.randbytes(200_000)
    h_base = a.put_bytes(base, "base.bin")
    wait_until(lambda: c.get_bytes("base.bin") == base, 10, "base.bin on C", diagnose=cluster.logs)

    # partition: B down (clean shutdown)
    assert b.stop() == 0, b.log()
    assert not (b.home / "daemon.json").exists()

    only_a, only_c = rng.randbytes(700_000), rng.randbytes(900_000)
    on_a, on_c = b"written on A\n" * 1000, b"written on C\n" * 1200
    h_only_a = a.put_bytes(only_a, "only-a.bin")
    t_before_a_write = time.time()
    h_on_a = a.put_bytes(on_a, "shared/notes.txt")
    t_after_a_write = time.time()
    time.sleep(0.05)  # C's write is the later one by wall clock
    h_only_c = c.put_bytes(only_c, "only-c.bin")
    h_on_c = c.put_bytes(on_c, "shared/notes.txt")

    # still partitioned: nobody has the other side's writes
    time.sleep(0.5)
    assert "only-c.bin" not in a.ls() and "only-a.bin" not in c.ls()

    b.start()
    waited, (names, ids) = wait_until(lambda: converged([a, b, c]), CATCH_UP_BOUND_S,
                                      "A, B and C to converge", interval=0.05,
                                      diagnose=cluster.logs)
    print(f"converged {waited:.2f} s after B was started again")

    assert ids == {h_base, h_only_a, h_only_c, h_on_a, h_on_c}
    conflicts = [n for n in names if CONFLICT_RX.match(n)]
    assert len(conflicts) == 1, names
    conflict = conflicts[0]
    assert set(names) == {"base.bin", "only-a.bin", "only-c.bin", "shared/notes.txt", conflict}
    assert names["base.bin"] == h_base
    assert names["only-a.bin"] == h_only_a and names["only-c.bin"] == h_only_c
    # the later write (C's) wins, A's is the conflict copy named after A
    assert names["shared/notes.txt"] == h_on_c, "the later write should win"
    assert names[conflict] == h_on_a
    m = CONFLICT_RX.match(conflict)
    assert m is not None and m.group(3) == a.id_hex[:8], conflict
    stamp = dt.datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    # the conflict copy is stamped with the time of A's write (to the second)
    assert int(t_before_a_write) <= stamp.timestamp() <= t_after_a_write, (
        conflict, t_before_a_write, t_after_a_write)

    # and the bytes are there on every node
    for n in (a, b, c):
        assert n.get_bytes("shared/notes.txt") == on_c, n.name
        assert n.get_bytes(conflict) == on_a, n.name
        assert n.get_bytes("only-a.bin") == only_a, n.name
        assert n.get_bytes("only-c.bin") == only_c, n.name


def test_both_sides_fetch_from_each_other_at_once(cluster: Cluster) -> None:
    """Two nodes that each hold a file the other lacks meet: both fetch at the same time.

    Each side asks the other for chunks as soon as the logs are exchanged, so each daemon is
    serving the other's WantChunks while its own request is open. This must not stall: both
    files are readable on both nodes, before the bound (which no stall and time-out recovers in).
    """
    rng = random.Random(3)
    a, b = cluster.add_nodes("A", "B")
    data_a, data_b = rng.randbytes(12 << 20), rng.randbytes(12 << 20)
    h_a = a.put_bytes(data_a, "from-a.bin")
    h_b = b.put_bytes(data_b, "from-b.bin")
    cluster.link((a, b))
    cluster.start()
    want = ({"from-a.bin": h_a, "from-b.bin": h_b}, {h_a, h_b})
    waited, _ = wait_until(lambda: converged([a, b]) == want, CATCH_UP_BOUND_S,
                           "A and B to hold both files", interval=0.1, diagnose=cluster.logs)
    print(f"both files on both nodes {waited:.2f} s after the daemons were started")
    assert a.get_bytes("from-b.bin") == data_b
    assert b.get_bytes("from-a.bin") == data_a
