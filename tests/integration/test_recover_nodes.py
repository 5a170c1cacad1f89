"""Recover with eyes open, through the CLI on a dir backend two nodes share.

`recover --from NAME --list` shows each node's index copy (tag, time, files); without
`--node` a backend with two readable copies is refused (exit 2); the recovered node takes
the old node's tag, so it still owns (and collects) the packs that node sealed; a missing
or undecryptable log fails with exit 3 naming it unless `--accept-gaps`; an object under a
new tag that does not decrypt is skipped with a warning, not fatal for every node.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from mosaic import Node as Api
from mosaic.node.store.home import BackendConfig

from .conftest import Node, b3, new_node


def _node(tmp_path: Path, name: str, nas: Path, key: Path | None = None) -> Node:
    n = new_node(tmp_path, name)
    n.init_node(*(["--key-file", str(key)] if key else []))
    n.add_dir("nas", nas)
    return n


def _put(n: Node, name: str, data: bytes) -> None:
    n.ok("put", "-", "--name", name, input=data, timeout=60)


@pytest.fixture
def shared(tmp_path: Path) -> tuple[Node, Node, Path, dict[str, bytes], dict[str, bytes]]:
    """Nodes A and B on one dir backend (tmp/nas), each with its own files, made through the
    API (quick); A's key file is tmp/a/key.json. Only recover itself runs through the CLI."""
    nas = tmp_path / "nas"
    nas.mkdir()
    a = Api.init(tmp_path / "a", no_passphrase=True)
    a.home.write_config(replace(a.config, backends=(BackendConfig("nas", "dir", {"path": str(nas)}),)))
    a.close()
    b = Api.init(tmp_path / "b", no_passphrase=True, key_file=tmp_path / "a" / "key.json")
    b.home.write_config(replace(b.config, backends=(BackendConfig("nas", "dir", {"path": str(nas)}),)))
    b.close()
    fa = {f"a/{i}": os.urandom(20_000 + i) for i in range(4)}
    fb = {f"b/{i}": os.urandom(10_000 + i) for i in range(3)}
    for home, files in ((tmp_path / "a", fa), (tmp_path / "b", fb)):
        with Api.open(home) as n:
            for name, data in files.items():  # one put each: one index copy object each
                n.put(data, name=name)
    return (new_node(tmp_path, "a"), new_node(tmp_path, "b"), tmp_path / "a" / "key.json", fa, fb)


def _config_tag(n: Node) -> str:
    import tomllib
    for f in ("config.toml",):
        p = n.home / f
        if p.exists():
            return tomllib.loads(p.read_text())["node"]["tag"]
    raise AssertionError("no config.toml")


def test_list_and_choose_a_node(tmp_path: Path, shared) -> None:  # noqa: ANN001
    a, b, key, fa, fb = shared
    ta, tb = _config_tag(a), _config_tag(b)
    fresh = _node(tmp_path, "fresh", tmp_path / "nas", key)
    listed = {c["node"]: c for c in fresh.doc("recover", "--from", "nas", "--list", timeout=60)}
    assert set(listed) == {ta, tb}
    assert listed[ta]["files"] == len(fa) and listed[tb]["files"] == len(fb)
    assert all(c["time_ns"] > 0 and c["gap"] is None and c["error"] is None for c in listed.values())
    r = fresh("recover", "--from", "nas", timeout=60)
    assert r.rc == 2 and ta in r.err and tb in r.err and "--node" in r.err, r
    res = fresh.doc("recover", "--from", "nas", "--node", ta, timeout=60)
    assert res["node"] == ta and res["files"] == len(fa)
    for name, data in fa.items():
        assert fresh.ok("get", name, "-", timeout=60).out == data
    assert fresh("get", "b/0", "-", timeout=30).rc == 1  # B's files are B's
    assert fresh.doc("check", timeout=60)["ok"]
    # it carries on as A: same tag, and A's packs are its own to collect
    assert _config_tag(fresh) == ta
    nodes = {r["node"] for r in fresh.doc("backend", "nodes", "nas", timeout=30)}
    assert nodes == {ta, tb}  # its own empty registration and copy are gone
    assert fresh("backend", "nodes", "nas", "--forget", ta, timeout=30).rc == 2  # itself
    assert fresh("backend", "nodes", "nas", "--forget", "0000000000000000", timeout=30).rc == 1
    fresh.ok("rm", "a/0", timeout=30)
    rep = fresh.doc("gc", timeout=60)
    assert rep["packs_deleted"] >= 1 and rep["marked"] >= 1, rep


def test_a_missing_log_fails_naming_it(tmp_path: Path, shared) -> None:  # noqa: ANN001
    a, _b, key, fa, _fb = shared
    ta = _config_tag(a)
    logs = sorted((tmp_path / "nas" / "index" / ta).glob("log-*"))
    assert len(logs) >= 3
    victim = logs[1]
    victim.unlink()
    fresh = _node(tmp_path, "fresh", tmp_path / "nas", key)
    r = fresh("recover", "--from", "nas", "--node", ta, timeout=60)
    assert r.rc == 3 and victim.name.split("-")[1] in r.err and "--accept-gaps" in r.err, r
    res = fresh.doc("recover", "--from", "nas", "--node", ta, "--accept-gaps", timeout=60)
    assert res["warnings"] and res["files"] < len(fa)
    for e in fresh.doc("ls", timeout=30):
        assert b3(fresh.ok("get", e["name"], "-", timeout=30).out) == e["hash"]


def test_undecryptable_objects_are_skipped_with_a_warning(tmp_path: Path, shared) -> None:  # noqa: ANN001
    a, b, key, fa, _fb = shared
    ta, tb = _config_tag(a), _config_tag(b)
    junk = tmp_path / "nas" / "index" / "ffffffffffffffff" / "snap-00000000000000ff"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"\x01" + os.urandom(300))
    # B's newest log does not decrypt any more: B's copy stops before it
    blogs = sorted((tmp_path / "nas" / "index" / tb).glob("log-*"))
    blogs[-1].write_bytes(b"\x01" + os.urandom(300))
    fresh = _node(tmp_path, "fresh", tmp_path / "nas", key)
    listed = {c["node"]: c for c in fresh.doc("recover", "--from", "nas", "--list", timeout=60)}
    assert listed["ffffffffffffffff"]["error"] and listed[tb]["gap"] and listed[ta]["error"] is None
    r = fresh("recover", "--from", "nas", "--node", tb, timeout=60)
    assert r.rc == 3 and "does not decrypt" in r.err, r
    # A's copy is whole: recovering it works (the junk tag is skipped with a warning)
    res = fresh.doc("recover", "--from", "nas", "--node", ta, timeout=60)
    assert res["files"] == len(fa)
    assert fresh.doc("check", timeout=60)["ok"]


def test_one_readable_copy_needs_no_node(tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    a = _node(tmp_path, "a", nas)
    data = os.urandom(30_000)
    _put(a, "only", data)
    key = tmp_path / "key.json"
    a.ok("key", "export", "-o", key, timeout=30)
    junk = nas / "index" / "eeeeeeeeeeeeeeee" / "snap-0000000000000001"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"\x01" + os.urandom(300))
    fresh = _node(tmp_path, "fresh", nas, key)
    r = fresh("recover", "--from", "nas", json=True, timeout=60)
    assert r.rc == 0, r
    assert any("eeeeeeeeeeeeeeee" in w for w in r.json()["warnings"])
    assert fresh.ok("get", "only", "-", timeout=30).out == data
