"""Pins are honoured: the daemon fetches a pinned file that is not local, and trim keeps it."""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import Cluster, wait_until

TIMEOUT = 60.0


def test_daemon_fetches_pinned_files_and_trim_keeps_them(cluster: Cluster, tmp_path: Path) -> None:
    (a,) = cluster.add_nodes("a")
    nas = tmp_path / "nas"
    a.ok("backend", "add", "dir", "nas", str(nas))
    data = os.urandom(400_000)
    other = os.urandom(400_000)
    ref = a.put_bytes(data, "pinned.bin")
    a.put_bytes(other, "other.bin")
    assert a.doc("cache", "trim", "--to", "0")["local_packs"] == 0  # type: ignore[index]
    # pinned while the backend is away (an unmounted disk): recorded, not fetched
    away = tmp_path / "nas-away"
    nas.rename(away)
    try:
        a.run("pin", ref)
    finally:
        away.rename(nas)
    assert a.doc("status", ref)["local"] < 1.0  # type: ignore[index]
    cluster.start(a)

    def local() -> bool:
        return a.doc("status", ref)["local"] == 1.0  # type: ignore[index]

    wait_until(local, TIMEOUT, "the daemon to fetch the pinned file", diagnose=cluster.logs)
    a.ok("cache", "trim", "--to", "0")
    assert a.doc("status", ref)["local"] == 1.0  # type: ignore[index]  # trim kept it
    assert a.doc("status", "other.bin")["local"] == 0.0  # type: ignore[index]
    assert a.get_bytes(ref) == data
    assert a.doc("check")["ok"] is True  # type: ignore[index]
    assert a.stop() == 0
