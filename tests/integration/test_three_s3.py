"""Three S3 endpoints (three moto processes), two copies of every pack.

A tree of a few MiB (text and random, many small files) is put with 1 MiB packs.
Then: every pack is on exactly two endpoints (listed with boto3, compared with
the node's own view); with the local cache emptied, each endpoint in turn is
frozen (SIGSTOP: it still accepts TCP connections but never answers, like a hung
service, and keeps its objects) and every file must still come back byte-identical
within a bounded time; finally two pack objects are deleted on one endpoint and one
is corrupted on another: `verify --backends` exits 3 naming exactly those, `repair`
puts them back, and `verify --backends` exits 0.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from .conftest import Node, S3Server, assert_same_tree, make_tree

pytestmark = pytest.mark.slow  # long end-to-end: `just test-fast` leaves it out

#: a `get` of the whole tree with one endpoint frozen must finish within this (it takes ~3.5 s:
#: reads that have another copy give up on a silent backend after a few seconds; without
#: that, each waited out S3's read timeout twice, ~13 s)
FROZEN_GET_BUDGET = 10.0


def _pack_key(pid: str) -> str:
    return f"packs/{pid[:2]}/{pid}"


def _setup(node: Node, s3_servers, tmp_path: Path):  # noqa: ANN001, ANN202
    """Three endpoints, a tree put with 1 MiB packs, placement checked; returns
    (servers, backend names, tree, pack -> backends)."""
    servers: list[S3Server] = [s3_servers(f"mosaic-{i}") for i in range(3)]
    names = [f"s3-{i}" for i in range(3)]
    node.init_node("--pack-size", "1MiB")
    for name, srv in zip(names, servers, strict=True):
        r = node.add_s3(name, srv)
        assert r.rc == 0, str(r)
    assert node.doc("config")["effective_copies"] == 2  # type: ignore[index]

    tree = make_tree(tmp_path / "src" / "tree", seed=1, small=250, medium=40, large=3)
    assert 3 << 20 < tree.size < 8 << 20
    r = node.ok("put", "-r", tree.root, "--name", "tree", timeout=120)
    assert len(r.text.splitlines()) == len(tree.files)

    # every pack on exactly two endpoints, as the node records it
    expected = node.pack_locations()
    assert len(expected) >= 3, f"only {len(expected)} packs; the test wants several"
    actual: dict[str, set[str]] = {}
    for name, srv in zip(names, servers, strict=True):
        for pid in srv.pack_ids():
            actual.setdefault(pid, set()).add(name)
    assert set(actual) == set(expected), (
        f"packs on the endpoints but unknown to the node: {sorted(set(actual) - set(expected))[:3]}; "
        f"packs the node has but no endpoint holds: {sorted(set(expected) - set(actual))[:3]}")
    wrong = {p: sorted(b) for p, b in actual.items() if len(b) != 2}
    assert not wrong, f"packs not on exactly 2 endpoints: {wrong}"
    assert actual == expected, "the node's record of where packs are differs from the endpoints"
    rows = node.backends()
    for name, srv in zip(names, servers, strict=True):
        assert rows[name]["packs"] == len(srv.pack_ids()), rows[name]
        assert rows[name]["pending"] == 0, rows[name]
    assert node.pending_uploads() == 0

    # nothing local any more: every read goes to the endpoints
    cache = node.doc("cache", "trim", "--to", "0", timeout=60)
    assert cache["used"] == 0 and cache["local_packs"] == 0, cache  # type: ignore[index]
    return servers, names, tree, expected


def test_every_file_survives_any_one_frozen_endpoint(node: Node, s3_servers, tmp_path: Path) -> None:  # noqa: ANN001
    servers, names, tree, _ = _setup(node, s3_servers, tmp_path)
    slow: list[str] = []
    for i, (name, srv) in enumerate(zip(names, servers, strict=True)):
        dest = tmp_path / f"restored-{i}"
        srv.pause()
        t0 = time.monotonic()
        try:
            r = node("get", "-r", "tree", dest, timeout=FROZEN_GET_BUDGET)
        except subprocess.TimeoutExpired:
            slow.append(name)
            continue
        finally:
            srv.resume()
        assert r.rc == 0, f"with {name} frozen: {r}"
        assert_same_tree(dest, tree.files)
        print(f"get -r with {name} frozen: {time.monotonic() - t0:.1f} s")
    assert not slow, (
        f"`mosaic get -r` did not finish within {FROZEN_GET_BUDGET:.0f} s while endpoint(s) "
        f"{', '.join(slow)} were frozen: a hung endpoint stalls every read of a pack it holds "
        "(S3's 6 s read timeout, twice) instead of giving up on it after a few seconds")


#: `warm` of the whole tree with one endpoint frozen must finish within this: a whole-pack
#: fetch gives up on a silent backend piece by piece, as range reads do
FROZEN_WARM_BUDGET = 10.0


def test_warm_gives_up_on_a_frozen_endpoint(node: Node, s3_servers, tmp_path: Path) -> None:  # noqa: ANN001
    servers, names, tree, packs = _setup(node, s3_servers, tmp_path)
    frozen = servers[0]
    assert any(names[0] in b for b in packs.values())
    frozen.pause()
    t0 = time.monotonic()
    try:
        r = node("warm", "--all", json=True, timeout=FROZEN_WARM_BUDGET)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`mosaic warm --all` did not finish within {FROZEN_WARM_BUDGET:.0f} s with "
                    f"{names[0]} frozen: each pack it holds waited for it instead of the other copy")
    finally:
        frozen.resume()
    print(f"warm --all with {names[0]} frozen: {time.monotonic() - t0:.1f} s")
    assert r.rc == 0, str(r)
    doc = r.json()
    assert doc["packs_fetched"] == len(packs) and doc["cached_after"] == 1.0, doc  # type: ignore[index]
    cache = node.doc("cache")
    assert cache["local_packs"] == len(packs), cache  # type: ignore[index]
    dest = tmp_path / "restored"
    node.ok("get", "-r", "tree", dest, timeout=60)
    assert_same_tree(dest, tree.files)


def test_scrub_finds_and_repair_fixes_damaged_copies(node: Node, s3_servers, tmp_path: Path) -> None:  # noqa: ANN001
    servers, names, tree, actual = _setup(node, s3_servers, tmp_path)

    # ---- damage: 2 packs gone on one endpoint, 1 corrupted on another
    victim_a, victim_b = servers[0], servers[1]
    on_a = sorted(p for p, b in actual.items() if names[0] in b)
    on_b = sorted(p for p, b in actual.items() if names[1] in b)
    assert len(on_a) >= 2 and set(on_b) - set(on_a[:2]), (on_a, on_b)
    deleted = on_a[:2]
    for pid in deleted:
        victim_a.delete(_pack_key(pid))
    corrupted = [p for p in on_b if p not in deleted][-1]  # one healthy copy left of each
    good = victim_b.read(_pack_key(corrupted))
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x5A
    victim_b.write(_pack_key(corrupted), bytes(bad))

    r = node("verify", "--backends", json=True, timeout=120)
    assert r.rc == 3, str(r)
    sc = r.json()["backends"]  # type: ignore[index]
    assert sorted(map(tuple, sc["missing"])) == sorted((p, names[0]) for p in deleted), sc
    assert [tuple(x) for x in sc["corrupt"]] == [(corrupted, names[1])], sc
    assert sc["unreachable"] == [], sc
    r = node("verify", "--backends", timeout=120)
    assert r.rc == 3
    for pid in deleted:
        assert f"pack {pid[:16]} is missing on {names[0]}" in r.err, r.err
    assert f"pack {corrupted[:16]} is corrupt on {names[1]}" in r.err, r.err

    rep = node.doc("repair", timeout=120)
    assert rep["repaired"] == 3 and not rep["failed"], rep  # type: ignore[index]
    for pid in deleted:
        assert pid in victim_a.pack_ids()
    assert victim_b.read(_pack_key(corrupted)) == good

    doc = node.doc("verify", "--backends", timeout=120)
    assert doc["ok"] and doc["backends"]["checked"] == sum(len(b) for b in actual.values()), doc  # type: ignore[index]
    assert node.doc("status", timeout=30)["repairs_queued"] == 0  # type: ignore[index]
    # and the files are whole, read from the endpoints again
    dest = tmp_path / "restored-final"
    node.ok("get", "-r", "tree", dest, timeout=60)
    assert_same_tree(dest, tree.files)
