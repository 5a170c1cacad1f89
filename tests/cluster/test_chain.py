"""A–B–C, with no A–C link: a file put on A is readable, byte for byte, on C within 5 s.

C only ever talks to B, so this needs B to relay A's log entries under A's origin and to serve
the chunks it fetched from A.
"""

from __future__ import annotations

import random
import time

from .conftest import Cluster, wait_until

LIMIT_S = 5.0


def test_put_on_a_reaches_c_through_b(cluster: Cluster) -> None:
    a, b, c = cluster.add_nodes("A", "B", "C")
    cluster.link((a, b), (b, c))
    cluster.start()
    wait_until(lambda: a.connected_to(b) and c.connected_to(b), 10, "A–B and B–C sessions",
               diagnose=cluster.logs)

    data = random.Random(1).randbytes(3 * 1024 * 1024 + 12345)  # ~65 chunks at 48 KiB
    t_put = time.monotonic()
    h = a.put_bytes(data, "docs/report.bin")
    t_stored = time.monotonic()

    def on_c() -> bool:
        return c.get_bytes("docs/report.bin") == data

    wait_until(on_c, LIMIT_S + 5, "the file on C", interval=0.05, diagnose=cluster.logs)
    t_done = time.monotonic()
    since_put = t_done - t_put
    since_stored = t_done - t_stored
    print(f"A put took {t_stored - t_put:.2f} s; readable on C {since_stored:.2f} s after the "
          f"put returned ({since_put:.2f} s after it started)")
    assert since_stored <= LIMIT_S, f"C returned the file only after {since_stored:.2f} s"

    # C got it by hash as well, and never talked to A
    assert c.get_bytes(h) == data
    assert c.ls() == {"docs/report.bin": h}
    assert not a.connected_to(c) and not c.connected_to(a)
