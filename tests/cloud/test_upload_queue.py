"""The upload queue's work grows with the packs of a put, not with their square.

Each sealed pack is handed to the uploader with the backends it was queued for;
nothing rescans the queue per pack. The test counts every queue row read and
every upload sent while a put seals N packs, for two sizes of N.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosaic.node.store.index import Index
from tests.cloud.conftest import make_node

PACK = 64 * 1024


def _queue_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n_packs: int
                ) -> tuple[int, int, int, int]:
    """(packs sealed, queue scans, queue rows read, uploads done) for a put of `n_packs`+ packs."""
    rows = {"read": 0, "scans": 0}
    real = Index.iter_uploads

    def counting(self: Index, txn: object) -> Iterator[tuple[bytes, str]]:
        rows["scans"] += 1
        for row in real(self, txn):
            rows["read"] += 1
            yield row

    monkeypatch.setattr(Index, "iter_uploads", counting)
    with make_node(tmp_path, f"n{n_packs}", pack_size=PACK) as node:
        data = os.urandom(n_packs * PACK * 5 // 4)  # incompressible: packs fill to about PACK
        res = node.put(data, name="big.bin")
        with node.index.read() as txn:
            packs = [pid for pid, _ in node.index.iter_packs(txn)]
            on_backend = sum(1 for _, rec in node.index.iter_packs(txn) if "d0" in rec.locations)
            left = list(real(node.index, txn))
        assert res.size == len(data)
        assert left == []  # every pack reached the backend
        assert on_backend == len(packs)
        assert node.get("big.bin") == data
    return len(packs), rows["scans"], rows["read"], on_backend


def test_queue_work_is_linear_in_packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small_packs, small_scans, small_rows, small_up = _queue_work(tmp_path, monkeypatch, 50)
    big_packs, big_scans, big_rows, big_up = _queue_work(tmp_path, monkeypatch, 100)
    assert big_packs >= 100 and small_packs >= 50
    assert (small_up, big_up) == (small_packs, big_packs)
    # The queue is scanned a fixed number of times per put (space accounting before,
    # the final sweep after), not once per sealed pack: twice the packs, same scans.
    assert big_scans == small_scans <= 3
    # and each scan reads at most the packs of the put, so the rows read are linear
    assert big_rows <= big_scans * big_packs
    assert small_rows <= small_scans * small_packs
