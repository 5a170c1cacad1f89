"""A node that A does not trust is refused before any manifest is sent.

D has the same key as A and B (so only the peer list keeps it out) and dials A
(`peer add A_ID@...` on D), but A never added D. D must not receive a single log entry: its
`ls` and `export --all` stay empty, and its log never shows a session. A logs each refusal as
one WARNING line naming D, and keeps serving its trusted peer B meanwhile. D backs off between
attempts (the gaps between A's refusal lines grow), rather than retrying in a storm.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from .conftest import Cluster, parallel, wait_until

pytestmark = pytest.mark.slow  # long end-to-end: `just test-fast` leaves it out

OBSERVE_S = 4.0


def test_untrusted_node_gets_nothing(cluster: Cluster) -> None:
    a, b, d = cluster.add_nodes("A", "B", "D")
    h1 = a.put_bytes(b"first file on A\n" * 500, "one.txt")
    h2 = a.put_bytes(b"second file on A\n" * 700, "dir/two.txt")
    cluster.link((a, b))
    cluster.trust(d, a)  # D trusts and dials A; A knows nothing about D
    cluster.start(a, b)
    wait_until(lambda: b.ls() == {"one.txt": h1, "dir/two.txt": h2}, 10, "B to have A's files",
               diagnose=cluster.logs)

    d.start()
    t_start = time.monotonic()
    refused_rx = rf"WARNING mosaic\.transport: refused 127\.0\.0\.1:\d+: node {d.id} is not trusted$"
    wait_until(lambda: a.log_lines(refused_rx), 10, "A to refuse D", interval=0.05,
               diagnose=cluster.logs)

    # meanwhile A keeps serving B
    h3 = a.put_bytes(b"written while D knocks\n" * 300, "three.txt")
    wait_until(lambda: b.get_bytes("three.txt") == b"written while D knocks\n" * 300, 10,
               "three.txt on B", diagnose=cluster.logs)

    # D stays empty for a while
    while time.monotonic() - t_start < OBSERVE_S:
        d_names, d_ids = d.snapshot()
        assert d_names == {} and d_ids == set(), (d_names, d_ids)
        time.sleep(0.3)
    assert d.running and a.running and b.running

    lines_about_d = [ln for ln in a.log(whole=True).splitlines()
                     if d.id in ln or d.log_tag in ln or d.id_hex in ln]
    refusals = a.log_lines(refused_rx)
    print(f"A refused D {len(refusals)} times in {time.monotonic() - t_start:.1f} s")
    assert refusals, a.log()
    # every line A wrote about D is one such refusal line: no session, no traceback
    assert lines_about_d == refusals, "\n".join(lines_about_d)
    assert "Traceback" not in a.log(whole=True)
    assert f"peer {d.log_tag} connected" not in a.log(whole=True)
    assert f"peer {a.log_tag} connected" not in d.log(whole=True)
    # D backs off: each retry waits at least about twice as long as the one before (D's
    # dialer doubles from 1 s), read from A's own log stamps; a storm would be POLL_S apart
    assert len(refusals) >= 2, refusals
    stamps = [dt.datetime.strptime(ln[:23], "%Y-%m-%d %H:%M:%S,%f") for ln in refusals]
    gaps = [(t2 - t1).total_seconds() for t1, t2 in zip(stamps[:-1], stamps[1:], strict=True)]
    assert all(gap >= 0.5 * 2**i for i, gap in enumerate(gaps)), gaps

    # nothing of A's reached D, even in its log tables; A and B are unaffected
    d_doc, a_ids, b_names = parallel([d.export_doc, a.file_ids, b.ls])
    assert d_doc["files"] == [] and d_doc["locations"] == {}
    assert a_ids == {h1, h2, h3}
    assert b_names == {"one.txt": h1, "dir/two.txt": h2, "three.txt": h3}
    info = d.doc("info")
    assert info["files"] == 0 and info["names"] == 0 and info["chunks"] == 0, info  # type: ignore[index]
    peers = d.doc("peer", "ls")
    assert [p["node_id"] for p in peers] == [a.id] and not peers[0]["connected"]  # type: ignore[index]
