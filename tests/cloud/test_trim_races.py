"""cache trim checks backend copies over the network, and decides in one transaction with the
pins and queued repairs as they are at that moment: a pin or a repair that lands while it
checks still keeps the pack local."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from mosaic import Node
from mosaic.node.cloud import cache
from mosaic.node.store.check import check


def _local(node: Node) -> set[bytes]:
    with node.index.read() as txn:
        return {pid for pid, r in node.index.iter_packs(txn) if r.local}


@pytest.mark.parametrize("late", ["pin", "repair"])
def test_a_pin_or_repair_during_trim_keeps_the_pack(node_factory: Callable[..., Node],
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     late: str) -> None:
    node = node_factory()
    data = os.urandom(300_000)
    fid = node.put(data, name="a").file_id
    packs = _local(node)
    assert packs
    real = cache.confirmed_copies
    done: list[bool] = []

    def checking(cloud, pid, rec):  # another command commits while trim is at the network
        if not done:
            done.append(True)
            if late == "pin":
                with node.index.write() as txn:  # as `mosaic pin` records it
                    txn.put(fid, b"", db=node.index.db["pins"])
            else:
                with node.index.write() as txn:
                    for p in packs:
                        node.index.queue_repair(txn, p, "d0", "corrupt (seen by a reader)")
        return real(cloud, pid, rec)
    monkeypatch.setattr(cache, "confirmed_copies", checking)
    evicted, _ = cache.trim(node.cloud, 0)
    assert evicted == 0 and _local(node) == packs
    assert node.get("a") == data
    assert check(node.store).ok
