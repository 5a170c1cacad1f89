"""A name's time as the mount shows it comes from its replication record (keyed by the
BLAKE3 of the name, namelog.name_key) once the node replicates."""

from __future__ import annotations

import time
from pathlib import Path

from mosaic import Node
from mosaic.node.cluster import namelog
from mosaic.node.cluster.identity import Identity
from mosaic.node.cluster.syncstore import enable
from mosaic.node.mount import meta
from mosaic.protocol.hlc import make
from mosaic.protocol.records import NameRecord, Version

PEER = b"\x0c" * 32


def test_a_peers_name_shows_the_time_of_its_write(tmp_path: Path) -> None:
    with Node.init(tmp_path / "a", no_passphrase=True) as n:
        enable(n.index, Identity.load_or_create(n.home.root).node_id)
        fid = n.put(b"content").file_id
        ms = int(time.time() * 1000) - 3_600_000  # written by the peer an hour ago
        with n.index.write() as txn:
            state = namelog.name_state(n.index, "far.txt", txn)
            namelog.merge(n.index, txn, state, NameRecord("far.txt", fid, Version(make(ms), PEER)))
        with n.index.read() as txn:
            assert meta.has_name_times(n.index, txn)
            assert meta.name_time_ns(n.index, txn, "far.txt") == ms * 1_000_000
            found = meta.file_meta(n.index, txn, "far.txt", fid)
            assert found is not None and found.mtime_ns == ms * 1_000_000
            assert meta.name_time_ns(n.index, txn, "x" * 600) is None  # no record, no error
